r"""The one policy-gradient objective, its importance-sampled and clipped forms, the critic's
loss, and the numbers every policy-gradient trainer logs.

Every policy-gradient method in rlcourse minimises one of these losses; they differ only
in the Ψ they pass (:mod:`rlcourse.pg.psi`) and in how they step: REINFORCE and A2C
:func:`policy_gradient_loss`, TRPO :func:`importance_sampled_loss` under a KL constraint,
PPO (on Gymnasium and on a language model) :func:`clipped_surrogate_loss` with the
critic's :func:`value_loss`.

The score-function (log-derivative) form, whose gradient is the policy-gradient estimate:

.. math::

    L(\theta) = -\frac{1}{|B|} \sum_{(t,i) \in B} \log \pi_\theta(a_t \mid s_t)\, \Psi_t
    \quad\Rightarrow\quad
    -\nabla_\theta L = \frac{1}{|B|} \sum \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, \Psi_t

The importance-sampled surrogate of TRPO and PPO, for samples drawn with
:math:`\pi_{\theta_\text{old}}`:

.. math::

    L^{IS}(\theta) = -\frac{1}{|B|} \sum \frac{\pi_\theta(a_t \mid s_t)}
                                            {\pi_{\theta_\text{old}}(a_t \mid s_t)}\, \Psi_t

At :math:`\theta = \theta_\text{old}` the ratio is 1 and, since
:math:`\nabla r = r \nabla \log \pi`, both losses have the same gradient. TRPO
(:mod:`rlcourse.pg.trpo`) maximises it under a KL constraint; PPO (:mod:`rlcourse.pg.ppo`)
clips it or adds a KL penalty.

We average over the steps of the batch (not over episodes, as the textbook's
:math:`\frac{1}{m}\sum_i\sum_t` does): that only rescales the gradient by the mean
episode length, which the step size absorbs. ``mask`` leaves steps out (for example the
steps of incomplete episodes when Ψ needs whole ones, or the prompt and padding tokens of
lesson 7).

What the trainers log, computed here once: :func:`ratio_diagnostics` (``approx_kl``, the
k3 estimate of KL[π_old, π], and ``clipfrac``, the share of clipped ratios) and
:func:`explained_variance` of the critic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlcourse.pg.psi import masked_mean


def policy_gradient_loss(logp: Tensor, psi: Tensor, mask: Tensor | None = None) -> Tensor:
    """−mean(log π(a|s) · Ψ); Ψ must carry no gradient."""
    ### BEGIN SOLUTION
    return -masked_mean(logp * psi.detach(), mask)
    ### END SOLUTION


def importance_sampled_loss(logp: Tensor, logp_old: Tensor, psi: Tensor, mask: Tensor | None = None) -> Tensor:
    """−mean(π/π_old · Ψ), the ratio computed as exp(log π − log π_old)."""
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - logp_old.detach())
    return -masked_mean(ratio * psi.detach(), mask)
    ### END SOLUTION


def clipped_surrogate_loss(
    logp: Tensor, logp_old: Tensor, psi: Tensor, clip_range: float, mask: Tensor | None = None
) -> Tensor:
    r"""PPO's clipped surrogate, as a loss (the paper's eq. 7), with r = π_θ/π_θold:

    .. math::

        L^{CLIP}(\theta) = -\frac{1}{|B|} \sum \min\big(r_t(\theta)\, \Psi_t,\
                            \operatorname{clip}(r_t(\theta), 1 - \epsilon, 1 + \epsilon)\, \Psi_t\big)

    The minimum makes it a pessimistic bound on the importance-sampled surrogate: pushing
    r beyond 1 ± ε in the direction Ψ favours earns nothing (the gradient is 0 there),
    while a move the other way is charged in full. ``mask`` leaves steps out (the prompt
    and padding tokens in lesson 7).
    """
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - logp_old.detach())
    psi = psi.detach()
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return -masked_mean(torch.minimum(ratio * psi, clipped * psi), mask)
    ### END SOLUTION


def value_loss(
    values: Tensor,
    returns: Tensor,
    values_old: Tensor | None = None,
    clip_range: float | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""The critic's regression on its targets y_t, mean over ``mask``:
    :math:`L_V = \hat{\mathbb E}_t[(V_\phi(s_t) - y_t)^2]`.

    With ``clip_range`` c (OpenAI Baselines' PPO2), the prediction may not move more than ±c
    from :math:`V_{\phi_\text{old}}(s_t)` without paying the larger of the clipped and
    unclipped errors: :math:`\max\big((V - y)^2, (V_\text{old} + \operatorname{clip}(V - V_\text{old}, -c, c) - y)^2\big)`.
    """
    error = (values - returns).pow(2)
    if clip_range is not None:
        if values_old is None:
            raise ValueError("value_loss: clip_range needs values_old, the critic's values at collection time")
        clipped = values_old + (values - values_old).clamp(-clip_range, clip_range)
        error = torch.maximum(error, (clipped - returns).pow(2))
    return masked_mean(error, mask)


@torch.no_grad()
def ratio_diagnostics(
    logp: Tensor, logp_old: Tensor, clip_range: float, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""(approx_kl, clipfrac) of an update, detached, over ``mask``: with r = π_θ/π_θold,
    :math:`\hat{\mathbb E}[(r - 1) - \log r]` (the k3 estimator of KL[π_old, π]: unbiased,
    never negative) and the share of samples with :math:`|r - 1| > \epsilon`."""
    log_ratio = logp - logp_old
    if mask is not None:
        log_ratio = log_ratio[mask]
    ratio = log_ratio.exp()
    return ((ratio - 1) - log_ratio).mean(), ((ratio - 1).abs() > clip_range).float().mean()


def explained_variance(prediction: Tensor, target: Tensor) -> float:
    """1 − Var(target − prediction) / Var(target): the share of the targets' variance the
    critic (or baseline) explains; 1 is perfect, 0 no better than a constant, NaN if the
    targets do not vary."""
    var = target.var(correction=0)
    return float("nan") if var == 0 else float(1 - (target - prediction).var(correction=0) / var)
