r"""PPO: proximal policy optimisation, with the surrogate objectives of its paper's Table 1 (lesson 6).

Schulman, Wolski, Dhariwal, Radford and Klimov (2017), *Proximal Policy Optimization
Algorithms*, arXiv:1707.06347. The spine is A2C's: N environments stepped T steps, Ψ = GAE
from :mod:`rlcourse.pg.psi`, a critic trained alongside. What changes is that one batch is
used for K epochs of minibatch steps, so from the second step on the policy being improved,
π_θ, is no longer the one that collected the data, π_θold. The importance-sampled form of
the one objective (:mod:`rlcourse.pg.objective`) corrects for that, with the ratio
:math:`r_t(\theta) = \pi_\theta(a_t \mid s_t) / \pi_{\theta_\text{old}}(a_t \mid s_t)`,
and something has to stop θ from wandering where the correction is no longer trusted.
``surrogate`` picks what, as in the paper's Table 1 (each is a loss, to be minimised):

* ``"none"``: :math:`L^{CPI} = -\hat{\mathbb E}_t[r_t(\theta) \hat A_t]`, no limit at all;
* ``"clip"``: :math:`L^{CLIP} = -\hat{\mathbb E}_t[\min(r_t \hat A_t,
  \operatorname{clip}(r_t, 1-\epsilon, 1+\epsilon) \hat A_t)]` (``clip_range`` = ε);
* ``"fixed-kl"``: :math:`L^{KLPEN} = -\hat{\mathbb E}_t[r_t \hat A_t] + \beta\,
  \hat{\mathbb E}_t[\mathrm{KL}[\pi_{\theta_\text{old}}(\cdot \mid s_t), \pi_\theta(\cdot \mid s_t)]]`
  with β = ``kl_coef`` throughout;
* ``"adaptive-kl"``: the same penalty, with β adapted after each iteration's epochs from the
  mean KL d the update actually moved: β ← β/2 if d < d_targ/1.5, β ← 2β if d > 1.5 d_targ
  (``kl_target`` = d_targ, ``kl_coef`` = the first β).

The whole loss of a minibatch adds the critic's regression and an entropy bonus:

.. math::

    L = L^{\text{surrogate}} + c_V\, \hat{\mathbb E}_t[(V_\phi(s_t) - y_t)^2] - c_H\, \hat{\mathbb E}_t[H(\pi_\theta(\cdot \mid s_t))],
    \qquad y_t = \hat A_t + V_{\phi_\text{old}}(s_t)

``clip_range_vf`` (optional) clips the critic the way OpenAI Baselines' PPO2 does: the
prediction may not move more than ±c from :math:`V_{\phi_\text{old}}(s_t)` without paying
the larger of the clipped and unclipped errors. ``normalize_advantages`` standardises Â
within each minibatch (zero mean, unit standard deviation), as SB3 and CleanRL do; here,
unlike in REINFORCE and A2C, subtracting the mean is harmless because the ratio, not
log π, multiplies it, and PPO's step is limited anyway.

Pseudocode::

    for iteration k = 1, …, K_iter:
        collect T steps in each of N environments with π_θold                (Rollout.collect)
        Â ← gae(r, V(s), V(s'), λ);  y ← Â + V(s)                            (rlcourse.pg.psi)
        for epoch = 1, …, n_epochs:
            for each minibatch of batch_size steps, in a fresh random order:
                L ← ppo_loss(...)  (stop the epochs early if approx_kl > 1.5 target_kl)
                g ← ∇L with its norm clipped to max_grad_norm;  Adam step with α_k
        adaptive-kl: d ← mean KL[π_θold, π_θ] over the batch; halve or double β

with α_k = α (1 − (k−1)/K_iter) and likewise ε_k if ``anneal_lr`` / ``anneal_clip`` (linear
towards 0: the first update takes the full α, the last α/K_iter; SB3's ``lin_x`` schedule is
one iteration ahead and ends at 0).

What a practitioner reads in the log: ``approx_kl`` = :math:`\hat{\mathbb E}[(r - 1) - \log r]`
over the minibatches (the k3 estimator of KL[π_old, π], never negative), ``kl`` = the exact
mean KL between the distributions before and after the iteration's update, ``clipfrac``
= the share of samples with :math:`|r - 1| > \epsilon`, ``explained_variance`` of the
critic's predictions before the update, and the policy's mean ``entropy``.

Defaults. :class:`PPOConfig` holds Stable-Baselines3's PPO defaults
(``stable_baselines3/ppo/ppo.py``: n_steps 2048, batch_size 64, n_epochs 10, gamma 0.99,
gae_lambda 0.95, learning_rate 3e-4, clip_range 0.2, vf_coef 0.5, ent_coef 0, max_grad_norm
0.5, Adam with ε = 1e-5, separate [64, 64] tanh networks). :meth:`PPOConfig.for_env` (what
``rlcourse train ppo`` uses) swaps in the RL Zoo's tuned values for the environments in
:data:`RL_ZOO` (rl-baselines3-zoo, ``hyperparams/ppo.yml``). The Zoo's Pendulum-v1 entry
also turns on gSDE (generalised state-dependent exploration, ``use_sde=True,
sde_sample_freq=4`` here; :class:`rlcourse.pg.policies.GSDEPolicy`), which ``for_env``
leaves off so that the measured figures stay: with its other values and a plain Gaussian
policy, 200,000 steps bring the greedy return to −144, −143 and −144 for seeds 0, 1 and 2
(10 episodes; random: about −1,200).

Gaussian policies. ``squash_output`` sends c + h tanh(u) to the environment instead of
clip(u) (the log-density with the change of variables), ``use_sde`` / ``sde_sample_freq``
turn on gSDE: :mod:`rlcourse.pg.policies` and ``docs/mujoco.md`` give the equations.

On the field's tasks (LunarLander-v3, HalfCheetah-v5, Hopper-v5, Walker2d-v5; the ``box2d``
and ``mujoco`` extras) :data:`RL_ZOO` holds the Zoo's values too, which on MuJoCo turn on
``normalize_obs`` and ``normalize_reward`` (:mod:`rlcourse.pg.normalize`) and, for
HalfCheetah and Hopper, ReLU networks of 256 × 256 without orthogonal initialisation
(``activation``, ``ortho_init``) and log σ = −2 at the start. ``vectorization="async"``
steps the environments in worker processes, ``"vector_entry_point"`` uses Gymnasium's own
vectorised implementation (CartPole), whose reset steps :func:`gae_batch` drops
(:class:`rlcourse.pg.rollout.Rollout`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlcourse.config import check_choice, check_layers, check_range
from rlcourse.networks import clip_grad_norm, flat_grad, flatten_parameters
from rlcourse.pg import psi as psi_fns
from rlcourse.pg.normalize import check_env_options
from rlcourse.pg.objective import (
    clipped_surrogate_loss,
    explained_variance,
    importance_sampled_loss,
    ratio_diagnostics,
    value_loss,
)
from rlcourse.pg.policies import (
    ACTIVATIONS,
    Policy,
    ValueFunction,
    check_gaussian_options,
    gaussian_options,
    make_policy,
)
from rlcourse.pg.rollout import Batch, Rollout, load_training_state, training_state
from rlcourse.run import (
    IterationRecord,
    NonFiniteError,
    Result,
    check_device,
    check_run_args,
    seed_everything,
    torch_threads,
)

SURROGATES = ("clip", "none", "adaptive-kl", "fixed-kl")
LOG_COLUMNS = [
    "iteration",
    "env_steps",
    "return",
    "episodes",
    "length",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "kl",
    "clipfrac",
    "explained_variance",
    "kl_coef",
    "clip_range",
    "lr",
    "epochs",
]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    surrogate: str = "clip"  # Table 1's objective: "clip", "none", "adaptive-kl" or "fixed-kl"
    clip_range: float = 0.2  # ε of L^CLIP (also the threshold clipfrac counts)
    anneal_clip: bool = False  # ε falls linearly towards 0 over the run (the RL Zoo's lin_0.2)
    kl_coef: float = 1.0  # β of the KL penalty: fixed, or the first value of the adaptive one
    kl_target: float = 0.01  # d_targ of the adaptive KL penalty
    num_envs: int = 1  # N environments stepped together
    n_steps: int = 2048  # T steps of each per iteration
    batch_size: int = 64  # samples per minibatch
    n_epochs: int = 10  # K passes over the batch per iteration
    gamma: float = 0.99  # discount γ
    gae_lambda: float = 0.95  # λ of GAE
    lr: float = 3e-4  # Adam step size α
    anneal_lr: bool = False  # α falls linearly towards 0 over the run
    adam_eps: float = 1e-5  # Adam's ε (SB3's policies use 1e-5, not torch's 1e-8)
    vf_coef: float = 0.5  # c_V, weight of the critic's loss
    ent_coef: float = 0.0  # c_H, weight of the entropy bonus
    max_grad_norm: float = 0.5  # clip the norm of each minibatch gradient
    normalize_advantages: bool = True  # standardise Â within each minibatch
    clip_range_vf: float | None = None  # clip the critic's move from V_old(s) to ±this (None: do not)
    target_kl: float | None = None  # stop an iteration's epochs once approx_kl > 1.5 × this
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"  # the hidden layers' nonlinearity: "tanh" or "relu"
    ortho_init: bool = True  # orthogonal initialisation (False: torch's default for nn.Linear, as SB3's ortho_init)
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
    compile_loss: bool = False  # torch.compile the minibatch loss (compiled_ppo_loss): pays on runs of minutes

    def __post_init__(self):
        check_choice(self, "surrogate", SURROGATES)
        check_range(self, "clip_range", 0, None, low_open=True)
        check_choice(self, "anneal_clip", (True, False))
        check_range(self, "kl_coef", 0, None)
        check_range(self, "kl_target", 0, None, low_open=True)
        check_range(self, "num_envs", 1, integer=True)
        check_range(self, "n_steps", 1, integer=True)
        check_range(self, "batch_size", 1, integer=True)
        check_range(self, "n_epochs", 1, integer=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "gae_lambda", 0, 1)
        check_range(self, "lr", 0, None, low_open=True)
        check_choice(self, "anneal_lr", (True, False))
        check_range(self, "adam_eps", 0, None, low_open=True)
        check_range(self, "vf_coef", 0, None)
        check_range(self, "ent_coef", 0, None)
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_choice(self, "normalize_advantages", (True, False))
        if self.clip_range_vf is not None:
            check_range(self, "clip_range_vf", 0, None, low_open=True)
        if self.target_kl is not None:
            check_range(self, "target_kl", 0, None, low_open=True)
        check_layers(self)
        check_choice(self, "activation", tuple(ACTIVATIONS))
        check_choice(self, "ortho_init", (True, False))
        check_range(self, "log_std_init")
        check_gaussian_options(self)
        check_range(self, "log_interval", 1, integer=True)
        check_env_options(self, native=True)
        check_choice(self, "compile_loss", (True, False))

    @classmethod
    def for_env(cls, env_id: str) -> PPOConfig:
        """The defaults with the RL Zoo's tuned values for ``env_id`` swapped in (if it has any)."""
        return cls(**RL_ZOO.get(env_id, {}))


