"""The shipped verifiable task: multi-digit addition, and the program that checks an answer.

A prompt is two numbers of ``digits`` digits each (leading zeros kept, one token per
digit) and a plus sign; the answer is their sum, most significant digit first, without
leading zeros::

    prompt   "4 7 + 3 8"        answer   "8 5"
    prompt   "0 9 + 9 5"        answer   "1 0 4"

The verifier (:func:`verify`) parses the answer and returns 1 when it is the sum and 0
otherwise: the reward of RL with verifiable rewards is a program, not a learned model, so
the policy cannot exploit it. :func:`reward` adds an optional format reward, a small
bonus for an answer that is a well-formed number (only digits, not too long), whatever
its value.

All (a, b) pairs are enumerable (10^(2·digits) of them); :func:`split` sets a fixed share
aside as held-out prompts that neither SFT nor RL ever trains on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlcourse.rlhf.tokenizer import WordTokenizer

DIGITS = tuple(str(d) for d in range(10))
PLUS = "+"
VOCABULARY = (*DIGITS, PLUS)


def tokenizer() -> WordTokenizer:
    """One token per digit and one for ``+``, after the four special tokens of lesson 7."""
    return WordTokenizer(VOCABULARY)


def prompt(a: int, b: int, digits: int) -> str:
    """``"a + b"`` with each number written as ``digits`` space-separated digits."""
    if not (0 <= a < 10**digits and 0 <= b < 10**digits):
        raise ValueError(f"prompt: {a} and {b} must be in [0, {10**digits - 1}] for {digits} digits")
    return f"{' '.join(f'{a:0{digits}d}')} {PLUS} {' '.join(f'{b:0{digits}d}')}"


def answer(a: int, b: int) -> str:
    """The correct answer: the digits of a + b, space-separated."""
    return " ".join(str(a + b))


def operands(text: str) -> tuple[int, int]:
    """(a, b) of a prompt written by :func:`prompt`."""
    left, _, right = text.partition(PLUS)
    return int("".join(left.split())), int("".join(right.split()))


def parse(response: str, max_digits: int | None = None) -> int | None:
    """The number an answer writes, or None if it is not a number (empty, a non-digit token,
    a leading zero, or more than ``max_digits`` digits)."""
    tokens = response.split()
    if not tokens or not all(t in DIGITS for t in tokens):
        return None
    if len(tokens) > 1 and tokens[0] == "0":
        return None
    if max_digits is not None and len(tokens) > max_digits:
        return None
    return int("".join(tokens))


def verify(prompt_text: str, response: str) -> float:
    """1.0 if ``response`` is the sum asked for in ``prompt_text``, else 0.0."""
    a, b = operands(prompt_text)
    return 1.0 if parse(response) == a + b else 0.0


def reward(prompt_text: str, response: str, format_weight: float = 0.0) -> float:
    """verify + ``format_weight`` · [the answer is a well-formed number of at most digits + 1 digits]."""
    bonus = 0.0
    if format_weight:
        digits = len(prompt_text.partition(PLUS)[0].split())
        bonus = format_weight * (parse(response, digits + 1) is not None)
    return verify(prompt_text, response) + bonus


def split(digits: int, heldout: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts): every problem of ``digits`` digits, shuffled by
    ``seed``, the first ``heldout`` set aside."""
    n = 10**digits
    if not 0 < heldout < n * n:
        raise ValueError(f"split: heldout = {heldout} is out of range: it must be in [1, {n * n - 1}]")
    order = np.random.default_rng(seed).permutation(n * n)
    prompts = [prompt(int(i) // n, int(i) % n, digits) for i in order]
    return prompts[heldout:], prompts[:heldout]


def sft_rows(prompts: Sequence[str]) -> list[dict]:
    """Demonstrations ``{"prompt", "completion"}`` with the correct answer, for lesson 7's ``train_sft``."""
    return [{"prompt": p, "completion": answer(*operands(p))} for p in prompts]
