"""The shipped toy task, "prompted sentiment": RLHF with no downloads.

A prompt is a short word sequence that begins with an *instruction word*, ``praise`` or
``criticise``, followed by what to talk about (``praise the old film``). A response is a
sequence of plain English words. The ground-truth reward is the response's sentiment,
signed by the instruction::

    s(x)    = +1 if x begins with "praise", −1 if it begins with "criticise"
    r(x, y) = s(x) · (#positive(y) − #negative(y)) / |y|        ∈ [−1, 1]

with r = 0 for an empty response. The same response scores +r under one instruction and
−r under the other, so a policy that merely shifts its unigram distribution towards
positive words cannot solve the task: it has to read the prompt.

**SFT corpus.** Each response word is drawn independently: with probability ``p_aligned``
a word of the sentiment the instruction asks for, with ``p_opposed`` a word of the opposite
sentiment, otherwise a neutral word. For any length, E[r] = p_aligned − p_opposed, which
the defaults make mildly negative (−0.2): the SFT model starts below zero, and RL or DPO
have room to improve it.

**Preference labels (Bradley–Terry).** A labeller compares responses a and b to the same
prompt. Without noise it prefers the higher ground-truth reward. With label noise of
temperature T it follows the Bradley–Terry model::

    P(a ≻ b) = σ((r_a − r_b) / T),        σ(z) = 1 / (1 + e^(−z))

so near-ties are labelled almost at random and clear differences almost always right.
No model can predict such labels better than the labeller's own probabilities, so the
best accuracy achievable on a pair is max(p, 1 − p) with p = P(a ≻ b), and on a data set
the mean of that (:func:`bt_accuracy_ceiling`). That is the yardstick for the reward model.

Everything random takes a ``numpy.random.Generator``: same generator state, same output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

PRAISE, CRITICISE = "praise", "criticise"
#: The instruction word a prompt begins with, and the sign it gives the reward.
INSTRUCTIONS = {PRAISE: +1, CRITICISE: -1}

POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "lovely",
    "brilliant",
    "delightful",
    "superb",
    "happy",
    "pleasant",
    "charming",
    "fantastic",
    "beautiful",
    "perfect",
    "fine",
    "nice",
    "amazing",
    "enjoyable",
    "fresh",
    "friendly",
)
NEGATIVE = (
    "bad",
    "awful",
    "terrible",
    "horrible",
    "poor",
    "boring",
    "dull",
    "ugly",
    "nasty",
    "sad",
    "dreadful",
    "weak",
    "rude",
    "stale",
    "broken",
    "annoying",
    "bland",
    "messy",
    "painful",
    "worst",
)
#: What a prompt asks about, and modifiers that may come before it.
TOPICS = ("food", "film", "book", "service", "room", "music", "staff", "place", "story", "game")
MODIFIERS = ("old", "new", "small", "big", "local")
#: Filler words: neither positive nor negative.
FILLER = ("the", "a", "and", "was", "is", "it", "very", "quite", "really", "with")
NEUTRAL = FILLER + TOPICS + MODIFIERS

#: Every word the task uses, in a fixed order (the tokenizer is built from it).
VOCABULARY = tuple(INSTRUCTIONS) + POSITIVE + NEGATIVE + NEUTRAL

_POSITIVE, _NEGATIVE = frozenset(POSITIVE), frozenset(NEGATIVE)
_PUNCTUATION = ".,;:!?\"'()"


def words(text: str | Sequence[str]) -> list[str]:
    """Split ``text`` into lower-case words (a list of words is passed through, lower-cased).

    Punctuation around a word is dropped, so the reward also reads ordinary text, such as
    GPT-2's samples.
    """
    items = text.split() if isinstance(text, str) else list(text)
    out = []
    for item in items:
        word = item.strip(_PUNCTUATION).lower()
        if word:
            out.append(word)
    return out


def prompt_sign(prompt: str | Sequence[str]) -> int:
    """s(x): +1 for a prompt that begins with "praise", −1 for one that begins with "criticise"."""
    prompt_words = words(prompt)
    if not prompt_words or prompt_words[0] not in INSTRUCTIONS:
        first = prompt_words[0] if prompt_words else "nothing"
        raise ValueError(
            f"prompt {' '.join(prompt_words)!r} begins with {first!r}: a prompt must "
            f"begin with an instruction word, one of {', '.join(INSTRUCTIONS)}"
        )
    return INSTRUCTIONS[prompt_words[0]]


def sentiment(response: str | Sequence[str]) -> float:
    """(#positive − #negative) / length of the response; 0 for an empty response."""
    response_words = words(response)
    if not response_words:
        return 0.0
    score = sum(w in _POSITIVE for w in response_words) - sum(w in _NEGATIVE for w in response_words)
    return score / len(response_words)


def reward(prompt: str | Sequence[str], response: str | Sequence[str]) -> float:
    """The ground truth r(x, y) = s(x) · (#positive − #negative) / len(y), in [−1, 1].

    Both arguments may be a string or a list of words; words outside the vocabulary count
    as neutral.
    """
    return prompt_sign(prompt) * sentiment(response)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} = {value!r} must be an integer >= 0")


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), not {type(rng).__name__}")


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def sample_prompts(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` prompts such as ``"praise the food"`` or ``"criticise the old film"``.

    The instruction is praise or criticise with equal probability; half the prompts carry a
    modifier before the topic.
    """
    _check_count("n", n)
    _check_rng(rng)
    prompts = []
    for _ in range(n):
        prompt = [_pick(tuple(INSTRUCTIONS), rng), "the"]
        if rng.random() < 0.5:
            prompt.append(_pick(MODIFIERS, rng))
        prompt.append(_pick(TOPICS, rng))
        prompts.append(" ".join(prompt))
    return prompts


def sample_completion(
    prompt: str | Sequence[str],
    rng: np.random.Generator,
    *,
    length: tuple[int, int] = (4, 8),
    p_aligned: float = 0.2,
    p_opposed: float = 0.4,
) -> str:
    """One response to ``prompt`` drawn the way the SFT corpus is.

    The length is uniform on ``length`` (both ends included). Each word is, independently,
    a word of the sentiment the instruction asks for (probability ``p_aligned``), of the
    opposite sentiment (``p_opposed``), or neutral (the rest), so E[r] = p_aligned − p_opposed.
    """
    low, high = length
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ValueError(f"length = {length!r} must be (low, high) with 1 <= low <= high")
    for name, p in (("p_aligned", p_aligned), ("p_opposed", p_opposed)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} = {p!r} is out of range: it must be in [0, 1]")
    if p_aligned + p_opposed > 1:
        raise ValueError(f"p_aligned + p_opposed = {p_aligned + p_opposed:g} must be at most 1")
    _check_rng(rng)
    aligned, opposed = (POSITIVE, NEGATIVE) if prompt_sign(prompt) > 0 else (NEGATIVE, POSITIVE)
    out = []
    for _ in range(int(rng.integers(low, high + 1))):
        u = rng.random()
        group = aligned if u < p_aligned else opposed if u < p_aligned + p_opposed else NEUTRAL
        out.append(_pick(group, rng))
    return " ".join(out)


def sft_corpus(
    n: int,
    rng: np.random.Generator,
    *,
    length: tuple[int, int] = (4, 8),
    p_aligned: float = 0.2,
    p_opposed: float = 0.4,
) -> list[dict[str, str]]:
    """``n`` SFT rows ``{"prompt": ..., "completion": ...}`` (TRL's field names).

    The completions are mildly negative with respect to their instruction: with the default
    probabilities E[r] = 0.2 − 0.4 = −0.2. See :func:`sample_completion` for the arguments.
    """
    prompts = sample_prompts(n, rng)
    return [
        {
            "prompt": prompt,
            "completion": sample_completion(prompt, rng, length=length, p_aligned=p_aligned, p_opposed=p_opposed),
        }
        for prompt in prompts
    ]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def _check_temperature(noise_temperature) -> None:
    if noise_temperature is not None and not (
        isinstance(noise_temperature, (int, float))
        and not isinstance(noise_temperature, bool)
        and math.isfinite(noise_temperature)
        and noise_temperature > 0
    ):
        raise ValueError(
            f"noise_temperature = {noise_temperature!r} is out of range: it must be None (no noise) or in (0, inf)"
        )


def preference_probability(r_a, r_b, noise_temperature: float | None = None):
    """P(a ≻ b) = σ((r_a − r_b) / T) under Bradley–Terry noise of temperature T.

    Without noise (T = None) this is 1, 0, or 1/2 for a tie (a coin decides). Works on
    numbers or arrays.
    """
    _check_temperature(noise_temperature)
    difference = np.asarray(r_a, dtype=float) - np.asarray(r_b, dtype=float)
    if noise_temperature is None:
        p = np.where(difference > 0, 1.0, np.where(difference < 0, 0.0, 0.5))
    else:
        p = _sigmoid(difference / noise_temperature)
    return float(p) if p.ndim == 0 else p


def bt_accuracy_ceiling(r_a, r_b, noise_temperature: float | None = None) -> float:
    """The best accuracy any model can reach on labels drawn with :func:`label_pair`.

    For one pair that is max(p, 1 − p) with p = P(a ≻ b); for arrays of pairs, the mean of
    it. Without noise it is 1, except that a tie is a coin flip (1/2).
    """
    p = np.asarray(preference_probability(r_a, r_b, noise_temperature))
    return float(np.mean(np.maximum(p, 1.0 - p)))


def label_pair(
    prompt: str | Sequence[str], a: str, b: str, rng: np.random.Generator, noise_temperature: float | None = None
) -> tuple[str, str]:
    """Label responses ``a`` and ``b`` to ``prompt``; return ``(chosen, rejected)``.

    ``a`` is chosen with probability P(a ≻ b) = σ((r_a − r_b) / T), r the ground truth. With
    ``noise_temperature=None`` the higher reward always wins and a tie is a coin flip.
    """
    _check_rng(rng)
    p = preference_probability(reward(prompt, a), reward(prompt, b), noise_temperature)
    a_wins = p == 1.0 or (p > 0.0 and rng.random() < p)
    return (a, b) if a_wins else (b, a)


def mean_reward(prompts: Iterable[str], responses: Iterable[str]) -> float:
    """The average ground-truth reward of ``responses`` to their ``prompts`` (0 if there are none)."""
    rewards = [reward(x, y) for x, y in zip(prompts, responses, strict=True)]
    return float(np.mean(rewards)) if rewards else 0.0
