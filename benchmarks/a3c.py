"""Benchmark: A3C on CartPole-v1 with 1 and 2 workers: throughput and steps to 475.

For each number of workers and each seed the script trains
``rlcourse.pg.a3c.train("CartPole-v1", A3CConfig(workers=W), steps=N, seed=s)`` (the
default config otherwise) and measures:

* **steps/s**: environment steps per second of training, all workers together: from the
  moment every worker is ready (process start-up left out) to the end, with the pauses for
  evaluations left out (``Result.timing["steps_per_second"]``);
* **steps to 475**: the env steps at the first evaluation whose mean return reaches 475.
  An evaluation is 10 greedy (deterministic) episodes on a separate CartPole-v1, seeded
  0, 1, …, 9 (``rlcourse.play.evaluate_policy``), taken with the workers paused after the
  first update that reaches each multiple of 2,000 env steps (``callback_every``);
* **final**: the same evaluation of the policy at the end of the budget.

With two workers the runs are not reproducible (see ``rlcourse/pg/a3c.py``): run several
seeds before drawing conclusions. On a machine with fewer free cores than workers, the
workers take turns and the speed-up shrinks towards 1.

Run ``python benchmarks/a3c.py`` (500,000 steps, seeds 0 1 2: about 15 minutes on two
cores), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import statistics

ENV_ID = "CartPole-v1"
SOLVED = 475.0


def run(workers: int, seed: int, steps: int, every: int, episodes: int) -> dict:
    from rlcourse.pg import a3c
    from rlcourse.play import evaluate_policy

    history = []

    def evaluate(env_steps, policy):
        if not any(mean >= SOLVED for _, mean in history):       # stop evaluating once solved
            history.append((env_steps, evaluate_policy(policy, ENV_ID, episodes=episodes, seed=0,
                                                       print_fn=None)["mean_return"]))

    result = a3c.train(ENV_ID, a3c.A3CConfig(workers=workers), steps=steps, seed=seed, callback=evaluate,
                       callback_every=every)
    final = evaluate_policy(result.policy, ENV_ID, episodes=episodes, seed=0, print_fn=None)["mean_return"]
    return {"solved_at": next((s for s, mean in history if mean >= SOLVED), None), "final": final,
            "steps_per_second": result.timing["steps_per_second"], "seconds": result.timing["seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="env steps per run (default 500,000; 2,000 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="default 1 2")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 2,000 steps, 2 episodes")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, help="default 10 (2 with --quick)")
    args = parser.parse_args(argv)
    steps = args.steps or (2_000 if args.quick else 500_000)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    episodes = args.eval_episodes or (2 if args.quick else 10)

    print(f"A3C on {ENV_ID}, default config: {steps:,} env steps per run, seeds {seeds}; evaluation: "
          f"{episodes} greedy episodes every {args.eval_every:,} env steps", flush=True)
    results = {w: [] for w in args.workers}
    for seed in seeds:
        for w in args.workers:           # alternate, so that every setting sees the same machine
            row = run(w, seed, steps, args.eval_every, episodes)
            results[w].append(row)
            solved = f"{row['solved_at']:,}" if row["solved_at"] is not None else "not reached"
            print(f"  {w} worker(s), seed {seed}: {row['steps_per_second']:,.0f} steps/s, 475 at {solved}, "
                  f"final {row['final']:.1f}", flush=True)

    header = f"{'':<12}{'steps/s':>9}{'speed-up':>10}{'steps to 475 (median)':>23}{'reached':>9}{'final (mean)':>14}"
    print()
    print(header)
    print("-" * len(header))
    base = statistics.fmean(row["steps_per_second"] for row in results[args.workers[0]])
    for w, rows in results.items():
        speed = statistics.fmean(row["steps_per_second"] for row in rows)
        median = statistics.median([row["solved_at"] or float("inf") for row in rows])
        median_text = f"{median:,.0f}" if median != float("inf") else f"> {steps:,}"
        reached = sum(row["solved_at"] is not None for row in rows)
        final = statistics.fmean(row["final"] for row in rows)
        print(f"{w} worker{'s' if w > 1 else ' ':<4}{speed:>11,.0f}{speed / base:>9.2f}x{median_text:>23}"
              f"{reached:>7}/{len(rows)}{final:>14.1f}")
    print(f"\nspeed-up: steps/s relative to {args.workers[0]} worker(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
