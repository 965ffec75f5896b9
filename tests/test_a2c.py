import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.pg import a2c, psi
from rlcourse.pg.a2c import A2CConfig, SharedValue, a2c_loss
from rlcourse.pg.policies import GaussianPolicy, ValueFunction, load_policy, make_policy
from rlcourse.pg.rollout import Batch, Rollout
from rlcourse.play import evaluate, evaluate_policy
from rlcourse.run import NonFiniteError, UnsupportedSpaceError, load_checkpoint
from rlcourse.seeds import run_seeds
from sb3_parity import ScriptedEnv, assert_same_weights, copy_weights, make_batch, shared_noise


ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- test environments


# registered in tests/conftest.py: test/NaNRewardCartPole-v0, test/InterruptCartPole-v0,
# test/DictObs-v0, test/MultiDiscreteActions-v0

TINY = A2CConfig(num_envs=2, hidden=(16,), log_interval=10)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tests build networks outside ``train``: with two threads on a busy machine, the
    orthogonal initialisation's QR alone takes about 0.1 s per layer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- configuration and spaces


@pytest.mark.parametrize("field, value, message", [
    ("advantage", "td", r"A2CConfig.advantage = 'td' is not allowed: it must be one of 'n-step', 'gae'"),
    ("num_envs", 0, r"A2CConfig.num_envs = 0 is out of range: it must be in \[1, inf\)"),
    ("n_steps", 2.5, r"A2CConfig.n_steps = 2.5 must be an integer"),
    ("gamma", 1.5, r"A2CConfig.gamma = 1.5 is out of range: it must be in \[0, 1\]"),
    ("gae_lambda", -0.1, r"A2CConfig.gae_lambda = -0.1 is out of range: it must be in \[0, 1\]"),
    ("lr", 0.0, r"A2CConfig.lr = 0.0 is out of range: it must be in \(0, inf\)"),
    ("anneal_lr", "yes", r"A2CConfig.anneal_lr = 'yes' is not allowed"),
    ("rms_alpha", 1.0, r"A2CConfig.rms_alpha = 1.0 is out of range: it must be in \[0, 1\)"),
    ("rms_eps", 0.0, r"A2CConfig.rms_eps = 0.0 is out of range: it must be in \(0, inf\)"),
    ("vf_coef", -1.0, r"A2CConfig.vf_coef = -1.0 is out of range: it must be in \[0, inf\)"),
    ("ent_coef", float("inf"), r"A2CConfig.ent_coef = inf must be a finite number"),
    ("max_grad_norm", 0.0, r"A2CConfig.max_grad_norm = 0.0 is out of range: it must be in \(0, inf\)"),
    ("normalize_advantages", "no", r"A2CConfig.normalize_advantages = 'no' is not allowed"),
    ("shared", None, r"A2CConfig.shared = None is not allowed: it must be one of True, False"),
    ("hidden", (64, 0), r"A2CConfig.hidden = \(64, 0\) must be a tuple of layer sizes"),
    ("log_std_init", float("nan"), r"A2CConfig.log_std_init = nan must be a finite number"),
    ("log_interval", 0, r"A2CConfig.log_interval = 0 is out of range: it must be in \[1, inf\)"),
])
def test_config_errors_name_the_field_and_its_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        A2CConfig(**{field: value})


def test_defaults_are_the_rl_zoo_cartpole_settings():
    # hyperparams/a2c.yml of rl-baselines3-zoo (n_envs 8, ent_coef 0) and SB3's A2C defaults
    c = A2CConfig()
    assert (c.num_envs, c.n_steps, c.gamma, c.gae_lambda, c.lr) == (8, 5, 0.99, 1.0, 7e-4)
    assert (c.vf_coef, c.ent_coef, c.max_grad_norm, c.rms_alpha, c.rms_eps) == (0.5, 0.0, 0.5, 0.99, 1e-5)
    assert (c.normalize_advantages, c.anneal_lr, c.shared, c.hidden) == (False, False, False, (64, 64))
    assert c.advantage == "gae"        # SB3's computation; at λ = 1 it is the n-step advantage
    assert ALGORITHMS["a2c"].defaults_for("CartPole-v1") == c and ALGORITHMS["a2c"].train is a2c.train


