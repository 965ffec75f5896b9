"""Linear value-function approximation: updates by hand, one-hot = tabular, TD and MC fixed points,
tile coding, linear Q-learning on MountainCar, save/load and the command line."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import rlcourse
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.run import NonFiniteError, UnsupportedSpaceError, load_checkpoint
from rlcourse.tabular import evaluation, td_control
from rlcourse.value import linear
from rlcourse.value.linear import (LinearQConfig, LinearQPolicy, OneHot, RadialBasis, TileCoder,
                                   gradient_mc, gradient_mc_update, linear_q_learning_update,
                                   semi_gradient_td0, semi_gradient_td0_update)


class OneStateEnv(gym.Env):
    """One state, one action, reward 1 per step; the step ends the episode only if ``terminal``."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def __init__(self, terminal: bool = False):
        self.terminal = terminal

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 1.0, self.terminal, False, {}


if "test/OneStep-v0" not in gym.registry:
    gym.register(id="test/OneStep-v0", entry_point=OneStateEnv, max_episode_steps=1)


class Aggregate:
    """State aggregation: φ(s) is the one-hot vector of the group of s."""

    def __init__(self, groups):
        self.groups = np.asarray(groups)
        self.n_features = int(self.groups.max()) + 1

    def __call__(self, obs):
        return np.eye(self.n_features)[self.groups[int(obs)]]


# --- the updates, against their formulas ------------------------------------------------

def test_semi_gradient_td0_update_by_hand():
    rng = np.random.default_rng(0)
    w, phi_s, phi_next = rng.normal(size=(3, 5))
    alpha, gamma, r = 0.3, 0.9, 0.7
    delta = r + gamma * sum(phi_next * w) - sum(phi_s * w)
    expected = w + alpha * delta * phi_s
    got = w.copy()
    assert semi_gradient_td0_update(got, phi_s, r, phi_next, False, alpha, gamma) == pytest.approx(delta)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    delta_end = r - sum(phi_s * w)                                   # terminated: no bootstrap
    got = w.copy()
    assert semi_gradient_td0_update(got, phi_s, r, phi_next, True, alpha, gamma) == pytest.approx(delta_end)
    np.testing.assert_allclose(got, w + alpha * delta_end * phi_s, rtol=1e-12)


def test_gradient_mc_update_by_hand():
    rng = np.random.default_rng(1)
    w, phi_s = rng.normal(size=(2, 4))
    G, alpha = 2.5, 0.1
    error = G - sum(phi_s * w)
    got = w.copy()
    assert gradient_mc_update(got, phi_s, G, alpha) == pytest.approx(error)
    np.testing.assert_allclose(got, w + alpha * error * phi_s, rtol=1e-12)


@pytest.mark.parametrize("terminated", [False, True])
def test_linear_q_learning_update_by_hand(terminated):
    rng = np.random.default_rng(2)
    W = rng.normal(size=(6, 3))
    phi_s, phi_next = rng.normal(size=(2, 6))
    alpha, gamma, r, a = 0.2, 0.95, -1.0, 1
    q_next = [sum(phi_next * W[:, b]) for b in range(3)]
    target = r if terminated else r + gamma * max(q_next)
    delta = target - sum(phi_s * W[:, a])
    expected = W.copy()
    expected[:, a] += alpha * delta * phi_s                          # only the taken action's column
    got = W.copy()
    assert linear_q_learning_update(got, phi_s, a, r, phi_next, terminated, alpha, gamma) == pytest.approx(delta)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("terminal", [False, True])
def test_prediction_drivers_bootstrap_on_truncation_only(terminal):
    # One state, reward 1, every episode one step long. Truncated: w ← w + α(1 + γw − w), so
    # w_N = (1 − c^N) / (1 − γ) with c = 1 − α(1 − γ). Terminated: w ← w + α(1 − w), w_N = 1 − (1 − α)^N.
    env = gym.make("test/OneStep-v0", terminal=terminal)
    alpha, gamma, n = 0.1, 0.9, 30
    w = semi_gradient_td0(env, [[1.0]], OneHot(1), gamma, n, alpha=alpha).w[0]
    c = 1 - alpha if terminal else 1 - alpha * (1 - gamma)
    assert w == pytest.approx((1 - c ** n) / (1 if terminal else 1 - gamma), rel=1e-12)


