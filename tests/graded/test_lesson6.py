"""Graded tests, lesson 6: PPO's surrogates, its loss and adaptive penalty; TRPO's natural step.

The expected values are worked out by hand in the comments, come from loops written from
the definitions (``brute_force.py``: the clipped surrogate one sample at a time, the KL
from probabilities, the Fisher matrix one state and one action at a time), from losses
assembled here sample by sample, or from dense linear algebra (``torch.linalg.solve``)
on matrices small enough to write down. None comes from calling rlcourse's own
solutions: the only rlcourse objects used besides the functions under test are inputs
(the policy and value classes, ``Minibatch``, the configs) and ``flatten_parameters``,
which ties a policy to the flat vector θ that ``policy_update`` moves.

Everything runs in float64 on networks of a few dozen parameters, so the comparisons are
tight and the tests take a second.
"""

import copy
import math

import numpy as np
import pytest
import torch

from brute_force import brute_categorical_kl, brute_clipped_surrogate, brute_fisher_matrix, flat_gradient
from rlcourse.assignments.sandbox import student_module
from rlcourse.networks import flatten_parameters
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy, ValueFunction
from rlcourse.pg.ppo import Minibatch

objective = student_module("rlcourse.pg.objective")
ppo = student_module("rlcourse.pg.ppo")
trpo = student_module("rlcourse.pg.trpo")

F64 = torch.float64


def f64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def assert_close(got, expected, tol: float = 1e-9):
    """``got`` (a tensor) has ``expected``'s shape and values, within ``tol``."""
    assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
    expected = np.asarray(expected.detach() if isinstance(expected, torch.Tensor) else expected, dtype=float)
    assert tuple(got.shape) == expected.shape, f"shape {tuple(got.shape)}, expected {expected.shape}"
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=tol, atol=tol)


def randomised(module: torch.nn.Module, seed: int, scale: float = 0.7) -> torch.nn.Module:
    """``module`` in float64 with every parameter drawn from N(0, scale²): no symmetric start."""
    g = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=F64))
    return module


# --------------------------------------------------------------------------- clipped_surrogate_loss


