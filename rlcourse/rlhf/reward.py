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

Data-parallel (under ``torchrun``, see :mod:`rlcourse.rlhf.distributed`), rank k scores
n_k of a global batch's N pairs, and its share of the loss is its mean over them times
n_k / N; the shares add up to L_R of the whole batch, evenly split or not.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoModel, GPT2Config, GPT2Model, PreTrainedModel

from rlcourse.rlhf import distributed
from rlcourse.rlhf.batching import encode
from rlcourse.rlhf.model import autocast, position_ids_from_mask
from rlcourse.rlhf.sft import check_training_fields, minibatches, optimizer_step, training_mode

HEAD_FILE = "reward_head.pt"


class RewardModel(nn.Module):
    """A language model's body (GPT-2's, or any ``AutoModel``) plus a scalar head read at the last
    real (attention mask 1) token of each sequence."""

    def __init__(self, body: PreTrainedModel):
        super().__init__()
        self.body = body
        n_embd = body.config.hidden_size
        self.head = nn.Linear(n_embd, 1)
        nn.init.normal_(self.head.weight, std=1 / (n_embd + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, config: GPT2Config) -> RewardModel:
        """A randomly initialised body."""
        return cls(GPT2Model(config))

    @classmethod
    def from_lm(cls, lm: PreTrainedModel) -> RewardModel:
        """A copy of a language model's body (the SFT model's, say); ``lm`` itself is left untouched."""
        body = lm.base_model  # GPT-2's ``transformer``, Llama's ``model``
        assert isinstance(body, PreTrainedModel)
        return cls(copy.deepcopy(body))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the body (``save_pretrained``) and the head (``reward_head.pt``) into ``directory``."""
        directory = Path(directory)
        self.body.save_pretrained(directory)
        torch.save(self.head.state_dict(), directory / HEAD_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RewardModel:
        """The reward model :meth:`save` wrote."""
        directory = Path(directory)
        if not (directory / HEAD_FILE).is_file():
            raise FileNotFoundError(
                f"{directory} holds no reward model (no {HEAD_FILE}); "
                f"train one with `rlcourse rlhf reward --out {directory}`"
            )
        rm = cls(AutoModel.from_pretrained(directory))
        rm.head.load_state_dict(torch.load(directory / HEAD_FILE, weights_only=True))
        return rm

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """r_φ(x) for each sequence: shape [B]."""
        hidden = self.body(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = (positions * attention_mask.long()).argmax(-1)
        h_last = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]
        return self.head(h_last).squeeze(-1)


class RewardLoss(NamedTuple):
    loss: Tensor  # −mean log σ(r_w − r_l)
    accuracy: Tensor  # share of pairs with r_w > r_l (detached)
    margin: Tensor  # mean r_w − r_l (detached)


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


# ---------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Hyperparameters of :func:`train_reward`. The defaults fit the toy task's tiny GPT-2."""

    lr: float = 1e-3  # AdamW step size
    epochs: int = 2  # passes over the pairs (InstructGPT: 1, more overfits)
    batch_size: int = 32  # pairs per minibatch (2 × that many sequences per forward pass)
    max_length: int = 32  # tokens per sequence; longer responses are cut
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this
    seed: int = 0  # order of the minibatches (and dropout, if the model has any)

    def __post_init__(self):
        check_training_fields(self)


def pair_scores(
    rm: RewardModel, tokenizer, pairs: Sequence[dict], max_length: int | None = None
) -> tuple[Tensor, Tensor]:
    """r_φ(p, y_w) and r_φ(p, y_l), each [B], from ONE forward pass over the 2B sequences.

    The chosen and rejected sequences are encoded as one right-padded batch, chosen first,
    so both halves are padded alike and the body runs once.
    """
    prompts = [pair["prompt"] for pair in pairs]
    batch = encode(
        tokenizer,
        prompts + prompts,
        [pair["chosen"] for pair in pairs] + [pair["rejected"] for pair in pairs],
        max_length,
    )
    device = next(rm.parameters()).device
    scores = rm(batch.input_ids.to(device), batch.attention_mask.to(device))
    return scores[: len(pairs)], scores[len(pairs) :]


def reward_step(
    rm: RewardModel, optimizer, tokenizer, pairs: Sequence[dict], index: list, config: RewardConfig, step: int
) -> dict:
    """One AdamW step on the minibatch ``index`` of ``pairs``; the numbers of its log row.

    In a process group each rank scores its slice (:func:`~rlcourse.rlhf.distributed.shard`)
    and every number is that of the global batch.
    """
    device = next(rm.parameters()).device
    mine = distributed.shard(index)  # this rank's pairs (all of them in one process)
    sums = torch.zeros(2, device=device)  # this rank's correctly ranked pairs and its summed margin
    if mine:
        with autocast(device):  # bf16 forward pass on CUDA; nothing on the CPU
            r_chosen, r_rejected = pair_scores(rm, tokenizer, [pairs[i] for i in mine], config.max_length)
        terms = reward_loss(r_chosen.float(), r_rejected.float())
        share = terms.loss * (len(mine) / len(index))  # n_k / N; exactly 1 in one process
        sums = torch.stack([terms.accuracy, terms.margin]) * len(mine)
    else:  # an empty slice still joins the all-reduces, with no gradient
        share = torch.zeros((), device=device, requires_grad=True)
    grad_norm = optimizer_step(rm, optimizer, share, config.max_grad_norm, "reward-model loss", step, all_reduce=True)
    accuracy, margin = (distributed.all_reduce_sum(sums) / len(index)).tolist()
    loss = distributed.all_reduce_sum(share.detach()).item()
    return {"loss": loss, "accuracy": accuracy, "margin": margin, "grad_norm": grad_norm}


def train_reward(
    rm: RewardModel,
    tokenizer,
    pairs: Sequence[dict],
    config: RewardConfig = RewardConfig(),
    callback: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    r"""Fit ``rm`` in place to preference rows ``{"prompt", "chosen", "rejected"}``; return the log.

    Each step takes a minibatch of pairs, scores chosen and rejected in one forward pass
    (:func:`pair_scores`) and takes one AdamW step on the Bradley–Terry loss

    .. math::

        L_R(\phi) = -\frac{1}{B} \sum_{i=1}^{B} \log \sigma\big(r_\phi(p_i, y_{w,i}) - r_\phi(p_i, y_{l,i})\big).

    The log has one row per step: ``step``, ``epoch``, ``loss``, ``accuracy`` (share of the
    minibatch's pairs with r_w > r_l), ``margin`` (mean r_w − r_l), ``grad_norm``, ``time``.
    ``callback(step, rm)`` runs after each step. Same seed: the same log on the CPU (``time`` aside).

    Inside a process group (``torchrun``, :mod:`rlcourse.rlhf.distributed`) it trains
    data-parallel: ``config.batch_size`` is the global batch of pairs, each rank scores its
    slice (:func:`reward_step`), and every logged number is that of the global batch, the
    same on every rank and, up to rounding, the same as one process's. ``callback`` runs on
    every rank.
    """
    if not pairs:
        raise ValueError("train_reward: no pairs to train on")
    optimizer = torch.optim.AdamW(
        [p for p in rm.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    distributed.broadcast_parameters(rm)  # data-parallel: every rank starts from rank 0's weights
    log, start = [], time.perf_counter()
    with training_mode(config.seed, rm):
        for step, (epoch, index) in enumerate(minibatches(len(pairs), config.batch_size, config.epochs, generator), 1):
            row = reward_step(rm, optimizer, tokenizer, pairs, index, config, step)
            log.append({"step": step, "epoch": epoch, **row, "time": time.perf_counter() - start})
            if callback is not None:
                callback(step, rm)
    return pd.DataFrame(log)


@torch.no_grad()
def evaluate_reward_model(
    rm: RewardModel, tokenizer, pairs: Sequence[dict], batch_size: int = 256, max_length: int | None = None
) -> dict[str, float]:
    """``{"accuracy", "margin"}`` of ``rm`` on (held-out) pairs: the share with r_w > r_l and the mean r_w − r_l."""
    if not pairs:
        raise ValueError("evaluate_reward_model: no pairs to evaluate on")
    was_training = rm.training
    rm.eval()
    differences = []
    for start in range(0, len(pairs), batch_size):
        r_chosen, r_rejected = pair_scores(rm, tokenizer, pairs[start : start + batch_size], max_length)
        differences.append((r_chosen - r_rejected).float().cpu())
    rm.train(was_training)
    difference = torch.cat(differences)
    return {"accuracy": (difference > 0).float().mean().item(), "margin": difference.mean().item()}
