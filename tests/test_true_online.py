"""True online TD(λ) with linear features: exactly the online λ-return algorithm (brute force),
on random features and on lesson 3's tile coding of MountainCar; tabular with one-hot features."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "graded"))  # the graded tests' brute force, shared with them
from brute_force import online_lambda_return  # noqa: E402

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.tabular.evaluation import exact_evaluation, uniform_policy
from rlcourse.value.linear import OneHot, TileCoder
from rlcourse.value.true_online import true_online_td_lambda, true_online_update


def true_online_weights(w0, xs, rewards, terminated, alpha, gamma, lam):
    w, z, v_old, out = np.array(w0, float), np.zeros(len(w0)), 0.0, []
    for t, r in enumerate(rewards):
        x_next = np.zeros(len(w)) if (terminated and t == len(rewards) - 1) else np.asarray(xs[t + 1], float)
        _, v_old = true_online_update(w, z, np.asarray(xs[t], float), x_next, r, v_old, alpha, gamma, lam)
        out.append(w.copy())
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("terminated", [True, False])
def test_true_online_td_lambda_is_the_online_lambda_return_on_random_features(lam, terminated):
    rng = np.random.default_rng(0)
    xs, rewards, w0 = rng.normal(size=(9, 5)), rng.normal(size=8), rng.normal(size=5)
    expected = online_lambda_return(w0, xs, rewards, terminated, 0.05, 0.9, lam)
    np.testing.assert_allclose(true_online_weights(w0, xs, rewards, terminated, 0.05, 0.9, lam), expected,
                               rtol=0, atol=1e-12)


def test_true_online_td_lambda_is_the_online_lambda_return_on_tile_coded_mountain_car():
    # a 40-step episode of MountainCar, pushing in the direction of the velocity, tile coded as in lesson 3
    env = gym.make("MountainCar-v0")
    coder = TileCoder(env.observation_space.low, env.observation_space.high, tiles_per_dim=8, tilings=8)
    obs, _ = env.reset(seed=1)
    xs, rewards = [coder(obs)], []
    for _ in range(40):
        obs, reward, *_ = env.step(2 if obs[1] >= 0 else 0)
        xs.append(coder(obs))
        rewards.append(float(reward))
    w0 = np.random.default_rng(2).normal(size=coder.n_features) * 0.1
    alpha = 0.1 / coder.tilings
    expected = online_lambda_return(w0, xs, rewards, False, alpha, 1.0, 0.9)
    np.testing.assert_allclose(true_online_weights(w0, xs, rewards, False, alpha, 1.0, 0.9), expected,
                               rtol=0, atol=1e-10)


def test_update_by_hand():
    # x = (1, 0), x' = (0, 1), w = (1, 2), z = (0.5, 0.5), V_old = 0.5; α = 0.5, γ = 1, λ = 0.5, r = 1:
    # V = 1, V' = 2, δ = 1 + 2 − 1 = 2; zᵀx = 0.5: z = 0.5 (0.5, 0.5) + (1 − 0.5·0.5·0.5)(1, 0) = (1.125, 0.25)
    # w += 0.5 (2 + 0.5) z − 0.5 · 0.5 x = (1 + 1.40625 − 0.25, 2 + 0.3125)
    w, z = np.array([1.0, 2.0]), np.array([0.5, 0.5])
    delta, v_old = true_online_update(w, z, np.array([1.0, 0.0]), np.array([0.0, 1.0]), 1.0, 0.5, 0.5, 1.0, 0.5)
    assert (delta, v_old) == (2.0, 2.0)
    np.testing.assert_allclose(z, [1.125, 0.25])
    np.testing.assert_allclose(w, [2.15625, 2.3125])


def test_learns_the_corridor_values_with_one_hot_features():
    env = gym.make("rlcourse/Corridor-v0", max_episode_steps=1000)
    pi = uniform_policy(6, 2)
    exact = exact_evaluation(env.unwrapped.P, pi, 0.9)
    # 4 seeds, 800 episodes, α = 0.01: the largest error in the worst seed was 0.04
    for seed in range(4):
        estimate = true_online_td_lambda(env, pi, OneHot(6), 0.9, 0.5, 800, alpha=0.01, seed=seed)
        assert estimate.history.shape == (800, 6)
        assert np.abs(estimate.w - exact).max() < 0.06


def test_arguments_are_checked():
    env = gym.make("rlcourse/Corridor-v0")
    for kwargs, name in ((dict(lam=1.5), "lam"), (dict(lam=0.5, alpha=-1.0), "alpha"), (dict(lam=0.5, episodes=0),
                                                                                          "episodes")):
        kwargs = {"episodes": 2, **kwargs}
        with pytest.raises(ValueError, match=name):
            true_online_td_lambda(env, uniform_policy(6, 2), OneHot(6), 0.9, **kwargs)
