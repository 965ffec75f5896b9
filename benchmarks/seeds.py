"""Benchmark: an algorithm over many seeds, with the interquartile mean, a 95% CI and the solved fraction.

Three modes:

* ``python benchmarks/seeds.py ALGO ENV --seeds 10 [--steps N] [--threshold R] [--set k=v ...]``
  trains ALGO on ENV with seeds 0..9 (:func:`rlcourse.seeds.run_seeds`: one spawned
  process per seed, ``--workers`` at a time, one torch thread each), judges every final
  model on 20 greedy episodes seeded ``10_000 + 20 · seed`` onwards (a block per seed), and prints one line per
  seed, then the IQM of the final returns with its 95% stratified bootstrap interval, the
  solved fraction and the steps to threshold. ``--csv`` writes the seeds' rows,
  ``--curves`` their training curves (for ``benchmarks/plot_seeds.py``). Where ALGO and
  ENV name a row of the docs' table (:data:`ROWS`), its budget, settings and threshold
  are the defaults.
* ``python benchmarks/seeds.py rlhf-pipeline toy --seeds 10``: lesson 7's whole pipeline
  (``run_pipeline`` with its defaults, without the frontier's extra sweep points) per
  seed; the scores are the ground-truth reward gains of DPO and PPO over SFT on the
  pipeline's held-out prompts.
* ``python benchmarks/seeds.py --sb3 ppo CartPole-v1 --seeds 10`` (or ``a2c CartPole-v1``,
  ``ppo Pendulum-v1``, ``dqn CartPole-v1``): rlcourse against Stable-Baselines3, the runs of
  ``benchmarks/ppo.py`` / ``a2c.py`` / ``dqn.py`` (same settings, same evaluation for both), seeds
  0..9 per library, and the 95% interval of each difference. A difference is claimed
  only where its interval excludes 0.

``--table`` runs every row of :data:`ROWS` in turn, writing ``benchmarks/results/ROW.csv``
and ``ROW_curves.csv``; ``benchmarks/plot_seeds.py`` turns them into the docs' table and
figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rlcourse import stats
from rlcourse.seeds import run_in_workers, run_seeds

RESULTS = Path(__file__).resolve().parent / "results"
RLHF = "rlhf-pipeline"
RLHF_BARS = {"dpo_gain": 0.5, "ppo_gain": 0.3}     # lesson 7's bars on the ground-truth reward over SFT


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the docs' table: a lesson's algorithm on its task, and how it is judged."""

    name: str
    lesson: str
    algo: str
    env: str
    steps: int
    threshold: float
    sets: tuple[str, ...] = ()
    eval_episodes: int = 20
    window: int = 100
    workers: int = 2

    def command(self, seeds: int = 10, csv: str | None = None, curves: str | None = None) -> str:
        """The command line that runs this row (and writes ``csv`` and ``curves``, if given)."""
        sets = f" --set {' '.join(self.sets)}" if self.sets else ""
        extra = "".join(f" --{flag} {value}" for flag, value, default in (
            ("eval-episodes", self.eval_episodes, 20), ("window", self.window, 100), ("workers", self.workers, 2))
            if value != default)
        files = "".join(f" --{flag} {shown(path)}" for flag, path in (("csv", csv), ("curves", curves)) if path)
        return (f"python benchmarks/seeds.py {self.algo} {self.env} --seeds {seeds} --steps {self.steps} "
                f"--threshold {self.threshold:g}{sets}{extra}{files}")