@pytest.mark.points(2)
def test_clipped_surrogate_by_hand():
    # ε = 0.2, so r is clipped to [0.8, 1.2]. Sample by sample, min(r Ψ, clip(r) Ψ):
    #   r = 0.5, Ψ =  2: min( 1.0,  1.6) =  1.0   below the range, Ψ > 0: charged in full
    #   r = 1.0, Ψ =  1: min( 1.0,  1.0) =  1.0
    #   r = 1.5, Ψ =  2: min( 3.0,  2.4) =  2.4   above the range, Ψ > 0: clipped
    #   r = 0.5, Ψ = −2: min(−1.0, −1.6) = −1.6   below the range, Ψ < 0: clipped
    #   r = 1.5, Ψ = −2: min(−3.0, −2.4) = −3.0   above the range, Ψ < 0: charged in full
    #   r = 1.1, Ψ = −1: min(−1.1, −1.1) = −1.1   inside the range
    # L = −(1 + 1 + 2.4 − 1.6 − 3 − 1.1) / 6 = 1.3 / 6
    ratios = f64([0.5, 1.0, 1.5, 0.5, 1.5, 1.1])
    psi = f64([2, 1, 2, -2, -2, -1])
    logp_old = f64([-1.0, -0.5, -2.0, -1.2, -0.3, -0.7])
    logp = (logp_old + ratios.log()).requires_grad_()
    loss = objective.clipped_surrogate_loss(logp, logp_old, psi, 0.2)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "the loss is one number: a scalar tensor"
    assert loss.item() == pytest.approx(1.3 / 6, abs=1e-12)
    # ∂r/∂log π = r, so ∂L/∂log π = −r Ψ / 6 where the unclipped term is the minimum, 0 where
    # the clipped one is: (−1/6, −1/6, 0, 0, 3/6, 1.1/6)
    loss.backward()
    assert_close(logp.grad, [-1 / 6, -1 / 6, 0, 0, 0.5, 1.1 / 6])
    # samples 2 and 4 masked out: L = −(1 + 1 − 1.6 − 1.1) / 4 = 0.175, and they get no gradient
    logp.grad = None
    mask = torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)
    loss = objective.clipped_surrogate_loss(logp, logp_old, psi, 0.2, mask)
    assert loss.item() == pytest.approx(0.175, abs=1e-12)
    loss.backward()
    assert_close(logp.grad, [-0.25, -0.25, 0, 0, 0, 0.275])


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_surrogate_matches_a_per_sample_loop_and_is_flat_where_clipped(seed):
    g = torch.Generator().manual_seed(seed)
    B, eps = 40, 0.15
    ratios = 0.4 + 1.2 * torch.rand(B, generator=g, dtype=F64)       # r in [0.4, 1.6]
    psi = torch.randn(B, generator=g, dtype=F64).requires_grad_()
    mask = torch.rand(B, generator=g) < 0.7
    logp_old = (-2 * torch.rand(B, generator=g, dtype=F64)).requires_grad_()
    logp = (logp_old.detach() + ratios.log()).requires_grad_()
    for m in (None, mask):
        logp.grad, logp_old.grad, psi.grad = None, None, None
        loss = objective.clipped_surrogate_loss(logp, logp_old, psi, eps, m)
        assert loss.item() == pytest.approx(brute_clipped_surrogate(ratios, psi.detach(), eps, m), abs=1e-12)
        loss.backward()
        kept = [True] * B if m is None else m.tolist()
        expected = []
        for i in range(B):
            r, weight = float(ratios[i]), float(psi.detach()[i])
            # the clipped term is the minimum where r left the range in the direction Ψ favours
            flat = (weight > 0 and r > 1 + eps) or (weight < 0 and r < 1 - eps)
            expected.append(0.0 if flat or not kept[i] else -r * weight / sum(kept))
        assert_close(logp.grad, expected)
        assert logp_old.grad is None or not logp_old.grad.any(), "π_old is fixed: no gradient flows into it"
        assert psi.grad is None or not psi.grad.any(), "Ψ is a weight, not something to optimise"


# --------------------------------------------------------------------------- ppo_loss


def ppo_setup(seed: int, B: int = 8, continuous: bool = False):
    """A policy, a critic, an older policy's distributions and a minibatch collected with it.

    The old policy is the new one with its parameters moved, so the ratios spread on both
    sides of 1 ± ε; V_old(s) is the critic's prediction moved by noise, so some moves of
    the critic are inside ±0.2 and some outside.
    """
    policy = randomised(GaussianPolicy(3, 2, (5,)) if continuous else CategoricalPolicy(3, 3, (5,)), seed, 0.5)
    critic = randomised(ValueFunction(3, (5,)), seed + 1, 0.5)
    old = copy.deepcopy(policy)
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    obs = torch.randn(B, 3, generator=g, dtype=F64)
    actions = torch.randn(B, 2, generator=g, dtype=F64) if continuous else torch.randint(0, 3, (B,), generator=g)
    with torch.no_grad():
        old_dist = old.distribution(obs)
        logp_old, _, _ = per_sample(old_dist, old_dist, actions, continuous)
        values_old = critic(obs) + 0.3 * torch.randn(B, generator=g, dtype=F64)
    advantages = torch.randn(B, generator=g, dtype=F64) + 0.5
    returns = advantages + values_old + 0.2 * torch.randn(B, generator=g, dtype=F64)
    return policy, critic, old_dist, Minibatch(obs, actions, logp_old, advantages, returns, values_old)


