r"""Natural policy gradient and TRPO: the step with a trust region (lesson 6).

Schulman, Levine, Moritz, Jordan and Abbeel (2015), *Trust Region Policy Optimization*,
ICML; Kakade (2001), *A Natural Policy Gradient*, NIPS. Same spine as A2C and PPO: N
environments stepped T steps, Ψ = Â from GAE (:func:`rlcourse.pg.ppo.gae_batch`), the
importance-sampled form of the one objective (:mod:`rlcourse.pg.objective`). The
question is only how far to step. TRPO answers it with a constraint on the mean KL:

.. math::

    \max_\theta\ L(\theta) = \hat{\mathbb E}_t\Big[\frac{\pi_\theta(a_t \mid s_t)}{\pi_{\theta_\text{old}}(a_t \mid s_t)} \hat A_t\Big]
    \quad \text{s.t.} \quad \bar D(\theta) = \hat{\mathbb E}_t\big[\mathrm{KL}[\pi_{\theta_\text{old}}(\cdot \mid s_t),
    \pi_\theta(\cdot \mid s_t)]\big] \le \delta

Near θ_old, L is linear, :math:`L \approx g^\top \Delta` with g = ∇L (the policy gradient),
and the KL quadratic, :math:`\bar D \approx \tfrac12 \Delta^\top H \Delta` with H = ∇²D̄ at
θ_old, which is the Fisher information matrix :math:`\hat{\mathbb E}[\nabla \log \pi\,
\nabla \log \pi^\top]`. The Lagrangian gives the natural gradient direction
:math:`x = H^{-1} g`, scaled to land on the constraint's edge:

.. math::

    \Delta = \sqrt{\frac{2\delta}{x^\top H x}}\; x

H has as many rows as the policy has parameters, so it is never formed: conjugate
gradient (:func:`conjugate_gradient`) solves Hx = g with only products Hv, and each
product (:func:`fisher_vector_product`) differentiates the KL twice,
:math:`Hv = \nabla_\theta \big( (\nabla_\theta \bar D)^\top v \big)`, at the cost of two
backward passes. ``cg_damping`` adds λI to H, as the TRPO code does, so CG stays stable
when H is nearly singular.

``method="npg"`` takes Δ as it is: the natural policy gradient, with δ as its step size.
``method="trpo"`` distrusts the quadratic model and backtracks: it tries
θ_old + αʲΔ for j = 0, 1, … (α = ``backtrack_coef``) and accepts the first step whose
measured mean KL is at most δ and whose surrogate L is higher than at θ_old; if none of
``backtrack_iters`` tries passes, θ stays where it was. Both tests use the same batch,
so after every TRPO update KL ≤ δ and L did not fall, exactly (the log's ``kl`` and
``improvement``).

The critic is separate and fitted after the policy step: ``critic_epochs`` passes of Adam
over minibatches of ``critic_batch_size`` on (V(s_t) − y_t)², y_t = Â_t + V_old(s_t).

Pseudocode::

    for iteration k = 1, …, K:
        collect T steps in each of N environments with π_θold               (Rollout.collect)
        Â ← gae(...), standardised over the batch; y ← Â + V(s)
        g ← ∇_θ L(θ_old);  x ← CG(v ↦ Hv + λv, g);  Δ ← √(2δ / xᵀHx) x
        trpo: θ ← θ_old + αʲΔ for the first j with D̄ ≤ δ and L(θ) > L(θ_old) (else θ_old)
        npg:  θ ← θ_old + Δ
        fit V_φ to y

Defaults: sb3-contrib's TRPO (``sb3_contrib/trpo/trpo.py``: n_steps 2048, batch_size 128
for the critic, gamma 0.99, gae_lambda 0.95, target_kl δ = 0.01, cg_max_steps 15,
cg_damping 0.1, line search factor 0.8 for 10 tries, 10 critic updates with Adam at 1e-3
and ε = 1e-5, advantages standardised), and :meth:`TRPOConfig.for_env` swaps in the RL
Zoo's tuned values (rl-baselines3-zoo, ``hyperparams/trpo.yml``) for the environments in
:data:`RL_ZOO`.

What δ bounds: here, as in the paper, the KL between two policies' distributions over the
whole action, averaged over states (D̄ above). sb3-contrib (2.x) averages a
Gaussian's KL over the action's dimensions as well as over states, so its δ bounds D̄ / d for
d-dimensional actions, and its H is the Fisher matrix / d. Its ``target_kl`` δ and
``cg_damping`` λ are therefore this module's d·δ and d·λ: the same step, number for number
(tests/test_trpo.py runs sb3-contrib's update beside ours). For discrete actions and d = 1
the two agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from rlcourse.config import check_choice, check_layers, check_range
from rlcourse.networks import flat_grad, flatten_parameters
from rlcourse.pg.normalize import check_env_options
from rlcourse.pg.objective import explained_variance, importance_sampled_loss
from rlcourse.pg.policies import Policy, check_gaussian_options, gaussian_options
from rlcourse.pg.ppo import Minibatch, gae_batch, make_networks
from rlcourse.pg.psi import normalize_advantages
from rlcourse.pg.rollout import Rollout, load_training_state, training_state
from rlcourse.run import (
    IterationRecord,
    NonFiniteError,
    Result,
    check_device,
    check_run_args,
    seed_everything,
    torch_threads,
)

METHODS = ("trpo", "npg")
LOG_COLUMNS = [
    "iteration",
    "env_steps",
    "return",
    "episodes",
    "length",
    "surrogate",
    "improvement",
    "kl",
    "step_fraction",
    "backtracks",
    "value_loss",
    "entropy",
    "explained_variance",
]


@dataclasses.dataclass(frozen=True)
class TRPOConfig:
    method: str = "trpo"  # "trpo" (with the line search) or "npg" (the plain natural step)
    max_kl: float = 0.01  # δ, the bound on the mean KL of the whole action (sb3-contrib: target_kl × action dims)
    cg_iters: int = 15  # conjugate-gradient iterations for x = H⁻¹g
    cg_damping: float = 0.1  # λ added to H's diagonal (sb3-contrib: cg_damping × action dims)
    backtrack_coef: float = 0.8  # α of the line search's steps αʲΔ
    backtrack_iters: int = 10  # tries before the line search gives up
    num_envs: int = 1  # N environments stepped together
    n_steps: int = 2048  # T steps of each per iteration
    gamma: float = 0.99  # discount γ
    gae_lambda: float = 0.95  # λ of GAE
    normalize_advantages: bool = True  # standardise Â over the batch
    critic_lr: float = 1e-3  # Adam step size of the critic
    critic_epochs: int = 10  # passes of the critic's regression per iteration
    critic_batch_size: int = 128  # samples per critic minibatch
    hidden: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0  # Gaussian policies: initial log σ
    squash_output: bool = False  # Gaussian policies: the environment gets c + h tanh(u), not clip(u) (policies.py)
    use_sde: bool = False  # Gaussian policies: gSDE's state-dependent noise z(s) θ_ε (rlcourse.pg.policies.GSDEPolicy)
    sde_sample_freq: int = -1  # gSDE: steps between draws of θ_ε (-1: once per rollout)
    log_interval: int = 1  # iterations per log row
    vectorization: str = "sync"  # "sync": in this process; "async": one process each; "vector_entry_point"
    normalize_obs: bool = False  # standardise observations by running statistics (rlcourse.pg.normalize)
    normalize_reward: bool = False  # divide rewards by the running std of a discounted return
    clip_obs: float = 10.0  # normalised observations are clipped to ±this
    clip_reward: float = 10.0  # scaled rewards are clipped to ±this

    def __post_init__(self):
        check_choice(self, "method", METHODS)
        check_range(self, "max_kl", 0, None, low_open=True)
        check_range(self, "cg_iters", 1, integer=True)
        check_range(self, "cg_damping", 0, None)
        check_range(self, "backtrack_coef", 0, 1, low_open=True, high_open=True)
        check_range(self, "backtrack_iters", 1, integer=True)
        check_range(self, "num_envs", 1, integer=True)
        check_range(self, "n_steps", 1, integer=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "gae_lambda", 0, 1)
        check_choice(self, "normalize_advantages", (True, False))
        check_range(self, "critic_lr", 0, None, low_open=True)
        check_range(self, "critic_epochs", 0, integer=True)
        check_range(self, "critic_batch_size", 1, integer=True)
        check_layers(self)
        check_range(self, "log_std_init")
        check_gaussian_options(self)
        check_range(self, "log_interval", 1, integer=True)
        check_env_options(self, native=True)

    @classmethod
    def for_env(cls, env_id: str) -> TRPOConfig:
        """The defaults with the RL Zoo's tuned values for ``env_id`` swapped in (if it has any)."""
        return cls(**RL_ZOO.get(env_id, {}))