def shown(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it (commands run from there)."""
    root = RESULTS.parents[1]
    absolute = Path(path).resolve()
    return str(absolute.relative_to(root)) if absolute.is_relative_to(root) else path


CLIFF = ("alpha=0.2", "gamma=1", "epsilon_start=0.1", "epsilon_end=0.1")
ROWS = [
    Row("corridor_q-learning", "1", "q-learning", "rlcourse/Corridor-v0", 3_000, 1.0),
    Row("frozenlake_q-learning", "1", "q-learning", "FrozenLake-v1", 300_000, 0.7, ("alpha=0.02",),
        eval_episodes=1000),
    Row("cliff_q-learning", "1", "q-learning", "CliffWalking-v1", 20_000, -17, CLIFF, window=200),
    Row("cliff_sarsa", "1", "sarsa", "CliffWalking-v1", 20_000, -17, CLIFF, window=200),
    Row("cliff_expected-sarsa", "1", "expected-sarsa", "CliffWalking-v1", 20_000, -17, CLIFF, window=200),
    Row("mountaincar_linear-q", "3", "linear-q", "MountainCar-v0", 100_000, -110),
    Row("cartpole_reinforce", "4", "reinforce", "CartPole-v1", 300_000, 475),
    Row("cartpole_reinforce_total-return", "4", "reinforce", "CartPole-v1", 150_000, 475, ("psi=total-return",)),
    Row("cartpole_reinforce_reward-to-go", "4", "reinforce", "CartPole-v1", 150_000, 475, ("psi=reward-to-go",)),
    Row("cartpole_reinforce_value-baseline", "4", "reinforce", "CartPole-v1", 150_000, 475,
        ("psi=value-baseline",)),
    Row("pendulum_reinforce", "4", "reinforce", "Pendulum-v1", 300_000, -400,
        ("gamma=0.95", "num_envs=4", "steps_per_env=200", "lr=5e-3", "anneal_lr=false")),
    Row("cartpole_a2c", "5", "a2c", "CartPole-v1", 500_000, 475),
    Row("acrobot_a2c", "5", "a2c", "Acrobot-v1", 500_000, -100, ("num_envs=16",)),
    Row("cartpole_a3c", "5", "a3c", "CartPole-v1", 500_000, 475, ("workers=2",), workers=1),
    Row("cartpole_ppo", "6", "ppo", "CartPole-v1", 100_000, 475),
    Row("pendulum_ppo", "6", "ppo", "Pendulum-v1", 200_000, -250),
    Row("cartpole_trpo", "6", "trpo", "CartPole-v1", 150_000, 475),
    Row("pendulum_trpo", "6", "trpo", "Pendulum-v1", 200_000, -250),
    Row("cartpole_dqn", "3", "dqn", "CartPole-v1", 100_000, 475),
]


def default_row(algo: str, env: str) -> Row | None:
    """The docs' first row for ``algo`` on ``env`` (its budget, settings and threshold), if any."""
    return next((row for row in ROWS if (row.algo, row.env) == (algo, env)), None)


def machine() -> str:
    """Cores, load and versions: printed with every result."""
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPU cores (load average {load}), Python {platform.python_version()}, "
            f"torch {torch.__version__}, NumPy {np.__version__}, pandas {pd.__version__}")


def print_seeds(runs: pd.DataFrame, columns: list[str]) -> None:
    print(runs[columns].to_string(index=False, float_format=lambda x: f"{x:,.3f}"), flush=True)


def print_summary(label: str, scores, threshold: float, steps=None, budget: int | None = None,
                  where: str = "in training") -> None:
    """One line: IQM [95% CI], mean, solved fraction (and the steps to the threshold, ``where`` measured)."""
    row = stats.summarise(scores, threshold, steps)
    line = (f"{label}: IQM {row['iqm']:.3f}, 95% CI [{row['ci_low']:.3f}, {row['ci_high']:.3f}], "
            f"mean {row['mean']:.3f}, solved (>= {threshold:g}) {row['solved']}/{row['runs']}")
    if steps is not None:
        median = row["steps_median"]
        line += (f", reached {threshold:g} {where} {row['reached']}/{row['runs']}, median steps to it "
                 + (f"{median:,.0f}" if np.isfinite(median) else f"> {budget:,}"))
    print(line, flush=True)


def run_row(row: Row, seeds: int, csv: str | None, curves: str | None) -> None:
    """Run one (algo, env) over ``seeds`` seeds; print and optionally save the results."""
    sets = dict(pair.split("=", 1) for pair in row.sets)
    print(f"{row.algo} on {row.env}: {row.steps:,} steps, seeds 0..{seeds - 1}, --set {sets or 'none'}, evaluation "
          f"{row.eval_episodes} greedy episodes seeded from 10,000 + {row.eval_episodes} x seed; {machine()}", flush=True)
    print(f"command: {row.command(seeds, csv, curves)}", flush=True)
    start = time.perf_counter()
    result = run_seeds(row.algo, row.env, range(seeds), steps=row.steps, threshold=row.threshold, sets=sets,
                       workers=row.workers, eval_episodes=row.eval_episodes, window=row.window)
    print_seeds(result.runs, ["seed", "final_return", "final_length", "train_return", "steps_to_threshold",
                              "seconds"])
    print_summary("final greedy return", result.runs["final_return"].to_numpy(float), row.threshold,
                  result.runs["steps_to_threshold"].to_numpy(float), row.steps)
    print(f"wall time per run: median {result.summary['seconds_median']:.1f} s; all {seeds} seeds "
          f"{time.perf_counter() - start:.0f} s with {row.workers} worker(s)", flush=True)
    for path, frame in ((csv, result.runs), (curves, None)):
        if path is None:
            continue
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if frame is None:
            frame = result.curves_table()
        frame.assign(algo=row.algo, env=row.env, threshold=row.threshold, command=row.command(seeds, csv, curves),
                     machine=machine()).to_csv(path, index=False)
        print(f"wrote {path}", flush=True)