def test_for_env_takes_the_rl_zoo_settings_of_the_field_tasks():
    # hyperparams/a2c.yml: LunarLander-v3 (n_envs 8, gamma 0.995, lin_0.00083, ent_coef 1e-5) and the MuJoCo
    # tasks' normalize: true with the Zoo's default n_envs of 1; anything else keeps the defaults
    lunar = ALGORITHMS["a2c"].defaults_for("LunarLander-v3")
    assert (lunar.num_envs, lunar.gamma, lunar.lr, lunar.anneal_lr, lunar.ent_coef) == (8, 0.995, 0.00083, True, 1e-5)
    for env_id in ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"):
        c = A2CConfig.for_env(env_id)
        assert (c.num_envs, c.normalize_obs, c.normalize_reward) == (1, True, True)
        assert dataclasses.replace(c, num_envs=8, normalize_obs=False, normalize_reward=False) == A2CConfig()
    assert A2CConfig.for_env("Acrobot-v1") == A2CConfig()


@pytest.mark.parametrize("env_id, message", [
    ("test/DictObs-v0", r"a2c needs a flat Box observation space, got Dict"),
    ("test/MultiDiscreteActions-v0", r"a2c supports Discrete and flat Box action spaces, got MultiDiscrete"),
    ("FrozenLake-v1", r"a2c needs a flat Box observation space, got Discrete\(16\)"),
])
def test_unsupported_space_names_a2c_and_the_space(env_id, message):
    with pytest.raises(UnsupportedSpaceError, match=message):
        a2c.train(env_id, TINY, steps=100)


# ---------------------------------------------------------------- Ψ and the loss are what they claim


def brute_force_targets(batch: Batch, value_fn, gamma: float) -> torch.Tensor:
    """y_t = Σ_k γ^k r_{t+k} + γ^m V(s_{t+m}), from the definition, one step at a time."""
    T, N = batch.rewards.shape
    y = torch.empty(T, N)
    with torch.no_grad():
        for i in range(N):
            for t in range(T):
                total, k = 0.0, 0
                for j in range(t, T):
                    total += gamma ** k * float(batch.rewards[j, i])
                    k += 1
                    if batch.terminated[j, i]:                         # nothing follows a terminal state
                        break
                    if batch.truncated[j, i] or j == T - 1:            # cut: V of the real next state
                        total += gamma ** k * float(value_fn(batch.next_obs[j, i]))
                        break
                y[t, i] = total
    return y


