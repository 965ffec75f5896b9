r"""A2C: synchronous advantage actor-critic over N environments (lesson 5).

A2C is the synchronous form of A3C (Mnih et al., 2016, *Asynchronous Methods for Deep
Reinforcement Learning*, ICML): N copies of the environment are stepped together for T
steps, and the T × N batch gives one gradient step of the policy-gradient estimator with
the weight :math:`\Psi_t = \hat A_t`, an advantage estimated with a learned critic
:math:`V_\phi`. Both estimators come from :mod:`rlcourse.pg.psi`; ``advantage`` picks one.

The n-step return (``advantage="n-step"``, the lecture's :math:`q_t`). Here :math:`r_t` is
the reward for the action taken at step t (the lecture writes :math:`r_{t+1}`), and a
step's return runs to the end of the rollout, so the first step of a rollout gets
:math:`n = T` rewards and the last one gets 1, as in A3C:

.. math::

    y_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k} + \gamma^m V_\phi(s_{t+m}),
    \qquad \hat A_t = y_t - V_\phi(s_t)

with :math:`m = \min(T - t,\ \text{steps left in the episode})`. If the episode terminated
within those m steps there is no :math:`V` term; if it was truncated by the time limit,
:math:`V_\phi` of its real final observation stands in for the rest.

GAE(γ, λ) (``advantage="gae"``, Schulman et al., 2016), with the TD residual
:math:`\delta_t = r_t + \gamma (1 - \text{terminated}_t) V_\phi(s_{t+1}) - V_\phi(s_t)`:

.. math::

    \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}, \qquad y_t = \hat A_t + V_\phi(s_t)

summed to the end of the episode or of the rollout. With λ = 1 the sum telescopes into the
n-step advantage above, the same numbers up to rounding, in one backward pass over the
rollout instead of a sum per step: that is the default, and what Stable-Baselines3
computes (``gae_lambda=1.0``).

The loss of one iteration, averaged over the batch B of T × N steps (:math:`\hat A` and
:math:`y` held fixed):

.. math::

    L_\pi(\theta) = -\frac{1}{|B|} \sum_{(t,i) \in B} \log \pi_\theta(a_t \mid s_t)\, \hat A_t
    \qquad \text{(actor: } \texttt{policy\_gradient\_loss}\text{)}

    L_V(\phi) = \frac{1}{|B|} \sum_{(t,i) \in B} \big(V_\phi(s_t) - y_t\big)^2
    \qquad \text{(critic: regression on its target)}

    H(\theta) = \frac{1}{|B|} \sum_{(t,i) \in B} \mathcal{H}\big(\pi_\theta(\cdot \mid s_t)\big)
    \qquad \text{(entropy bonus)}

    L = L_\pi + c_V\, L_V - c_H\, H

with :math:`c_V` = ``vf_coef`` and :math:`c_H` = ``ent_coef``. ``normalize_advantages``
divides :math:`\hat A` by its root mean square over the batch, as REINFORCE does here; unlike
SB3's ``normalize_advantage`` it does not subtract the mean, which would change the
baseline :math:`V_\phi` for another. The actor and the critic are
two networks (``shared=False``), or one trunk with a policy head and a value head
(``shared=True``: the value head reads the policy network's last hidden layer).

Pseudocode::

    initialise π_θ and V_φ; reset N environments
    for iteration k = 1, …, K:
        collect T steps in each environment with π_θ                   (Rollout.collect)
        V(s_t), V(s_{t+1}) ← one forward pass of the critic over both
        Â_t ← gae or n_step_advantage                                  (rlcourse.pg.psi)
        y_t ← Â_t + V(s_t)
        L ← policy_gradient_loss(log π_θ, Â) + c_V mean (V_φ(s_t) − y_t)² − c_H H
        g ← ∇L over all parameters (θ, φ), its norm clipped to max_grad_norm
        v ← ρ v + (1 − ρ) g²;  (θ, φ) ← (θ, φ) − α_k g / (√v + ε)      (RMSprop, ρ = rms_alpha)
        with α_k = α (1 − (k−1)/K) if anneal_lr else α

The environments are not reset between iterations: the next rollout starts where the last
one stopped, so an episode spans many iterations, bootstrapped at every cut.

Defaults: the RL Zoo's A2C hyperparameters for CartPole-v1 (rl-baselines3-zoo,
``hyperparams/a2c.yml``: n_envs 8, ent_coef 0.0, n_timesteps 5e5) and Stable-Baselines3's
A2C defaults for the rest (``stable_baselines3/a2c/a2c.py``: n_steps 5, gamma 0.99,
gae_lambda 1.0, learning_rate 7e-4, vf_coef 0.5, max_grad_norm 0.5, RMSprop with
alpha 0.99 and eps 1e-5, normalize_advantage False; ``common/policies.py``: separate
[64, 64] tanh networks for π and V, orthogonal initialisation with gains √2, 0.01 for the
policy's output and 1 for the value's, log σ starting at 0). With them the greedy policy
reaches 500 on CartPole-v1 for seeds 0, 1 and 2 after the RL Zoo's 500,000 steps, and
``A2CConfig(num_envs=16)`` (the RL Zoo's Acrobot-v1 settings, without the observation
and reward normalisation it adds there) scores −85, −81 and −88 on Acrobot-v1.
``A2CConfig.for_env(env_id)`` swaps in the Zoo's values for LunarLander-v3 and for
HalfCheetah, Hopper and Walker2d (one environment, observations and rewards normalised),
as ``rlcourse train a2c --env ...`` does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlcourse.config import check_choice, check_layers, check_range
from rlcourse.networks import clip_grad_norm, flat_grad, flatten_parameters, mlp
from rlcourse.pg import psi as psi_fns
from rlcourse.pg.normalize import check_env_options
from rlcourse.pg.objective import explained_variance, policy_gradient_loss, value_loss
from rlcourse.pg.policies import (
    CategoricalPolicy,
    GaussianPolicy,
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

ADVANTAGES = ("n-step", "gae")
LOG_COLUMNS = [
    "iteration",
    "env_steps",
    "return",
    "episodes",
    "length",
    "policy_loss",
    "value_loss",
    "entropy",
    "explained_variance",
    "grad_norm",
    "lr",
]


@dataclasses.dataclass(frozen=True)
class A2CConfig:
    advantage: str = "gae"  # Ψ: "gae", or "n-step" return − V (the same numbers at λ = 1)
    num_envs: int = 8  # N environments stepped together (RL Zoo: n_envs 8)
    n_steps: int = 5  # T steps of each per iteration, the n of the n-step return
    gamma: float = 0.99  # discount γ
    gae_lambda: float = 1.0  # λ of GAE (advantage="gae"); 1 gives the n-step advantage
    lr: float = 7e-4  # RMSprop step size α
    anneal_lr: bool = False  # α falls linearly to 0 over the run
    rms_alpha: float = 0.99  # RMSprop smoothing of the squared gradient
    rms_eps: float = 1e-5  # RMSprop ε, added to √v (torch's RMSprop, as SB3's A2C)
    vf_coef: float = 0.5  # c_V, weight of the critic's loss
    ent_coef: float = 0.0  # c_H, weight of the entropy bonus
    max_grad_norm: float = 0.5  # clip the norm of the whole gradient (actor and critic)
    normalize_advantages: bool = False  # divide Â by its batch root mean square
    shared: bool = False  # one trunk with two heads instead of two networks
    hidden: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0  # Gaussian policies: initial log σ
    squash_output: bool = False  # Gaussian policies: the environment gets c + h tanh(u), not clip(u) (policies.py)
    use_sde: bool = False  # Gaussian policies: gSDE's state-dependent noise z(s) θ_ε (rlcourse.pg.policies.GSDEPolicy)
    sde_sample_freq: int = -1  # gSDE: steps between draws of θ_ε (-1: once per rollout)
    log_interval: int = 100  # iterations per log row
    vectorization: str = "sync"  # step the environments in this process ("sync") or one process each ("async")
    normalize_obs: bool = False  # standardise observations by running statistics (rlcourse.pg.normalize)
    normalize_reward: bool = False  # divide rewards by the running std of a discounted return
    clip_obs: float = 10.0  # normalised observations are clipped to ±this
    clip_reward: float = 10.0  # scaled rewards are clipped to ±this

    def __post_init__(self):
        check_choice(self, "advantage", ADVANTAGES)
        check_range(self, "num_envs", 1, integer=True)
        check_range(self, "n_steps", 1, integer=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "gae_lambda", 0, 1)
        check_range(self, "lr", 0, None, low_open=True)
        check_choice(self, "anneal_lr", (True, False))
        check_range(self, "rms_alpha", 0, 1, high_open=True)
        check_range(self, "rms_eps", 0, None, low_open=True)
        check_range(self, "vf_coef", 0, None)
        check_range(self, "ent_coef", 0, None)
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_choice(self, "normalize_advantages", (True, False))
        check_choice(self, "shared", (True, False))
        check_layers(self)
        check_range(self, "log_std_init")
        check_gaussian_options(self)
        check_range(self, "log_interval", 1, integer=True)
        check_env_options(self)

    @classmethod
    def for_env(cls, env_id: str) -> A2CConfig:
        """The defaults with the RL Zoo's tuned values for ``env_id`` swapped in (if it has any)."""
        return cls(**RL_ZOO.get(env_id, {}))


