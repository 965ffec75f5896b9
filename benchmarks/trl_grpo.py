"""Benchmark: lesson 8's GRPO (``rlcourse.rlvr.grpo.train_grpo``) against TRL's ``GRPOTrainer``, side by side.

**The model and the task.** Both libraries start from one model: lesson 8's tiny GPT-2 (2
layers, 64 dimensions, 4 heads, the 15-token arithmetic ``WordTokenizer``) after the
pipeline's SFT warm start (``rlcourse.rlvr.pipeline``: ``RLVRConfig()``'s seed 0, three
epochs of ``train_sft`` on the correct sums of the training problems), saved once with
``save_lm`` and loaded from that directory by each run. The task is two-digit addition
(``arithmetic.split``: the same 9,500 training prompts, the same 500 held-out ones, never
trained on). The reward is the same program for both: ``pipeline.verifier()`` (1 for the
right sum, 0 otherwise) on the answer's tokens written out by the ``WordTokenizer``, its
``<eos>`` dropped. TRL calls it as a reward function of ``completion_ids``.

**The same settings.** rlcourse runs ``rl_config(RLVRConfig(method=M, seed=s), iterations=K)``,
the pipeline's GRPOConfig; TRL's ``GRPOConfig`` gets the same numbers in its words (the
header prints both columns): an update samples G = 8 answers to each of P = 32 prompts
(TRL: ``num_generations=8``, one generation batch of 256 completions,
``per_device_train_batch_size=64`` × ``steps_per_generation=4``), at temperature 1 with no
top-p or top-k, at most 4 new tokens with ``<eos>`` (``max_completion_length=4``), then takes
μ = 2 passes of 4 minibatches of 64 answers (``num_iterations=2``): 8 Adam steps of lr 3e-4,
constant, no weight decay, gradients clipped at norm 1, clip ε = 0.2 on the token ratio,
KL coefficient β = 0 (so no reference model; with ``--kl-coef`` both put GRPO's k3 in the
loss, TRL with ``use_bias_correction_kl=False`` as rlcourse has it). The loss aggregation:
rlcourse's ``grpo`` (group standardisation, unbiased σ + 1e-4, "sequence-mean": each answer's
tokens averaged, then the answers) is TRL's ``loss_type="grpo"`` with
``scale_rewards="group"``; ``--method dr_grpo`` (group mean, no σ, "constant": the token sum
over 64 × 4) is TRL's ``loss_type="dr_grpo"`` with ``scale_rewards="none"``. Both float32 on
the CPU (TRL: ``bf16=False``, ``use_cpu=True``, gradient checkpointing off, dropout off), one
torch thread (checked inside TRL's reward calls), K updates (TRL: ``max_steps`` = 8K).
What differs is each library's own: the order of the minibatches (rlcourse keeps a group
together unless ``--minibatch-of answers``; TRL shuffles the answers), their random streams,
TRL's entropy and logging.

**What is measured**, per seed and library, each run in a fresh spawned process, the two
libraries in turn: *generated tokens*, the answer tokens sampled (with ``<eos>``, without
padding); *tokens/s*, those over the wall time of the whole training call (rlcourse's
``train_grpo``; TRL's ``GRPOTrainer(...)`` plus ``train()``); *steady tok/s*, the same over
the updates after the first tenth, timed at each update's end; *cpu s*, the process CPU
time of the call; *updates/s*; *peak MB*, the process's peak resident set. The *reward per
update* is the mean verifier reward of the update's 256 sampled answers (rlcourse's log,
TRL's reward calls; the script checks that TRL's own logged ``reward`` agrees); *held-out
pass@1* after training is estimated by the same rlcourse code for both models
(``pipeline.heldout_pass``: 200 held-out prompts, 16 answers each at temperature 1).

**The claims.** The throughput ratio is rlcourse's mean tokens/s over TRL's (target ≥ 1.5×),
with the CPU-time ratio beside it (steadier on a shared machine). The reward curves are
compared by each seed's mean reward over the K updates (the area under its curve) and by
held-out pass@1: ``rlcourse.stats.difference_ci`` gives the IQM difference rlcourse − TRL
and its 95% bootstrap interval; a difference is claimed only from at least 5 seeds each, where it
excludes 0.

Run ``python benchmarks/trl_grpo.py`` (5 seeds × 50 updates: 11-14 minutes on two busy
cores), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time

from common import run_fresh
from rlhf import Clock, hf_tokenizer, quiet, trl_version

TARGET_RATIO = 1.5
TRL_HINT = "pip install '.[bench]'"
#: rlcourse's method -> TRL's (loss_type, scale_rewards)
TRL_LOSS = {"grpo": ("grpo", "group"), "dr_grpo": ("dr_grpo", "none")}
#: seeds per library below which no difference in learning is claimed (the project's standard)
CLAIM_SEEDS = 5
#: what TRL's GRPOConfig gets that says nothing about the algorithm (left out of the printed table)
QUIET_ARGS = ("report_to", "save_strategy", "disable_tqdm", "dataloader_num_workers", "logging_steps")


# --------------------------------------------------------------------------- settings

def rl_settings(method: str, updates: int, seed: int, kl_coef: float, minibatch_of: str = "groups"):
    """rlcourse's GRPOConfig: the pipeline's, with K updates."""
    from rlcourse.rlvr.pipeline import RLVRConfig, rl_config

    return rl_config(RLVRConfig(method=method, seed=seed), iterations=updates, kl_coef=kl_coef,
                     minibatch_of=minibatch_of)


def trl_settings(rl) -> dict:
    """TRL GRPOConfig keyword arguments: the same numbers as rlcourse's GRPOConfig ``rl``."""
    completions = rl.prompts_per_iteration * rl.group_size
    if completions % rl.minibatches:
        raise ValueError(f"{completions} answers per update do not split into {rl.minibatches} equal minibatches")
    from rlcourse.rlvr.grpo import METHODS

    method = next((m for m, pair in METHODS.items() if pair == (rl.advantage, rl.aggregation)), None)
    if method not in TRL_LOSS:
        raise ValueError(f"TRL's GRPOTrainer has no loss for advantage={rl.advantage}, aggregation={rl.aggregation}")
    loss_type, scale_rewards = TRL_LOSS[method]
    steps_per_update = rl.epochs * rl.minibatches
    return dict(num_generations=rl.group_size, per_device_train_batch_size=completions // rl.minibatches,
                steps_per_generation=rl.minibatches, num_iterations=rl.epochs,
                max_completion_length=rl.max_new_tokens, temperature=rl.temperature, top_p=1.0, top_k=0,
                learning_rate=rl.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
                weight_decay=0.0, max_grad_norm=rl.max_grad_norm, beta=rl.kl_coef, use_bias_correction_kl=False,
                epsilon=rl.clip_range, loss_type=loss_type, scale_rewards=scale_rewards,
                max_steps=rl.iterations * steps_per_update, gradient_checkpointing=False, bf16=False, use_cpu=True,
                disable_dropout=True, seed=rl.seed, logging_steps=steps_per_update, report_to="none",
                save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)


