r"""The variance lesson, continued: every group estimator against the exact policy gradient.

A language model small enough to enumerate: a tiny GPT-2 whose answers are at most
``max_tokens`` tokens from the three-token alphabet {a, b, <eos>} (the other logits are
masked out, as constrained decoding does), so each prompt has
:math:`\sum_{k<T} 2^k + 2^T` possible answers. With a verifier R(x, y) ∈ {0, 1} per prompt
the objective and its gradient are finite sums:

.. math::

    J(\theta) = \frac{1}{P}\sum_x \sum_y \pi_\theta(y \mid x) R(x, y), \qquad
    \nabla J = \frac{1}{P}\sum_x \sum_y \pi_\theta(y \mid x) R(x, y)\, \nabla \log\pi_\theta(y \mid x).

Each estimator of lesson 8 draws G answers per prompt and returns
:math:`\hat g = \sum_{x,i} \Psi_{x,i} \sum_t w_{x,i,t} \nabla\log\pi_\theta(y_{x,i,t} \mid \cdot)`;
every token of an answer has the same Ψ and weight, so
:math:`\hat g = \sum_{x,i} c_{x,i}\, s(x, y_{x,i})` with :math:`s = \nabla\log\pi_\theta(y \mid x)`
(one vector per possible answer, computed once) and a coefficient c per sampled answer.
The mean and the covariance of ĝ then follow from those of the coefficients, measured
over many draws: :math:`\mathbb E\hat g = \bar c^\top S` and
:math:`\operatorname{tr}\operatorname{Cov}\hat g = \mathbb E[(c - \bar c)^\top S S^\top (c - \bar c)]`.

What the table says (:func:`bias_variance_table`):

* ``scale`` α, the least-squares fit :math:`\mathbb E\hat g \approx \alpha \nabla J`; ``bias``
  the rest, :math:`\lVert \mathbb E\hat g - \alpha\nabla J\rVert / \lVert \alpha\nabla J\rVert`:
  0 (up to the Monte-Carlo ``noise`` floor) means the estimator points where the true
  gradient does. REINFORCE and RLOO with a constant aggregation have α = 1/C; the
  group mean (Dr. GRPO) α = (G − 1)/(G·C): it counts r_i in its own baseline.
* ``prompt_weights``: the fit :math:`\mathbb E\hat g \approx \sum_x \lambda_x \nabla J_x`, λ
  normalised to mean 1. Equal weights for the unbiased estimators; GRPO's ÷σ gives the
  prompts the policy almost always or almost never solves the larger weights.
* ``length_drift``: the rate of change of the mean answer length :math:`\mathbb E|y|` along
  :math:`\mathbb E\hat g / \alpha`, against its value along ∇J (``exact`` row). Dividing by
  :math:`|y|` (sequence-mean) gives each token of a long answer less weight than a short one's:
  a long wrong answer is pushed down less, a short right one pushed up more, so the
  length moves in a way the true gradient does not ask for (Liu et al. 2025).
* ``variance``: :math:`\operatorname{tr}\operatorname{Cov}(\hat g/\alpha) / \lVert\nabla J\rVert^2`,
  the noise of one batch relative to the signal, at the same step size.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rlcourse.pg.psi import group_mean_baseline, grpo_advantages, no_baseline, rloo_advantages, token_weights
from rlcourse.rlhf.model import tiny_gpt2
from rlcourse.rlhf.tokenizer import WordTokenizer

WORDS = ("a", "b", "x", "y", "z")
ANSWER_WORDS = ("a", "b")


def easy(answer: str) -> float:
    """Prompt ``x``: any answer that does not begin with ``b``."""
    return float(answer.split()[:1] != ["b"])


def medium(answer: str) -> float:
    """Prompt ``y``: exactly ``b``."""
    return float(answer == "b")


def hard(answer: str) -> float:
    """Prompt ``z``: exactly ``a b a``."""
    return float(answer == "a b a")


VERIFIERS: dict[str, Callable[[str], float]] = {"x": easy, "y": medium, "z": hard}

#: name -> (Ψ of a group, aggregation).
ESTIMATORS = {
    "reinforce": (no_baseline, "constant"),
    "rloo": (rloo_advantages, "constant"),
    "group mean (Dr. GRPO)": (group_mean_baseline, "constant"),
    "group mean, sequence-mean": (group_mean_baseline, "sequence-mean"),
    "group mean, token-mean": (group_mean_baseline, "token-mean"),
    "std, constant": (grpo_advantages, "constant"),
    "GRPO (std, sequence-mean)": (grpo_advantages, "sequence-mean"),
}


@dataclasses.dataclass(frozen=True)
class Enumerated:
    """Every answer to every prompt, with its probability, reward, length and score vector."""

    prompts: list[str]
    answers: list[str]  # one list, prompt by prompt: answers[k] is for prompts[prompt_of[k]]
    prompt_of: np.ndarray  # [N]
    probs: np.ndarray  # [N] π(y | x)
    rewards: np.ndarray  # [N] R(x, y)
    lengths: np.ndarray  # [N] tokens, <eos> included
    scores: np.ndarray  # [N, d] ∇ log π(y | x)


def toy_model(seed: int = 0, sharpness: float = 3.0) -> tuple[nn.Module, WordTokenizer]:
    """A one-layer GPT-2 of 16 dimensions with its token embeddings scaled by ``sharpness``
    (peaked next-token distributions, as a trained model's are), in float64."""
    tokenizer = WordTokenizer(WORDS)
    model = (
        tiny_gpt2(
            tokenizer.vocab_size,
            n_positions=16,
            n_embd=16,
            n_layer=1,
            n_head=2,
            seed=seed,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        model.transformer.wte.weight.mul_(sharpness)
    return model, tokenizer


def all_answers(max_tokens: int) -> list[tuple[str, ...]]:
    """Every answer: k < max_tokens words then ``<eos>``, or max_tokens words (cut off)."""
    out: list[tuple[str, ...]] = []
    for k in range(max_tokens + 1):
        for words in itertools.product(ANSWER_WORDS, repeat=k):
            out.append((*words, "<eos>") if k < max_tokens else words)
    return out


def answer_logprobs(
    model: nn.Module, tokenizer: WordTokenizer, prompt: str, answers: Sequence[tuple[str, ...]]
) -> Tensor:
    """log π(y | x) of each answer under the constrained model (logits off {a, b, <eos>} masked)."""
    head = [tokenizer.bos_token_id, *tokenizer.encode(prompt), tokenizer.sep_token_id]
    rows = [head + tokenizer.encode(list(a)) for a in answers]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    lengths = torch.tensor([len(r) for r in rows])
    positions = torch.arange(width)
    attention = (positions < lengths[:, None]).long()
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1]
    allowed = torch.full((tokenizer.vocab_size,), float("-inf"), dtype=logits.dtype)
    allowed[tokenizer.encode(["a", "b", "<eos>"])] = 0.0
    logp = torch.log_softmax(logits + allowed, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    targets = positions[:-1]
    keep = (targets >= len(head) - 1) & (targets < lengths[:, None] - 1)
    return torch.where(keep, logp, 0.0).sum(-1)


def enumerate_policy(model: nn.Module, tokenizer: WordTokenizer, max_tokens: int = 3) -> Enumerated:
    """Probabilities, rewards, lengths and score vectors of every answer to the prompts x, y, z."""
    params = [p for p in model.parameters() if p.requires_grad]
    answers = all_answers(max_tokens)
    texts, prompt_of, probs, rewards, lengths, scores = [], [], [], [], [], []
    for index, (prompt, verifier) in enumerate(VERIFIERS.items()):
        logp = answer_logprobs(model, tokenizer, prompt, answers)
        for k, a in enumerate(answers):
            grads = torch.autograd.grad(logp[k], params, retain_graph=True)
            scores.append(torch.cat([g.flatten() for g in grads]).detach().numpy())
            text = " ".join(w for w in a if w != "<eos>")
            texts.append(text)
            prompt_of.append(index)
            probs.append(logp[k].exp().item())
            rewards.append(verifier(text))
            lengths.append(len(a))
    return Enumerated(
        list(VERIFIERS),
        texts,
        np.array(prompt_of),
        np.array(probs),
        np.array(rewards),
        np.array(lengths),
        np.stack(scores),
    )


def exact_gradient(e: Enumerated) -> np.ndarray:
    """∇J = (1/P) Σ_x Σ_y π(y|x) R(x, y) ∇log π(y|x)."""
    return (e.probs * e.rewards) @ e.scores / len(e.prompts)


def coefficients(e: Enumerated, estimator: str, group_size: int, draws: int, seed: int = 0) -> np.ndarray:
    """[draws, N]: each draw's coefficient c of every possible answer in ĝ = c @ S."""
    advantage, aggregation = ESTIMATORS[estimator]
    rng = np.random.default_rng(seed)
    P, G = len(e.prompts), group_size
    picks = np.stack(
        [
            np.flatnonzero(e.prompt_of == x)[
                rng.choice((e.prompt_of == x).sum(), (draws, G), p=e.probs[e.prompt_of == x])
            ]
            for x in range(P)
        ],
        1,
    )  # [draws, P, G] indices into the answers
    psi = advantage(torch.as_tensor(e.rewards[picks])).numpy()  # [draws, P, G]
    lengths = e.lengths[picks].reshape(draws, P * G)
    T = int(e.lengths.max())
    mask = torch.as_tensor(np.arange(T)[None, None] < lengths[..., None])  # [draws, P·G, T]
    per_answer = np.stack([token_weights(m, aggregation, constant=T)[:, 0].numpy() for m in mask])  # w of each token
    c = np.zeros((draws, len(e.probs)))
    np.add.at(c, (np.arange(draws)[:, None], picks.reshape(draws, -1)), psi.reshape(draws, -1) * per_answer)
    return c


def _directional(e: Enumerated, direction: np.ndarray) -> float:
    """d/dη of the mean answer length E|y| along ``direction``: (1/P) Σ π(y|x) |y| s(x, y)·direction."""
    return float((e.probs * e.lengths) @ (e.scores @ direction) / len(e.prompts))


def bias_variance_table(e: Enumerated, group_size: int = 4, draws: int = 4000, seed: int = 0) -> pd.DataFrame:
    """One row per estimator (and the exact gradient): the columns of the module docstring."""
    g = exact_gradient(e)
    per_prompt = np.stack([(e.probs * e.rewards * (e.prompt_of == x)) @ e.scores for x in range(len(e.prompts))], 1)
    K = e.scores @ e.scores.T
    rows = [
        {
            "estimator": "exact",
            "scale": 1.0,
            "bias": 0.0,
            "noise": 0.0,
            "variance": 0.0,
            "length_drift": _directional(e, g),
            **{f"weight {p}": 1.0 for p in e.prompts},
        }
    ]
    for name in ESTIMATORS:
        c = coefficients(e, name, group_size, draws, seed)
        mean = c.mean(0) @ e.scores
        alpha = float(mean @ g / (g @ g))
        centred = c - c.mean(0)
        trace = float(np.einsum("dn,nm,dm->d", centred, K, centred).mean())
        lam = np.linalg.lstsq(per_prompt, mean, rcond=None)[0]
        rows.append(
            {
                "estimator": name,
                "scale": alpha,
                "bias": float(np.linalg.norm(mean - alpha * g) / np.linalg.norm(alpha * g)),
                "noise": float(np.sqrt(trace / draws) / np.linalg.norm(alpha * g)),
                "variance": trace / alpha**2 / float(g @ g),
                "length_drift": _directional(e, mean / alpha),
                **{f"weight {p}": float(w) for p, w in zip(e.prompts, lam / lam.mean())},
            }
        )
    return pd.DataFrame(rows)


def success_rates(e: Enumerated) -> dict[str, float]:
    """J_x = Σ_y π(y|x) R(x, y) of each prompt."""
    return {p: float((e.probs * e.rewards)[e.prompt_of == x].sum()) for x, p in enumerate(e.prompts)}