# rl-baselines3-zoo, hyperparams/a2c.yml (at commit 22e3ff2450fd92033f7f032915e1f64894a09584; "lin_x" there is x with
# anneal_lr here). CartPole-v1's entry is the defaults. The MuJoCo v4 entries ("mujoco-defaults", n_timesteps 1e6) set
# nothing but normalize: true, so they run SB3's A2C defaults with the Zoo's n_envs default of 1; v5 takes them as
# PPO's table does (rlcourse.pg.ppo.RL_ZOO). normalize: true is normalize_obs and normalize_reward.
_A2C_MUJOCO = dict(num_envs=1, normalize_obs=True, normalize_reward=True)
RL_ZOO: dict[str, dict] = {
    # n_timesteps 2e5
    "LunarLander-v3": dict(num_envs=8, gamma=0.995, n_steps=5, lr=0.00083, anneal_lr=True, ent_coef=1e-5),
    "HalfCheetah-v5": _A2C_MUJOCO,
    "Hopper-v5": _A2C_MUJOCO,
    "Walker2d-v5": _A2C_MUJOCO,
}


class SharedValue(nn.Module):
    """V(s) as a linear head on the policy network's last hidden layer (``shared=True``)."""

    def __init__(self, policy: Policy, width: int):
        super().__init__()
        if isinstance(policy, CategoricalPolicy):
            network = policy.logits
        elif isinstance(policy, GaussianPolicy):
            network = policy.mean
        else:
            raise TypeError(f"SharedValue needs a CategoricalPolicy or a GaussianPolicy, got {type(policy).__name__}")
        self.trunk = network[:-1]  # the policy's own layers, not a copy
        self.head = mlp([width, 1], output_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.trunk(obs)).squeeze(-1)


