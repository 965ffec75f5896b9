"""Lesson 2: lookahead over a learned model, against value iteration on the true model."""

import gymnasium as gym
import numpy as np
import pytest

import rlcourse  # noqa: F401  (registers the mazes)
from rlcourse.tabular.lookahead import (
    explore,
    lookahead_policy,
    lookahead_q,
    lookahead_study,
    model_as_P,
    reachable,
    true_outcomes,
)
from rlcourse.tabular.planning import value_iteration

GAMMA = 0.95


@pytest.fixture(scope="module")
def maze():
    env = gym.make("rlcourse/DynaMaze-v0")
    return env.unwrapped.P, value_iteration(env.unwrapped.P, GAMMA)


def test_lookahead_by_hand():
    # a chain 0 → 1 → 2 (goal, reward 1) with action 1; action 0 stays put; γ = 0.5
    outcome = {(0, 0): (0.0, 0, False), (0, 1): (0.0, 1, False), (1, 0): (0.0, 1, False), (1, 1): (1.0, 2, True)}
    np.testing.assert_allclose(lookahead_q(outcome, 1, 1, 0.5, 2), [0.0, 1.0])
    np.testing.assert_allclose(lookahead_q(outcome, 0, 1, 0.5, 2), [0.0, 0.0])  # one step sees no reward
    np.testing.assert_allclose(lookahead_q(outcome, 0, 2, 0.5, 2), [0.0, 0.5])
    np.testing.assert_allclose(lookahead_q(outcome, 0, 3, 0.5, 2), [0.25, 0.5])
    # a pair the model never saw is worth ``unknown``
    np.testing.assert_allclose(lookahead_q({(0, 1): (2.0, 0, True)}, 0, 4, 0.5, 2, unknown=-1.0), [-1.0, 2.0])
    with pytest.raises(ValueError, match="depth"):
        lookahead_q(outcome, 0, 0, 0.5, 2)


def test_deep_enough_lookahead_on_the_true_model_is_value_iteration(maze):
    P, plan = maze
    outcome = true_outcomes(P)
    for s in reachable(P, 18):
        np.testing.assert_allclose(lookahead_q(outcome, s, 30, GAMMA, 4), plan.Q[s], atol=1e-9)
    # too shallow to see the goal from the start (14 steps away): every action is worth 0
    assert not lookahead_q(outcome, 18, 13, GAMMA, 4).any() and lookahead_q(outcome, 18, 14, GAMMA, 4).max() > 0


def test_value_iteration_on_a_complete_learned_model_is_value_iteration_on_the_true_one(maze):
    P, plan = maze
    learned = explore(gym.make("rlcourse/DynaMaze-v0"), 20_000, seed=0)
    live = reachable(P, 18)
    assert {s for s, _ in learned} == set(live) - {8}  # every open cell but the goal
    on_learned = value_iteration(model_as_P(learned, 54, 4), GAMMA)
    np.testing.assert_allclose(on_learned.V[live], plan.V[live], atol=1e-9)
    np.testing.assert_array_equal(lookahead_policy(learned, 54, 4, 25, GAMMA)[live], plan.policy[live])


def test_true_outcomes_refuses_a_stochastic_model():
    with pytest.raises(ValueError, match="deterministic"):
        true_outcomes(gym.make("FrozenLake-v1").unwrapped.P)


def test_lookahead_plans_as_well_as_the_model_it_has():
    # 10 seeds of random exploration, each judged by value iteration on the true model
    study = lookahead_study("rlcourse/DynaMaze-v0", explore_steps=[200, 5_000], depths=[5, 20], seeds=range(10))
    mean = study.groupby(["explore_steps", "depth"])["optimal_fraction"].mean()
    assert mean[(5_000, 20)] > 0.9 > mean[(200, 20)] and mean[(5_000, 20)] > mean[(5_000, 5)]
    deep = study[(study.explore_steps == 5_000) & (study.depth == 20)]
    assert (deep["path_length"] == 14).sum() >= 8 and (deep["shortest"] == 14).all()
    assert not np.isfinite(study[study.depth == 5]["path_length"]).any()  # 5 steps never see the goal
