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

Data-parallel (under ``torchrun``, see :mod:`rlcourse.rlhf.distributed`), rank k holds
n_k of the global batch's N = Σ_k n_k response tokens and its share of the loss is its own
token mean times n_k / N; the shares, and their gradients, add up to L_SFT of the global
batch exactly. (Averaging the ranks' token means would weigh a token on a rank with few
tokens more than one on a rank with many.)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from rlcourse.config import check_range
from rlcourse.rlhf import distributed
from rlcourse.rlhf.batching import TokenBatch, encode
from rlcourse.rlhf.model import autocast, token_logprobs
from rlcourse.run import NonFiniteError


def sft_loss(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> Tensor:
    """Mean cross-entropy over the response tokens of a right-padded batch (prompt and padding masked)."""
    ### BEGIN SOLUTION
    logp = token_logprobs(model, input_ids, attention_mask)
    mask = response_mask[:, 1:].to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp(min=1)
    ### END SOLUTION


# ---------------------------------------------------------------- training


def check_training_fields(config) -> None:
    """The checks every stage's config shares (SFT, reward model, DPO): optimiser, batches, seed."""
    check_range(config, "lr", 0, None, low_open=True)
    check_range(config, "epochs", 1, None, integer=True)
    check_range(config, "batch_size", 1, None, integer=True)
    check_range(config, "max_length", 2, None, integer=True)
    check_range(config, "weight_decay", 0, None)
    check_range(config, "max_grad_norm", 0, None, low_open=True)
    check_range(config, "seed", 0, None, integer=True)


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Hyperparameters of :func:`train_sft`. The defaults fit the toy task's tiny GPT-2."""

    lr: float = 1e-3  # AdamW step size
    epochs: int = 3  # passes over the demonstrations
    batch_size: int = 32  # demonstrations per minibatch
    max_length: int = 32  # tokens per sequence; longer responses are cut
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this
    seed: int = 0  # order of the minibatches (and dropout, if the model has any)

    def __post_init__(self):
        check_training_fields(self)


def minibatches(n: int, batch_size: int, epochs: int, generator: torch.Generator) -> Iterator[tuple[int, list[int]]]:
    """Yield ``(epoch, indices)``: each epoch a fresh random permutation of range(n), cut into minibatches."""
    for epoch in range(epochs):
        for index in torch.randperm(n, generator=generator).split(batch_size):
            yield epoch, index.tolist()


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float,
    what: str,
    step: int,
    all_reduce: bool = False,
) -> float:
    """Back-propagate ``loss``, clip the gradient's norm, step; return the norm before clipping.

    Raises :class:`~rlcourse.run.NonFiniteError` naming ``what`` and ``step`` when the loss or
    the gradient is NaN or infinite, before the parameters are touched.

    With ``all_reduce`` (data-parallel training, :mod:`rlcourse.rlhf.distributed`) ``loss`` is
    this process's share of the global loss: the check looks at the sum of the shares, so
    that every rank raises or none does, and the gradients are summed over the ranks before
    clipping, so that every rank takes the same step. Outside a process group it changes nothing.
    """
    total = distributed.all_reduce_sum(loss.detach()) if all_reduce else loss
    if not torch.isfinite(total):
        raise NonFiniteError(what, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if all_reduce:
        distributed.all_reduce_gradients(model)
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"{what} gradient", step)
    optimizer.step()
    return grad_norm


class training_mode:
    """``with training_mode(seed, model, ...):`` one torch thread, seeded torch RNG, models in
    train mode; afterwards the thread count, the global RNG and each model's mode come back."""

    def __init__(self, seed: int, *models: torch.nn.Module):
        self.seed, self.models = seed, models

    def __enter__(self):
        self.threads = torch.get_num_threads()
        self.modes = [m.training for m in self.models]
        self.rng = torch.random.fork_rng(devices=[])
        self.rng.__enter__()
        torch.manual_seed(self.seed)
        torch.set_num_threads(1)
        for m in self.models:
            m.train()

    def __exit__(self, *exc):
        for m, mode in zip(self.models, self.modes):
            m.train(mode)
        torch.set_num_threads(self.threads)
        self.rng.__exit__(*exc)


def train_sft(
    model: nn.Module,
    tokenizer,
    rows: Sequence[dict],
    config: SFTConfig = SFTConfig(),
    callback: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Fine-tune ``model`` in place on demonstrations ``{"prompt", "completion"}``; return the log.

    Each step takes a minibatch of rows, encodes ``<bos> prompt <sep> completion <eos>``
    (:func:`~rlcourse.rlhf.batching.encode`), and takes one AdamW step on :func:`sft_loss`,
    the mean cross-entropy of the response tokens. The log has one row per step: ``step``,
    ``epoch``, ``loss``, ``tokens`` (response tokens in the minibatch), ``grad_norm`` and
    ``time`` (seconds since the start). ``callback(step, model)`` runs after each step.
    Same seed, same model, same rows: the same log, bit for bit, on the CPU (``time`` aside).

    The model trains on its own device, with the forward pass under
    :func:`~rlcourse.rlhf.model.autocast` (bf16 on CUDA, float32 on the CPU). Inside a
    process group (``torchrun``, :mod:`rlcourse.rlhf.distributed`) it trains data-parallel:
    ``config.batch_size`` is the global batch, each rank scores its slice, and the log's
    ``loss``, ``tokens`` and ``grad_norm`` are those of the global batch, the same on every
    rank and, up to rounding, the same as one process's. ``callback`` runs on every rank.
    """
    if not rows:
        raise ValueError("train_sft: no rows to train on")
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    distributed.broadcast_parameters(model)  # data-parallel: every rank starts from rank 0's weights
    log, start = [], time.perf_counter()
    with training_mode(config.seed, model):
        for step, (epoch, index) in enumerate(minibatches(len(rows), config.batch_size, config.epochs, generator), 1):
            mine = distributed.shard(index)  # this rank's rows (all of them in one process)
            if mine:
                batch = encode(
                    tokenizer,
                    [rows[i]["prompt"] for i in mine],
                    [rows[i]["completion"] for i in mine],
                    config.max_length,
                )
                batch = TokenBatch(*(t.to(device) for t in batch))
                tokens = batch[2][:, 1:].sum()
                with autocast(device):
                    loss = sft_loss(model, *batch)
            else:  # an empty slice still joins the all-reduces, with no gradient
                tokens = torch.zeros((), dtype=torch.long, device=device)
                loss = torch.zeros((), device=device, requires_grad=True)
            total_tokens = distributed.all_reduce_sum(tokens)
            share = loss * (tokens / total_tokens.clamp(min=1))  # n_k / N; exactly 1 in one process
            grad_norm = optimizer_step(model, optimizer, share, config.max_grad_norm, "SFT loss", step, all_reduce=True)
            log.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": distributed.all_reduce_sum(share.detach()).item(),
                    "tokens": int(total_tokens),
                    "grad_norm": grad_norm,
                    "time": time.perf_counter() - start,
                }
            )
            if callback is not None:
                callback(step, model)
    return pd.DataFrame(log)
