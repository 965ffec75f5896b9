r"""REINFORCE: the policy gradient with a choice of weight Ψ_t (lesson 4).

The estimator (Williams, 1992), with Ψ_t from :mod:`rlcourse.pg.psi`:

.. math::

    \nabla_\theta J(\theta) \approx \frac{1}{|B|} \sum_{(t,i) \in B}
        \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, \Psi_t

``psi`` picks the weight. :math:`G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'}` is the reward
to go, and every baseline b is subtracted from it:

=========================  =======================================================================================
``psi``                    :math:`\Psi_t`
=========================  =======================================================================================
total-return               :math:`R(\tau)`, the same for every step of the episode
reward-to-go               :math:`G_t`
constant-baseline          :math:`G_t - \bar G`, the mean over the batch
running-baseline           :math:`G_t - \hat\rho`, with
                           :math:`\hat\rho \leftarrow \beta\hat\rho + (1-\beta)\bar G`
time-baseline              :math:`G_t - b_k`, the mean G at step k of an episode
min-variance-baseline      :math:`G_t - b^*`, :math:`b^* = E[\lVert\nabla\log\pi\rVert^2 G] / E[\lVert\nabla\log\pi\rVert^2]`
value-baseline (default)   :math:`G_t - V_\phi(s_t)`, V fitted to G by regression
=========================  =======================================================================================

Without a critic, :math:`G_t` is known only for an episode that starts and ends inside the
batch (:func:`~rlcourse.pg.psi.complete_episodes`); the other steps are left out, so
``steps_per_env`` must hold whole episodes, about twice the longest (CartPole's last 500
steps). With the critic, an episode cut by the time limit or by the end of the batch is
bootstrapped there, :math:`G_t = r_t + \gamma V_\phi(s_{t+1})`, and every step counts.

``normalize_advantages`` divides Ψ by its root mean square over the batch,
:math:`\sqrt{\operatorname{mean} \Psi^2}`, so that every batch takes a step of the same
scale however large the returns are. It does not subtract the mean, as the usual
:math:`(\Psi - \bar\Psi) / \sigma` would: that would be a constant baseline, and which
baseline is used is the choice ``psi`` makes.

Pseudocode::

    for iteration k = 1, …, K:
        collect T steps in each of N environments with π_θ            (Rollout.collect)
        Ψ ← psi(batch)                                                 (rlcourse.pg.psi)
        α_k ← α (1 − (k−1)/K)                                          (if anneal_lr)
        θ ← θ − α_k ∇θ [ −mean(log π_θ(a_t|s_t) Ψ_t) − c_H H(π_θ) ]    (policy_gradient_loss)
        if psi = value-baseline:
            for each of value_epochs, for each minibatch:
                φ ← φ − β_k ∇φ mean (V_φ(s_t) − G_t)²

The steps are Adam's, with the policy gradient's norm clipped to ``max_grad_norm``. One
gradient step per batch: after it the batch was drawn by an older policy, and reusing it
would need the importance ratio of lesson 6.

Gaussian policies take PPO's options (:mod:`rlcourse.pg.policies`): ``squash_output`` sends
c + h tanh(u) to the environment instead of clip(u), and ``use_sde`` uses gSDE, its noise
matrices drawn at the start of every batch (``Rollout.collect``) and every
``sde_sample_freq`` steps within it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from rlcourse.config import check_choice, check_layers, check_range
from rlcourse.pg import psi as psi_fns
from rlcourse.pg.normalize import check_env_options
from rlcourse.pg.objective import explained_variance, policy_gradient_loss
from rlcourse.pg.policies import Policy, ValueFunction, check_gaussian_options, gaussian_options, make_policy
from rlcourse.pg.rollout import Part, Rollout, load_training_state, training_state
from rlcourse.run import (
    IterationRecord,
    NonFiniteError,
    Result,
    check_device,
    check_run_args,
    seed_everything,
    torch_threads,
)

PSI = (
    "value-baseline",
    "reward-to-go",
    "total-return",
    "constant-baseline",
    "running-baseline",
    "time-baseline",
    "min-variance-baseline",
)
LOG_COLUMNS = [
    "iteration",
    "env_steps",
    "return",
    "episodes",
    "length",
    "loss",
    "value_loss",
    "entropy",
    "explained_variance",
    "grad_norm",
    "psi_mean",
    "psi_std",
]


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
    psi: str = "value-baseline"
    gamma: float = 0.99  # discount γ
    lr: float = 5e-3  # policy step size α (Adam)
    anneal_lr: bool = True  # both step sizes fall linearly to 0 over the run
    num_envs: int = 4  # N environments stepped together
    steps_per_env: int = 1000  # T steps of each per iteration
    hidden: tuple[int, ...] = (64, 64)
    value_lr: float = 1e-3  # critic step size β (Adam), value-baseline only
    value_epochs: int = 10  # passes over the batch to fit V
    value_minibatches: int = 8  # minibatches per pass
    running_beta: float = 0.9  # β of the running-average baseline
    normalize_advantages: bool = True  # divide Ψ by its batch root mean square
    max_grad_norm: float = 0.5  # clip the policy gradient's norm
    entropy_coef: float = 0.0  # c_H, weight of the entropy bonus
    log_std_init: float = 0.0  # Gaussian policies: initial log σ
    squash_output: bool = False  # Gaussian policies: the environment gets c + h tanh(u), not clip(u) (policies.py)
    use_sde: bool = False  # Gaussian policies: gSDE's state-dependent noise z(s) θ_ε (rlcourse.pg.policies.GSDEPolicy)
    sde_sample_freq: int = -1  # gSDE: steps between draws of θ_ε (-1: once per rollout)
    vectorization: str = "sync"  # step the environments in this process ("sync") or one process each ("async")
    normalize_obs: bool = False  # standardise observations by running statistics (rlcourse.pg.normalize)
    normalize_reward: bool = False  # divide rewards by the running std of a discounted return
    clip_obs: float = 10.0  # normalised observations are clipped to ±this
    clip_reward: float = 10.0  # scaled rewards are clipped to ±this

    def __post_init__(self):
        check_choice(self, "psi", PSI)
        check_range(self, "gamma", 0, 1)
        check_range(self, "lr", 0, None, low_open=True)
        check_choice(self, "anneal_lr", (True, False))
        check_range(self, "num_envs", 1, integer=True)
        check_range(self, "steps_per_env", 1, integer=True)
        check_layers(self)
        check_range(self, "value_lr", 0, None, low_open=True)
        check_range(self, "value_epochs", 1, integer=True)
        check_range(self, "value_minibatches", 1, integer=True)
        check_range(self, "running_beta", 0, 1)
        check_choice(self, "normalize_advantages", (True, False))
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_range(self, "entropy_coef", 0, None)
        check_range(self, "log_std_init")
        check_gaussian_options(self)
        check_env_options(self)


class _LogProb(nn.Module):
    """log π(a | s) as a forward pass, so that torch.func can swap in the parameters."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs, actions):
        return self.policy.log_prob(self.policy.distribution(obs), actions)


