r"""Lookahead planning over a learned model: depth-limited tree search (lesson 2).

Dyna-Q (:mod:`rlcourse.tabular.dyna`) plans in the background, spreading values through a
table. Lookahead plans at decision time instead: from the current state, expand the tree
of what the learned model says each action leads to, ``depth`` levels deep, and back the
values up (Sutton & Barto, 2nd ed., §8.8–8.9, "planning at decision time"):

.. math::

    Q_d(s, a) = \hat r(s, a) + \gamma\,(1 - \hat t(s, a))\, V_{d-1}(\hat s'(s, a)), \qquad
    V_d(s) = \max_a Q_d(s, a), \qquad V_0(s) = \text{leaf}(s).

A pair the model has never seen is worth ``unknown`` (0 by default: nothing is known of
it). The model is deterministic, so the tree has at most :math:`|\mathcal A|^d` leaves;
the search remembers the value of each (state, depth) it has backed up (a transposition
table), so a state reached by two paths is searched once.

With the true model and a zero leaf, :math:`V_d` is the value of the best d-step plan:
it equals value iteration's :math:`V^*` wherever the optimal plan reaches its reward
within d steps (on the Dyna maze, where reward comes only at the goal: every state at
most d steps from it). :func:`model_as_P` writes a learned model in the form lesson 2's planners
read, so the same model can be planned with value iteration too.

Pseudocode::

    Q(s, a, d):  (r, s', t) ← M(s, a)   (unknown pair: return unknown)
                 return r                                      if t or d = 1 (leaf value if not t)
                 return r + γ max_a' Q(s', a', d − 1)          otherwise
    act(s) ← argmax_a Q(s, a, depth)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from rlcourse.tabular.planning import value_iteration


def lookahead_q(
    outcome: dict, state: int, depth: int, gamma: float, n_actions: int, unknown: float = 0.0, memo=None
) -> np.ndarray:
    r"""The row :math:`Q_d(s, \cdot)` of a ``depth``-step search over the model ``outcome[(s, a)] = (r, s', t)``
    (leaves worth 0)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth = {depth!r} is out of range: it must be an integer >= 1")
    memo = {} if memo is None else memo
    q = np.full(n_actions, float(unknown))
    for action in range(n_actions):
        if (state, action) not in outcome:
            continue
        reward, next_state, terminated = outcome[(state, action)]
        # Hint: a terminal outcome or the last level adds nothing after r; otherwise add γ times the
        # Hint: best of the next state's row one level shallower, remembered in ``memo[(s', depth − 1)]``.
        ### BEGIN SOLUTION
        q[action] = reward
        if not terminated and depth > 1:
            key = (next_state, depth - 1)
            if key not in memo:
                memo[key] = lookahead_q(outcome, next_state, depth - 1, gamma, n_actions, unknown, memo).max()
            q[action] += gamma * memo[key]
        ### END SOLUTION
    return q


def lookahead_policy(outcome: dict, n_states: int, n_actions: int, depth: int, gamma: float) -> np.ndarray:
    """The action a ``depth``-step lookahead picks in every state (the lowest index among ties)."""
    memo: dict = {}
    return np.array(
        [int(np.argmax(lookahead_q(outcome, s, depth, gamma, n_actions, memo=memo))) for s in range(n_states)]
    )


def true_outcomes(P) -> dict:
    """The model a Gymnasium toy-text ``P[s][a]`` describes, when it is deterministic, as ``outcome``."""
    outcome = {}
    for s in P:
        for a in P[s]:
            (prob, next_state, reward, terminated), *rest = P[s][a]
            if rest or prob != 1.0:
                raise ValueError(f"P[{s}][{a}] is not deterministic: lookahead_q expects one outcome per pair")
            outcome[(s, a)] = (float(reward), int(next_state), bool(terminated))
    return outcome


def model_as_P(outcome: dict, n_states: int, n_actions: int) -> dict:
    """The learned model in the form ``P[s][a] = [(1.0, s', r, terminated)]`` that lesson 2's planners
    read; a pair never seen stays put with reward 0."""
    return {
        s: {a: [(1.0, *_swap(outcome.get((s, a), (0.0, s, False))))] for a in range(n_actions)} for s in range(n_states)
    }


def _swap(outcome: tuple) -> tuple:
    reward, next_state, terminated = outcome
    return next_state, reward, terminated


def explore(env, steps: int, seed: int) -> dict:
    """Learn a deterministic model by acting uniformly at random for ``steps`` steps: ``outcome[(s, a)]``."""
    rng = np.random.default_rng(seed)
    outcome: dict = {}
    state, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n))
        next_state, reward, terminated, truncated, _ = env.step(action)
        outcome[(int(state), action)] = (float(reward), int(next_state), bool(terminated))
        state = env.reset()[0] if terminated or truncated else next_state
    return outcome


def path_length(P, start: int, policy, limit: int = 200) -> float:
    """Steps a deterministic policy takes from ``start`` to a terminal state under the true ``P`` (inf: never)."""
    state = start
    for step in range(1, limit + 1):
        _, state, _, terminated = P[state][int(policy[state])][0]
        if terminated:
            return float(step)
    return float("inf")


def reachable(P, start: int) -> list[int]:
    """The states the true model can reach from ``start`` (walls and cells beyond them are not)."""
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        for a in P[state]:
            for _, next_state, _, _ in P[state][a]:
                if next_state not in seen:
                    seen.add(next_state)
                    frontier.append(next_state)
    return sorted(seen)


def lookahead_study(env_id: str, explore_steps, depths, seeds=range(10), gamma: float = 0.95) -> pd.DataFrame:
    """Lookahead over a model learned by random exploration, against value iteration on the true model.

    For each seed and each number of exploration steps, learn a model (:func:`explore`), then
    for each depth plan with :func:`lookahead_policy` and judge the plan on the true model:
    ``optimal_fraction`` (the share of the states reachable from the start, the goal aside,
    whose chosen action is optimal by value iteration's Q*, within 1e-9), ``path_length``
    from the start (inf: it never gets there) and ``shortest`` (value iteration's own path
    length). One row per (seed, steps, depth).
    """
    env: Any = gym.make(env_id)  # a toy-text environment: it has P and Discrete spaces
    P, n_states, n_actions = env.unwrapped.P, int(env.observation_space.n), int(env.action_space.n)
    plan = value_iteration(P, gamma)
    start = int(env.reset(seed=0)[0])
    live = [s for s in reachable(P, start) if not all(P[s][a][0][3] for a in range(n_actions))]  # not the goal
    rows = []
    for seed in seeds:
        for steps in explore_steps:
            outcome = explore(gym.make(env_id), steps, int(seed))
            for depth in depths:
                policy = lookahead_policy(outcome, n_states, n_actions, depth, gamma)
                optimal = [plan.Q[s, policy[s]] >= plan.Q[s].max() - 1e-9 for s in live]
                rows.append(
                    {
                        "seed": int(seed),
                        "explore_steps": steps,
                        "depth": depth,
                        "model_pairs": len(outcome),
                        "optimal_fraction": float(np.mean(optimal)),
                        "path_length": path_length(P, start, policy),
                        "shortest": path_length(P, start, plan.policy),
                    }
                )
    return pd.DataFrame(rows)
