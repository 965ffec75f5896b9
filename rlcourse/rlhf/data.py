"""Data files for lesson 7, in the JSONL formats TRL uses (one JSON object per line).

SFT, one demonstration per line::

    {"prompt": "praise the food", "completion": "great fresh and lovely"}

Preferences, one comparison per line::

    {"prompt": "praise the food", "chosen": "great and lovely", "rejected": "dull stale food"}

or a ranking of K responses, best first, which stands for all K(K−1)/2 comparisons it
implies (as in InstructGPT, where labellers ranked 4 to 9 responses at a time)::

    {"prompt": "praise the food", "responses": ["superb", "fine food", "stale"]}
    → (superb ≻ fine food), (superb ≻ stale), (fine food ≻ stale)

A malformed row stops the reader with a :class:`DataError` naming the file, the 1-based
line number and what is wrong. Blank lines are skipped; fields other than the ones above
are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rlcourse.rlhf import task
from rlcourse.run import atomic_write

SFT_FILE, PREFERENCES_FILE = "sft.jsonl", "preferences.jsonl"


class DataError(ValueError):
    """A data file has a row that cannot be used; the message names the file and line."""


def _rows(path: str | os.PathLike) -> Iterable[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def _text(row: dict, field: str, where: str) -> str:
    """``row[field]``, which must be a string that is not empty."""
    if field not in row:
        raise DataError(f"{where}: field {field!r} is missing")
    value = row[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {field!r} is empty")
    return value


def read_sft(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows ``{"prompt", "completion"}`` of an SFT file."""
    return [
        {
            "prompt": _text(row, "prompt", f"{path}, line {n}"),
            "completion": _text(row, "completion", f"{path}, line {n}"),
        }
        for n, row in _rows(path)
    ]


def read_prompts(path: str | os.PathLike) -> list[str]:
    """The ``prompt`` of every row of a JSONL file (an SFT or a preference file will do)."""
    return [_text(row, "prompt", f"{path}, line {n}") for n, row in _rows(path)]


def expand_ranking(prompt: str, responses: list[str]) -> list[dict[str, str]]:
    """The K(K−1)/2 pairs implied by ``responses`` ranked best first.

    In order: (0 ≻ 1), (0 ≻ 2), ..., (0 ≻ K−1), (1 ≻ 2), ..., (K−2 ≻ K−1).
    """
    return [
        {"prompt": prompt, "chosen": responses[i], "rejected": responses[j]}
        for i in range(len(responses))
        for j in range(i + 1, len(responses))
    ]


def read_preferences(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows ``{"prompt", "chosen", "rejected"}`` of a preference file, rankings expanded."""
    pairs = []
    for n, row in _rows(path):
        where = f"{path}, line {n}"
        prompt = _text(row, "prompt", where)
        if "responses" in row:
            responses = row["responses"]
            if not isinstance(responses, list) or len(responses) < 2:
                raise DataError(f"{where}: field 'responses' must be a list of at least 2 responses ranked best first")
            for k, response in enumerate(responses):
                if not isinstance(response, str) or not response.strip():
                    raise DataError(f"{where}: responses[{k}] must be a non-empty string")
            if len(set(responses)) < len(responses):
                raise DataError(f"{where}: field 'responses' lists the same response twice")
            pairs.extend(expand_ranking(prompt, responses))
        else:
            chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
            if chosen == rejected:
                raise DataError(f"{where}: 'chosen' and 'rejected' are the same response")
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write ``rows`` one JSON object per line, atomically (UTF-8); return the path."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return Path(path)


def toy_pairs(
    n: int, rng: np.random.Generator, noise_temperature: float | None = None, max_tries: int = 100
) -> list[dict[str, str]]:
    """``n`` preference rows for the toy task, the DPO paper's way.

    For each prompt, two responses are drawn from the SFT corpus's distribution
    (:func:`task.sample_completion`) until their ground-truth rewards differ (a tie says
    nothing about which is better), then labelled by :func:`task.label_pair`.
    """
    rows = []
    for prompt in task.sample_prompts(n, rng):
        for _ in range(max_tries):
            a, b = task.sample_completion(prompt, rng), task.sample_completion(prompt, rng)
            if task.reward(prompt, a) != task.reward(prompt, b):
                break
        else:
            raise RuntimeError(f"{max_tries} pairs of responses to {prompt!r} all tied")
        chosen, rejected = task.label_pair(prompt, a, b, rng, noise_temperature)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def make_toy_files(
    directory: str | os.PathLike,
    n_sft: int = 2000,
    n_pairs: int = 2000,
    seed: int = 0,
    noise_temperature: float | None = None,
) -> dict[str, Path]:
    """Write the toy task's ``sft.jsonl`` and ``preferences.jsonl`` into ``directory``.

    Returns ``{"sft": path, "preferences": path}``. The same seed writes the same files.
    (The pipeline draws its preference pairs from the trained SFT model instead; these
    files are the stand-alone data set.)
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    sft = write_jsonl(directory / SFT_FILE, task.sft_corpus(n_sft, rng))
    preferences = write_jsonl(directory / PREFERENCES_FILE, toy_pairs(n_pairs, rng, noise_temperature))
    return {"sft": sft, "preferences": preferences}
