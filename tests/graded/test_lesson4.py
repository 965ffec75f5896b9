"""Graded tests, lesson 4: the weights Ψ_t, the policy-gradient objective, behaviour cloning.

The expected values are worked out by hand in the comments, or come from brute-force
loops written below straight from the definitions (one environment column at a time,
cut into episodes at the done flags, with the powers of γ written out). None comes from
calling rlcourse's own solutions: the only rlcourse objects used besides the functions
under test are the policy classes, as inputs.

Arrays are time-major [T, N]. A terminated step has no future; a truncated one (the
time limit) and the last step of the batch are bootstrapped from ``next_values`` where a
critic is given.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from brute_force import brute_delta, brute_gae, brute_n_step, brute_reward_to_go, random_batch
from rlcourse.assignments.sandbox import student_module
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy

imitation = student_module("rlcourse.pg.imitation")
dagger = student_module("rlcourse.pg.dagger")
objective = student_module("rlcourse.pg.objective")
psi = student_module("rlcourse.pg.psi")


def f64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def flags(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def assert_close(got, expected, tol: float = 1e-6):
    """``got`` (a tensor) has ``expected``'s shape and values, within ``tol``."""
    assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
    expected = np.asarray(expected, dtype=float)
    assert tuple(got.shape) == expected.shape, f"shape {tuple(got.shape)}, expected {expected.shape}"
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- reward_to_go


@pytest.mark.points(2)
def test_reward_to_go_by_hand():
    # γ = 0.5. Column 0: rewards 1, 2, 3, 4, terminated at t = 1, then cut by the batch end.
    # Column 1: rewards 1, 1, 1, 1, truncated at t = 2, then a one-step episode that terminates.
    rewards = f64([[1, 1], [2, 1], [3, 1], [4, 1]])
    terminated = flags([[0, 0], [1, 0], [0, 0], [0, 1]])
    truncated = flags([[0, 0], [0, 0], [0, 1], [0, 0]])
    # without a critic every cut is an end:
    #   column 0: G_3 = 4, G_2 = 3 + 0.5·4 = 5, G_1 = 2, G_0 = 1 + 0.5·2 = 2
    #   column 1: G_3 = 1, G_2 = 1, G_1 = 1 + 0.5·1 = 1.5, G_0 = 1 + 0.5·1.5 = 1.75
    got = psi.reward_to_go(rewards, terminated, truncated, 0.5)
    assert_close(got, [[2, 1.75], [2, 1.5], [5, 1], [4, 1]])
    # with a critic the batch end (column 0, t = 3) and the time limit (column 1, t = 2) bootstrap:
    #   column 0: G_3 = 4 + 0.5·40 = 24, G_2 = 3 + 0.5·24 = 15; G_1 = 2 and G_0 = 2 as before
    #   column 1: G_3 = 1 (terminated: −4 is not used), G_2 = 1 + 0.5·(−3) = −0.5,
    #             G_1 = 1 + 0.5·(−0.5) = 0.75, G_0 = 1 + 0.5·0.75 = 1.375
    next_values = f64([[10, -1], [20, -2], [30, -3], [40, -4]])
    got = psi.reward_to_go(rewards, terminated, truncated, 0.5, next_values)
    assert_close(got, [[2, 1.375], [2, 0.75], [15, -0.5], [24, 1]])


@pytest.mark.points(1)
@pytest.mark.parametrize("gamma", [0.9, 1.0])
@pytest.mark.parametrize("critic", [False, True])
def test_reward_to_go_matches_a_brute_force_sum(gamma, critic):
    for seed in range(4):
        b = random_batch(seed)
        got = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], gamma,
                               b["next_values"] if critic else None)
        assert_close(got, brute_reward_to_go(b, gamma, critic))


# --------------------------------------------------------------------------- baselines


