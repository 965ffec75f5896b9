"""Lesson 2: TD(λ) with eligibility traces, checked against the offline λ-return (forward view),
against TD(0) at λ = 0 and against Monte-Carlo at λ = 1, each by brute force."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.pg import psi
from rlcourse.tabular.evaluation import exact_evaluation, td0_evaluation, uniform_policy
from rlcourse.tabular.td_lambda import (
    Episode,
    lambda_return_evaluation,
    lambda_returns,
    play_episode,
    td_lambda_episode,
    td_lambda_evaluation,
    update_trace,
)


def uniform_for(env):
    return uniform_policy(env.observation_space.n, env.action_space.n)


def envs():
    return {
        "frozenlake": gym.make("FrozenLake-v1"),
        "corridor": gym.make("rlcourse/Corridor-v0", max_episode_steps=1000),
        "corridor-cut": gym.make("rlcourse/Corridor-v0", max_episode_steps=7),  # many episodes truncated
    }


def n_step_lambda_return(rewards, next_values, gamma, lam, t):
    """G^λ_t by its definition: Σ_n (1 − λ) λ^{n−1} G_{t:t+n}, the last (full) return weighted λ^{T−t−1}."""
    T = len(rewards)

    def n_step(n):
        G = sum(gamma**k * rewards[t + k] for k in range(n))
        return G + gamma**n * next_values[t + n - 1]

    weights = [(1 - lam) * lam ** (n - 1) for n in range(1, T - t)] + [lam ** (T - t - 1)]
    return sum(w * n_step(n) for w, n in zip(weights, range(1, T - t + 1)))


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("cut", [False, True])
def test_lambda_returns_are_the_weighted_average_of_n_step_returns(lam, cut):
    rng = np.random.default_rng(0)
    rewards, next_values = rng.normal(size=7), rng.normal(size=7)
    if not cut:
        next_values[-1] = 0.0
    G = lambda_returns(rewards.tolist(), next_values, 0.9, lam)
    expected = [n_step_lambda_return(rewards, next_values, 0.9, lam, t) for t in range(7)]
    np.testing.assert_allclose(G, expected, rtol=0, atol=1e-12)


def test_lambda_returns_at_zero_and_one():
    rewards, next_values = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 0.0])
    np.testing.assert_allclose(lambda_returns(rewards, next_values, 0.5, 0.0), rewards + 0.5 * next_values)
    np.testing.assert_allclose(lambda_returns(rewards, next_values, 0.5, 1.0), [1 + 0.5 * 2 + 0.25 * 3, 2 + 1.5, 3])
    assert lambda_returns([], np.zeros(0), 0.5, 0.5).shape == (0,)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95])
def test_lambda_returns_minus_v_are_gae(lam):
    # the λ-return is GAE(γ, λ) plus V(s_t): the forward view of lesson 5's advantage
    rng = np.random.default_rng(1)
    rewards, values, next_values = rng.normal(size=(3, 6))
    next_values[:-1] = values[1:]
    terminated = torch.zeros(6, 1, dtype=torch.bool)
    A = psi.gae(*(torch.as_tensor(x).unsqueeze(1) for x in (rewards, values, next_values)), terminated,
                terminated.clone(), 0.9, lam)
    np.testing.assert_allclose(lambda_returns(rewards, next_values, 0.9, lam) - values, A[:, 0].numpy(), atol=1e-12)


def test_update_trace_accumulates_or_replaces():
    e = np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(update_trace(e.copy(), 1, 0.5, 0.8, "accumulating"), [0.4, 1.2, 0.0])
    np.testing.assert_allclose(update_trace(e.copy(), 1, 0.5, 0.8, "replacing"), [0.4, 1.0, 0.0])
    out = e.copy()
    assert update_trace(out, 2, 1.0, 0.0) is out and out.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("name", ["frozenlake", "corridor", "corridor-cut"])
@pytest.mark.parametrize("gamma, lam", [(0.9, 0.0), (0.9, 0.5), (1.0, 0.8), (0.95, 1.0)])
def test_offline_accumulating_traces_equal_the_offline_lambda_return(name, gamma, lam):
    env = envs()[name]
    backward = td_lambda_evaluation(env, uniform_for(env), gamma, lam, 60, alpha=0.1, offline=True, seed=3)
    forward = lambda_return_evaluation(env, uniform_for(env), gamma, lam, 60, alpha=0.1, seed=3)
    assert np.abs(forward.V).max() > 0
    np.testing.assert_allclose(backward.history, forward.history, rtol=0, atol=1e-12)


@pytest.mark.parametrize("trace", ["accumulating", "replacing"])
@pytest.mark.parametrize("name", ["frozenlake", "corridor-cut"])
def test_online_td_lambda_at_zero_is_td0(trace, name):
    env = envs()[name]
    mine = td_lambda_evaluation(env, uniform_for(env), 0.9, 0.0, 80, alpha=0.2, trace=trace, seed=5)
    theirs = td0_evaluation(env, uniform_for(env), 0.9, 80, alpha=0.2, seed=5)
    np.testing.assert_allclose(mine.history, theirs.history, rtol=0, atol=1e-12)


def brute_force_offline_mc(episodes, n_states, alpha, gamma, first_visit):
    """Offline constant-α MC: V(s) += α Σ_{counted visits t} (G_t − V(s)), V fixed through each episode."""
    V, history = np.zeros(n_states), []
    for states, rewards in episodes:
        G, returns = 0.0, []
        for r in reversed(rewards):
            G = r + gamma * G
            returns.append(G)
        returns.reverse()
        delta = np.zeros(n_states)
        for t, s in enumerate(states):
            if not first_visit or s not in states[:t]:
                delta[s] += alpha * (returns[t] - V[s])
        V = V + delta
        history.append(V.copy())
    return np.array(history)


def played(env, n, seed):
    """The episodes td_lambda_evaluation sees from ``seed`` (terminated ones: the corridor has 1000 steps)."""
    rng, cdf = np.random.default_rng(seed), np.cumsum(uniform_for(env), axis=1)
    episodes = [play_episode(env, cdf, rng, seed if k == 0 else None) for k in range(n)]
    assert all(e.terminated for e in episodes)
    return [(e.states[:-1], e.rewards) for e in episodes]


@pytest.mark.parametrize("trace, first_visit, gamma", [("accumulating", False, 0.9), ("accumulating", False, 1.0),
                                                        ("replacing", True, 1.0)])
def test_offline_td_one_is_monte_carlo(trace, first_visit, gamma):
    # λ = 1: accumulating traces are every-visit MC; replacing ones, at γ = 1, first-visit MC
    env = envs()["corridor"]
    mine = td_lambda_evaluation(env, uniform_for(env), gamma, 1.0, 30, alpha=0.05, trace=trace, offline=True, seed=2)
    expected = brute_force_offline_mc(played(env, 30, 2), 6, 0.05, gamma, first_visit)
    np.testing.assert_allclose(mine.history, expected, rtol=0, atol=1e-12)


def test_replacing_and_accumulating_differ_only_on_revisits():
    straight = Episode([0, 1, 2, 3], [0.0, 0.0, 1.0], True)
    revisit = Episode([0, 1, 0, 1, 2, 3], [0.0, 0.0, 0.0, 0.0, 1.0], True)
    for episode, same in ((straight, True), (revisit, False)):
        a, r = np.full(4, 0.3), np.full(4, 0.3)
        td_lambda_episode(a, episode, 0.5, 0.9, 0.8, "accumulating", False)
        td_lambda_episode(r, episode, 0.5, 0.9, 0.8, "replacing", False)
        assert np.allclose(a, r) == same


def test_td_lambda_episode_by_hand():
    # two steps 0 → 1 → 2 (terminal), rewards 0 and 1, γ = 1, λ = 0.5, α = 0.5, V = 0, online:
    # step 0: δ = 0, e = (1, 0, 0);  step 1: δ = 1, e = (0.5, 1, 0), V += 0.5 · 1 · e
    V = np.zeros(3)
    td_lambda_episode(V, Episode([0, 1, 2], [0.0, 1.0], True), 0.5, 1.0, 0.5, "accumulating", False)
    np.testing.assert_allclose(V, [0.25, 0.5, 0.0])


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
def test_td_lambda_converges_on_frozenlake(lam):
    env = gym.make("FrozenLake-v1")
    exact = exact_evaluation(env.unwrapped.P, uniform_for(env), 0.9)
    V = td_lambda_evaluation(env, uniform_for(env), 0.9, lam, 3_000, alpha=0.02, seed=0).V
    # states near the goal are rare (the largest error); the start state is visited every episode
    assert np.abs(V - exact).max() < 0.1 and abs(V[0] - exact[0]) < 0.005


def test_arguments_are_checked():
    env = envs()["corridor"]
    pi = uniform_for(env)
    for kwargs, name in ((dict(lam=1.5), "lam"), (dict(lam=0.5, alpha=0.0), "alpha"),
                         (dict(lam=0.5, trace="dutch"), "trace"), (dict(lam=0.5, episodes=0), "episodes")):
        kwargs = {"episodes": 3, **kwargs}
        with pytest.raises(ValueError, match=name):
            td_lambda_evaluation(env, pi, 0.9, **kwargs)
