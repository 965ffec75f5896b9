r"""The whole toy RLHF pipeline in one call, as in the InstructGPT and DPO papers::

    SFT corpus ──► SFT ──► sample pairs from the SFT model ──► labels (ground truth + Bradley–Terry noise)
                    │                                          │
                    │                          ┌───────────────┴──────────────┐
                    │                          ▼                              ▼
                    │                     reward model r_φ                   DPO (β)
                    └────────────────────► PPO-RLHF with r_φ (β_KL)

Every stage starts from the SFT model; its frozen copy is the reference π_ref of PPO and
DPO. The pairs are drawn the DPO paper's way: two samples from the SFT model for each
prompt, labelled by the task's ground truth r(p, y) through the Bradley–Terry model with
temperature T (:func:`rlcourse.rlhf.task.label_pair`), ties dropped. A held-out part of the
pairs measures the reward model against the best accuracy the label noise allows.

Then every tuned model is judged by the ground truth on held-out prompts: its mean reward,
its win rate against the SFT model and its sequence-level KL to π_ref (k1, nats). A sweep
of DPO's β and of PPO's KL coefficient draws the reward-against-KL frontier of the DPO
paper's IMDb figure. :func:`run_pipeline` writes everything under one directory:

=========================== ==========================================================
``config.json``             the :class:`PipelineConfig` that ran
``sft/``                    the SFT model (``save_pretrained``) and tokenizer; ``log.csv``
``preferences.jsonl``       the training pairs; ``preferences_heldout.jsonl`` the rest
``reward/``                 the reward model and ``log.csv``
``ppo/``, ``dpo/``          the tuned policies and their logs
``frontier.csv``, ``.png``  ground-truth reward and KL of every β of the sweeps
``summary.json``            the numbers below, and the seconds each stage took
=========================== ==========================================================

``summary.json`` holds ``sft_reward``, ``dpo_reward``, ``dpo_win_rate``, ``dpo_kl``,
``ppo_reward``, ``ppo_win_rate``, ``ppo_kl``, ``ppo_rm_score``, ``rm_accuracy``,
``rm_accuracy_ceiling``, ``rm_accuracy_ratio`` and ``seconds``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rlcourse.config import ConfigError, apply_overrides, check_range, config_from_dict
from rlcourse.rlhf import task
from rlcourse.rlhf.batching import response_text, sample
from rlcourse.rlhf.data import write_jsonl
from rlcourse.rlhf.dpo import DPOConfig, train_dpo
from rlcourse.rlhf.evaluate import generate_and_score, sequence_kl, win_rate
from rlcourse.rlhf.model import frozen_copy, tiny_gpt2
from rlcourse.rlhf.ppo import PolicyWithValue, PPOConfig, normalisation, reward_model_score, train_ppo
from rlcourse.rlhf.reward import RewardConfig, RewardModel, evaluate_reward_model, train_reward
from rlcourse.rlhf.sft import SFTConfig, train_sft
from rlcourse.rlhf.tokenizer import WordTokenizer
from rlcourse.run import atomic_write, torch_threads

if TYPE_CHECKING:
    from transformers import PreTrainedModel

STAGES = ("sft", "reward", "dpo", "ppo")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What :func:`run_pipeline` does. The defaults meet lesson 7's bars in a few minutes on two CPU cores.

    Stage settings live in the nested configs; ``--set`` reaches them with a dotted name,
    e.g. ``--set dpo.beta=0.2 ppo.iterations=60 sft_rows=8000``.
    """

    seed: int = 0  # every stage's seed is derived from this one
    n_embd: int = 32  # the policy's tiny GPT-2: width, layers, heads
    n_layer: int = 2
    n_head: int = 2
    rm_n_embd: int = 64  # the reward model's body (same depth), trained from scratch
    rm_n_head: int = 4
    sft_rows: int = 4000  # demonstrations in the (mildly negative) SFT corpus
    pairs: int = 4000  # preference pairs for the reward model and DPO
    heldout_pairs: int = 500  # more pairs, kept out, to measure the reward model
    noise_temperature: float = 0.1  # T of the Bradley–Terry label noise (0: none)
    max_new_tokens: int = 12  # the longest sampled response
    eval_prompts: int = 256  # held-out prompts every model is judged on
    dpo_betas: tuple[float, ...] = (0.05, 1.0)  # the frontier's extra DPO runs (dpo.beta is run anyway)
    ppo_kl_coefs: tuple[float, ...] = (0.02, 0.2)  # the frontier's extra PPO runs (ppo.kl_coef is run anyway)
    sft: SFTConfig = dataclasses.field(default_factory=lambda: SFTConfig(lr=3e-3, epochs=8))
    reward: RewardConfig = dataclasses.field(default_factory=lambda: RewardConfig(epochs=6))
    dpo: DPOConfig = dataclasses.field(default_factory=lambda: DPOConfig(beta=0.2, lr=3e-3))
    ppo: PPOConfig = dataclasses.field(
        default_factory=lambda: PPOConfig(iterations=40, batch_size=32, minibatch_size=16, kl_coef=0.05)
    )

    def __post_init__(self):
        for name in ("seed",):
            check_range(self, name, 0, integer=True)
        for name in (
            "n_embd",
            "n_layer",
            "n_head",
            "rm_n_embd",
            "rm_n_head",
            "sft_rows",
            "pairs",
            "heldout_pairs",
            "max_new_tokens",
            "eval_prompts",
        ):
            check_range(self, name, 1, integer=True)
        for width, heads in (("n_embd", "n_head"), ("rm_n_embd", "rm_n_head")):
            if getattr(self, width) % getattr(self, heads):
                raise ConfigError(
                    f"PipelineConfig.{width} = {getattr(self, width)} must be a multiple of "
                    f"{heads} = {getattr(self, heads)}"
                )
        check_range(self, "noise_temperature", 0, None)
        for name in ("dpo_betas", "ppo_kl_coefs"):
            values = getattr(self, name)
            if not all(isinstance(v, (int, float)) and v > 0 for v in values):
                raise ConfigError(f"PipelineConfig.{name} = {values!r}: every value must be a number in (0, inf)")

    def with_overrides(self, overrides: dict[str, str]) -> PipelineConfig:
        """A copy with ``{"field": "text"}`` or ``{"stage.field": "text"}`` overrides parsed and checked."""
        flat: dict[str, str] = {}
        nested: dict[str, dict[str, str]] = {}  # stage → its overrides
        for key, text in overrides.items():
            stage, dot, field = key.partition(".")
            if dot:
                if stage not in STAGES:
                    raise ConfigError(f"PipelineConfig has no stage {stage!r}; its stages are: {', '.join(STAGES)}")
                nested.setdefault(stage, {})[field] = text
            else:
                flat[key] = text
        config = apply_overrides(self, flat) if flat else self
        changes = {stage: apply_overrides(getattr(config, stage), fields) for stage, fields in nested.items()}
        return dataclasses.replace(config, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PipelineConfig:
        stages = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig, "ppo": PPOConfig}
        values = dict(values)
        for stage, kind in stages.items():
            if stage in values:
                values[stage] = config_from_dict(kind, values[stage])
        return config_from_dict(cls, values)