# rl-baselines3-zoo, hyperparams/ppo.yml ("lin_x" there is x with anneal_* here;
# https://github.com/DLR-RM/rl-baselines3-zoo/blob/22e3ff2450fd92033f7f032915e1f64894a09584/hyperparams/ppo.yml,
# the file as last changed in commit eec15dc). Pendulum-v1 also has use_sde: True, sde_sample_freq: 4 there, which
# for_env leaves off (see the module's docstring; use_sde and sde_sample_freq turn them on). The Zoo tunes
# MuJoCo's v4 tasks and has no v5 entries; the v5 tasks differ from v4 in details (model fixes, reset noise),
# not in size, and take the v4 values here. "normalize: true"
# there is SB3's VecNormalize with its defaults and the run's γ (the Zoo's exp_manager passes gamma on):
# observations and rewards both, clips of 10; here normalize_obs and normalize_reward with clip_obs = clip_reward
# = 10. Its policy_kwargs "log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256],
# vf=[256, 256])" are log_std_init, ortho_init, activation and hidden (separate networks, as ours always are).
# None of these four tasks uses gSDE in the Zoo's ppo.yml.
_MUJOCO_NET = dict(log_std_init=-2.0, ortho_init=False, activation="relu", hidden=(256, 256))
_NORMALIZE = dict(normalize_obs=True, normalize_reward=True)
RL_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        num_envs=8,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        lr=1e-3,
        anneal_lr=True,
        clip_range=0.2,
        anneal_clip=True,
    ),
    "Pendulum-v1": dict(
        num_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, lr=1e-3, clip_range=0.2
    ),
    # n_timesteps 1e6 (the Zoo's budget for each of the four below)
    "LunarLander-v3": dict(
        num_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01
    ),
    "HalfCheetah-v5": dict(  # the Zoo's HalfCheetah-v4
        **_NORMALIZE,
        num_envs=1,
        batch_size=64,
        n_steps=512,
        gamma=0.98,
        lr=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        **_MUJOCO_NET,
    ),
    "Hopper-v5": dict(  # the Zoo's Hopper-v4. On v5 it stands rather than hops, in SB3 as here; the
        # class defaults with both normalisations hop: docs/mujoco.md, "PPO on Hopper-v5 with the PPO paper's settings"
        **_NORMALIZE,
        num_envs=1,
        batch_size=32,
        n_steps=512,
        gamma=0.999,
        lr=9.80828e-05,
        ent_coef=0.00229519,
        clip_range=0.2,
        n_epochs=5,
        gae_lambda=0.99,
        max_grad_norm=0.7,
        vf_coef=0.835671,
        **_MUJOCO_NET,
    ),
    "Walker2d-v5": dict(  # the Zoo's Walker2d-v4: no policy_kwargs, so SB3's default networks
        **_NORMALIZE,
        num_envs=1,
        batch_size=32,
        n_steps=512,
        gamma=0.99,
        lr=5.05041e-05,
        ent_coef=0.000585045,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.95,
        max_grad_norm=1.0,
        vf_coef=0.871923,
    ),
}


