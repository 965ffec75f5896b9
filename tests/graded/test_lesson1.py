"""Graded tests, lesson 1: tabular TD control (Q-learning, SARSA, expected SARSA).

Expected values are worked out by hand in the comments, or follow from fixed points and
frequencies that any correct implementation reaches; none comes from calling rlcourse's
own solutions. Every test uses fixed seeds.
"""

import random

import gymnasium as gym
import numpy as np
import pytest

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.assignments.sandbox import repeat_call, student_module
from rlcourse.tabular.td_control import TDControlConfig

qtable = student_module("rlcourse.tabular.qtable")
td_control = student_module("rlcourse.tabular.td_control")


def frequencies(function, args: tuple, n_actions: int, draws: int, seed: int = 0) -> np.ndarray:
    """Share of each action over ``draws`` calls of ``function(*args, rng)``, one generator throughout."""
    rng = np.random.default_rng(seed)
    picks = repeat_call(draws, function, *args, rng)
    assert all(isinstance(a, (int, np.integer)) and 0 <= a < n_actions for a in picks), \
        f"every choice must be an integer action in 0 … {n_actions - 1}, got e.g. {picks[:5]}"
    return np.bincount(np.asarray(picks, dtype=int), minlength=n_actions) / draws


def greedy_path_length(env_id: str, values: np.ndarray, max_steps: int = 200, **env_kwargs):
    """Steps the greedy policy argmax_a Q(s, a) takes from the start to termination (None if it never ends)."""
    env = gym.make(env_id, **env_kwargs)
    state, _ = env.reset(seed=0)
    for step in range(1, max_steps + 1):
        state, _, terminated, truncated, _ = env.step(int(np.argmax(values[state])))
        if terminated or truncated:
            return step if terminated else None
    return None


# --------------------------------------------------------------------------- greedy_action


@pytest.mark.points(1)
@pytest.mark.parametrize("row, best", [
    ([0.1, 0.5, -1.0], 1),
    ([-3.0, -2.0, -5.0, -2.5], 1),
    ([7.0], 0),
    (np.array([0.0, 0.0, 7.5, 1.0]), 2),
])
def test_greedy_action_returns_the_best_action(row, best):
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = qtable.greedy_action(row, rng)
        assert isinstance(action, (int, np.integer))
        assert action == best


@pytest.mark.points(2)
def test_greedy_action_breaks_ties_uniformly():
    # actions 1, 2 and 4 share the maximum: each should come up a third of the time
    shares = frequencies(qtable.greedy_action, ([1.0, 3.0, 3.0, 0.0, 3.0],), 5, 3000)
    assert shares[0] == shares[3] == 0, f"only tied actions may be chosen, got shares {shares}"
    np.testing.assert_allclose(shares[[1, 2, 4]], 1 / 3, atol=0.05)
    # a fresh table: all four actions tie
    shares = frequencies(qtable.greedy_action, (np.zeros(4),), 4, 4000)
    np.testing.assert_allclose(shares, 0.25, atol=0.04)


# --------------------------------------------------------------------------- epsilon_greedy


@pytest.mark.points(1)
def test_epsilon_greedy_is_greedy_at_epsilon_zero():
    shares = frequencies(qtable.epsilon_greedy, ([0.2, -1.0, 0.9, 0.3], 0.0), 4, 500)
    assert shares[2] == 1.0
    shares = frequencies(qtable.epsilon_greedy, ([5.0, 5.0, 1.0], 0.0), 3, 2000)
    assert shares[2] == 0 and abs(shares[0] - 0.5) < 0.05


@pytest.mark.points(2)
@pytest.mark.parametrize("epsilon", [0.3, 1.0])
def test_epsilon_greedy_explores_with_probability_epsilon(epsilon):
    # the random action is uniform over all 4 actions, the greedy one (2) included:
    # P(2) = (1 − ε) + ε/4, P(other) = ε/4
    shares = frequencies(qtable.epsilon_greedy, ([0.1, 0.0, 0.8, 0.4], epsilon), 4, 20000)
    expected = np.full(4, epsilon / 4)
    expected[2] += 1 - epsilon
    np.testing.assert_allclose(shares, expected, atol=0.015)


# --------------------------------------------------------------------------- epsilon_at


@pytest.mark.points(2)
@pytest.mark.parametrize("fields, total, expected", [
    # ε falls from 1.0 to 0.05 over the first half of 1000 steps, then stays at 0.05
    (dict(epsilon_start=1.0, epsilon_end=0.05, exploration_fraction=0.5), 1000,
     {0: 1.0, 100: 0.81, 250: 0.525, 499: 0.0519, 500: 0.05, 999: 0.05, 5000: 0.05}),
    # the schedule may rise as well as fall
    (dict(epsilon_start=0.2, epsilon_end=0.8, exploration_fraction=1.0), 600,
     {0: 0.2, 150: 0.35, 300: 0.5, 599: 0.799, 600: 0.8}),
    # no exploration phase: ε is epsilon_end from the first step
    (dict(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.0), 1000,
     {0: 0.1, 1: 0.1, 999: 0.1}),
])
def test_epsilon_at_follows_the_linear_schedule(fields, total, expected):
    config = TDControlConfig(**fields)
    for step, epsilon in expected.items():
        got = td_control.epsilon_at(config, step, total)
        assert got == pytest.approx(epsilon, abs=1e-12), f"step {step} of {total}: ε = {got}, expected {epsilon}"