# rl-baselines3-zoo, hyperparams/trpo.yml (at commit 22e3ff2450fd92033f7f032915e1f64894a09584; learning_rate,
# batch_size and n_critic_updates there are critic_lr, critic_batch_size and critic_epochs here; its target_kl and
# cg_damping, for sb3-contrib's KL averaged over a Gaussian action's d dimensions, are max_kl / d and cg_damping / d
# here: see the module's docstring). Its Pendulum-v1
# entry also has use_sde: True, which for_env leaves off (use_sde=True turns it on): with a plain Gaussian, seed 0
# reaches -144 in 200,000 steps.
_TRPO_MUJOCO: dict[str, Any] = dict(
    normalize_obs=True,
    normalize_reward=True,
    num_envs=2,
    n_steps=1024,
    critic_batch_size=128,
    gamma=0.99,
    gae_lambda=0.95,
    cg_iters=25,
    critic_epochs=20,
    critic_lr=1e-3,
)


def _from_sb3_contrib(target_kl: float, action_dims: int) -> dict[str, float]:
    """The Zoo's target_kl and cg_damping (0.1 for the MuJoCo tasks) for sb3-contrib's KL averaged over
    ``action_dims`` dimensions, as max_kl and cg_damping for this module's KL of the whole action."""
    return dict(max_kl=round(target_kl * action_dims, 12), cg_damping=round(0.1 * action_dims, 12))


