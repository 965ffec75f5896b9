r"""Policy evaluation: exact (dynamic programming), Monte-Carlo and TD(0) (lesson 2).

All three estimate the state value of a fixed policy :math:`\pi`,

.. math::

    V^\pi(s) = \mathbb{E}_\pi\Big[\sum_{k \ge 0} \gamma^k r_{t+k+1} \,\Big|\, s_t = s\Big],

the solution of the Bellman expectation equation

.. math::

    V^\pi(s) = \sum_a \pi(a \mid s) \Big[ R(s, a) + \gamma \sum_{s'} T(s, a, s')\, V^\pi(s') \Big].

* :func:`exact_evaluation` knows the model and solves that linear system.
* :func:`mc_evaluation` only samples episodes and averages the returns it sees.
* :func:`td0_evaluation` samples single steps and bootstraps from its own estimate of
  :math:`V(s')`.

The model is the one Gymnasium's toy-text environments publish,
``P[s][a] == [(probability, next_state, reward, terminated), ...]``. A policy ``pi`` is an
array ``[n_states, n_actions]`` of action probabilities whose rows sum to 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def check_gamma(gamma: float) -> None:
    """Raise ValueError unless 0 ≤ γ ≤ 1."""
    is_number = isinstance(gamma, (int, float, np.integer, np.floating)) and not isinstance(gamma, bool)
    if not (is_number and 0 <= gamma <= 1):
        raise ValueError(f"gamma = {gamma!r} is out of range: it must be in [0, 1]")


def check_count(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is an integer ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r} is out of range: it must be an integer >= 1")


def check_policy(pi, n_states: int, n_actions: int) -> np.ndarray:
    """``pi`` as a float array [S, A] whose rows are probability distributions."""
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (n_states, n_actions):
        raise ValueError(f"pi has shape {pi.shape}: it must be (n_states, n_actions) = {(n_states, n_actions)}")
    if (pi < 0).any() or not np.allclose(pi.sum(axis=1), 1):
        raise ValueError("pi must hold non-negative action probabilities with rows that sum to 1")
    return pi


def model_arrays(P) -> tuple[np.ndarray, np.ndarray]:
    r"""The model as arrays: continuation probabilities ``T[s, a, s']`` and rewards ``R[s, a]``.

    .. math::

        T(s, a, s') = \sum_{(p,\, s',\, r,\, \text{term}) \in P[s][a]} p\,[\text{not term}],
        \qquad
        R(s, a) = \sum_{(p,\, \cdot,\, r,\, \cdot) \in P[s][a]} p\, r

    A transition that terminates pays its reward and then stops: it adds nothing to ``T``.
    An absorbing terminal state therefore has zero rows, so its value is 0 and γ = 1 is
    well defined for policies that terminate.
    """
    n_states, n_actions = len(P), len(P[0])
    T = np.zeros((n_states, n_actions, n_states))
    R = np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, next_state, reward, terminated in P[s][a]:
                # Hint: every outcome pays its reward; only the ones that continue add to T.
                ### BEGIN SOLUTION
                R[s, a] += prob * reward
                if not terminated:
                    T[s, a, next_state] += prob
                ### END SOLUTION
    return T, R


def uniform_policy(n_states: int, n_actions: int) -> np.ndarray:
    """π(a | s) = 1 / n_actions everywhere."""
    return np.full((n_states, n_actions), 1.0 / n_actions)


def greedy_policy_matrix(actions, n_actions: int) -> np.ndarray:
    """The deterministic policy π(s) = actions[s] as a one-hot [S, A] matrix."""
    actions = np.asarray(actions, dtype=int)
    return np.eye(n_actions)[actions]


def solve_bellman(T: np.ndarray, R: np.ndarray, pi: np.ndarray, gamma: float) -> np.ndarray:
    r"""V^π from the model arrays: solve :math:`(I - \gamma P_\pi) V = r_\pi`.

    .. math::

        P_\pi(s, s') = \sum_a \pi(a \mid s)\, T(s, a, s'), \qquad
        r_\pi(s) = \sum_a \pi(a \mid s)\, R(s, a)

    With γ < 1 the system always has one solution. With γ = 1 it has one only if the
    policy terminates, with probability 1, from every state.
    """
    check_gamma(gamma)
    pi = check_policy(pi, *R.shape)
    # Hint: average T and R over π's action probabilities (np.einsum or a sum over axis 1),
    # then build the matrix A = I − γ P_π of the system A V = r_π.
    ### BEGIN SOLUTION
    P_pi = np.einsum("sa,sat->st", pi, T)
    r_pi = (pi * R).sum(axis=1)
    A = np.eye(len(r_pi)) - gamma * P_pi
    ### END SOLUTION
    if gamma == 1 and np.linalg.matrix_rank(A) < len(r_pi):
        raise ValueError(
            "the Bellman system is singular: the policy never terminates from some "
            "state, so with gamma = 1 its value is undefined; use gamma < 1"
        )
    return np.linalg.solve(A, r_pi)


def exact_evaluation(P, pi, gamma: float) -> np.ndarray:
    r"""V^π exactly, by solving the Bellman expectation equation as a linear system.

    .. math::

        V^\pi = r_\pi + \gamma P_\pi V^\pi
        \quad\Longleftrightarrow\quad
        (I - \gamma P_\pi)\, V^\pi = r_\pi

    Raises ValueError if γ = 1 and the policy never terminates from some state.
    """
    return solve_bellman(*model_arrays(P), pi, gamma)


class ValueEstimate(NamedTuple):
    V: np.ndarray  # final estimate, [S]
    history: np.ndarray  # the estimate after each episode, [episodes, S]


def sample_action(cdf: np.ndarray, state: int, rng: np.random.Generator) -> int:
    """Draw a ~ π(· | state) by inverting the cumulative row ``cdf[state]``."""
    return min(int(np.searchsorted(cdf[state], rng.random(), side="right")), cdf.shape[1] - 1)


def sample_episode(env, cdf: np.ndarray, rng: np.random.Generator, seed: int | None):
    """Play one episode with π; return its states s_0 … s_{T−1} and rewards r_1 … r_T."""
    state, _ = env.reset(seed=seed)
    states, rewards, done = [], [], False
    while not done:
        next_state, reward, terminated, truncated, _ = env.step(sample_action(cdf, state, rng))
        states.append(int(state))
        rewards.append(float(reward))
        state, done = next_state, terminated or truncated
    return states, rewards


def _check_sampling(env, pi, gamma: float, episodes: int, alpha: float | None) -> np.ndarray:
    """Validate the arguments of the sampling evaluators; return π's cumulative rows."""
    check_gamma(gamma)
    check_count("episodes", episodes)
    if alpha is not None and not 0 < alpha <= 1:
        raise ValueError(f"alpha = {alpha!r} is out of range: it must be in (0, 1]")
    pi = check_policy(pi, env.observation_space.n, env.action_space.n)
    return np.cumsum(pi, axis=1)