class Minibatch(NamedTuple):
    """The flat rows of one iteration's batch (or a minibatch of them) that the loss reads."""

    obs: Tensor  # [B, obs_dim]
    actions: Tensor  # [B] or [B, act_dim]
    logp_old: Tensor  # [B]  log π_θold(a_t | s_t)
    advantages: Tensor  # [B]  Â_t
    returns: Tensor  # [B]  y_t = Â_t + V_old(s_t)
    values_old: Tensor  # [B]  V_old(s_t)

    def rows(self, index: Tensor) -> Minibatch:
        return Minibatch(*(x[index] for x in self))


@torch.no_grad()
def gae_batch(batch: Batch, critic: nn.Module, gamma: float, gae_lambda: float) -> Minibatch:
    """Score a collected batch with the critic and GAE(γ, λ); return it flattened to rows.

    One forward pass of the critic over s_t and s_{t+1} together; Â from
    :func:`rlcourse.pg.psi.gae` on the time-major [T, N] grid, y = Â + V(s_t). Rows that
    ``batch.valid`` marks as reset steps (``vectorization="vector_entry_point"``) are left out:
    the done flag of the step before cuts GAE there, so no other row's Â reads them.
    """
    T, N = batch.rewards.shape
    v_now, v_next = critic(torch.cat([batch.obs, batch.next_obs]).flatten(0, 1)).view(2 * T, N).split(T)
    adv = psi_fns.gae(batch.rewards, v_now, v_next, batch.terminated, batch.truncated, gamma, gae_lambda)
    rows = Minibatch(
        batch.obs.flatten(0, 1),
        batch.actions.flatten(0, 1),
        batch.logp.flatten(),
        adv.flatten(),
        (adv + v_now).flatten(),
        v_now.flatten(),
    )
    return rows if batch.valid is None else rows.rows(batch.valid.flatten())


