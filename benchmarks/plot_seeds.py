"""The docs' 10-seed table and learning-curve figures, from what ``benchmarks/seeds.py`` wrote.

Reads ``benchmarks/results/ROW.csv`` (one row per seed) and ``ROW_curves.csv`` (the seeds'
training curves on one grid) for every row of ``seeds.ROWS`` that has been run, and
``rlhf_pipeline.csv``; prints the Markdown table of ``docs/benchmarks.md`` (IQM of the final
greedy return with its 95% stratified bootstrap interval, solved fraction, median steps to
the threshold, wall time per run) with each row's command, and writes one figure per
lesson, ``docs/seeds_lessonN.png``: per task, the interquartile mean over seeds of the
training return (mean of the last 100 episodes, 200 on the cliff) against env steps, with
its pointwise 95% bootstrap band (:func:`rlcourse.stats.curve_band`).

Run ``python benchmarks/plot_seeds.py`` after ``python benchmarks/seeds.py --table``.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rlcourse import stats  # noqa: E402
from rlcourse.seeds import table_band  # noqa: E402
from seeds import RESULTS, RLHF_BARS, ROWS, Row  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
# one figure per lesson: its panels (a task each) and the rows drawn in each
FIGURES = {
    # the corridor has no panel: every seed's training return is 1 from its 100th episode on
    "1": {"FrozenLake-v1": ["frozenlake_q-learning"],
          "CliffWalking-v1": ["cliff_q-learning", "cliff_sarsa", "cliff_expected-sarsa"]},
    "3": {"MountainCar-v0": ["mountaincar_linear-q"], "CartPole-v1": ["cartpole_dqn"]},
    "4": {"CartPole-v1": ["cartpole_reinforce_total-return", "cartpole_reinforce_reward-to-go",
                          "cartpole_reinforce_value-baseline"],
          "CartPole-v1, 300,000 steps": ["cartpole_reinforce"], "Pendulum-v1": ["pendulum_reinforce"]},
    "5": {"CartPole-v1": ["cartpole_a2c", "cartpole_a3c"], "Acrobot-v1": ["acrobot_a2c"]},
    "6": {"CartPole-v1": ["cartpole_ppo", "cartpole_trpo"], "Pendulum-v1": ["pendulum_ppo", "pendulum_trpo"]},
}


def load(row: Row) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    runs, curves = RESULTS / f"{row.name}.csv", RESULTS / f"{row.name}_curves.csv"
    if not runs.is_file():
        return None
    return pd.read_csv(runs), pd.read_csv(curves) if curves.is_file() else None


def label(row: Row) -> str:
    sets = [pair for pair in row.sets if pair.startswith(("psi=", "workers=", "num_envs="))]
    return row.algo + (f" ({', '.join(sets)})" if sets else "")


def interval_text(scores: np.ndarray, digits: int) -> str:
    interval = stats.bootstrap_ci(scores)
    return f"{interval.estimate:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def table_line(row: Row, runs: pd.DataFrame) -> str:
    finals = runs["final_return"].to_numpy(float)
    digits = 3 if abs(row.threshold) < 10 else 1
    summary = stats.summarise(finals, row.threshold, runs["steps_to_threshold"].to_numpy(float))
    median = summary["steps_median"]
    reached = f"{median:,.0f}" if np.isfinite(median) else f"> {row.steps:,}"
    return (f"| {row.lesson} | {label(row)} | {row.env}, {row.steps:,} | {interval_text(finals, digits)} | "
            f"{summary['solved']}/{summary['runs']} (≥ {row.threshold:g}) | {reached} "
            f"({summary['reached']}/{summary['runs']}) | {runs['seconds'].median():.1f} | `{row.name}` |")


def print_table() -> None:
    print("| lesson | algorithm | task, env steps | final greedy return, IQM [95% CI] | solved | "
          "steps to threshold in training, median (seeds that got there) | wall s per run (median) | row |")
    print("|---|---|---|---|---|---|---|---|")
    commands = []
    for row in ROWS:
        loaded = load(row)
        if loaded is None:
            continue
        print(table_line(row, loaded[0]))
        commands.append(loaded[0]["command"].iloc[0])
    pipeline = RESULTS / "rlhf_pipeline.csv"
    if pipeline.is_file():
        runs = pd.read_csv(pipeline)
        for column, bar in RLHF_BARS.items():
            scores = runs[column].to_numpy(float)
            print(f"| 7 | pipeline, {column.replace('_gain', '').upper()} | toy task | {interval_text(scores, 3)} "
                  f"(reward over SFT) | {int((scores >= bar).sum())}/{len(scores)} (≥ {bar:g}) | | "
                  f"{runs['seconds'].median():.0f} (whole pipeline) | `rlhf_pipeline` |")
        commands.append(runs["command"].iloc[0])
    print("\n```sh")
    print("\n".join(commands))
    print("```")
    print(f"\n{machine_line(sorted(RESULTS.glob('*.csv')))}")


def machine_line(paths) -> str:
    """The machine the results in ``paths`` came from, without the load, and the load's range."""
    machines = [pd.read_csv(path, usecols=["machine"])["machine"].iloc[0] for path in paths
                if "machine" in pd.read_csv(path, nrows=0).columns]
    if not machines:
        return "machine: not recorded"
    loads = [float(re.search(r"load average ([\d.]+)", text).group(1)) for text in machines]
    kinds = sorted({re.sub(r" [(]load average [^)]*[)]", "", text) for text in machines})
    return (f"machine: {'; '.join(kinds)}; load average (1 minute) when a row started: "
            f"{min(loads):.1f} to {max(loads):.1f}")