def settings_rows(rl, trl: dict | None) -> list[tuple[str, str, str]]:
    """(setting, rlcourse, TRL) rows of the header's table."""
    t = trl or {}
    get = lambda key: str(t.get(key, "-"))  # noqa: E731
    completions = rl.prompts_per_iteration * rl.group_size
    trl_adv = f"loss_type={get('loss_type')}, scale_rewards={get('scale_rewards')}"
    return [
        ("updates (sample, then learn)", f"iterations={rl.iterations}",
         f"max_steps={get('max_steps')} / {rl.epochs * rl.minibatches}"),
        ("group size G", f"group_size={rl.group_size}", f"num_generations={get('num_generations')}"),
        ("prompts x answers per update", f"{rl.prompts_per_iteration} x {rl.group_size} = {completions}",
         f"batch {get('per_device_train_batch_size')} x steps_per_generation {get('steps_per_generation')}"),
        ("max new tokens (with <eos>)", f"max_new_tokens={rl.max_new_tokens}",
         f"max_completion_length={get('max_completion_length')}"),
        ("sampling", f"temperature={rl.temperature:g}, full softmax",
         f"temperature={get('temperature')}, top_p={get('top_p')}, top_k={get('top_k')}"),
        ("passes x minibatches per update",
         f"epochs={rl.epochs} x minibatches={rl.minibatches} of {rl.minibatch_of}",
         f"num_iterations={get('num_iterations')} x {get('steps_per_generation')}"),
        ("optimiser", f"Adam lr={rl.lr:g}, constant", f"{get('optim')} lr={get('learning_rate')}, "
                                                      f"{get('lr_scheduler_type')}, wd={get('weight_decay')}"),
        ("gradient clip", f"max_grad_norm={rl.max_grad_norm:g}", f"max_grad_norm={get('max_grad_norm')}"),
        ("clip eps", f"clip_range={rl.clip_range:g}", f"epsilon={get('epsilon')}"),
        ("KL coefficient", f"kl_coef={rl.kl_coef:g} (k3 in the loss)",
         f"beta={get('beta')}, use_bias_correction_kl={get('use_bias_correction_kl')}"),
        ("advantage and aggregation", f"advantage={rl.advantage}, aggregation={rl.aggregation}", trl_adv),
        ("precision, device, threads", "float32, cpu, 1 thread",
         f"bf16={get('bf16')}, use_cpu={get('use_cpu')}, 1 thread"),
        ("other", "dropout off", f"gradient_checkpointing={get('gradient_checkpointing')}, "
                                 f"disable_dropout={get('disable_dropout')}"),
    ]


