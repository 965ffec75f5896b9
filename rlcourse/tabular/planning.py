r"""Planning with a known model: value iteration and policy iteration (lesson 2).

Both find the optimal values, the solution of the Bellman optimality equation

.. math::

    V^*(s) = \max_a Q^*(s, a), \qquad
    Q^*(s, a) = R(s, a) + \gamma \sum_{s'} T(s, a, s')\, V^*(s'),

and act greedily on them. They differ in how they get there:

* value iteration applies the optimality backup :math:`V \leftarrow \max_a [R + \gamma T V]`
  until V stops moving;
* policy iteration alternates exact evaluation of the current policy with a greedy
  improvement, until the policy stops changing.

The model arrays ``T[s, a, s']`` (continuation probabilities) and ``R[s, a]`` (expected
rewards) come from :func:`rlcourse.tabular.evaluation.model_arrays`.

γ = 1 is allowed, but only makes sense when the policies met along the way terminate
from every state. With γ = 1 "reach the goal now" and "reach it later" are worth the
same, so greedy actions may tie with ones that never get there; use γ < 1 for control.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from rlcourse.tabular.evaluation import check_count, check_gamma, greedy_policy_matrix, model_arrays, solve_bellman

TIE_TOLERANCE = 1e-9


class Plan(NamedTuple):
    V: np.ndarray  # state values, [S]
    Q: np.ndarray  # action values, [S, A]
    policy: np.ndarray  # greedy action of each state, [S]
    iterations: int
    history: list  # per iteration: max |ΔV| (value iteration) or actions changed (policy iteration)


def q_from_v(T: np.ndarray, R: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
    r"""One-step lookahead: :math:`Q(s, a) = R(s, a) + \gamma \sum_{s'} T(s, a, s') V(s')`."""
    # Hint: T is [S, A, S'] and V is [S']; one matrix product gives the sum over s'.
    ### BEGIN SOLUTION
    return R + gamma * T @ V
    ### END SOLUTION


def greedy_actions(Q: np.ndarray) -> np.ndarray:
    """argmax_a Q(s, a) for every state, the lowest index among actions within 1e-9 of the max.

    The tolerance makes the tie-break deterministic even when two planners reach the same
    values with different rounding, so value and policy iteration return the same policy.
    """
    # Hint: mark the actions within TIE_TOLERANCE of each row's max; np.argmax of a boolean
    # array returns the first True.
    ### BEGIN SOLUTION
    return np.argmax(Q.max(axis=1, keepdims=True) - TIE_TOLERANCE <= Q, axis=1)
    ### END SOLUTION


def value_iteration(P, gamma: float, *, tol: float = 1e-10, max_iterations: int = 100_000) -> Plan:
    r"""Apply the Bellman optimality backup until the values stop moving.

    .. math::

        V_{k+1}(s) = \max_a \Big[ R(s, a) + \gamma \sum_{s'} T(s, a, s')\, V_k(s') \Big]

    Pseudocode (Sutton & Barto, 2nd ed., §4.4)::

        V ← 0
        repeat:
            V_new(s) ← max_a [R(s, a) + γ Σ_s' T(s, a, s') V(s')]   for every s
            Δ ← max_s |V_new(s) − V(s)|;  V ← V_new
        until Δ < tol
        π(s) ← argmax_a [R(s, a) + γ Σ_s' T(s, a, s') V(s')]

    ``history`` holds Δ of every sweep. When Δ < tol, V is within γ·tol / (1 − γ) of V*.
    Warns (RuntimeWarning) and returns the last values if ``max_iterations`` sweeps do not
    reach ``tol``.
    """
    check_gamma(gamma)
    if not tol > 0:
        raise ValueError(f"tol = {tol!r} is out of range: it must be > 0")
    check_count("max_iterations", max_iterations)
    T, R = model_arrays(P)
    V = np.zeros(len(R))
    history = []
    for _ in range(max_iterations):
        # Hint: one backup of every state at once with q_from_v; delta is the largest change.
        ### BEGIN SOLUTION
        V_new = q_from_v(T, R, V, gamma).max(axis=1)
        delta = float(np.abs(V_new - V).max())
        ### END SOLUTION
        history.append(delta)
        V = V_new
        if delta < tol:
            break
    else:
        warnings.warn(
            f"value iteration stopped after max_iterations = {max_iterations} sweeps "
            f"with max |ΔV| = {delta:.3g} >= tol = {tol:g}",
            RuntimeWarning,
            stacklevel=2,
        )
    Q = q_from_v(T, R, V, gamma)
    return Plan(V, Q, greedy_actions(Q), len(history), history)


def policy_iteration(P, gamma: float, *, max_iterations: int = 1_000) -> Plan:
    r"""Evaluate the policy exactly, act greedily on its values, repeat until it is stable.

    .. math::

        V^{\pi_k} = (I - \gamma P_{\pi_k})^{-1} r_{\pi_k}, \qquad
        \pi_{k+1}(s) = \arg\max_a \Big[ R(s, a) + \gamma \sum_{s'} T(s, a, s')\,
        V^{\pi_k}(s') \Big]

    Pseudocode (Sutton & Barto, 2nd ed., §4.3)::

        π(s) ← 0 for every s
        repeat:
            V ← V^π                       (solve the linear Bellman system)
            π_new(s) ← argmax_a [R(s, a) + γ Σ_s' T(s, a, s') V(s')]
            stable ← (π_new = π);  π ← π_new
        until stable

    ``history`` holds the number of states whose action changed in each iteration. With
    γ = 1 every policy met, starting with "always action 0", must terminate; otherwise
    the evaluation raises ValueError. Warns (RuntimeWarning) if the policy is still
    changing after ``max_iterations`` iterations, and returns the last evaluation with
    its greedy policy.
    """
    check_gamma(gamma)
    check_count("max_iterations", max_iterations)
    T, R = model_arrays(P)
    n_actions = R.shape[1]
    policy = np.zeros(len(R), dtype=int)
    history = []
    for _ in range(max_iterations):
        # Hint: evaluate the current policy exactly (solve_bellman needs it as a one-hot
        # matrix), then improve: the greedy actions of its one-step lookahead.
        ### BEGIN SOLUTION
        V = solve_bellman(T, R, greedy_policy_matrix(policy, n_actions), gamma)
        Q = q_from_v(T, R, V, gamma)
        improved = greedy_actions(Q)
        ### END SOLUTION
        changed = int((improved != policy).sum())
        history.append(changed)
        policy = improved
        if changed == 0:
            break
    else:
        warnings.warn(
            f"policy iteration stopped after max_iterations = {max_iterations} with {changed} actions still changing",
            RuntimeWarning,
            stacklevel=2,
        )
    return Plan(V, Q, policy, len(history), history)
