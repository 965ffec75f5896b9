r"""Eligibility traces: tabular TD(λ) policy evaluation, backward and forward views (lesson 2).

TD(0) moves :math:`V(s_t)` toward a one-step target, Monte-Carlo toward the whole return.
TD(λ) averages every n-step return :math:`G_{t:t+n}` with weights :math:`(1-\lambda)\lambda^{n-1}`,
the **λ-return** (Sutton & Barto, 2nd ed., §12.1), computed backwards through an episode:

.. math::

    G^\lambda_t = r_{t+1} + \gamma\,\big[(1-\lambda)\,V(s_{t+1}) + \lambda\,G^\lambda_{t+1}\big],
    \qquad G^\lambda_{T} = V(s_T)\ (0 \text{ if } s_T \text{ is terminal}).

λ = 0 gives the TD(0) target :math:`r_{t+1} + \gamma V(s_{t+1})`; λ = 1 the Monte-Carlo
return :math:`G_t` (bootstrapped from :math:`V(s_T)` only where the episode was cut).

**Forward view** (offline λ-return algorithm, §12.1): at the end of each episode, with
V held fixed through it,
:math:`V(s) \leftarrow V(s) + \alpha \sum_{t:\, s_t = s} [G^\lambda_t - V(s_t)]`.

**Backward view** (TD(λ), §12.2): after every step, each state is moved by the TD error in
proportion to its **eligibility trace** :math:`e(s)`, a fading memory of its visits:

.. math::

    \delta_t = r_{t+1} + \gamma\,(1 - \text{terminated})\,V(s_{t+1}) - V(s_t), \qquad
    e \leftarrow \gamma\lambda\, e, \quad
    e(s_t) \leftarrow \begin{cases} e(s_t) + 1 & \text{accumulating} \\ 1 & \text{replacing} \end{cases},
    \qquad V \leftarrow V + \alpha\, \delta_t\, e.

Why the two views agree: with V fixed, :math:`G^\lambda_t - V(s_t) = \sum_{k \ge t}
(\gamma\lambda)^{k-t} \delta_k`, and the accumulating trace of s at step k is
:math:`\sum_{t \le k,\, s_t = s} (\gamma\lambda)^{k-t}`; swapping the two sums shows that the
backward view's increments, summed over an episode, are the forward view's exactly.
``offline=True`` applies them at the episode's end, and the two agree to rounding; online
(``offline=False``, the usual TD(λ)) they differ by :math:`O(\alpha^2)`.
At λ = 0 the trace is the indicator of :math:`s_t`, so online TD(λ) *is* TD(0). At λ = 1,
γ = 1, replacing traces give first-visit Monte-Carlo (Singh & Sutton 1996), accumulating
traces every-visit.

Pseudocode (Sutton & Barto, 2nd ed., §12.2, for a tabular V)::

    for each episode:
        e ← 0;  s ← reset()
        until terminated or truncated:
            a ~ π(· | s);  take a, observe r, s'
            δ ← r + γ (1 − terminated) V(s') − V(s)
            e ← γλ e;  e(s) ← e(s) + 1   (replacing: e(s) ← 1)
            V ← V + α δ e;  s ← s'

Sampling is that of :func:`rlcourse.tabular.evaluation.td0_evaluation` (the same draws
from the same seed), so λ = 0 reproduces it number for number.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rlcourse.tabular.evaluation import ValueEstimate, check_count, check_gamma, check_policy, sample_action

TRACES = ("accumulating", "replacing")


class Episode(NamedTuple):
    states: list  # s_0 … s_T (s_T: where the episode stopped)
    rewards: list  # r_1 … r_T
    terminated: bool  # s_T is terminal (False: the episode was cut by the step limit)


def play_episode(env, cdf: np.ndarray, rng: np.random.Generator, seed: int | None) -> Episode:
    """One episode of π (its cumulative rows ``cdf``), drawn as ``td0_evaluation`` draws it."""
    state, _ = env.reset(seed=seed)
    states, rewards = [int(state)], []
    while True:
        state, reward, terminated, truncated, _ = env.step(sample_action(cdf, states[-1], rng))
        states.append(int(state))
        rewards.append(float(reward))
        if terminated or truncated:
            return Episode(states, rewards, bool(terminated))


def lambda_returns(rewards, next_values, gamma: float, lam: float) -> np.ndarray:
    r"""The λ-returns :math:`G^\lambda_0 … G^\lambda_{T-1}` of one episode.

    ``rewards[t]`` is :math:`r_{t+1}` and ``next_values[t]`` is :math:`V(s_{t+1})`, with the
    last one 0 when the episode terminated (and :math:`V(s_T)` when it was cut).
    """
    # Hint: walk backwards from G^λ_T = next_values[-1] (the value after the last step):
    # Hint: G^λ_t = r_{t+1} + γ ((1 − λ) V(s_{t+1}) + λ G^λ_{t+1}). Return a float array [T].
    ### BEGIN SOLUTION
    returns = np.empty(len(rewards))
    G = float(next_values[-1]) if len(rewards) else 0.0
    for t in reversed(range(len(rewards))):
        G = rewards[t] + gamma * ((1 - lam) * next_values[t] + lam * G)
        returns[t] = G
    return returns
    ### END SOLUTION


def update_trace(e: np.ndarray, state: int, gamma: float, lam: float, trace: str = "accumulating") -> np.ndarray:
    """Decay every trace by γλ, then mark ``state`` (+1 accumulating, = 1 replacing); in place, returns ``e``."""
    # Hint: one multiplication fades every state's trace; then the visited state's entry
    # Hint: grows by 1 ("accumulating") or is reset to 1 ("replacing").
    ### BEGIN SOLUTION
    e *= gamma * lam
    if trace == "accumulating":
        e[state] += 1.0
    else:
        e[state] = 1.0
    return e
    ### END SOLUTION


def td_lambda_episode(
    V: np.ndarray, episode: Episode, alpha: float, gamma: float, lam: float, trace: str, offline: bool
) -> None:
    """The backward view over one episode: V += α δ_t e_t after each step (``offline``: all at the end)."""
    e = np.zeros_like(V)
    increments = np.zeros_like(V) if offline else V  # offline: V stays fixed through the episode
    last = len(episode.rewards) - 1
    for t, reward in enumerate(episode.rewards):
        s, s_next = episode.states[t], episode.states[t + 1]
        # Hint: δ_t bootstraps from V(s_{t+1}) unless step t ended the episode in a terminal
        # Hint: state; then update the traces and move every state by α δ_t e(s) (into
        # Hint: ``increments``, which is V itself online).
        ### BEGIN SOLUTION
        bootstrap = 0.0 if (episode.terminated and t == last) else V[s_next]
        delta = reward + gamma * bootstrap - V[s]
        update_trace(e, s, gamma, lam, trace)
        increments += alpha * delta * e
        ### END SOLUTION
    if offline:
        V += increments


def _setup(env, pi, gamma: float, lam: float, episodes: int, alpha: float, trace: str) -> np.ndarray:
    """Validate; return π's cumulative rows."""
    check_gamma(gamma)
    check_count("episodes", episodes)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1:
        raise ValueError(f"lam = {lam!r} is out of range: it must be in [0, 1]")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ValueError(f"alpha = {alpha!r} is out of range: it must be in (0, 1]")
    if trace not in TRACES:
        raise ValueError(f"trace = {trace!r} is not allowed: it must be one of {', '.join(map(repr, TRACES))}")
    return np.cumsum(check_policy(pi, env.observation_space.n, env.action_space.n), axis=1)