# --------------------------------------------------------------------------- the runs

def warm_start(directory: str, epochs: int, rows: int | None, eval_prompts: int, eval_samples: int) -> dict:
    """The pipeline's SFT warm start (seed 0), saved to ``directory``; its held-out pass@1."""
    quiet()
    import torch

    from rlcourse.rlhf.pipeline import save_lm
    from rlcourse.rlhf.sft import SFTConfig, train_sft
    from rlcourse.rlvr import arithmetic
    from rlcourse.rlvr.pipeline import RLVRConfig, build, heldout_pass

    torch.set_num_threads(1)
    config = RLVRConfig(eval_prompts=eval_prompts, eval_samples=eval_samples)
    torch.manual_seed(config.seed)
    model, tokenizer = build(config)
    train, heldout = arithmetic.split(config.digits, config.heldout)
    start = time.perf_counter()
    sft = SFTConfig(lr=config.sft_lr, epochs=epochs, batch_size=64, max_length=16, seed=config.seed)
    train_sft(model, tokenizer, arithmetic.sft_rows(train[:rows]), sft)
    seconds = time.perf_counter() - start
    save_lm(model, tokenizer, directory)
    return {"seconds": seconds, "pass@1": heldout_pass(model, tokenizer, heldout[:eval_prompts], config)["pass@1"]}


def load(directory: str):
    """(model, tokenizer, training prompts, evaluation): the saved warm start and the task's split."""
    import torch
    import transformers

    from rlcourse.rlhf.model import load_model
    from rlcourse.rlhf.tokenizer import load_tokenizer
    from rlcourse.rlvr import arithmetic
    from rlcourse.rlvr.pipeline import RLVRConfig

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()      # "Loading weights" of from_pretrained
    config = RLVRConfig()
    train, heldout = arithmetic.split(config.digits, config.heldout)
    return load_model(directory), load_tokenizer(directory), train, heldout


def evaluate(model, tokenizer, heldout, seed: int, eval_prompts: int, eval_samples: int) -> float:
    """Held-out pass@1 by rlcourse's code (the same draws for both libraries' models of a seed)."""
    from rlcourse.rlvr.pipeline import RLVRConfig, heldout_pass

    config = RLVRConfig(seed=seed, eval_prompts=eval_prompts, eval_samples=eval_samples)
    return heldout_pass(model, tokenizer, heldout[:eval_prompts], config)["pass@1"]