class Terms(NamedTuple):
    loss: Tensor  # L = L^surrogate + c_V L_V − c_H H
    policy_loss: Tensor  # L^surrogate (with the KL penalty, if any)
    value_loss: Tensor  # L_V
    entropy: Tensor  # mean H(π(·|s_t))
    approx_kl: Tensor  # mean (r − 1) − log r, detached
    clipfrac: Tensor  # share of |r − 1| > ε, detached


def ppo_loss(
    policy: Policy,
    critic: nn.Module,
    mb: Minibatch,
    config: PPOConfig,
    clip_range: float,
    kl_coef: float,
    old_dist=None,
) -> Terms:
    """The loss of one minibatch and its terms, for the surrogate ``config.surrogate``.

    ``old_dist`` (π_θold's distributions at ``mb.obs``) is needed by the KL penalties only.
    """
    if old_dist is None and config.surrogate in ("adaptive-kl", "fixed-kl"):
        raise ValueError(
            f"ppo_loss: surrogate {config.surrogate!r} needs old_dist, π_θold's distributions "
            f"at mb.obs, for its KL penalty"
        )
    adv = psi_fns.normalize_advantages(mb.advantages) if config.normalize_advantages else mb.advantages
    dist = policy.distribution(mb.obs)
    logp = policy.log_prob(dist, mb.actions)
    ### BEGIN SOLUTION
    if config.surrogate == "clip":
        policy_loss = clipped_surrogate_loss(logp, mb.logp_old, adv, clip_range)
    else:
        policy_loss = importance_sampled_loss(logp, mb.logp_old, adv)
    if config.surrogate in ("adaptive-kl", "fixed-kl"):
        policy_loss = policy_loss + kl_coef * policy.kl(old_dist, dist).mean()
    critic_loss = value_loss(critic(mb.obs), mb.returns, mb.values_old, config.clip_range_vf)
    entropy = policy.entropy(dist).mean()
    loss = policy_loss + config.vf_coef * critic_loss
    if config.ent_coef > 0:
        loss = loss - config.ent_coef * entropy
    ### END SOLUTION
    approx_kl, clipfrac = ratio_diagnostics(logp, mb.logp_old, clip_range)
    return Terms(loss, policy_loss, critic_loss, entropy, approx_kl, clipfrac)