RL_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        num_envs=2,
        n_steps=512,
        critic_batch_size=512,
        cg_damping=1e-3,
        gae_lambda=0.98,
        gamma=0.99,
        critic_lr=1e-3,
        critic_epochs=20,
    ),
    "Pendulum-v1": dict(num_envs=2, n_steps=1024, gamma=0.9, critic_epochs=15),
    # n_timesteps 2e5
    "LunarLander-v3": dict(
        num_envs=2, n_steps=512, cg_damping=0.01, gae_lambda=0.98, gamma=0.99, critic_lr=1e-3, critic_epochs=15
    ),
    # The Zoo's MuJoCo v4 entries (its "mujoco-defaults", the PyBullet values with n_timesteps 1e6; target_kl
    # there is max_kl here, cg_max_steps is cg_iters, sub_sampling_factor 1 is no sub-sampling); v5 takes them as
    # PPO's table does. normalize: true is normalize_obs and normalize_reward (see rlcourse.pg.ppo's RL_ZOO).
    # target_kl there: 0.04 for HalfCheetah, sb3-contrib's default 0.01 for the others; 6, 3 and 6 action dimensions.
    "HalfCheetah-v5": dict(_TRPO_MUJOCO, **_from_sb3_contrib(0.04, 6)),
    "Hopper-v5": dict(_TRPO_MUJOCO, **_from_sb3_contrib(0.01, 3)),
    "Walker2d-v5": dict(_TRPO_MUJOCO, **_from_sb3_contrib(0.01, 6)),
}


def conjugate_gradient(hvp: Callable[[Tensor], Tensor], g: Tensor, iters: int, tol: float = 1e-10) -> Tensor:
    r"""Approximately solve Hx = g for symmetric positive-definite H, given only v ↦ Hv.

    Start at x = 0 with residual r = g and direction p = r; each iteration moves x to the
    minimum of ½xᵀHx − gᵀx along p, then makes the next direction H-conjugate to the
    previous ones:

    .. math::

        \alpha = \frac{r^\top r}{p^\top H p}, \quad x \leftarrow x + \alpha p, \quad
        r \leftarrow r - \alpha H p, \quad p \leftarrow r + \frac{r_\text{new}^\top r_\text{new}}{r^\top r} p

    In exact arithmetic it is exact after n iterations for n unknowns; TRPO stops after
    ``iters`` (or once rᵀr < ``tol``), which is enough for a step direction.
    """
    ### BEGIN SOLUTION
    x = torch.zeros_like(g)
    r = g.clone()
    p = g.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        hp = hvp(p)
        alpha = rr / (p @ hp)
        x += alpha * p
        r -= alpha * hp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x
    ### END SOLUTION


