"""Lesson 4's DAgger study: DAgger against behaviour cloning on CartPole-v1 with the scripted
expert, return and own-state error against expert labels, over seeds.

Writes ``docs/lessons/04_dagger.png`` and ``benchmarks/results/dagger_study.csv`` and prints the
numbers quoted in ``docs/lessons/04_policy_gradients.md``::

    python benchmarks/lesson4_dagger.py --seeds 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rlcourse import stats
from rlcourse.pg.dagger import DAggerConfig, dagger_study, plot_label_efficiency
from rlcourse.pg.imitation import cartpole_controller, compounding_error_study

ROOT = Path(__file__).resolve().parents[1]


def labels_to_solve(frame: pd.DataFrame, threshold: float = 475.0) -> np.ndarray:
    """Per seed, the fewest expert labels whose learner returns at least ``threshold`` (inf: never)."""
    return np.array(
        [
            g.loc[g["return"] >= threshold, "samples"].min() if (g["return"] >= threshold).any() else np.inf
            for _, g in frame.groupby("seed")
        ],
        dtype=float,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--labels-per-round", type=int, default=100)
    args = parser.parse_args()
    seeds, expert = tuple(range(args.seeds)), cartpole_controller()
    config = DAggerConfig(labels_per_round=args.labels_per_round)
    sizes = [config.labels_per_round * k for k in range(1, args.rounds + 1)]
    dagger = dagger_study(expert, "CartPole-v1", args.rounds, seeds, config, eval_episodes=10)
    bc = compounding_error_study(expert, "CartPole-v1", sizes, seeds, eval_episodes=10)
    frame = pd.concat([dagger.assign(method="DAgger"), bc[dagger.columns].assign(method="behaviour cloning")])
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    frame.to_csv(ROOT / "benchmarks" / "results" / "dagger_study.csv", index=False)
    for name, part in frame.groupby("method"):
        print(
            name,
            "return per label count (IQM):",
            part.groupby("samples")["return"].apply(lambda x: round(stats.iqm(x.to_numpy()), 1)).to_dict(),
        )
        print(
            name,
            "own-state error (IQM):",
            part.groupby("samples")["error_own_states"].apply(lambda x: round(stats.iqm(x.to_numpy()), 3)).to_dict(),
        )
        solved = labels_to_solve(part)
        print(name, "labels to reach 475 per seed:", solved.tolist(), "median", np.median(solved))
    print(
        "labels to reach 475, DAgger − behaviour cloning (IQM):",
        stats.difference_ci(np.minimum(labels_to_solve(dagger), 1e4), np.minimum(labels_to_solve(bc), 1e4)),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    studies = {"DAgger": dagger, "behaviour cloning": bc[dagger.columns]}
    plot_label_efficiency(studies, "return", axes[0])
    plot_label_efficiency(studies, "error_own_states", axes[1])
    axes[0].axhline(500, color="k", lw=0.8, ls=":")
    axes[1].set_ylim(0, None)
    fig.suptitle(f"CartPole-v1, scripted expert: IQM over {len(seeds)} seeds, 95% band")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "lessons" / "04_dagger.png", dpi=100)


if __name__ == "__main__":
    main()
