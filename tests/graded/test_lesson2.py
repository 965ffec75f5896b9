"""Graded tests, lesson 2: policy evaluation (exact, Monte-Carlo, TD(0)) and planning.

The expected values are closed forms worked out in the comments, hand-computed updates
on a scripted episode, or golden values for FrozenLake-v1 (4×4, slippery) stored below.
The golden values were computed once, outside rlcourse, by iterating the Bellman
equations over ``env.unwrapped.P`` in plain Python loops until they stopped changing
(|ΔV| < 1e-15). No expected value comes from calling rlcourse's own solutions.
"""

import gymnasium as gym
import numpy as np
import pytest

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.assignments.sandbox import student_module

evaluation = student_module("rlcourse.tabular.evaluation")
planning = student_module("rlcourse.tabular.planning")
td_lambda = student_module("rlcourse.tabular.td_lambda")
dyna = student_module("rlcourse.tabular.dyna")
tree_search = student_module("rlcourse.tabular.lookahead")  # (lookahead below is the brute-force one-step Q)

GAMMA = 0.9
# V^π of the uniformly random policy on FrozenLake-v1, γ = 0.9
FROZENLAKE_UNIFORM_V = np.array([
    0.0044772606878750315, 0.004222456605326433, 0.010066756508251645, 0.0041182185715568495,
    0.006721958409482436, 0.0, 0.026333708351541064, 0.0,
    0.018676151611455256, 0.05760700825219785, 0.10697194727637614, 0.0,
    0.0, 0.13038304889971536, 0.39149016018015553, 0.0,
])
# V* on FrozenLake-v1, γ = 0.9
FROZENLAKE_OPTIMAL_V = np.array([
    0.06889090488899698, 0.061414571509350716, 0.07440976196615703, 0.05580732147461638,
    0.0918545398519987, 0.0, 0.11220820641168405, 0.0,
    0.14543635476566918, 0.2474969546012313, 0.2996175927394573, 0.0,
    0.0, 0.37993590116564585, 0.63902014811861, 0.0,
])
# an optimal policy (0 left, 1 down, 2 right, 3 up), the lowest action among ties: holes
# and the goal (5, 7, 11, 12, 15) have all actions worth 0, and in state 6 left and right tie
FROZENLAKE_OPTIMAL_POLICY = [0, 3, 0, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0]


def frozenlake():
    return gym.make("FrozenLake-v1")


def lookahead(P, V, gamma):
    """Q(s, a) = Σ p (r + γ [not terminated] V(s')), by brute force over the model."""
    Q = np.zeros((len(P), len(P[0])))
    for s in P:
        for a in P[s]:
            for prob, next_state, reward, terminated in P[s][a]:
                Q[s, a] += prob * (reward + (0.0 if terminated else gamma * V[next_state]))
    return Q


def assert_optimal_policy(policy, P, V_star, gamma):
    """Every chosen action attains max_a Q*(s, a) (within 1e-8)."""
    policy = np.asarray(policy)
    assert policy.shape == (len(P),)
    Q = lookahead(P, V_star, gamma)
    for s, a in enumerate(policy):
        assert Q[s, a] >= Q[s].max() - 1e-8, f"state {s}: action {a} is worth {Q[s, a]:.6f} < {Q[s].max():.6f}"


class ScriptedEnv(gym.Env):
    """Ignores its single action: visits states 0, 1, 0, 1 with rewards 1, 2, 3, 4.

    The 4th step ends the episode back in state 0, ``terminated`` or (``end="truncated"``)
    ``truncated``. State 2 is never visited.
    """

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(1)
    STATES, REWARDS = (0, 1, 0, 1), (1.0, 2.0, 3.0, 4.0)

    def __init__(self, end: str = "terminated"):
        self.end, self.t = end, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        reward, self.t = self.REWARDS[self.t], self.t + 1
        if self.t < 4:
            return self.STATES[self.t], reward, False, False, {}
        return 0, reward, self.end == "terminated", self.end == "truncated", {}


ONE_ACTION = np.ones((3, 1))


# --------------------------------------------------------------------------- model_arrays