def score_sq_norms(policy: Policy, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert\nabla_\theta \log\pi_\theta(a_i \mid s_i)\rVert^2` for each sample i.

    One gradient per sample, ``vmap`` of ``grad`` over the batch (torch.func).
    """
    module = _LogProb(policy)
    params = {name: p.detach() for name, p in module.named_parameters()}

    def logp(params, o, a):
        return functional_call(module, params, (o[None], a[None])).sum()

    grads = vmap(grad(logp), in_dims=(None, 0, 0), chunk_size=1024)(params, obs, actions)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads.values())


def compute_psi(config: ReinforceConfig, batch, policy, rho: float | None):
    """Ψ for the batch; return (Ψ, G it is built on, mask of steps that count, new ρ̂)."""
    b, gamma = batch, config.gamma
    if config.psi == "value-baseline":
        G = psi_fns.reward_to_go(b.rewards, b.terminated, b.truncated, gamma, b.next_values)
        return psi_fns.value_baseline(G, b.values), G, None, rho
    mask = psi_fns.complete_episodes(b.starts, b.terminated, b.truncated)
    if config.psi == "total-return":
        G = psi_fns.total_return(b.rewards, b.terminated, b.truncated, b.starts, gamma)
        return G, G, mask, rho
    G = psi_fns.reward_to_go(b.rewards, b.terminated, b.truncated, gamma)
    if not mask.any():  # no whole episode in the batch: nothing to weigh, no baseline to fold
        return G, G, mask, rho
    if config.psi == "reward-to-go":
        return G, G, mask, rho
    if config.psi == "constant-baseline":
        return psi_fns.constant_baseline(G, mask), G, mask, rho
    if config.psi == "running-baseline":
        psi, rho = psi_fns.running_baseline(G, rho, config.running_beta, mask)
        return psi, G, mask, rho
    if config.psi == "time-baseline":
        return psi_fns.time_baseline(G, b.timesteps, mask), G, mask, rho
    norms = torch.zeros_like(G)
    norms[mask] = score_sq_norms(policy, b.obs[mask], b.actions[mask])
    return psi_fns.min_variance_baseline(G, norms, mask), G, mask, rho


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.flatten() if mask is None else x[mask]


def fit_value(
    critic: nn.Module,
    optimizer,
    obs: torch.Tensor,
    targets: torch.Tensor,
    config: ReinforceConfig,
    rng: np.random.Generator,
) -> float:
    """Regress V_φ(s_t) on G_t: value_epochs passes of value_minibatches Adam steps; mean loss."""
    losses = []
    minibatches = min(config.value_minibatches, len(targets))
    for _ in range(config.value_epochs):
        for rows in np.array_split(rng.permutation(len(targets)), minibatches):
            idx = torch.as_tensor(rows)
            loss = F.mse_loss(critic(obs[idx]), targets[idx])
            if not torch.isfinite(loss):
                return float("nan")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


def train(env_id: str = "CartPole-v1", config: ReinforceConfig | None = None, *, steps: int = 300_000, seed: int = 0,
          out: str | Path | None = None, progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 50_000, resume: bool = False, tensorboard: str | Path | None = None,
          device: str = "cpu", callback: Callable[[int, nn.Module], None] | None = None) -> Result:  # fmt: skip
    """Run REINFORCE for ``steps`` environment steps; return a Result holding the policy.

    Each iteration collects ``num_envs × steps_per_env`` steps (the last one fewer, so the
    run stops within ``num_envs − 1`` steps of ``steps``). The log has one row per
    iteration (columns ``LOG_COLUMNS``): ``return`` and ``length`` are means over the
    episodes that ended in it (NaN if none did); ``loss`` is the policy loss and
    ``grad_norm`` the policy gradient's norm before clipping (NaN when no whole episode
    was there to weigh); ``value_loss`` is NaN without a critic; ``explained_variance`` is
    1 − Var(G − b)/Var(G) for the baseline b = G − Ψ; ``psi_mean``/``psi_std`` describe Ψ
    before normalisation. With ``out`` set, the policy, critic, optimisers, environments
    and random states are checkpointed there every ``checkpoint_every`` env steps, and
    ``resume=True`` goes on from the last checkpoint to the same log, bit for bit.
    ``callback(env_steps, policy)`` is called after every iteration, off the clock.
    """
    config = config or ReinforceConfig()
    check_run_args(steps)
    # Tiny networks: torch's intra-op threads only wait on each other, and on a busy machine
    # (two test workers on two cores) they make each step many times slower. One thread also
    # keeps the log bit for bit the same on machines with different core counts.
    with torch_threads(1):
        device = check_device(device)
        rng = seed_everything(seed)
        policy, critic = make_networks(env_id, env_kwargs, config)
        policy, critic = policy.to(device), None if critic is None else critic.to(device)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        value_optimizer = torch.optim.Adam(critic.parameters(), lr=config.value_lr) if critic else None
        rollout = Rollout.for_config(env_id, config, seed, env_kwargs, device)
        policy.obs_normalizer = rollout.obs_normalizer  # acting on raw observations (evaluation, save)
        record = IterationRecord("reinforce", env_id, env_kwargs, config, seed, steps, columns=LOG_COLUMNS,
                                 make_row=lambda window, returns, lengths: window[-1], out=out, progress=progress,
                                 checkpoint_every=checkpoint_every, callback=callback, resume=resume,
                                 tensorboard=tensorboard)  # fmt: skip
        parts: dict[str, Part] = dict(
            policy=policy, optimizer=optimizer, critic=critic, value_optimizer=value_optimizer
        )
        rho = None
        if record.resumed:
            load_training_state(record.resumed, rng, rollout, **parts)
            rho = record.resumed["rho"]
        iterations = math.ceil(steps / (config.num_envs * config.steps_per_env))
        with record, rollout:
            for iteration in range(record.iteration + 1, iterations + 1):
                frac = 1.0 - (iteration - 1) / iterations if config.anneal_lr else 1.0
                batch = rollout.collect(
                    policy, min(config.steps_per_env, math.ceil((steps - rollout.env_steps) / config.num_envs))
                )
                if critic is not None:
                    batch.add_values(critic)
                psi, G, mask, rho = compute_psi(config, batch, policy, rho)
                optimizer.param_groups[0]["lr"] = frac * config.lr
                stats = policy_step(policy, optimizer, batch, psi, G, mask, config)
                if not math.isfinite(stats["loss"]) and (mask is None or mask.any()):
                    raise NonFiniteError("policy loss", rollout.env_steps, record.last_checkpoint)
                stats["value_loss"] = float("nan")
                if critic is not None and value_optimizer is not None:
                    value_optimizer.param_groups[0]["lr"] = frac * config.value_lr
                    stats["value_loss"] = fit_value(
                        critic, value_optimizer, batch.obs.flatten(0, 1), G.flatten(), config, rng
                    )
                    if not math.isfinite(stats["value_loss"]):
                        raise NonFiniteError("value loss", rollout.env_steps, record.last_checkpoint)
                record.end_iteration(
                    rollout.env_steps,
                    stats,
                    batch.episode_returns,
                    batch.episode_lengths,
                    lambda rho=rho: {**training_state(rng, rollout, **parts), "rho": rho},
                    policy,
                    final=iteration == iterations,
                )
        return record.result(policy)


def make_networks(env_id: str, env_kwargs: dict | None, config: ReinforceConfig) -> tuple[Policy, nn.Module | None]:
    """The policy for the environment's spaces (checked before any vector env starts), and a
    critic when Ψ needs one (``value-baseline``)."""
    probe = gym.make(env_id, **(env_kwargs or {}))
    probe.close()
    policy = make_policy(
        "reinforce",
        probe.observation_space,
        probe.action_space,
        config.hidden,
        config.log_std_init,
        **gaussian_options(config),
    )
    critic = (
        ValueFunction(gym.spaces.flatdim(probe.observation_space), config.hidden)
        if config.psi == "value-baseline"
        else None
    )
    return policy, critic


def policy_step(
    policy: Policy,
    optimizer,
    batch,
    psi: torch.Tensor,
    G: torch.Tensor,
    mask: torch.Tensor | None,
    config: ReinforceConfig,
) -> dict:
    """One gradient step on the policy-gradient loss with weights Ψ; the iteration's numbers.

    Without a whole episode to weigh (``mask`` all False) there is no step, and the numbers are NaN.
    """
    stats = dict.fromkeys(("loss", "entropy", "grad_norm", "psi_mean", "psi_std", "explained_variance"), float("nan"))
    if mask is not None and not mask.any():
        return stats
    raw = _masked(psi, mask)
    stats.update(
        psi_mean=float(raw.mean()),
        psi_std=float(raw.std(correction=0)),
        explained_variance=explained_variance(_masked(G - psi, mask), _masked(G, mask)),
    )
    if config.normalize_advantages:
        psi = psi_fns.normalize_advantages(psi, "scale", mask)
    dist = policy.distribution(batch.obs)
    logp = policy.log_prob(dist, batch.actions)
    entropy = _masked(policy.entropy(dist), mask).mean()
    total = policy_gradient_loss(logp, psi, mask) - config.entropy_coef * entropy
    if not torch.isfinite(total):
        return {**stats, "loss": float(total.detach())}
    optimizer.zero_grad()
    total.backward()
    stats["grad_norm"] = float(nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm))
    optimizer.step()
    return {**stats, "loss": float(total.detach()), "entropy": float(entropy.detach())}
