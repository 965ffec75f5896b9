r"""Data-parallel SFT, reward-model training, DPO and GRPO over several processes, launched by ``torchrun``.

Data parallelism (what PyTorch's ``DistributedDataParallel`` does, written out here in a
few lines so that it can be read): K processes ("ranks") hold identical copies of the
model. Every step each rank takes its own slice of the *global* minibatch, computes the
gradient of its share of the loss, and the ranks add their gradients up (an all-reduce).
All of them then hold the global gradient, clip it and take the same optimiser step, so the
copies stay identical without ever sending weights.

Why the *sum* of the shares is the single-process loss. A loss that is a mean over the
items of a global batch (pairs for DPO and the reward model, response tokens for SFT,
answers or answer tokens for GRPO) splits over the ranks k with n_k items each,
N = Σ_k n_k, as

.. math::

    L = \frac{1}{N} \sum_{i=1}^{N} \ell_i
      = \sum_{k} \underbrace{\frac{n_k}{N} \cdot \frac{1}{n_k} \sum_{i \in k} \ell_i}_{\text{rank } k\text{'s share}},
    \qquad \nabla L = \sum_k \nabla(\text{share}_k).

So each rank scales its local mean by n_k / N and the gradients are *summed*. Averaging
the local means instead (the plain DDP recipe: every rank's loss weighs 1/K) is right only
when every n_k = N/K. It is not for SFT, whose loss averages over tokens and whose ranks
hold different numbers of them, nor for a last minibatch that does not split evenly, nor
for a rank whose slice is empty (a global batch smaller than K): it joins the all-reduces
with a zero share and a zero gradient. N is itself an all-reduce (a sum) of the n_k.

Every rank draws the same minibatch permutation (same seed), so they agree on the global
batches without talking; :func:`shard` gives a rank its contiguous slice. ``batch_size``
in the configs stays the *global* batch size: the same config gives the same updates on
one process or on K, up to the rounding of sums taken in another order (the tests measure
logged numbers within 5e-7 and parameters within about 1e-6 after a few AdamW steps,
except where the true gradient is zero and AdamW turns the rounding into steps; see
tests/test_rlhf_distributed.py). The logged numbers are global-batch values
(all-reduced), so every rank returns the same log; only the main rank (:func:`is_main`)
should write files or print.

GRPO (:mod:`rlcourse.rlvr.grpo`) shards *groups*, not answers: every rank picks the same P
prompts, and rank k samples, scores and trains on the G answers of each prompt in its
slice of them, since a group's baseline needs all of its rewards. Its minibatches are the
same permutation of the P groups on every rank, each rank training on the groups of the
minibatch that it holds; n_k counts its answers (or answer tokens, for the token-mean
aggregation). Sampling is the one step whose randomness must be placed: each rank draws
from its own stream (fast; the answers depend on the number of ranks), or each group from
its own (``sampling="per-group"``; the same answers on any number of ranks).

Launch, on one machine with two processes (two GPUs, or two CPU processes on gloo)::

    torchrun --nproc_per_node 2 -m rlcourse rlhf sft --out runs/sft
    torchrun --nproc_per_node 2 -m rlcourse rlhf reward --data data/preferences.jsonl --out runs/rm
    torchrun --nproc_per_node 2 -m rlcourse rlhf dpo --out runs/dpo
    torchrun --nproc_per_node 2 -m rlcourse rlvr train --out runs/grpo

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. The program calls :func:`setup`
first (it joins the process group: NCCL on CUDA, gloo on the CPU, and returns the device of
this process) and :func:`teardown` at the end. :func:`~rlcourse.rlhf.sft.train_sft`,
:func:`~rlcourse.rlhf.reward.train_reward`, :func:`~rlcourse.rlhf.dpo.train_dpo` and
:func:`~rlcourse.rlvr.grpo.train_grpo` notice the process group by themselves. Without
``torchrun`` all of this does nothing: one process, the whole batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


def launched_by_torchrun() -> bool:
    """True when the environment names this process's place in a group (``RANK``, ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(cuda: bool | None = None) -> torch.device:
    """Join the process group when launched by torchrun; return this process's device.

    With CUDA (``cuda=None``: when available) each process takes the GPU numbered by its
    ``LOCAL_RANK`` and the NCCL backend; on the CPU, the gloo backend. Without torchrun it
    joins nothing and returns the device alone. Calling it twice is harmless.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not launched_by_torchrun():
        return torch.device("cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not is_distributed():
        dist.init_process_group("nccl" if cuda else "gloo")
    return device


def teardown() -> None:
    """Leave the process group (when in one)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 … world_size − 1 (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes K (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0)."""
    return rank() == 0


def shard(index: Sequence[int]) -> list[int]:
    """This rank's contiguous slice of a global minibatch: rank k of K gets
    ``index[k·n // K : (k+1)·n // K]`` (sizes differ by at most one; some may be empty)."""
    n, k, size = len(index), rank(), world_size()
    return list(index[k * n // size : (k + 1) * n // size])


def all_reduce_sum(x: Tensor) -> Tensor:
    """Σ over the ranks of ``x`` (a new tensor); ``x`` itself outside a process group."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def broadcast_parameters(model: nn.Module) -> None:
    """Copy rank 0's parameters to every rank, so that all start from the same weights."""
    if is_distributed():
        for p in model.parameters():
            dist.broadcast(p.detach(), src=0)


@torch.no_grad()
def all_reduce_gradients(model: nn.Module) -> None:
    """Replace each gradient by its sum over the ranks (missing gradients count as zeros).

    The gradients go as one flat vector, one message instead of one per parameter.
    """
    if not is_distributed():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for grad, g in zip(grads, flat.split([p.numel() for p in params])):
        grad.copy_(g.view_as(grad))