@pytest.mark.parametrize("shared", [False, True])
def test_n_step_advantage_and_target_follow_the_definition(shared):
    torch.manual_seed(0)
    config = A2CConfig(gamma=0.9, shared=shared, hidden=(8,), advantage="n-step")
    policy = make_policy("a2c", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), config.hidden)
    critic = a2c.make_critic(policy, 4, config)
    batch = make_batch()
    terms = a2c_loss(policy, critic, batch, config)
    with torch.no_grad():
        values, next_values = critic(batch.obs), critic(batch.next_obs)
    expected = psi.n_step_advantage(batch.rewards, values, next_values, batch.terminated, batch.truncated,
                                    0.9, n=5)
    torch.testing.assert_close(terms.advantages, expected)
    torch.testing.assert_close(terms.values, values)
    torch.testing.assert_close(terms.targets, brute_force_targets(batch, critic, 0.9))
    # GAE with λ = 1 gives the same numbers; with λ < 1 it is psi.gae's
    gae_terms = a2c_loss(policy, critic, batch, A2CConfig(gamma=0.9, shared=shared, hidden=(8,), advantage="gae"))
    torch.testing.assert_close(gae_terms.advantages, expected)
    torch.testing.assert_close(gae_terms.targets, terms.targets)
    lam = a2c_loss(policy, critic, batch, A2CConfig(gamma=0.9, shared=shared, hidden=(8,), advantage="gae",
                                                   gae_lambda=0.7))
    torch.testing.assert_close(lam.advantages, psi.gae(batch.rewards, values, next_values, batch.terminated,
                                                       batch.truncated, 0.9, 0.7))
    torch.testing.assert_close(lam.targets, lam.advantages + values)


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_loss_gradient_is_actor_plus_critic_minus_entropy(continuous, shared, normalize):
    torch.manual_seed(1)
    config = A2CConfig(gamma=0.95, shared=shared, hidden=(8, 8), vf_coef=0.25, ent_coef=0.03,
                       normalize_advantages=normalize)
    action_space = gym.spaces.Box(-2.0, 2.0, (2,)) if continuous else gym.spaces.Discrete(2)
    policy = make_policy("a2c", gym.spaces.Box(-1, 1, (4,)), action_space, config.hidden, log_std_init=-0.5)
    critic = a2c.make_critic(policy, 4, config)
    batch = make_batch(continuous)
    params = list(dict.fromkeys([*policy.parameters(), *critic.parameters()]))
    got = torch.autograd.grad(a2c_loss(policy, critic, batch, config).loss, params)

    # by hand: −mean(log π · Â) + c_V mean((V − y)²) − c_H mean(H), Â and y fixed
    y = brute_force_targets(batch, critic, 0.95)
    dist = policy.distribution(batch.obs)
    logp = policy.log_prob(dist, batch.actions)
    entropy = dist.entropy().sum(-1) if continuous else dist.entropy()
    values = critic(batch.obs)
    adv = y - values.detach()
    if normalize:
        adv = adv / adv.pow(2).mean().sqrt()
    manual = (-(logp * adv).mean() + 0.25 * ((values - y) ** 2).mean() - 0.03 * entropy.mean())
    expected = torch.autograd.grad(manual, params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_rmsprop_step_is_torchs_number_for_number():
    torch.manual_seed(0)
    config = A2CConfig(rms_alpha=0.9, rms_eps=1e-3)
    ours, theirs = torch.nn.Parameter(torch.randn(50)), torch.nn.Parameter(torch.randn(50))
    with torch.no_grad():
        theirs.copy_(ours)
    square_avg = torch.zeros(50)
    optimizer = torch.optim.RMSprop([theirs], lr=0.01, alpha=0.9, eps=1e-3)
    for lr in (0.01, 0.005, 0.001):
        optimizer.param_groups[0]["lr"] = lr
        ours.grad, theirs.grad = (g := torch.randn(50)), g.clone()
        a2c.rmsprop_step(ours, square_avg, lr, config)
        optimizer.step()
        assert torch.equal(ours, theirs)
    assert torch.equal(square_avg, optimizer.state[theirs]["square_avg"])


def test_updates_match_sb3s_a2c_on_the_same_steps(mujoco_box2d):
    """Two iterations of SB3's own A2C (its collect_rollouts, with the time limit's bootstrap folded
    into the reward, then its train) and of ours on the same transitions and the same sampled
    actions, from the same weights: the same parameters after each, with the benchmark's translation
    of the config (benchmarks/mujoco_box2d.py) as the settings."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.manual_seed(0)
    T, N = 5, 3
    config = A2CConfig(num_envs=N, n_steps=T, hidden=(8, 8), gamma=0.9, gae_lambda=0.8, vf_coef=0.4,
                       ent_coef=0.01, max_grad_norm=0.3, lr=0.01, log_std_init=-0.3)
    script = make_batch(continuous=True, T=2 * T, N=N, seed=3)   # two iterations' worth of steps
    script.truncated[T - 1, 2] = True   # the time limit at an iteration's last step too
    env = DummyVecEnv([lambda i=i: ScriptedEnv(script, i) for i in range(N)])
    model = sb3.A2C("MlpPolicy", env, device="cpu", seed=0, **mujoco_box2d.sb3_a2c_settings(config))
    theirs = model.policy
    space = env.observation_space
    policy = make_policy("a2c", space, env.action_space, config.hidden, config.log_std_init)
    critic = a2c.make_critic(policy, space.shape[0], config)
    pairs = copy_weights(policy, critic, theirs)
    flat = a2c.flatten_parameters(torch.nn.ModuleDict({"policy": policy, "critic": critic}))
    square_avg = torch.zeros_like(flat)

    _, callback = model._setup_learn(2 * T * N)
    for k in range(2):
        assert model.collect_rollouts(env, callback, model.rollout_buffer, n_rollout_steps=T)
        actions = torch.as_tensor(model.rollout_buffer.actions).clone()  # SB3's draws [T, N, ·], unclipped
        model.train()  # (its buffer's arrays come out of it flattened env by env)
        steps = slice(k * T, (k + 1) * T)
        batch = dataclasses.replace(script, obs=script.obs[steps], actions=actions, logp=script.logp[steps],
                                    rewards=script.rewards[steps], terminated=script.terminated[steps],
                                    truncated=script.truncated[steps], next_obs=script.next_obs[steps],
                                    starts=script.starts[steps], timesteps=script.timesteps[steps])
        a2c.apply_update(a2c_loss(policy, critic, batch, config).loss, flat, square_avg, config.lr, config)
        assert_same_weights(pairs, policy, theirs)
    assert not torch.equal(policy.log_std, torch.full_like(policy.log_std, config.log_std_init))  # it learned


def test_runs_sb3s_program_on_halfcheetah_until_rounding_parts_them(mujoco_box2d, monkeypatch, one_thread):
    """The whole run, not one update: SB3's A2C (its VecNormalize, clipping and collection) and ours
    on HalfCheetah-v5 with the Zoo's settings, from the same weights, the same environment seed and
    the same action noise, agree step for step on observations, actions, scaled rewards and weights.
    Not for long: the float rounding of two implementations (1e-7) grows in MuJoCo's dynamics by
    about tenfold every five steps, to O(1) within some 60 steps (docs/mujoco.md, A2C)."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import VecNormalize

    env_id, seed, iterations = "HalfCheetah-v5", 3, 4
    config = A2CConfig.for_env(env_id)
    noise = shared_noise(monkeypatch)
    env = VecNormalize(mujoco_box2d.sb3_env(env_id, 1, seed), **mujoco_box2d.sb3_normalize(config))
    model = sb3.A2C("MlpPolicy", env, seed=seed, device="cpu", **mujoco_box2d.sb3_a2c_settings(config))
    policy, critic = a2c.make_networks(env_id, None, config)
    pairs = copy_weights(policy, critic, model.policy)
    flat = a2c.flatten_parameters(torch.nn.ModuleDict({"policy": policy, "critic": critic}))
    square_avg = torch.zeros_like(flat)
    _, callback = model._setup_learn(iterations * config.n_steps)
    with Rollout.for_config(env_id, config, seed, None, "cpu") as rollout:
        for _ in range(iterations):
            noise.use("sb3")
            model.collect_rollouts(env, callback, model.rollout_buffer, n_rollout_steps=config.n_steps)
            buffer = model.rollout_buffer
            theirs = {"obs": buffer.observations.copy(), "actions": buffer.actions.copy(),
                      "rewards": buffer.rewards.copy()}
            model.train()
            noise.use("ours")
            batch = rollout.collect(policy, config.n_steps)
            a2c.apply_update(a2c_loss(policy, critic, batch, config).loss, flat, square_avg, config.lr, config)
            for name, value in theirs.items():
                np.testing.assert_allclose(getattr(batch, name).numpy(), value, atol=1e-4, err_msg=name)
            assert_same_weights(pairs, policy, model.policy, rtol=1e-4, atol=1e-5)
    assert np.abs(batch.obs.numpy()).max() > 0.5 and not np.allclose(batch.rewards.numpy(), 0)


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))])
def test_policy_sample_is_the_distributions_draw_bit_for_bit(action_space):
    # Rollout.collect acts with policy.sample, the distribution's numbers without the object
    torch.manual_seed(0)
    policy = make_policy("a2c", gym.spaces.Box(-1, 1, (4,)), action_space, (8,), log_std_init=-0.5)
    obs = torch.randn(64, 4) * 3
    with torch.no_grad():
        torch.manual_seed(1)
        actions, logp = policy.sample(obs)
        torch.manual_seed(1)
        dist = policy.distribution(obs)
        expected = dist.sample()
        assert torch.equal(actions, expected) and torch.equal(logp, policy.log_prob(dist, expected))
    assert logp.shape == (64,)


