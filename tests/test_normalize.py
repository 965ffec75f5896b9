"""Observation normalisation and reward scaling (rlcourse.pg.normalize): the statistics are the
brute-force ones, they travel with the saved model and the checkpoint, and evaluation uses them."""

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from resumed import assert_resumes_bit_for_bit

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.config import ConfigError
from rlcourse.pg import a2c, ppo, reinforce, trpo
from rlcourse.pg.normalize import PRIOR_COUNT, STATS_FILE, ObsNormalizer, RewardScaler, RunningMeanStd
from rlcourse.pg.policies import make_policy
from rlcourse.pg.rollout import Rollout
from rlcourse.play import evaluate
from rlcourse.run import torch_threads

NORMALIZED = dict(normalize_obs=True, normalize_reward=True)


def brute_force_stats(vectors) -> tuple[np.ndarray, np.ndarray]:
    """The mean and variance of the vectors and of the prior: PRIOR_COUNT vectors of mean 0 and
    variance 1, as half that weight at +1 and half at −1 in every coordinate; one weighted sum each."""
    x = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    points = np.concatenate([x, np.ones((1, x.shape[1])), -np.ones((1, x.shape[1]))])
    weights = np.concatenate([np.ones(len(x)), [PRIOR_COUNT / 2] * 2])
    mean = np.average(points, axis=0, weights=weights)
    return mean, np.average((points - mean) ** 2, axis=0, weights=weights)


def test_running_mean_std_is_the_mean_and_variance_of_everything_seen():
    rng = np.random.default_rng(0)
    rms, seen = RunningMeanStd((3,)), []
    for size in (1, 5, 2, 17, 1, 40):
        batch = rng.normal(loc=[1.0, -50.0, 3e3], scale=[0.1, 7.0, 2e2], size=(size, 3))
        rms.update(batch)
        seen.append(batch)
        everything = np.concatenate(seen)
        mean, var = brute_force_stats(everything)
        np.testing.assert_allclose(rms.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(rms.var, var, rtol=1e-9)
        assert rms.count == PRIOR_COUNT + len(everything)
        # the prior weighs a ten-thousandth of one vector: the data's own statistics to 10⁻⁴ / n
        np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-4 / len(everything) * 1.01)


def test_reward_scaler_divides_by_the_std_of_every_discounted_return_so_far():
    gamma, rewards = 0.9, np.array([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0], [-1.0, 1.0]])
    done = np.array([[False, False], [True, False], [False, False], [False, True]])
    scaler, returns, seen = RewardScaler(2, gamma, clip=100.0), np.zeros(2), []
    for r, d in zip(rewards, done):
        scaled = scaler(r, d)
        returns = gamma * returns + r
        seen += list(returns)
        np.testing.assert_allclose(scaled, r / np.sqrt(brute_force_stats(seen)[1] + 1e-8), rtol=1e-12)
        returns[d] = 0.0
    np.testing.assert_array_equal(scaler.returns, returns)
    assert np.all(np.abs(RewardScaler(2, gamma, clip=0.5)(rewards[0], done[0])) <= 0.5)


def test_observation_statistics_count_every_observation_the_environments_returned():
    """Replay the rollout's actions in a fresh copy of its environments: μ and σ² are those of the
    reset observations and every observation a step returned (an episode's first included)."""
    n, steps = 3, 300
    rollout = Rollout("CartPole-v1", n, seed=7).normalize(ObsNormalizer(4))
    with torch_threads(1):  # as the trainers act: more threads only wait on each other
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space)
        batch = rollout.collect(policy, steps)
    assert batch.starts[1:].any(), "no episode ended: the test would not see the boundary"
    envs = gym.make_vec("CartPole-v1", n, "sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    seen = [envs.reset(seed=7)[0]]
    seen += [envs.step(action)[0] for action in batch.actions.numpy()]
    everything = np.concatenate(seen).astype(np.float64)
    stats = rollout.obs_normalizer.rms
    mean, var = brute_force_stats(everything)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(stats.var, var, rtol=1e-10)
    assert stats.count == PRIOR_COUNT + n * (steps + 1)
    # the batch holds what the policy saw: with the statistics of the time, s_{t+1} = s of t + 1
    same = ~batch.starts[1:]
    assert torch.equal(batch.next_obs[:-1][same], batch.obs[1:][same])
    assert batch.obs.abs().max() <= 10.0


def test_next_step_autoreset_counts_first_observations_and_real_returns_only():
    """Gymnasium's vectorised CartPole (NEXT_STEP): replayed in a fresh copy with the same actions, the
    observation statistics are those of the reset observations and every observation a step returned but
    an episode's final one; the reward scaler's, those of the discounted returns of every step but the
    reset steps (whose reward belongs to no episode)."""
    n, steps, gamma = 3, 300, 0.99
    rollout = Rollout("CartPole-v1", n, seed=7, vectorization="vector_entry_point")
    rollout.normalize(ObsNormalizer(4), RewardScaler(n, gamma))
    with torch_threads(1):
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space)
        batch = rollout.collect(policy, steps)
    envs = gym.make_vec("CartPole-v1", n, "vector_entry_point")
    seen, returns, counted, running = [envs.reset(seed=7)[0]], [], np.zeros(n), 0
    for action, valid in zip(batch.actions.numpy(), batch.valid.numpy()):
        obs, reward, terminated, truncated, _ = envs.step(action)
        done = terminated | truncated
        seen.append(obs[~done])
        counted = gamma * counted + reward
        returns.append(counted[valid])
        counted[done] = 0.0
        running += (~valid).sum()
    assert running >= 10, "too few reset steps: the test would not see them"
    everything = np.concatenate(seen).astype(np.float64)
    stats = rollout.obs_normalizer.rms
    mean, var = brute_force_stats(everything)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(stats.var, var, rtol=1e-10)
    assert len(everything) == n * (steps + 1) - batch.terminated.sum() - batch.truncated.sum()
    assert stats.count == PRIOR_COUNT + len(everything)
    assert rollout.reward_scaler.rms.count == PRIOR_COUNT + n * steps - running
    np.testing.assert_allclose(rollout.reward_scaler.rms.var, brute_force_stats(np.concatenate(returns))[1],
                               rtol=1e-10)


