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

Data-parallel (under ``torchrun``, see :mod:`rlcourse.rlhf.distributed`), rank k scores
n_k of the global batch's N pairs, and its share of the loss is its mean over them times
n_k / N; the shares add up to the mean over all N pairs, evenly split or not.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcourse.config import ConfigError, check_choice, check_range
from rlcourse.rlhf import distributed
from rlcourse.rlhf.batching import TokenBatch, encode
from rlcourse.rlhf.model import autocast, sequence_logprobs
from rlcourse.rlhf.sft import check_training_fields, minibatches, optimizer_step, training_mode

LOSS_TYPES = ("sigmoid", "ipo")


class DPOLoss(NamedTuple):
    loss: Tensor  # scalar, to minimise
    chosen_rewards: Tensor  # [B] β(log π_θ(y_w|p) − log π_ref(y_w|p)), detached
    rejected_rewards: Tensor  # [B] β(log π_θ(y_l|p) − log π_ref(y_l|p)), detached
    reward_accuracy: Tensor  # share of pairs whose chosen implicit reward is the larger
    reward_margin: Tensor  # mean chosen − rejected implicit reward


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> DPOLoss:
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
    return DPOLoss(losses.mean(), chosen_rewards, rejected_rewards, (margin > 0).to(margin.dtype).mean(), margin.mean())
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
        for c, r, value in zip(chosen, rejected, (pad_id, 0, 0))
    )
    logps = sequence_logprobs(model, input_ids, attention_mask, response_mask)
    return logps[: len(chosen[0])], logps[len(chosen[0]) :]


# ---------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class DPOConfig:
    """Hyperparameters of :func:`train_dpo`. The defaults fit the toy task's tiny GPT-2."""

    beta: float = 0.1  # β: strength of the implicit KL penalty to π_ref
    loss_type: str = "sigmoid"  # "sigmoid" (DPO, cDPO with label_smoothing) or "ipo"
    label_smoothing: float = 0.0  # ε of cDPO: the assumed probability that a label is flipped
    lr: float = 1e-3  # AdamW step size
    epochs: int = 2  # passes over the pairs
    batch_size: int = 32  # pairs per minibatch (2 × that many sequences per forward pass)
    max_length: int = 32  # tokens per sequence; longer responses are cut
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this
    precompute_reference: bool = True  # log π_ref of every pair once up front, then no reference model
    seed: int = 0  # order of the minibatches (and dropout, if the model has any)

    def __post_init__(self):
        check_range(self, "beta", 0, None, low_open=True)
        check_choice(self, "loss_type", LOSS_TYPES)
        check_range(self, "label_smoothing", 0, 0.5, high_open=True)
        if self.loss_type == "ipo" and self.label_smoothing != 0:
            raise ConfigError(
                f"DPOConfig.label_smoothing = {self.label_smoothing!r} is not allowed with "
                f"loss_type 'ipo': it must be 0"
            )
        check_choice(self, "precompute_reference", (True, False))
        check_training_fields(self)


def encode_pairs(
    tokenizer, pairs: Sequence[dict], max_length: int | None = None, device=None
) -> tuple[TokenBatch, TokenBatch]:
    """The chosen and the rejected sequences of preference rows, as two right-padded batches."""
    prompts = [pair["prompt"] for pair in pairs]
    chosen = encode(tokenizer, prompts, [pair["chosen"] for pair in pairs], max_length)
    rejected = encode(tokenizer, prompts, [pair["rejected"] for pair in pairs], max_length)
    return TokenBatch(*(t.to(device) for t in chosen)), TokenBatch(*(t.to(device) for t in rejected))