#: Small budgets, for tests and ``rlcourse tour --quick``: the pipeline runs, the bars are not met.
QUICK: dict[str, Any] = dict(
    sft_rows=300,
    pairs=200,
    heldout_pairs=100,
    eval_prompts=32,
    n_embd=32,
    dpo_betas=(0.5,),
    ppo_kl_coefs=(),
    sft=SFTConfig(lr=3e-3, epochs=1),
    reward=RewardConfig(epochs=1),
    dpo=DPOConfig(epochs=1),
    ppo=PPOConfig(iterations=2, batch_size=16, minibatch_size=8),
)


# ---------------------------------------------------------------- preference pairs from a model


@torch.no_grad()
def sample_pairs(
    model: nn.Module, tokenizer, prompts: Sequence[str], noise_temperature: float | None, max_new_tokens: int, seed: int
) -> list[dict[str, str]]:
    """Preference rows drawn the DPO paper's way: two samples from ``model`` for each prompt,
    labelled by the ground truth through Bradley–Terry noise of temperature ``noise_temperature``
    (``None``: the better one always wins). Pairs whose two rewards tie say nothing and are
    dropped, so fewer rows than prompts may come back."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(prompts), 256):
        chunk = list(prompts[start : start + 256])
        a = response_text(tokenizer, sample(model, tokenizer, chunk, max_new_tokens, 1.0, generator))
        b = response_text(tokenizer, sample(model, tokenizer, chunk, max_new_tokens, 1.0, generator))
        for prompt, y1, y2 in zip(chunk, a, b):
            if task.reward(prompt, y1) != task.reward(prompt, y2):
                chosen, rejected = task.label_pair(prompt, y1, y2, rng, noise_temperature)
                rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    model.train(was_training)
    return rows


def preference_pairs(
    model: nn.Module, tokenizer, n: int, noise_temperature: float | None, max_new_tokens: int, seed: int
) -> list[dict[str, str]]:
    """Exactly ``n`` rows of :func:`sample_pairs`, drawing fresh prompts until there are enough."""
    rows: list[dict[str, str]] = []
    round_ = 0
    rng = np.random.default_rng(seed)
    while len(rows) < n:
        prompts = task.sample_prompts(max(64, int(1.3 * (n - len(rows)))), rng)
        rows += sample_pairs(model, tokenizer, prompts, noise_temperature, max_new_tokens, seed + 1000 * round_)
        round_ += 1
        if round_ > 20:
            raise RuntimeError(f"preference_pairs: the model's samples tie too often to make {n} pairs")
    return rows[:n]


def accuracy_ceiling(pairs: Sequence[dict], noise_temperature: float | None) -> float:
    """The best accuracy any reward model can reach on ``pairs`` labelled with this noise
    (:func:`rlcourse.rlhf.task.bt_accuracy_ceiling`)."""
    r_a = [task.reward(p["prompt"], p["chosen"]) for p in pairs]
    r_b = [task.reward(p["prompt"], p["rejected"]) for p in pairs]
    return task.bt_accuracy_ceiling(r_a, r_b, noise_temperature)


# ---------------------------------------------------------------- judging a model


@torch.no_grad()
def judge(
    policy: nn.Module,
    reference: nn.Module,
    baseline_rewards: np.ndarray | None,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
) -> dict[str, float]:
    """``{"reward", "win_rate", "kl"}`` of ``policy`` on ``prompts``: the mean ground-truth reward
    of its samples, their win rate against ``baseline_rewards`` (the SFT model's samples on the
    same prompts) and the k1 sequence KL to ``reference`` measured on the same samples."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = policy.training
    policy.eval()
    batch = sample(policy, tokenizer, prompts, max_new_tokens, 1.0, generator)
    policy.train(was_training)
    rewards = np.array([task.reward(p, y) for p, y in zip(prompts, response_text(tokenizer, batch))])
    return {
        "reward": float(rewards.mean()),
        "win_rate": win_rate(rewards, baseline_rewards) if baseline_rewards is not None else 0.5,
        "kl": sequence_kl(policy, reference, batch),
    }


