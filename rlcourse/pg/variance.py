r"""The variance lesson, measured: every Ψ_t on a small MDP whose exact gradient is known.

The MDP is small enough (3 states, 2 actions, horizon 4: 3888 trajectories) to sum over
every trajectory, so the true gradient of :math:`J(\theta) = \mathbb{E}[\sum_t \gamma^t r_t]`
is a number, and each estimator's bias and variance can be measured against it.

**The log-derivative trick.** With :math:`p_\theta(\tau)` the probability of a trajectory
:math:`\tau = (s_0, a_0, r_0, s_1, \dots, s_H)` and :math:`R(\tau) = \sum_t \gamma^t r_t`,

.. math::

    \nabla_\theta J = \sum_\tau \nabla_\theta p_\theta(\tau)\, R(\tau)
                    = \sum_\tau p_\theta(\tau)\, \nabla_\theta \log p_\theta(\tau)\, R(\tau)
                    = \mathbb{E}_\tau\big[\nabla_\theta \log p_\theta(\tau)\, R(\tau)\big],

and since :math:`\log p_\theta(\tau) = \log d_0(s_0) + \sum_t \big[\log \pi_\theta(a_t \mid s_t)
+ \log P(s_{t+1} \mid s_t, a_t)\big]`, the unknown dynamics drop out of the gradient:
:math:`\nabla_\theta \log p_\theta(\tau) = \sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)`.
For the tabular softmax policy :math:`\pi(a \mid s) = e^{\theta_{s,a}} / \sum_b e^{\theta_{s,b}}`
the score is :math:`\nabla_\theta \log \pi(a \mid s) = e_{s,a} - \pi(\cdot \mid s)` in row s
and zero elsewhere.

**Rewards-to-go (causality).** A reward received before :math:`a_t` is fixed by the history
up to :math:`s_t`, and for every fixed history the score has mean zero (below), so
:math:`\mathbb{E}[\nabla \log \pi(a_t \mid s_t)\, r_{t'}] = 0` for :math:`t' < t`. Dropping
those terms changes no expectation and removes their noise:

.. math::

    \nabla_\theta J = \mathbb{E}\Big[\sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\;
                      \gamma^t G_t\Big], \qquad G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'} .

The :math:`\gamma^t` in front is part of the exact gradient of the discounted objective;
:mod:`rlcourse.pg.psi` (like every practical implementation) leaves it out of Ψ_t, which
weighs late steps as much as early ones. Here we put it back, so that every estimator is
exactly unbiased for this J and the comparison is only about variance.

**Baselines.** For any state, :math:`\mathbb{E}_{a \sim \pi}[\nabla \log \pi(a \mid s)]
= \sum_a \nabla \pi(a \mid s) = \nabla \sum_a \pi(a \mid s) = \nabla 1 = 0`, so subtracting
any :math:`b(s_t, t)` that does not depend on :math:`a_t` (nor on the sample itself) keeps
the estimator unbiased, and a b close to :math:`G_t` shrinks its variance. We compare a
constant b, a time-dependent :math:`b_t` and the exact :math:`V^\pi_t(s_t)` (it depends on t
because the horizon is finite). The constant and :math:`b_t` are fitted on a separate
*reference* batch drawn before the estimates: fitted on the batch they weigh, each sample's
own return would sit inside its baseline, a bias of order 1/m. With the exact critic we
add :math:`Q^\pi_t(s_t, a_t)` and the TD residual :math:`r_t + \gamma V_{t+1}(s_{t+1}) - V_t(s_t)`,
both unbiased since :math:`\mathbb{E}[G_t \mid s_t, a_t] = Q_t` and
:math:`\mathbb{E}[\delta_t \mid s_t, a_t] = Q_t - V_t`.

Every Ψ is computed by :mod:`rlcourse.pg.psi` on ``[T, N]`` tensors, N = trajectories.
:func:`variance_table` measures them all; the lesson's notebook plots it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from rlcourse.pg import psi as psi_fns


@dataclasses.dataclass(frozen=True)
class MDP:
    """A finite-horizon MDP: s_0 ~ d0, then H steps of a_t ~ π(·∣s_t), s_{t+1} ~ P[s_t, a_t],
    reward R[s_t, a_t, s_{t+1}] (random given (s, a), since it depends on where you land)."""

    P: np.ndarray  # [S, A, S] transition probabilities
    R: np.ndarray  # [S, A, S] rewards
    d0: np.ndarray  # [S] initial distribution
    H: int = 4
    gamma: float = 0.9

    def __post_init__(self):
        S, A, S2 = np.shape(self.P)
        if S2 != S or np.shape(self.R) != (S, A, S) or np.shape(self.d0) != (S,):
            raise ValueError(
                f"P and R must be [S, A, S] and d0 [S]; got P {np.shape(self.P)}, "
                f"R {np.shape(self.R)}, d0 {np.shape(self.d0)}"
            )
        if (np.asarray(self.P) < 0).any() or not np.allclose(np.sum(self.P, axis=-1), 1.0):
            raise ValueError("P[s, a] must be a probability distribution over next states")
        if (np.asarray(self.d0) < 0).any() or not np.isclose(np.sum(self.d0), 1.0):
            raise ValueError("d0 must be a probability distribution over states")
        if self.H < 1:
            raise ValueError(f"H must be at least 1, got {self.H}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    @property
    def n_states(self) -> int:
        return np.shape(self.P)[0]

    @property
    def n_actions(self) -> int:
        return np.shape(self.P)[1]


def small_mdp() -> MDP:
    """The lesson's MDP: 3 states, 2 actions, horizon 4, γ = 0.9, all rewards positive (so
    that Ψ without a baseline is far from zero, the case where baselines matter)."""
    P = np.array(
        [[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], [[0.3, 0.5, 0.2], [0.1, 0.2, 0.7]], [[0.5, 0.1, 0.4], [0.2, 0.3, 0.5]]]
    )
    action_reward = np.array([[0.0, 1.0], [1.0, 2.0], [3.0, 1.0]])  # [s, a]
    landing_bonus = np.array([0.0, 0.5, 1.0])  # [s']
    R = action_reward[:, :, None] + landing_bonus[None, None, :]
    return MDP(P=P, R=R, d0=np.array([0.6, 0.3, 0.1]), H=4, gamma=0.9)


def default_theta() -> np.ndarray:
    """The policy parameters at which the lesson measures (any θ would do)."""
    return np.array([[0.3, -0.2], [-0.5, 0.4], [0.1, 0.6]])


def softmax_policy(theta: np.ndarray) -> np.ndarray:
    """π[s, a] = exp θ[s, a] / Σ_b exp θ[s, b]."""
    z = np.exp(theta - theta.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclasses.dataclass
class Trajectories:
    states: np.ndarray  # [H+1, N] s_0 … s_H
    actions: np.ndarray  # [H, N]
    rewards: np.ndarray  # [H, N]
    prob: np.ndarray | None = None  # [N] p_θ(τ), for the enumerated set

    @property
    def count(self) -> int:
        return self.actions.shape[1]


def enumerate_trajectories(mdp: MDP, theta: np.ndarray) -> Trajectories:
    """Every (s_0, a_0, s_1, …, a_{H-1}, s_H) with its probability under π_θ."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.H
    combos = np.array(list(itertools.product(range(S), *([range(A), range(S)] * H)))).T
    states, actions = combos[0::2], combos[1::2]
    pi = softmax_policy(theta)
    prob = mdp.d0[states[0]].copy()
    for t in range(H):
        prob *= pi[states[t], actions[t]] * mdp.P[states[t], actions[t], states[t + 1]]
    rewards = mdp.R[states[:-1], actions, states[1:]]
    return Trajectories(states, actions, rewards, prob)


