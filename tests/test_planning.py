"""Lesson 2: value iteration and policy iteration."""

import gymnasium as gym
import numpy as np
import pytest

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.tabular.evaluation import exact_evaluation, greedy_policy_matrix, model_arrays
from rlcourse.tabular.planning import Plan, greedy_actions, policy_iteration, q_from_v, value_iteration

ENV_IDS = ["rlcourse/Corridor-v0", "FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1"]
_models = {}


def model(env_id):
    if env_id not in _models:
        _models[env_id] = gym.make(env_id).unwrapped.P
    return _models[env_id]


def bellman_optimality_backup(P, V, gamma):
    """max_a Σ p (r + γ V(s')) over the raw model, terminated transitions not bootstrapped."""
    return np.array([
        max(sum(p * (r + gamma * (not terminated) * V[s2]) for p, s2, r, terminated in P[s][a])
            for a in range(len(P[s])))
        for s in range(len(P))])


@pytest.fixture(scope="module")
def plans():
    cache = {}

    def get(env_id, gamma):
        if (env_id, gamma) not in cache:
            P = model(env_id)
            cache[env_id, gamma] = value_iteration(P, gamma), policy_iteration(P, gamma)
        return cache[env_id, gamma]
    return get


CASES = [(env_id, gamma) for env_id in ENV_IDS for gamma in (0.9, 0.99)]


@pytest.mark.parametrize("env_id, gamma", CASES)
def test_value_and_policy_iteration_agree(plans, env_id, gamma):
    vi, pi = plans(env_id, gamma)
    np.testing.assert_array_equal(vi.policy, pi.policy)
    np.testing.assert_allclose(vi.V, pi.V, rtol=0, atol=1e-6)


@pytest.mark.parametrize("env_id, gamma", CASES)
def test_value_iteration_solves_the_bellman_optimality_equation(plans, env_id, gamma):
    vi, _ = plans(env_id, gamma)
    residual = np.abs(bellman_optimality_backup(model(env_id), vi.V, gamma) - vi.V).max()
    assert residual < 1e-8


@pytest.mark.parametrize("env_id, gamma", CASES)
def test_policy_iteration_value_is_its_policys_exact_value(plans, env_id, gamma):
    _, pi = plans(env_id, gamma)
    n_actions = len(model(env_id)[0])
    V = exact_evaluation(model(env_id), greedy_policy_matrix(pi.policy, n_actions), gamma)
    np.testing.assert_allclose(pi.V, V, rtol=0, atol=1e-10)


@pytest.mark.parametrize("env_id, gamma", CASES)
def test_plan_fields_are_consistent(plans, env_id, gamma):
    vi, pi = plans(env_id, gamma)
    n_states, n_actions = len(model(env_id)), len(model(env_id)[0])
    for plan in (vi, pi):
        assert isinstance(plan, Plan)
        assert plan.V.shape == (n_states,) and plan.Q.shape == (n_states, n_actions)
        assert plan.policy.shape == (n_states,) and plan.iterations == len(plan.history)
        chosen = plan.Q[np.arange(n_states), plan.policy]
        np.testing.assert_allclose(chosen, plan.Q.max(axis=1), rtol=0, atol=1e-9)
    assert vi.history[-1] < 1e-10 <= vi.history[-2]
    assert pi.history[-1] == 0 and all(changed > 0 for changed in pi.history[:-1])


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_corridor_optimal_policy_walks_right(plans, gamma):
    vi, pi = plans("rlcourse/Corridor-v0", gamma)
    np.testing.assert_array_equal(vi.policy[:5], np.ones(5, dtype=int))
    np.testing.assert_allclose(vi.V, [gamma ** (4 - s) for s in range(5)] + [0.0], atol=1e-9)


