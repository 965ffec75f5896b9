"""Lesson 2: exact, Monte-Carlo and TD(0) policy evaluation."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.tabular.evaluation import (ValueEstimate, exact_evaluation, greedy_policy_matrix,
                                         mc_evaluation, model_arrays, sample_action, td0_evaluation,
                                         uniform_policy)

GAMMA = 0.9


class Shuttle(gym.Env):
    """Two states, one action: 0 → 1 pays 1; 1 → 0 pays 0 and, if ``ends``, terminates."""

    def __init__(self, ends: bool):
        self.observation_space = spaces.Discrete(2)
        self.action_space = spaces.Discrete(1)
        self.P = {0: {0: [(1.0, 1, 1.0, False)]}, 1: {0: [(1.0, 0, 0.0, ends)]}}
        self.s = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, action):
        _, self.s, reward, terminated = self.P[self.s][action][0]
        return self.s, reward, terminated, False, {}


def shuttle(ends: bool, steps: int = 4):
    return gym.wrappers.TimeLimit(Shuttle(ends), max_episode_steps=steps)


ONE_ACTION = np.ones((2, 1))


@pytest.fixture(scope="module")
def corridor():
    return gym.make("rlcourse/Corridor-v0", max_episode_steps=1000)


@pytest.fixture(scope="module")
def lake():
    return gym.make("FrozenLake-v1")


def uniform_for(env):
    return uniform_policy(env.observation_space.n, env.action_space.n)


# --- the model and exact evaluation -------------------------------------------------

def test_model_arrays_on_the_corridor(corridor):
    T, R = model_arrays(corridor.unwrapped.P)
    expected_T = np.zeros((6, 2, 6))
    for s in range(5):
        expected_T[s, 0, max(s - 1, 0)] = 1.0
    for s in range(4):
        expected_T[s, 1, s + 1] = 1.0
    expected_R = np.zeros((6, 2))
    expected_R[4, 1] = 1.0
    np.testing.assert_array_equal(T, expected_T)
    np.testing.assert_array_equal(R, expected_R)


def test_model_arrays_on_frozenlake_keep_only_continuing_mass(lake):
    P = lake.unwrapped.P
    T, R = model_arrays(P)
    for s, a in [(0, 0), (14, 2), (10, 1)]:
        ending = sum(p for p, _, _, terminated in P[s][a] if terminated)
        assert T[s, a].sum() == pytest.approx(1 - ending)
    assert R[14, 2] == pytest.approx(1 / 3)
    assert not T[[5, 7, 11, 12, 15]].any() and not R[[5, 7, 11, 12, 15]].any()


def test_policy_matrices():
    np.testing.assert_array_equal(uniform_policy(3, 4), np.full((3, 4), 0.25))
    np.testing.assert_array_equal(greedy_policy_matrix([2, 0], 3), [[0, 0, 1], [1, 0, 0]])


def test_exact_evaluation_matches_the_closed_form_on_the_corridor(corridor):
    always_right = greedy_policy_matrix(np.ones(6, dtype=int), 2)
    V = exact_evaluation(corridor.unwrapped.P, always_right, GAMMA)
    np.testing.assert_allclose(V, [0.9 ** 4, 0.9 ** 3, 0.9 ** 2, 0.9, 1.0, 0.0], rtol=0, atol=1e-12)


def test_exact_evaluation_matches_iterated_bellman_backups_on_frozenlake(lake):
    P = lake.unwrapped.P
    pi = uniform_for(lake)
    V = np.zeros(16)
    for _ in range(1000):
        V_new = np.array([
            sum(pi[s, a] * p * (r + GAMMA * (not terminated) * V[s2])
                for a in range(4) for p, s2, r, terminated in P[s][a])
            for s in range(16)])
        if np.abs(V_new - V).max() < 1e-13:
            break
        V = V_new
    np.testing.assert_allclose(exact_evaluation(P, pi, GAMMA), V_new, rtol=0, atol=1e-10)


def test_gamma_one_works_when_the_policy_terminates(corridor):
    V = exact_evaluation(corridor.unwrapped.P, uniform_for(corridor), 1.0)
    np.testing.assert_allclose(V, [1, 1, 1, 1, 1, 0], rtol=0, atol=1e-9)


def test_gamma_one_with_a_policy_that_never_terminates_is_an_error(corridor):
    always_left = greedy_policy_matrix(np.zeros(6, dtype=int), 2)
    with pytest.raises(ValueError, match="never terminates"):
        exact_evaluation(corridor.unwrapped.P, always_left, 1.0)
    assert exact_evaluation(corridor.unwrapped.P, always_left, 0.9) == pytest.approx(np.zeros(6))


# --- Monte-Carlo and TD(0) on episodes worked out by hand ----------------------------
# The truncated shuttle (γ = 0.5, 4 steps) visits 0, 1, 0, 1 with rewards 1, 0, 1, 0,
# so the returns are G_3 = 0, G_2 = 1, G_1 = 0 + 0.5·1 = 0.5, G_0 = 1 + 0.5·0.5 = 1.25.

def test_first_visit_mc_by_hand():
    estimate = mc_evaluation(shuttle(ends=False), ONE_ACTION, 0.5, 1)
    np.testing.assert_allclose(estimate.V, [1.25, 0.5])


def test_every_visit_mc_by_hand():
    estimate = mc_evaluation(shuttle(ends=False), ONE_ACTION, 0.5, 2, first_visit=False)
    np.testing.assert_allclose(estimate.V, [(1.25 + 1) / 2, (0.5 + 0) / 2])


def test_constant_alpha_mc_by_hand():
    estimate = mc_evaluation(shuttle(ends=False), ONE_ACTION, 0.5, 2, alpha=0.5)
    # episode 1: V = 0.5 · G;  episode 2: V += 0.5 (G − V)
    np.testing.assert_allclose(estimate.history, [[0.625, 0.25], [0.9375, 0.375]])


def test_td0_bootstraps_through_truncation_by_hand():
    estimate = td0_evaluation(shuttle(ends=False), ONE_ACTION, 0.5, 1, alpha=0.5)
    # V0 = 0.5·1 = 0.5;  V1 = 0.5·(0.5·0.5) = 0.125;  V0 += 0.5·(1 + 0.5·0.125 − 0.5) → 0.78125;
    # the last step is truncated, not terminated: V1 += 0.5·(0.5·0.78125 − 0.125) → 0.2578125
    np.testing.assert_allclose(estimate.V, [0.78125, 0.2578125])


def test_td0_does_not_bootstrap_from_a_terminal_step_by_hand():
    estimate = td0_evaluation(shuttle(ends=True), ONE_ACTION, 0.5, 2, alpha=0.5)
    # 1 → 0 terminates, so V1 stays 0 although V(0) > 0;  V0: 0.5, then 0.5 + 0.5·(1 − 0.5)
    np.testing.assert_allclose(estimate.history, [[0.5, 0.0], [0.75, 0.0]])


def test_td0_learns_the_continuing_values_from_truncated_episodes():
    env = shuttle(ends=False)
    estimate = td0_evaluation(env, ONE_ACTION, 0.5, 500, alpha=0.2)
    exact = exact_evaluation(env.unwrapped.P, ONE_ACTION, 0.5)
    np.testing.assert_allclose(exact, [1 / (1 - 0.25), 0.5 / (1 - 0.25)])
    np.testing.assert_allclose(estimate.V, exact, atol=1e-9)


# --- convergence to V^π, uniform random policy, γ = 0.9 -----------------------------
# The tolerance is on max |V − V^π| over all states. The worst errors over seeds 0–99:
#   corridor (V^π from 0.17 to 0.70): first-visit 0.019, every-visit 0.019,
#     constant-α 0.029, TD(0) 0.029
#   FrozenLake (V^π up to 0.39; state 14, beside the goal, is rare and noisy):
#     first-visit 0.045, every-visit 0.045, constant-α 0.072, TD(0) 0.081
# and each tolerance is about 1.25–1.6× that. The step-size methods keep a noise floor
# of order sqrt(α) · std(G), hence their looser bounds. Seed 0 is well inside all of them.

RUNS = [  # environment, method, evaluator, keyword arguments, episodes, tolerance
    ("corridor", "first-visit MC", mc_evaluation, dict(first_visit=True), 3000, 0.025),
    ("corridor", "every-visit MC", mc_evaluation, dict(first_visit=False), 3000, 0.025),
    ("corridor", "constant-alpha MC", mc_evaluation, dict(alpha=0.002), 3000, 0.045),
    ("corridor", "TD(0)", td0_evaluation, dict(alpha=0.002), 6000, 0.04),
    ("lake", "first-visit MC", mc_evaluation, dict(first_visit=True), 20_000, 0.06),
    ("lake", "every-visit MC", mc_evaluation, dict(first_visit=False), 20_000, 0.06),
    ("lake", "constant-alpha MC", mc_evaluation, dict(alpha=0.01), 20_000, 0.1),
    ("lake", "TD(0)", td0_evaluation, dict(alpha=0.01), 20_000, 0.1),
]


@pytest.mark.parametrize("env_name, method, evaluate, kwargs, episodes, tolerance", RUNS,
                         ids=[f"{run[0]}-{run[1]}" for run in RUNS])
def test_converges_to_the_exact_value(request, env_name, method, evaluate, kwargs, episodes, tolerance):
    env = request.getfixturevalue(env_name)
    pi = uniform_for(env)
    estimate = evaluate(env, pi, GAMMA, episodes, seed=0, **kwargs)
    error = np.abs(estimate.V - exact_evaluation(env.unwrapped.P, pi, GAMMA)).max()
    assert error < tolerance, f"{method}: max |V - V^pi| = {error:.4f}"


def test_error_shrinks_as_episodes_accumulate(corridor):
    pi = uniform_for(corridor)
    exact = exact_evaluation(corridor.unwrapped.P, pi, GAMMA)
    history = mc_evaluation(corridor, pi, GAMMA, 1000).history
    errors = np.abs(history - exact).max(axis=1)
    assert errors[-1] < errors[9] / 3


# --- seeds, shapes, sampling, arguments ---------------------------------------------

@pytest.mark.parametrize("evaluate", [mc_evaluation, td0_evaluation])
def test_same_seed_same_estimate(corridor, evaluate):
    pi = uniform_for(corridor)
    first = evaluate(corridor, pi, GAMMA, 50, seed=3)
    again = evaluate(corridor, pi, GAMMA, 50, seed=3)
    other = evaluate(corridor, pi, GAMMA, 50, seed=4)
    np.testing.assert_array_equal(first.history, again.history)
    assert not np.array_equal(first.history, other.history)


@pytest.mark.parametrize("evaluate", [mc_evaluation, td0_evaluation])
def test_estimate_shapes(lake, evaluate):
    estimate = evaluate(lake, uniform_for(lake), GAMMA, 7)
    assert isinstance(estimate, ValueEstimate)
    assert estimate.V.shape == (16,) and estimate.history.shape == (7, 16)
    np.testing.assert_array_equal(estimate.history[-1], estimate.V)


class ResetRecorder(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.seeds = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


@pytest.mark.parametrize("evaluate", [mc_evaluation, td0_evaluation])
def test_only_the_first_episode_is_reset_with_the_seed(evaluate):
    env = ResetRecorder(gym.make("FrozenLake-v1"))
    evaluate(env, uniform_for(env), GAMMA, 4, seed=7)
    assert env.seeds == [7, None, None, None]


def test_sample_action_follows_the_policy():
    pi = np.array([[0.2, 0.0, 0.5, 0.3]])
    rng = np.random.default_rng(0)
    counts = np.bincount([sample_action(np.cumsum(pi, axis=1), 0, rng) for _ in range(20_000)],
                         minlength=4)
    assert counts[1] == 0
    np.testing.assert_allclose(counts / counts.sum(), pi[0], atol=0.015)


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan")])
def test_bad_gamma_is_rejected(corridor, gamma):
    pi = uniform_for(corridor)
    for call in (lambda: exact_evaluation(corridor.unwrapped.P, pi, gamma),
                 lambda: mc_evaluation(corridor, pi, gamma, 1),
                 lambda: td0_evaluation(corridor, pi, gamma, 1)):
        with pytest.raises(ValueError, match="gamma"):
            call()


def test_bad_arguments_are_rejected(corridor):
    pi = uniform_for(corridor)
    with pytest.raises(ValueError, match="alpha"):
        mc_evaluation(corridor, pi, GAMMA, 1, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        td0_evaluation(corridor, pi, GAMMA, 1, alpha=None)
    with pytest.raises(ValueError, match="episodes"):
        td0_evaluation(corridor, pi, GAMMA, 0)
    with pytest.raises(ValueError, match="shape"):
        exact_evaluation(corridor.unwrapped.P, np.ones((6, 3)) / 3, GAMMA)
    with pytest.raises(ValueError, match="sum to 1"):
        mc_evaluation(corridor, np.ones((6, 2)), GAMMA, 1)