def _probabilities(traj: Trajectories) -> np.ndarray:
    """p_θ(τ) of each trajectory of an enumerated set."""
    if traj.prob is None:
        raise ValueError("these trajectories were sampled, not enumerated: they carry no probabilities")
    return traj.prob


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` [N, K]."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


def sample_trajectories(mdp: MDP, theta: np.ndarray, m: int, rng: np.random.Generator) -> Trajectories:
    """m independent trajectories of π_θ."""
    pi = softmax_policy(theta)
    states = np.empty((mdp.H + 1, m), dtype=np.int64)
    actions = np.empty((mdp.H, m), dtype=np.int64)
    states[0] = _draw(np.broadcast_to(mdp.d0, (m, mdp.n_states)), rng)
    for t in range(mdp.H):
        actions[t] = _draw(pi[states[t]], rng)
        states[t + 1] = _draw(mdp.P[states[t], actions[t]], rng)
    rewards = mdp.R[states[:-1], actions, states[1:]]
    return Trajectories(states, actions, rewards)


def discounted_returns(mdp: MDP, traj: Trajectories) -> np.ndarray:
    """R(τ) = Σ_t γ^t r_t for each trajectory, [N]."""
    return ((mdp.gamma ** np.arange(mdp.H))[:, None] * traj.rewards).sum(axis=0)


def expected_return(mdp: MDP, theta: np.ndarray) -> float:
    """J(θ) = Σ_τ p_θ(τ) R(τ), exactly."""
    traj = enumerate_trajectories(mdp, theta)
    return float(_probabilities(traj) @ discounted_returns(mdp, traj))


def scores(mdp: MDP, theta: np.ndarray, traj: Trajectories) -> np.ndarray:
    """∇_θ log π(a_t ∣ s_t) = e_{s_t, a_t} − π(·∣s_t) in row s_t: [H, N, S, A]."""
    pi = softmax_policy(theta)
    row = np.eye(mdp.n_states)[traj.states[:-1]]  # [H, N, S]
    diff = np.eye(mdp.n_actions)[traj.actions] - pi[traj.states[:-1]]  # [H, N, A]
    return row[..., :, None] * diff[..., None, :]


def exact_gradient(mdp: MDP, theta: np.ndarray) -> np.ndarray:
    """∇J(θ) = Σ_τ p_θ(τ) R(τ) ∇ log p_θ(τ), summed over every trajectory: [S, A]."""
    traj = enumerate_trajectories(mdp, theta)
    grad_log_p = scores(mdp, theta, traj).sum(axis=0)  # [N, S, A]
    return np.einsum("n,n,nsa->sa", _probabilities(traj), discounted_returns(mdp, traj), grad_log_p)


def exact_values(mdp: MDP, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """V[t, s] = E[G_t ∣ s_t = s] ([H+1, S], V[H] = 0) and Q[t, s, a] ([H, S, A]) by backward
    induction: Q_t(s, a) = Σ_{s'} P(s'∣s, a) (R(s, a, s') + γ V_{t+1}(s')), V_t = Σ_a π Q_t."""
    pi = softmax_policy(theta)
    V = np.zeros((mdp.H + 1, mdp.n_states))
    Q = np.zeros((mdp.H, mdp.n_states, mdp.n_actions))
    for t in reversed(range(mdp.H)):
        Q[t] = (mdp.P * (mdp.R + mdp.gamma * V[t + 1][None, None, :])).sum(axis=-1)
        V[t] = (pi * Q[t]).sum(axis=-1)
    return V, Q


PSI = {
    "total-return": "total return R(τ)",
    "reward-to-go": "reward-to-go G_t",
    "constant-baseline": "G_t − b (constant)",
    "time-baseline": "G_t − b_t",
    "value-baseline": "G_t − V(s_t)",
    "td-residual": "TD residual δ_t (exact V)",
    "q-value": "Q(s_t, a_t) (exact)",
}
NEEDS_REFERENCE = ("constant-baseline", "time-baseline")


def _episode_arrays(
    mdp: MDP, traj: Trajectories
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The [H, N] tensors psi.py expects: one episode per column, ended at H (terminal)."""
    H, N = traj.actions.shape
    rewards = torch.as_tensor(traj.rewards, dtype=torch.float64)
    terminated = torch.zeros(H, N, dtype=torch.bool)
    terminated[-1] = True
    truncated = torch.zeros(H, N, dtype=torch.bool)
    starts = torch.zeros(H, N, dtype=torch.bool)
    starts[0] = True
    timesteps = torch.arange(H)[:, None].expand(H, N)
    return rewards, terminated, truncated, starts, timesteps


def _fitted_on_reference(
    fn: Callable[..., torch.Tensor], G: torch.Tensor, G_ref: torch.Tensor, *extra: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Apply a batch baseline of psi.py to G with the baseline fitted on G_ref only (the
    mask keeps the reference columns), so no sample weighs itself."""
    both = torch.cat([G_ref, G], dim=1)
    mask = torch.zeros_like(both, dtype=torch.bool)
    mask[:, : G_ref.shape[1]] = True
    joined = [torch.cat([e_ref, e], dim=1) for e_ref, e in extra]
    return fn(both, *joined, mask=mask)[:, G_ref.shape[1] :]


def psi_weights(
    mdp: MDP, theta: np.ndarray, traj: Trajectories, psi: str, reference: Trajectories | None = None
) -> torch.Tensor:
    """Ψ_t for every step of every trajectory, [H, N], including the γ^t factor of the
    exact gradient for the causal estimators (all but the total return)."""
    if psi not in PSI:
        raise ValueError(f"psi must be one of {sorted(PSI)}, got {psi!r}")
    rewards, terminated, truncated, starts, timesteps = _episode_arrays(mdp, traj)
    gamma = mdp.gamma
    if psi == "total-return":
        return psi_fns.total_return(rewards, terminated, truncated, starts, gamma)
    G = psi_fns.reward_to_go(rewards, terminated, truncated, gamma)
    s, a = torch.as_tensor(traj.states), torch.as_tensor(traj.actions)
    V, Q = (torch.as_tensor(x) for x in exact_values(mdp, theta))
    t = torch.arange(mdp.H)[:, None]
    if psi == "reward-to-go":
        out = G
    elif psi in NEEDS_REFERENCE:
        if reference is None:
            raise ValueError(f"psi={psi!r} needs a reference batch to fit its baseline on")
        r_ref, term_ref, trunc_ref, _, timesteps_ref = _episode_arrays(mdp, reference)
        G_ref = psi_fns.reward_to_go(r_ref, term_ref, trunc_ref, gamma)
        if psi == "constant-baseline":
            out = _fitted_on_reference(psi_fns.constant_baseline, G, G_ref)
        else:
            out = _fitted_on_reference(psi_fns.time_baseline, G, G_ref, (timesteps_ref, timesteps))
    elif psi == "value-baseline":
        out = psi_fns.value_baseline(G, V[t, s[:-1]])
    elif psi == "td-residual":
        out = psi_fns.td_residual(rewards, V[t, s[:-1]], V[t + 1, s[1:]], terminated, gamma)
    else:  # q-value
        out = psi_fns.q_actor_critic(Q[t, s[:-1]], a)
    return out.to(torch.float64) * torch.tensor(gamma, dtype=torch.float64) ** t


def per_trajectory_gradients(
    mdp: MDP, theta: np.ndarray, traj: Trajectories, psi: str, reference: Trajectories | None = None
) -> np.ndarray:
    """Σ_t ∇ log π(a_t | s_t) Ψ_t for each trajectory: [N, S, A]."""
    weights = psi_weights(mdp, theta, traj, psi, reference).numpy()
    return np.einsum("tn,tnsa->nsa", weights, scores(mdp, theta, traj))


def gradient_estimates(
    mdp: MDP,
    theta: np.ndarray,
    psi: str,
    m: int,
    rng: np.random.Generator,
    batches: int = 1000,
    reference: Trajectories | None = None,
    reference_size: int = 100,
) -> np.ndarray:
    r"""``batches`` independent estimates :math:`\frac1m \sum_i \sum_t \nabla\log\pi\,\Psi_t`,
    each from m fresh trajectories: [batches, S, A].

    The constant and time-dependent baselines are fitted on ``reference`` (by default
    ``reference_size`` trajectories drawn first), shared by all estimates: given it, the
    estimates are i.i.d. and unbiased.
    """
    if psi in NEEDS_REFERENCE and reference is None:
        reference = sample_trajectories(mdp, theta, reference_size, rng)
    traj = sample_trajectories(mdp, theta, batches * m, rng)
    g = per_trajectory_gradients(mdp, theta, traj, psi, reference)
    return g.reshape(batches, m, *g.shape[1:]).mean(axis=1)


def exact_moments(
    mdp: MDP, theta: np.ndarray, psi: str, reference: Trajectories | None = None
) -> tuple[np.ndarray, float]:
    """Mean and total variance (trace of the covariance) of the single-trajectory estimator,
    summed over every trajectory (exact, given the reference batch)."""
    traj = enumerate_trajectories(mdp, theta)
    g = per_trajectory_gradients(mdp, theta, traj, psi, reference)
    prob = _probabilities(traj)
    mean = np.einsum("n,nsa->sa", prob, g)
    return mean, float(np.einsum("n,nsa->", prob, (g - mean) ** 2))


def variance_table(
    mdp: MDP | None = None,
    theta: np.ndarray | None = None,
    samples: int = 20_000,
    seed: int = 0,
    reference_size: int = 100,
) -> pd.DataFrame:
    """One row per Ψ: the bias and total variance of the single-trajectory estimator.

    ``bias_norm`` is ‖mean − ∇J‖ over ``samples`` sampled trajectories (it shrinks like
    1/√samples for an unbiased estimator), ``stderr_norm`` its size to expect from noise
    alone, ``total_variance`` the trace of the sampled covariance, ``relative_variance``
    that divided by the total return's, and ``exact_variance`` the trace computed by
    enumerating every trajectory.
    """
    mdp = small_mdp() if mdp is None else mdp
    theta = default_theta() if theta is None else theta
    rng = np.random.default_rng(seed)
    reference = sample_trajectories(mdp, theta, reference_size, rng)
    exact = exact_gradient(mdp, theta)
    rows = []
    for key, label in PSI.items():
        g = gradient_estimates(mdp, theta, key, 1, rng, batches=samples, reference=reference)
        g = g.reshape(samples, -1)
        variance = float(g.var(axis=0, ddof=1).sum())
        rows.append(
            {
                "estimator": label,
                "psi": key,
                "bias_norm": float(np.linalg.norm(g.mean(axis=0) - exact.ravel())),
                "stderr_norm": float(np.sqrt(variance / samples)),
                "total_variance": variance,
                "exact_variance": exact_moments(mdp, theta, key, reference)[1],
            }
        )
    table = pd.DataFrame(rows)
    table.insert(5, "relative_variance", table["total_variance"] / table["total_variance"].iloc[0])
    return table