def make_critic(policy: Policy, obs_dim: int, config: A2CConfig) -> nn.Module:
    if config.shared:
        return SharedValue(policy, config.hidden[-1] if config.hidden else obs_dim)
    return ValueFunction(obs_dim, config.hidden)


def advantages(config: A2CConfig, batch: Batch, values: Tensor, next_values: Tensor) -> Tensor:
    """Â_t for the batch, by the estimator ``config.advantage`` picks (:mod:`rlcourse.pg.psi`)."""
    b = batch
    ### BEGIN SOLUTION
    if config.advantage == "n-step":
        return psi_fns.n_step_advantage(
            b.rewards, values, next_values, b.terminated, b.truncated, config.gamma, n=len(b.rewards)
        )
    return psi_fns.gae(b.rewards, values, next_values, b.terminated, b.truncated, config.gamma, config.gae_lambda)
    ### END SOLUTION


class Terms(NamedTuple):
    loss: Tensor  # L = L_π + c_V L_V − c_H H
    policy_loss: Tensor  # L_π
    value_loss: Tensor  # L_V
    entropy: Tensor  # H, the mean entropy of π(·|s_t)
    advantages: Tensor  # Â [T, N], before normalisation
    values: Tensor  # V(s_t) [T, N], detached
    targets: Tensor  # y_t = Â_t + V(s_t) [T, N]