@pytest.mark.points(1)
def test_constant_and_value_baselines_by_hand():
    G = f64([[1, 2], [3, 6]])
    # the mean of all four is 3
    assert_close(psi.constant_baseline(G), [[-2, -1], [0, 3]])
    # over the mask, the mean of 1, 2, 3 is 2 (only the masked-in entries are checked)
    mask = flags([[1, 1], [1, 0]])
    got = psi.constant_baseline(G, mask)
    assert tuple(got.shape) == (2, 2)
    assert_close(got[mask], [-1, 0, 1])
    # V(s_t) as the baseline: G − V entry by entry
    assert_close(psi.value_baseline(G, f64([[0.5, -1], [3, 2.5]])), [[0.5, 3], [0, 3.5]])


@pytest.mark.points(1)
def test_running_baseline_uses_the_average_before_the_batch():
    # first batch: mean 4; ρ̂ starts there and Ψ = G − 4
    got, rho = psi.running_baseline(f64([[2, 6], [1, 7]]), None, beta=0.5)
    assert_close(got, [[-2, 2], [-3, 3]])
    assert float(rho) == pytest.approx(4.0)
    # second batch: mean 10; Ψ = G − 4 (the old ρ̂), then ρ̂ = 0.5·4 + 0.5·10 = 7
    got, rho = psi.running_baseline(f64([[8, 12], [9, 11]]), rho, beta=0.5)
    assert_close(got, [[4, 8], [5, 7]])
    assert float(rho) == pytest.approx(7.0)
    # third batch, masked: the mean of the kept 0 and 2 is 1; Ψ = G − 7, ρ̂ = 0.9·7 + 0.1·1 = 6.4
    got, rho = psi.running_baseline(f64([[0, 100], [2, -50]]), rho, beta=0.9, mask=flags([[1, 0], [1, 0]]))
    assert_close(got[:, 0], [-7, -5])
    assert float(rho) == pytest.approx(6.4)


@pytest.mark.points(1)
def test_time_baseline_by_hand():
    G = f64([[1, 10], [2, 4], [3, 6]])
    timesteps = torch.tensor([[0, 2], [1, 0], [2, 1]])
    # b_0 = mean(1, 4) = 2.5, b_1 = mean(2, 6) = 4, b_2 = mean(3, 10) = 6.5
    assert_close(psi.time_baseline(G, timesteps), [[-1.5, 3.5], [-2, 1.5], [-3.5, 2]])
    # leaving out the 10: b_2 = 3
    mask = flags([[1, 0], [1, 1], [1, 1]])
    got = psi.time_baseline(G, timesteps, mask)
    assert tuple(got.shape) == (3, 2)
    assert_close(got[mask], [-1.5, -2, 1.5, 0, 2])


@pytest.mark.points(1)
def test_min_variance_baseline_by_hand():
    G = f64([[1, 2], [3, 4]])
    grad_sq_norms = f64([[1, 1], [2, 0]])
    # b* = Σ w G / Σ w = (1 + 2 + 6 + 0) / 4 = 2.25: the score-weighted mean, not the plain 2.5
    assert_close(psi.min_variance_baseline(G, grad_sq_norms), [[-1.25, -0.25], [0.75, 1.75]])
    # without the weight-2 sample: b* = (1 + 2) / 2 = 1.5
    mask = flags([[1, 1], [0, 1]])
    got = psi.min_variance_baseline(G, grad_sq_norms, mask)
    assert_close(got[mask], [-0.5, 0.5, 2.5])
    # equal weights give the plain mean
    assert_close(psi.min_variance_baseline(G, f64([[3, 3], [3, 3]])), [[-1.5, -0.5], [0.5, 1.5]])


# --------------------------------------------------------------------------- TD residual, n-step, GAE


@pytest.mark.points(1)
def test_td_residual_by_hand():
    # γ = 0.9; δ = r + γ V(s') − V(s), without V(s') where the step terminated
    rewards = f64([[1, 0], [2, -1]])
    values = f64([[0.5, 2], [1, 0]])
    next_values = f64([[10, 5], [20, 3]])
    terminated = flags([[0, 1], [0, 0]])
    # (0, 0): 1 + 9 − 0.5 = 9.5;  (0, 1): 0 − 2 = −2 (terminated: 5 unused)
    # (1, 0): 2 + 18 − 1 = 19;    (1, 1): −1 + 2.7 − 0 = 1.7
    assert_close(psi.td_residual(rewards, values, next_values, terminated, 0.9), [[9.5, -2], [19, 1.7]])


