"""The spine's losses and diagnostics (rlcourse/pg/objective.py) against loops over samples."""

import math

import pytest
import torch

from rlcourse.pg import objective


def random_rows(seed: int, B: int = 12):
    g = torch.Generator().manual_seed(seed)
    values, values_old = torch.randn(B, generator=g, dtype=torch.float64), torch.randn(B, generator=g, dtype=torch.float64)
    returns = torch.randn(B, generator=g, dtype=torch.float64)
    logp_old = -torch.rand(B, generator=g, dtype=torch.float64) * 2
    logp = logp_old + 0.4 * torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.rand(B, generator=g) < 0.7
    return values, values_old, returns, logp, logp_old, mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.2])
@pytest.mark.parametrize("masked", [False, True])
def test_value_loss_is_the_mean_of_the_larger_error_per_sample(seed, clip, masked):
    values, values_old, returns, _, _, mask = random_rows(seed)
    errors = []
    for i in range(len(values)):
        if masked and not mask[i]:
            continue
        v, old, y = float(values[i]), float(values_old[i]), float(returns[i])
        error = (v - y) ** 2
        if clip is not None:
            clipped = old + min(max(v - old, -clip), clip)
            error = max(error, (clipped - y) ** 2)
        errors.append(error)
    got = objective.value_loss(values, returns, values_old, clip, mask if masked else None)
    assert float(got) == pytest.approx(sum(errors) / len(errors), abs=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_ratio_diagnostics_are_k3_and_the_clipped_share(masked):
    _, _, _, logp, logp_old, mask = random_rows(3, B=40)
    kl, share, n = 0.0, 0, 0
    for i in range(len(logp)):
        if masked and not mask[i]:
            continue
        r = math.exp(float(logp[i]) - float(logp_old[i]))
        kl += (r - 1) - math.log(r)
        share += abs(r - 1) > 0.2
        n += 1
    approx_kl, clipfrac = objective.ratio_diagnostics(logp, logp_old, 0.2, mask if masked else None)
    assert float(approx_kl) == pytest.approx(kl / n, abs=1e-12) and float(approx_kl) >= 0
    assert float(clipfrac) == pytest.approx(share / n) and 0 < float(clipfrac) < 1


def test_explained_variance_by_hand():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert objective.explained_variance(target, target) == 1.0
    assert objective.explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)
    # the prediction off by ±0.5 alternately: Var(error) = 0.25, Var(target) = 1.25
    assert objective.explained_variance(target + torch.tensor([0.5, -0.5, 0.5, -0.5]), target) == pytest.approx(0.8)
    assert math.isnan(objective.explained_variance(target, torch.ones(4)))
