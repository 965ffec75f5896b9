r"""Lesson 8's whole run: a short SFT warm start, then RL with the verifier, pass@k before and after.

::

    tiny GPT-2 ──► SFT on correct sums (a few hundred steps: a modest pass@1)
                     │   pass@1, pass@k on held-out prompts                ("before")
                     ▼
                   GRPO / RLOO / Dr. GRPO / REINFORCE with the verifier's 0/1 reward
                     │   pass@1, pass@k on the same held-out prompts        ("after")

The held-out prompts (:func:`rlcourse.rlvr.arithmetic.split`) are never trained on, by SFT
or RL. With a pretrained chat model (``model="smollm2"``, a GGUF file, or a directory whose
tokenizer has a chat template) the same problems are asked in words through its chat template
and its answers read as free text (:func:`task_prompts`); set ``sft_epochs=0`` to start RL
from the model as it is. pass@k uses n = ``eval_samples`` answers per prompt at temperature 1, drawn with
the same seed before and after (:mod:`rlcourse.rlvr.passk`). The question of Yue et al.
(2025) is read off the two rows: RL lifts pass@1 a lot; does pass@k for large k move too?

:func:`run_rlvr` returns the summary (``before``, ``after``, ``lift`` = the change of
pass@1, ``curve`` = held-out pass@1 with n = 4 every ``eval_every`` iterations,
``seconds``) and, given ``out``, writes ``summary.json``, ``log.csv`` (the RL log, with
``heldout_pass@1`` every ``eval_every`` iterations), ``sft_log.csv``, ``train_config.json``
and the model (``save_pretrained``: its own ``config.json``, so ``--out`` reloads by path).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from rlcourse.config import check_choice, check_range
from rlcourse.rlhf.model import frozen_copy, load_model, tiny_gpt2
from rlcourse.rlhf.pipeline import save_lm, write_json
from rlcourse.rlhf.sft import SFTConfig, train_sft
from rlcourse.rlhf.tokenizer import FILENAME, ChatTokenizer, chat_prompt, load_tokenizer
from rlcourse.rlvr import arithmetic
from rlcourse.rlvr.grpo import METHODS, GRPOConfig, config_for, train_grpo
from rlcourse.rlvr.passk import correct_counts, pass_at_ks
from rlcourse.run import torch_threads


@dataclasses.dataclass(frozen=True)
class RLVRConfig:
    method: str = "grpo"  # grpo, dr_grpo, rloo, reinforce (the estimator and its aggregation)
    model: str = "toy"  # toy (a tiny GPT-2), gpt2, smollm2, a model directory or a .gguf file
    digits: int = 2  # digits of each operand
    heldout: int = 500  # problems set aside; never trained on
    eval_prompts: int = 200  # held-out prompts for pass@k
    eval_samples: int = 16  # n answers per prompt (pass@k for k ≤ n)
    eval_every: int = 0  # RL iterations between held-out pass@1 checks in the log (0: never)
    sft_epochs: int = 3  # passes of the SFT warm start over the training problems (0: none)
    sft_lr: float = 3e-3
    n_embd: int = 64  # the toy model's width
    n_layer: int = 2
    format_weight: float = 0.0  # reward bonus for a well-formed number
    max_new_tokens: int = 0  # the longest answer (0: digits + 2 for a word-tokenizer model, else 16)
    temperature: float = 1.0  # τ of sampling and scoring, in RL and in pass@k
    iterations: int = 300  # RL iterations (the GRPOConfig's other fields: run_rlvr's rl)
    seed: int = 0

    def __post_init__(self):
        check_choice(self, "method", tuple(METHODS))
        check_range(self, "digits", 1, 4, integer=True)
        check_range(self, "heldout", 1, 10 ** (2 * self.digits) - 1, integer=True)
        check_range(self, "eval_prompts", 1, self.heldout, integer=True)
        check_range(self, "eval_samples", 1, integer=True)
        check_range(self, "eval_every", 0, integer=True)
        check_range(self, "sft_epochs", 0, integer=True)
        check_range(self, "sft_lr", 0, None, low_open=True)
        check_range(self, "n_embd", 4, integer=True)
        check_range(self, "n_layer", 1, integer=True)
        check_range(self, "format_weight", 0, None)
        check_range(self, "max_new_tokens", 0, integer=True)
        check_range(self, "temperature", 0, None, low_open=True)
        check_range(self, "iterations", 1, integer=True)
        check_range(self, "seed", 0, integer=True)

    def answer_tokens(self) -> int:
        """The longest answer, <eos> included: ``max_new_tokens``, or when 0 the toy's digits + 2
        for a model with the toy's word tokenizer, else 16 (room for a pretrained model's phrasing)."""
        words = self.model == "toy" or (Path(self.model) / FILENAME).is_file()
        return self.max_new_tokens or (self.digits + 2 if words else 16)

    def ks(self) -> list[int]:
        """1, 4, 16, … up to n: the k of pass@k reported."""
        return [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= self.eval_samples]


def build(config: RLVRConfig) -> tuple[nn.Module, object]:
    """(model, tokenizer): a fresh tiny GPT-2 with the arithmetic tokenizer for ``"toy"``,
    else a pretrained model by hub name (``"gpt2"``) or directory, with its own tokenizer."""
    if config.model != "toy":
        return load_model(config.model), load_tokenizer(config.model)
    tokenizer = arithmetic.tokenizer()
    model = tiny_gpt2(
        tokenizer.vocab_size,
        n_positions=4 * config.digits + 8,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=4,
        seed=config.seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model, tokenizer


def task_prompts(tokenizer, config: RLVRConfig) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts) of :func:`rlcourse.rlvr.arithmetic.split`, as the
    model reads them: the toy's digits ("4 7 + 3 8"), or for a chat model (a
    :class:`~rlcourse.rlhf.tokenizer.ChatTokenizer`) the question "What is 47 + 38?" rendered
    by its chat template."""
    train, heldout = arithmetic.split(config.digits, config.heldout)
    if not isinstance(tokenizer, ChatTokenizer):
        return train, heldout
    asked = {p: chat_prompt(tokenizer, arithmetic.question(*arithmetic.operands(p))) for p in train + heldout}
    return [asked[p] for p in train], [asked[p] for p in heldout]