# ---------------------------------------------------------------- lesson 7's pipeline over seeds

def pipeline_seed(seed: int) -> dict:
    """Lesson 7's pipeline with its defaults and ``seed`` (no frontier sweep); its summary."""
    from rlcourse.rlhf.pipeline import PipelineConfig, run_pipeline

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = run_pipeline(out, PipelineConfig(seed=seed, dpo_betas=(), ppo_kl_coefs=()), progress=None)
    return {"seed": seed, "dpo_gain": summary["dpo_reward"] - summary["sft_reward"],
            "ppo_gain": summary["ppo_reward"] - summary["sft_reward"], "sft_reward": summary["sft_reward"],
            "dpo_win_rate": summary["dpo_win_rate"], "ppo_win_rate": summary["ppo_win_rate"],
            "dpo_kl": summary["dpo_kl"], "ppo_kl": summary["ppo_kl"], "rm_accuracy_ratio": summary["rm_accuracy_ratio"],
            "seconds": time.perf_counter() - start}


def run_pipeline_seeds(seeds: int, workers: int, csv: str | None) -> None:
    print(f"lesson 7 pipeline (PipelineConfig defaults, dpo_betas=(), ppo_kl_coefs=()), seeds 0..{seeds - 1}; "
          f"{machine()}", flush=True)
    runs = pd.DataFrame(run_in_workers(pipeline_seed, range(seeds), workers))
    print_seeds(runs, list(runs.columns))
    for column, bar in RLHF_BARS.items():
        print_summary(column, runs[column].to_numpy(float), bar)
    print_summary("dpo_win_rate", runs["dpo_win_rate"].to_numpy(float), 0.9)
    print(f"wall time per run: median {runs['seconds'].median():.0f} s", flush=True)
    if csv:
        runs.assign(command=f"python benchmarks/seeds.py {RLHF} toy --seeds {seeds} --workers {workers} --csv {csv}",
                    machine=machine()).to_csv(csv, index=False)
        print(f"wrote {csv}", flush=True)


# ---------------------------------------------------------------- rlcourse against Stable-Baselines3

SB3_THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}
# the budgets of benchmarks/ppo.py (the Zoo's 1e5, rounded up to whole iterations) and a2c.py
SB3_STEPS = {("ppo", "CartPole-v1"): 100_096, ("ppo", "Pendulum-v1"): 102_400, ("a2c", "CartPole-v1"): 500_000,
             ("dqn", "CartPole-v1"): 100_000}


@dataclasses.dataclass(frozen=True)
class LibraryRun:
    library: str          # "rlcourse" or "SB3"
    algo: str
    env_id: str
    seed: int
    steps: int
    every: int
    episodes: int
    no_sde: bool


def library_run(job: LibraryRun) -> dict:
    """One run of ``benchmarks/ppo.py``, ``a2c.py`` or ``dqn.py``'s runners: its final, steps to threshold,
    speed. DQN runs the RL Zoo's settings in both libraries (SB3 has no other loss than the Huber)."""
    if job.algo == "dqn":
        import dqn as bench

        runner = bench.run_rlcourse if job.library == "rlcourse" else bench.run_sb3
        row = runner(job.seed, job.steps, job.every, job.episodes, defaults=False, threads=1)
    elif job.algo == "a2c":
        import a2c as bench

        row = bench.RUNNERS[job.library](job.seed, job.steps, job.every, job.episodes)
    else:
        import ppo as bench

        runner = bench.run_rlcourse if job.library == "rlcourse" else bench.run_sb3
        row = runner(job.env_id, job.seed, job.steps, job.every, job.episodes, job.no_sde)
    return {"library": job.library, "seed": job.seed, **row}