def per_sample(dist, old_dist, actions, continuous: bool):
    """log π(a|s), H(π(·|s)) and KL(π_old(·|s) ‖ π(·|s)) of each sample, from the parameters by hand."""
    if not continuous:
        log_probs = torch.log_softmax(dist.logits, -1)
        log_probs_old = torch.log_softmax(old_dist.logits, -1)
        logp = torch.stack([log_probs[i, a] for i, a in enumerate(actions.tolist())])
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        kl = (log_probs_old.exp() * (log_probs_old - log_probs)).sum(-1)
        return logp, entropy, kl
    # a diagonal Gaussian: every term is a sum over the action dimensions
    mu, sigma = dist.loc, dist.scale.expand_as(dist.loc)
    mu_old, sigma_old = old_dist.loc, old_dist.scale.expand_as(old_dist.loc)
    logp = (-(actions - mu) ** 2 / (2 * sigma ** 2) - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + sigma.log()).sum(-1)
    kl = ((sigma / sigma_old).log() + (sigma_old ** 2 + (mu_old - mu) ** 2) / (2 * sigma ** 2) - 0.5).sum(-1)
    return logp, entropy, kl


def hand_ppo_loss(policy, critic, old_dist, mb: Minibatch, surrogate: str, clip_range: float, kl_coef: float,
                  vf_coef: float, ent_coef: float, normalize: bool = True, clip_range_vf=None,
                  continuous: bool = False):
    """(L, L^surrogate, L_V, mean H), L = L^surrogate + c_V L_V − c_H H, summed sample by sample.

    Differentiable in the policy's and the critic's parameters; Â, y, log π_old and V_old
    are numbers.
    """
    B = len(mb.advantages)
    adv = [float(a) for a in mb.advantages]
    if normalize:   # standardised within the minibatch, with the unbiased standard deviation
        mean = sum(adv) / B
        std = math.sqrt(sum((a - mean) ** 2 for a in adv) / (B - 1))
        adv = [(a - mean) / (std + 1e-8) for a in adv]
    logp, entropy, kl = per_sample(policy.distribution(mb.obs), old_dist, mb.actions, continuous)
    lo, hi = 1 - clip_range, 1 + clip_range
    policy_loss = 0.0
    for i in range(B):
        r = torch.exp(logp[i] - float(mb.logp_old[i]))
        term = r * adv[i]
        if surrogate == "clip":
            r_clip = r if lo <= r.item() <= hi else torch.tensor(lo if r.item() < lo else hi, dtype=F64)
            if (r_clip * adv[i]).item() < term.item():
                term = r_clip * adv[i]
        policy_loss = policy_loss - term / B
    if surrogate in ("fixed-kl", "adaptive-kl"):
        policy_loss = policy_loss + kl_coef * sum(kl[i] for i in range(B)) / B
    predictions = critic(mb.obs)
    value_loss = 0.0
    for i in range(B):
        y, v_old = float(mb.returns[i]), float(mb.values_old[i])
        error = (predictions[i] - y) ** 2
        if clip_range_vf is not None:
            move = predictions[i].item() - v_old
            v_clip = predictions[i] if abs(move) <= clip_range_vf else torch.tensor(
                v_old + math.copysign(clip_range_vf, move), dtype=F64)
            if ((v_clip - y) ** 2).item() > error.item():
                error = (v_clip - y) ** 2
        value_loss = value_loss + error / B
    mean_entropy = sum(entropy[i] for i in range(B)) / B
    return policy_loss + vf_coef * value_loss - ent_coef * mean_entropy, policy_loss, value_loss, mean_entropy


def check_terms(terms, expected, tol: float = 1e-10):
    for name, got, want in zip(("loss", "policy_loss", "value_loss", "entropy"), terms, expected):
        assert isinstance(got, torch.Tensor) and got.ndim == 0, f"{name} should be a scalar tensor"
        assert got.item() == pytest.approx(want.item(), abs=tol), name


SURROGATE_NAMES = ["none", "clip", "fixed-kl", "adaptive-kl"]


