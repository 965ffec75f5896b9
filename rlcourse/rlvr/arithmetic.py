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

A chat model is asked in words (:func:`question`, "What is 47 + 38?", rendered by its chat
template) and answers in its own phrasing ("47 + 38 = 85."): ``verify(..., free_text=True)``
reads the last number on the answer's first line (:func:`final_number`). :func:`operands`
finds the sum in either kind of prompt.

All (a, b) pairs are enumerable (10^(2·digits) of them); :func:`split` sets a fixed share
aside as held-out prompts that neither SFT nor RL ever trains on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rlcourse.rlhf.tokenizer import WordTokenizer

DIGITS = tuple(str(d) for d in range(10))
PLUS = "+"
VOCABULARY = (*DIGITS, PLUS)
SUM = re.compile(r"(\d[\d ]*\d|\d) *\+ *(\d[\d ]*\d|\d)")  # "4 7 + 3 8" or "47 + 38"
NUMBER = re.compile(r"\d+")


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


def question(a: int, b: int) -> str:
    """The problem in words, for a chat model: ``"What is 47 + 38?"``."""
    return f"What is {a} + {b}?"


def operands(text: str) -> tuple[int, int]:
    """(a, b) of a prompt: the last ``a + b`` in it (:func:`prompt`'s digits or :func:`question`'s numbers)."""
    found = SUM.findall(text)
    if not found:
        raise ValueError(f"operands: no sum a + b in the prompt {text!r}")
    left, right = found[-1]
    return int(left.replace(" ", "")), int(right.replace(" ", ""))


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


def final_number(response: str) -> int | None:
    """The number a free-text answer gives: the last number on its first non-empty line, or
    None ("47 + 38 = 85." → 85; "The sum is 85" → 85; "85" → 85). A model that rambles on
    after its answer is read by its first line."""
    lines = [line for line in response.splitlines() if line.strip()]
    numbers = NUMBER.findall(lines[0]) if lines else []
    return int(numbers[-1]) if numbers else None


def verify(prompt_text: str, response: str, free_text: bool = False) -> float:
    """1.0 if ``response`` is the sum asked for in ``prompt_text``, else 0.0: the answer is read
    by :func:`parse` (digits only), or by :func:`final_number` with ``free_text``."""
    a, b = operands(prompt_text)
    value = final_number(response) if free_text else parse(response)
    return 1.0 if value == a + b else 0.0


def reward(prompt_text: str, response: str, format_weight: float = 0.0, free_text: bool = False) -> float:
    """verify + ``format_weight`` · [the answer is a well-formed number of at most digits + 1
    digits; with ``free_text``, the answer writes a number at all]."""
    bonus = 0.0
    if format_weight:
        digits = len(prompt_text.partition(PLUS)[0].split())  # of the toy's prompt "4 7 + 3 8"
        value = final_number(response) if free_text else parse(response, digits + 1)
        bonus = format_weight * (value is not None)
    return verify(prompt_text, response, free_text) + bonus


def split(digits: int, heldout: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts): every problem of ``digits`` digits, shuffled by
    ``seed``, the first ``heldout`` set aside."""
    n = 10**digits
    if not 0 < heldout < n * n:
        raise ValueError(f"split: heldout = {heldout} is out of range: it must be in [1, {n * n - 1}]")
    order = np.random.default_rng(seed).permutation(n * n)
    prompts = [prompt(int(i) // n, int(i) % n, digits) for i in order]
    return prompts[heldout:], prompts[:heldout]


def sft_rows(prompts: Sequence[str], free_text: bool = False) -> list[dict]:
    """Demonstrations ``{"prompt", "completion"}`` with the correct answer, for lesson 7's
    ``train_sft``: the toy's digits ("8 5"), or with ``free_text`` the plain number ("85")."""
    return [{"prompt": p, "completion": str(sum(operands(p))) if free_text else answer(*operands(p))} for p in prompts]