# --------------------------------------------------------------------------- td_target


@pytest.mark.points(1)
def test_td_target_of_q_learning_and_sarsa():
    q_next = [1.0, 3.0, 2.0]
    # Q-learning: r + γ max_a Q(s', a) = 0.5 + 0.9 · 3
    got = td_control.td_target(TDControlConfig(method="q-learning", gamma=0.9), q_next, -1, 0.5, False, 0.1)
    assert got == pytest.approx(3.2, abs=1e-12)
    # SARSA: r + γ Q(s', a') with a' = 2: 0.5 + 0.9 · 2, whatever the max
    got = td_control.td_target(TDControlConfig(method="sarsa", gamma=0.9), q_next, 2, 0.5, False, 0.1)
    assert got == pytest.approx(2.3, abs=1e-12)
    got = td_control.td_target(TDControlConfig(method="sarsa", gamma=0.5), q_next, 0, -1.0, False, 0.1)
    assert got == pytest.approx(-0.5, abs=1e-12)


@pytest.mark.points(2)
def test_td_target_of_expected_sarsa():
    config = TDControlConfig(method="expected-sarsa", gamma=0.9)
    # ε = 0.3 over 3 actions, action 1 greedy: π = (0.1, 0.8, 0.1);
    # Σ π Q = 0.1 · 1 + 0.8 · 3 + 0.1 · 2 = 2.7, so y = 0.5 + 0.9 · 2.7
    got = td_control.td_target(config, [1.0, 3.0, 2.0], -1, 0.5, False, 0.3)
    assert got == pytest.approx(2.93, abs=1e-12)
    # two greedy actions share 1 − ε: ε = 0.2 over 4 actions gives π = (0.45, 0.45, 0.05, 0.05);
    # Σ π Q = 0.9 + 0.9 + 0 + 0.05 = 1.85, so y = 1 + 0.9 · 1.85
    got = td_control.td_target(config, [2.0, 2.0, 0.0, 1.0], -1, 1.0, False, 0.2)
    assert got == pytest.approx(2.665, abs=1e-12)


@pytest.mark.points(1)
@pytest.mark.parametrize("method", ["q-learning", "sarsa", "expected-sarsa"])
def test_td_target_does_not_bootstrap_from_a_terminal_state(method):
    config = TDControlConfig(method=method, gamma=0.99)
    assert td_control.td_target(config, [10.0, 20.0], 1, 1.0, True, 0.1) == pytest.approx(1.0, abs=1e-12)
    assert td_control.td_target(config, [-4.0, 4.0], 0, -2.5, True, 0.5) == pytest.approx(-2.5, abs=1e-12)
    # and the same rows do bootstrap when the step did not terminate
    assert td_control.td_target(config, [10.0, 20.0], 1, 1.0, False, 0.0) == pytest.approx(1.0 + 0.99 * 20)


# --------------------------------------------------------------------------- train


@pytest.mark.points(2)
@pytest.mark.parametrize("method, q_left", [
    # the 2-cell corridor: from cell 0, "right" reaches the treasure (r = 1, terminated),
    # "left" bumps the wall and stays in cell 0 (r = 0). With ε = 1 (uniformly random
    # behaviour), γ = 0.9, the updates settle at Q(0, right) = 1 and
    ("q-learning", 0.9),               # Q(0, left) = γ max(Q(0, ·)) = 0.9
    ("expected-sarsa", 0.9 / 1.1),     # Q(0, left) = γ (Q(0, left) + 1) / 2  ⇒  γ / (2 − γ)
])
def test_train_updates_reach_the_fixed_point(method, q_left):
    config = TDControlConfig(method=method, alpha=0.5, gamma=0.9, epsilon_start=1.0, epsilon_end=1.0, q_init=2.0)
    # the first step alone, from Q = 2 everywhere: either left, target 0 + 0.9 · 2 = 1.8 and
    # Q(0, left) = 2 + 0.5 (1.8 − 2) = 1.9; or right, target 1 and Q(0, right) = 2 + 0.5 (1 − 2) = 1.5
    first = np.asarray(td_control.train("rlcourse/Corridor-v0", config, steps=1, seed=0,
                                        env_kwargs={"n_cells": 2}).policy.values)
    assert any(np.allclose(first, after, atol=1e-12) for after in ([[1.9, 2.0], [2.0, 2.0]], [[2.0, 1.5], [2.0, 2.0]])), \
        f"after one step from Q = 2 everywhere: {first.tolist()}"
    result = td_control.train("rlcourse/Corridor-v0", config, steps=2000, seed=0, env_kwargs={"n_cells": 2})
    values = np.asarray(result.policy.values)
    np.testing.assert_allclose(values[0], [q_left, 1.0], atol=1e-6)
    # the treasure cell is never left from, so its row keeps q_init; using it as the
    # bootstrap of the terminal step would have pulled Q(0, right) to 1 + 0.9 · 2
    np.testing.assert_allclose(values[1], [2.0, 2.0])