def test_the_log_keeps_the_environments_own_returns():
    config = dataclasses.replace(ppo.PPOConfig.for_env("CartPole-v1"), **NORMALIZED)
    log = ppo.train("CartPole-v1", config, steps=1_024, seed=0).log
    assert log["episodes"].sum() > 10
    assert (log["return"].dropna() == log["length"].dropna()).all()  # CartPole: +1 a step, unscaled


@pytest.mark.parametrize("train, config", [
    (ppo.train, ppo.PPOConfig(n_steps=256, num_envs=2, **NORMALIZED)),
    (a2c.train, a2c.A2CConfig(log_interval=10, **NORMALIZED)),
    (trpo.train, trpo.TRPOConfig(n_steps=512, **NORMALIZED)),
    (reinforce.train, reinforce.ReinforceConfig(steps_per_env=256, **NORMALIZED)),
], ids=["ppo", "a2c", "trpo", "reinforce"])
def test_saved_with_the_model_and_used_by_evaluate(tmp_path, train, config):
    result = train("Pendulum-v1", config, steps=1_024, seed=1)
    stats = result.policy.obs_normalizer
    assert stats is not None and stats.rms.count == PRIOR_COUNT + 1_024 + config.num_envs
    result.save(tmp_path)
    loaded = rlcourse.load(tmp_path)
    saved = loaded.policy.obs_normalizer
    np.testing.assert_array_equal(saved.rms.mean, stats.rms.mean)
    np.testing.assert_array_equal(saved.rms.var, stats.rms.var)
    assert (saved.rms.count, saved.clip, saved.epsilon) == (stats.rms.count, stats.clip, stats.epsilon)
    obs = np.array([0.3, -0.9, 5.0], dtype=np.float32)
    expected = result.policy.mean(torch.from_numpy(stats(obs))).detach().numpy().clip(-2, 2)
    np.testing.assert_array_equal(loaded.policy.act(obs), expected)  # the frozen statistics, applied
    assert evaluate(loaded, episodes=2, seed=5) == evaluate(result, episodes=2, seed=5)
    assert saved.rms.count == stats.rms.count  # acting counted nothing
    loaded.policy.obs_normalizer = None
    assert evaluate(loaded, episodes=2, seed=5) != evaluate(result, episodes=2, seed=5)


def test_a_policy_saved_without_statistics_loads_without_them(tmp_path):
    normalized = ppo.train("CartPole-v1", ppo.PPOConfig(n_steps=64, normalize_obs=True), steps=64, seed=0)
    normalized.save(tmp_path)
    assert json.loads((tmp_path / STATS_FILE).read_text())["count"] == PRIOR_COUNT + 65
    ppo.train("CartPole-v1", ppo.PPOConfig(n_steps=64), steps=64, seed=0).save(tmp_path)
    assert not (tmp_path / STATS_FILE).exists() and rlcourse.load(tmp_path).policy.obs_normalizer is None