@pytest.mark.points(1)
def test_n_step_advantage_by_hand():
    # γ = 0.5, n = 2
    rewards = f64([[1, 1], [2, 1], [3, 1], [4, 1]])
    values = f64([[1, 0], [1, 0], [1, 0], [1, 0]])
    next_values = f64([[2, 10], [4, 20], [6, 30], [8, 40]])
    terminated = flags([[0, 0], [0, 1], [0, 0], [0, 0]])
    truncated = flags([[0, 0], [0, 0], [0, 1], [0, 0]])
    # column 0 never ends: A_t = r_t + 0.5 r_{t+1} + 0.25 V(s_{t+2}) − 1
    #   A_0 = 1 + 1 + 0.25·4 − 1 = 2, A_1 = 2 + 1.5 + 0.25·6 − 1 = 4, A_2 = 3 + 2 + 0.25·8 − 1 = 6,
    #   A_3 = 4 + 0.5·8 − 1 = 7 (the batch ends after one step)
    # column 1: terminated at t = 1, truncated at t = 2:
    #   A_0 = 1 + 0.5·1 = 1.5 (no V after the terminal step), A_1 = 1,
    #   A_2 = 1 + 0.5·30 = 16 (the time limit bootstraps), A_3 = 1 + 0.5·40 = 21
    got = psi.n_step_advantage(rewards, values, next_values, terminated, truncated, 0.5, 2)
    assert_close(got, [[2, 1.5], [4, 1], [6, 16], [7, 21]])


@pytest.mark.points(1)
def test_gae_by_hand():
    # γ = 0.5, λ = 0.5, so γλ = 0.25
    rewards = f64([[1, 1], [2, 1], [3, 1]])
    values = f64([[1, 0], [1, 0], [1, 0]])
    next_values = f64([[2, 4], [2, 8], [2, 12]])
    terminated = flags([[0, 0], [0, 0], [0, 1]])
    truncated = flags([[0, 1], [0, 0], [0, 0]])
    # column 0: δ = r + 0.5·2 − 1 = r; Â_2 = 3, Â_1 = 2 + 0.25·3 = 2.75, Â_0 = 1 + 0.25·2.75 = 1.6875
    # column 1: δ_0 = 1 + 0.5·4 = 3 (truncated: bootstrapped), δ_1 = 1 + 0.5·8 = 5, δ_2 = 1 (terminated);
    #           Â_2 = 1, Â_1 = 5 + 0.25·1 = 5.25, Â_0 = 3 (its episode ended at t = 0)
    got = psi.gae(rewards, values, next_values, terminated, truncated, 0.5, 0.5)
    assert_close(got, [[1.6875, 3], [2.75, 5.25], [3, 1]])