def test_linear_q_learning_train_bootstraps_on_truncation():
    result = linear.train("test/OneStep-v0", LinearQConfig(alpha=0.1, gamma=0.9), steps=30)
    assert result.policy.W[0, 0] == pytest.approx((1 - 0.99 ** 30) / 0.1, rel=1e-12)
    assert (result.log["length"] == 1).all() and len(result.log) == 30


# --- one-hot features: the tabular methods, draw for draw -------------------------------

@pytest.mark.parametrize("env_id, kwargs", [("rlcourse/Corridor-v0", {"n_cells": 6}),
                                            ("FrozenLake-v1", {})])
def test_one_hot_semi_gradient_td0_is_tabular_td0(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    n_s, n_a = env.observation_space.n, env.action_space.n
    pi = evaluation.uniform_policy(n_s, n_a)
    tabular = evaluation.td0_evaluation(env, pi, 0.9, 400, alpha=0.2, seed=3)
    approx = semi_gradient_td0(env, pi, OneHot(n_s), 0.9, 400, alpha=0.2, seed=3)
    assert np.abs(tabular.V).max() > 0.01                             # something was learned
    np.testing.assert_allclose(approx.history, tabular.history, rtol=0, atol=1e-12)


@pytest.mark.parametrize("env_id, kwargs", [("rlcourse/Corridor-v0", {"n_cells": 6}),
                                            ("FrozenLake-v1", {})])
def test_one_hot_gradient_mc_is_every_visit_constant_alpha_mc(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    n_s, n_a = env.observation_space.n, env.action_space.n
    pi = evaluation.uniform_policy(n_s, n_a)
    tabular = evaluation.mc_evaluation(env, pi, 0.9, 400, first_visit=False, alpha=0.05, seed=4)
    approx = gradient_mc(env, pi, OneHot(n_s), 0.9, 400, alpha=0.05, seed=4)
    assert np.abs(tabular.V).max() > 0.01
    np.testing.assert_allclose(approx.history, tabular.history, rtol=0, atol=1e-12)


def test_one_hot_linear_q_learning_is_tabular_q_learning():
    tabular = td_control.train("rlcourse/Corridor-v0", td_control.TDControlConfig(), steps=2000, seed=5)
    config = LinearQConfig(alpha=0.1, gamma=0.99, epsilon_start=1.0, epsilon_end=0.05, exploration_fraction=0.5)
    approx = linear.train("rlcourse/Corridor-v0", config, steps=2000, seed=5)
    assert isinstance(approx.policy.features, OneHot)
    pd.testing.assert_frame_equal(approx.log, tabular.log, check_exact=False, rtol=0, atol=1e-12)
    np.testing.assert_allclose(approx.policy.W, tabular.policy.values, rtol=0, atol=1e-12)


# --- non-tabular features: TD lands on the TD fixed point, MC on the least-squares fit --

def test_td_finds_the_td_fixed_point_and_mc_the_least_squares_fit():
    # An 8-cell corridor walked right with probability 0.7, γ = 0.95, and two features that
    # lump cells 0–3 and 4–7 together. With D = diag(η), η the expected visits per episode
    # (η = d0 + P_πᵀ η), the expected updates vanish at
    #   TD:  Φᵀ D (r_π + γ P_π Φ w − Φ w) = 0       MC:  Φᵀ D (v_π − Φ w) = 0.
    # The two solutions differ by 0.108 here. The weights averaged over the last 2/3 of
    # 2000 episodes (α = 0.02) were within 0.016 of their own solution for each of 20 seeds,
    # so a tolerance of 0.03 leaves room for noise and still tells the two apart.
    n, gamma = 8, 0.95
    env = gym.make("rlcourse/Corridor-v0", n_cells=n, max_episode_steps=10_000)
    pi = np.tile([0.3, 0.7], (n, 1))
    T, R = evaluation.model_arrays(env.unwrapped.P)
    P, r = np.einsum("sa,sat->st", pi, T), (pi * R).sum(axis=1)
    eta = np.linalg.solve(np.eye(n) - P.T, np.eye(n)[0])
    features = Aggregate([0, 0, 0, 0, 1, 1, 1, 1])
    Phi, D = np.array([features(s) for s in range(n)]), np.diag(eta)
    v = evaluation.exact_evaluation(env.unwrapped.P, pi, gamma)
    w_td = np.linalg.solve(Phi.T @ D @ (np.eye(n) - gamma * P) @ Phi, Phi.T @ D @ r)
    w_mc = np.linalg.solve(Phi.T @ D @ Phi, Phi.T @ D @ v)
    assert np.abs(w_td - w_mc).max() > 0.1

    td = semi_gradient_td0(env, pi, features, gamma, 2000, alpha=0.02, seed=0).history[666:].mean(axis=0)
    mc = gradient_mc(env, pi, features, gamma, 2000, alpha=0.02, seed=0).history[666:].mean(axis=0)
    assert np.abs(td - w_td).max() < 0.03 and np.abs(td - w_mc).max() > 0.07
    assert np.abs(mc - w_mc).max() < 0.03 and np.abs(mc - w_td).max() > 0.07


def test_td_with_radial_basis_features_approximates_the_exact_values():
    # Three Gaussian bumps fit this corridor's v_π to within 0.01 at the TD fixed point
    # (computed as above); the sampled weights add at most ~0.01 of noise at α = 0.02.
    n, gamma = 6, 0.9
    env = gym.make("rlcourse/Corridor-v0", n_cells=n, max_episode_steps=10_000)
    pi = np.tile([0.4, 0.6], (n, 1))
    features = RadialBasis(0, n - 1, centers_per_dim=3, width=0.3)
    w = semi_gradient_td0(env, pi, features, gamma, 1500, alpha=0.02, seed=1).history[500:].mean(axis=0)
    v = evaluation.exact_evaluation(env.unwrapped.P, pi, gamma)
    fitted = np.array([features(s) @ w for s in range(n - 1)])       # the goal cell is never visited
    np.testing.assert_allclose(fitted, v[:-1], atol=0.03)


# --- features ---------------------------------------------------------------------------

def test_tile_coder_by_hand():
    # 2 tilings of 2 × 2 tiles (3 × 3 per grid) on the unit square; tiling 1 is shifted by
    # (1, 3)/2 mod 1 = (1/2, 1/2) tile. (0.3, 0.8) is (0.6, 1.6) in tile units:
    # tiling 0 → tile (0, 1) → index 0 + 1·3 = 3; tiling 1 → (1.1, 2.1) → (1, 2) → 9 + 1 + 2·3 = 16.
    coder = TileCoder([0, 0], [1, 1], tiles_per_dim=2, tilings=2)
    assert coder.n_features == 18
    assert coder.active([0.3, 0.8]).tolist() == [3, 16]
    phi = coder([0.3, 0.8])
    assert phi.dtype == np.float64 and phi.shape == (18,) and np.flatnonzero(phi).tolist() == [3, 16]
    # 4 tilings of one tile (2 × 2 per grid), shifted by t·(1, 3)/4 mod 1: (0, 0), (1/4, 3/4),
    # (1/2, 1/2), (3/4, 1/4). (0.5, 0.3) → (0.5, 0.3), (0.75, 1.05), (1.0, 0.8), (1.25, 0.55)
    # → tiles (0, 0), (0, 1), (1, 0), (1, 0) → 0, 4 + 2, 8 + 1, 12 + 1. Symmetric shifts
    # t·(1, 1)/4 would put tiling 1 on tile (0, 0) instead.
    coder = TileCoder([0, 0], [1, 1], tiles_per_dim=1, tilings=4)
    assert coder.active([0.5, 0.3]).tolist() == [0, 6, 9, 13]


def test_tile_coder_on_mountain_car():
    space = gym.make("MountainCar-v0").observation_space
    coder = TileCoder(space.low, space.high, tiles_per_dim=8, tilings=8)
    width = (space.high - space.low) / 8
    space.seed(0)
    for _ in range(200):
        obs = space.sample()
        idx = coder.active(obs)
        assert idx.shape == (8,) and (idx >= 0).all() and (idx < coder.n_features).all()
        assert (idx // coder.tiles_per_tiling).tolist() == list(range(8))     # one tile per tiling
        assert coder(obs).sum() == 8
        near = coder.active(obs + 0.1 * width)      # < 1/8 tile per dimension: ≤ 1 tiling changes per dimension
        assert len(set(idx) & set(near)) >= 6
        far = coder.active(obs + [1.01 * width[0], 0]) if obs[0] < 0 else coder.active(obs - [1.01 * width[0], 0])
        assert not set(idx) & set(far)
    assert coder.active(space.low - 5).tolist() == coder.active(space.low).tolist()      # clipped
    assert coder.active(space.high + 5).tolist() == coder.active(space.high).tolist()


def test_tile_coder_offsets_are_spread_evenly():
    # Sliding across one tile width along either axis, the active set changes one tiling at a
    # time, at 8 evenly spaced points: the offsets (1, 3, 5, …)/n are a permutation of 0, 1/8, …, 7/8.
    coder = TileCoder([0, 0], [8, 8], tiles_per_dim=8, tilings=8)
    for axis in range(2):
        xs = 2.0 + np.arange(1, 801) / 800
        previous, changes = coder.active([2.0, 2.0]), []
        for x in xs:
            point = [x, 2.0] if axis == 0 else [2.0, x]
            now = coder.active(point)
            if (now != previous).any():
                assert (now != previous).sum() == 1
                changes.append(x - 2.0)
            previous = now
        np.testing.assert_allclose(np.sort(changes), np.arange(1, 9) / 8, atol=1e-9)


def test_radial_basis_features():
    rbf = RadialBasis([0, 0], [2, 4], centers_per_dim=3, width=0.25, bias=True)
    assert rbf.n_features == 10
    phi = rbf([1, 2])                                                  # the middle centre (0.5, 0.5)
    assert phi.shape == (10,) and phi[4] == pytest.approx(1.0) and phi[-1] == 1.0
    assert phi[1] == pytest.approx(np.exp(-0.5 ** 2 / (2 * 0.25 ** 2)))   # one step of 0.5 away
    assert rbf([-9, 99]).argmax() == 2                                 # clipped to the corner (0, 1)
    assert RadialBasis(0, 1, centers_per_dim=4).n_features == 4


@pytest.mark.parametrize("make, message", [
    (lambda: TileCoder([0, 0], [1, 1], tilings=0), r"TileCoder.tilings = 0 is out of range: it must be an integer >= 1"),
    (lambda: TileCoder([0, 0], [1, 1], tiles_per_dim=2.5), r"TileCoder.tiles_per_dim = 2.5 is out of range"),
    (lambda: TileCoder([0, 1], [1, 1]), r"TileCoder: low = \[0.0, 1.0\] and high = \[1.0, 1.0\] must be finite"),
    (lambda: TileCoder([0, -np.inf], [1, np.inf]), r"must be finite, with low < high"),
    (lambda: TileCoder([0, 0], [1, 1, 1]), r"TileCoder: low and high must be 1-D and of one shape"),
    (lambda: RadialBasis(0, 1, width=0), r"RadialBasis.width = 0 is out of range: it must be in \(0, inf\)"),
    (lambda: RadialBasis(0, 1, centers_per_dim=0), r"RadialBasis.centers_per_dim = 0 is out of range"),
    (lambda: OneHot(0), r"OneHot.n_states = 0 is out of range"),
])
def test_feature_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_prediction_arguments_are_checked():
    env = gym.make("rlcourse/Corridor-v0")
    pi = evaluation.uniform_policy(6, 2)
    with pytest.raises(ValueError, match=r"alpha = 0 is out of range: it must be in \(0, inf\)"):
        semi_gradient_td0(env, pi, OneHot(6), 0.9, 10, alpha=0)
    with pytest.raises(ValueError, match=r"gamma = 1.5 is out of range"):
        gradient_mc(env, pi, OneHot(6), 1.5, 10)
    with pytest.raises(ValueError, match=r"pi has shape \(6, 3\)"):
        gradient_mc(env, np.full((6, 3), 1 / 3), OneHot(6), 0.9, 10)


# --- linear Q-learning: config, spaces, seeds, learning, save/load, CLI --------------------

@pytest.mark.parametrize("field, value, message", [
    ("alpha", 0.0, r"LinearQConfig.alpha = 0.0 is out of range: it must be in \(0, 1\]"),
    ("gamma", 1.5, r"LinearQConfig.gamma = 1.5 is out of range: it must be in \[0, 1\]"),
    ("epsilon_start", -0.1, r"LinearQConfig.epsilon_start = -0.1 is out of range: it must be in \[0, 1\]"),
    ("exploration_fraction", 2, r"LinearQConfig.exploration_fraction = 2 is out of range"),
    ("tilings", 0, r"LinearQConfig.tilings = 0 is out of range: it must be in \[1, inf\)"),
    ("tiles_per_dim", 2.5, r"LinearQConfig.tiles_per_dim = 2.5 must be an integer"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        LinearQConfig(**{field: value})


@pytest.mark.parametrize("env_id, config, message", [
    ("Pendulum-v1", LinearQConfig(), r"linear-q needs a Discrete action space, but Pendulum-v1 has Box"),
    ("CartPole-v1", LinearQConfig(), r"linear-q tiles a bounded Box, but CartPole-v1 has Box.* infinite bounds"),
    ("Blackjack-v1", LinearQConfig(), r"linear-q needs a Discrete or a flat Box observation space, "
                                      r"but Blackjack-v1 has Tuple"),
    ("Acrobot-v1", LinearQConfig(), r"needs 4,251,528 features .*lower tiles_per_dim"),
])
def test_unsupported_spaces_are_named(env_id, config, message):
    with pytest.raises(UnsupportedSpaceError, match=message):
        linear.train(env_id, config, steps=10)


def test_same_seed_same_log_bit_for_bit():
    a, b, c = (linear.train(steps=3000, seed=s) for s in (7, 7, 8))
    pd.testing.assert_frame_equal(a.log, b.log, check_exact=True)
    assert np.array_equal(a.policy.W, b.policy.W)
    assert not np.array_equal(a.policy.W, c.policy.W)
    assert list(a.log.columns) == ["episode", "env_steps", "return", "length", "epsilon", "mean_abs_td_error"]
    assert a.status == "finished" and a.steps == 3000 and a.algo == "linear-q"


def test_linear_q_learning_solves_mountain_car():
    # Sutton & Barto's Example 10.1 setting. After 50,000 steps (about a second) the greedy
    # policies of seeds 0, 1, 2 score −117, −109, −116 on these 10 episodes; a policy that
    # never reached the goal would score −200.
    result = linear.train("MountainCar-v0", steps=50_000, seed=0)
    summary = rlcourse.evaluate(result, episodes=10, seed=100)
    assert summary["mean_return"] > -150, summary
    assert result.log["return"].tail(20).mean() > -170


def test_ctrl_c_returns_what_was_learned():
    interrupted = linear.train("test/FaultyCorridor-v0", steps=5000,
                               env_kwargs={"at": 900, "fault": "interrupt"})
    assert interrupted.status == "interrupted" and interrupted.steps == 899
    assert interrupted.policy.W.any()


def test_non_finite_td_error_stops_and_keeps_the_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError, match=r"non-finite TD error at env step 2500.*checkpoint.pkl"):
        linear.train("test/FaultyCorridor-v0", steps=3000, out=tmp_path, checkpoint_every=1000,
                     env_kwargs={"at": 2500, "fault": "nan"})
    assert 2000 <= load_checkpoint(tmp_path)["env_steps"] < 2500     # the end of the episode after 2000 steps


def test_save_and_load_round_trip(tmp_path):
    result = linear.train(steps=5000, seed=2)
    result.save(tmp_path)
    for name in ("config.json", "progress.csv", "learning_curve.png", "linear_q.npy", "features.json"):
        assert (tmp_path / name).is_file()
    loaded = rlcourse.load(tmp_path)
    assert isinstance(loaded.policy, LinearQPolicy) and isinstance(loaded.policy.features, TileCoder)
    assert loaded.config == result.config and loaded.algo == "linear-q"
    space = gym.make("MountainCar-v0").observation_space
    space.seed(3)
    observations = [space.sample() for _ in range(300)]
    assert len({result.policy.act(obs) for obs in observations}) > 1
    assert [loaded.policy.act(obs) for obs in observations] == [result.policy.act(obs) for obs in observations]
    np.testing.assert_array_equal(loaded.policy.W, result.policy.W)


def test_cli_train_then_evaluate(tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["train", "linear-q", "--env", "MountainCar-v0", "--steps", "3000", "--out", str(out),
                 "--quiet", "--set", "tilings=4"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["tilings"] == 4
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and -200 <= summary["mean_return"] < 0
    assert main(["train", "linear-q", "--env", "CartPole-v1", "--steps", "10", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "linear-q tiles a bounded Box" in capsys.readouterr().err