def fisher_vector_product(
    policy: Policy, obs: Tensor, old_dist: Distribution, damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    r"""v ↦ (H + λI)v with H the Hessian of the mean KL[π_old, π_θ] at θ (the Fisher matrix
    at θ = θ_old), over the flat vector of ``policy``'s parameters.

    The KL's gradient is built once, with its graph (``create_graph``); each product then
    differentiates its inner product with v: :math:`Hv = \nabla_\theta (\nabla_\theta \bar D \cdot v)`.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    ### BEGIN SOLUTION
    kl = policy.kl(old_dist, policy.distribution(obs)).mean()
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(kl, params, create_graph=True)])

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(grad @ v, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]) + damping * v

    ### END SOLUTION
    return product


def natural_step(g: Tensor, hvp: Callable[[Tensor], Tensor], max_kl: float, cg_iters: int) -> Tensor:
    r"""Δ = √(2δ / xᵀHx) · x with x ≈ H⁻¹g from conjugate gradient: the step whose quadratic
    model of the KL is exactly δ."""
    ### BEGIN SOLUTION
    x = conjugate_gradient(hvp, g, cg_iters)
    return torch.sqrt(2 * max_kl / (x @ hvp(x) + 1e-12)) * x
    ### END SOLUTION


def surrogate_and_kl(policy: Policy, data: Minibatch, adv: Tensor, old_dist: Distribution) -> tuple[float, float]:
    """L(θ) and the mean KL[π_old, π_θ] at the policy's current parameters, on the batch."""
    with torch.no_grad():
        dist = policy.distribution(data.obs)
        surrogate = -importance_sampled_loss(policy.log_prob(dist, data.actions), data.logp_old, adv)
        return float(surrogate), float(policy.kl(old_dist, dist).mean())


def policy_update(policy: Policy, theta: nn.Parameter, data: Minibatch, config: TRPOConfig) -> dict:
    """One NPG or TRPO update of ``policy`` (whose parameters are views of ``theta``) on a batch.

    Returns what happened: the surrogate at θ_old, its improvement, the KL moved, the
    fraction αʲ of the natural step taken and j (0 and ``backtrack_iters`` if the line
    search gave up).
    """
    adv = normalize_advantages(data.advantages) if config.normalize_advantages else data.advantages
    params = [p for p in policy.parameters() if p.requires_grad]
    with torch.no_grad():
        old_dist = policy.distribution(data.obs)
    dist = policy.distribution(data.obs)
    surrogate = -importance_sampled_loss(policy.log_prob(dist, data.actions), data.logp_old, adv)
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(surrogate, params)])
    step = natural_step(
        g, fisher_vector_product(policy, data.obs, old_dist, config.cg_damping), config.max_kl, config.cg_iters
    )
    theta_old = theta.detach().clone()
    surrogate_old, _ = surrogate_and_kl(policy, data, adv, old_dist)
    ### BEGIN SOLUTION
    tries = 1 if config.method == "npg" else config.backtrack_iters
    for j in range(tries):
        fraction = config.backtrack_coef**j
        theta.data.copy_(theta_old + fraction * step)
        surrogate_new, kl = surrogate_and_kl(policy, data, adv, old_dist)
        if config.method == "npg" or (kl <= config.max_kl and surrogate_new > surrogate_old):
            break
    else:  # no step passed: stay at θ_old
        theta.data.copy_(theta_old)
        fraction, surrogate_new, kl, j = 0.0, surrogate_old, 0.0, tries
    ### END SOLUTION
    entropy = float(policy.entropy(old_dist).mean())
    return {
        "surrogate": surrogate_old,
        "improvement": surrogate_new - surrogate_old,
        "kl": kl,
        "step_fraction": fraction,
        "backtracks": j,
        "entropy": entropy,
    }


def critic_optimizer(phi: nn.Parameter, config: TRPOConfig) -> torch.optim.Adam:
    """Adam on the critic's flat parameters φ at ``critic_lr``, with SB3's ε = 1e-5 (its policies'
    optimiser, which fits sb3-contrib's critic) instead of torch's 1e-8."""
    return torch.optim.Adam([phi], lr=config.critic_lr, eps=1e-5, fused=True)