# ---------------------------------------------------------------- saving models


def save_lm(
    model: PreTrainedModel | PolicyWithValue | RewardModel | None, tokenizer, directory: str | os.PathLike
) -> Path:
    """Write a language model (``save_pretrained``) and its tokenizer into ``directory``; the
    model may be ``None`` (or a :class:`RewardModel`, which saves itself) to write the tokenizer alone."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if model is not None and not isinstance(model, RewardModel):
        lm = model.lm if isinstance(model, PolicyWithValue) else model  # a PolicyWithValue saves its language model
        lm.save_pretrained(directory)
    tokenizer.save(directory) if isinstance(tokenizer, WordTokenizer) else tokenizer.save_pretrained(directory)
    return directory


def write_json(path: Path, value) -> None:
    """Write ``value`` to ``path`` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(value, indent=2) + "\n"), mode="w")


# ---------------------------------------------------------------- the pipeline


def run_pipeline(
    out: str | os.PathLike,
    config: PipelineConfig = PipelineConfig(),
    progress: Callable[[str], None] | None = print,
    device: str | torch.device | None = None,
) -> dict:
    """Run SFT → pairs → reward model → PPO, and SFT → DPO, on the toy task; return the summary.

    Everything is written under ``out`` (see the module's docstring). ``progress(message)``
    gets a line as each stage ends (``None``: silent). The device defaults to the CPU for the
    toy model (a GPU does not pay for 64-wide layers); pass ``device="cuda"`` to use one.
    The same config and seed give the same summary, bit for bit, on the CPU (``seconds`` aside).
    """
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _run(Path(out), config, progress, device)


