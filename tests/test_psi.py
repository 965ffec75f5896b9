"""Lesson 4: every Ψ_t of rlcourse.pg.psi against a brute-force loop from its definition.

The brute forces walk one environment column at a time, cut it into episodes at the done
flags and sum the γ^k explicitly, so they share no code (and no recursion) with psi.py.
Random batches have independent terminated / truncated flags (sometimes both on one step,
as gymnasium's TimeLimit can give), starts consistent with them, and episodes cut by both
ends of the batch.
"""

import math

import pytest
import torch

from rlcourse.pg import psi

T, N = 20, 4
SEEDS = [0, 1, 2, 3, 4]
GAMMAS = [0.9, 0.99, 1.0]


# --------------------------------------------------------------------------- random data
def make_batch(seed: int, consistent: bool = False, T: int = T, N: int = N) -> dict:
    """A random [T, N] batch; ``consistent`` makes next_values[t] = values[t+1] inside an
    episode, as it is when both come from one critic on a real rollout."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(T, N, generator=g) < 0.12
    truncated = torch.rand(T, N, generator=g) < 0.08
    done = terminated | truncated
    starts = torch.empty(T, N, dtype=torch.bool)
    starts[0] = torch.rand(N, generator=g) < 0.5
    starts[1:] = done[:-1]
    timesteps = torch.empty(T, N, dtype=torch.long)
    timesteps[0] = torch.where(starts[0], 0, torch.randint(1, 6, (N,), generator=g))
    for t in range(1, T):
        timesteps[t] = torch.where(starts[t], 0, timesteps[t - 1] + 1)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    next_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    if consistent:
        inside = ~done[:-1]
        next_values[:-1] = torch.where(inside, values[1:], next_values[:-1])
    return dict(rewards=torch.randn(T, N, generator=g, dtype=torch.float64) + 0.5,
                terminated=terminated, truncated=truncated, starts=starts, timesteps=timesteps,
                values=values, next_values=next_values)


def episodes(b: dict, i: int) -> list[tuple[int, int]]:
    """Column i cut into (first, last) step pairs; the last segment may end at T-1 undone."""
    done = (b["terminated"][:, i] | b["truncated"][:, i]).tolist()
    out, first = [], 0
    for t in range(len(done)):
        if done[t] or t == len(done) - 1:
            out.append((first, t))
            first = t + 1
    return out


def batches(consistent: bool = False):
    return [make_batch(s, consistent) for s in SEEDS]


# --------------------------------------------------------------------------- brute forces
def brute_reward_to_go(b, gamma, critic: bool):
    r, term, nv = b["rewards"], b["terminated"], b["next_values"]
    G = torch.zeros_like(r)
    for i in range(r.shape[1]):
        for first, last in episodes(b, i):
            # the episode's tail value: 0 after a terminal step, V(s_{last+1}) after a cut
            tail = 0.0 if (not critic or term[last, i]) else float(nv[last, i])
            for t in range(first, last + 1):
                G[t, i] = sum(gamma ** (k - t) * float(r[k, i]) for k in range(t, last + 1)) \
                    + gamma ** (last + 1 - t) * tail
    return G


def brute_total_return(b, gamma):
    r = b["rewards"]
    R = torch.zeros_like(r)
    for i in range(r.shape[1]):
        for first, last in episodes(b, i):
            ret = sum(gamma ** (k - first) * float(r[k, i]) for k in range(first, last + 1))
            R[first:last + 1, i] = ret
    return R


def brute_complete(b):
    done = b["terminated"] | b["truncated"]
    mask = torch.zeros_like(done)
    for i in range(done.shape[1]):
        for first, last in episodes(b, i):
            mask[first:last + 1, i] = bool(b["starts"][first, i]) and bool(done[last, i])
    return mask


def brute_td(b, gamma):
    r, v, nv, term = b["rewards"], b["values"], b["next_values"], b["terminated"]
    d = torch.zeros_like(r)
    for t in range(r.shape[0]):
        for i in range(r.shape[1]):
            boot = 0.0 if term[t, i] else float(nv[t, i])
            d[t, i] = float(r[t, i]) + gamma * boot - float(v[t, i])
    return d


def brute_gae(b, gamma, lam):
    delta = brute_td(b, gamma)
    A = torch.zeros_like(delta)
    for i in range(delta.shape[1]):
        for first, last in episodes(b, i):
            for t in range(first, last + 1):
                A[t, i] = sum((gamma * lam) ** (k - t) * float(delta[k, i]) for k in range(t, last + 1))
    return A


def brute_n_step(b, gamma, n):
    r, v, nv, term, trunc = (b[k] for k in ("rewards", "values", "next_values", "terminated", "truncated"))
    T_, N_ = r.shape
    A = torch.zeros_like(r)
    for i in range(N_):
        for t in range(T_):
            total, m, boot = 0.0, 0, 0.0
            for k in range(n):
                j = t + k
                total += gamma ** k * float(r[j, i])
                m = k + 1
                if term[j, i]:
                    boot = 0.0
                    break
                if trunc[j, i] or k == n - 1 or j == T_ - 1:
                    boot = float(nv[j, i])
                    break
            A[t, i] = total + gamma ** m * boot - float(v[t, i])
    return A


def brute_time_baseline(G, timesteps, mask):
    groups: dict[int, list[float]] = {}
    for t in range(G.shape[0]):
        for i in range(G.shape[1]):
            if mask is None or mask[t, i]:
                groups.setdefault(int(timesteps[t, i]), []).append(float(G[t, i]))
    out = torch.zeros_like(G)
    for t in range(G.shape[0]):
        for i in range(G.shape[1]):
            k = int(timesteps[t, i])
            b_k = sum(groups[k]) / len(groups[k]) if k in groups else 0.0  # no sample: b = 0
            out[t, i] = float(G[t, i]) - b_k
    return out


def close(a, b, tol=1e-9):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# δ-based results keep float64 precision (see test_td_and_gae_keep_float64_precision).
DELTA_TOL = 1e-9


# --------------------------------------------------------------------------- the data itself
def test_random_batches_cover_every_case():
    """The random batches contain what the brute forces must handle."""
    bs = batches()
    term = torch.stack([b["terminated"] for b in bs])
    trunc = torch.stack([b["truncated"] for b in bs])
    starts0 = torch.stack([b["starts"][0] for b in bs])
    last_done = torch.stack([b["terminated"][-1] | b["truncated"][-1] for b in bs])
    assert (term & ~trunc).any() and (trunc & ~term).any() and (term & trunc).any()
    assert starts0.any() and (~starts0).any() and (~last_done).any()


# --------------------------------------------------------------------------- complete_episodes
@pytest.mark.parametrize("seed", SEEDS)
def test_complete_episodes_matches_brute_force(seed):
    b = make_batch(seed)
    close(psi.complete_episodes(b["starts"], b["terminated"], b["truncated"]), brute_complete(b))


def test_complete_episodes_by_hand():
    #            t: 0  1  2  3  4  5  6
    starts = torch.tensor([0, 0, 1, 0, 0, 1, 0], dtype=torch.bool)[:, None]
    term = torch.tensor([0, 1, 0, 0, 0, 0, 0], dtype=torch.bool)[:, None]
    trunc = torch.tensor([0, 0, 0, 0, 1, 0, 0], dtype=torch.bool)[:, None]
    # the first episode began before the batch, the last is cut by its end
    expected = torch.tensor([0, 0, 1, 1, 1, 0, 0], dtype=torch.bool)[:, None]
    assert torch.equal(psi.complete_episodes(starts, term, trunc), expected)


# --------------------------------------------------------------------------- reward_to_go
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("critic", [False, True])
def test_reward_to_go_matches_brute_force(seed, gamma, critic):
    b = make_batch(seed)
    got = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], gamma,
                           b["next_values"] if critic else None)
    close(got, brute_reward_to_go(b, gamma, critic))


def test_reward_to_go_by_hand():
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    term = torch.tensor([[False], [True], [False], [False]])
    trunc = torch.zeros_like(term)
    # episode 1: G_1 = 2, G_0 = 1 + 0.9·2; episode 2 is cut at the batch end: G_3 = 4, G_2 = 3 + 0.9·4
    expected = torch.tensor([[2.8], [2.0], [6.6], [4.0]])
    close(psi.reward_to_go(rewards, term, trunc, 0.9), expected, 1e-6)
    # with a critic the cut at the batch end is bootstrapped: G_3 = 4 + 0.9·10
    nv = torch.tensor([[7.0], [7.0], [7.0], [10.0]])
    expected = torch.tensor([[2.8], [2.0], [3.0 + 0.9 * 13.0], [13.0]])
    close(psi.reward_to_go(rewards, term, trunc, 0.9, nv), expected, 1e-6)


# --------------------------------------------------------------------------- total_return
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_total_return_matches_brute_force(seed, gamma):
    """Every step carries its episode's discounted return from the episode's first step in
    the batch (the true R(τ) where the episode is complete)."""
    b = make_batch(seed)
    got = psi.total_return(b["rewards"], b["terminated"], b["truncated"], b["starts"], gamma)
    close(got, brute_total_return(b, gamma))


def test_total_return_is_constant_on_complete_episodes():
    b = make_batch(1)
    R = psi.total_return(b["rewards"], b["terminated"], b["truncated"], b["starts"], 0.9)
    mask = psi.complete_episodes(b["starts"], b["terminated"], b["truncated"])
    assert mask.any()
    for i in range(N):
        for first, last in episodes(b, i):
            if mask[first, i]:
                seg = R[first:last + 1, i]
                assert torch.all(seg == seg[0])
                ret = sum(0.9 ** k * float(b["rewards"][first + k, i]) for k in range(last - first + 1))
                assert math.isclose(float(seg[0]), ret, rel_tol=1e-9)


# --------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("seed", SEEDS)
def test_constant_baseline_subtracts_the_batch_mean(seed):
    b = make_batch(seed)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.99)
    flat = G.flatten().tolist()
    close(psi.constant_baseline(G), G - sum(flat) / len(flat))
    mask = psi.complete_episodes(b["starts"], b["terminated"], b["truncated"])
    kept = [float(G[t, i]) for t in range(T) for i in range(N) if mask[t, i]]
    close(psi.constant_baseline(G, mask), G - sum(kept) / len(kept))


def test_running_baseline_by_hand():
    G1 = torch.tensor([[1.0, 3.0]])
    psi1, rho = psi.running_baseline(G1, None, beta=0.9)
    close(psi1, torch.tensor([[-1.0, 1.0]]))  # the first batch starts ρ̂ at its own mean
    assert rho == pytest.approx(2.0)
    G2 = torch.tensor([[5.0, 7.0]])
    psi2, rho2 = psi.running_baseline(G2, rho, beta=0.9)
    # Ψ uses the previous ρ̂ = 2, not the updated 2.4 nor this batch's mean 6
    close(psi2, torch.tensor([[3.0, 5.0]]))
    assert rho2 == pytest.approx(0.9 * 2.0 + 0.1 * 6.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_running_baseline_does_not_look_at_the_batch_it_weighs(seed):
    """The unbiasedness rule: with a previous ρ̂, Ψ = G − ρ̂ whatever this batch holds;
    the batch only enters the update ρ̂ ← βρ̂ + (1−β)·mean(G) over the mask."""
    b = make_batch(seed)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.99)
    mask = psi.complete_episodes(b["starts"], b["terminated"], b["truncated"])
    for other in (G, 100.0 * G + 7.0):
        out, _ = psi.running_baseline(other, 1.25, beta=0.8, mask=mask)
        close(out, other - 1.25)
    _, rho = psi.running_baseline(G, 1.25, beta=0.8, mask=mask)
    kept = [float(G[t, i]) for t in range(T) for i in range(N) if mask[t, i]]
    assert rho == pytest.approx(0.8 * 1.25 + 0.2 * sum(kept) / len(kept), rel=1e-9)
    # an update with β = 0 forgets the past; β = 1 never moves
    assert psi.running_baseline(G, 1.25, beta=1.0)[1] == pytest.approx(1.25)
    assert psi.running_baseline(G, 1.25, beta=0.0)[1] == pytest.approx(float(G.mean()), rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("masked", [False, True])
def test_time_baseline_matches_dict_of_lists(seed, masked):
    b = make_batch(seed)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.99)
    mask = psi.complete_episodes(b["starts"], b["terminated"], b["truncated"]) if masked else None
    close(psi.time_baseline(G, b["timesteps"], mask), brute_time_baseline(G, b["timesteps"], mask))


def test_time_baseline_by_hand():
    G = torch.tensor([[1.0, 3.0], [10.0, 5.0], [4.0, 20.0]])
    ts = torch.tensor([[0, 0], [1, 0], [2, 1]])
    # b_0 = mean(1, 3, 5) = 3, b_1 = mean(10, 20) = 15, b_2 = 4
    expected = torch.tensor([[-2.0, 0.0], [-5.0, 2.0], [0.0, 5.0]])
    close(psi.time_baseline(G, ts), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_value_baseline(seed):
    b = make_batch(seed)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.99)
    close(psi.value_baseline(G, b["values"]), G - b["values"])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("masked", [False, True])
def test_min_variance_baseline_matches_formula(seed, masked):
    b = make_batch(seed)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.99)
    w = torch.rand(T, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    mask = psi.complete_episodes(b["starts"], b["terminated"], b["truncated"]) if masked else None
    num = den = 0.0
    for t in range(T):
        for i in range(N):
            if mask is None or mask[t, i]:
                num += float(w[t, i]) * float(G[t, i])
                den += float(w[t, i])
    close(psi.min_variance_baseline(G, w, mask), G - num / den)


def test_min_variance_baseline_by_hand():
    G = torch.tensor([[1.0], [2.0], [3.0]])
    w = torch.tensor([[1.0], [1.0], [2.0]])
    # b* = (1·1 + 1·2 + 2·3) / (1 + 1 + 2) = 2.25; equal weights give the plain mean
    close(psi.min_variance_baseline(G, w), G - 2.25)
    close(psi.min_variance_baseline(G, torch.ones_like(G)), G - 2.0)


# --------------------------------------------------------------------------- TD, n-step, GAE
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_td_residual_matches_brute_force(seed, gamma):
    b = make_batch(seed)
    got = psi.td_residual(b["rewards"], b["values"], b["next_values"], b["terminated"], gamma)
    close(got, brute_td(b, gamma), DELTA_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.9, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_brute_force(seed, gamma, lam):
    b = make_batch(seed)
    got = psi.gae(b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], gamma, lam)
    close(got, brute_gae(b, gamma, lam), DELTA_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.9, 1.0])
@pytest.mark.parametrize("n", [1, 2, 3, 5, T, T + 7])
def test_n_step_advantage_matches_brute_force(seed, gamma, n):
    b = make_batch(seed)
    got = psi.n_step_advantage(b["rewards"], b["values"], b["next_values"], b["terminated"],
                               b["truncated"], gamma, n)
    close(got, brute_n_step(b, gamma, n))


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_lambda_zero_is_td_residual(seed):
    b = make_batch(seed)
    args = (b["rewards"], b["values"], b["next_values"], b["terminated"])
    close(psi.gae(*args, b["truncated"], 0.97, 0.0), psi.td_residual(*args, 0.97))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_gae_lambda_one_is_bootstrapped_return_minus_value(seed, gamma):
    """Needs next_values[t] = values[t+1] inside an episode, for the sum to telescope."""
    b = make_batch(seed, consistent=True)
    got = psi.gae(b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], gamma, 1.0)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], gamma, b["next_values"])
    close(got, G - b["values"], DELTA_TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_with_n_one_is_td_residual(seed):
    b = make_batch(seed)
    got = psi.n_step_advantage(b["rewards"], b["values"], b["next_values"], b["terminated"],
                               b["truncated"], 0.95, 1)
    close(got, psi.td_residual(b["rewards"], b["values"], b["next_values"], b["terminated"], 0.95), DELTA_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [T, 10 * T])
def test_n_step_with_n_at_least_T_is_gae_lambda_one(seed, n):
    b = make_batch(seed, consistent=True)
    args = (b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], 0.95)
    close(psi.n_step_advantage(*args, n), psi.gae(*args, 1.0), DELTA_TOL)
    # and, with no consistency needed, the bootstrapped reward-to-go minus V
    b = make_batch(seed)
    args = (b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], 0.95)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.95, b["next_values"])
    close(psi.n_step_advantage(*args, n), G - b["values"])


def test_td_and_gae_keep_float64_precision():
    r = torch.zeros(2, 1, dtype=torch.float64)
    v = torch.zeros(2, 1, dtype=torch.float64)
    nv = torch.ones(2, 1, dtype=torch.float64)
    no = torch.zeros(2, 1, dtype=torch.bool)
    assert psi.td_residual(r, v, nv, no, 0.9).dtype == torch.float64
    assert psi.td_residual(r, v, nv, no, 0.9)[0, 0].item() == 0.9        # not float32's 0.8999999761581421
    assert psi.gae(r, v, nv, no, no, 1.0, 0.9)[0, 0].item() == 1.0 + 0.9


# --------------------------------------------------------------------------- truncation vs termination
def boundary_case():
    """Two columns, same rewards and values; column 0 is truncated at t = 1, column 1 is
    terminated at t = 1, and next_values[1] = 10 (V of the real final observation) in both."""
    rewards = torch.ones(3, 2, dtype=torch.float64)
    values = torch.zeros(3, 2, dtype=torch.float64)
    next_values = torch.tensor([[0.0, 0.0], [10.0, 10.0], [4.0, 4.0]], dtype=torch.float64)
    terminated = torch.tensor([[False, False], [False, True], [False, False]])
    truncated = torch.tensor([[False, False], [True, False], [False, False]])
    return rewards, values, next_values, terminated, truncated


def test_truncation_bootstraps_and_termination_does_not():
    r, v, nv, term, trunc = boundary_case()
    g = 0.5
    delta = psi.td_residual(r, v, nv, term, g)
    assert delta[1].tolist() == [1 + g * 10, 1.0]
    G = psi.reward_to_go(r, term, trunc, g, nv)
    # truncated: G_1 = 1 + 0.5·10 = 6, G_0 = 1 + 0.5·6; terminated: G_1 = 1, G_0 = 1.5;
    # t = 2 starts a new episode cut by the batch end: 1 + 0.5·4 in both
    assert G.tolist() == [[4.0, 1.5], [6.0, 1.0], [3.0, 3.0]]
    for lam in (0.0, 0.7, 1.0):
        A = psi.gae(r, v, nv, term, trunc, g, lam)
        assert A[1].tolist() == [6.0, 1.0]
        assert A[2].tolist() == [3.0, 3.0]  # nothing leaks back across the boundary
        # t = 0: δ_0 = 1 (next_values[0] = 0), plus γλ·A_1
        assert A[0].tolist() == pytest.approx([1 + g * lam * 6.0, 1 + g * lam * 1.0])
    for n in (1, 2, 5):
        A = psi.n_step_advantage(r, v, nv, term, trunc, g, n)
        assert A[1].tolist() == [6.0, 1.0]
    A = psi.n_step_advantage(r, v, nv, term, trunc, g, 2)
    assert A[0].tolist() == [1 + g * 1 + g * g * 10, 1 + g * 1]
    # without a critic the cut counts as the end of the episode
    assert psi.reward_to_go(r, term, trunc, g).tolist() == [[1.5, 1.5], [1.0, 1.0], [1.0, 1.0]]


def test_next_values_at_a_terminal_step_never_enter():
    """Whatever V the critic gives the final observation of a terminal step, Ψ ignores it;
    at a truncated step it enters with weight γ (δ, GAE, n-step, reward-to-go)."""
    r, v, nv, term, trunc = boundary_case()
    nv2 = nv.clone()
    nv2[1] = torch.tensor([-50.0, -50.0], dtype=torch.float64)
    fns = {
        "td": lambda nv_: psi.td_residual(r, v, nv_, term, 0.5),
        "gae": lambda nv_: psi.gae(r, v, nv_, term, trunc, 0.5, 0.9),
        "nstep": lambda nv_: psi.n_step_advantage(r, v, nv_, term, trunc, 0.5, 3),
        "rtg": lambda nv_: psi.reward_to_go(r, term, trunc, 0.5, nv_),
    }
    for name, fn in fns.items():
        a, b = fn(nv), fn(nv2)
        assert torch.equal(a[:, 1], b[:, 1]), name         # terminated column: unchanged
        assert b[1, 0] - a[1, 0] == pytest.approx(0.5 * -60.0), name  # truncated: γ·ΔV


def test_terminated_and_truncated_on_one_step_is_terminal():
    """gymnasium's TimeLimit can flag both; the episode really ended, so no bootstrap."""
    r = torch.ones(2, 1, dtype=torch.float64)
    v = torch.zeros(2, 1, dtype=torch.float64)
    nv = torch.full((2, 1), 10.0, dtype=torch.float64)
    term = torch.tensor([[True], [False]])
    trunc = torch.tensor([[True], [False]])
    assert psi.td_residual(r, v, nv, term, 0.5)[0, 0] == 1.0
    assert psi.gae(r, v, nv, term, trunc, 0.5, 1.0)[0, 0] == 1.0
    assert psi.n_step_advantage(r, v, nv, term, trunc, 0.5, 2)[0, 0] == 1.0
    assert psi.reward_to_go(r, term, trunc, 0.5, nv)[0, 0] == 1.0


