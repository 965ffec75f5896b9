"""Lesson 4, the variance lesson: every Ψ_t is unbiased and the variance falls.

Measured on small_mdp() at default_theta() (seed 0, 100-trajectory reference batch for the
fitted baselines), trace of the covariance of the single-trajectory estimator, exact by
enumeration of all 3888 trajectories:

    total return R(τ)        70.65   (1.000)
    reward-to-go G_t         31.75   (0.449)
    G_t − b (constant)        7.94   (0.112)
    G_t − b_t                 5.31   (0.075)
    G_t − V(s_t)              4.49   (0.064)
    TD residual δ_t           2.40   (0.034)
    Q(s_t, a_t)              29.47   (0.417)

and sampled from 20000 trajectories: 71.18, 31.77, 7.97, 5.28, 4.53, 2.39, 29.25.
"""

import numpy as np
import pytest
import torch

from rlcourse.pg import psi as psi_fns
from rlcourse.pg import variance as v

MDP = v.small_mdp()
THETA = v.default_theta()


@pytest.fixture(scope="module")
def exact():
    return v.exact_gradient(MDP, THETA)


@pytest.fixture(scope="module")
def reference():
    return v.sample_trajectories(MDP, THETA, 100, np.random.default_rng(0))


# --------------------------------------------------------------------------- the MDP
@pytest.mark.parametrize("change, word", [
    ({"P": np.full((3, 2, 3), 0.5)}, "P"),
    ({"R": np.zeros((3, 2))}, "R"),
    ({"d0": np.array([0.5, 0.5, 0.5])}, "d0"),
    ({"H": 0}, "H"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": 1.5}, "gamma"),
])
def test_mdp_rejects_bad_values(change, word):
    fields = {"P": MDP.P, "R": MDP.R, "d0": MDP.d0, "H": MDP.H, "gamma": MDP.gamma, **change}
    with pytest.raises(ValueError, match=word):
        v.MDP(**fields)


def test_enumeration_is_a_probability_distribution():
    traj = v.enumerate_trajectories(MDP, THETA)
    assert traj.count == 3 * (2 * 3) ** 4
    assert traj.states.shape == (5, traj.count) and traj.actions.shape == traj.rewards.shape == (4, traj.count)
    assert traj.prob.sum() == pytest.approx(1.0, abs=1e-12)
    assert (traj.prob > 0).all()
    # no trajectory twice
    codes = {tuple(traj.states[:, i]) + tuple(traj.actions[:, i]) for i in range(traj.count)}
    assert len(codes) == traj.count


def test_sampler_matches_the_enumerated_probabilities():
    """Pearson χ² of trajectory counts: mean K−1, sd √(2(K−1)) for a correct sampler."""
    traj = v.enumerate_trajectories(MDP, THETA)
    m = 100_000
    sample = v.sample_trajectories(MDP, THETA, m, np.random.default_rng(1))

    def code(t):
        c = t.states[0].copy()
        for k in range(MDP.H):
            c = (c * 2 + t.actions[k]) * 3 + t.states[k + 1]
        return c

    counts = np.bincount(code(sample), minlength=traj.count)[code(traj)]
    expected = m * traj.prob
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = traj.count - 1
    assert abs(chi2 - dof) < 6 * np.sqrt(2 * dof), chi2
    np.testing.assert_array_equal(sample.rewards, MDP.R[sample.states[:-1], sample.actions, sample.states[1:]])


# --------------------------------------------------------------------------- the exact gradient
def finite_difference(theta, eps=1e-5):
    grad = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = eps
        grad[idx] = (v.expected_return(MDP, theta + e) - v.expected_return(MDP, theta - e)) / (2 * eps)
    return grad


@pytest.mark.parametrize("theta", [THETA, np.random.default_rng(3).normal(size=(3, 2)), np.zeros((3, 2))])
def test_exact_gradient_matches_finite_differences(theta):
    np.testing.assert_allclose(v.exact_gradient(MDP, theta), finite_difference(theta), atol=1e-6, rtol=0)


def test_scores_are_the_softmax_log_derivative():
    traj = v.sample_trajectories(MDP, THETA, 5, np.random.default_rng(0))
    got = v.scores(MDP, THETA, traj)
    for t in range(MDP.H):
        for n in range(5):
            theta = torch.tensor(THETA, requires_grad=True)
            s, a = traj.states[t, n], traj.actions[t, n]
            torch.log_softmax(theta[s], dim=0)[a].backward()
            np.testing.assert_allclose(got[t, n], theta.grad.numpy(), atol=1e-12)


def test_exact_values_match_enumeration():
    V, Q = v.exact_values(MDP, THETA)
    assert V[0] @ MDP.d0 == pytest.approx(v.expected_return(MDP, THETA), rel=1e-12)
    assert (V[-1] == 0).all()
    traj = v.enumerate_trajectories(MDP, THETA)
    discounts = MDP.gamma ** np.arange(MDP.H)
    for t in range(MDP.H):
        G_t = (discounts[:MDP.H - t, None] * traj.rewards[t:]).sum(axis=0)
        for s in range(3):
            at_s = traj.states[t] == s
            assert V[t, s] == pytest.approx((traj.prob[at_s] @ G_t[at_s]) / traj.prob[at_s].sum(), rel=1e-10)
            for a in range(2):
                here = at_s & (traj.actions[t] == a)
                assert Q[t, s, a] == pytest.approx((traj.prob[here] @ G_t[here]) / traj.prob[here].sum(), rel=1e-10)


# --------------------------------------------------------------------------- Ψ comes from psi.py
def test_fitted_baselines_use_the_reference_batch_only(reference):
    """b = the reference batch's mean reward-to-go; b_t its mean at time t; the batch the
    baseline weighs never enters it."""
    traj = v.sample_trajectories(MDP, THETA, 50, np.random.default_rng(9))
    ref_G = v.psi_weights(MDP, THETA, reference, "reward-to-go").numpy() / MDP.gamma ** np.arange(4)[:, None]
    G = v.psi_weights(MDP, THETA, traj, "reward-to-go").numpy()
    discount = MDP.gamma ** np.arange(4)[:, None]
    const = v.psi_weights(MDP, THETA, traj, "constant-baseline", reference).numpy()
    np.testing.assert_allclose(const, G - discount * ref_G.mean(), atol=1e-12)
    timed = v.psi_weights(MDP, THETA, traj, "time-baseline", reference).numpy()
    np.testing.assert_allclose(timed, G - discount * ref_G.mean(axis=1, keepdims=True), atol=1e-12)
    with pytest.raises(ValueError, match="reference"):
        v.psi_weights(MDP, THETA, traj, "time-baseline")
    with pytest.raises(ValueError, match="psi must be one of"):
        v.psi_weights(MDP, THETA, traj, "advantage")


def test_reward_to_go_weights_are_discounted_sums():
    traj = v.sample_trajectories(MDP, THETA, 20, np.random.default_rng(4))
    got = v.psi_weights(MDP, THETA, traj, "reward-to-go").numpy()
    g = MDP.gamma
    for n in range(20):
        r = traj.rewards[:, n]
        for t in range(4):
            assert got[t, n] == pytest.approx(g ** t * sum(g ** (k - t) * r[k] for k in range(t, 4)), rel=1e-12)
    total = v.psi_weights(MDP, THETA, traj, "total-return").numpy()
    np.testing.assert_allclose(total, np.broadcast_to(v.discounted_returns(MDP, traj), (4, 20)), rtol=1e-12)


# --------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("psi", list(v.PSI))
def test_every_estimator_is_exactly_unbiased(psi, exact, reference):
    """Summed over every trajectory with its probability, each Ψ gives ∇J. (td_residual is
    off by ~4e-9: psi.td_residual rounds γ to float32, see test_psi.py.)"""
    mean, variance = v.exact_moments(MDP, THETA, psi, reference)
    np.testing.assert_allclose(mean, exact, atol=1e-7, rtol=0)
    assert variance > 0


@pytest.mark.parametrize("psi", list(v.PSI))
def test_every_estimator_is_unbiased_in_samples(psi, exact):
    """5000 estimates from batches of m = 4 trajectories: each component of their mean is
    within 4 standard errors of the exact gradient."""
    rng = np.random.default_rng(2024)
    g = v.gradient_estimates(MDP, THETA, psi, 4, rng, batches=5000)
    assert g.shape == (5000, 3, 2)
    stderr = g.std(axis=0, ddof=1) / np.sqrt(len(g))
    assert (stderr > 0).all()
    assert (np.abs(g.mean(axis=0) - exact) <= 4 * stderr).all(), (g.mean(axis=0), exact, stderr)


def test_gradient_estimates_are_seeded():
    a = v.gradient_estimates(MDP, THETA, "time-baseline", 3, np.random.default_rng(7), batches=10)
    b = v.gradient_estimates(MDP, THETA, "time-baseline", 3, np.random.default_rng(7), batches=10)
    c = v.gradient_estimates(MDP, THETA, "time-baseline", 3, np.random.default_rng(8), batches=10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_baseline_fitted_on_its_own_batch_is_biased(exact):
    """Why the reference batch: psi.constant_baseline applied to the batch it weighs puts
    each sample's own return into its baseline, and the estimate shrinks towards zero
    (measured: mean ≈ 0.71·∇J with m = 2 trajectories per batch, 0.86·∇J with m = 4)."""
    m, batches = 2, 5000
    traj = v.sample_trajectories(MDP, THETA, m * batches, np.random.default_rng(0))
    discount = (MDP.gamma ** np.arange(4))[:, None]
    G = v.psi_weights(MDP, THETA, traj, "reward-to-go").numpy() / discount   # [4, m·batches]
    per_batch = G.reshape(4, batches, m)
    psi = (per_batch - per_batch.mean(axis=(0, 2), keepdims=True)).reshape(4, -1)
    for k in range(3):  # the same Ψ as psi.constant_baseline on each batch alone
        cols = slice(k * m, (k + 1) * m)
        np.testing.assert_allclose(psi[:, cols], psi_fns.constant_baseline(torch.as_tensor(G[:, cols])).numpy())
    g = np.einsum("tn,tnsa->nsa", psi * discount, v.scores(MDP, THETA, traj)).reshape(batches, m, 3, 2).mean(1)
    stderr = g.std(axis=0, ddof=1) / np.sqrt(batches)
    z = (g.mean(axis=0) - exact) / stderr
    assert np.abs(z).max() > 10, z
    ratio = g.mean(axis=0) / exact
    assert 0.6 < ratio.mean() < 0.8, ratio


# --------------------------------------------------------------------------- variance
def test_variance_falls_with_every_step_of_the_lesson(reference):
    exact_var = {psi: v.exact_moments(MDP, THETA, psi, reference)[1] for psi in v.PSI}
    # 70.65 > 31.75 > 7.94 > 5.31 > 4.49  (and the TD residual 2.40)
    assert (exact_var["total-return"] > exact_var["reward-to-go"] > exact_var["constant-baseline"]
            > exact_var["time-baseline"] > exact_var["value-baseline"] > exact_var["td-residual"])
    assert exact_var["reward-to-go"] < 0.5 * exact_var["total-return"]
    assert exact_var["constant-baseline"] < 0.3 * exact_var["reward-to-go"]


def test_variance_table():
    table = v.variance_table(samples=20_000, seed=0)
    assert list(table.columns) == ["estimator", "psi", "bias_norm", "stderr_norm", "total_variance",
                                   "relative_variance", "exact_variance"]
    assert list(table["psi"]) == list(v.PSI)
    assert table["relative_variance"].iloc[0] == 1.0
    var = table.set_index("psi")["total_variance"]
    # sampled: 71.18 > 31.77 > 7.97 > 5.28 > 4.53 (2.39 for δ_t, 29.25 for Q)
    assert var["total-return"] > var["reward-to-go"] > var["constant-baseline"]
    baselines = var[["constant-baseline", "time-baseline", "value-baseline"]]
    assert var["value-baseline"] <= 1.05 * baselines.min()
    # the sampled trace agrees with the exact one, and every bias is noise-sized
    np.testing.assert_allclose(table["total_variance"], table["exact_variance"], rtol=0.1)
    assert (table["bias_norm"] < 4 * table["stderr_norm"]).all()