def a2c_loss(policy: Policy, critic: nn.Module, batch: Batch, config: A2CConfig) -> Terms:
    """The loss of one iteration and the terms it is made of.

    Ψ is computed on the time-major [T, N] grid; the networks see the T × N steps as one
    flat batch of rows, which saves autograd a reshape per layer.
    """
    T, N = batch.rewards.shape
    v = critic(torch.cat([batch.obs, batch.next_obs]).flatten(0, 1))  # V(s_t) and V(s_{t+1}) in one pass
    values = v[: T * N]  # with its gradient, for the critic's loss
    v_now, v_next = v.detach().view(2 * T, N).split(T)  # without, for Â and y
    ### BEGIN SOLUTION
    adv = advantages(config, batch, v_now, v_next)
    targets = adv + v_now
    psi = psi_fns.normalize_advantages(adv, "scale") if config.normalize_advantages else adv
    dist = policy.distribution(batch.obs.flatten(0, 1))
    logp = policy.log_prob(dist, batch.actions.flatten(0, 1))
    entropy = policy.entropy(dist).mean()
    policy_loss = policy_gradient_loss(logp, psi.flatten())
    critic_loss = value_loss(values, targets.flatten())
    loss = policy_loss + config.vf_coef * critic_loss
    if config.ent_coef > 0:  # c_H = 0 (the default) keeps the entropy out of the backward pass
        loss = loss - config.ent_coef * entropy
    ### END SOLUTION
    return Terms(loss, policy_loss, critic_loss, entropy, adv, v_now, targets)


@torch.no_grad()
def rmsprop_step(flat: nn.Parameter, square_avg: Tensor, lr: float, config: A2CConfig) -> None:
    r"""One RMSprop step on the flat parameter vector θ with gradient g:

    .. math::

        v \leftarrow \alpha v + (1 - \alpha)\, g^2, \qquad
        \theta \leftarrow \theta - \text{lr}\, \frac{g}{\sqrt{v} + \epsilon}

    the rule of ``torch.optim.RMSprop`` (ε added to √v, v starting at 0), which SB3's A2C
    uses, number for number. torch's optimiser wraps these three operations in enough
    Python to take three times as long for one small tensor: 5–10% of an A2C iteration.
    """
    g = flat_grad(flat)
    square_avg.mul_(config.rms_alpha).addcmul_(g, g, value=1 - config.rms_alpha)
    flat.addcdiv_(g, square_avg.sqrt().add_(config.rms_eps), value=-lr)


def apply_update(loss: Tensor, flat: nn.Parameter, square_avg: Tensor, lr: float, config: A2CConfig) -> Tensor:
    """One gradient step on ``loss``: its gradient over every parameter (the flat vector θ, φ),
    the norm clipped to ``max_grad_norm``, then RMSprop. Returns the norm before clipping."""
    flat_grad(flat).zero_()
    loss.backward()
    grad_norm = clip_grad_norm(flat, config.max_grad_norm)
    rmsprop_step(flat, square_avg, lr, config)
    return grad_norm