@pytest.mark.points(2)
def test_q_learning_finds_the_shortest_corridor_path():
    # the default config: 3000 steps are plenty for the 6-cell corridor, whatever the seed
    for seed in range(5):
        result = td_control.train("rlcourse/Corridor-v0", TDControlConfig(), steps=3000, seed=seed)
        values = np.asarray(result.policy.values)
        assert values.shape == (6, 2)
        length = greedy_path_length("rlcourse/Corridor-v0", values)
        assert length == 5, f"seed {seed}: the greedy path takes {length} steps, the shortest is 5"


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_greedy_action_draws_from_the_rng_it_is_given():
    def choices(seed, global_seed):
        random.seed(global_seed)
        np.random.seed(global_seed)
        generator = np.random.default_rng(seed)
        return [int(a) for a in repeat_call(200, qtable.greedy_action, [1.0, 1.0, 1.0], generator)]

    first = choices(3, 0)
    assert choices(3, 1) == first, "greedy_action must draw from rng only (not random / np.random)"
    assert len(set(first)) == 3
    assert choices(4, 0) != first


@pytest.mark.points(1)
def test_td_target_edge_cases():
    # three greedy actions tie: ε = 0.4 over 4 actions gives π = (0.3, 0.3, 0.3, 0.1), Σ π Q = 1.8
    config = TDControlConfig(method="expected-sarsa", gamma=0.5)
    assert td_control.td_target(config, [2.0, 2.0, 2.0, 0.0], -1, 0.0, False, 0.4) == pytest.approx(0.9)
    # ε = 1: the plain mean; ε = 0: the max
    assert td_control.td_target(config, [1.0, 2.0, 6.0], -1, 1.0, False, 1.0) == pytest.approx(1.0 + 0.5 * 3.0)
    assert td_control.td_target(config, [1.0, 2.0, 6.0], -1, 1.0, False, 0.0) == pytest.approx(1.0 + 0.5 * 6.0)
    # γ = 0: the reward alone, whatever the method
    for name in ("q-learning", "sarsa", "expected-sarsa"):
        got = td_control.td_target(TDControlConfig(method=name, gamma=0.0), [5.0, 7.0], 1, 0.25, False, 0.1)
        assert got == pytest.approx(0.25, abs=1e-12)


@pytest.mark.points(1)
def test_train_bootstraps_when_an_episode_is_truncated():
    # a 3-cell corridor cut after 1 step: every episode is one step from cell 0, never
    # terminated, only truncated. Cell 1's row is never updated and keeps q_init = 1, so
    # Q(0, right) → γ · 1 = 0.5 and Q(0, left) → γ max(Q(0, ·)) = 0.25. Treating the cut as
    # a terminal step would pull both to 0.
    config = TDControlConfig(alpha=0.5, gamma=0.5, epsilon_start=1.0, epsilon_end=1.0, q_init=1.0)
    result = td_control.train("rlcourse/Corridor-v0", config, steps=2000, seed=0,
                              env_kwargs={"n_cells": 3, "max_episode_steps": 1})
    values = np.asarray(result.policy.values)
    np.testing.assert_allclose(values[0], [0.25, 0.5], atol=1e-6)
    np.testing.assert_allclose(values[1:], 1.0)


@pytest.mark.points(2)
def test_cliff_walking_sarsa_walks_safe_q_learning_walks_the_edge():
    # Sutton & Barto, example 6.6: with ε fixed at 0.1, Q-learning's greedy path runs along
    # the cliff edge (13 steps); SARSA, which learns the value of its ε-greedy behaviour,
    # keeps away from the edge (15 steps or more) and still reaches the goal.
    settings = dict(alpha=0.2, gamma=1.0, epsilon_start=0.1, epsilon_end=0.1)
    lengths = {}
    for method in ("q-learning", "sarsa"):
        result = td_control.train("CliffWalking-v1", TDControlConfig(method=method, **settings), steps=20_000, seed=0)
        lengths[method] = greedy_path_length("CliffWalking-v1", np.asarray(result.policy.values))
    assert lengths["q-learning"] == 13, lengths
    assert lengths["sarsa"] is not None and lengths["sarsa"] >= 15, lengths
### END HIDDEN TESTS