@torch.no_grad()
def reference_logprobs(
    reference: nn.Module, tokenizer, pairs: Sequence[dict], batch_size: int, max_length: int | None = None
) -> tuple[Tensor, Tensor]:
    """log π_ref(y_w | p) and log π_ref(y_l | p) of every pair, each [N] in float32, computed in
    minibatches under ``no_grad`` (and :func:`~rlcourse.rlhf.model.autocast`): DPO's reference
    terms are constants, so they can be computed once. (Data-parallel, every rank computes
    all of them: simple, and the same numbers on every rank.)"""
    device = next(reference.parameters()).device
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        with autocast(device):
            c, r = concatenated_logprobs(
                reference, *encode_pairs(tokenizer, pairs[start : start + batch_size], max_length, device)
            )
        chosen.append(c)
        rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def dpo_step(
    policy: nn.Module,
    reference: nn.Module,
    optimizer,
    tokenizer,
    pairs: Sequence[dict],
    index: list,
    ref_all: tuple[Tensor, Tensor] | None,
    config: DPOConfig,
    step: int,
) -> dict:
    """One optimiser step on the minibatch ``index`` of ``pairs``; the numbers of its log row.

    ``ref_all``: the reference's log-probabilities of every pair, precomputed (else the
    reference scores the minibatch now). In a process group each rank scores its slice and
    every number is that of the global batch.
    """
    device = next(policy.parameters()).device
    mine = distributed.shard(index)  # this rank's pairs (all of them in one process)
    # sums over this rank's pairs of: chosen reward, rejected reward, correct ranking, margin
    sums = torch.zeros(4, device=device)
    if mine:
        chosen, rejected = encode_pairs(tokenizer, [pairs[i] for i in mine], config.max_length, device)
        with autocast(device):
            policy_chosen, policy_rejected = concatenated_logprobs(policy, chosen, rejected)
            if ref_all is not None:
                ref_chosen, ref_rejected = ref_all[0][mine], ref_all[1][mine]
            else:
                with torch.no_grad():
                    ref_chosen, ref_rejected = concatenated_logprobs(reference, chosen, rejected)
        terms = dpo_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            config.beta,
            config.loss_type,
            config.label_smoothing,
        )
        share = terms.loss * (len(mine) / len(index))  # n_k / N; exactly 1 in one process
        margin = terms.chosen_rewards - terms.rejected_rewards
        sums = torch.stack(
            [
                terms.chosen_rewards.sum(),
                terms.rejected_rewards.sum(),
                (margin > 0).sum().to(margin.dtype),
                margin.sum(),
            ]
        )
    else:  # an empty slice still joins the all-reduces, with no gradient
        share = torch.zeros((), device=device, requires_grad=True)
    grad_norm = optimizer_step(policy, optimizer, share, config.max_grad_norm, "DPO loss", step, all_reduce=True)
    chosen_reward, rejected_reward, accuracy, margin = (distributed.all_reduce_sum(sums) / len(index)).tolist()
    return {
        "loss": distributed.all_reduce_sum(share.detach()).item(),
        "chosen_reward": chosen_reward,
        "rejected_reward": rejected_reward,
        "reward_accuracy": accuracy,
        "reward_margin": margin,
        "grad_norm": grad_norm,
    }


def train_dpo(
    policy: nn.Module,
    reference: nn.Module | None,
    tokenizer,
    pairs: Sequence[dict],
    config: DPOConfig = DPOConfig(),
    callback: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    r"""Fit ``policy`` in place to preference rows ``{"prompt", "chosen", "rejected"}`` by DPO; return the log.

    Each step takes a minibatch of pairs, computes log π_θ(y_w | p) and log π_θ(y_l | p) in one
    forward pass over the 2B sequences (:func:`concatenated_logprobs`), and takes one AdamW
    step on :func:`dpo_loss` (DPO, cDPO or IPO by ``config.loss_type``), for example

    .. math::

        L_{DPO}(\theta) = -\frac{1}{B} \sum_i \log \sigma\Big(\beta\Big[
            \log \frac{\pi_\theta(y_{w,i} \mid p_i)}{\pi_{ref}(y_{w,i} \mid p_i)}
          - \log \frac{\pi_\theta(y_{l,i} \mid p_i)}{\pi_{ref}(y_{l,i} \mid p_i)}\Big]\Big).

    The reference terms never need gradients. With ``config.precompute_reference`` they are
    computed for every pair once under ``no_grad``, before the first step
    (:func:`reference_logprobs`), and the reference model is not used again (it can be freed
    while the policy trains); otherwise it scores each minibatch again. ``reference`` is
    never changed.

    The log has one row per step: ``step``, ``epoch``, ``loss``, ``chosen_reward`` and
    ``rejected_reward`` (mean implicit rewards β log π_θ/π_ref of y_w and of y_l),
    ``reward_accuracy`` (share of pairs whose chosen implicit reward is the larger),
    ``reward_margin`` (their mean difference), ``grad_norm``, ``time``.
    ``callback(step, policy)`` runs after each step. Same seed: the same log on the CPU
    (``time`` aside).

    The policy trains on its own device (the reference must be on the same one), with the
    forward passes under :func:`~rlcourse.rlhf.model.autocast` (bf16 on CUDA, float32 on the
    CPU) and the loss in float32. Inside a process group (``torchrun``,
    :mod:`rlcourse.rlhf.distributed`) it trains data-parallel: ``config.batch_size`` is the
    global batch of pairs, each rank scores its slice, and every logged number is that of
    the global batch, the same on every rank and, up to rounding, the same as one process's.
    ``callback`` runs on every rank.
    """
    if not pairs:
        raise ValueError("train_dpo: no pairs to train on")
    if reference is None:
        raise ValueError("train_dpo: a reference model is needed (frozen_copy of the policy before DPO)")
    if reference is policy:
        raise ValueError("train_dpo: the reference must be a separate model (rlcourse.rlhf.model.frozen_copy(policy))")
    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    distributed.broadcast_parameters(policy)  # data-parallel: every rank starts from rank 0's weights
    distributed.broadcast_parameters(reference)
    log, start = [], time.perf_counter()
    with training_mode(config.seed, policy):
        was_training = reference.training
        reference.eval()
        ref_all = None
        if config.precompute_reference:
            ref_all = reference_logprobs(reference, tokenizer, pairs, config.batch_size, config.max_length)
        for step, (epoch, index) in enumerate(minibatches(len(pairs), config.batch_size, config.epochs, generator), 1):
            row = dpo_step(policy, reference, optimizer, tokenizer, pairs, index, ref_all, config, step)
            log.append({"step": step, "epoch": epoch, **row, "time": time.perf_counter() - start})
            if callback is not None:
                callback(step, policy)
        reference.train(was_training)
    return pd.DataFrame(log)
