"""Graded tests, lesson 8: RL with verifiable rewards — GRPO, RLOO and Dr. GRPO.

What is graded: the group estimators of Ψ (``psi.group_mean_baseline``, ``psi.rloo_advantages``,
``psi.grpo_advantages``), the loss aggregations (``psi.token_weights``), GRPO's k3 estimate
of the KL (``grpo.k3``) and the loss (``grpo.grpo_loss``).

The expected values are worked out by hand in the comments, or come from loops written here
from the definitions (a group's mean and standard deviation summed out, the clipped surrogate
one token at a time); the unbiasedness test enumerates every group of a softmax bandit. None
comes from rlcourse's own solutions.
"""

import itertools
import math

import pytest
import torch

from rlcourse.assignments.sandbox import student_module

psi = student_module("rlcourse.pg.psi")
grpo = student_module("rlcourse.rlvr.grpo")

F64 = torch.float64


def f64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def assert_close(got, expected, tol: float = 1e-10):
    assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
    expected = torch.as_tensor(expected, dtype=F64)
    assert tuple(got.shape) == tuple(expected.shape), f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    torch.testing.assert_close(got.detach().double(), expected, rtol=tol, atol=tol)


# two prompts, four answers each: rewards 1, 0, 0, 1 (mean 1/2) and 1, 1, 1, 0 (mean 3/4)
REWARDS = [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]


@pytest.mark.points(1)
def test_group_mean_baseline_by_hand():
    assert_close(psi.group_mean_baseline(f64(REWARDS)), [[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]])
    assert_close(psi.group_mean_baseline(f64([[2.0, 2.0, 2.0]])), [[0.0, 0.0, 0.0]])  # all equal: no signal


@pytest.mark.points(2)
def test_rloo_subtracts_the_mean_of_the_others():
    # first group: answer 1 scores 1, the others average 1/3: 2/3; answer 2 scores 0, the others 2/3: −2/3
    # second group: 1 − 2/3 = 1/3 for the right ones, 0 − 1 = −1 for the wrong one
    assert_close(psi.rloo_advantages(f64(REWARDS)), [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [1 / 3, 1 / 3, 1 / 3, -1.0]])
    # a group of two: each answer against the other
    assert_close(psi.rloo_advantages(f64([[3.0, 1.0]])), [[2.0, -2.0]])


@pytest.mark.points(2)
def test_grpo_standardises_within_each_group():
    rewards = [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.3, 0.3, 0.3, 0.3], [0.5, 2.0, -1.0, 0.0]]
    expected = []
    for row in rewards:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / (len(row) - 1))  # unbiased, as TRL
        expected.append([(r - mean) / (std + 1e-4) for r in row])
    assert_close(psi.grpo_advantages(f64(rewards), eps=1e-4), expected)
    # the first group by hand: σ = √(1/3), Ψ = ±0.5 / (√(1/3) + 1e-4)
    assert psi.grpo_advantages(f64(REWARDS), eps=1e-4)[0, 0].item() == pytest.approx(0.5 / (math.sqrt(1 / 3) + 1e-4))


@pytest.mark.points(2)
def test_rloo_is_unbiased_and_the_group_mean_shrinks_by_g_minus_one_over_g():
    """Every group of G = 3 pulls of a softmax bandit (π = (0.5, 0.3, 0.2), rewards (0, 1, 0.5)),
    weighted by its probability: E[(1/G) Σ_i Ψ_i ∇log π(a_i)] with ∇log π(k) = e_k − π."""
    probs, arm_rewards, G = f64([0.5, 0.3, 0.2]), f64([0.0, 1.0, 0.5]), 3
    exact = probs * (arm_rewards - probs @ arm_rewards)
    groups = list(itertools.product(range(3), repeat=G))
    rewards = arm_rewards[torch.tensor(groups)]  # [27, 3]: one call for every group
    for estimator, factor in ((psi.rloo_advantages, 1.0), (psi.group_mean_baseline, (G - 1) / G)):
        values = estimator(rewards)
        mean = torch.zeros(3, dtype=F64)
        for g, arms in enumerate(groups):
            weight = math.prod(probs[a].item() for a in arms)
            for i, a in enumerate(arms):
                mean += weight * values[g, i].item() * (torch.eye(3, dtype=F64)[a] - probs) / G
        assert_close(mean, factor * exact, tol=1e-12)