def _run(out: Path, config: PipelineConfig, progress, device) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config.to_dict())
    say = progress or (lambda message: None)
    device = torch.device(device or "cpu")
    seconds, clock = {}, time.perf_counter()

    def done(stage: str, message: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now
        say(f"[{stage} {seconds[stage]:.0f}s] {message}")

    tokenizer = WordTokenizer.toy()
    rng = np.random.default_rng(config.seed)
    corpus = task.sft_corpus(config.sft_rows, rng)
    eval_prompts = task.sample_prompts(config.eval_prompts, np.random.default_rng(config.seed + 1))
    eval_seed = config.seed + 2

    # 1. SFT
    sft_model = _toy_lm(tokenizer, config.n_embd, config.n_layer, config.n_head, config.seed).to(device)
    sft_log = train_sft(sft_model, tokenizer, corpus, dataclasses.replace(config.sft, seed=config.seed))
    save_lm(sft_model, tokenizer, out / "sft")
    sft_log.to_csv(out / "sft" / "log.csv", index=False)
    reference = frozen_copy(sft_model)
    _, sft_rewards = generate_and_score(sft_model, tokenizer, eval_prompts, config.max_new_tokens, seed=eval_seed)
    summary: dict[str, Any] = {
        "sft_reward": float(sft_rewards.mean()),
        "corpus_reward": task.mean_reward([r["prompt"] for r in corpus], [r["completion"] for r in corpus]),
    }
    done("sft", f"SFT: reward of samples {summary['sft_reward']:+.3f} (corpus {summary['corpus_reward']:+.3f})")

    # 2. preference pairs from the SFT model
    noise = config.noise_temperature or None
    rows = preference_pairs(
        sft_model, tokenizer, config.pairs + config.heldout_pairs, noise, config.max_new_tokens, config.seed + 3
    )
    pairs, heldout = rows[: config.pairs], rows[config.pairs :]
    write_jsonl(out / "preferences.jsonl", pairs)
    write_jsonl(out / "preferences_heldout.jsonl", heldout)
    done("pairs", f"{len(pairs)} preference pairs sampled from the SFT model (+{len(heldout)} held out)")

    # 3. the reward model: a wider body than the policy's, from scratch (see the docstring)
    rm = RewardModel.from_lm(_toy_lm(tokenizer, config.rm_n_embd, config.n_layer, config.rm_n_head, config.seed + 5))
    rm = rm.to(device)
    rm_log = train_reward(rm, tokenizer, pairs, dataclasses.replace(config.reward, seed=config.seed))
    rm.save(out / "reward")
    save_lm(None, tokenizer, out / "reward")
    rm_log.to_csv(out / "reward" / "log.csv", index=False)
    rm_eval = evaluate_reward_model(rm, tokenizer, heldout)
    ceiling = accuracy_ceiling(heldout, noise)
    summary.update(
        rm_accuracy=rm_eval["accuracy"], rm_accuracy_ceiling=ceiling, rm_accuracy_ratio=rm_eval["accuracy"] / ceiling
    )
    done("reward", f"reward model: held-out accuracy {rm_eval['accuracy']:.3f} of a possible {ceiling:.3f}")

    frontier = [{"method": "sft", "coef": 0.0, "reward": summary["sft_reward"], "kl": 0.0, "win_rate": 0.5}]
    judged = functools.partial(
        judge,
        reference=reference,
        baseline_rewards=sft_rewards,
        tokenizer=tokenizer,
        prompts=eval_prompts,
        max_new_tokens=config.max_new_tokens,
        seed=eval_seed,
    )
    frontier += _dpo_sweep(out, config, sft_model, reference, tokenizer, pairs, judged, summary, done)
    frontier += _ppo_sweep(out, config, sft_model, reference, tokenizer, pairs, rm, judged, summary, done)

    # 6. the frontier and the summary
    table = pd.DataFrame(frontier)
    table.to_csv(out / "frontier.csv", index=False)
    plot_frontier(table).savefig(out / "frontier.png", dpi=100)
    summary["seconds"] = seconds
    write_json(out / "summary.json", summary)
    return summary


def _toy_lm(tokenizer: WordTokenizer, n_embd: int, n_layer: int, n_head: int, seed: int):
    """A tiny GPT-2 for the toy task's vocabulary, with its special tokens, seeded."""
    return tiny_gpt2(
        tokenizer.vocab_size,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        seed=seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _dpo_sweep(
    out: Path, config: PipelineConfig, sft_model, reference, tokenizer, pairs, judged, summary: dict, done
) -> list[dict]:
    """4. DPO from the SFT model, for each β of the sweep; the configured β is the one the summary reports."""
    frontier = []
    for beta in sorted({config.dpo.beta, *config.dpo_betas}):
        policy = frozen_copy(sft_model).requires_grad_(True)
        log = train_dpo(
            policy, reference, tokenizer, pairs, dataclasses.replace(config.dpo, beta=beta, seed=config.seed)
        )
        scores = judged(policy)
        frontier.append({"method": "dpo", "coef": beta, **scores})
        if beta == config.dpo.beta:
            save_lm(policy, tokenizer, out / "dpo")
            log.to_csv(out / "dpo" / "log.csv", index=False)
            summary.update(dpo_reward=scores["reward"], dpo_win_rate=scores["win_rate"], dpo_kl=scores["kl"])
        done(
            f"dpo beta={beta:g}",
            f"DPO β={beta:g}: reward {scores['reward']:+.3f}, "
            f"win rate {scores['win_rate']:.2f}, KL {scores['kl']:.2f} nats",
        )
    return frontier


def _ppo_sweep(
    out: Path, config: PipelineConfig, sft_model, reference, tokenizer, pairs, rm, judged, summary: dict, done
) -> list[dict]:
    """5. PPO-RLHF from the SFT model against the learned reward model, for each KL coefficient of the sweep."""
    train_prompts = task.sample_prompts(2048, np.random.default_rng(config.seed + 4))
    # the reward model's scores normalised to mean 0, std 1 on the SFT model's samples (Ziegler et al.)
    shift, scale = normalisation(
        rm, tokenizer, [p["prompt"] for p in pairs for _ in "cr"], [p[k] for p in pairs for k in ("chosen", "rejected")]
    )
    score = reward_model_score(rm, tokenizer, shift=shift, scale=scale)
    frontier = []
    for kl_coef in sorted({config.ppo.kl_coef, *config.ppo_kl_coefs}):
        policy = frozen_copy(sft_model).requires_grad_(True)
        log = train_ppo(
            policy,
            reference,
            tokenizer,
            train_prompts,
            score,
            dataclasses.replace(config.ppo, kl_coef=kl_coef, seed=config.seed),
        )
        scores = judged(policy)
        frontier.append({"method": "ppo", "coef": kl_coef, **scores})
        if kl_coef == config.ppo.kl_coef:
            save_lm(policy, tokenizer, out / "ppo")
            log.to_csv(out / "ppo" / "log.csv", index=False)
            summary.update(
                ppo_reward=scores["reward"],
                ppo_win_rate=scores["win_rate"],
                ppo_kl=scores["kl"],
                ppo_rm_score=float(log["score"].iloc[-1]),
            )
        done(
            f"ppo kl_coef={kl_coef:g}",
            f"PPO β_KL={kl_coef:g}: reward {scores['reward']:+.3f}, "
            f"win rate {scores['win_rate']:.2f}, KL {scores['kl']:.2f} nats",
        )
    return frontier


def plot_frontier(table: pd.DataFrame):
    """Ground-truth reward against KL to the reference, one point per run, labelled by its coefficient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = {"sft": ("k", "s", "SFT"), "dpo": ("C0", "o", "DPO (β)"), "ppo": ("C3", "^", "PPO (β_KL)")}
    for method, rows in table.groupby("method", sort=False):
        color, marker, label = styles[method]
        rows = rows.sort_values("kl")
        ax.plot(
            rows["kl"],
            rows["reward"],
            marker=marker,
            color=color,
            label=label,
            linestyle="-" if len(rows) > 1 else "none",
        )
        if method != "sft":
            for _, row in rows.iterrows():
                ax.annotate(
                    f"{row['coef']:g}",
                    (row["kl"], row["reward"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                    color=color,
                )
    ax.set_xlabel("KL[π ‖ π_ref] (nats per response)")
    ax.set_ylabel("ground-truth reward")
    ax.set_title("Reward against KL: the frontier")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