def run_ours(directory: str, rl, eval_prompts: int, eval_samples: int) -> dict:
    quiet()
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlvr.grpo import train_grpo
    from rlcourse.rlvr.pipeline import verifier

    model, tokenizer, train, heldout = load(directory)
    reference = frozen_copy(model) if rl.kl_coef > 0 else None
    completions = rl.prompts_per_iteration * rl.group_size
    with Clock() as clock:
        log = train_grpo(model, tokenizer, train, verifier(), rl, reference, callback=clock.step)
    tokens = [round(length * completions) for length in log["response_length"]]
    return clock.row(sum(tokens), tokens, rewards=log["reward"].tolist(), updates=len(log),
                     pass1=evaluate(model, tokenizer, heldout, rl.seed, eval_prompts, eval_samples))


def trl_reward(tokenizer, calls: list[dict]):
    """TRL's reward function: rlcourse's ``verifier()`` on each answer's tokens written out as rlcourse's
    ``response_text`` does (``<eos>`` dropped, other special tokens kept); each call appends its mean
    reward, its answer tokens and torch's thread count to ``calls``."""
    import torch

    from rlcourse.rlvr.pipeline import verifier

    score = verifier()

    def verifier_reward(prompts, completions, completion_ids, problem, **_):
        texts = [tokenizer.decode([t for t in ids if t != tokenizer.eos_token_id]) for ids in completion_ids]
        rewards = score(problem, texts)
        calls.append({"reward": rewards.mean().item(), "tokens": sum(map(len, completion_ids)),
                      "threads": torch.get_num_threads()})
        return rewards.tolist()

    return verifier_reward


def run_trl(directory: str, rl, eval_prompts: int, eval_samples: int) -> dict:
    quiet()
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    model, tokenizer, train, heldout = load(directory)
    calls: list[dict] = []
    dataset = Dataset.from_list([{"prompt": f"<bos> {p} <sep>", "problem": p} for p in train])
    settings = trl_settings(rl)
    clock = Clock()

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % settings["logging_steps"] == 0:      # the end of an update
                clock.step()

    with tempfile.TemporaryDirectory() as output_dir:
        args = TRLConfig(output_dir=output_dir, **settings)
        with clock:
            trainer = GRPOTrainer(model=model, reward_funcs=trl_reward(tokenizer, calls), args=args, train_dataset=dataset,
                                  processing_class=hf_tokenizer(tokenizer), callbacks=[Stamp()])
            trainer.remove_callback(PrinterCallback)        # it prints each log row
            trainer.train()
    check_trl(trainer, calls, rl)
    tokens = [call["tokens"] for call in calls]
    return clock.row(sum(tokens), tokens, rewards=[call["reward"] for call in calls], updates=len(calls),
                     pass1=evaluate(model, tokenizer, heldout, rl.seed, eval_prompts, eval_samples))


def check_trl(trainer, calls: list[dict], rl) -> None:
    """TRL ran the settings asked for: one reward call (one generation) per update, of P·G answers, on one
    thread, and its own logged reward per update is the verifier's."""
    completions = rl.prompts_per_iteration * rl.group_size
    if len(calls) != rl.iterations or trainer.state.global_step != rl.iterations * rl.epochs * rl.minibatches:
        raise RuntimeError(f"TRL sampled {len(calls)} times in {trainer.state.global_step} steps: expected "
                           f"{rl.iterations} updates of {rl.epochs * rl.minibatches} steps")
    if {call["threads"] for call in calls} != {1}:
        raise RuntimeError(f"TRL ran on {sorted({c['threads'] for c in calls})} torch threads, not 1")
    logged = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    ours = [call["reward"] for call in calls]
    if len(logged) != len(ours) or any(abs(a - b) > 1e-6 for a, b in zip(logged, ours)):
        raise RuntimeError(f"TRL's logged rewards {logged[:4]}... are not the verifier's {ours[:4]}...")
    if trainer.args.generation_batch_size != completions:
        raise RuntimeError(f"TRL generates {trainer.args.generation_batch_size} answers per update, not {completions}")


# --------------------------------------------------------------------------- printing

