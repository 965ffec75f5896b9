"""Lesson 4: the rollout collector keeps every transition inside one episode.

CartPole's dynamics are deterministic given the state, so each stored transition
(s_t, a_t) → next_obs[t] can be replayed and checked: a transition that crossed an
episode boundary (the reset observation in place of the final one) would not replay.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.vector import AutoresetMode

from rlcourse.pg import psi
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy
from rlcourse.pg.rollout import Batch, Rollout

N, STEPS = 3, 300


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny per-step forward passes: torch's intra-op threads only add contention (on a
    loaded 2-core machine, 100 steps took 3.6 s with 2 threads and 0.04 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def collect(env_id="CartPole-v1", n=N, steps=STEPS, seed=0, env_kwargs=None, policy=None):
    torch.manual_seed(seed)
    rollout = Rollout(env_id, n, seed, env_kwargs=env_kwargs)
    if policy is None:
        policy = CategoricalPolicy(4, 2)
    batch = rollout.collect(policy, steps)
    return rollout, policy, batch


@pytest.fixture(scope="module")
def cartpole(one_thread):
    rollout, policy, batch = collect()
    yield rollout, policy, batch
    rollout.close()


_PHYSICS = CartPoleEnv()


def replay(obs: torch.Tensor, action: int) -> tuple[np.ndarray, bool]:
    """One CartPole step from the stored (float32) state."""
    _PHYSICS.reset(seed=0)
    _PHYSICS.state = obs.double().numpy()
    next_obs, _, terminated, _, _ = _PHYSICS.step(int(action))
    return next_obs, terminated


def is_reset_state(obs: torch.Tensor) -> bool:
    return bool((obs.abs() <= 0.05).all())


# --------------------------------------------------------------------------- shapes
def test_shapes_and_dtypes(cartpole):
    _, _, b = cartpole
    assert isinstance(b, Batch)
    assert b.obs.shape == b.next_obs.shape == (STEPS, N, 4)
    assert b.obs.dtype == b.next_obs.dtype == torch.float32
    assert b.actions.shape == (STEPS, N) and b.actions.dtype == torch.long
    for name in ("logp", "rewards"):
        assert getattr(b, name).shape == (STEPS, N) and getattr(b, name).dtype == torch.float32
    for name in ("terminated", "truncated", "starts"):
        assert getattr(b, name).shape == (STEPS, N) and getattr(b, name).dtype == torch.bool
    assert b.timesteps.shape == (STEPS, N) and b.timesteps.dtype == torch.long
    assert b.values is None and b.next_values is None
    assert b.size == STEPS * N
    assert set(b.actions.unique().tolist()) == {0, 1}


def test_logp_is_the_policy_log_probability_of_the_stored_action(cartpole):
    _, policy, b = cartpole
    with torch.no_grad():
        expected = policy.log_prob(policy.distribution(b.obs), b.actions)
    torch.testing.assert_close(b.logp, expected)


def test_env_steps_are_counted(cartpole):
    rollout, _, _ = cartpole
    assert rollout.env_steps == STEPS * N


# --------------------------------------------------------------------------- episode boundaries
def test_batch_has_many_episode_ends_and_no_truncation(cartpole):
    _, _, b = cartpole
    assert int(b.terminated.sum()) >= 20  # a random policy drops the pole in ~20 steps
    assert not b.truncated.any()          # CartPole-v1 truncates only at 500 steps


def test_starts_and_timesteps_follow_the_done_flags(cartpole):
    _, _, b = cartpole
    done = b.terminated | b.truncated
    assert b.starts[0].all() and (b.timesteps[0] == 0).all()  # a fresh Rollout starts episodes
    assert torch.equal(b.starts[1:], done[:-1])
    assert torch.equal(b.timesteps[1:], torch.where(done[:-1], 0, b.timesteps[:-1] + 1))


def test_every_transition_replays_in_the_dynamics(cartpole):
    """next_obs[t] is what CartPole gives for (obs[t], actions[t]), also at an episode's
    end: it is the real final observation, and terminated is exactly the physics' verdict."""
    _, _, b = cartpole
    for t in range(STEPS):
        for i in range(N):
            expected, terminated = replay(b.obs[t, i], b.actions[t, i])
            np.testing.assert_allclose(b.next_obs[t, i].numpy(), expected, rtol=1e-5, atol=1e-5)
            assert bool(b.terminated[t, i]) == terminated, (t, i)


