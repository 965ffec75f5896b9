"""Lesson 2's planning figures and numbers: Dyna-Q on the Dyna maze (Sutton & Barto, Figure 8.2),
Dyna-Q+ against Dyna-Q on the blocking and shortcut mazes (Examples 8.2–8.3), over 10 seeds.

Also lookahead over a model learned by random exploration, against value iteration on the
true model. Writes ``docs/lessons/02_dyna_maze.png`` and ``docs/lessons/02_dyna_plus.png`` and prints the
tables quoted in ``docs/lessons/02_evaluation_planning.md``. About a minute on one core::

    python benchmarks/lesson2_planning.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import rlcourse  # noqa: F401  (registers the mazes)
from rlcourse import stats
from rlcourse.tabular.dyna import DynaQConfig, planning_study, plot_steps_per_episode, solve_summary, train
from rlcourse.tabular.lookahead import lookahead_study

DOCS = Path(__file__).resolve().parents[1] / "docs" / "lessons"
# maze, the step at which it changes, the steps run
CHANGING = {"rlcourse/BlockingMaze-v0": (1000, 3000), "rlcourse/ShortcutMaze-v0": (3000, 6000)}


def dyna_maze(seeds) -> None:
    study = planning_study(planning_steps=(0, 5, 50), seeds=seeds, episodes=50)
    print(solve_summary(study, good_length=20).round(1).to_markdown(index=False))
    fig = plot_steps_per_episode(study)
    fig.axes[0].set_ylim(0, 800)
    fig.tight_layout()
    fig.savefig(DOCS / "02_dyna_maze.png", dpi=100)
    plt.close(fig)


def changing_mazes(seeds) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, (env_id, (switch, steps)) in zip(axes, CHANGING.items()):
        grid = np.arange(0, steps + 1, 50)
        after = {}
        for kappa, name in ((0.0, "Dyna-Q"), (1e-3, "Dyna-Q+")):
            curves = []
            for seed in seeds:
                log = train(env_id, DynaQConfig(planning_steps=50, kappa=kappa), steps=steps, seed=seed).log
                curves.append(np.searchsorted(log["env_steps"].to_numpy(), grid, side="right"))
            curves = np.array(curves, dtype=float)
            after[name] = curves[:, -1] - curves[:, grid.searchsorted(switch)]
            band = stats.curve_band(curves, grid)
            ax.plot(grid, band["estimate"], label=name)
            ax.fill_between(grid, band["low"], band["high"], alpha=0.2)
            recovered = int((after[name] >= 10).sum())
            print(
                f"{env_id} {name}: reward after the change {stats.bootstrap_ci(after[name])}, "
                f"at least 10 in {recovered} of {len(seeds)} seeds"
            )
        print(f"{env_id} Dyna-Q+ − Dyna-Q: {stats.difference_ci(after['Dyna-Q+'], after['Dyna-Q'])}")
        ax.axvline(switch, color="k", lw=0.8, ls=":")
        ax.set(xlabel="time steps", ylabel="cumulative reward", title=env_id.split("/")[1])
        ax.legend()
    fig.suptitle(f"Dyna-Q and Dyna-Q+ (n = 50, κ = 0.001): IQM over {len(seeds)} seeds, 95% band")
    fig.tight_layout()
    fig.savefig(DOCS / "02_dyna_plus.png", dpi=100)
    plt.close(fig)


def lookahead(seeds) -> None:
    study = lookahead_study("rlcourse/DynaMaze-v0", [200, 1_000, 5_000], [5, 10, 15, 20], seeds)
    table = study.groupby(["explore_steps", "depth"]).agg(
        model_pairs=("model_pairs", "mean"),
        optimal_fraction=("optimal_fraction", "mean"),
        reach_goal=("path_length", lambda x: int(np.isfinite(x).sum())),
        shortest_path=("path_length", lambda x: int((x == 14).sum())),
    )
    print(table.round(3).to_markdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    seeds = range(parser.parse_args().seeds)
    dyna_maze(seeds)
    changing_mazes(seeds)
    lookahead(seeds)


if __name__ == "__main__":
    main()