def compiled_ppo_loss() -> Callable[..., Terms]:
    """:func:`ppo_loss` through ``torch.compile``, called as ``ppo_loss`` is.

    The compiler traces the loss of one minibatch, forward and backward, into fused kernels
    (C++ on the CPU: it needs a C++ compiler, as ``torch.compile`` does): on our CPU a
    gradient step of the RL Zoo's CartPole-v1 and HalfCheetah-v5 settings took 24–30% less
    time, a whole HalfCheetah update 15% less and a whole run no measurable amount less,
    after 8–11 s of compiling at the first call (~3 s with torch's compile cache warm;
    ``docs/mujoco.md``, § Speed). ε and
    β go in as 0-d tensors, so an annealed ε changes an input, not the compiled code. The
    numbers equal the eager loss's up to rounding, not bit for bit.
    """
    compiled = torch.compile(ppo_loss)

    def loss(policy, critic, mb, config, clip_range, kl_coef, old_dist=None) -> Terms:
        # 0-d tensors serve wherever ε and β are numbers (clamp's bounds, products, comparisons)
        epsilon, beta = torch.tensor(clip_range), torch.tensor(kl_coef)
        return compiled(policy, critic, mb, config, epsilon, beta, old_dist)  # type: ignore[arg-type]

    return loss


def adapt_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """The adaptive penalty's rule (PPO paper, section 4): β/2 if d < d_targ/1.5, 2β if d > 1.5 d_targ."""
    ### BEGIN SOLUTION
    if kl < kl_target / 1.5:
        return kl_coef / 2
    if kl > kl_target * 1.5:
        return kl_coef * 2
    return kl_coef
    ### END SOLUTION


