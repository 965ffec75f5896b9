"""Benchmark: REINFORCE on CartPole-v1 with each weight Ψ_t, speed and steps to solve.

Lesson 4 claims that the choice of Ψ changes the variance of the gradient estimate, and so
how many environment steps it takes to learn. This script puts numbers on it: one run per
Ψ (same seed, same config apart from ``psi``), and for each

* **steps/s**: environment steps per second of training (collection and updates), with
  the evaluations left out of the clock;
* **steps to 475**: the env steps at the first evaluation whose mean return over
  ``--eval-episodes`` greedy episodes reaches 475, CartPole-v1's "solved" line. The policy
  is evaluated every ``--eval-every`` env steps, or every iteration when an iteration is
  longer (the default iteration is 4 × 1000 = 4000 steps), on a separate environment
  seeded 0, 1, …, 9 each time, as ``rlcourse evaluate`` does;
* **final**: the same evaluation of the policy at the end of the run.

``train`` has no callback, so the evaluations ride on the collector: the script hands
``reinforce.train`` a :class:`~rlcourse.pg.rollout.Rollout` that first evaluates the
policy it is given (the one about to collect the next batch), then collects as usual.

Run ``python benchmarks/pg.py`` (300,000 steps per Ψ, a few minutes on two cores),
``--quick`` for a smoke run of a few seconds, ``--psi NAME`` for one variant.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from rlcourse.pg import reinforce
from rlcourse.pg.reinforce import PSI, ReinforceConfig
from rlcourse.pg.rollout import Rollout
from rlcourse.play import evaluate_policy

ENV_ID = "CartPole-v1"
SOLVED = 475.0


def run(psi: str, steps: int, seed: int, eval_every: int, eval_episodes: int) -> dict:
    """Train REINFORCE with this Ψ, evaluating along the way; return what was measured."""
    evaluations = []          # (env steps, mean greedy return)
    clock = {"eval": 0.0, "last": -math.inf}

    def evaluate(policy, env_steps):
        start = time.perf_counter()
        mean = evaluate_policy(policy, ENV_ID, episodes=eval_episodes, seed=0, print_fn=None)["mean_return"]
        evaluations.append((env_steps, mean))
        clock["eval"] += time.perf_counter() - start
        clock["last"] = env_steps

    class EvaluatingRollout(Rollout):
        def collect(self, policy, steps_per_env):
            solved = any(mean >= SOLVED for _, mean in evaluations)
            if not solved and self.env_steps - clock["last"] >= eval_every:
                evaluate(policy, self.env_steps)
            return super().collect(policy, steps_per_env)

    reinforce.Rollout = EvaluatingRollout
    try:
        result = reinforce.train(ENV_ID, ReinforceConfig(psi=psi), steps=steps, seed=seed)
    finally:
        reinforce.Rollout = Rollout
    train_seconds = result.timing["seconds"] - clock["eval"]
    start = time.perf_counter()
    final = evaluate_policy(result.policy, ENV_ID, episodes=eval_episodes, seed=0, print_fn=None)["mean_return"]
    if not any(mean >= SOLVED for _, mean in evaluations):
        evaluations.append((result.steps, final))
    solved_at = next((env_steps for env_steps, mean in evaluations if mean >= SOLVED), None)
    return {"psi": psi, "env_steps": result.steps, "train_seconds": train_seconds,
            "steps_per_second": result.steps / max(train_seconds, 1e-9), "solved_at": solved_at,
            "final": final, "eval_seconds": clock["eval"] + time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="env steps per run (default 300,000; 8,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8,000 steps per Ψ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--psi", action="append", choices=PSI, help="run only this Ψ (repeatable)")
    parser.add_argument("--eval-every", type=int, default=2000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args(argv)
    steps = args.steps or (8_000 if args.quick else 300_000)
    torch.set_num_threads(1)   # as training does: tiny networks gain nothing from more threads

    print(f"REINFORCE on {ENV_ID}, seed {args.seed}, {steps:,} env steps per Ψ, default config "
          f"({ReinforceConfig().num_envs} envs x {ReinforceConfig().steps_per_env} steps per iteration); "
          f"evaluation: {args.eval_episodes} greedy episodes every {args.eval_every:,} env steps or iteration")
    rows = []
    for psi in args.psi or PSI:
        row = run(psi, steps, args.seed, args.eval_every, args.eval_episodes)
        rows.append(row)
        solved = f"{row['solved_at']:,}" if row["solved_at"] is not None else "not reached"
        print(f"  {psi}: {row['steps_per_second']:,.0f} steps/s, 475 at {solved}, final {row['final']:.1f} "
              f"({row['train_seconds']:.1f} s training, {row['eval_seconds']:.1f} s evaluating)", flush=True)

    header = f"{'psi':<24}{'env steps':>11}{'train s':>9}{'steps/s':>9}{'steps to 475':>14}{'final':>8}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        solved = f"{row['solved_at']:,}" if row["solved_at"] is not None else "-"
        print(f"{row['psi']:<24}{row['env_steps']:>11,}{row['train_seconds']:>9.1f}"
              f"{row['steps_per_second']:>9,.0f}{solved:>14}{row['final']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