def test_cliffwalking_optimal_path_hugs_the_cliff(plans):
    vi, _ = plans("CliffWalking-v1", 0.99)
    start = 36
    # up, eleven steps right, down: 13 steps at −1 each
    assert vi.V[start] == pytest.approx(-sum(0.99 ** k for k in range(13)), abs=1e-8)
    path = [start]
    while len(path) < 20 and path[-1] != 47:
        ((_, next_state, _, _),) = model("CliffWalking-v1")[path[-1]][int(vi.policy[path[-1]])]
        path.append(int(next_state))
    assert path == [36, 24] + list(range(25, 36)) + [47]


def test_frozenlake_optimal_value_from_the_start(plans):
    _, pi = plans("FrozenLake-v1", 0.99)
    assert pi.V[0] == pytest.approx(0.54203, abs=1e-5)


def test_frozenlake_optimal_value_matches_playing_the_policy(plans):
    # 4000 episodes: the discounted return has std ≈ 0.3, so its mean has std ≈ 0.005
    _, pi = plans("FrozenLake-v1", 0.99)
    env = gym.make("FrozenLake-v1", max_episode_steps=2000)
    returns = []
    for episode in range(4000):
        state, _ = env.reset(seed=0 if episode == 0 else None)
        G, discount, done = 0.0, 1.0, False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(pi.policy[state]))
            G += discount * reward
            discount *= 0.99
            done = terminated or truncated
        returns.append(G)
    assert np.mean(returns) == pytest.approx(pi.V[0], abs=0.02)


def test_gamma_one_on_frozenlake():
    P = model("FrozenLake-v1")
    vi, pi = value_iteration(P, 1.0), policy_iteration(P, 1.0)
    np.testing.assert_array_equal(vi.policy, pi.policy)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-6)
    assert pi.V[0] == pytest.approx(14 / 17, abs=1e-9)


def test_gamma_one_policy_iteration_needs_terminating_policies():
    with pytest.raises(ValueError, match="never terminates"):
        policy_iteration(model("rlcourse/Corridor-v0"), 1.0)


def test_greedy_actions_break_ties_to_the_lowest_index():
    Q = np.array([[1.0, 1.0], [0.0, 1e-12], [0.0, 1e-6], [3.0, 2.0], [-1.0, -1.0 + 2e-10]])
    np.testing.assert_array_equal(greedy_actions(Q), [0, 0, 1, 0, 0])


def test_q_from_v_is_a_one_step_lookahead():
    T, R = model_arrays(model("rlcourse/Corridor-v0"))
    V = np.arange(6.0)
    Q = q_from_v(T, R, V, 0.5)
    np.testing.assert_allclose(Q[2], [0.5 * 1, 0.5 * 3])
    np.testing.assert_allclose(Q[0], [0.5 * 0, 0.5 * 1])
    np.testing.assert_allclose(Q[4], [0.5 * 3, 1.0])
    np.testing.assert_allclose(Q[5], [0.0, 0.0])


def test_value_iteration_history_is_the_largest_change_per_sweep():
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        four = value_iteration(model("FrozenLake-v1"), 0.99, max_iterations=4)
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        five = value_iteration(model("FrozenLake-v1"), 0.99, max_iterations=5)
    assert five.iterations == 5 and len(five.history) == 5
    assert five.history[:4] == four.history
    assert five.history[4] == np.abs(five.V - four.V).max()


@pytest.mark.parametrize("planner", [value_iteration, policy_iteration])
@pytest.mark.parametrize("gamma", [-0.01, 1.5, float("nan"), "0.9"])
def test_bad_gamma_is_rejected(planner, gamma):
    with pytest.raises(ValueError, match="gamma"):
        planner(model("rlcourse/Corridor-v0"), gamma)


@pytest.mark.parametrize("planner", [value_iteration, policy_iteration])
def test_bad_max_iterations_is_rejected(planner):
    with pytest.raises(ValueError, match="max_iterations"):
        planner(model("rlcourse/Corridor-v0"), 0.9, max_iterations=0)
