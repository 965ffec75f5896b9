r"""Direct preference optimisation (DPO) and its IPO and label-smoothed (cDPO) variants.

Rafailov et al. (2023), *Direct Preference Optimization: Your Language Model is Secretly a
Reward Model*. The KL-regularised RLHF objective max_π E[r(p, y)] − β KL[π ‖ π_ref] has the
optimum π*(y | p) ∝ π_ref(y | p) exp(r(p, y)/β), so a policy defines an implicit reward

.. math::

    \hat r_\theta(p, y) = \beta \log \frac{\pi_\theta(y \mid p)}{\pi_{ref}(y \mid p)}

(up to a term of p alone, which cancels in a comparison). Put into the Bradley–Terry
likelihood of the preference data, with the log-ratio difference

.. math::

    h_\theta = \Big(\log \pi_\theta(y_w \mid p) - \log \pi_{ref}(y_w \mid p)\Big)
             - \Big(\log \pi_\theta(y_l \mid p) - \log \pi_{ref}(y_l \mid p)\Big),

the losses (means over the batch of pairs; log π are sums over the response's tokens) are

* ``"sigmoid"`` (DPO): :math:`L = -\log \sigma(\beta h)`;
* ``"sigmoid"`` with ``label_smoothing`` ε (cDPO, for labels flipped with probability ε):
  :math:`L = -(1 - \varepsilon) \log \sigma(\beta h) - \varepsilon \log \sigma(-\beta h)`;
* ``"ipo"`` (Azar et al. 2023, *A General Theoretical Paradigm to Understand Learning from
  Human Preferences*): :math:`L = (h - \tfrac{1}{2\beta})^2`, a regression of h to a finite
  target, so that deterministic preferences do not push h to infinity. (The IPO paper and
  TRL use log-probs *averaged* over tokens here; this function takes whatever it is given.)

At π_θ = π_ref, h = 0: the DPO loss is log 2 and the IPO loss is (1/(2β))².
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcourse.config import ConfigError
from rlcourse.rlhf.model import sequence_logprobs

LOSS_TYPES = ("sigmoid", "ipo")


class DPOLoss(NamedTuple):
    loss: Tensor              # scalar, to minimise
    chosen_rewards: Tensor    # [B] β(log π_θ(y_w|p) − log π_ref(y_w|p)), detached
    rejected_rewards: Tensor  # [B] β(log π_θ(y_l|p) − log π_ref(y_l|p)), detached
    reward_accuracy: Tensor   # share of pairs whose chosen implicit reward is the larger
    reward_margin: Tensor     # mean chosen − rejected implicit reward


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> DPOLoss:
    """The DPO (or cDPO, or IPO) loss of a batch of pairs from summed response log-probs, each of shape [B]."""
    if not beta > 0:
        raise ConfigError(f"dpo_loss: beta = {beta!r} is out of range: it must be in (0, inf)")
    if not 0 <= label_smoothing < 0.5:
        raise ConfigError(f"dpo_loss: label_smoothing = {label_smoothing!r} is out of range: it must be in [0, 0.5)")
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"dpo_loss: loss_type = {loss_type!r} must be one of {LOSS_TYPES}")
    if loss_type == "ipo" and label_smoothing != 0:
        raise ConfigError("dpo_loss: label_smoothing applies to loss_type 'sigmoid' only; it must be 0 with 'ipo'")
    ### BEGIN SOLUTION
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    h = chosen_logratio - rejected_logratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    else:
        losses = (h - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * chosen_logratio.detach()
    rejected_rewards = beta * rejected_logratio.detach()
    margin = chosen_rewards - rejected_rewards
    return DPOLoss(losses.mean(), chosen_rewards, rejected_rewards,
                   (margin > 0).to(margin.dtype).mean(), margin.mean())
    ### END SOLUTION


def _fields(batch) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, response_mask) of a batch given as a mapping or an object with those names."""
    names = ("input_ids", "attention_mask", "response_mask")
    if isinstance(batch, Mapping):
        return tuple(batch[name] for name in names)
    return tuple(getattr(batch, name) for name in names)


def _pad_right(x: Tensor, length: int, value: int) -> Tensor:
    return F.pad(x, (0, length - x.shape[1]), value=value)


def concatenated_logprobs(model: nn.Module, chosen_batch, rejected_batch) -> tuple[Tensor, Tensor]:
    """log π(y_w | p) and log π(y_l | p), each [B], from ONE forward pass over the 2B sequences.

    Each batch holds ``input_ids``, ``attention_mask`` and ``response_mask`` ([B, L], right
    padded; a mapping or an object with those attributes). Both are padded to the longer
    length and stacked along the batch, chosen first; one pass is faster than two and
    keeps both halves in the same state (dropout, batch statistics) when there are any.
    """
    chosen, rejected = _fields(chosen_batch), _fields(rejected_batch)
    length = max(chosen[0].shape[1], rejected[0].shape[1])
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
    input_ids, attention_mask, response_mask = (
        torch.cat([_pad_right(c, length, value), _pad_right(r, length, value)])
        for c, r, value in zip(chosen, rejected, (pad_id, 0, 0)))
    logps = sequence_logprobs(model, input_ids, attention_mask, response_mask)
    return logps[:len(chosen[0])], logps[len(chosen[0]):]