@pytest.mark.points(3)
@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
def test_ppo_loss_for_each_surrogate_term_by_term(surrogate):
    policy, critic, old_dist, mb = ppo_setup(0)
    # clip_range and kl_coef, the arguments, are this step's ε and β (annealed, adapted): the
    # config's starting values (0.3 and 3.0 here) are not the ones to use
    config = ppo.PPOConfig(surrogate=surrogate, clip_range=0.3, kl_coef=3.0, vf_coef=0.5, ent_coef=0.02)
    terms = ppo.ppo_loss(policy, critic, mb, config, 0.1, 0.7, old_dist)
    check_terms(terms, hand_ppo_loss(policy, critic, old_dist, mb, surrogate, 0.1, 0.7, 0.5, 0.02))


@pytest.mark.points(2)
@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
def test_ppo_loss_gradient_reaches_actor_and_critic_as_claimed(surrogate):
    policy, critic, old_dist, mb = ppo_setup(1)
    config = ppo.PPOConfig(surrogate=surrogate, vf_coef=0.25, ent_coef=0.05)
    params = list(policy.parameters()) + list(critic.parameters())
    got = torch.autograd.grad(ppo.ppo_loss(policy, critic, mb, config, 0.15, 2.0, old_dist).loss, params,
                              allow_unused=True)
    expected, *_ = hand_ppo_loss(policy, critic, old_dist, mb, surrogate, 0.15, 2.0, 0.25, 0.05)
    for g, e in zip(got, torch.autograd.grad(expected, params)):
        assert g is not None, "a parameter of the actor or the critic gets no gradient"
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


@pytest.mark.points(1)
def test_ppo_loss_clips_the_critic_and_can_leave_advantages_raw():
    policy, critic, old_dist, mb = ppo_setup(2)
    with torch.no_grad():
        moves = (critic(mb.obs) - mb.values_old).abs()
    assert (moves > 0.2).any() and (moves < 0.2).any()     # the batch has both kinds of sample
    config = ppo.PPOConfig(surrogate="clip", clip_range=0.2, vf_coef=0.5, ent_coef=0.0,
                           normalize_advantages=False, clip_range_vf=0.2)
    terms = ppo.ppo_loss(policy, critic, mb, config, 0.2, 1.0, old_dist)
    expected = hand_ppo_loss(policy, critic, old_dist, mb, "clip", 0.2, 1.0, 0.5, 0.0, normalize=False,
                             clip_range_vf=0.2)
    check_terms(terms, expected)
    # the larger of the two squared errors: where the clipped one is larger, the critic gets no gradient from it
    got = torch.autograd.grad(terms.value_loss, list(critic.parameters()))
    for g, e in zip(got, torch.autograd.grad(expected[2], list(critic.parameters()))):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- adapt_kl_coef


@pytest.mark.points(2)
def test_adapt_kl_coef_halves_doubles_or_keeps_beta():
    # d_targ = 3/128, so d_targ / 1.5 = 1/64 = 0.015625 and 1.5 d_targ = 9/256 = 0.03515625, exactly
    target = 3 / 128
    for beta in (2.0, 0.3):
        assert ppo.adapt_kl_coef(beta, 0.001, target) == pytest.approx(beta / 2)      # far below
        assert ppo.adapt_kl_coef(beta, 0.013, target) == pytest.approx(beta / 2)      # below d_targ / 1.5
        assert ppo.adapt_kl_coef(beta, 0.016, target) == pytest.approx(beta)          # inside
        assert ppo.adapt_kl_coef(beta, target, target) == pytest.approx(beta)
        assert ppo.adapt_kl_coef(beta, 0.035, target) == pytest.approx(beta)          # inside
        assert ppo.adapt_kl_coef(beta, 0.04, target) == pytest.approx(2 * beta)       # above 1.5 d_targ
        assert ppo.adapt_kl_coef(beta, 1.0, target) == pytest.approx(2 * beta)        # far above
    # the two boundaries themselves keep β; a hair beyond them moves it
    assert ppo.adapt_kl_coef(2.0, 1 / 64, target) == pytest.approx(2.0)
    assert ppo.adapt_kl_coef(2.0, 9 / 256, target) == pytest.approx(2.0)
    assert ppo.adapt_kl_coef(2.0, math.nextafter(1 / 64, 0.0), target) == pytest.approx(1.0)
    assert ppo.adapt_kl_coef(2.0, math.nextafter(9 / 256, 1.0), target) == pytest.approx(4.0)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_ppo_loss_of_a_gaussian_policy_sums_kl_and_entropy_over_action_dimensions():
    policy, critic, old_dist, mb = ppo_setup(3, continuous=True)
    config = ppo.PPOConfig(surrogate="adaptive-kl", vf_coef=0.5, ent_coef=0.05)
    terms = ppo.ppo_loss(policy, critic, mb, config, 0.2, 1.5, old_dist)
    check_terms(terms, hand_ppo_loss(policy, critic, old_dist, mb, "adaptive-kl", 0.2, 1.5, 0.5, 0.05,
                                     continuous=True))