def mc_evaluation(
    env, pi, gamma: float, episodes: int, *, first_visit: bool = True, alpha: float | None = None, seed: int = 0
) -> ValueEstimate:
    r"""Monte-Carlo prediction: move V(s) toward the returns that follow visits to s.

    The return from step t is computed backwards through the episode,

    .. math::

        G_t = r_{t+1} + \gamma G_{t+1}, \qquad G_T = 0,

    and each counted visit updates

    .. math::

        V(s_t) \leftarrow V(s_t) + \alpha_t\,[\,G_t - V(s_t)\,]

    with :math:`\alpha_t = 1 / N(s_t)` (``alpha=None``: V(s) is the running mean of the
    :math:`N(s)` returns seen so far) or a constant α (constant-α MC, which forgets old
    returns). First-visit MC counts only the first visit to s in each episode;
    every-visit MC counts them all.

    Pseudocode (Sutton & Barto, 2nd ed., §5.1)::

        for each episode s_0, r_1, …, s_{T−1}, r_T generated with π:
            G ← 0
            for t = T−1, …, 0:
                G ← r_{t+1} + γ G
                if every-visit or s_t is not in s_0 … s_{t−1}:
                    N(s_t) += 1
                    V(s_t) += α_t (G − V(s_t))

    MC cannot bootstrap: an episode cut by the step limit (``truncated``) yields returns
    that are cut short too, which biases V for the states visited before the cut. Use
    γ < 1, a generous ``max_episode_steps``, or an environment whose episodes terminate.
    """
    cdf = _check_sampling(env, pi, gamma, episodes, alpha)
    rng = np.random.default_rng(seed)
    V = np.zeros(cdf.shape[0])
    N = np.zeros(cdf.shape[0])
    history = np.empty((episodes, cdf.shape[0]))
    for episode in range(episodes):
        states, rewards = sample_episode(env, cdf, rng, seed if episode == 0 else None)
        # Hint: walk the episode backwards accumulating G; first-visit MC skips a step whose
        # state already appeared earlier in the episode; the running mean uses 1 / N(s).
        ### BEGIN SOLUTION
        first: dict[int, int] = {}  # state → the step it first appears at
        for t, s in enumerate(states):
            first.setdefault(s, t)
        G = 0.0
        for t in reversed(range(len(states))):
            G = rewards[t] + gamma * G
            s = states[t]
            if first_visit and first[s] < t:
                continue
            N[s] += 1
            V[s] += (1.0 / N[s] if alpha is None else alpha) * (G - V[s])
        ### END SOLUTION
        history[episode] = V
    return ValueEstimate(V, history)


def td0_evaluation(env, pi, gamma: float, episodes: int, *, alpha: float = 0.1, seed: int = 0) -> ValueEstimate:
    r"""TD(0) prediction: after every step, move V(s_t) toward the one-step target.

    .. math::

        V(s_t) \leftarrow V(s_t) + \alpha\,[\,r_{t+1} + \gamma\,(1 - \text{terminated})\,
        V(s_{t+1}) - V(s_t)\,]

    A terminated step's target is :math:`r_{t+1}` alone. A step cut by the step limit
    (``truncated``) still bootstraps from :math:`V(s_{t+1})`: that state is not terminal,
    the episode was only stopped there.

    Pseudocode (Sutton & Barto, 2nd ed., §6.1)::

        for each episode:
            s ← reset()
            until terminated or truncated:
                a ~ π(· | s);  take a, observe r, s'
                V(s) += α (r + γ (1 − terminated) V(s') − V(s))
                s ← s'
    """
    if alpha is None:
        raise ValueError("alpha = None is not allowed: TD(0) needs a step size in (0, 1]")
    cdf = _check_sampling(env, pi, gamma, episodes, alpha)
    rng = np.random.default_rng(seed)
    V = np.zeros(cdf.shape[0])
    history = np.empty((episodes, cdf.shape[0]))
    for episode in range(episodes):
        state, _ = env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            next_state, reward, terminated, truncated, _ = env.step(sample_action(cdf, state, rng))
            # Hint: a terminated step has no future; a truncated one still bootstraps.
            ### BEGIN SOLUTION
            target = reward + gamma * (not terminated) * V[next_state]
            V[state] += alpha * (target - V[state])
            ### END SOLUTION
            state, done = next_state, terminated or truncated
        history[episode] = V
    return ValueEstimate(V, history)
