r"""pass@k: the chance that at least one of k sampled answers is correct.

Draw n ≥ k answers to a prompt, c of them correct. The unbiased estimator of pass@k
(Chen et al. 2021, the Codex paper) is the chance that a random k of the n include a
correct one:

.. math::

    \widehat{\text{pass@}k} = 1 - \binom{n-c}{k} \Big/ \binom{n}{k}
                            = 1 - \prod_{i=n-c+1}^{n} \Big(1 - \frac{k}{i}\Big),

averaged over prompts. pass@1 is the share of correct answers. Comparing pass@k before
and after RL for large k asks Yue et al.'s (2025) question: does RL find answers the base
model could not sample, or does it sharpen the ones it already could? If pass@1 rises but
pass@k for large k does not, RL has only moved probability onto answers that were there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from rlcourse.rlhf.batching import response_text, sample


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one prompt with ``c`` correct among ``n`` answers (needs k ≤ n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@torch.no_grad()
def correct_counts(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    verify: Callable[[str, str], float],
    n: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 512,
) -> np.ndarray:
    """For each prompt, how many of ``n`` answers sampled at ``temperature`` ``verify`` accepts (≥ 1 counts)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    repeated = [p for p in prompts for _ in range(n)]
    scores = []
    for start in range(0, len(repeated), batch_size):
        chunk = repeated[start : start + batch_size]
        batch = sample(model, tokenizer, chunk, max_new_tokens, temperature, generator)
        scores += [verify(p, r) >= 1 for p, r in zip(chunk, response_text(tokenizer, batch))]
    model.train(was_training)
    return np.asarray(scores).reshape(len(prompts), n).sum(1)


def pass_at_ks(counts: np.ndarray, n: int, ks: Sequence[int]) -> dict[str, float]:
    """``{"pass@k": mean over prompts}`` for each k, from :func:`correct_counts`."""
    return {f"pass@{k}": float(np.mean([pass_at_k(n, int(c), k) for c in counts])) for k in ks}