### END HIDDEN TESTS


# --------------------------------------------------------------------------- conjugate_gradient


def random_spd(n: int, seed: int) -> torch.Tensor:
    """A random symmetric positive-definite n × n matrix, A Aᵀ + ½ I."""
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(n, dtype=F64)


class MatrixProduct:
    """v ↦ Hv for a matrix that the function under test never sees; counts the calls."""

    def __init__(self, H: torch.Tensor):
        self.H, self.calls = H, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.H @ v


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_solves_an_spd_system_in_n_iterations(seed):
    n = 6
    H = random_spd(n, seed)
    g = torch.randn(n, generator=torch.Generator().manual_seed(seed + 10), dtype=F64)
    g_before = g.clone()
    product = MatrixProduct(H)
    x = trpo.conjugate_gradient(product, g, n)
    # exact after n iterations for n unknowns (up to rounding)
    assert_close(x, torch.linalg.solve(H, g), tol=1e-7)
    assert 1 <= product.calls <= n + 1, f"{product.calls} products Hv for {n} iterations"
    assert torch.equal(g, g_before), "g was changed in place"
    # one iteration: the minimum of ½xᵀHx − gᵀx along g, x = (gᵀg / gᵀHg) g
    assert_close(trpo.conjugate_gradient(MatrixProduct(H), g, 1), (g @ g) / (g @ H @ g) * g)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_conjugate_gradient_minimises_over_the_krylov_subspace_and_stops_when_solved():
    # after k iterations, x minimises ½xᵀHx − gᵀx over span{g, Hg, …, H^(k−1) g}
    n = 8
    H = random_spd(n, 5)
    g = torch.randn(n, generator=torch.Generator().manual_seed(6), dtype=F64)
    for k in (2, 3, 5):
        krylov = torch.stack([torch.linalg.matrix_power(H, j) @ g for j in range(k)], dim=1)
        basis, _ = torch.linalg.qr(krylov)
        expected = basis @ torch.linalg.solve(basis.T @ H @ basis, basis.T @ g)
        assert_close(trpo.conjugate_gradient(MatrixProduct(H), g, k), expected, tol=1e-8)
    # H = 2I is solved in one iteration; the residual is then exactly 0, and the later
    # iterations must not divide 0 by 0
    x = trpo.conjugate_gradient(lambda v: 2 * v, g, 5)
    assert torch.isfinite(x).all(), "conjugate gradient went on after the residual vanished"
    assert_close(x, g / 2)
    x = trpo.conjugate_gradient(lambda v: 2 * v, torch.zeros(n, dtype=F64), 5)
    assert torch.isfinite(x).all() and not x.any(), "a zero gradient has a zero solution"
### END HIDDEN TESTS


# --------------------------------------------------------------------------- fisher_vector_product


def tiny_policy(seed: int, continuous: bool = False) -> torch.nn.Module:
    """2 inputs, one hidden layer; 3 actions (27 parameters) or a 2-D Gaussian (19)."""
    return randomised(GaussianPolicy(2, 2, (3,)) if continuous else CategoricalPolicy(2, 3, (4,)), seed)