@pytest.mark.points(1)
def test_model_arrays_of_the_corridor():
    # 4 cells, treasure in cell 3: right from cell 2 pays 1 and terminates (no continuation);
    # the treasure cell is absorbing and terminal: zero rows
    T, R = evaluation.model_arrays(gym.make("rlcourse/Corridor-v0", n_cells=4).unwrapped.P)
    assert T.shape == (4, 2, 4) and R.shape == (4, 2)
    expected_T = np.zeros((4, 2, 4))
    expected_T[0, 0, 0] = expected_T[0, 1, 1] = 1        # cell 0: left bumps the wall, right → 1
    expected_T[1, 0, 0] = expected_T[1, 1, 2] = 1
    expected_T[2, 0, 1] = 1                              # cell 2: right terminates
    expected_R = np.zeros((4, 2))
    expected_R[2, 1] = 1
    np.testing.assert_array_equal(T, expected_T)
    np.testing.assert_array_equal(R, expected_R)


@pytest.mark.points(2)
def test_model_arrays_of_frozenlake():
    P = frozenlake().unwrapped.P
    T, R = evaluation.model_arrays(P)
    assert T.shape == (16, 4, 16) and R.shape == (16, 4)
    # cell 0, action left: the agent slips left (stays), down (→ 4) or up (stays)
    np.testing.assert_allclose(T[0, 0], np.eye(16)[0] * 2 / 3 + np.eye(16)[4] / 3, atol=1e-12)
    # cell 14, action down: left (→ 13), down (stays), right (→ goal 15: pays 1, terminates)
    np.testing.assert_allclose(T[14, 1], (np.eye(16)[13] + np.eye(16)[14]) / 3, atol=1e-12)
    np.testing.assert_allclose(R[14], [0, 1 / 3, 1 / 3, 1 / 3], atol=1e-12)
    # holes and the goal are terminal: zero rows
    for s in (5, 7, 11, 12, 15):
        assert not T[s].any() and not R[s].any(), f"state {s} is terminal"
    # the continuation mass plus the terminating mass is 1, and only the goal pays
    terminating = np.array([[sum(p for p, _, _, term in P[s][a] if term) for a in range(4)] for s in range(16)])
    np.testing.assert_allclose(T.sum(axis=2) + terminating, 1.0, atol=1e-12)
    assert (T >= 0).all()
    assert R.sum() == pytest.approx(1.0)       # only cell 14 borders the goal (11, above it, is a hole)


# --------------------------------------------------------------------------- solve_bellman, exact_evaluation


def two_state_model():
    """A hand-made model: 2 states, 2 actions.

    state 0: action 0 pays 1 and moves to state 1; action 1 pays 0 and terminates.
    state 1: action 0 pays 2, stays with probability 0.5, terminates otherwise;
             action 1 pays 5 and moves to state 0.
    """
    T = np.zeros((2, 2, 2))
    T[0, 0, 1] = 1.0
    T[1, 0, 1] = 0.5
    T[1, 1, 0] = 1.0
    R = np.array([[1.0, 0.0], [2.0, 5.0]])
    return T, R


@pytest.mark.points(2)
@pytest.mark.parametrize("gamma, expected", [
    # π(· | 0) = (0.75, 0.25), π(· | 1) = (1, 0):
    # V(1) = 2 + 0.5 γ V(1)  ⇒  V(1) = 2 / (1 − γ/2);  V(0) = 0.75 (1 + γ V(1))
    (0.9, [0.75 * (1 + 0.9 * 40 / 11), 40 / 11]),
    (1.0, [0.75 * (1 + 4.0), 4.0]),
])
def test_solve_bellman_on_a_two_state_model(gamma, expected):
    T, R = two_state_model()
    V = evaluation.solve_bellman(T, R, np.array([[0.75, 0.25], [1.0, 0.0]]), gamma)
    assert np.shape(V) == (2,)
    np.testing.assert_allclose(V, expected, rtol=1e-12)