def test_batch_end_bootstraps_from_next_values():
    """An episode still running at t = T-1 is bootstrapped from next_values[T-1]."""
    r = torch.ones(2, 1, dtype=torch.float64)
    v = torch.zeros(2, 1, dtype=torch.float64)
    nv = torch.tensor([[0.0], [8.0]], dtype=torch.float64)
    no = torch.zeros(2, 1, dtype=torch.bool)
    assert psi.gae(r, v, nv, no, no, 0.5, 1.0)[:, 0].tolist() == [1 + 0.5 * (1 + 0.5 * 8), 1 + 0.5 * 8]
    assert psi.n_step_advantage(r, v, nv, no, no, 0.5, 1)[:, 0].tolist() == [1.0, 5.0]
    assert psi.reward_to_go(r, no, no, 0.5, nv)[:, 0].tolist() == [3.5, 5.0]


# --------------------------------------------------------------------------- Q actor-critic
def test_q_actor_critic_gathers_the_taken_action():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(T, N, 3, generator=g)
    actions = torch.randint(0, 3, (T, N), generator=g)
    got = psi.q_actor_critic(q, actions)
    assert got.shape == (T, N)
    for t in range(T):
        for i in range(N):
            assert got[t, i] == q[t, i, actions[t, i]]
    q = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert psi.q_actor_critic(q, torch.tensor([[1, 0]])).tolist() == [[2.0, 3.0]]
    assert psi.q_actor_critic(q, torch.tensor([[1.0, 0.0]])).tolist() == [[2.0, 3.0]]  # float actions