def test_shared_network_is_one_trunk_with_two_heads():
    torch.manual_seed(0)
    separate = A2CConfig(hidden=(32, 32))
    policy = make_policy("a2c", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), (32, 32))
    critic = a2c.make_critic(policy, 4, A2CConfig(hidden=(32, 32), shared=True))
    assert isinstance(critic, SharedValue)
    trunk = {id(p) for p in critic.trunk.parameters()}
    assert trunk == {id(p) for p in policy.logits[:-1].parameters()}     # the same tensors, not copies
    head = sum(p.numel() for p in critic.head.parameters())
    assert head == 33
    assert isinstance(a2c.make_critic(policy, 4, separate), ValueFunction)
    # a Gaussian policy's mean network is the trunk
    gaussian = make_policy("a2c", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), (16,))
    shared = a2c.make_critic(gaussian, 3, A2CConfig(hidden=(16,), shared=True))
    assert {id(p) for p in shared.trunk.parameters()} == {id(p) for p in gaussian.mean[:-1].parameters()}
    assert shared(torch.zeros(5, 3)).shape == (5,)


# ---------------------------------------------------------------- runs, logs, seeds


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("advantage", ["n-step", "gae"])
def test_runs_and_logs_finite_numbers(env_id, shared, advantage):
    config = A2CConfig(num_envs=4, hidden=(16,), shared=shared, advantage=advantage, gae_lambda=0.95,
                       log_interval=25, anneal_lr=True, ent_coef=0.01)
    result = a2c.train(env_id, config, steps=2_000, seed=0)
    log = result.log
    assert list(log.columns) == a2c.LOG_COLUMNS
    # 100 iterations of 4 × 5 steps, a row every 25
    assert list(log["iteration"]) == [25, 50, 75, 100] and list(log["env_steps"]) == [500, 1000, 1500, 2000]
    assert result.steps == 2000 and result.status == "finished" and result.algo == "a2c"
    numbers = log.drop(columns=["return", "length"]).to_numpy(dtype=float)
    assert np.isfinite(numbers).all(), log
    assert (log["entropy"] > 0).all() and (log["grad_norm"] > 0).all()
    assert log["lr"].is_monotonic_decreasing and log["lr"].iloc[0] < config.lr
    if env_id == "Pendulum-v1":
        assert isinstance(result.policy, GaussianPolicy) and log["episodes"].sum() == 8   # 200-step episodes
    else:
        assert (log["episodes"] > 0).all() and np.isfinite(log["return"]).all()