def footer(fig, names: list[str]) -> None:
    """The machine and where the commands are, under a figure (call after ``tight_layout``)."""
    paths = [RESULTS / f"{name}.csv" for name in names if (RESULTS / f"{name}.csv").is_file()]
    text = f"{machine_line(paths)}. Commands: docs/benchmarks.md."
    lines = textwrap.wrap(text, width=int(fig.get_figwidth() * 17))
    fig.subplots_adjust(bottom=fig.subplotpars.bottom + 0.045 * len(lines))
    fig.text(0.005, 0.005, "\n".join(lines), fontsize="x-small", color="grey", va="bottom")


def draw_panel(ax, task: str, names: list[str]) -> None:
    rows = {row.name: row for row in ROWS}
    for name in names:
        loaded = load(rows[name])
        if loaded is None or loaded[1] is None:
            continue
        runs, curves = loaded
        band, seeds = table_band(curves)
        line, = ax.plot(band["grid"], band["estimate"], lw=1.8, label=f"{label(rows[name])}, {seeds} seeds")
        ax.fill_between(band["grid"], band["low"], band["high"], color=line.get_color(), alpha=0.25, lw=0)
    threshold = rows[names[0]].threshold
    ax.axhline(threshold, color="grey", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    ax.set_title(task, fontsize="medium")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"training return, mean of last {rows[names[0]].window} episodes")
    ax.legend(fontsize="small", loc="best")


def draw_lesson(lesson: str, panels: dict[str, list[str]], figures: Path) -> Path:
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (task, names) in zip(axes[0], panels.items()):
        draw_panel(ax, task, names)
    fig.suptitle(f"Lesson {lesson}: training return (the exploring policy), IQM over seeds with a pointwise "
                 "95% bootstrap band", fontsize="medium")
    fig.tight_layout()
    footer(fig, [name for names in panels.values() for name in names])
    path = figures / f"seeds_lesson{lesson}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def draw_pipeline(figures: Path) -> Path | None:
    """Lesson 7: each seed's DPO and PPO gain over SFT, with the IQM and its interval."""
    path = RESULTS / "rlhf_pipeline.csv"
    if not path.is_file():
        return None
    runs = pd.read_csv(path)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for x, (column, bar) in enumerate(RLHF_BARS.items()):
        scores = runs[column].to_numpy(float)
        interval = stats.bootstrap_ci(scores)
        ax.scatter(np.full(len(scores), x) + np.linspace(-0.15, 0.15, len(scores)), scores, s=14, alpha=0.7)
        ax.errorbar(x + 0.3, interval.estimate, [[interval.estimate - interval.low], [interval.high - interval.estimate]],
                    fmt="o", color="black", capsize=4)
        ax.hlines(bar, x - 0.3, x + 0.3, color="grey", ls="--", lw=0.8)
    ax.set_xticks(range(len(RLHF_BARS)), [f"{c.replace('_gain', '').upper()} − SFT" for c in RLHF_BARS])
    ax.set_ylabel("ground-truth reward gain over SFT")
    ax.set_title(f"Lesson 7 pipeline, {len(runs)} seeds: each seed, IQM and 95% CI (black); bars dashed",
                 fontsize="small")
    fig.tight_layout()
    footer(fig, ["rlhf_pipeline"])
    out = figures / "seeds_lesson7.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-figures", action="store_true", help="print the table only")
    parser.add_argument("--figures", type=Path, default=DOCS, help="where the figures go (default docs/)")
    args = parser.parse_args(argv)
    print_table()
    if not args.no_figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        for lesson, panels in FIGURES.items():
            print(f"wrote {draw_lesson(lesson, panels, args.figures)}")
        pipeline = draw_pipeline(args.figures)
        if pipeline:
            print(f"wrote {pipeline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
