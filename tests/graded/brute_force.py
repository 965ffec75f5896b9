"""Brute-force definitions the graded tests compare against (lessons 3, 4, 5 and 6).

Loops straight from the definitions, one environment column at a time, cut into episodes
at the done flags, with the powers of γ written out. Arrays are time-major [T, N]. A
terminated step has no future; a truncated one (the time limit) and the last step of the
batch are bootstrapped from ``next_values``.

Lesson 3 has the online λ-return algorithm written from its definition (every horizon
redone from the start), which true online TD(λ) equals exactly with linear features.

Lesson 6 adds PPO's clipped surrogate one sample at a time, the KL between categorical
distributions from their probabilities, and the Fisher matrix of a policy built one state and
one action at a time.
"""

import math

import numpy as np
import torch


def online_lambda_return(w0, xs, rewards, terminated, alpha, gamma, lam):
    """The online λ-return algorithm of van Seijen et al. (2016), by its definition: for every
    horizon h redo t = 0 … h−1 from w0 with the truncated λ-returns G^{λ|h}_t, whose n-step
    returns bootstrap with w_{t+n−1} (the final weights of horizon t+n−1). Returns w_1 … w_T.

    ``xs`` holds x_0 … x_T (x_T: the state after the last step; 0 when it is terminal)."""
    last = len(rewards)  # T
    xs = [np.asarray(x, float) for x in xs]
    if terminated:
        xs[last] = np.zeros_like(xs[last])
    finals = [np.array(w0, float)]  # w_0, w_1, …: w_h = w^h_h

    def n_step(t, n):
        G = sum(gamma ** (k - 1) * rewards[t + k - 1] for k in range(1, n + 1))
        return G + gamma**n * finals[t + n - 1] @ xs[t + n]

    for h in range(1, last + 1):
        w = np.array(w0, float)
        for t in range(h):
            G = (1 - lam) * sum(lam ** (n - 1) * n_step(t, n) for n in range(1, h - t)) + lam ** (h - t - 1) * n_step(
                t, h - t
            )
            w = w + alpha * (G - w @ xs[t]) * xs[t]
        finals.append(w)
    return finals[1:]


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


# --------------------------------------------------------------------------- lesson 6


def brute_clipped_surrogate(ratios, psi, eps: float, mask=None) -> float:
    """L^CLIP = −(1/|kept|) Σ min(r Ψ, clip(r, 1 − ε, 1 + ε) Ψ), one sample at a time."""
    total, kept = 0.0, 0
    for i in range(len(ratios)):
        if mask is not None and not bool(mask[i]):
            continue
        r, weight = float(ratios[i]), float(psi[i])
        r_clipped = min(max(r, 1.0 - eps), 1.0 + eps)
        total += min(r * weight, r_clipped * weight)
        kept += 1
    return -total / kept


def brute_categorical_kl(p, q) -> float:
    """Mean over the rows (states) of KL(p ‖ q) = Σ_a p(a) ln(p(a) / q(a)), from probabilities."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    total = 0.0
    for s in range(len(p)):
        total += sum(p[s, a] * math.log(p[s, a] / q[s, a]) for a in range(p.shape[1]) if p[s, a] > 0)
    return total / len(p)


def flat_gradient(y: torch.Tensor, params: list) -> torch.Tensor:
    """∇θ of one scalar, over the parameters flattened in their order, as float64."""
    grads = torch.autograd.grad(y, params, retain_graph=True, allow_unused=True)
    return torch.cat([torch.zeros(p.numel(), dtype=torch.float64) if g is None else g.reshape(-1).double()
                      for g, p in zip(grads, params)])


def brute_fisher_matrix(policy, obs: torch.Tensor) -> torch.Tensor:
    """F = (1/S) Σ_s Σ_a π(a|s) ∇θ log π(a|s) ∇θ log π(a|s)ᵀ for a categorical policy.

    One state and one action at a time, each score by its own backward pass; θ is the flat
    vector of the policy's parameters (those that require a gradient), in their order.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    fisher = torch.zeros(n, n, dtype=torch.float64)
    for s in range(len(obs)):
        log_probs = torch.log_softmax(policy.distribution(obs[s:s + 1]).logits[0], -1)
        for a in range(len(log_probs)):
            score = flat_gradient(log_probs[a], params)
            fisher += math.exp(log_probs[a].item()) * torch.outer(score, score)
    return fisher / len(obs)