@pytest.mark.points(1)
def test_exact_evaluation_of_the_corridor():
    # always right on the 6-cell corridor: the reward 1 arrives after 5 − s steps, so
    # V(s) = γ^(4 − s) for s < 5, and the treasure cell is worth 0
    P = gym.make("rlcourse/Corridor-v0").unwrapped.P
    right = np.tile([0.0, 1.0], (6, 1))
    for gamma in (0.9, 0.5, 1.0):
        expected = [gamma ** (4 - s) for s in range(5)] + [0.0]
        np.testing.assert_allclose(evaluation.exact_evaluation(P, right, gamma), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.points(1)
def test_exact_evaluation_of_the_uniform_policy_on_frozenlake():
    V = evaluation.exact_evaluation(frozenlake().unwrapped.P, np.full((16, 4), 0.25), GAMMA)
    np.testing.assert_allclose(V, FROZENLAKE_UNIFORM_V, atol=1e-10)


# --------------------------------------------------------------------------- Monte-Carlo and TD(0)


@pytest.mark.points(2)
@pytest.mark.parametrize("first_visit, alpha, gamma, expected", [
    # the returns of the scripted episode s = 0, 1, 0, 1 with r = 1, 2, 3, 4 and γ = 0.5:
    # G_3 = 4, G_2 = 3 + 0.5 · 4 = 5, G_1 = 2 + 0.5 · 5 = 4.5, G_0 = 1 + 0.5 · 4.5 = 3.25
    (True, None, 0.5, [[3.25, 4.5, 0.0]] * 3),             # first visits: G_0 and G_1
    (False, None, 0.5, [[4.125, 4.25, 0.0]] * 3),          # every visit: the means (3.25 + 5) / 2, (4.5 + 4) / 2
    (True, None, 1.0, [[10.0, 9.0, 0.0]] * 3),             # γ = 1: G_0 = 10, G_1 = 9
    # constant α = 0.5, first visits: V ← V + 0.5 (G − V), once per episode
    (True, 0.5, 0.5, [[1.625, 2.25, 0.0], [2.4375, 3.375, 0.0], [2.84375, 3.9375, 0.0]]),
])
def test_mc_evaluation_on_a_scripted_episode(first_visit, alpha, gamma, expected):
    estimate = evaluation.mc_evaluation(ScriptedEnv(), ONE_ACTION, gamma, 3, first_visit=first_visit, alpha=alpha)
    history = np.asarray(estimate.history)
    assert history.shape == (3, 3)
    np.testing.assert_allclose(history, expected, rtol=1e-12)
    np.testing.assert_allclose(estimate.V, expected[-1], rtol=1e-12)


@pytest.mark.points(2)
def test_td0_evaluation_on_a_scripted_episode():
    # α = 0.5, γ = 0.5, V starts at 0. Episode 1, one update per step:
    #   0 → 1, r = 1:  V(0) = 0.5 (1 + 0.5 · 0)                     = 0.5
    #   1 → 0, r = 2:  V(1) = 0.5 (2 + 0.5 · 0.5)                   = 1.125
    #   0 → 1, r = 3:  V(0) = 0.5 + 0.5 (3 + 0.5 · 1.125 − 0.5)     = 2.03125
    #   1 → 0, r = 4, terminated:     V(1) = 1.125 + 0.5 (4 − 1.125) = 2.5625
    #   (no bootstrap from V(0): the episode is over)
    # episode 2 repeats the same four updates from there
    estimate = evaluation.td0_evaluation(ScriptedEnv(), ONE_ACTION, 0.5, 2, alpha=0.5)
    expected = [[2.03125, 2.5625, 0.0], [3.283203125, 3.41015625, 0.0]]
    np.testing.assert_allclose(np.asarray(estimate.history), expected, rtol=1e-12)
    np.testing.assert_allclose(estimate.V, expected[-1], rtol=1e-12)


@pytest.mark.points(2)
@pytest.mark.parametrize("method, kwargs, tolerance", [
    ("mc", dict(first_visit=True), 0.08),
    ("mc", dict(first_visit=False), 0.08),
    ("td0", dict(alpha=0.02), 0.12),
])
def test_sampling_estimates_converge_on_frozenlake(method, kwargs, tolerance):
    # 10 000 episodes of the uniformly random policy; the largest error of a correct
    # implementation stays well below the tolerance (states near the goal are rare)
    evaluate = evaluation.mc_evaluation if method == "mc" else evaluation.td0_evaluation
    estimate = evaluate(frozenlake(), np.full((16, 4), 0.25), GAMMA, 10_000, seed=0, **kwargs)
    assert np.asarray(estimate.history).shape == (10_000, 16)
    error = np.abs(np.asarray(estimate.V) - FROZENLAKE_UNIFORM_V)
    assert error.max() < tolerance, f"max |V − V^π| = {error.max():.3f} (state {error.argmax()})"
    # the start state is visited every episode: its estimate is much closer
    assert error[0] < 0.01


# --------------------------------------------------------------------------- planning


@pytest.mark.points(1)
def test_q_from_v_and_greedy_actions():
    T, R = two_state_model()
    # Q = R + γ T V with V = (10, 20), γ = 0.5:
    # Q(0, 0) = 1 + 0.5 · 20, Q(0, 1) = 0, Q(1, 0) = 2 + 0.5 · 0.5 · 20, Q(1, 1) = 5 + 0.5 · 10
    Q = planning.q_from_v(T, R, np.array([10.0, 20.0]), 0.5)
    np.testing.assert_allclose(Q, [[11.0, 0.0], [7.0, 10.0]], rtol=1e-12)
    # greedy actions, the lowest index among exact ties
    actions = planning.greedy_actions(np.array([[1.0, 2.0, 2.0], [0.0, -1.0, -2.0], [-3.0, 5.0, 5.0], [1.0, 1.0, 9.0]]))
    np.testing.assert_array_equal(actions, [1, 0, 1, 2])


@pytest.mark.points(2)
def test_value_iteration_on_frozenlake():
    P = frozenlake().unwrapped.P
    plan = planning.value_iteration(P, GAMMA)
    # stopping at |ΔV| < 1e-10 leaves V within γ · 1e-10 / (1 − γ) of V*
    np.testing.assert_allclose(plan.V, FROZENLAKE_OPTIMAL_V, atol=1e-8)
    np.testing.assert_allclose(plan.Q, lookahead(P, FROZENLAKE_OPTIMAL_V, GAMMA), atol=1e-8)
    assert_optimal_policy(plan.policy, P, FROZENLAKE_OPTIMAL_V, GAMMA)
    history = np.asarray(plan.history, dtype=float)
    assert len(history) == plan.iterations and history[-1] < 1e-10 <= history[:-1].min()
    # the first sweeps, by brute force from V = 0: Δ_k = max_s |V_k(s) − V_{k−1}(s)|
    V, deltas = np.zeros(16), []
    for _ in range(4):
        V_next = lookahead(P, V, GAMMA).max(axis=1)
        deltas.append(np.abs(V_next - V).max())
        V = V_next
    np.testing.assert_allclose(history[:4], deltas, rtol=1e-9)
    assert (np.diff(history) <= 1e-12).all(), "the backup is a γ-contraction: max |ΔV| never grows"


@pytest.mark.points(2)
def test_policy_iteration_on_frozenlake():
    P = frozenlake().unwrapped.P
    plan = planning.policy_iteration(P, GAMMA)
    # policy iteration ends with an exact evaluation of an optimal policy
    np.testing.assert_allclose(plan.V, FROZENLAKE_OPTIMAL_V, atol=1e-10)
    np.testing.assert_allclose(plan.Q, lookahead(P, FROZENLAKE_OPTIMAL_V, GAMMA), atol=1e-10)
    assert_optimal_policy(plan.policy, P, FROZENLAKE_OPTIMAL_V, GAMMA)
    assert len(plan.history) == plan.iterations and plan.history[-1] == 0
    assert all(changed > 0 for changed in plan.history[:-1])
    assert plan.iterations <= 10


# --------------------------------------------------------------------------- eligibility traces, TD(λ)


@pytest.mark.points(1)
@pytest.mark.parametrize("next_values, expected", [
    # γ = λ = 0.5, rewards 1, 2, 3, 4; G^λ_t = r_{t+1} + γ ((1 − λ) V(s_{t+1}) + λ G^λ_{t+1}), G^λ_T = V(s_T):
    # terminated (V(s_T) = 0): G_3 = 4, G_2 = 3 + 0.5 (15 + 2) = 11.5,
    #   G_1 = 2 + 0.5 (10 + 5.75) = 9.875, G_0 = 1 + 0.5 (5 + 4.9375) = 5.96875
    ([10.0, 20.0, 30.0, 0.0], [5.96875, 9.875, 11.5, 4.0]),
    # cut by the step limit with V(s_T) = 40: G_3 = 4 + 0.5 · 40 = 24, G_2 = 3 + 0.5 (15 + 12) = 16.5, …
    ([10.0, 20.0, 30.0, 40.0], [6.28125, 11.125, 16.5, 24.0]),
])
def test_lambda_returns_by_hand(next_values, expected):
    G = td_lambda.lambda_returns([1.0, 2.0, 3.0, 4.0], np.array(next_values), 0.5, 0.5)
    np.testing.assert_allclose(G, expected, rtol=1e-12)
    # λ = 0: the one-step TD targets; λ = 1: the discounted returns (bootstrapped at a cut)
    np.testing.assert_allclose(td_lambda.lambda_returns([1.0, 2.0], np.array([5.0, 7.0]), 0.5, 0.0), [3.5, 5.5])
    np.testing.assert_allclose(td_lambda.lambda_returns([1.0, 2.0], np.array([5.0, 7.0]), 0.5, 1.0), [3.75, 5.5])


@pytest.mark.points(1)
def test_update_trace_accumulates_or_replaces():
    # γλ = 0.25: every trace fades to a quarter, then the visited state 1 is marked
    e = np.array([1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(td_lambda.update_trace(e.copy(), 1, 0.5, 0.5, "accumulating"), [0.25, 1.125, 0, 0])
    np.testing.assert_allclose(td_lambda.update_trace(e.copy(), 1, 0.5, 0.5, "replacing"), [0.25, 1.0, 0, 0])
    np.testing.assert_allclose(td_lambda.update_trace(e.copy(), 3, 0.9, 0.0, "accumulating"), [0, 0, 0, 1.0])


def forward_view_episode(V, states, rewards, gamma, lam, alpha):
    """The offline λ-return algorithm on one terminated episode, from the definition (S&B eq. 12.3):
    G^λ_t = Σ_{n < T−t} (1 − λ) λ^(n−1) G_{t:t+n} + λ^(T−t−1) G_t, every update with V held fixed."""
    T, new = len(rewards), np.array(V, dtype=float)
    value = lambda k: 0.0 if k == T else V[states[k]]  # noqa: E731  (V(s_T) = 0: terminal)
    for t, s_t in enumerate(states[:T]):
        n_step = [sum(gamma ** k * rewards[t + k] for k in range(n)) + gamma ** n * value(t + n)
                  for n in range(1, T - t + 1)]
        G = sum((1 - lam) * lam ** (n - 1) * n_step[n - 1] for n in range(1, T - t)) + lam ** (T - t - 1) * n_step[-1]
        new[s_t] += alpha * (G - V[s_t])
    return new


@pytest.mark.points(2)
@pytest.mark.parametrize("gamma, lam", [(0.5, 0.5), (0.9, 0.8), (1.0, 1.0)])
def test_offline_td_lambda_equals_the_lambda_return_on_a_scripted_episode(gamma, lam):
    # the backward view with accumulating traces, its increments applied at the episode's end,
    # is the forward view exactly (S&B §12.2); the episode revisits both of its states
    V, expected = np.zeros(3), []
    for _ in range(3):
        V = forward_view_episode(V, ScriptedEnv.STATES, ScriptedEnv.REWARDS, gamma, lam, 0.5)
        expected.append(V)
    estimate = td_lambda.td_lambda_evaluation(ScriptedEnv(), ONE_ACTION, gamma, lam, 3, alpha=0.5, offline=True)
    np.testing.assert_allclose(np.asarray(estimate.history), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(estimate.V, expected[-1], rtol=0, atol=1e-12)


@pytest.mark.points(1)
@pytest.mark.parametrize("trace", ["accumulating", "replacing"])
def test_online_td_lambda_at_zero_is_td0(trace):
    # λ = 0: the trace is the indicator of s_t, so TD(λ) is TD(0): the numbers of the TD(0) test above
    estimate = td_lambda.td_lambda_evaluation(ScriptedEnv(), ONE_ACTION, 0.5, 0.0, 2, alpha=0.5, trace=trace)
    np.testing.assert_allclose(np.asarray(estimate.history), [[2.03125, 2.5625, 0.0], [3.283203125, 3.41015625, 0.0]],
                               rtol=1e-12)


# --------------------------------------------------------------------------- Dyna-Q: planning with a learned model


@pytest.mark.points(1)
def test_dyna_q_learning_update_by_hand():
    # Q(0, ·) = (0, 1), Q(1, ·) = (2, 4); α = γ = 0.5
    q = np.array([[0.0, 1.0], [2.0, 4.0]])  # Q as an array [S, A] (training keeps lists of rows)
    # (s, a) = (0, 1), r = 1 → s' = 1: target 1 + 0.5 · 4 = 3, δ = 2, Q(0, 1) = 1 + 0.5 · 2 = 2
    assert dyna.q_learning_update(q, 0, 1, 1.0, 1, False, 0.5, 0.5) == pytest.approx(2.0)
    # (1, 0), r = 1, terminated: target 1, δ = 1 − 2 = −1, Q(1, 0) = 1.5
    assert dyna.q_learning_update(q, 1, 0, 1.0, 0, True, 0.5, 0.5) == pytest.approx(-1.0)
    np.testing.assert_allclose(q, [[0.0, 2.0], [1.5, 4.0]])


def one_pair_model(reward, tried_at):
    from rlcourse.tabular.dyna import Model  # the trusted class: the model is data the test builds

    model = Model()
    model.add(0, 1, reward, 1, False, tried_at)
    return model


@pytest.mark.points(1)
def test_planning_updates_replay_the_model():
    # one remembered pair (0, 1) → (r = 1, s' = 1); Q(1, ·) = (0, 2); α = 0.5, γ = 0.5, κ = 0:
    # 1st update: target 1 + 0.5 · 2 = 2, Q(0, 1) = 1;  2nd: Q(0, 1) = 1 + 0.5 (2 − 1) = 1.5
    q = np.array([[0.0, 0.0], [0.0, 2.0]])
    config = dyna.DynaQConfig(alpha=0.5, gamma=0.5)
    dyna.planning_updates(q, one_pair_model(1.0, 3), 2, config, 10, np.random.default_rng(0))
    np.testing.assert_allclose(q, [[0.0, 1.5], [0.0, 2.0]])


@pytest.mark.points(1)
def test_dyna_q_plus_adds_its_exploration_bonus():
    # the pair was last tried at step 1, it is step 10: τ = 9, bonus κ √τ = 0.5 · 3 = 1.5 on r = 0;
    # target 1.5 + 0.5 · 2 = 2.5 and Q(0, 1) = 0.5 · 2.5 = 1.25
    q = np.array([[0.0, 0.0], [0.0, 2.0]])
    config = dyna.DynaQConfig(alpha=0.5, gamma=0.5, kappa=0.5)
    dyna.planning_updates(q, one_pair_model(0.0, 1), 1, config, 10, np.random.default_rng(0))
    np.testing.assert_allclose(q, [[0.0, 1.25], [0.0, 2.0]])



@pytest.mark.points(1)
def test_lookahead_over_a_model_by_hand():
    # a remembered chain 0 → 1 → 2 (goal, reward 1, terminated) with action 1; action 0 stays; γ = 0.5
    model = {(0, 0): (0.0, 0, False), (0, 1): (0.0, 1, False), (1, 0): (0.0, 1, False), (1, 1): (1.0, 2, True)}
    np.testing.assert_allclose(tree_search.lookahead_q(model, 1, 1, 0.5, 2), [0.0, 1.0])
    np.testing.assert_allclose(tree_search.lookahead_q(model, 0, 1, 0.5, 2), [0.0, 0.0])  # the goal is 2 steps away
    np.testing.assert_allclose(tree_search.lookahead_q(model, 0, 2, 0.5, 2), [0.0, 0.5])
    # depth 3: staying first still reaches the goal in the 2 steps left, worth 0.5 · 0.5
    np.testing.assert_allclose(tree_search.lookahead_q(model, 0, 3, 0.5, 2), [0.25, 0.5])


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_solve_bellman_with_gamma_zero_is_the_expected_reward():
    T, R = two_state_model()
    pi = np.array([[0.75, 0.25], [0.4, 0.6]])
    np.testing.assert_allclose(evaluation.solve_bellman(T, R, pi, 0.0), [0.75, 0.4 * 2 + 0.6 * 5], rtol=1e-12)


@pytest.mark.points(1)
def test_td0_bootstraps_when_an_episode_is_truncated():
    # as in the scripted episode above, but the 4th step is cut (truncated), not terminated:
    # V(1) = 1.125 + 0.5 (4 + 0.5 · V(0) − 1.125) with V(0) = 2.03125
    estimate = evaluation.td0_evaluation(ScriptedEnv(end="truncated"), ONE_ACTION, 0.5, 1, alpha=0.5)
    np.testing.assert_allclose(estimate.V, [2.03125, 3.0703125, 0.0], rtol=1e-12)


@pytest.mark.points(1)
def test_planners_on_the_corridor_and_their_tie_break():
    P = gym.make("rlcourse/Corridor-v0").unwrapped.P
    expected = [GAMMA ** (4 - s) for s in range(5)] + [0.0]
    for plan in (planning.value_iteration(P, GAMMA), planning.policy_iteration(P, GAMMA)):
        np.testing.assert_allclose(plan.V, expected, atol=1e-8)
        np.testing.assert_array_equal(plan.policy, [1, 1, 1, 1, 1, 0])
    # on FrozenLake both return the optimal policy with the lowest action among ties
    P = frozenlake().unwrapped.P
    for plan in (planning.value_iteration(P, GAMMA), planning.policy_iteration(P, GAMMA)):
        np.testing.assert_array_equal(plan.policy, FROZENLAKE_OPTIMAL_POLICY)
    # ties are within 1e-9 of the max, not only exact
    np.testing.assert_array_equal(planning.greedy_actions(np.array([[3.0, 3.0 + 1e-12, 1.0], [1.0, 1.0 + 1e-6, 0.0]])),
                                  [0, 1])

@pytest.mark.points(1)
def test_offline_replacing_td_one_is_first_visit_monte_carlo():
    # λ = γ = 1, replacing traces, offline: first-visit constant-α MC (Singh & Sutton 1996).
    # first-visit returns G_0 = 10, G_1 = 9; α = 0.5: V = (5, 4.5), then (7.5, 6.75)
    estimate = td_lambda.td_lambda_evaluation(ScriptedEnv(), ONE_ACTION, 1.0, 1.0, 2, alpha=0.5, trace="replacing",
                                              offline=True)
    np.testing.assert_allclose(np.asarray(estimate.history), [[5.0, 4.5, 0.0], [7.5, 6.75, 0.0]], rtol=1e-12)


@pytest.mark.points(1)
def test_online_td_lambda_bootstraps_a_truncated_episode():
    # λ = 0 online on the cut episode is TD(0) on it: the numbers of the truncated TD(0) test
    estimate = td_lambda.td_lambda_evaluation(ScriptedEnv(end="truncated"), ONE_ACTION, 0.5, 0.0, 1, alpha=0.5)
    np.testing.assert_allclose(estimate.V, [2.03125, 3.0703125, 0.0], rtol=1e-12)

@pytest.mark.points(1)
def test_planning_alone_spreads_the_goal_value_back():
    # a remembered corridor 0 → 1 → 2 (goal: reward 1, terminated); 2 000 planning updates and no real
    # step reach the Q-learning fixed point along it: Q(1, right) = 1, Q(0, right) = γ
    from rlcourse.tabular.dyna import Model

    model = Model()
    model.add(0, 1, 0.0, 1, False, 1)
    model.add(1, 1, 1.0, 2, True, 2)
    q = np.zeros((3, 2))
    dyna.planning_updates(q, model, 2_000, dyna.DynaQConfig(alpha=0.5, gamma=0.9), 3, np.random.default_rng(1))
    np.testing.assert_allclose(q, [[0.0, 0.9], [0.0, 1.0], [0.0, 0.0]], atol=1e-9)

@pytest.mark.points(1)
def test_deep_lookahead_on_the_corridor_is_v_star():
    # the corridor's true model, searched 10 deep: Q(s, right) = γ^(4 − s); left leads to s − 1, worth
    # γ V*(s − 1) = γ^(6 − s), and from cell 0 into the wall, γ V*(0) = γ^5
    P = gym.make("rlcourse/Corridor-v0").unwrapped.P
    model = {(s, a): (P[s][a][0][2], P[s][a][0][1], P[s][a][0][3]) for s in range(6) for a in range(2)}
    for s in range(5):
        left = GAMMA ** (6 - s) if s >= 1 else GAMMA ** 5
        np.testing.assert_allclose(tree_search.lookahead_q(model, s, 10, GAMMA, 2), [left, GAMMA ** (4 - s)], rtol=1e-12)
    # the unknown pairs are worth ``unknown``
    np.testing.assert_allclose(tree_search.lookahead_q({(0, 1): (1.0, 1, True)}, 0, 3, GAMMA, 2, unknown=-2.0), [-2.0, 1.0])
### END HIDDEN TESTS