def test_the_last_iteration_is_shortened_to_the_budget():
    result = a2c.train("CartPole-v1", TINY, steps=1_005, seed=0)     # 100 iterations of 2 × 5, then 3 × 2
    assert result.steps == 1_006 and list(result.log["iteration"])[-2:] == [100, 101]
    assert list(result.log["env_steps"])[-2:] == [1_000, 1_006]


def test_same_seed_same_log_bit_for_bit():
    config = A2CConfig(num_envs=4, log_interval=20)
    runs = [a2c.train("CartPole-v1", config, steps=4_000, seed=3) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].log, runs[1].log, check_exact=True)
    for a, b in zip(runs[0].policy.state_dict().values(), runs[1].policy.state_dict().values()):
        assert torch.equal(a, b)
    other = a2c.train("CartPole-v1", config, steps=4_000, seed=4)
    assert not runs[0].log.equals(other.log)


def test_callback_sees_every_iteration_and_is_left_out_of_the_clock():
    seen = []
    result = a2c.train("CartPole-v1", TINY, steps=400, seed=0,
                       callback=lambda env_steps, policy: seen.append((env_steps, policy.act(np.zeros(4)))))
    assert [s for s, _ in seen] == list(range(10, 401, 10)) and result.steps == 400


@pytest.mark.parametrize("env_id, shared", [("CartPole-v1", True), ("Pendulum-v1", False)])
def test_save_then_load_gives_the_same_greedy_actions(tmp_path, env_id, shared):
    config = A2CConfig(num_envs=2, hidden=(16,), shared=shared, log_interval=10)
    result = a2c.train(env_id, config, steps=400, seed=0)
    result.save(tmp_path)
    for name in ("config.json", "progress.csv", "learning_curve.png", "policy.pt", "policy.json"):
        assert (tmp_path / name).is_file()
    loaded = rlcourse.load(tmp_path)
    assert loaded.algo == "a2c" and loaded.config == config and loaded.steps == result.steps
    pd.testing.assert_frame_equal(loaded.log, result.log, check_dtype=False)
    assert type(load_policy(tmp_path)) is type(result.policy)
    space = gym.make(env_id).observation_space
    for _ in range(50):
        obs = space.sample()
        np.testing.assert_array_equal(result.policy.act(obs), loaded.policy.act(obs))
    assert evaluate(loaded, episodes=3) == evaluate(result, episodes=3)