def test_no_transition_crosses_an_episode_boundary(cartpole):
    _, _, b = cartpole
    done = b.terminated | b.truncated
    for t in range(STEPS - 1):
        for i in range(N):
            if done[t, i]:
                # the final observation is out of bounds, the next state a fresh reset
                final = b.next_obs[t, i]
                assert abs(final[0]) > 2.4 or abs(final[2]) > 0.2094  # 12° = 0.20944 rad
                assert is_reset_state(b.obs[t + 1, i]) and b.starts[t + 1, i]
                assert b.timesteps[t + 1, i] == 0
                assert not torch.equal(b.next_obs[t, i], b.obs[t + 1, i])
            else:
                assert torch.equal(b.next_obs[t, i], b.obs[t + 1, i]), (t, i)


def test_same_step_autoreset_not_next_step(cartpole):
    """Gymnasium 1.x's default (NEXT_STEP) spends the step after a done on the reset: its
    action is ignored and its reward is 0. We use SAME_STEP: the step after a done is a real
    step of the new episode, with a real reward (always 1 in CartPole)."""
    rollout, _, b = cartpole
    assert rollout.envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    done = b.terminated | b.truncated
    after_done = torch.zeros_like(done)
    after_done[1:] = done[:-1]
    assert after_done.any()
    assert (b.rewards == 1.0).all()
    for t, i in after_done.nonzero().tolist():
        expected, _ = replay(b.obs[t, i], b.actions[t, i])  # a real step from the reset state
        np.testing.assert_allclose(b.next_obs[t, i].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_next_step_autoreset_would_have_fed_a_fake_transition():
    """What the default would do: the step after a done returns reward 0 and the reset
    observation, whatever the action. This is the transition that must never reach a loss."""
    envs = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    envs.reset(seed=0)
    for _ in range(500):
        _, _, term, trunc, _ = envs.step(np.array([1]))
        if term[0] or trunc[0]:
            break
    obs, reward, term, trunc, _ = envs.step(np.array([1]))
    assert reward[0] == 0.0 and not term[0] and not trunc[0]
    assert (np.abs(obs[0]) <= 0.05).all()  # the reset state, not a step from it
    envs.close()


def test_episode_returns_and_lengths_match_the_rewards(cartpole):
    _, _, b = cartpole
    done = b.terminated | b.truncated
    returns, lengths = [], []
    running = [0.0] * N
    count = [0] * N
    for t in range(STEPS):
        for i in range(N):
            running[i] += float(b.rewards[t, i])
            count[i] += 1
            if done[t, i]:
                returns.append(running[i])
                lengths.append(count[i])
                assert count[i] == int(b.timesteps[t, i]) + 1
                running[i], count[i] = 0.0, 0
    assert b.episode_returns == pytest.approx(returns)
    assert b.episode_lengths == lengths
    assert len(lengths) == int(done.sum())


def test_collection_continues_where_it_left_off():
    rollout, policy, first = collect(steps=40)
    second = rollout.collect(policy, 40)
    done_last = first.terminated[-1] | first.truncated[-1]
    assert torch.equal(second.starts[0], done_last)
    assert torch.equal(second.timesteps[0], torch.where(done_last, 0, first.timesteps[-1] + 1))
    for i in range(N):
        if not done_last[i]:
            assert torch.equal(second.obs[0, i], first.next_obs[-1, i])
    assert rollout.env_steps == 2 * 40 * N
    # an episode that began in the first batch is counted whole when it ends in the second
    # (CartPole pays 1 per step, so its return is its length)
    done2 = second.terminated | second.truncated
    spanning = []
    for i in range(N):
        ends = done2[:, i].nonzero().flatten().tolist()
        if not done_last[i] and ends:
            spanning.append(int(first.timesteps[-1, i]) + 1 + ends[0] + 1)
            assert int(second.timesteps[ends[0], i]) + 1 == spanning[-1]
    assert spanning and set(spanning) <= set(second.episode_lengths)
    assert second.episode_returns == [float(n) for n in second.episode_lengths]
    rollout.close()


# --------------------------------------------------------------------------- truncation
def constant_value(c: float):
    return lambda obs: torch.full(obs.shape[:-1], c)


def test_time_limit_truncates_and_gae_bootstraps_there():
    """``env_kwargs`` reach gymnasium.make through make_vec, so max_episode_steps=5 makes
    5-step episodes that end truncated (not terminated); with V ≡ c the truncated step's
    δ is r + γc − c, a terminated step's r − c."""
    rollout, _, b = collect(n=2, steps=30, env_kwargs={"max_episode_steps": 5})
    assert rollout.envs.envs[0].spec.max_episode_steps == 5
    assert torch.equal(b.truncated, b.timesteps == 4)
    assert b.truncated.sum() == 2 * 6 and not (b.truncated & b.terminated).any()
    assert b.episode_lengths == [5] * 12
    # the truncated step's next_obs is the real 5th state, not the reset one
    for t, i in b.truncated.nonzero().tolist():
        expected, _ = replay(b.obs[t, i], b.actions[t, i])
        np.testing.assert_allclose(b.next_obs[t, i].numpy(), expected, rtol=1e-5, atol=1e-5)
    c, gamma = 3.0, 0.9
    b.add_values(constant_value(c))
    assert b.values.shape == b.next_values.shape == (30, 2)
    for lam in (0.0, 0.95):
        A = psi.gae(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, lam)
        torch.testing.assert_close(A[b.truncated], torch.full_like(A[b.truncated], 1 + gamma * c - c))
    rollout.close()


def test_termination_does_not_bootstrap_on_a_real_rollout(cartpole):
    _, _, b = cartpole
    c, gamma = 3.0, 0.9
    b = Batch(**{f.name: getattr(b, f.name) for f in b.__dataclass_fields__.values()})
    b.add_values(constant_value(c))
    delta = psi.td_residual(b.rewards, b.values, b.next_values, b.terminated, gamma)
    torch.testing.assert_close(delta[b.terminated], torch.full_like(delta[b.terminated], 1 - c))
    torch.testing.assert_close(delta[~b.terminated], torch.full_like(delta[~b.terminated], 1 + gamma * c - c))


def test_add_values_evaluates_the_critic_on_obs_and_next_obs(cartpole):
    _, _, b = cartpole
    b = Batch(**{f.name: getattr(b, f.name) for f in b.__dataclass_fields__.values()})
    b.add_values(lambda obs: obs[..., 0] + 10 * obs[..., 2])
    torch.testing.assert_close(b.values, b.obs[..., 0] + 10 * b.obs[..., 2])
    torch.testing.assert_close(b.next_values, b.next_obs[..., 0] + 10 * b.next_obs[..., 2])


# --------------------------------------------------------------------------- continuous actions
def test_pendulum_gaussian_actions_are_stored_unclipped_and_sent_clipped():
    torch.manual_seed(0)
    rollout = Rollout("Pendulum-v1", 2, 0)
    space = rollout.single_action_space
    policy = GaussianPolicy(3, 1, log_std_init=1.0, low=space.low, high=space.high)  # σ ≈ 2.7
    sent = []
    step = rollout.envs.step

    def recording_step(action):
        sent.append(np.array(action, copy=True))
        return step(action)

    rollout.envs.step = recording_step
    b = rollout.collect(policy, 50)
    assert rollout.continuous
    assert b.actions.shape == (50, 2, 1) and b.actions.dtype == torch.float32
    assert b.logp.shape == (50, 2) and torch.isfinite(b.logp).all()
    assert b.rewards.dtype == torch.float32 and (b.rewards <= 0).all()
    sent = np.stack(sent)
    assert sent.shape == (50, 2, 1)
    stored = b.actions.numpy()
    assert (np.abs(stored) > 2.0).any()                       # samples go past the bounds ...
    assert (sent >= -2.0).all() and (sent <= 2.0).all()       # ... the env gets them clipped
    np.testing.assert_array_equal(sent, np.clip(stored, -2.0, 2.0))
    with torch.no_grad():
        expected = policy.log_prob(policy.distribution(b.obs), b.actions)
    torch.testing.assert_close(b.logp, expected)              # log π of the sampled action
    rollout.close()


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_batch():
    batches = []
    for _ in range(2):
        torch.manual_seed(0)
        policy = CategoricalPolicy(4, 2)
        rollout, _, b = collect(steps=100, seed=5, policy=policy)
        batches.append(b)
        rollout.close()
    a, b = batches
    for f in a.__dataclass_fields__:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f
        else:
            assert x == y, f
    rollout, _, c = collect(steps=100, seed=6, policy=CategoricalPolicy(4, 2))
    assert not torch.equal(a.obs, c.obs)
    rollout.close()
