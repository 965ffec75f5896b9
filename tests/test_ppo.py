import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.pg import ppo
from rlcourse.pg.objective import importance_sampled_loss, policy_gradient_loss
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy, ValueFunction
from rlcourse.pg.objective import clipped_surrogate_loss
from rlcourse.pg.ppo import Minibatch, PPOConfig, ppo_loss
from rlcourse.play import evaluate, evaluate_policy
from rlcourse.run import NonFiniteError, UnsupportedSpaceError, load_checkpoint
from rlcourse.seeds import run_seeds

# registered in tests/conftest.py: test/NaNRewardCartPole-v0, test/InterruptCartPole-v0,
# test/DictObs-v0, test/MultiDiscreteActions-v0

TINY = PPOConfig(num_envs=2, n_steps=16, batch_size=8, n_epochs=2, hidden=(16,))


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# ---------------------------------------------------------------- configuration and spaces


@pytest.mark.parametrize("field, value, message", [
    ("surrogate", "kl", r"PPOConfig.surrogate = 'kl' is not allowed: it must be one of 'clip', 'none', "
                        r"'adaptive-kl', 'fixed-kl'"),
    ("clip_range", 0.0, r"PPOConfig.clip_range = 0.0 is out of range: it must be in \(0, inf\)"),
    ("kl_coef", -1.0, r"PPOConfig.kl_coef = -1.0 is out of range: it must be in \[0, inf\)"),
    ("kl_target", 0.0, r"PPOConfig.kl_target = 0.0 is out of range: it must be in \(0, inf\)"),
    ("batch_size", 0, r"PPOConfig.batch_size = 0 is out of range: it must be in \[1, inf\)"),
    ("n_epochs", 1.5, r"PPOConfig.n_epochs = 1.5 must be an integer"),
    ("gae_lambda", 1.1, r"PPOConfig.gae_lambda = 1.1 is out of range: it must be in \[0, 1\]"),
    ("adam_eps", 0.0, r"PPOConfig.adam_eps = 0.0 is out of range: it must be in \(0, inf\)"),
    ("clip_range_vf", -0.2, r"PPOConfig.clip_range_vf = -0.2 is out of range: it must be in \(0, inf\)"),
    ("target_kl", 0.0, r"PPOConfig.target_kl = 0.0 is out of range: it must be in \(0, inf\)"),
    ("anneal_clip", "yes", r"PPOConfig.anneal_clip = 'yes' is not allowed"),
    ("hidden", (), None),
    ("hidden", [64], r"PPOConfig.hidden = \[64\] must be a tuple of layer sizes"),
])
def test_config_errors_name_the_field_and_its_range(field, value, message):
    if message is None:           # no hidden layer: a linear policy is allowed
        PPOConfig(**{field: value})
        return
    with pytest.raises(ConfigError, match=message):
        PPOConfig(**{field: value})


def test_defaults_are_sb3s_and_for_env_swaps_in_the_rl_zoos():
    c = PPOConfig()     # stable_baselines3/ppo/ppo.py
    assert (c.n_steps, c.batch_size, c.n_epochs, c.gamma, c.gae_lambda, c.lr) == (2048, 64, 10, 0.99, 0.95, 3e-4)
    assert (c.clip_range, c.vf_coef, c.ent_coef, c.max_grad_norm, c.adam_eps) == (0.2, 0.5, 0.0, 0.5, 1e-5)
    assert (c.surrogate, c.normalize_advantages, c.clip_range_vf, c.target_kl) == ("clip", True, None, None)
    cartpole = PPOConfig.for_env("CartPole-v1")    # rl-baselines3-zoo hyperparams/ppo.yml
    assert (cartpole.num_envs, cartpole.n_steps, cartpole.batch_size, cartpole.n_epochs) == (8, 32, 256, 20)
    assert (cartpole.gamma, cartpole.gae_lambda, cartpole.lr, cartpole.anneal_lr, cartpole.anneal_clip) == \
        (0.98, 0.8, 1e-3, True, True)
    pendulum = PPOConfig.for_env("Pendulum-v1")
    assert (pendulum.num_envs, pendulum.n_steps, pendulum.batch_size, pendulum.gamma, pendulum.lr) == \
        (4, 1024, 64, 0.9, 1e-3)
    assert PPOConfig.for_env("Acrobot-v1") == c
    assert ALGORITHMS["ppo"].defaults_for("CartPole-v1") == cartpole and ALGORITHMS["ppo"].train is ppo.train
    assert rlcourse.train("ppo", "CartPole-v1", steps=256, n_epochs=1).config == replace(cartpole, n_epochs=1)


