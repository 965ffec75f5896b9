r"""The reward model: a scalar score r_φ(p, y) learned from human (or simulated) preferences.

Bradley–Terry: the probability that a labeller prefers y_w to y_l for the prompt p is

.. math::

    P(y_w \succ y_l \mid p) = \sigma\big(r_\phi(p, y_w) - r_\phi(p, y_l)\big),

so maximum likelihood on labelled pairs minimises

.. math::

    L_R(\phi) = -\mathbb E_{(p, y_w, y_l)}\big[\log \sigma\big(r_\phi(p, y_w) - r_\phi(p, y_l)\big)\big].

r_φ is a GPT-2 body (usually the SFT model's, copied) with a linear head on the hidden
state of the last real token, the one that has read the whole prompt and response.

InstructGPT (Ouyang et al. 2022, section 3.5) has labellers rank K responses at once; a
ranking expands to its K(K−1)/2 (better, worse) pairs (:func:`ranking_pairs`), all of one
prompt's pairs kept in the same batch (and each weighted 1/C(K, 2) there) so that the model
does not overfit to responses it sees K − 1 times.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from rlcourse.rlhf.model import position_ids_from_mask


class RewardModel(nn.Module):
    """GPT-2 body plus a scalar head read at the last real (attention mask 1) token of each sequence."""

    def __init__(self, body: GPT2Model):
        super().__init__()
        self.body = body
        n_embd = body.config.n_embd
        self.head = nn.Linear(n_embd, 1)
        nn.init.normal_(self.head.weight, std=1 / (n_embd + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, config: GPT2Config) -> "RewardModel":
        """A randomly initialised body."""
        return cls(GPT2Model(config))

    @classmethod
    def from_lm(cls, lm: GPT2LMHeadModel) -> "RewardModel":
        """A copy of a language model's body (the SFT model's, say); ``lm`` itself is left untouched."""
        return cls(copy.deepcopy(lm.transformer))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """r_φ(x) for each sequence: shape [B]."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = (positions * attention_mask.long()).argmax(-1)
        h_last = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]
        return self.head(h_last).squeeze(-1)


class RewardLoss(NamedTuple):
    loss: Tensor      # −mean log σ(r_w − r_l)
    accuracy: Tensor  # share of pairs with r_w > r_l (detached)
    margin: Tensor    # mean r_w − r_l (detached)


def reward_loss(r_chosen: Tensor, r_rejected: Tensor) -> RewardLoss:
    r"""The Bradley–Terry loss −mean log σ(r_w − r_l) of a batch of pairs, with its accuracy and margin.

    log σ is computed as ``logsigmoid`` (−softplus(−x)), which stays finite for large margins.
    """
    ### BEGIN SOLUTION
    diff = r_chosen - r_rejected
    loss = -F.logsigmoid(diff).mean()
    diff = diff.detach()
    return RewardLoss(loss, (diff > 0).to(diff.dtype).mean(), diff.mean())
    ### END SOLUTION


def ranking_pairs(k: int) -> list[tuple[int, int]]:
    """The K(K−1)/2 (better, worse) index pairs of a list of K responses ranked best first."""
    if k < 1:
        raise ValueError(f"ranking_pairs: k = {k!r} is out of range: it must be an integer >= 1")
    return [(i, j) for i in range(k) for j in range(i + 1, k)]
