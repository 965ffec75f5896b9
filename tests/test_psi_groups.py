"""Lesson 8: the group estimators of rlcourse.pg.psi against brute force and closed forms.

The brute forces loop over the answers of a group one at a time; the unbiasedness checks
enumerate every group of G answers of a softmax bandit (K arms, logits θ, π = softmax θ,
∇ log π(k) = e_k − π), whose exact gradient is ∇J = π ⊙ (r − π·r).
"""

import itertools
import math

import pytest
import torch

from rlcourse.pg import psi

F64 = torch.float64


def random_rewards(seed: int, P: int = 5, G: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 2, (P, G), generator=g).to(F64)
    rewards[0] = 1.0  # a group that is all right: no signal
    rewards[1] += torch.rand(G, generator=g, dtype=F64)  # non-binary rewards too
    return rewards


@pytest.mark.parametrize("seed", range(4))
def test_group_estimators_match_loops(seed):
    rewards = random_rewards(seed)
    P, G = rewards.shape
    for p in range(P):
        row = rewards[p].tolist()
        mean = sum(row) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / (G - 1))
        for i in range(G):
            others = [row[j] for j in range(G) if j != i]
            assert psi.no_baseline(rewards)[p, i] == pytest.approx(row[i])
            assert psi.group_mean_baseline(rewards)[p, i] == pytest.approx(row[i] - mean, abs=1e-12)
            assert psi.rloo_advantages(rewards)[p, i] == pytest.approx(row[i] - sum(others) / (G - 1), abs=1e-12)
            assert psi.grpo_advantages(rewards, eps=1e-4)[p, i] == pytest.approx((row[i] - mean) / (std + 1e-4))
    assert torch.equal(psi.grpo_advantages(rewards)[0], torch.zeros(G, dtype=F64))  # all right: Ψ = 0
    torch.testing.assert_close(psi.rloo_advantages(rewards), G / (G - 1) * psi.group_mean_baseline(rewards))


def test_estimators_are_pure_and_keep_shape():
    rewards = random_rewards(0)
    before = rewards.clone()
    for f in (psi.no_baseline, psi.group_mean_baseline, psi.rloo_advantages, psi.grpo_advantages):
        out = f(rewards)
        assert out.shape == rewards.shape and out.dtype == rewards.dtype
        assert torch.equal(rewards, before)
    assert psi.rloo_advantages(rewards.flatten()).shape == (rewards.numel(),)  # one group of P·G
    with pytest.raises(ValueError, match="at least 2"):
        psi.rloo_advantages(torch.ones(3, 1))


def bandit_expectation(estimator, probs, rewards, G):
    """E[(1/G) Σ_i Ψ_i ∇log π(a_i)] over every group (a_1..a_G) of a softmax bandit, exactly."""
    K = len(probs)
    total = torch.zeros(K, dtype=F64)
    for arms in itertools.product(range(K), repeat=G):
        weight = math.prod(probs[a].item() for a in arms)
        psi_ = estimator(rewards[list(arms)][None])[0]
        for i, a in enumerate(arms):
            total += weight * psi_[i] * (torch.eye(K, dtype=F64)[a] - probs) / G
    return total


@pytest.mark.parametrize("G", [2, 3, 4])
def test_unbiasedness_by_enumeration(G):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64)
    exact = probs * (rewards - probs @ rewards)
    torch.testing.assert_close(bandit_expectation(psi.no_baseline, probs, rewards, G), exact)
    torch.testing.assert_close(bandit_expectation(psi.rloo_advantages, probs, rewards, G), exact)
    torch.testing.assert_close(bandit_expectation(psi.group_mean_baseline, probs, rewards, G), (G - 1) / G * exact)


def test_std_normalisation_reweights_prompts_by_difficulty():
    """Prompts as two-armed bandits (wrong, right), solved with probability p, logits of their
    own. GRPO's expectation is parallel to each prompt's exact gradient, with a scale that
    grows as p nears 0 or 1 (a group with one odd answer out has a small σ): the prompts
    are re-weighted by difficulty, so the whole gradient is biased. G = 3 is the exception:
    σ is the same for 1 or 2 right answers of 3."""
    rewards = torch.tensor([0.0, 1.0], dtype=F64)
    scales = {}
    for G in (3, 6):
        for p in (0.5, 0.1, 0.95):
            probs = torch.tensor([1 - p, p], dtype=F64)
            exact = probs * (rewards - probs @ rewards)
            grpo = bandit_expectation(psi.grpo_advantages, probs, rewards, G)
            scales[G, p] = (grpo @ exact / (exact @ exact)).item()
            torch.testing.assert_close(grpo, scales[G, p] * exact)
    assert scales[3, 0.5] == pytest.approx(scales[3, 0.1]) == pytest.approx(scales[3, 0.95])
    assert scales[6, 0.1] > 1.15 * scales[6, 0.5] and scales[6, 0.95] > 1.2 * scales[6, 0.5]


def loop_weights(mask, aggregation, constant=None):
    B, T = mask.shape
    lengths = [int(mask[b].sum()) for b in range(B)]
    out = torch.zeros(B, T, dtype=F64)
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                if aggregation == "sequence-mean":
                    out[b, t] = 1 / (B * lengths[b])
                elif aggregation == "token-mean":
                    out[b, t] = 1 / sum(lengths)
                else:
                    out[b, t] = 1 / (B * constant)
    return out


@pytest.mark.parametrize("aggregation", psi.AGGREGATIONS)
def test_token_weights_match_loops(aggregation):
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(6, 9, generator=g) < 0.6
    mask[0] = False  # an empty answer: weight 0, no division by zero
    got = psi.token_weights(mask, aggregation, constant=9)
    torch.testing.assert_close(got.double(), loop_weights(mask, aggregation, 9))
    assert got[0].sum() == 0
    if aggregation == "token-mean":
        assert got.sum().item() == pytest.approx(1.0)
    if aggregation == "sequence-mean":
        assert got.sum().item() == pytest.approx(5 / 6)  # five non-empty answers of six


def test_token_weights_reject_bad_arguments():
    mask = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="aggregation = 'mean' is not allowed"):
        psi.token_weights(mask, "mean")
    with pytest.raises(ValueError, match="constant = None is out of range"):
        psi.token_weights(mask, "constant")