def compare_sb3(algo: str, env_id: str, seeds: int, workers: int, every: int, no_sde: bool, csv: str | None,
                steps: int | None = None) -> None:
    """Both libraries over ``seeds`` seeds; each one's summary, and the interval of each difference."""
    steps = steps or SB3_STEPS[(algo, env_id)]
    threshold = SB3_THRESHOLDS[env_id]
    script = {"a2c": "a2c.py", "dqn": "dqn.py"}.get(algo, "ppo.py")
    print(f"{algo} on {env_id}, rlcourse against SB3 with benchmarks/{script}'s settings"
          f"{' (SB3 without gSDE)' if no_sde and env_id == 'Pendulum-v1' else ''}: {steps:,} steps, seeds "
          f"0..{seeds - 1} per library, 10 greedy episodes (seeds 0-9) every {every:,} steps and at the end, "
          f"{workers} runs at a time, the libraries interleaved; {machine()}", flush=True)
    jobs = [LibraryRun(library, algo, env_id, seed, steps, every, 10, no_sde)
            for seed in range(seeds) for library in ("rlcourse", "SB3")]
    runs = pd.DataFrame(run_in_workers(library_run, jobs, workers))
    runs["solved_at"] = runs["solved_at"].astype(float)
    print_seeds(runs, ["library", "seed", "final", "last10", "solved_at", "steps_per_second"])
    ours, theirs = (runs[runs["library"] == name] for name in ("rlcourse", "SB3"))
    for label, data in (("rlcourse", ours), ("SB3", theirs)):
        print_summary(f"{label} final", data["final"].to_numpy(float), threshold,
                      data["solved_at"].to_numpy(float), steps, where="in the evaluations")
    for column, what in (("final", "final greedy return"), ("last10", "mean of the last 10 evaluations"),
                         ("solved_at", f"steps to {threshold:g} (never: counted as the budget, {steps:,})"),
                         ("steps_per_second", "env steps per second")):
        a, b = (data[column].fillna(steps).to_numpy(float) for data in (ours, theirs))
        diff = stats.difference_ci(a, b)
        verdict = ("the interval excludes 0: a difference" if diff.excludes(0)
                   else "the interval contains 0: no difference claimed")
        print(f"rlcourse - SB3, IQM of {what}: {diff.estimate:+,.3f}, 95% CI [{diff.low:+,.3f}, {diff.high:+,.3f}]; "
              f"{verdict}", flush=True)
    if csv:
        runs.assign(algo=algo, env=env_id, machine=machine()).to_csv(csv, index=False)
        print(f"wrote {csv}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo", nargs="?", help=f"an rlcourse algorithm, or {RLHF}")
    parser.add_argument("env", nargs="?", help="a Gymnasium id (toy for the RLHF pipeline)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--steps", type=int, help="env steps per run (default: the docs' row)")
    parser.add_argument("--threshold", type=float, help="final greedy return that counts as solved")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, help="runs at a time (default 2; the docs' A3C row: 1)")
    parser.add_argument("--eval-episodes", type=int, help="greedy episodes per final model (default 20)")
    parser.add_argument("--window", type=int, help="training episodes in the learning curve's mean (default 100)")
    parser.add_argument("--csv", help="write one row per seed here")
    parser.add_argument("--curves", help="write the seeds' learning curves here")
    parser.add_argument("--table", nargs="*", metavar="ROW", help="run these rows of the docs' table (none: all)")
    parser.add_argument("--sb3", action="store_true", help="compare with Stable-Baselines3 (ppo, a2c or dqn)")
    parser.add_argument("--sb3-no-sde", action="store_true", help="Pendulum-v1: SB3 without gSDE, as rlcourse runs")
    parser.add_argument("--eval-every", type=int, default=2_000, help="--sb3: env steps between evaluations")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds = {args.seeds} is out of range: it must be >= 1")
    if args.table is not None:
        names = args.table or [row.name for row in ROWS]
        unknown = sorted(set(names) - {row.name for row in ROWS})
        if unknown:
            parser.error(f"unknown rows {unknown}; the rows are: {', '.join(row.name for row in ROWS)}")
        for row in (row for row in ROWS if row.name in names):
            run_row(row, args.seeds, str(RESULTS / f"{row.name}.csv"), str(RESULTS / f"{row.name}_curves.csv"))
            print(flush=True)
        return 0
    if not (args.algo and args.env):
        parser.error("give ALGO and ENV, or --table")
    if args.sb3:
        if (args.algo, args.env) not in SB3_STEPS:
            parser.error(f"--sb3 runs {', '.join(f'{a} {e}' for a, e in SB3_STEPS)}")
        compare_sb3(args.algo, args.env, args.seeds, args.workers or 2, args.eval_every, args.sb3_no_sde, args.csv,
                    args.steps)
        return 0
    if args.algo == RLHF:
        run_pipeline_seeds(args.seeds, args.workers or 2, args.csv)
        return 0
    known = default_row(args.algo, args.env)
    steps = args.steps or (known.steps if known else None)
    threshold = args.threshold if args.threshold is not None else (known.threshold if known else None)
    if steps is None or threshold is None:
        parser.error(f"{args.algo} on {args.env} is not a row of the docs' table: give --steps and --threshold")
    row = Row(known.name if known else f"{args.algo}_{args.env}", known.lesson if known else "", args.algo, args.env,
              steps, threshold, tuple(args.set) or (known.sets if known else ()),
              args.eval_episodes or (known.eval_episodes if known else 20),
              args.window or (known.window if known else 100), args.workers or (known.workers if known else 2))
    run_row(row, args.seeds, args.csv, args.curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