@pytest.mark.points(3)
def test_fisher_vector_product_is_the_fisher_matrix_times_v():
    policy = tiny_policy(0)
    obs = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        old_dist = policy.distribution(obs)
    fisher = brute_fisher_matrix(policy, obs)
    n = len(fisher)
    product = trpo.fisher_vector_product(policy, obs, old_dist)
    # column by column, F e_i; the one product is called again and again
    columns = torch.stack([product(torch.eye(n, dtype=F64)[i]) for i in range(n)], dim=1)
    assert_close(columns, fisher, tol=1e-9)
    # damping: (F + λI) v
    v = torch.randn(n, generator=torch.Generator().manual_seed(2), dtype=F64)
    damped = trpo.fisher_vector_product(policy, obs, old_dist, damping=0.1)
    assert_close(damped(v), fisher @ v + 0.1 * v, tol=1e-9)
    assert_close(damped(2 * v), 2 * (fisher @ v + 0.1 * v), tol=1e-9)


### BEGIN HIDDEN TESTS
def gaussian_fisher_matrix(policy, obs: torch.Tensor) -> torch.Tensor:
    """F = (1/S) Σ_s Σ_j [∇μ_j ∇μ_jᵀ / σ_j² + 2 ∇log σ_j ∇log σ_jᵀ]: N(μ, σ²)'s Fisher
    information in (μ, log σ) is diag(1/σ², 2), carried to θ by the chain rule."""
    params = [p for p in policy.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    fisher = torch.zeros(n, n, dtype=F64)
    for s in range(len(obs)):
        dist = policy.distribution(obs[s:s + 1])
        sigma = dist.scale.expand_as(dist.loc)
        for j in range(dist.loc.shape[-1]):
            d_mu = flat_gradient(dist.loc[0, j], params)
            d_log_sigma = flat_gradient(sigma[0, j].log(), params)
            fisher += torch.outer(d_mu, d_mu) / sigma[0, j].item() ** 2 + 2 * torch.outer(d_log_sigma, d_log_sigma)
    return fisher / len(obs)


@pytest.mark.points(1)
def test_fisher_vector_product_of_a_gaussian_policy():
    policy = tiny_policy(3, continuous=True)
    obs = torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        old_dist = policy.distribution(obs)
    fisher = gaussian_fisher_matrix(policy, obs)
    product = trpo.fisher_vector_product(policy, obs, old_dist, damping=0.05)
    for seed in range(3):
        v = torch.randn(len(fisher), generator=torch.Generator().manual_seed(seed), dtype=F64)
        assert_close(product(v), fisher @ v + 0.05 * v, tol=1e-9)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- natural_step


@pytest.mark.points(2)
def test_natural_step_lands_on_the_kl_boundary_along_the_natural_gradient():
    n, delta = 5, 0.01
    H = random_spd(n, 4)
    g = torch.randn(n, generator=torch.Generator().manual_seed(5), dtype=F64)
    step = trpo.natural_step(g, MatrixProduct(H), delta, n)
    # the quadratic model of the KL, ½ ΔᵀHΔ, is exactly δ
    assert float(step @ H @ step) == pytest.approx(2 * delta, rel=1e-8)
    # Δ is parallel to x = H⁻¹g and points the same way (gᵀΔ > 0: the surrogate rises)
    x = torch.linalg.solve(H, g)
    scale = float(step @ x / (x @ x))
    assert scale > 0
    assert_close(step, scale * x, tol=1e-8)
    # so Δ = √(2δ / gᵀH⁻¹g) H⁻¹g, and four times δ gives a step twice as long
    assert_close(step, math.sqrt(2 * delta / float(g @ x)) * x, tol=1e-8)
    assert_close(trpo.natural_step(g, MatrixProduct(H), 4 * delta, n), 2 * step, tol=1e-8)
    # the direction is conjugate gradient's after cg_iters iterations: after one, g itself
    assert_close(trpo.natural_step(g, MatrixProduct(H), delta, 1),
                 math.sqrt(2 * delta / float(g @ H @ g)) * g, tol=1e-8)


# --------------------------------------------------------------------------- policy_update


def trpo_setup(seed: int, B: int = 24):
    """A 27-parameter categorical policy tied to its flat θ, and a batch it collected."""
    policy = tiny_policy(seed)
    theta = flatten_parameters(policy)
    g = torch.Generator().manual_seed(seed + 1)
    obs = torch.randn(B, 2, generator=g, dtype=F64)
    with torch.no_grad():
        log_probs = torch.log_softmax(policy.distribution(obs).logits, -1)
    actions = torch.multinomial(log_probs.exp(), 1, generator=g).squeeze(-1)
    logp_old = log_probs[torch.arange(B), actions]
    adv = torch.randn(B, generator=g, dtype=F64) + 0.3
    return policy, theta, log_probs, Minibatch(obs, actions, logp_old, adv, adv + 1.0, torch.ones(B, dtype=F64))


def hand_surrogate(policy, data: Minibatch) -> torch.Tensor:
    """L(θ) = (1/B) Σ π_θ(a|s) / π_old(a|s) · Â, Â standardised over the batch (unbiased std + 1e-8)."""
    adv = data.advantages
    B = len(adv)
    mean = float(adv.sum()) / B
    std = math.sqrt(sum((float(a) - mean) ** 2 for a in adv) / (B - 1))
    log_probs = torch.log_softmax(policy.distribution(data.obs).logits, -1)
    total = 0.0
    for i in range(B):
        a = int(data.actions[i])
        total = total + torch.exp(log_probs[i, a] - float(data.logp_old[i])) * (float(adv[i]) - mean) / (std + 1e-8)
    return total / B


def hand_kl(policy, data: Minibatch, old_log_probs: torch.Tensor) -> float:
    with torch.no_grad():
        new = torch.softmax(policy.distribution(data.obs).logits, -1)
    return brute_categorical_kl(old_log_probs.exp().numpy(), new.numpy())


def expected_natural_step(policy, data: Minibatch, max_kl: float, damping: float) -> torch.Tensor:
    """Δ = √(2δ / xᵀAx) x, x = A⁻¹g, with A = F + λI from the explicit Fisher matrix and g = ∇L."""
    params = [p for p in policy.parameters() if p.requires_grad]
    g = flat_gradient(hand_surrogate(policy, data), params)
    A = brute_fisher_matrix(policy, data.obs) + damping * torch.eye(len(g), dtype=F64)
    x = torch.linalg.solve(A, g)
    return math.sqrt(2 * max_kl / float(x @ A @ x)) * x


def assess(policy, theta, point: torch.Tensor, data: Minibatch, old_log_probs: torch.Tensor) -> tuple:
    """(L, mean KL) with θ set to ``point``."""
    with torch.no_grad():
        theta.copy_(point)
    return hand_surrogate(policy, data).item(), hand_kl(policy, data, old_log_probs)


def assert_moved_by(moved: torch.Tensor, expected: torch.Tensor, tol: float = 1e-3):
    """θ − θ_old is ``expected`` to ``tol`` of its length: conjugate gradient stops once rᵀr is
    below its tolerance, a little before the exact solution the expected step solves for."""
    off = float((moved - expected).norm() / expected.norm())
    assert off < tol, f"θ moved {off:.1e} (relative to the expected step's length) away from the expected step"


# Two batches that need the line search: on the first (δ = 0.01, λ = 0.001) the steps 1, 0.8
# and 0.64 of Δ move the KL above δ; on the second (δ = 5, λ = 0.01) the steps 0.8 … 0.512 of Δ
# stay inside the trust region but lower the surrogate.
LINE_SEARCHES = {"kl-above-delta": (5, 0.01, 1e-3), "surrogate-falls": (2, 5.0, 0.01)}


def config_for(method: str, max_kl: float, damping: float, **changes) -> trpo.TRPOConfig:
    settings = dict(max_kl=max_kl, cg_iters=27, cg_damping=damping, backtrack_coef=0.8, backtrack_iters=10)
    return trpo.TRPOConfig(method=method, **{**settings, **changes})


@pytest.mark.points(3)
@pytest.mark.parametrize("case", LINE_SEARCHES)
def test_trpo_update_stays_in_the_trust_region_and_improves_the_surrogate(case):
    seed, max_kl, damping = LINE_SEARCHES[case]
    policy, theta, old_log_probs, data = trpo_setup(seed)
    theta_old = theta.detach().clone()
    step = expected_natural_step(policy, data, max_kl, damping)
    surrogate_old = hand_surrogate(policy, data).item()
    result = trpo.policy_update(policy, theta, data, config_for("trpo", max_kl, damping))
    theta_new = theta.detach().clone()
    surrogate_new, kl = assess(policy, theta, theta_new, data, old_log_probs)
    assert kl <= max_kl, f"mean KL {kl:.5f} after the update, above δ = {max_kl}"
    assert surrogate_new > surrogate_old, "the surrogate fell"
    # θ moved along the natural step by the first fraction 0.8^j that passed both tests
    j, fraction = result["backtracks"], result["step_fraction"]
    assert fraction == pytest.approx(0.8 ** j)
    assert_moved_by(theta_new - theta_old, fraction * step)
    assert j >= 1, "on this batch the whole step fails: the line search must shorten it"
    for shorter in range(j):
        value, distance = assess(policy, theta, theta_old + 0.8 ** shorter * step, data, old_log_probs)
        assert distance > max_kl or value <= surrogate_old, f"the step 0.8^{shorter} Δ passed already"
    # what it reports: L(θ_old), the improvement and the KL, measured on the batch
    assert result["surrogate"] == pytest.approx(surrogate_old, abs=1e-9)
    assert result["improvement"] == pytest.approx(surrogate_new - surrogate_old, abs=1e-9)
    assert result["kl"] == pytest.approx(kl, abs=1e-9)


@pytest.mark.points(2)
def test_npg_takes_the_whole_natural_step():
    seed, max_kl, damping = LINE_SEARCHES["kl-above-delta"]
    policy, theta, old_log_probs, data = trpo_setup(seed)
    theta_old = theta.detach().clone()
    step = expected_natural_step(policy, data, max_kl, damping)
    surrogate_old = hand_surrogate(policy, data).item()
    result = trpo.policy_update(policy, theta, data, config_for("npg", max_kl, damping))
    theta_new = theta.detach().clone()
    assert_moved_by(theta_new - theta_old, step)
    assert result["step_fraction"] == 1 and result["backtracks"] == 0
    # taken whole although its KL is far above δ (TRPO backtracks on this batch)
    surrogate_new, kl = assess(policy, theta, theta_new, data, old_log_probs)
    assert kl > 2 * max_kl
    assert result["improvement"] == pytest.approx(surrogate_new - surrogate_old, abs=1e-9)
    assert result["kl"] == pytest.approx(kl, abs=1e-9)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_a_line_search_that_finds_no_step_leaves_the_policy_where_it_was():
    # the second batch first passes at 0.8^4 Δ: with four tries (1, 0.8, 0.64, 0.512) none passes
    seed, max_kl, damping = LINE_SEARCHES["surrogate-falls"]
    policy, theta, old_log_probs, data = trpo_setup(seed)
    theta_old = theta.detach().clone()
    surrogate_old = hand_surrogate(policy, data).item()
    result = trpo.policy_update(policy, theta, data, config_for("trpo", max_kl, damping, backtrack_iters=4))
    assert torch.equal(theta.detach(), theta_old), "θ must go back to θ_old when no step passes"
    assert result["step_fraction"] == 0
    assert result["improvement"] == pytest.approx(0.0, abs=1e-12)
    assert result["kl"] == pytest.approx(0.0, abs=1e-12)
    assert result["surrogate"] == pytest.approx(surrogate_old, abs=1e-9)
### END HIDDEN TESTS