MASK = [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]  # answers of 3, 1 and 4 tokens


@pytest.mark.points(2)
def test_token_weights_of_the_three_aggregations():
    mask = f64(MASK)  # a float mask: the weights come back in its dtype
    # sequence-mean: 1 / (B·|y_i|) = 1/9, 1/3, 1/12
    assert_close(psi.token_weights(mask, "sequence-mean"),
                 [[1 / 9, 1 / 9, 1 / 9, 0], [1 / 3, 0, 0, 0], [1 / 12] * 4])  # fmt: skip
    # token-mean: 1 / Σ|y| = 1/8 on every answer token
    assert_close(psi.token_weights(mask, "token-mean"), [[r / 8 for r in row] for row in MASK])
    # constant C = 4: 1 / (B·C) = 1/12 on every answer token
    assert_close(psi.token_weights(mask, "constant", constant=4.0), [[r / 12 for r in row] for row in MASK])
    with pytest.raises(ValueError):
        psi.token_weights(mask, "constant")


@pytest.mark.points(1)
def test_k3_by_hand():
    # log π = log π_ref: 0; log π_ref − log π = 1: e − 2; = −1: 1/e
    got = grpo.k3(f64([-1.0, -2.0, -1.0]), f64([-1.0, -1.0, -2.0]))
    assert_close(got, [0.0, math.e - 2, 1 / math.e])


def loop_loss(logp, logp_old, adv, weights, clip, ref_logp, kl_coef):
    total = 0.0
    for i in range(len(adv)):
        for t in range(len(weights[i])):
            if weights[i][t] > 0:
                ratio = math.exp(logp[i][t] - logp_old[i][t])
                surrogate = min(ratio * adv[i], min(max(ratio, 1 - clip), 1 + clip) * adv[i])
                d = ref_logp[i][t] - logp[i][t]
                total += weights[i][t] * (-surrogate + kl_coef * (math.exp(d) - d - 1))
    return total


@pytest.mark.points(3)
def test_grpo_loss_against_a_token_loop():
    logp_old = [[-1.0, -0.5, -2.0, -1.0], [-0.3, -1.0, -1.0, -1.0], [-2.0, -1.5, -0.7, -0.2]]
    moves = [[0.5, -0.05, 0.0, 9.0], [-0.4, 9.0, 9.0, 9.0], [0.1, 0.3, -0.3, 0.02]]  # 9: off the mask
    logp = [[a + b for a, b in zip(r, m)] for r, m in zip(logp_old, moves)]
    ref_logp = [[a - 0.2 for a in row] for row in logp_old]
    adv = [1.0, -0.5, 2.0]
    weights = [[w / 12 for w in row] for row in MASK]
    for kl_coef in (0.0, 0.1):
        got = grpo.grpo_loss(f64(logp), f64(logp_old), f64(adv), f64(weights), 0.2, f64(ref_logp), kl_coef)
        assert got.item() == pytest.approx(loop_loss(logp, logp_old, adv, weights, 0.2, ref_logp, kl_coef), abs=1e-12)


@pytest.mark.points(2)
def test_grpo_loss_gradient_at_ratio_one_is_the_weighted_policy_gradient():
    logp_old = f64([[-1.0, -0.5, -2.0, -1.0], [-0.3, -1.0, -1.0, -1.0], [-2.0, -1.5, -0.7, -0.2]])
    logp = logp_old.clone().requires_grad_()
    adv = f64([1.0, -0.5, 2.0])
    weights = f64([[1 / 9, 1 / 9, 1 / 9, 0], [1 / 3, 0, 0, 0], [1 / 12] * 4])
    loss = grpo.grpo_loss(logp, logp_old, adv, weights, 0.2)
    loss.backward()
    assert_close(logp.grad, -adv[:, None] * weights)