def verifier(format_weight: float = 0.0, free_text: bool = False):
    """score(prompts, responses) -> Tensor[B] of :func:`rlcourse.rlvr.arithmetic.reward`."""

    def score(prompts, responses) -> torch.Tensor:
        return torch.tensor(
            [arithmetic.reward(p, r, format_weight, free_text) for p, r in zip(prompts, responses, strict=True)]
        )

    return score


def heldout_pass(model, tokenizer, prompts, config: RLVRConfig, n: int | None = None) -> dict[str, float]:
    """pass@k on held-out ``prompts`` (the same seed every time: before and after see the same
    draws); a chat model's answers are read as free text."""
    n = n or config.eval_samples
    free_text = isinstance(tokenizer, ChatTokenizer)

    def verify(prompt: str, response: str) -> float:
        return arithmetic.verify(prompt, response, free_text)

    counts = correct_counts(
        model, tokenizer, prompts, verify, n, config.answer_tokens(), config.temperature, seed=config.seed + 1
    )
    return pass_at_ks(counts, n, [k for k in config.ks() if k <= n])


def rl_config(config: RLVRConfig, **fields) -> GRPOConfig:
    """The :class:`GRPOConfig` of ``config.method`` with the run's iterations, answer length, temperature and seed."""
    defaults = {
        "iterations": config.iterations,
        "max_new_tokens": config.answer_tokens(),
        "temperature": config.temperature,
        "seed": config.seed,
    }
    return config_for(config.method, **{**defaults, **fields})


def run_rlvr(config: RLVRConfig = RLVRConfig(), rl: GRPOConfig | None = None, out: str | Path | None = None) -> dict:
    """SFT warm start, pass@k, RL, pass@k; return the summary (see the module docstring).

    ``rl`` defaults to :func:`rl_config` of ``config``."""
    rl = rl or rl_config(config)
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model, tokenizer = build(config)
        free_text = isinstance(tokenizer, ChatTokenizer)
        train, heldout = task_prompts(tokenizer, config)
        evaluation = heldout[: config.eval_prompts]
        start = time.perf_counter()
        sft_log = pd.DataFrame()
        if config.sft_epochs:
            length = 128 if free_text else 16  # a chat prompt is some 40 tokens, the toy's 7
            sft = SFTConfig(
                lr=config.sft_lr, epochs=config.sft_epochs, batch_size=64, max_length=length, seed=config.seed
            )
            sft_log = train_sft(model, tokenizer, arithmetic.sft_rows(train, free_text), sft)
        sft_seconds = time.perf_counter() - start
        before = heldout_pass(model, tokenizer, evaluation, config)
        log, rl_seconds = _reinforce(model, tokenizer, train, evaluation, config, rl)
        after = heldout_pass(model, tokenizer, evaluation, config)
    summary = {
        "method": config.method,
        "seed": config.seed,
        "before": before,
        "after": after,
        "lift": after["pass@1"] - before["pass@1"],
        "curve": log.dropna().set_index("iteration")["heldout_pass@1"].to_dict() if config.eval_every else {},
        "seconds": {"sft": sft_seconds, "rl": rl_seconds},
    }
    if out is not None:
        _write(Path(out), model, tokenizer, config, rl, summary, log, sft_log)
    return summary


def _reinforce(model, tokenizer, train, evaluation, config: RLVRConfig, rl: GRPOConfig) -> tuple[pd.DataFrame, float]:
    curve = {}

    def callback(iteration: int, policy: nn.Module) -> None:
        if config.eval_every and iteration % config.eval_every == 0:
            curve[iteration] = heldout_pass(policy, tokenizer, evaluation, config, n=4)["pass@1"]

    reference = frozen_copy(model) if rl.kl_coef > 0 else None
    start = time.perf_counter()
    score = verifier(config.format_weight, isinstance(tokenizer, ChatTokenizer))
    log = train_grpo(model, tokenizer, train, score, rl, reference, callback)
    seconds = time.perf_counter() - start
    if curve:
        log["heldout_pass@1"] = log["iteration"].map(curve)
    return log, seconds


def _write(out: Path, model, tokenizer, config, rl, summary, log, sft_log) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_lm(model, tokenizer, out)
    log.to_csv(out / "log.csv", index=False)
    sft_log.to_csv(out / "sft_log.csv", index=False)
    write_json(out / "train_config.json", {"rlvr": dataclasses.asdict(config), "grpo": dataclasses.asdict(rl)})
    write_json(out / "summary.json", summary)