# --------------------------------------------------------------------------- purity
def test_functions_do_not_modify_their_inputs():
    b = make_batch(0)
    saved = {k: v.clone() for k, v in b.items()}
    args = (b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], 0.9)
    psi.gae(*args, 0.9)
    psi.n_step_advantage(*args, 3)
    G = psi.reward_to_go(b["rewards"], b["terminated"], b["truncated"], 0.9, b["next_values"])
    G0 = G.clone()
    psi.total_return(b["rewards"], b["terminated"], b["truncated"], b["starts"], 0.9)
    psi.complete_episodes(b["starts"], b["terminated"], b["truncated"])
    psi.time_baseline(G, b["timesteps"])
    psi.constant_baseline(G)
    psi.running_baseline(G, 0.3)
    psi.min_variance_baseline(G, torch.ones_like(G))
    assert torch.equal(G, G0)
    for k, v in b.items():
        assert torch.equal(v, saved[k]), k


@pytest.mark.parametrize("masked", [False, True])
def test_normalize_advantages_against_loops(masked):
    g = torch.Generator().manual_seed(7)
    adv = torch.randn(6, 3, generator=g, dtype=torch.float64) * 3 + 1
    mask = torch.rand(6, 3, generator=g) < 0.6 if masked else None
    chosen = [float(a) for a, m in zip(adv.flatten(), mask.flatten() if masked else [True] * 18) if m]
    n = len(chosen)
    mean = sum(chosen) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in chosen) / (n - 1))          # unbiased, as torch.std
    rms = math.sqrt(sum(a * a for a in chosen) / n)
    for mode, expected in (("standardize", lambda a: (a - mean) / (std + 1e-8)), ("scale", lambda a: a / (rms + 1e-8))):
        got = psi.normalize_advantages(adv, mode, mask)
        for a, m, v in zip(adv.flatten(), (mask.flatten() if masked else [True] * 18), got.flatten()):
            assert float(v) == pytest.approx(expected(float(a)) if m else 0.0, abs=1e-12), mode
    # standardised: zero mean and unit standard deviation on the mask; scaled: the signs kept
    out = psi.normalize_advantages(adv, "standardize", mask)
    picked = out[mask] if masked else out.flatten()
    assert abs(float(picked.mean())) < 1e-12 and float(picked.std()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(torch.sign(psi.normalize_advantages(adv, "scale")), torch.sign(adv))
    # one sample: its spread is undefined, so it is left as it is
    one = torch.tensor([2.5], dtype=torch.float64)
    assert torch.equal(psi.normalize_advantages(one), one)
    with pytest.raises(ValueError, match="mode = 'whiten' is not allowed"):
        psi.normalize_advantages(adv, "whiten")

