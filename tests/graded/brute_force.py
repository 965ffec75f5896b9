"""Brute-force definitions the graded tests compare against (lessons 4 and 5).

Loops straight from the definitions, one environment column at a time, cut into episodes
at the done flags, with the powers of γ written out. Arrays are time-major [T, N]. A
terminated step has no future; a truncated one (the time limit) and the last step of the
batch are bootstrapped from ``next_values``.
"""

import numpy as np
import torch


def random_batch(seed: int, T: int = 12, N: int = 3, consistent: bool = False) -> dict:
    """A random batch with terminated and truncated steps (sometimes both on one step).

    ``consistent``: inside an episode next_values[t] = values[t + 1], as when one critic
    gives both on a real rollout.
    """
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(T, N, generator=g) < 0.15
    truncated = torch.rand(T, N, generator=g) < 0.1
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    next_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    if consistent:
        for t in range(T - 1):
            for i in range(N):
                if not (terminated[t, i] or truncated[t, i]):
                    next_values[t, i] = values[t + 1, i]
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64) + 0.3
    return dict(rewards=rewards, values=values, next_values=next_values, terminated=terminated, truncated=truncated)


def last_step(b: dict, t: int, i: int) -> int:
    """The last step of the episode that step t of column i belongs to, inside the batch."""
    T = len(b["rewards"])
    for e in range(t, T):
        if b["terminated"][e, i] or b["truncated"][e, i]:
            return e
    return T - 1


def brute_reward_to_go(b: dict, gamma: float, critic: bool) -> np.ndarray:
    """G_t = Σ_{k=t}^{e} γ^(k−t) r_k (+ γ^(e−t+1) V(s_{e+1}) with a critic, unless step e terminated)."""
    T, N = b["rewards"].shape
    G = np.zeros((T, N))
    for i in range(N):
        for t in range(0, T):
            e = last_step(b, t, i)
            G[t, i] = sum(gamma ** (k - t) * float(b["rewards"][k, i]) for k in range(t, e + 1))
            if critic and not b["terminated"][e, i]:
                G[t, i] += gamma ** (e - t + 1) * float(b["next_values"][e, i])
    return G


def brute_delta(b: dict, gamma: float) -> np.ndarray:
    """δ_t = r_t + γ V(s_{t+1}) − V(s_t), without the V(s_{t+1}) at a terminal step."""
    T, N = b["rewards"].shape
    delta = np.zeros((T, N))
    for t in range(0, T):
        for i in range(N):
            future = 0.0 if b["terminated"][t, i] else float(b["next_values"][t, i])
            delta[t, i] = float(b["rewards"][t, i]) + gamma * future - float(b["values"][t, i])
    return delta


def brute_gae(b: dict, gamma: float, lam: float) -> np.ndarray:
    """Â_t = Σ_{l=0}^{e−t} (γλ)^l δ_{t+l}, the sum stopping at the episode's last step e."""
    delta = brute_delta(b, gamma)
    T, N = delta.shape
    A = np.zeros((T, N))
    for i in range(N):
        for t in range(0, T):
            e = last_step(b, t, i)
            A[t, i] = sum((gamma * lam) ** (k - t) * delta[k, i] for k in range(t, e + 1))
    return A


def brute_n_step(b: dict, gamma: float, n: int) -> np.ndarray:
    """Σ_{k<m} γ^k r_{t+k} + γ^m V(s_{t+m}) − V(s_t), m ≤ n stopping at the episode's or batch's end."""
    T, N = b["rewards"].shape
    A = np.zeros((T, N))
    for i in range(N):
        for t in range(0, T):
            last = min(last_step(b, t, i), t + n - 1)
            m = last - t + 1
            total = sum(gamma ** k * float(b["rewards"][t + k, i]) for k in range(m))
            if not b["terminated"][last, i]:
                total += gamma ** m * float(b["next_values"][last, i])
            A[t, i] = total - float(b["values"][t, i])
    return A
