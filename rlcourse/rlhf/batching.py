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
that.) Generation keeps a key/value cache (:func:`generate`): each new token costs one
position's forward pass, not the whole prefix's.
"""

from __future__ import annotations

import inspect
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


def left_padded(tokenizer, prompts: Sequence[str], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """``[<bos>] prompt [<sep>]`` of each prompt, left-padded so that they all end in the last
    column: (ids, attention mask), both [B, P]."""
    prompts_ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(p) for p in prompts_ids)
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts_ids):
        ids[i, width - len(p) :] = torch.tensor(p, device=device)
        mask[i, width - len(p) :] = 1
    return ids, mask


def cache_argument(model: nn.Module) -> str:
    """The name of the key/value cache argument of ``model.forward``: ``cache`` in recent
    transformers releases, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def generate(
    model: nn.Module,
    ids: Tensor,
    mask: Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Draw up to ``max_new_tokens`` tokens after the left-padded prompts ``ids`` (mask ``mask``).

    Returns (tokens, log-probs), both [B, n] with n ≤ ``max_new_tokens``: the tokens drawn
    from softmax(z / τ) and log softmax(z / τ) of each, with ``pad_token_id`` and 0 after a
    row's ``<eos>``. Generation stops once every row has ended.

    With ``use_cache`` (the key/value cache, ``past_key_values``) the prompt runs once and
    each step feeds only the newest token, reading the keys and values of every earlier
    position from the cache: each step costs O(L) instead of the O(L²) of running the whole
    prefix again (``use_cache=False``). Both paths see the same tokens at the same positions
    (position ids from the mask, :func:`~rlcourse.rlhf.model.position_ids_from_mask`), so
    for the same ``generator`` they draw the same tokens, up to rounding in the logits.
    """
    if temperature <= 0:
        raise ValueError(f"generate: temperature = {temperature!r} is out of range: it must be in (0, inf)")
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    tokens, logps = [], []
    past, step_ids = None, ids
    for _ in range(max_new_tokens):
        positions = position_ids_from_mask(mask)
        if use_cache:
            cache: dict[str, object] = {cache_argument(model): past} if past is not None else {}
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions[:, -step_ids.shape[1] :],
                use_cache=True,
                **cache,
            )
            past = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        else:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        log_probs = torch.log_softmax(out.logits[:, -1].float() / temperature, -1)
        token = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
        logp = log_probs.gather(-1, token[:, None]).squeeze(-1)
        token = torch.where(done, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        logps.append(torch.where(done, torch.zeros_like(logp), logp))
        step_ids = token[:, None]
        ids = torch.cat([ids, step_ids], 1)
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
        done |= token == eos_token_id
        if done.all():
            break
    if not tokens:
        empty = torch.zeros((len(ids), 0), device=ids.device)
        return empty.long(), empty
    return torch.stack(tokens, 1), torch.stack(logps, 1)


def sample(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> TokenBatch:
    """Sample one response per prompt, token by token, from softmax(logits / temperature).

    The prompts are left-padded while generating (:func:`generate`, with the key/value
    cache unless ``use_cache=False``); a row stops after its ``<eos>``. Returns the samples
    in the common right-padded layout.
    """
    if temperature <= 0:
        raise ValueError(f"sample: temperature = {temperature!r} is out of range: it must be in (0, inf)")
    device = next(model.parameters()).device
    ids, mask = left_padded(tokenizer, prompts, device)
    new, _ = generate(
        model,
        ids,
        mask,
        max_new_tokens,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        temperature,
        generator,
        use_cache,
    )
    new = new.cpu()
    pieces = []
    for i, prompt in enumerate(prompts):
        row = new[i].tolist()
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        pieces.append((prompt_ids(tokenizer, prompt), row))
    return from_pieces(pieces, tokenizer.pad_token_id)


def response_text(tokenizer, batch: TokenBatch) -> list[str]:
    """The responses of a batch as text (without ``<eos>`` and padding)."""
    texts = []
    for ids, response in zip(batch.input_ids, batch.response_mask):
        tokens = [t for t in ids[response.bool()].tolist() if t != tokenizer.eos_token_id]
        texts.append(tokenizer.decode(tokens))
    return texts