@pytest.mark.parametrize("algo, env_id, overrides, steps, every, stop_at", [
    ("ppo", "Pendulum-v1", {"n_steps": 128, "num_envs": 2, **NORMALIZED}, 2_048, 512, 1_536),
    ("a2c", "CartPole-v1", {"log_interval": 7, **NORMALIZED}, 2_000, 600, 1_400),
    ("trpo", "Pendulum-v1", {"n_steps": 256, **NORMALIZED}, 1_536, 512, 1_024),
    ("reinforce", "CartPole-v1", {"steps_per_env": 250, **NORMALIZED}, 3_000, 1_000, 2_000),
], ids=["ppo", "a2c", "trpo", "reinforce"])
def test_a_resumed_normalised_run_equals_one_that_never_stopped(tmp_path, algo, env_id, overrides, steps, every,
                                                                  stop_at):
    train = ALGORITHMS[algo].train
    config = dataclasses.replace(ALGORITHMS[algo].defaults_for(env_id), **overrides)
    straight, resumed = assert_resumes_bit_for_bit(train, env_id, config, tmp_path, steps=steps, every=every,
                                                   stop=stop_at)
    for a, b in zip(resumed.policy.parameters(), straight.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.policy.obs_normalizer.state_dict() == straight.policy.obs_normalizer.state_dict()


@pytest.mark.parametrize("field, value, message", [
    ("vectorization", "threads", r"vectorization = 'threads'.*sync.*async"),
    ("normalize_obs", "yes", r"normalize_obs"),
    ("clip_obs", 0.0, r"clip_obs = 0.0 is out of range"),
    ("clip_reward", -1.0, r"clip_reward = -1.0 is out of range"),
])
@pytest.mark.parametrize("config", [ppo.PPOConfig, a2c.A2CConfig, trpo.TRPOConfig, reinforce.ReinforceConfig])
def test_configs_reject_bad_environment_options(config, field, value, message):
    with pytest.raises(ConfigError, match=message):
        config(**{field: value})


class ScriptedStream(gym.Env):
    """Observations of very different scales and rewards drawn from its own generator whatever the
    actions and the reset seed, episodes of 6, 3, 8, 5, ... steps, ended in turn by termination
    and by the time limit: the same stream for every library that makes it."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.rng, self.episode, self.t = np.random.default_rng(123), 0, 0

    def draw(self):
        return self.rng.normal([5.0, -2.0, 100.0], [3.0, 0.5, 20.0])

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.draw(), {}

    def step(self, action):
        self.t += 1
        end = self.t == (6, 3, 8, 5)[self.episode % 4]
        terminated, truncated = end and self.episode % 2 == 0, end and self.episode % 2 == 1
        self.episode += end
        return self.draw(), float(self.rng.normal(2.0, 5.0)), terminated, truncated, {}


class StandStill:
    """A policy for Rollout.collect that always sends 0 (the stream ignores it anyway)."""

    squash = False

    def reset_noise(self, n):
        pass

    def sample(self, obs):
        return torch.zeros(len(obs), 1), torch.zeros(len(obs))


def test_normalisation_is_sb3s_vecnormalize_step_for_step(monkeypatch, mujoco_box2d):
    """The normalised observations (final ones of episodes included) and scaled rewards a rollout
    hands the learner are VecNormalize's on the same stream, through the benchmark's translation of
    the settings (benchmarks/mujoco_box2d.py); clips small enough to bite."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    monkeypatch.setitem(gym.registry, "test/ScriptedStream-v0",
                        gym.envs.registration.EnvSpec("test/ScriptedStream-v0", entry_point=ScriptedStream))
    config = a2c.A2CConfig(num_envs=1, gamma=0.9, clip_obs=2.5, clip_reward=1.5, **NORMALIZED)
    steps = 40
    theirs = VecNormalize(DummyVecEnv([lambda: gym.make("test/ScriptedStream-v0")]), **mujoco_box2d.sb3_normalize(config))
    obs, rows = theirs.reset(), []
    for _ in range(steps):
        new_obs, reward, done, info = theirs.step(np.zeros((1, 1), np.float32))
        final = info[0]["terminal_observation"] if done[0] else new_obs[0]
        rows.append((obs[0], reward[0], final))
        obs = new_obs
    with Rollout.for_config("test/ScriptedStream-v0", config, 0, None, "cpu") as rollout:
        batch = rollout.collect(StandStill(), steps)
    assert int((batch.terminated | batch.truncated).sum()) == 7  # episodes of 6, 3, 8, 5, 6, 3, 8 steps
    assert np.abs(batch.obs.numpy()).max() == pytest.approx(2.5)  # the clip bit
    assert np.abs(batch.rewards.numpy()).max() == pytest.approx(1.5)
    for t, (obs_t, reward_t, next_t) in enumerate(rows):
        np.testing.assert_allclose(batch.obs[t, 0].numpy(), obs_t, rtol=1e-5, atol=1e-6, err_msg=f"obs, step {t}")
        np.testing.assert_allclose(batch.rewards[t, 0].item(), reward_t, rtol=1e-5, atol=1e-6,
                                   err_msg=f"reward, step {t}")
        np.testing.assert_allclose(batch.next_obs[t, 0].numpy(), next_t, rtol=1e-5, atol=1e-6,
                                   err_msg=f"next observation, step {t}")