def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def print_settings(rl, trl: dict | None, version: str | None) -> None:
    rows = settings_rows(rl, trl)
    width = max(len(r[1]) for r in rows) + 2
    print((f"\n{'setting':<32}{'rlcourse train_grpo':<{width}}" + (f"TRL {version} GRPOConfig" if trl else "")).rstrip())
    print("-" * (32 + width + (50 if trl else 0)))
    for name, ours, theirs in rows:
        print(f"{name:<32}{ours:<{width}}{theirs if trl else ''}".rstrip())
    if trl:
        shown = ", ".join(f"{k}={v}" for k, v in trl.items() if k not in QUIET_ARGS)
        print(f"TRL GRPOConfig({shown})", flush=True)


def print_throughput(results: dict[str, list[dict]]) -> None:
    header = (f"{'':<18}{'seeds':>6}{'updates':>8}{'gen tokens':>11}{'seconds':>9}{'tokens/s':>10}"
              f"{'steady tok/s':>14}{'cpu s':>8}{'tok/cpu-s':>11}{'updates/s':>11}{'peak MB':>9}")
    print("\nthroughput (means over seeds)")
    print(header)
    print("-" * len(header))
    for label, rows in results.items():
        def mean(key: str, rows=rows) -> float:
            return statistics.fmean(row[key] for row in rows)

        print(f"{label:<18}{len(rows):>6}{rows[0]['updates']:>8}{mean('tokens'):>11,.0f}{mean('seconds'):>9.2f}"
              f"{mean('tokens_per_second'):>10,.0f}{mean('steady_tokens_per_second'):>14,.0f}"
              f"{mean('cpu_seconds'):>8.2f}{statistics.fmean(r['tokens'] / r['cpu_seconds'] for r in rows):>11,.0f}"
              f"{statistics.fmean(r['updates'] / r['seconds'] for r in rows):>11.2f}{mean('peak_mb'):>9,.0f}",
              flush=True)


def print_curve(results: dict[str, list[dict]], points: int = 10) -> None:
    """Mean reward per update over seeds, in ``points`` windows of updates."""
    labels = list(results)
    updates = len(results[labels[0]][0]["rewards"])
    edges = sorted({round(updates * i / points) for i in range(points + 1)})
    print("\nreward per update (mean verifier reward of the update's answers; mean over seeds, windows of updates)")
    print(f"{'updates':<12}" + "".join(f"{label:>18}" for label in labels))
    for low, high in itertools.pairwise(edges):
        means = [statistics.fmean(statistics.fmean(row["rewards"][low:high]) for row in results[label])
                 for label in labels]
        print(f"{f'{low + 1}-{high}':<12}" + "".join(f"{m:>18.3f}" for m in means), flush=True)


