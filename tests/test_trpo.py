import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.pg import trpo
from rlcourse.pg.objective import importance_sampled_loss
from rlcourse.networks import flatten_parameters
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy
from rlcourse.pg.ppo import Minibatch
from rlcourse.pg.trpo import TRPOConfig, conjugate_gradient, fisher_vector_product, natural_step
from rlcourse.play import evaluate_policy
from rlcourse.run import NonFiniteError, UnsupportedSpaceError, load_checkpoint
from rlcourse.seeds import run_seeds

TINY = TRPOConfig(num_envs=2, n_steps=64, hidden=(16,), critic_epochs=2, critic_batch_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# ---------------------------------------------------------------- configuration and spaces


@pytest.mark.parametrize("field, value, message", [
    ("method", "ppo", r"TRPOConfig.method = 'ppo' is not allowed: it must be one of 'trpo', 'npg'"),
    ("max_kl", 0.0, r"TRPOConfig.max_kl = 0.0 is out of range: it must be in \(0, inf\)"),
    ("cg_iters", 0, r"TRPOConfig.cg_iters = 0 is out of range: it must be in \[1, inf\)"),
    ("cg_damping", -0.1, r"TRPOConfig.cg_damping = -0.1 is out of range: it must be in \[0, inf\)"),
    ("backtrack_coef", 1.0, r"TRPOConfig.backtrack_coef = 1.0 is out of range: it must be in \(0, 1\)"),
    ("backtrack_iters", 2.5, r"TRPOConfig.backtrack_iters = 2.5 must be an integer"),
    ("critic_lr", 0.0, r"TRPOConfig.critic_lr = 0.0 is out of range: it must be in \(0, inf\)"),
    ("critic_batch_size", 0, r"TRPOConfig.critic_batch_size = 0 is out of range: it must be in \[1, inf\)"),
])
def test_config_errors_name_the_field_and_its_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TRPOConfig(**{field: value})


def test_defaults_are_sb3_contribs_and_for_env_swaps_in_the_rl_zoos():
    c = TRPOConfig()     # sb3_contrib/trpo/trpo.py
    assert (c.n_steps, c.critic_batch_size, c.gamma, c.gae_lambda, c.max_kl) == (2048, 128, 0.99, 0.95, 0.01)
    assert (c.cg_iters, c.cg_damping, c.backtrack_coef, c.backtrack_iters) == (15, 0.1, 0.8, 10)
    assert (c.critic_epochs, c.critic_lr, c.normalize_advantages) == (10, 1e-3, True)
    cartpole = TRPOConfig.for_env("CartPole-v1")     # rl-baselines3-zoo hyperparams/trpo.yml
    assert (cartpole.num_envs, cartpole.n_steps, cartpole.critic_batch_size, cartpole.cg_damping) == \
        (2, 512, 512, 1e-3)
    assert (cartpole.gae_lambda, cartpole.critic_epochs) == (0.98, 20)
    assert ALGORITHMS["trpo"].defaults_for("Pendulum-v1") == TRPOConfig.for_env("Pendulum-v1")
    assert TRPOConfig.for_env("Pendulum-v1").gamma == 0.9


def test_unsupported_space_names_trpo_and_the_space():
    with pytest.raises(UnsupportedSpaceError, match=r"trpo supports Discrete and flat Box action spaces"):
        trpo.train("test/MultiDiscreteActions-v0", TINY, steps=100)
    with pytest.raises(UnsupportedSpaceError, match=r"npg needs a flat Box observation space, got Dict"):
        trpo.train("test/DictObs-v0", replace(TINY, method="npg"), steps=100)


# ---------------------------------------------------------------- the linear algebra


def random_spd(n: int, seed: int, condition: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigenvalues = torch.logspace(0, np.log10(condition), n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_matches_a_direct_solve(seed):
    A = random_spd(30, seed)
    b = torch.randn(30, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    products = []

    def hvp(v):
        products.append(1)
        return A @ v

    # exact after n = 30 iterations in exact arithmetic; in floating point it takes more
    x = conjugate_gradient(hvp, b, iters=60, tol=1e-30)   # (the default tol stops at a residual of 1e-5)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert len(products) <= 60
    # the error in the A-norm falls with every iteration (CG minimises it over a growing space)
    exact = torch.linalg.solve(A, b)
    errors = [float((conjugate_gradient(lambda v: A @ v, b, k) - exact) @ A
                    @ (conjugate_gradient(lambda v: A @ v, b, k) - exact)) for k in range(1, 12)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


def test_conjugate_gradient_is_exact_in_n_steps_for_n_distinct_eigenvalues():
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    A = q @ torch.diag(torch.tensor([1.0, 3.0, 10.0] * 13 + [1.0], dtype=torch.float64)) @ q.T
    b = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(conjugate_gradient(lambda v: A @ v, b, iters=3, tol=1e-30), torch.linalg.solve(A, b))


def tiny_policy(continuous: bool, seed: int = 0):
    torch.manual_seed(seed)
    policy = (GaussianPolicy(3, 2, (5,), log_std_init=-0.2) if continuous else CategoricalPolicy(3, 3, (5,))).double()
    obs = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return policy, obs


def explicit_fisher(policy: CategoricalPolicy, obs: torch.Tensor) -> torch.Tensor:
    """F = mean over states of Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ, one action at a time."""
    params = list(policy.parameters())
    n = sum(p.numel() for p in params)
    F = torch.zeros(n, n, dtype=torch.float64)
    for s in obs:
        log_probs = torch.log_softmax(policy.logits(s), -1)
        for a in range(len(log_probs)):
            g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(log_probs[a], params, retain_graph=True)])
            F += log_probs[a].exp().detach() * torch.outer(g, g)
    return F / len(obs)


def test_fisher_vector_product_is_the_explicit_fisher_matrix_times_v():
    policy, obs = tiny_policy(continuous=False)
    F = explicit_fisher(policy, obs)
    with torch.no_grad():
        old = policy.distribution(obs)
    product = fisher_vector_product(policy, obs, old, damping=0.0)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(len(F), dtype=torch.float64, generator=g)
        torch.testing.assert_close(product(v), F @ v, rtol=1e-9, atol=1e-12)
    damped = fisher_vector_product(policy, obs, old, damping=0.1)
    torch.testing.assert_close(damped(v), F @ v + 0.1 * v, rtol=1e-9, atol=1e-12)


def test_fisher_vector_product_is_the_kl_hessian_for_a_gaussian():
    policy, obs = tiny_policy(continuous=True)
    theta = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
    with torch.no_grad():
        old = policy.distribution(obs)

    def mean_kl(flat):
        chunks, start = {}, 0
        for name, p in policy.named_parameters():
            chunks[name] = flat[start:start + p.numel()].view_as(p)
            start += p.numel()
        mean = torch.func.functional_call(policy.mean, {k[len("mean."):]: v for k, v in chunks.items()
                                                        if k.startswith("mean.")}, (obs,))
        new = torch.distributions.Normal(mean, chunks["log_std"].exp())
        return torch.distributions.kl_divergence(old, new).sum(-1).mean()

    H = torch.autograd.functional.hessian(mean_kl, theta)
    v = torch.randn(len(theta), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(fisher_vector_product(policy, obs, old)(v), H @ v, rtol=1e-9, atol=1e-12)


def test_natural_step_lands_on_the_quadratic_kl_boundary():
    A = random_spd(20, 3)
    g = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    step = natural_step(g, lambda v: A @ v, max_kl=0.02, cg_iters=20)
    assert float(0.5 * step @ A @ step) == pytest.approx(0.02, rel=1e-9)
    direction = torch.linalg.solve(A, g)
    cosine = step @ direction / (step.norm() * direction.norm())
    assert float(cosine) == pytest.approx(1.0, abs=1e-8)


# ---------------------------------------------------------------- the update


def batch_for(policy, obs, seed: int = 0) -> Minibatch:
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        logp = policy.log_prob(dist, actions)
    adv = torch.randn(len(obs), dtype=obs.dtype, generator=torch.Generator().manual_seed(seed))
    return Minibatch(obs, actions, logp, adv, adv, torch.zeros_like(adv))


@pytest.mark.parametrize("continuous", [False, True])
def test_npg_step_moves_the_kl_by_about_delta(continuous):
    # the quadratic model ½ΔᵀHΔ = δ is good for small δ; the damping λ shrinks the step a little
    # (the KL lands at 0.86δ and 0.91δ here). With λ near 0 the nearly flat directions of H get huge
    # steps and the measured KL is 10-30 times δ: why TRPO adds damping and a line search.
    policy, obs = tiny_policy(continuous, seed=1)
    obs = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    data = batch_for(policy, obs)
    theta = flatten_parameters(policy)
    info = trpo.policy_update(policy, theta, data, TRPOConfig(method="npg", max_kl=1e-4, cg_damping=1e-2))
    assert info["step_fraction"] == 1.0 and info["backtracks"] == 0
    assert 0.7e-4 <= info["kl"] <= 1e-4
    assert info["improvement"] > 0


@pytest.mark.parametrize("continuous", [False, True])
def test_trpo_accepts_only_steps_within_delta_that_improve_the_surrogate(continuous):
    policy, obs = tiny_policy(continuous, seed=2)
    data = batch_for(policy, obs, seed=3)
    theta = flatten_parameters(policy)
    before = theta.detach().clone()
    info = trpo.policy_update(policy, theta, data, TRPOConfig(max_kl=0.05))
    adv = (data.advantages - data.advantages.mean()) / (data.advantages.std() + 1e-8)
    with torch.no_grad():
        after = policy.distribution(obs)
        surrogate_new = -importance_sampled_loss(policy.log_prob(after, data.actions), data.logp_old, adv)
        theta.data.copy_(before)
        old = policy.distribution(obs)
        kl = policy.kl(old, after).mean()
    assert float(kl) == pytest.approx(info["kl"], rel=1e-9) and float(kl) <= 0.05
    assert float(surrogate_new) - info["surrogate"] == pytest.approx(info["improvement"], rel=1e-9)
    assert info["improvement"] > 0 and 0 < info["step_fraction"] <= 1


def test_every_update_of_a_run_keeps_kl_within_delta_and_never_worsens_the_surrogate():
    # the line search measures both on the batch it updates on, so the bound holds exactly
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        log = trpo.train(env_id, replace(TINY, max_kl=0.01), steps=2_560, seed=0).log
        assert len(log) == 20
        assert (log["kl"] <= 0.01).all() and (log["improvement"] >= 0).all()
        assert (log["step_fraction"] > 0).any()


def test_npg_takes_every_full_step():
    log = trpo.train("CartPole-v1", replace(TINY, method="npg"), steps=1_280, seed=0).log
    assert (log["step_fraction"] == 1.0).all() and (log["backtracks"] == 0).all()


# ---------------------------------------------------------------- runs


def test_same_seed_same_log_bit_for_bit():
    runs = [trpo.train("Pendulum-v1", TINY, steps=1_280, seed=5) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].log, runs[1].log, check_exact=True)
    assert not runs[0].log.equals(trpo.train("Pendulum-v1", TINY, steps=1_280, seed=6).log)


def test_cli_trains_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "trpo", "--env", "CartPole-v1", "--steps", "2048", "--out", str(out), "--quiet",
                 "--set", "method=npg", "max_kl=0.02"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["env_steps"] == 2048
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["method"], config["max_kl"], config["n_steps"]) == ("npg", 0.02, 512)   # the Zoo's n_steps
    assert rlcourse.load(out).algo == "trpo"
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert main(["train", "trpo", "--env", "CartPole-v1", "--set", "max_kl=0", "--quiet"]) == 2
    assert "TRPOConfig.max_kl = 0.0 is out of range" in capsys.readouterr().err


def test_nan_reward_raises_with_the_step_and_keeps_the_checkpoint(tmp_path):
    # each of the 2 copies returns a NaN reward at its 1000th step, in the iteration ending at 2048
    with pytest.raises(NonFiniteError, match=r"non-finite loss at env step 2048.*checkpoint"):
        trpo.train("test/NaNRewardCartPole-v0", TINY, steps=10_000, seed=0, out=tmp_path, checkpoint_every=512)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["env_steps"] == 1536     # the one due at 2048 never came
    assert all(torch.isfinite(t).all() for t in checkpoint["policy"].values())


def test_cartpole_learns_in_seconds():
    # two of three seeds: one seed's greedy return can fall far below the rest (at 30,000 steps seeds 0-5 gave
    # 115, 500, 500, 500, 288, 500); at 20,000 steps seeds 0-5 gave 492, 424, 500, 414, 500, 500
    returns = [evaluate_policy(trpo.train("CartPole-v1", steps=20_000, seed=seed).policy, "CartPole-v1",
                               episodes=10, print_fn=None)["mean_return"] for seed in range(3)]
    assert sum(r >= 150 for r in returns) >= 2, returns


@pytest.mark.slow
def test_cartpole_150k_reaches_475_for_three_of_five_seeds():
    # docs/benchmarks.md, ten seeds of `rlcourse train trpo --env CartPole-v1 --steps 150000`: final greedy
    # mean 500 on nine seeds, 133.4 on seed 2 (20 unseen episodes each); seeds 0-4 give 4 of 5 here, and
    # the bar leaves one seed's margin for another machine's floating-point path
    result = run_seeds("trpo", "CartPole-v1", range(5), steps=150_000, threshold=475, workers=2)
    assert result.summary["solved"] >= 3, result.runs


@pytest.mark.slow
def test_pendulum_reaches_minus_250_within_200k_steps_for_four_of_five_seeds():
    # docs/benchmarks.md, ten seeds: final greedy means -98 to -246 over 20 unseen episodes, all ten at -250
    # or better (seed 1: -246.0); seeds 0-4 give 5 of 5 here, and the bar leaves one seed's margin for
    # another machine
    result = run_seeds("trpo", "Pendulum-v1", range(5), steps=200_000, threshold=-250, workers=2)
    assert result.summary["solved"] >= 4, result.runs


def test_updates_match_sb3_contribs_trpo_on_the_same_steps(mujoco_box2d, monkeypatch):
    """Two iterations of sb3-contrib's own TRPO (its collect_rollouts and train: natural step, line
    search, critic fit) and of ours on the same transitions and sampled actions, from the same
    weights, with the benchmark's translation of the config: the same parameters after each.
    sb3-contrib averages the KL over the action's 2 dimensions, so it gets δ / 2 and λ / 2 (with
    δ and λ as they are, its steps differ from ours: the test found the Zoo's δ mistranslated).
    Its conjugate gradient starts from 1e-4·ε instead of 0; here it starts from 0 as ours does."""
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import TRPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlcourse.pg.policies import ValueFunction, make_policy
    from rlcourse.pg.ppo import gae_batch
    from sb3_parity import ScriptedEnv, assert_same_weights, copy_weights, make_batch

    torch.manual_seed(0)
    T, N = 6, 3
    config = TRPOConfig(num_envs=N, n_steps=T, hidden=(8, 8), gamma=0.9, gae_lambda=0.8, max_kl=0.02, cg_iters=8,
                        critic_lr=0.01, critic_epochs=3, critic_batch_size=T * N, log_std_init=-0.3)
    script = make_batch(continuous=True, T=2 * T, N=N, seed=5)
    script.truncated[T - 1, 2] = True
    env = DummyVecEnv([lambda i=i: ScriptedEnv(script, i) for i in range(N)])
    model = TRPO("MlpPolicy", env, device="cpu", seed=0, **mujoco_box2d.sb3_trpo_settings(config, action_dims=2))
    theirs = model.policy
    space = env.observation_space
    policy = make_policy("trpo", space, env.action_space, config.hidden, config.log_std_init)
    critic = ValueFunction(space.shape[0], config.hidden)
    pairs = copy_weights(policy, critic, theirs)
    theta, phi = flatten_parameters(policy), flatten_parameters(critic)
    optimizer = trpo.critic_optimizer(phi, config)

    _, callback = model._setup_learn(2 * T * N)
    for k in range(2):
        assert model.collect_rollouts(env, callback, model.rollout_buffer, n_rollout_steps=T)
        actions = torch.as_tensor(model.rollout_buffer.actions).clone()
        with monkeypatch.context() as patch:
            patch.setattr(torch, "randn_like", torch.zeros_like)  # its CG's start
            model.train()
        steps = slice(k * T, (k + 1) * T)
        with torch.no_grad():
            logp = policy.log_prob(policy.distribution(script.obs[steps]), actions)
        batch = replace(script, obs=script.obs[steps], actions=actions, logp=logp, rewards=script.rewards[steps],
                        terminated=script.terminated[steps], truncated=script.truncated[steps],
                        next_obs=script.next_obs[steps], starts=script.starts[steps],
                        timesteps=script.timesteps[steps])
        data = gae_batch(batch, critic, config.gamma, config.gae_lambda)
        update = trpo.policy_update(policy, theta, data, config)
        trpo.fit_critic(critic, phi, optimizer, data, config)
        assert update["step_fraction"] > 0
        assert_same_weights(pairs, policy, theirs, rtol=1e-4, atol=1e-5)
