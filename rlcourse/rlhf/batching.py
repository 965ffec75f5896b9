r"""From text to the tensors every stage reads, and sampling responses from a model.

One layout for every stage. A sequence is ``[<bos>] prompt [<sep>] response [<eos>]``:
the prompt's tokens are the state the model starts from, the response's tokens (and the
closing ``<eos>``) are the actions. A batch is right-padded:

* ``input_ids`` [B, L] the tokens, padding at the end;
* ``attention_mask`` [B, L] 1 on real tokens, 0 on padding;
* ``response_mask`` [B, L] 1 on the response's tokens and its ``<eos>``: the positions
  whose log-probability the losses sum (:func:`rlcourse.rlhf.model.sequence_logprobs`).

Sampling (:func:`sample`) draws each token from :math:`\operatorname{softmax}(z / \tau)`
with temperature τ, and nothing else: no top-k, no top-p, no repetition penalty. The
log-probabilities PPO scores the samples with later use the same τ, so the KL estimate
between the policy and its reference is measured on the distribution that was sampled.
(Sampling with top-k but scoring without it makes log π of the samples too high and the
estimated KL biased; with the k1 estimator it can go negative, and PPO learns to exploit
that.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rlcourse.rlhf.model import position_ids_from_mask


class TokenBatch(NamedTuple):
    input_ids: Tensor  # [B, L]
    attention_mask: Tensor  # [B, L]
    response_mask: Tensor  # [B, L]


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """``[<bos>] prompt [<sep>]`` as token ids."""
    return [tokenizer.bos_token_id, *tokenizer.encode(prompt), tokenizer.sep_token_id]


def encode(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int | None = None) -> TokenBatch:
    """The right-padded batch of ``prompt + response + <eos>`` sequences."""
    if len(prompts) != len(responses):
        raise ValueError(f"encode: {len(prompts)} prompts but {len(responses)} responses")
    pieces = [
        (prompt_ids(tokenizer, p), [*tokenizer.encode(r), tokenizer.eos_token_id]) for p, r in zip(prompts, responses)
    ]
    return from_pieces(pieces, tokenizer.pad_token_id, max_length)


def from_pieces(
    pieces: Sequence[tuple[list[int], list[int]]], pad_id: int, max_length: int | None = None
) -> TokenBatch:
    """A right-padded batch from (prompt ids, response ids) pairs; responses cut to fit ``max_length``."""
    rows = []
    for prompt, response in pieces:
        if max_length is not None:
            response = response[: max(0, max_length - len(prompt))]
        rows.append((prompt, response))
    length = max(len(p) + len(r) for p, r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    response_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (prompt, response) in enumerate(rows):
        n, m = len(prompt), len(response)
        input_ids[i, : n + m] = torch.tensor(prompt + response, dtype=torch.long)
        attention_mask[i, : n + m] = 1
        response_mask[i, n : n + m] = 1
    return TokenBatch(input_ids, attention_mask, response_mask)


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """Sample one response per prompt, token by token, from softmax(logits / temperature).

    The prompts are left-padded while generating, so every row's next token sits in the
    last column; a row stops after its ``<eos>`` (later positions are padding). Returns the
    samples in the common right-padded layout. Each step runs the whole prefix again:
    for the short sequences of the toy task that costs less than keeping a cache.
    """
    if temperature <= 0:
        raise ValueError(f"sample: temperature = {temperature!r} is out of range: it must be in (0, inf)")
    device = next(model.parameters()).device
    prompts_ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(p) for p in prompts_ids)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts_ids):
        ids[i, width - len(p) :] = torch.tensor(p, device=device)
        mask[i, width - len(p) :] = 1
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    generated = []
    for _ in range(max_new_tokens):
        logits = (
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False)
            .logits[:, -1]
            .float()
        )
        token = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        generated.append(token)
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
        done |= token == tokenizer.eos_token_id
        if done.all():
            break
    new = torch.stack(generated, 1).cpu() if generated else torch.zeros((len(prompts), 0), dtype=torch.long)
    pieces = []
    for i, p in enumerate(prompts_ids):
        row = new[i].tolist()
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        pieces.append((p, row))
    return from_pieces(pieces, pad)


def response_text(tokenizer, batch: TokenBatch) -> list[str]:
    """The responses of a batch as text (without ``<eos>`` and padding)."""
    texts = []
    for ids, response in zip(batch.input_ids, batch.response_mask):
        tokens = [t for t in ids[response.bool()].tolist() if t != tokenizer.eos_token_id]
        texts.append(tokenizer.decode(tokens))
    return texts