def make_networks(
    algo: str,
    env_id: str,
    env_kwargs: dict | None,
    hidden: tuple[int, ...],
    log_std_init: float,
    activation: str = "tanh",
    ortho_init: bool = True,
    **gaussian: Any,
) -> tuple[Policy, nn.Module]:
    """A policy for the environment's spaces (or an error naming ``algo`` and the space) and a critic;
    without ``ortho_init``, every linear layer drawn again by torch's default initialisation.
    ``gaussian``: ``squash``, ``use_sde``, ``sde_sample_freq`` for :func:`~rlcourse.pg.policies.make_policy`."""
    probe = gym.make(env_id, **(env_kwargs or {}))
    probe.close()
    policy = make_policy(
        algo, probe.observation_space, probe.action_space, hidden, log_std_init, activation, **gaussian
    )
    critic = ValueFunction(gym.spaces.flatdim(probe.observation_space), hidden, activation)
    if not ortho_init:
        for layer in [*policy.modules(), *critic.modules()]:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    return policy, critic


def train(env_id: str = "CartPole-v1", config: PPOConfig | None = None, *, steps: int = 100_000, seed: int = 0,
          out: str | Path | None = None, progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 50_000, threads: int = 1, resume: bool = False,
          tensorboard: str | Path | None = None, device: str = "cpu",
          callback: Callable[[int, nn.Module], None] | None = None) -> Result:  # fmt: skip
    """Run PPO for ``steps`` environment steps; return a Result holding the policy.

    ``config`` defaults to ``PPOConfig.for_env(env_id)``. Each iteration collects
    ``num_envs × n_steps`` steps (the last one fewer, so the run stops within
    ``num_envs − 1`` steps of ``steps``). The log has one row per ``log_interval``
    iterations, columns ``LOG_COLUMNS``: ``return``/``length`` are means over the episodes
    that ended in them (NaN if none did); the losses, ``approx_kl`` and ``clipfrac`` are
    means over their minibatches; ``kl`` is the mean over iterations of the exact KL the
    update moved; ``kl_coef``, ``clip_range``, ``lr`` are those of the row's last
    iteration and ``epochs`` the epochs it ran (fewer than ``n_epochs`` if ``target_kl``
    stopped it).

    With ``out`` set, the networks, the optimiser, the environments and the random state
    are checkpointed there every ``checkpoint_every`` env steps, and ``resume=True`` goes on
    from the last checkpoint to the same log, bit for bit, as a run never stopped. A
    non-finite loss stops the run with :class:`NonFiniteError` and leaves the last
    checkpoint as it was. Acting runs on one CPU thread, the update on ``threads``.
    ``callback(env_steps, policy)`` is called after every iteration; its time is left out
    of ``timing``.
    """
    config = config or PPOConfig.for_env(env_id)
    check_run_args(steps, threads)
    with torch_threads(1):
        device = check_device(device)
        rng = seed_everything(seed)
        policy, critic = make_networks("ppo", env_id, env_kwargs, config.hidden, config.log_std_init, config.activation,
                                       config.ortho_init, **gaussian_options(config))  # fmt: skip
        policy, critic = policy.to(device), critic.to(device)
        flat = flatten_parameters(nn.ModuleDict({"policy": policy, "critic": critic}))
        optimizer = torch.optim.Adam([flat], lr=config.lr, eps=config.adam_eps, fused=True)
        rollout = Rollout.for_config(env_id, config, seed, env_kwargs, device)
        policy.obs_normalizer = rollout.obs_normalizer  # acting on raw observations (evaluation, save)
        record = IterationRecord("ppo", env_id, env_kwargs, config, seed, steps, columns=LOG_COLUMNS, make_row=_row,
                                 out=out, progress=progress, checkpoint_every=checkpoint_every,
                                 log_interval=config.log_interval, callback=callback, resume=resume,
                                 tensorboard=tensorboard)  # fmt: skip
        kl_coef = config.kl_coef
        loss_fn = compiled_ppo_loss() if config.compile_loss else ppo_loss
        if record.resumed:
            load_training_state(record.resumed, rng, rollout, policy=policy, critic=critic, optimizer=optimizer)
            kl_coef = record.resumed["kl_coef"]
        iterations = math.ceil(steps / (config.num_envs * config.n_steps))
        with record, rollout:
            for iteration in range(record.iteration + 1, iterations + 1):
                remaining = 1.0 - (iteration - 1) / iterations
                lr = config.lr * (remaining if config.anneal_lr else 1.0)
                clip_range = config.clip_range * (remaining if config.anneal_clip else 1.0)
                batch = rollout.collect(
                    policy, min(config.n_steps, math.ceil((steps - rollout.env_steps) / config.num_envs))
                )
                with torch_threads(threads):
                    data = gae_batch(batch, critic, config.gamma, config.gae_lambda)
                    stats = update(policy, critic, flat, optimizer, data, config, lr, clip_range, kl_coef, loss_fn)
                if not all(math.isfinite(stats[key]) for key in (*TERM_NAMES[1:], "kl")):
                    raise NonFiniteError("loss", rollout.env_steps, record.last_checkpoint)
                if config.surrogate == "adaptive-kl":
                    kl_coef = adapt_kl_coef(kl_coef, stats["kl"], config.kl_target)
                record.end_iteration(
                    rollout.env_steps,
                    stats,
                    batch.episode_returns,
                    batch.episode_lengths,
                    lambda kl_coef=kl_coef: {
                        **training_state(rng, rollout, policy=policy, critic=critic, optimizer=optimizer),
                        "kl_coef": kl_coef,
                    },
                    policy,
                    final=iteration == iterations,
                )
        return record.result(policy)