def train(env_id: str = "CartPole-v1", config: A2CConfig | None = None, *, steps: int = 500_000, seed: int = 0,
          out: str | Path | None = None, progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 100_000, threads: int = 1, resume: bool = False,
          tensorboard: str | Path | None = None, device: str = "cpu",
          callback: Callable[[int, nn.Module], None] | None = None) -> Result:  # fmt: skip
    """Run A2C for ``steps`` environment steps; return a Result holding the policy.

    Each iteration collects ``num_envs × n_steps`` steps (the last one fewer, so the run
    stops within ``num_envs − 1`` steps of ``steps``) and takes one gradient step. The
    log has one row per ``log_interval`` iterations (and one for the rest at the end),
    columns ``LOG_COLUMNS``: ``return`` and ``length`` are means over the episodes that
    ended in the row's iterations (NaN if none did), ``episodes`` their number;
    ``policy_loss``, ``value_loss``, ``entropy`` and ``grad_norm`` (before clipping) are
    means over the iterations; ``explained_variance`` is 1 − Var(y − V)/Var(y) over their
    samples; ``lr`` is the step size of the row's last iteration.

    With ``out`` set, the networks, the optimiser, the environments and the random state are
    checkpointed there every ``checkpoint_every`` env steps; ``resume=True`` goes on from the
    last one to the same log, bit for bit. Acting runs on one CPU thread, the update
    on ``threads`` (one is fastest for these small batches). ``callback(env_steps,
    policy)``, if given, is called after every iteration's update (the benchmark
    evaluates with it); time spent in it is left out of ``timing``.
    """
    config = config or A2CConfig()
    check_run_args(steps, threads)
    # Tiny networks: torch's intra-op threads only wait on each other (on a busy machine even the
    # orthogonal initialisation's QR takes 100 ms per layer with two), and one thread keeps the
    # log bit for bit the same on machines with different core counts.
    with torch_threads(1):
        device = check_device(device)
        rng = seed_everything(seed)
        policy, critic = make_networks(env_id, env_kwargs, config)
        policy, critic = policy.to(device), critic.to(device)
        # One flat vector for every parameter (a shared trunk counted once): one tensor for RMSprop
        # and the clip instead of a dozen. SB3's A2C uses torch's RMSprop (ε added to √v, the
        # average of g² starting at 0), not the TF-like variant the RL Zoo uses for Atari; so do we.
        flat = flatten_parameters(nn.ModuleDict({"policy": policy, "critic": critic}))
        square_avg = torch.zeros_like(flat)  # RMSprop's running average of g²
        rollout = Rollout.for_config(env_id, config, seed, env_kwargs, device)
        policy.obs_normalizer = rollout.obs_normalizer  # acting on raw observations (evaluation, save)
        record = IterationRecord("a2c", env_id, env_kwargs, config, seed, steps, columns=LOG_COLUMNS, make_row=_row,
                                 out=out, progress=progress, checkpoint_every=checkpoint_every,
                                 log_interval=config.log_interval, callback=callback, resume=resume,
                                 tensorboard=tensorboard)  # fmt: skip
        if record.resumed:
            load_training_state(record.resumed, rng, rollout, policy=policy, critic=critic, square_avg=square_avg)
        iterations = math.ceil(steps / (config.num_envs * config.n_steps))
        with record, rollout:
            for iteration in range(record.iteration + 1, iterations + 1):
                lr = config.lr * (1.0 - (iteration - 1) / iterations if config.anneal_lr else 1.0)
                batch = rollout.collect(
                    policy, min(config.n_steps, math.ceil((steps - rollout.env_steps) / config.num_envs))
                )
                with torch_threads(threads):
                    terms = a2c_loss(policy, critic, batch, config)
                    if not torch.isfinite(terms.loss):
                        raise NonFiniteError("loss", rollout.env_steps, record.last_checkpoint)
                    grad_norm = apply_update(terms.loss, flat, square_avg, lr, config)
                stats = {
                    "policy_loss": terms.policy_loss.detach(),
                    "value_loss": terms.value_loss.detach(),
                    "entropy": terms.entropy.detach(),
                    "grad_norm": grad_norm,
                    "values": terms.values,
                    "targets": terms.targets,
                    "lr": lr,
                }
                record.end_iteration(
                    rollout.env_steps,
                    stats,
                    batch.episode_returns,
                    batch.episode_lengths,
                    lambda: training_state(rng, rollout, policy=policy, critic=critic, square_avg=square_avg),
                    policy,
                    final=iteration == iterations,
                )
        return record.result(policy)


def make_networks(env_id: str, env_kwargs: dict | None, config: A2CConfig) -> tuple[Policy, nn.Module]:
    """The policy for the environment's spaces (checked before any vector env starts) and its critic."""
    probe = gym.make(env_id, **(env_kwargs or {}))
    probe.close()
    policy = make_policy(
        "a2c",
        probe.observation_space,
        probe.action_space,
        config.hidden,
        config.log_std_init,
        **gaussian_options(config),
    )
    return policy, make_critic(policy, gym.spaces.flatdim(probe.observation_space), config)


ROW_MEANS = ("policy_loss", "value_loss", "entropy", "grad_norm")


def _row(window: list[dict], returns: list, lengths: list) -> dict:
    """The numbers of one log row, from the iterations since the last one: the losses become
    Python numbers here, once per row, not once per iteration."""
    stats = torch.tensor([[float(entry[key]) for key in ROW_MEANS] for entry in window], dtype=torch.float64)
    ev = explained_variance(
        torch.cat([entry["values"].flatten() for entry in window]),
        torch.cat([entry["targets"].flatten() for entry in window]),
    )
    return {**dict(zip(ROW_MEANS, stats.mean(0).tolist())), "explained_variance": ev, "lr": window[-1]["lr"]}