@pytest.mark.points(2)
def test_gae_matches_brute_force_and_its_two_limits():
    for seed in range(3):
        b = random_batch(seed, consistent=True)
        args = (b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"])
        for gamma, lam in [(0.9, 0.8), (0.99, 0.95), (1.0, 0.5)]:
            assert_close(psi.gae(*args, gamma, lam), brute_gae(b, gamma, lam))
        # λ = 0: the TD residual δ_t
        assert_close(psi.gae(*args, 0.9, 0.0), brute_delta(b, 0.9))
        # λ = 1: the bootstrapped discounted return minus V(s_t)
        G = brute_reward_to_go(b, 0.9, critic=True)
        assert_close(psi.gae(*args, 0.9, 1.0), G - b["values"].numpy())


@pytest.mark.points(1)
def test_truncation_bootstraps_and_termination_does_not():
    # one episode of steps 0, 1 ends at t = 1; step 2 starts the next, cut by the batch end.
    # Raising V(s_2') = next_values[1] by Δ = 8 moves Ψ where step 1 was truncated, never
    # where it terminated, and never step 2 (another episode). γ = 0.5, λ = 0.5.
    rewards, values = f64([[1], [2], [3]]), f64([[0.5], [-1], [2]])
    low, high = f64([[3], [1], [-2]]), f64([[3], [9], [-2]])
    changes = {}
    for end in ("terminated", "truncated"):
        terminated = flags([[0], [end == "terminated"], [0]])
        truncated = flags([[0], [end == "truncated"], [0]])

        def every_psi(next_values):
            return {
                "reward_to_go": psi.reward_to_go(rewards, terminated, truncated, 0.5, next_values),
                "td_residual": psi.td_residual(rewards, values, next_values, terminated, 0.5),
                "n_step_advantage": psi.n_step_advantage(rewards, values, next_values, terminated, truncated, 0.5, 3),
                "gae": psi.gae(rewards, values, next_values, terminated, truncated, 0.5, 0.5),
            }

        before, after = every_psi(low), every_psi(high)
        changes[end] = {name: (after[name] - before[name]).squeeze(-1).tolist() for name in before}
    for name, change in changes["terminated"].items():
        assert change == pytest.approx([0, 0, 0], abs=1e-9), f"{name}: a terminated step bootstrapped"
    # truncated: Ψ_1 moves by γΔ = 4; Ψ_0 by γ²Δ = 2 for the returns, γλ·γΔ = 1 for GAE,
    # and not at all for the one-step δ_0
    expected = {"reward_to_go": [2, 4, 0], "td_residual": [0, 4, 0], "n_step_advantage": [2, 4, 0], "gae": [1, 4, 0]}
    for name, change in changes["truncated"].items():
        assert change == pytest.approx(expected[name], abs=1e-9), f"{name}: the truncated step, {change}"


# --------------------------------------------------------------------------- the objective


@pytest.mark.points(2)
def test_policy_gradient_loss_value_and_gradient():
    psi_values = f64([[2, -1], [0.5, 4]])
    logp = f64([[-1, -2], [-0.5, -3]]).requires_grad_()
    # −mean(log π · Ψ) = −(−2 + 2 − 0.25 − 12) / 4 = 3.0625
    loss = objective.policy_gradient_loss(logp, psi_values)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(3.0625)
    loss.backward()
    assert_close(logp.grad, -psi_values / 4)
    # with a mask the mean runs over the 3 kept steps, and a dropped step gets no gradient
    logp.grad = None
    mask = flags([[1, 0], [1, 1]])
    loss = objective.policy_gradient_loss(logp, psi_values, mask)
    assert loss.item() == pytest.approx(-(-2 - 0.25 - 12) / 3)
    loss.backward()
    assert_close(logp.grad, [[-2 / 3, 0], [-0.5 / 3, -4 / 3]])
    # through a policy: π = softmax(θ) at θ = 0 (uniform over 3 actions), actions 0 and 2 with
    # Ψ = 1 and −1. ∂ log π(a) / ∂θ = onehot(a) − π, so −∇L = ½ [(e_0 − π) − (e_2 − π)] = (½, 0, −½)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(theta, -1)[torch.tensor([0, 2])]
    objective.policy_gradient_loss(logp, f64([1, -1])).backward()
    assert_close(theta.grad, [-0.5, 0, 0.5])


@pytest.mark.points(2)
def test_importance_sampled_loss_value_and_gradient():
    psi_values = f64([[2, -1], [0.5, 4]])
    # at log π = log π_old every ratio is 1: the loss is −mean(Ψ) and its gradient is the
    # policy-gradient loss's, −Ψ / |B|
    logp_old = f64([[-1, -2], [-0.5, -3]])
    logp = logp_old.clone().requires_grad_()
    loss = objective.importance_sampled_loss(logp, logp_old, psi_values)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(-5.5 / 4)
    loss.backward()
    assert_close(logp.grad, -psi_values / 4)
    # ratios 2, ½, 1, 4: the loss is −mean(ratio · Ψ) = −(4 − 0.5 + 0.5 + 16) / 4 = −5,
    # and ∂ ratio / ∂ log π = ratio, so the gradient is −ratio · Ψ / 4
    ratio = f64([[2, 0.5], [1, 4]])
    logp = (logp_old + torch.log(ratio)).requires_grad_()
    loss = objective.importance_sampled_loss(logp, logp_old, psi_values)
    assert loss.item() == pytest.approx(-5.0)
    loss.backward()
    assert_close(logp.grad, -ratio * psi_values / 4)
    # masked: the mean over the kept steps (ratios 2 and 4): −(4 + 16) / 2
    logp.grad = None
    mask = flags([[1, 0], [0, 1]])
    loss = objective.importance_sampled_loss(logp, logp_old, psi_values, mask)
    assert loss.item() == pytest.approx(-10.0)
    loss.backward()
    assert_close(logp.grad, [[-2, 0], [0, -8]])


# --------------------------------------------------------------------------- behaviour cloning


def linear_categorical_policy() -> CategoricalPolicy:
    """Logits = W s with W = [[1, 0], [0, 1], [0, 0]]: 2 inputs, 3 actions, no hidden layer."""
    policy = CategoricalPolicy(2, 3, hidden=())
    with torch.no_grad():
        layer = policy.logits[0]
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        layer.bias.zero_()
    return policy


@pytest.mark.points(1)
def test_negative_log_likelihood_by_hand():
    policy = linear_categorical_policy()
    # s = (0, 0): logits 0, 0, 0, π uniform; s = (ln 2, 0): logits ln 2, 0, 0, π = (½, ¼, ¼)
    observations = torch.tensor([[0.0, 0.0], [math.log(2), 0.0], [math.log(2), 0.0]])
    actions = torch.tensor([2, 0, 1])
    # L = −(ln ⅓ + ln ½ + ln ¼) / 3 = ln 24 / 3
    loss = imitation.negative_log_likelihood(policy, observations, actions)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "the loss is one number: a scalar tensor"
    assert loss.item() == pytest.approx(math.log(24) / 3, rel=1e-6)
    # ∂L/∂bias = mean(π − onehot(a)) = [(⅓, ⅓, −⅔) + (−½, ¼, ¼) + (½, −¾, ¼)] / 3 = (1/9, −1/18, −1/18)
    loss.backward()
    assert_close(policy.logits[0].bias.grad, [1 / 9, -1 / 18, -1 / 18], tol=1e-6)


def tiny_demonstrations(n: int = 200, seed: int = 0) -> imitation.Demonstrations:
    """Points in the square [−1, 1]²; the expert pushes right (1) when x + ½y > 0, else left (0)."""
    rng = np.random.default_rng(seed)
    observations = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    actions = (observations[:, 0] + 0.5 * observations[:, 1] > 0).astype(np.int64)
    return imitation.Demonstrations(observations, actions, [0.0])


SQUARE = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


@pytest.mark.points(2)
def test_behaviour_cloning_fits_a_tiny_data_set():
    demos = tiny_demonstrations()
    config = imitation.BCConfig(hidden=(16,), lr=0.01, epochs=1, batch_size=50, min_updates=300)
    policy, log = imitation.behaviour_cloning(demos, SQUARE, gym.spaces.Discrete(2), config, seed=0)
    observations, actions = torch.as_tensor(demos.observations), torch.as_tensor(demos.actions)
    # 4 minibatches per epoch, at least 300 steps: 75 epochs
    assert len(log) == 75 and list(log["updates"])[-1] == 300
    # the clone agrees with the expert almost everywhere
    agree = np.mean([policy.act(s) == a for s, a in zip(demos.observations, demos.actions)])
    assert agree >= 0.95, f"the clone takes the expert's action on {agree:.0%} of the pairs"
    # its negative log-likelihood, computed here, is far below ln 2 (a coin flip) and is the log's last loss
    with torch.no_grad():
        nll = -float(policy.distribution(observations).log_prob(actions).mean())
    assert nll < 0.25, f"negative log-likelihood {nll:.3f}"
    assert log["loss"].iloc[-1] == pytest.approx(nll, rel=1e-4)
    assert log["loss"].iloc[-1] < 0.5 * log["loss"].iloc[0]
    assert log["accuracy"].iloc[-1] >= 0.95


# --------------------------------------------------------------------------- DAgger


@pytest.mark.points(1)
def test_dagger_aggregate_by_hand():
    from rlcourse.pg.imitation import Demonstrations

    data = Demonstrations(np.zeros((2, 4), np.float32), np.array([0, 1], dtype=np.int64), [10.0])
    more = dagger.aggregate(data, [np.ones(4), 2 * np.ones(4)], [1, 0])
    assert more.observations.shape == (4, 4) and more.observations.dtype == np.float32
    np.testing.assert_array_equal(more.observations, [[0] * 4, [0] * 4, [1] * 4, [2] * 4])
    assert more.actions.dtype == np.int64 and more.actions.tolist() == [0, 1, 1, 0]
    assert more.episode_returns == [10.0]


def replay(driver, steps, first_seed):
    """The states ``driver`` visits in ``steps`` steps of CartPole-v1, episodes reset from first_seed, +1, …"""
    env, states, k = gym.make("CartPole-v1"), [], 0
    obs, _ = env.reset(seed=first_seed)
    for _ in range(steps):
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(driver.act(obs))
        if terminated or truncated:
            k += 1
            obs, _ = env.reset(seed=first_seed + k)
    return np.array(states), k


@pytest.mark.points(2)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_dagger_drive_labels_the_drivers_states_with_the_expert(beta):
    # the learner always pushes left (weights 0: w · s > 0 never holds); β = 0: it drives and
    # falls after a few steps; β = 1: the expert drives. Either way the expert labels every state.
    from rlcourse.pg.imitation import LinearController, cartpole_controller

    learner, expert = LinearController((0.0, 0.0, 0.0, 0.0)), cartpole_controller()
    states, labels, returns, episodes = dagger.drive(learner, expert, gym.make("CartPole-v1"), 80, beta,
                                                     np.random.default_rng(0), 7)
    expected, ended = replay(expert if beta else learner, 80, 7)
    np.testing.assert_allclose(np.asarray(states), expected, rtol=0, atol=1e-7)
    assert np.asarray(labels).tolist() == [expert.act(s) for s in expected]
    assert len(returns) == ended and episodes == ended + 1
    assert (ended >= 4) if beta == 0 else (ended == 0)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_n_step_advantage_matches_brute_force():
    for seed in range(3):
        b = random_batch(seed)
        for n in (1, 3, 20):
            got = psi.n_step_advantage(b["rewards"], b["values"], b["next_values"], b["terminated"],
                                       b["truncated"], 0.9, n)
            assert_close(got, brute_n_step(b, 0.9, n))


@pytest.mark.points(1)
def test_a_step_both_terminated_and_truncated_is_terminal_and_episodes_do_not_mix():
    # step 1 is terminated and truncated at once (a time limit on the terminal step): no bootstrap
    rewards, values = f64([[1], [2], [3]]), f64([[0], [0], [0]])
    both = flags([[0], [1], [0]])
    for next_values in (f64([[0], [0], [7]]), f64([[0], [100], [7]])):
        assert_close(psi.reward_to_go(rewards, both, both, 0.5, next_values), [[2], [2], [6.5]])
        assert_close(psi.gae(rewards, values, next_values, both, both, 0.5, 1.0), [[2], [2], [6.5]])
        assert_close(psi.n_step_advantage(rewards, values, next_values, both, both, 0.5, 5), [[2], [2], [6.5]])
    # what happens after the end of an episode never reaches its steps
    for end in ("terminated", "truncated"):
        terminated = flags([[0], [end == "terminated"], [0]])
        truncated = flags([[0], [end == "truncated"], [0]])
        for later in (0.0, 50.0):
            r, v, nv = f64([[1], [2], [3 + later]]), f64([[0], [1], [later]]), f64([[1], [4], [later]])
            outputs = [psi.reward_to_go(r, terminated, truncated, 0.9), psi.reward_to_go(r, terminated, truncated, 0.9, nv),
                       psi.gae(r, v, nv, terminated, truncated, 0.9, 0.7),
                       psi.n_step_advantage(r, v, nv, terminated, truncated, 0.9, 3)]
            if later == 0.0:
                first = [out[:2].clone() for out in outputs]
            else:
                for out, reference in zip(outputs, first):
                    assert_close(out[:2], reference.numpy())


@pytest.mark.points(1)
def test_the_losses_send_no_gradient_into_psi_or_the_old_policy():
    psi_values = f64([1.5, -2.0]).requires_grad_()
    logp = f64([-0.3, -1.2]).requires_grad_()
    objective.policy_gradient_loss(logp, psi_values).backward()
    assert psi_values.grad is None or not psi_values.grad.any(), "Ψ is a weight, not something to optimise"
    assert_close(logp.grad, [-0.75, 1.0])
    logp_old = f64([-0.3, -1.2]).requires_grad_()
    logp = f64([-0.3, -1.2]).requires_grad_()
    objective.importance_sampled_loss(logp, logp_old, psi_values).backward()
    assert logp_old.grad is None or not logp_old.grad.any(), "π_old is fixed: no gradient flows into it"
    assert psi_values.grad is None or not psi_values.grad.any()
    assert_close(logp.grad, [-0.75, 1.0])


@pytest.mark.points(1)
def test_negative_log_likelihood_of_a_gaussian_policy_sums_the_action_dimensions():
    # μ = (0, 1) whatever the state, σ = 2 in both dimensions:
    # −log π(a) = Σ_j (a_j − μ_j)² / (2σ²) + ln σ + ½ ln 2π; both pairs are off by 2 in one dimension,
    # so each costs 4/8 + 2 ln 2 + ln 2π
    policy = GaussianPolicy(1, 2, hidden=(), log_std_init=math.log(2))
    with torch.no_grad():
        policy.mean[0].weight.zero_()
        policy.mean[0].bias.copy_(torch.tensor([0.0, 1.0]))
    loss = imitation.negative_log_likelihood(policy, torch.tensor([[0.3], [-2.0]]), torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(0.5 + 2 * math.log(2) + math.log(2 * math.pi), rel=1e-6)


@pytest.mark.points(1)
def test_behaviour_cloning_regresses_continuous_actions():
    # a Box expert: a = (x, −½ y) on [−1, 1]²
    rng = np.random.default_rng(1)
    observations = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    actions = np.stack([observations[:, 0], -0.5 * observations[:, 1]], axis=1).astype(np.float32)
    demos = imitation.Demonstrations(observations, actions, [0.0])
    config = imitation.BCConfig(hidden=(16,), lr=0.01, epochs=1, batch_size=50, min_updates=400)
    policy, log = imitation.behaviour_cloning(demos, SQUARE, gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
                                              config, seed=0)
    predicted = np.stack([policy.act(s) for s in observations])
    error = float(np.mean((predicted - actions) ** 2))
    assert error < 0.01, f"mean squared error {error:.4f}"
    assert log["loss"].iloc[-1] < log["loss"].iloc[0] - 1.0

@pytest.mark.points(1)
def test_dagger_drive_mixes_with_probability_beta():
    # β = 0.5: each step's coin comes from the rng; with the same seed the same steps are the
    # expert's. The expert never falls: the learner's (always-left) steps alone can end an episode.
    from rlcourse.pg.imitation import LinearController, cartpole_controller

    learner, expert = LinearController((0.0, 0.0, 0.0, 0.0)), cartpole_controller()
    first = dagger.drive(learner, expert, gym.make("CartPole-v1"), 200, 0.5, np.random.default_rng(3), 0)
    second = dagger.drive(learner, expert, gym.make("CartPole-v1"), 200, 0.5, np.random.default_rng(3), 0)
    np.testing.assert_array_equal(np.asarray(first[0]), np.asarray(second[0]))
    always_left = dagger.drive(learner, expert, gym.make("CartPole-v1"), 200, 0.0, np.random.default_rng(3), 0)
    assert len(first[2]) < len(always_left[2])
### END HIDDEN TESTS
