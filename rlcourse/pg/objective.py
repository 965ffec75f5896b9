r"""The one policy-gradient objective, and its importance-sampled form.

Every policy-gradient method in rlcourse minimises one of these two losses; they differ
only in the Ψ they pass (:mod:`rlcourse.pg.psi`) and in how they step.

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
steps of incomplete episodes when Ψ needs whole ones).
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


def importance_sampled_loss(logp: Tensor, logp_old: Tensor, psi: Tensor,
                            mask: Tensor | None = None) -> Tensor:
    """−mean(π/π_old · Ψ), the ratio computed as exp(log π − log π_old)."""
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - logp_old.detach())
    return -masked_mean(ratio * psi.detach(), mask)
    ### END SOLUTION