def td_lambda_evaluation(
    env,
    pi,
    gamma: float,
    lam: float,
    episodes: int,
    *,
    alpha: float = 0.1,
    trace: str = "accumulating",
    offline: bool = False,
    seed: int = 0,
) -> ValueEstimate:
    """TD(λ) prediction of V^π, the backward view with ``trace`` = "accumulating" or "replacing"."""
    cdf = _setup(env, pi, gamma, lam, episodes, alpha, trace)
    rng = np.random.default_rng(seed)
    V = np.zeros(cdf.shape[0])
    history = np.empty((episodes, cdf.shape[0]))
    for episode in range(episodes):
        td_lambda_episode(
            V, play_episode(env, cdf, rng, seed if episode == 0 else None), alpha, gamma, lam, trace, offline
        )
        history[episode] = V
    return ValueEstimate(V, history)


def lambda_return_evaluation(
    env, pi, gamma: float, lam: float, episodes: int, *, alpha: float = 0.1, seed: int = 0
) -> ValueEstimate:
    r"""The offline λ-return algorithm (the forward view): after each episode,
    :math:`V(s) \mathrel{+}= \alpha \sum_{t: s_t = s} [G^\lambda_t - V(s_t)]` with V fixed through it."""
    cdf = _setup(env, pi, gamma, lam, episodes, alpha, "accumulating")
    rng = np.random.default_rng(seed)
    V = np.zeros(cdf.shape[0])
    history = np.empty((episodes, cdf.shape[0]))
    for episode in range(episodes):
        played = play_episode(env, cdf, rng, seed if episode == 0 else None)
        next_values = V[played.states[1:]]
        if played.terminated:
            next_values[-1] = 0.0
        visited = np.asarray(played.states[:-1])
        errors = lambda_returns(played.rewards, next_values, gamma, lam) - V[visited]
        np.add.at(V, visited, alpha * errors)  # V[visited] on the right was read before any change
        history[episode] = V
    return ValueEstimate(V, history)