TERM_NAMES = Terms._fields  # loss, policy_loss, value_loss, entropy, approx_kl, clipfrac


def update(
    policy: Policy,
    critic: nn.Module,
    flat: nn.Parameter,
    optimizer,
    data: Minibatch,
    config: PPOConfig,
    lr: float,
    clip_range: float,
    kl_coef: float,
    loss_fn: Callable[..., Terms] = ppo_loss,
) -> dict:
    """One iteration's update: ``n_epochs`` passes of minibatch steps over the batch (fewer if
    ``target_kl`` stops them); the named numbers of the log row. ``loss_fn``: :func:`ppo_loss`
    or :func:`compiled_ppo_loss`'s."""
    optimizer.param_groups[0]["lr"] = lr
    with torch.no_grad():
        old_dist = policy.distribution(data.obs)
    needs_old_dist = config.surrogate in ("adaptive-kl", "fixed-kl")
    sums, minibatches, epochs = torch.zeros(len(TERM_NAMES), device=data.returns.device), 0, 0
    for epoch in range(config.n_epochs):
        stop = False
        for index in torch.randperm(len(data.returns)).split(config.batch_size):
            terms = loss_fn(
                policy,
                critic,
                data.rows(index),
                config,
                clip_range,
                kl_coef,
                policy.rows(old_dist, index) if needs_old_dist else None,
            )
            if config.target_kl is not None and terms.approx_kl > 1.5 * config.target_kl:
                stop = True  # SB3's rule: this minibatch's step is not taken
                break
            flat_grad(flat).zero_()
            terms.loss.backward()
            clip_grad_norm(flat, config.max_grad_norm)
            optimizer.step()
            sums += torch.stack([t.detach() for t in terms])
            minibatches += 1
        epochs = epoch + 1
        if stop:
            break
    with torch.no_grad():
        kl = float(policy.kl(old_dist, policy.distribution(data.obs)).mean())
    means = dict(zip(TERM_NAMES, (sums / max(minibatches, 1)).tolist()))
    return {
        **means,
        "kl": kl,
        "values": data.values_old,
        "returns": data.returns,
        "kl_coef": kl_coef,
        "clip_range": clip_range,
        "lr": lr,
        "epochs": epochs,
    }


ROW_MEANS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "kl")


def _row(window: list[dict], returns: list, lengths: list) -> dict:
    """The numbers of one log row, from the iterations since the last one."""
    means = np.mean([[entry[key] for key in ROW_MEANS] for entry in window], axis=0).tolist()
    ev = explained_variance(torch.cat([e["values"] for e in window]), torch.cat([e["returns"] for e in window]))
    last = window[-1]
    return {
        **dict(zip(ROW_MEANS, means)),
        "explained_variance": ev,
        "kl_coef": last["kl_coef"],
        "clip_range": last["clip_range"],
        "lr": last["lr"],
        "epochs": last["epochs"],
    }