def test_cli_trains_and_evaluates_cartpole(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "a2c", "--env", "CartPole-v1", "--steps", "2000", "--out", str(out), "--quiet",
                 "--set", "advantage=gae", "gae_lambda=0.9", "shared=true", "log_interval=10"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["env_steps"] == 2000
    log = pd.read_csv(out / "progress.csv")
    assert len(log) == 5 and summary["episodes"] == log["episodes"].sum() > 5
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["advantage"], config["gae_lambda"], config["shared"]) == ("gae", 0.9, True)
    assert main(["evaluate", str(out), "--episodes", "3"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluation["episodes"] == 3 and 8 <= evaluation["mean_return"] <= 500


def test_cli_reports_unsupported_spaces_bad_settings_and_a_missing_checkpoint(capsys):
    assert main(["train", "a2c", "--env", "FrozenLake-v1", "--quiet"]) == 2
    assert "a2c needs a flat Box observation space" in capsys.readouterr().err
    assert main(["train", "a2c", "--env", "CartPole-v1", "--set", "advantage=q"]) == 2
    assert "A2CConfig.advantage = 'q' is not allowed" in capsys.readouterr().err
    assert main(["train", "a2c", "--env", "CartPole-v1", "--resume", "--out", "nowhere/run"]) == 2
    assert "resume=True needs a checkpoint to resume from, but there is no checkpoint.pkl in nowhere/run" \
        in capsys.readouterr().err


# ---------------------------------------------------------------- failures keep what was learned


def test_nan_reward_raises_with_the_step_and_keeps_the_checkpoint(tmp_path):
    # each of the 2 copies returns a NaN reward at its 1000th step, in the iteration that ends at
    # env step 2000; checkpoints were written every 400 steps, the last at 1600
    with pytest.raises(NonFiniteError, match=r"non-finite loss at env step 2000.*checkpoint") as err:
        a2c.train("test/NaNRewardCartPole-v0", TINY, steps=10_000, seed=0, out=tmp_path,
                  checkpoint_every=400)
    assert err.value.step == 2000
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["env_steps"] == 1600 and checkpoint["iteration"] == 160 and len(checkpoint["rows"]) == 16
    assert {"policy", "critic", "square_avg", "rng"} <= set(checkpoint)
    policy = make_policy("a2c", gym.make("CartPole-v1").observation_space, gym.make("CartPole-v1").action_space,
                         (16,))
    policy.load_state_dict(checkpoint["policy"])
    critic = ValueFunction(4, (16,))
    critic.load_state_dict(checkpoint["critic"])
    parameters = [*policy.parameters(), *critic.parameters()]
    assert all(torch.isfinite(p).all() for p in parameters)
    assert checkpoint["square_avg"].shape == (sum(p.numel() for p in parameters),)   # RMSprop's state


def test_ctrl_c_returns_what_was_learned(tmp_path):
    # each copy raises KeyboardInterrupt at its 500th step, in the 100th iteration
    result = a2c.train("test/InterruptCartPole-v0", TINY, steps=10_000, seed=0)
    assert result.status == "interrupted" and result.steps == 990
    assert list(result.log["iteration"]) == [10 * k for k in range(1, 10)] + [99]
    assert evaluate_policy(result.policy, "CartPole-v1", episodes=2, print_fn=None)["mean_return"] > 0
    out = tmp_path / "run"
    assert main(["train", "a2c", "--env", "test/InterruptCartPole-v0", "--steps", "10000",
                 "--out", str(out), "--quiet", "--set", "num_envs=2"]) == 130
    assert rlcourse.load(out).steps == 990


# ---------------------------------------------------------------- learning


def test_cartpole_learns_in_seconds():
    # the default config (the RL Zoo's); measured greedy means at 40,000 steps for seeds 0-4:
    # 500, 258, 487, 423, 487 (a random policy lasts about 22 steps)
    result = a2c.train("CartPole-v1", steps=40_000, seed=0)
    assert evaluate(result, episodes=10, print_fn=None)["mean_return"] >= 150


@pytest.mark.slow
def test_cartpole_solved_in_500k_steps_for_four_of_five_seeds():
    # docs/benchmarks.md, ten seeds of `rlcourse train a2c --env CartPole-v1 --steps 500000`: every final
    # greedy mean 500 (20 unseen episodes each); seeds 0-4 give 5 of 5 here, and the bar leaves one seed's
    # margin for another machine's floating-point path
    result = run_seeds("a2c", "CartPole-v1", range(5), steps=500_000, threshold=475, workers=2)
    assert result.summary["solved"] >= 4, result.runs


@pytest.mark.slow
def test_acrobot_reaches_minus_100_without_observation_normalisation_for_four_of_five_seeds():
    # the RL Zoo's Acrobot-v1 settings (hyperparams/a2c.yml: n_envs 16, 500,000 steps) without its
    # VecNormalize. docs/benchmarks.md, ten seeds: final greedy means -77.5 to -88.4 over 20 unseen episodes,
    # all ten at -100 or more (random: -500); seeds 0-4 give 5 of 5 here, and the bar leaves one seed's
    # margin for another machine
    result = run_seeds("a2c", "Acrobot-v1", range(5), steps=500_000, threshold=-100, sets={"num_envs": "16"},
                       workers=2)
    assert result.summary["solved"] >= 4, result.runs


# ---------------------------------------------------------------- the benchmark


def test_benchmark_quick_runs_and_prints_the_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "a2c.py"), "--quick", "--no-sb3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^rlcourse\s+(?:[\d,]+|> 4,000)\s+\d/1\s+[\d,]+\s+[\d.]+\s+\d/1\s+\d+\s*$", proc.stdout,
                     flags=re.MULTILINE), proc.stdout
    assert "SB3" not in proc.stdout