def print_claims(results: dict[str, list[dict]], version: str | None, before: float) -> None:
    import numpy as np

    from rlcourse.stats import bootstrap_ci, difference_ci

    print(f"\nheld-out pass@1: {before:.3f} after the SFT warm start")
    for label, rows in results.items():
        per_seed = [row["pass1"] for row in rows]
        interval = bootstrap_ci(per_seed)
        print(f"  {label:<16} after RL: IQM {interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}] "
              f"(seeds: {' '.join(f'{p:.3f}' for p in per_seed)})")
    if version is None:
        print(f"TRL GRPOTrainer: skipped ({TRL_HINT})", flush=True)
        return
    ours, theirs = results["rlcourse"], results[f"TRL {version}"]
    ratio = statistics.fmean(r["tokens_per_second"] for r in ours) / statistics.fmean(
        r["tokens_per_second"] for r in theirs)
    cpu_ratio = statistics.fmean(r["tokens"] / r["cpu_seconds"] for r in ours) / statistics.fmean(
        r["tokens"] / r["cpu_seconds"] for r in theirs)
    steady = statistics.fmean(r["steady_tokens_per_second"] for r in ours) / statistics.fmean(
        r["steady_tokens_per_second"] for r in theirs)
    per_seed = [a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(ours, theirs)]
    print(f"\nratio rlcourse / TRL {version}: {ratio:.2f}x the generated tokens per second of the whole call "
          f"({'meets' if ratio >= TARGET_RATIO else 'BELOW'} the {TARGET_RATIO:g}x target; CPU-time ratio "
          f"{cpu_ratio:.2f}x; steady state {steady:.2f}x; per seed {min(per_seed):.2f}x to {max(per_seed):.2f}x)")
    for name, key in (("mean reward over the updates", "rewards"), ("held-out pass@1 after RL", "pass1")):
        first = [float(np.mean(r[key])) for r in ours]
        second = [float(np.mean(r[key])) for r in theirs]
        d = difference_ci(first, second)
        verdict = (f"no claim from fewer than {CLAIM_SEEDS} seeds" if len(first) < CLAIM_SEEDS
                   else "rlcourse higher" if d.low > 0 else "TRL higher" if d.high < 0
                   else "no difference shown (the interval includes 0)")
        print(f"{name}: IQM difference rlcourse - TRL {d.estimate:+.3f}, 95% CI [{d.low:+.3f}, {d.high:+.3f}] "
              f"over {len(first)} seeds each: {verdict}", flush=True)


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, help="updates per run (default 50; 2 with --quick)")
    parser.add_argument("--seeds", type=int, help="RL seeds 0 ... N-1 per library (default 5; 1 with --quick)")
    parser.add_argument("--method", choices=tuple(TRL_LOSS), default="grpo",
                        help="grpo (TRL loss_type grpo, scale_rewards group) or dr_grpo (dr_grpo, none)")
    parser.add_argument("--kl-coef", type=float, default=0.0, help="beta, k3 in the loss for both (default 0)")
    parser.add_argument("--minibatch-of", choices=("groups", "answers"), default="groups",
                        help="rlcourse's minibatches: whole groups (its default) or answers of every group (TRL's)")
    parser.add_argument("--sft-epochs", type=int, help="epochs of the warm start (default: the pipeline's, 3)")
    parser.add_argument("--eval-samples", type=int, help="answers per held-out prompt for pass@1 (default 16)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a one-epoch warm start on 1,000 problems, 2 updates, one seed, "
                             "50 held-out prompts x 4 answers; measures nothing useful")
    parser.add_argument("--no-trl", action="store_true", help="leave TRL's GRPOTrainer out")
    args = parser.parse_args(argv)
    for name in ("updates", "seeds", "sft_epochs", "eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.kl_coef < 0:
        parser.error("--kl-coef must be at least 0")
    return args


def main(argv=None) -> int:
    import torch
    import transformers

    args = parse_args(argv)
    updates = args.updates or (2 if args.quick else 50)
    seeds = args.seeds or (1 if args.quick else 5)
    eval_prompts, eval_samples = (50, args.eval_samples or 4) if args.quick else (200, args.eval_samples or 16)
    sft_epochs = args.sft_epochs or (1 if args.quick else 3)
    version = None if args.no_trl else trl_version()
    print(f"lesson 8: {args.method} on two-digit addition, rlcourse against TRL {version or '(left out)'}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; {os.cpu_count()} CPUs, "
          f"one torch thread per run; load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        warm = run_fresh(warm_start, directory, sft_epochs, 1000 if args.quick else None, eval_prompts,
                         eval_samples)
        print(f"warm start: {sft_epochs} SFT epoch(s) in {warm['seconds']:.1f} s, held-out pass@1 "
              f"{warm['pass@1']:.3f}; saved and loaded by every run", flush=True)
        rl = rl_settings(args.method, updates, 0, args.kl_coef, args.minibatch_of)
        print_settings(rl, trl_settings(rl) if version else None, version)
        runners = {"rlcourse": run_ours}
        if version is not None:
            runners[f"TRL {version}"] = run_trl
        results: dict[str, list[dict]] = {label: [] for label in runners}
        for seed in range(seeds):
            rl = rl_settings(args.method, updates, seed, args.kl_coef, args.minibatch_of)
            for label, runner in runners.items():
                row = run_fresh(runner, directory, rl, eval_prompts, eval_samples)
                results[label].append(row)
                print(f"  seed {seed} {label:<14} {row['tokens_per_second']:>8,.0f} tokens/s, {row['seconds']:.2f} s "
                      f"({row['cpu_seconds']:.2f} cpu s), mean reward {statistics.fmean(row['rewards']):.3f}, "
                      f"held-out pass@1 {row['pass1']:.3f}; load average {load_average()}", flush=True)
    print_throughput(results)
    print_curve(results)
    print_claims(results, version, warm["pass@1"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
