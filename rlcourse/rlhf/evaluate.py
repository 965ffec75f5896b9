r"""Evaluating a tuned language model: ground-truth reward, win rate, and KL to the reference.

Three numbers say how well RLHF or DPO did, as in the DPO paper's experiments:

* the **ground-truth reward** of the policy's samples, E_{p, y∼π}[r(p, y)], with the toy
  task's programmatic r (:func:`rlcourse.rlhf.task.reward`), not the learned reward model
  that PPO optimised (which it may have fooled);
* the **win rate** against a baseline (the SFT model): the share of prompts on which the
  policy's sample beats the baseline's, a tie counting half;
* the **KL divergence to the reference**, what the improvement cost: a sequence-level KL in
  nats, estimated from the policy's own samples,

  .. math::

      \mathrm{KL}[\pi \,\|\, \pi_{ref}] = \mathbb E_{p}\, \mathbb E_{y \sim \pi(\cdot \mid p)}
          \Big[\sum_t \log \frac{\pi(y_t \mid p, y_{<t})}{\pi_{ref}(y_t \mid p, y_{<t})}\Big].

Reward against KL, over a sweep of β, is the frontier the DPO paper plots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rlcourse.rlhf import task
from rlcourse.rlhf.batching import TokenBatch, response_text, sample
from rlcourse.rlhf.model import token_logprobs


@torch.no_grad()
def generate_and_score(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 12,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """Sample one response per prompt and score it with the ground truth: ``(responses, rewards)``.

    Sampling is plain softmax(logits / temperature) (:func:`~rlcourse.rlhf.batching.sample`)
    with a generator seeded by ``seed``, so the same seed and model give the same samples.
    ``rewards[i]`` is r(prompts[i], responses[i]) = s(p) · (#positive − #negative) / len(y).
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    batch = sample(model, tokenizer, prompts, max_new_tokens, temperature, generator)
    model.train(was_training)
    responses = response_text(tokenizer, batch)
    rewards = np.array([task.reward(p, y) for p, y in zip(prompts, responses)], dtype=float)
    return responses, rewards


def win_rate(rewards_a, rewards_b) -> float:
    r"""The share of prompts on which a's reward beats b's, ties counting half:

    .. math::

        W(a, b) = \frac{1}{N} \sum_{i=1}^{N} \Big(\mathbb 1[r_{a,i} > r_{b,i}] + \tfrac12 \mathbb 1[r_{a,i} = r_{b,i}]\Big),

    so W(a, b) + W(b, a) = 1 and a model against itself scores 1/2.
    """
    a, b = np.asarray(rewards_a, dtype=float), np.asarray(rewards_b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"win_rate: the rewards must be two non-empty arrays of the same shape, got {a.shape} and {b.shape}"
        )
    return float(np.mean((a > b) + 0.5 * (a == b)))


@torch.no_grad()
def _log_ratios(
    policy: nn.Module, reference: nn.Module, batch: TokenBatch, temperature: float
) -> tuple[Tensor, Tensor]:
    """log π(x_t | x_<t) − log π_ref(x_t | x_<t) per token, [B, L − 1], and the response mask [B, L − 1]."""
    device = next(policy.parameters()).device
    input_ids, attention_mask, response_mask = (t.to(device) for t in batch)
    modes = policy.training, reference.training
    policy.eval()
    reference.eval()
    logp = token_logprobs(policy, input_ids, attention_mask, temperature)
    logp_ref = token_logprobs(reference, input_ids, attention_mask, temperature)
    policy.train(modes[0])
    reference.train(modes[1])
    mask = response_mask[:, 1:].to(logp.dtype)
    return (logp - logp_ref) * mask, mask


def sequence_kl(policy: nn.Module, reference: nn.Module, batch: TokenBatch, temperature: float = 1.0) -> float:
    r"""The k1 estimate of the sequence-level KL[π ‖ π_ref] in nats, from samples y ∼ π in ``batch``:

    .. math::

        \widehat{\mathrm{KL}}_1 = \frac{1}{B} \sum_{b=1}^{B} \sum_t m_{b,t}
            \big(\log \pi(x_{b,t} \mid x_{b,<t}) - \log \pi_{ref}(x_{b,t} \mid x_{b,<t})\big).

    Unbiased when the responses were sampled from π at ``temperature`` (and are scored at that
    temperature); a single sample's term can be negative, the mean is the KL. Tokens of the
    prompt and padding are masked out by the response mask m.
    """
    log_ratio, _ = _log_ratios(policy, reference, batch, temperature)
    return log_ratio.sum(-1).mean().item()


def k3_kl(policy: nn.Module, reference: nn.Module, batch: TokenBatch, temperature: float = 1.0) -> float:
    r"""The k3 estimate of the sequence-level KL[π ‖ π_ref] in nats (Schulman, *Approximating KL
    divergence*, 2020), from samples y ∼ π in ``batch``. Per response token, with
    r_t = π_ref(x_t | x_<t) / π(x_t | x_<t),

    .. math::

        k_3 = (r_t - 1) - \log r_t \;\ge\; 0, \qquad
        \widehat{\mathrm{KL}}_3 = \frac{1}{B} \sum_b \sum_t m_{b,t}\, k_3(r_{b,t}).

    E_π[r_t − 1] = 0, so each token's k3 is unbiased for that token's KL, and since
    log r ≤ r − 1 no term is ever negative: unlike k1, a batch can never report a negative KL.
    """
    log_ratio, mask = _log_ratios(policy, reference, batch, temperature)
    log_r = -log_ratio
    k3 = (torch.expm1(log_r) - log_r).clamp(min=0) * mask
    return k3.sum(-1).mean().item()