def fit_critic(critic: nn.Module, phi: nn.Parameter, optimizer, data: Minibatch, config: TRPOConfig) -> Tensor:
    """``critic_epochs`` passes of Adam over minibatches on (V(s_t) − y_t)²; the mean loss."""
    total, count = torch.zeros((), device=data.returns.device), 0
    for _ in range(config.critic_epochs):
        for index in torch.randperm(len(data.returns)).split(config.critic_batch_size):
            loss = (critic(data.obs[index]) - data.returns[index]).pow(2).mean()
            flat_grad(phi).zero_()
            loss.backward()
            optimizer.step()
            total, count = total + loss.detach(), count + 1
    return total / max(count, 1)


def train(
    env_id: str = "CartPole-v1",
    config: TRPOConfig | None = None,
    *,
    steps: int = 100_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    checkpoint_every: int = 50_000,
    threads: int = 1,
    resume: bool = False,
    tensorboard: str | Path | None = None,
    device: str = "cpu",
    callback: Callable[[int, nn.Module], None] | None = None,
) -> Result:
    """Run TRPO (or NPG) for ``steps`` environment steps; return a Result holding the policy.

    ``config`` defaults to ``TRPOConfig.for_env(env_id)``. Each iteration collects
    ``num_envs × n_steps`` steps (the last one fewer) and makes one policy update and one
    critic fit. The log has a row per ``log_interval`` iterations (columns
    ``LOG_COLUMNS``; ``return``/``length`` over the episodes that ended in them, the rest
    means over the iterations, ``backtracks`` the last one's j). Checkpoints and ``resume``,
    the ``NonFiniteError`` guard, ``threads`` and ``callback`` work as in
    :func:`rlcourse.pg.ppo.train`.
    """
    config = config or TRPOConfig.for_env(env_id)
    check_run_args(steps, threads)
    with torch_threads(1):
        device = check_device(device)
        rng = seed_everything(seed)
        policy, critic = make_networks(config.method, env_id, env_kwargs, config.hidden, config.log_std_init,
                                       **gaussian_options(config))  # fmt: skip
        policy, critic = policy.to(device), critic.to(device)
        theta, phi = flatten_parameters(policy), flatten_parameters(critic)
        optimizer = critic_optimizer(phi, config)
        rollout = Rollout.for_config(env_id, config, seed, env_kwargs, device)
        policy.obs_normalizer = rollout.obs_normalizer  # acting on raw observations (evaluation, save)
        record = IterationRecord(
            "trpo",
            env_id,
            env_kwargs,
            config,
            seed,
            steps,
            columns=LOG_COLUMNS,
            make_row=_row,
            out=out,
            progress=progress,
            checkpoint_every=checkpoint_every,
            log_interval=config.log_interval,
            callback=callback,
            resume=resume,
            tensorboard=tensorboard,
        )
        if record.resumed:
            load_training_state(record.resumed, rng, rollout, policy=policy, critic=critic, optimizer=optimizer)
        iterations = math.ceil(steps / (config.num_envs * config.n_steps))
        with record, rollout:
            for iteration in range(record.iteration + 1, iterations + 1):
                batch = rollout.collect(
                    policy, min(config.n_steps, math.ceil((steps - rollout.env_steps) / config.num_envs))
                )
                with torch_threads(threads):
                    data = gae_batch(batch, critic, config.gamma, config.gae_lambda)
                    update = policy_update(policy, theta, data, config)
                    value_loss = float(fit_critic(critic, phi, optimizer, data, config))
                if not all(math.isfinite(x) for x in (update["surrogate"], update["kl"], value_loss)):
                    raise NonFiniteError("loss", rollout.env_steps, record.last_checkpoint)
                stats = {**update, "value_loss": value_loss, "values": data.values_old, "returns": data.returns}
                record.end_iteration(
                    rollout.env_steps,
                    stats,
                    batch.episode_returns,
                    batch.episode_lengths,
                    lambda: training_state(rng, rollout, policy=policy, critic=critic, optimizer=optimizer),
                    policy,
                    final=iteration == iterations,
                )
        return record.result(policy)


ROW_MEANS = ("surrogate", "improvement", "kl", "step_fraction", "value_loss", "entropy")


def _row(window: list[dict], returns: list, lengths: list) -> dict:
    """The numbers of one log row, from the iterations since the last one."""
    mean = {key: float(np.mean([entry[key] for entry in window])) for key in ROW_MEANS}
    ev = explained_variance(torch.cat([e["values"] for e in window]), torch.cat([e["returns"] for e in window]))
    return {**mean, "backtracks": window[-1]["backtracks"], "explained_variance": ev}
