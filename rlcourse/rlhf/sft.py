r"""Supervised fine-tuning (SFT): the first stage of RLHF.

Maximum likelihood on demonstrations (p, y), counted on the response tokens only: the
prompt conditions the model but is not something it should learn to write, and padding is
not text at all. With the response mask m_t (1 on y, 0 on p and padding), the loss is the
cross-entropy averaged over all response tokens of the batch:

.. math::

    L_{SFT}(\theta) = -\frac{\sum_b \sum_{t=1}^{L-1} m_{b,t} \log \pi_\theta(x_{b,t} \mid x_{b,<t})}
                           {\sum_b \sum_{t=1}^{L-1} m_{b,t}}

(a mean over tokens, not over sequences: long responses weigh more, as in a language
model's pretraining loss).
"""

from __future__ import annotations

from torch import Tensor, nn

from rlcourse.rlhf.model import token_logprobs


def sft_loss(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> Tensor:
    """Mean cross-entropy over the response tokens of a right-padded batch (prompt and padding masked)."""
    ### BEGIN SOLUTION
    logp = token_logprobs(model, input_ids, attention_mask)
    mask = response_mask[:, 1:].to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp(min=1)
    ### END SOLUTION