@pytest.mark.parametrize("env_id, message", [
    ("test/DictObs-v0", r"ppo needs a flat Box observation space, got Dict"),
    ("test/MultiDiscreteActions-v0", r"ppo supports Discrete and flat Box action spaces, got MultiDiscrete"),
])
def test_unsupported_space_names_ppo_and_the_space(env_id, message):
    with pytest.raises(UnsupportedSpaceError, match=message):
        ppo.train(env_id, TINY, steps=100)


# ---------------------------------------------------------------- the surrogates are what they claim


def test_clipped_surrogate_matches_its_definition_sample_by_sample():
    g = torch.Generator().manual_seed(0)
    logp_old = torch.randn(200, generator=g, dtype=torch.float64)
    logp = (logp_old + 0.5 * torch.randn(200, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(200, generator=g, dtype=torch.float64)
    eps = 0.2
    loss = clipped_surrogate_loss(logp, logp_old, adv, eps)
    expected = 0.0
    for lp, lo, a in zip(logp.tolist(), logp_old.tolist(), adv.tolist()):
        r = np.exp(lp - lo)
        expected += min(r * a, min(max(r, 1 - eps), 1 + eps) * a)
    assert loss.item() == pytest.approx(-expected / 200, rel=1e-12)
    (grad,) = torch.autograd.grad(loss, logp)
    ratio = (logp - logp_old).exp().detach()
    # no gradient where the ratio has already moved past 1 ± ε in the direction Â favours
    flat = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    assert flat.any() and (~flat).any()
    assert torch.all(grad[flat] == 0)
    torch.testing.assert_close(grad[~flat], -(ratio * adv)[~flat] / 200)
    mask = torch.arange(200) % 3 == 0
    torch.testing.assert_close(clipped_surrogate_loss(logp, logp_old, adv, eps, mask),
                               clipped_surrogate_loss(logp[mask], logp_old[mask], adv[mask], eps))


def minibatch(policy, critic, continuous: bool, B: int = 32, seed: int = 0, shift: float = 0.0) -> Minibatch:
    """A minibatch whose actions were drawn by ``policy`` (then nudged by ``shift`` in log-prob)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, 3, generator=g)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        logp = policy.log_prob(dist, actions) + shift * torch.randn(B, generator=g)
        values = critic(obs)
    adv = torch.randn(B, generator=g)
    return Minibatch(obs, actions, logp, adv, values + adv, values)


def networks(continuous: bool, seed: int = 0):
    torch.manual_seed(seed)
    policy = GaussianPolicy(3, 2, (8,)) if continuous else CategoricalPolicy(3, 4, (8,))
    return policy, ValueFunction(3, (8,))


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("surrogate", ["none", "clip", "fixed-kl", "adaptive-kl"])
def test_every_surrogate_has_the_policy_gradient_at_theta_old(continuous, surrogate):
    # at θ = θ_old the ratio is 1, no sample is clipped and the KL penalty is at its minimum
    # (value 0, gradient 0): all four have the gradient of the one objective
    policy, critic = networks(continuous)
    mb = minibatch(policy, critic, continuous)
    config = PPOConfig(surrogate=surrogate, kl_coef=3.0, normalize_advantages=False)
    with torch.no_grad():
        old = policy.distribution(mb.obs)
    terms = ppo_loss(policy, critic, mb, config, clip_range=0.2, kl_coef=3.0, old_dist=old)
    grads = torch.autograd.grad(terms.policy_loss, list(policy.parameters()))
    dist = policy.distribution(mb.obs)
    reference = policy_gradient_loss(policy.log_prob(dist, mb.actions), mb.advantages)
    for got, want in zip(grads, torch.autograd.grad(reference, list(policy.parameters()))):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert float(terms.approx_kl) == pytest.approx(0, abs=1e-6) and float(terms.clipfrac) == 0


@pytest.mark.parametrize("continuous", [False, True])
def test_loss_terms_assembled_by_hand(continuous):
    policy, critic = networks(continuous, seed=1)
    mb = minibatch(policy, critic, continuous, shift=0.3)
    mb = mb._replace(returns=mb.returns + torch.linspace(-1, 1, len(mb.returns)))
    with torch.no_grad():
        old = CategoricalPolicy(3, 4, (8,)).distribution(mb.obs) if not continuous else \
            GaussianPolicy(3, 2, (8,), log_std_init=-0.3).distribution(mb.obs)
    config = PPOConfig(surrogate="fixed-kl", vf_coef=0.7, ent_coef=0.05, clip_range_vf=0.1)
    terms = ppo_loss(policy, critic, mb, config, clip_range=0.2, kl_coef=2.0, old_dist=old)
    adv = (mb.advantages - mb.advantages.mean()) / (mb.advantages.std() + 1e-8)
    dist = policy.distribution(mb.obs)
    logp = policy.log_prob(dist, mb.actions)
    kl = torch.distributions.kl_divergence(old, dist)
    kl = kl.sum(-1) if continuous else kl
    entropy = dist.entropy().sum(-1) if continuous else dist.entropy()
    policy_loss = importance_sampled_loss(logp, mb.logp_old, adv) + 2.0 * kl.mean()
    v = critic(mb.obs)
    v_clipped = mb.values_old + torch.clamp(v - mb.values_old, -0.1, 0.1)
    value_loss = torch.maximum((v - mb.returns) ** 2, (v_clipped - mb.returns) ** 2).mean()
    torch.testing.assert_close(terms.policy_loss, policy_loss)
    torch.testing.assert_close(terms.value_loss, value_loss)
    torch.testing.assert_close(terms.entropy, entropy.mean())
    torch.testing.assert_close(terms.loss, policy_loss + 0.7 * value_loss - 0.05 * entropy.mean())
    ratio = (logp - mb.logp_old).exp().detach()
    torch.testing.assert_close(terms.approx_kl, ((ratio - 1) - ratio.log()).mean())
    torch.testing.assert_close(terms.clipfrac, ((ratio - 1).abs() > 0.2).float().mean())
    assert 0 < float(terms.clipfrac) < 1 and float(terms.approx_kl) > 0


@pytest.mark.parametrize("continuous", [False, True])
def test_the_compiled_loss_is_the_eager_one_and_reads_each_new_epsilon(continuous):
    # torch.compile traces ppo_loss once; ε and β must stay inputs of the traced code, not constants
    # baked into it: with a smaller ε more samples are clipped, in the compiled loss as in the eager one
    policy, critic = networks(continuous, seed=2)
    mb = minibatch(policy, critic, continuous, shift=0.3)
    config = PPOConfig(vf_coef=0.7, ent_coef=0.05)
    compiled = ppo.compiled_ppo_loss()
    clipfracs = []
    for clip_range in (0.3, 0.05):
        eager = ppo_loss(policy, critic, mb, config, clip_range, 1.0)
        got = compiled(policy, critic, mb, config, clip_range, 1.0)
        for name, a, b in zip(ppo.Terms._fields, got, eager):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
        want = torch.autograd.grad(eager.loss, list(policy.parameters()) + list(critic.parameters()))
        for a, b in zip(torch.autograd.grad(got.loss, list(policy.parameters()) + list(critic.parameters())), want):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        clipfracs.append(float(got.clipfrac))
    assert clipfracs[0] < clipfracs[1]


@pytest.mark.slow  # torch.compile's cold start (8-11 s) on top of two runs; the loss's own test stays in the default run
def test_a_run_with_the_compiled_loss_learns_as_the_eager_one_does(monkeypatch):
    # the same seed collects the same first batch; the first update's loss terms agree to rounding
    # (compiled kernels sum in another order, so the runs part later, as on another machine)
    calls = []

    def counted():
        loss = compiled_ppo_loss()
        return lambda *args: calls.append(1) or loss(*args)

    compiled_ppo_loss = ppo.compiled_ppo_loss
    monkeypatch.setattr(ppo, "compiled_ppo_loss", counted)
    config = replace(TINY, compile_loss=True)
    compiled = rlcourse.train("ppo", "CartPole-v1", steps=64, seed=3, config=config)
    assert len(calls) == 2 * 2 * 4                   # iterations × epochs × minibatches of 8 in 32 steps
    eager = rlcourse.train("ppo", "CartPole-v1", steps=64, seed=3, config=TINY)
    first = ["policy_loss", "value_loss", "entropy", "approx_kl"]
    np.testing.assert_allclose(compiled.log[first].iloc[0], eager.log[first].iloc[0], rtol=1e-4, atol=1e-6)
    assert np.isfinite(compiled.log[first].to_numpy()).all() and len(compiled.log) == len(eager.log) == 2


def test_kl_surrogates_without_the_old_distribution_say_what_is_missing():
    policy, critic = networks(False)
    mb = minibatch(policy, critic, False)
    with pytest.raises(ValueError, match=r"surrogate 'fixed-kl' needs old_dist"):
        ppo_loss(policy, critic, mb, PPOConfig(surrogate="fixed-kl"), clip_range=0.2, kl_coef=1.0)


@pytest.mark.parametrize("kl, expected", [(0.001, 0.5), (0.01 / 1.5 - 1e-9, 0.5), (0.01 / 1.5, 1.0), (0.01, 1.0),
                                          (0.015, 1.0), (0.015 + 1e-9, 2.0), (0.1, 2.0)])
def test_adaptive_kl_coefficient_halves_keeps_or_doubles(kl, expected):
    assert ppo.adapt_kl_coef(1.0, kl, 0.01) == expected


def test_adaptive_kl_run_follows_the_rule_row_by_row():
    config = replace(TINY, surrogate="adaptive-kl", kl_coef=1.0, kl_target=0.003)
    log = ppo.train("CartPole-v1", config, steps=1_600, seed=0).log
    coefs, kls = log["kl_coef"].tolist(), log["kl"].tolist()
    assert coefs[0] == 1.0
    for before, kl, after in zip(coefs, kls, coefs[1:]):
        assert after == ppo.adapt_kl_coef(before, kl, 0.003)
    assert len(set(coefs)) > 1


def test_target_kl_stops_the_epochs_early():
    config = replace(TINY, **{"n_epochs": 30, "target_kl": 1e-4, "lr": 3e-3})
    log = ppo.train("CartPole-v1", config, steps=640, seed=0).log
    assert log["epochs"].min() < 30 and (log["epochs"] >= 1).all()
    free = ppo.train("CartPole-v1", replace(TINY, **{"n_epochs": 30}), steps=640, seed=0).log
    assert (free["epochs"] == 30).all()


def test_clip_keeps_the_update_closer_than_no_clipping():
    # many epochs at a large step size: without a limit the policy runs far from π_old
    base = {**TINY.__dict__, "n_epochs": 20, "lr": 1e-2, "n_steps": 64}
    kls = {s: ppo.train("CartPole-v1", PPOConfig(**{**base, "surrogate": s}), steps=1_280, seed=0).log["kl"].mean()
           for s in ("none", "clip")}
    assert kls["clip"] < kls["none"]


# ---------------------------------------------------------------- runs


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("surrogate", ["none", "clip", "adaptive-kl", "fixed-kl"])
def test_runs_and_logs_finite_numbers(env_id, surrogate):
    config = replace(TINY, **{"surrogate": surrogate, "clip_range_vf": 0.5, "ent_coef": 0.01,
                          "anneal_lr": True, "anneal_clip": True})
    result = ppo.train(env_id, config, steps=320, seed=0)
    log = result.log
    assert list(log.columns) == ppo.LOG_COLUMNS and len(log) == 10 and result.steps == 320
    numbers = log.drop(columns=["return", "length", "explained_variance"])
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    # the exact KL of two categoricals can round to -1e-8 in float32
    assert (log["approx_kl"] >= 0).all() and (log["kl"] >= -1e-6).all() and log["clipfrac"].between(0, 1).all()
    assert log["lr"].iloc[0] == config.lr and log["lr"].is_monotonic_decreasing
    assert log["clip_range"].iloc[-1] == pytest.approx(0.2 / 10)


def test_the_last_iteration_is_shortened_to_the_budget():
    result = ppo.train("CartPole-v1", TINY, steps=100, seed=0)     # 3 iterations of 2 × 16, then 2 × 2
    assert result.steps == 100 and list(result.log["env_steps"]) == [32, 64, 96, 100]


def test_same_seed_same_log_bit_for_bit():
    runs = [ppo.train("CartPole-v1", TINY, steps=640, seed=3) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].log, runs[1].log, check_exact=True)
    for a, b in zip(runs[0].policy.state_dict().values(), runs[1].policy.state_dict().values()):
        assert torch.equal(a, b)
    assert not runs[0].log.equals(ppo.train("CartPole-v1", TINY, steps=640, seed=4).log)


def test_callback_sees_every_iteration():
    seen = []
    ppo.train("CartPole-v1", TINY, steps=160, seed=0, callback=lambda env_steps, policy: seen.append(env_steps))
    assert seen == [32, 64, 96, 128, 160]


def test_save_load_and_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "ppo", "--env", "Pendulum-v1", "--steps", "512", "--out", str(out), "--quiet",
                 "--set", "n_steps=64", "surrogate=adaptive-kl", "hidden=16"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["env_steps"] == 512
    config = json.loads((out / "config.json").read_text())["config"]
    # the RL Zoo's Pendulum settings, with the two overrides
    assert (config["num_envs"], config["gamma"], config["n_steps"], config["surrogate"]) == (4, 0.9, 64, "adaptive-kl")
    loaded = rlcourse.load(out)
    assert loaded.algo == "ppo" and isinstance(loaded.policy, GaussianPolicy)
    obs = gym.make("Pendulum-v1").observation_space.sample()
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 2
    assert np.all(np.abs(loaded.policy.act(obs)) <= 2.0)
    assert main(["train", "ppo", "--env", "CartPole-v1", "--set", "surrogate=kl", "--quiet"]) == 2
    assert "PPOConfig.surrogate = 'kl' is not allowed" in capsys.readouterr().err
    assert main(["train", "ppo", "--env", "FrozenLake-v1", "--quiet"]) == 2
    assert "ppo needs a flat Box observation space" in capsys.readouterr().err


def test_nan_reward_raises_with_the_step_and_keeps_the_checkpoint(tmp_path):
    # each of the 2 copies returns a NaN reward at its 1000th step, in the iteration that ends at 2016
    with pytest.raises(NonFiniteError, match=r"non-finite loss at env step 2016.*checkpoint") as err:
        ppo.train("test/NaNRewardCartPole-v0", TINY, steps=10_000, seed=0, out=tmp_path, checkpoint_every=640)
    assert err.value.step == 2016
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["env_steps"] == 1920 and {"policy", "critic", "optimizer", "rng"} <= set(checkpoint)
    assert all(torch.isfinite(t).all() for t in checkpoint["policy"].values())


def test_ctrl_c_returns_what_was_learned():
    result = ppo.train("test/InterruptCartPole-v0", TINY, steps=10_000, seed=0)
    assert result.status == "interrupted" and result.steps == 992 and len(result.log) == 31
    assert evaluate_policy(result.policy, "CartPole-v1", episodes=2, print_fn=None)["mean_return"] > 0


# ---------------------------------------------------------------- learning


def test_cartpole_learns_in_seconds():
    # the RL Zoo settings, a third of their budget: greedy means 500, 500, 500 for seeds 0-2 at 100k
    result = ppo.train("CartPole-v1", steps=40_000, seed=0)
    assert evaluate(result, episodes=10, print_fn=None)["mean_return"] >= 200


@pytest.mark.slow
def test_cartpole_100k_reaches_475_for_four_of_five_seeds():
    # docs/benchmarks.md, ten seeds of the command `rlcourse train ppo --env CartPole-v1 --steps 100000`:
    # final greedy mean 500 on nine seeds, 367.6 on seed 7 (20 unseen episodes each); seeds 0-4 give 5 of 5
    # here, and the bar leaves one seed's margin for another machine's floating-point path
    result = run_seeds("ppo", "CartPole-v1", range(5), steps=100_000, threshold=475, workers=2)
    assert result.summary["solved"] >= 4, result.runs


@pytest.mark.slow
def test_pendulum_200k_reaches_minus_250_for_four_of_five_seeds():
    # docs/benchmarks.md, ten seeds of `rlcourse train ppo --env Pendulum-v1 --steps 200000`: final greedy
    # means -98 to -238 over 20 unseen episodes on nine seeds, -407 on seed 8; seeds 0-4 give 5 of 5 here
    # (seed 1: -237.6), and the bar leaves one seed's margin for another machine
    result = run_seeds("ppo", "Pendulum-v1", range(5), steps=200_000, threshold=-250, workers=2)
    assert result.summary["solved"] >= 4, result.runs


# ---------------------------------------------------------------- Gymnasium's own vector CartPole


def test_native_vector_cartpole_drops_reset_steps_and_replays_as_single_environments():
    """vectorization="vector_entry_point": one NumPy simulation of all N with NEXT_STEP autoreset. Each
    episode in the batch, replayed from its first state in a plain CartPole-v1 (what "sync" steps) with the
    same actions, gives the same observations, flags, returns and lengths; the reset step after each end is
    marked invalid and no valid transition crosses from one episode into the next."""
    from rlcourse.pg.policies import make_policy
    from rlcourse.pg.rollout import Rollout

    with Rollout("CartPole-v1", 4, seed=0, vectorization="vector_entry_point") as rollout:
        states, step = [], rollout.envs.step
        rollout.envs.step = lambda action: states.append(rollout.envs.state.T.copy()) or step(action)
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space)
        b = rollout.collect(policy, 200)
    valid, done = b.valid.numpy(), (b.terminated | b.truncated).numpy()
    assert done.sum() >= 20 and (~valid).sum() >= 20
    np.testing.assert_array_equal(~valid[1:], done[:-1])  # exactly the step after each end is a reset step
    assert not done[~valid].any() and (b.rewards.numpy()[~valid] == 0).all()
    returns, lengths = [], []
    for i, t in zip(*np.nonzero(valid.T)):  # column by column: one environment's episodes in turn
        if b.starts[t, i]:  # a new episode: a plain CartPole put in the vector env's state
            assert b.timesteps[t, i] == 0 and (t == 0 or not valid[t - 1, i])
            env = gym.make("CartPole-v1")
            env.reset(seed=0)
            env.unwrapped.state, steps = states[t][i], 0
        else:  # the same episode goes on: s_t is the s_{t+1} of the last valid step
            last = t - 1
            assert valid[last, i] and not done[last, i]
            np.testing.assert_array_equal(b.obs[t, i], b.next_obs[last, i])
        obs, reward, terminated, truncated, _ = env.step(int(b.actions[t, i]))
        steps += 1
        np.testing.assert_allclose(b.next_obs[t, i], obs, atol=1e-5)
        assert (reward, terminated, truncated) == (b.rewards[t, i], b.terminated[t, i], b.truncated[t, i])
        if terminated or truncated:
            returns.append(float(steps)), lengths.append(steps)
    assert sorted(b.episode_returns) == sorted(returns) and sorted(b.episode_lengths) == sorted(lengths)


def test_native_vector_env_where_there_is_none_is_a_config_error():
    config = replace(TINY, vectorization="vector_entry_point")
    with pytest.raises(ConfigError, match="Pendulum-v1 has no vectorised implementation in Gymnasium"):
        ppo.train("Pendulum-v1", config, steps=64, seed=0)
    with pytest.raises(ConfigError, match="vectorization"):
        replace(TINY, vectorization="native")


def test_native_vector_cartpole_ppo_drops_the_reset_rows_and_resumes_bit_for_bit(tmp_path):
    from resumed import assert_resumes_bit_for_bit

    config = replace(TINY, vectorization="vector_entry_point")
    straight, _ = assert_resumes_bit_for_bit(ppo.train, "CartPole-v1", config, tmp_path, steps=640, every=256,
                                             stop=400, seed=1)
    assert straight.log["episodes"].sum() >= 10


def test_native_vector_cartpole_trpo_runs_through_the_same_gae_batch():
    from rlcourse.pg import a2c, trpo

    config = trpo.TRPOConfig(num_envs=4, n_steps=128, vectorization="vector_entry_point")
    result = trpo.train("CartPole-v1", config, steps=1_024, seed=0)
    assert result.log["episodes"].sum() >= 20 and np.isfinite(result.log.drop(columns="return").to_numpy(float)).all()
    with pytest.raises(ConfigError, match="vectorization"):
        a2c.A2CConfig(vectorization="vector_entry_point")  # A2C's Ψ keeps every row of the grid


def test_native_vector_cartpole_learns_in_seconds():
    # the RL Zoo settings, as test_cartpole_learns_in_seconds, on Gymnasium's own vector CartPole
    config = replace(PPOConfig.for_env("CartPole-v1"), vectorization="vector_entry_point")
    result = ppo.train("CartPole-v1", config, steps=40_000, seed=0)
    assert evaluate(result, episodes=10, print_fn=None)["mean_return"] >= 200


# ---------------------------------------------------------------- squashed Gaussians and gSDE (docs/mujoco.md)


def test_gsde_pendulum_smoke_run_same_seed_same_log():
    """The RL Zoo's Pendulum settings with its use_sde and sde_sample_freq 4, on a short budget: finite
    numbers, the same log bit for bit for the same seed, and another log than the plain Gaussian's."""
    from rlcourse.pg.policies import GSDEPolicy

    config = replace(PPOConfig.for_env("Pendulum-v1"), use_sde=True, sde_sample_freq=4, n_steps=256, n_epochs=2)
    runs = [ppo.train("Pendulum-v1", config, steps=2_048, seed=5) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].log, runs[1].log, check_exact=True)
    assert isinstance(runs[0].policy, GSDEPolicy) and runs[0].log["episodes"].sum() == 8
    assert np.isfinite(runs[0].log.to_numpy(dtype=float)).all()
    plain = ppo.train("Pendulum-v1", replace(config, use_sde=False), steps=2_048, seed=5)
    assert not np.array_equal(plain.log["return"], runs[0].log["return"])


@pytest.mark.parametrize("options", [dict(squash_output=True), dict(use_sde=True, squash_output=True)])
def test_squashed_and_gsde_a2c_resume_bit_for_bit(tmp_path, options):
    """The noise matrices are drawn at the start of every rollout from the checkpointed random state, so a
    resumed run ends with the log of one never stopped (A2C: a rollout of 5 steps, a draw per iteration)."""
    from resumed import assert_resumes_bit_for_bit

    from rlcourse.pg import a2c

    config = a2c.A2CConfig(num_envs=2, log_interval=20, **options)
    straight, _ = assert_resumes_bit_for_bit(a2c.train, "Pendulum-v1", config, tmp_path, steps=1_000, every=400,
                                             stop=700, seed=2)
    assert straight.policy.squash and np.isfinite(straight.log["entropy"]).all()


def test_squashed_ppo_on_pendulum_acts_inside_the_bounds_after_training(tmp_path):
    config = replace(PPOConfig.for_env("Pendulum-v1"), squash_output=True, n_steps=256, n_epochs=2)
    result = ppo.train("Pendulum-v1", config, steps=2_048, seed=0)
    result.save(tmp_path)
    loaded = rlcourse.load(tmp_path)
    assert loaded.policy.spec["squash"] and np.isfinite(result.log.to_numpy(dtype=float)).all()
    for obs in np.random.default_rng(0).uniform(-8, 8, size=(20, 3)).astype(np.float32):
        action = loaded.policy.act(obs)
        assert np.abs(action).max() <= 2.0
        np.testing.assert_array_equal(action, result.policy.act(obs))
