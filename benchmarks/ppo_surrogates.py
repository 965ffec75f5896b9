"""Benchmark: the PPO paper's Table 1 in miniature: which surrogate objective learns best.

Schulman et al. (2017), *Proximal Policy Optimization Algorithms*, section 6.1, compare
eleven settings of the surrogate objective, all with one hyperparameter setting per
task. This script runs the same eleven with ``rlcourse.pg.ppo.train``:

* no clipping or penalty (``surrogate="none"``);
* clipping, ε = 0.1, 0.2, 0.3 (``surrogate="clip"``, ``clip_range=ε``);
* adaptive KL penalty, d_targ = 0.003, 0.01, 0.03 (``surrogate="adaptive-kl"``,
  ``kl_target=d_targ``, ``kl_coef=1.0``: the first β, as in the paper);
* fixed KL penalty, β = 0.3, 1, 3, 10 (``surrogate="fixed-kl"``, ``kl_coef=β``);

on CartPole-v1, Acrobot-v1 and Pendulum-v1 instead of the paper's seven MuJoCo tasks,
and on far smaller budgets than its 1M steps (see ``TASKS``). Every variant gets the same
settings on a task, neither ε nor α annealed, so that only the surrogate differs:
CartPole-v1 and Pendulum-v1 start from ``PPOConfig.for_env`` (the RL Zoo's values) with
``anneal_lr=False`` and ``anneal_clip=False``; Acrobot-v1 has 8 environments × 256 steps,
gae_lambda 0.94, 4 epochs of minibatches of 256 (the Zoo's Acrobot-v1 values, with 8
environments instead of 16 and no observation normalisation), the defaults otherwise.

The score of a run is the paper's: the mean return of the last 100 training episodes,
read from the run's log (one row per iteration, with the mean ``return`` of the
``episodes`` that ended in it; walking back from the last row, rows are weighted by
their episodes, the oldest one cut so that the weights add up to 100). Scores are
normalised per task as in the paper: a uniformly random policy scores 0 (its mean
return over ``--random-episodes`` episodes) and the best run on the task, of any variant
and seed, scores 1. The table averages the normalised scores over tasks and seeds and
prints the paper's numbers beside them. A run without a score (its loss turned NaN or
infinite, or no episode ended within the budget) counts as the random policy and is
reported.

Run ``python benchmarks/ppo_surrogates.py`` (3 tasks × 11 variants × seeds 0 1 2 = 99 runs;
estimated from single-run speeds at about 20 minutes on two free cores with ``--workers 2``)
or ``--quick`` for a smoke run (8,192 steps per run, one seed: a minute or two; it checks
that every variant runs and measures nothing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import math
import multiprocessing
import statistics
import time

# (label, PPOConfig fields): the rows of the paper's Table 1, in its order
VARIANTS = {
    "no clipping or penalty": dict(surrogate="none"),
    "clipping, eps=0.1": dict(surrogate="clip", clip_range=0.1),
    "clipping, eps=0.2": dict(surrogate="clip", clip_range=0.2),
    "clipping, eps=0.3": dict(surrogate="clip", clip_range=0.3),
    "adaptive KL, d_targ=0.003": dict(surrogate="adaptive-kl", kl_target=0.003, kl_coef=1.0),
    "adaptive KL, d_targ=0.01": dict(surrogate="adaptive-kl", kl_target=0.01, kl_coef=1.0),
    "adaptive KL, d_targ=0.03": dict(surrogate="adaptive-kl", kl_target=0.03, kl_coef=1.0),
    "fixed KL, beta=0.3": dict(surrogate="fixed-kl", kl_coef=0.3),
    "fixed KL, beta=1": dict(surrogate="fixed-kl", kl_coef=1.0),
    "fixed KL, beta=3": dict(surrogate="fixed-kl", kl_coef=3.0),
    "fixed KL, beta=10": dict(surrogate="fixed-kl", kl_coef=10.0),
}
# the paper's Table 1: average normalised score over 7 MuJoCo tasks × 3 seeds, 1M steps each
PAPER = {"no clipping or penalty": -0.39, "clipping, eps=0.1": 0.76, "clipping, eps=0.2": 0.82,
         "clipping, eps=0.3": 0.70, "adaptive KL, d_targ=0.003": 0.68, "adaptive KL, d_targ=0.01": 0.74,
         "adaptive KL, d_targ=0.03": 0.71, "fixed KL, beta=0.3": 0.62, "fixed KL, beta=1": 0.71,
         "fixed KL, beta=3": 0.72, "fixed KL, beta=10": 0.69}
BEST, WORST = "clipping, eps=0.2", "no clipping or penalty"   # the paper's best and worst rows
# env steps per run: (default, --quick)
TASKS = {"CartPole-v1": (100_000, 8_192), "Acrobot-v1": (200_000, 8_192), "Pendulum-v1": (200_000, 8_192)}
LAST_EPISODES = 100


def task_config(env_id: str):
    """The one PPOConfig every variant shares on ``env_id`` (before its own fields go in)."""
    from rlcourse.pg.ppo import PPOConfig

    if env_id == "Acrobot-v1":
        return PPOConfig(num_envs=8, n_steps=256, gae_lambda=0.94, n_epochs=4, batch_size=256)
    return dataclasses.replace(PPOConfig.for_env(env_id), anneal_lr=False, anneal_clip=False)


def last_episodes_mean(log, n: int = LAST_EPISODES) -> float:
    """Mean return of the last ``n`` episodes from a log of per-row means and episode counts."""
    total, weight = 0.0, 0
    for mean, count in zip(log["return"].iloc[::-1], log["episodes"].iloc[::-1]):
        if count == 0:
            continue
        take = min(int(count), n - weight)
        total += float(mean) * take
        weight += take
        if weight == n:
            break
    return total / weight if weight else math.nan


def run_one(env_id: str, variant: str, seed: int, steps: int) -> dict:
    """Train one variant on one task (in a worker process); return its score."""
    from rlcourse.pg import ppo
    from rlcourse.run import NonFiniteError

    config = dataclasses.replace(task_config(env_id), **VARIANTS[variant])
    start = time.perf_counter()
    try:
        result = ppo.train(env_id, config, steps=steps, seed=seed)
    except NonFiniteError as err:
        return {"env_id": env_id, "variant": variant, "seed": seed, "score": math.nan, "episodes": 0,
                "diverged": str(err), "seconds": time.perf_counter() - start}
    return {"env_id": env_id, "variant": variant, "seed": seed, "score": last_episodes_mean(result.log),
            "episodes": int(result.log["episodes"].sum()), "diverged": None,
            "seconds": time.perf_counter() - start}


def random_score(env_id: str, episodes: int) -> float:
    """Mean return of the uniformly random policy over ``episodes`` episodes seeded 0, 1, …"""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(0)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def normalise(runs: list[dict], randoms: dict[str, float]) -> tuple[dict, dict]:
    """Each run's score on its task's scale (random 0, best run 1); and each task's best run."""
    best = {env_id: max((run["score"] for run in runs if run["env_id"] == env_id and not math.isnan(run["score"])),
                        default=randoms[env_id]) for env_id in randoms}
    normalised = {}
    for run in runs:
        env_id = run["env_id"]
        span = best[env_id] - randoms[env_id]
        score = randoms[env_id] if math.isnan(run["score"]) else run["score"]   # no score: as random
        normalised[(env_id, run["variant"], run["seed"])] = (score - randoms[env_id]) / span if span > 0 else 0.0
    return normalised, best


def rank_correlation(xs: list[float], ys: list[float]) -> float:
    """Spearman's ρ (average ranks for ties)."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var > 0 else math.nan


def print_tables(runs: list[dict], randoms: dict[str, float], tasks: list[str], seeds: list[int]) -> None:
    normalised, best = normalise(runs, randoms)
    width = max(len(v) for v in VARIANTS) + 2
    short = {env_id: env_id.split("-")[0] for env_id in tasks}

    print(f"\nscore: mean return of the last {LAST_EPISODES} training episodes, mean over seeds {seeds}")
    header = f"{'variant':<{width}}" + "".join(f"{short[t]:>12}" for t in tasks)
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        cells = []
        for env_id in tasks:
            scores = [run["score"] for run in runs if run["env_id"] == env_id and run["variant"] == variant]
            finite = [score for score in scores if not math.isnan(score)]
            mark = "*" if len(finite) < len(scores) else " "   # *: some seeds have no score, left out here
            unscored = "diverged" if any(run["diverged"] for run in runs if run["env_id"] == env_id
                                         and run["variant"] == variant) else "no episode"
            cells.append(f"{statistics.fmean(finite):>11.1f}{mark}" if finite else f"{unscored:>12}")
        print(f"{variant:<{width}}" + "".join(cells))
    print(f"{'random policy (= 0)':<{width}}" + "".join(f"{randoms[t]:>12.1f}" for t in tasks))
    print(f"{'best run (= 1)':<{width}}" + "".join(f"{best[t]:>12.1f}" for t in tasks))

    averages = {}
    print(f"\naverage normalised score (random policy 0, best run on the task 1), over "
          f"{len(tasks)} task(s) x {len(seeds)} seed(s), beside the paper's Table 1 "
          f"(7 MuJoCo tasks x 3 seeds, 1M steps)")
    header = (f"{'variant':<{width}}{'ours':>8}{'paper':>8}" + "".join(f"{short[t]:>12}" for t in tasks))
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        per_task = [statistics.fmean(normalised[(t, variant, s)] for s in seeds) for t in tasks]
        averages[variant] = statistics.fmean(normalised[(t, variant, s)] for t in tasks for s in seeds)
        print(f"{variant:<{width}}{averages[variant]:>8.2f}{PAPER[variant]:>8.2f}"
              + "".join(f"{x:>12.2f}" for x in per_task))

    order = list(VARIANTS)
    unscored = sorted((run for run in runs if math.isnan(run["score"])),
                      key=lambda run: (tasks.index(run["env_id"]), order.index(run["variant"]), run["seed"]))
    if unscored:
        print(f"\n{len(unscored)} run(s) have no score; they count as the random policy in the normalised scores "
              f"and are left out of the means marked * above:")
        for run in unscored:
            why = run["diverged"] or "no episode ended within the budget"
            print(f"  {run['env_id']} {run['variant']} seed {run['seed']}: {why}")

    top = max(averages, key=averages.get)
    bottom = min(averages, key=averages.get)
    best_ok, worst_ok = averages[BEST] >= averages[top], averages[WORST] <= averages[bottom]
    rho = rank_correlation([averages[v] for v in VARIANTS], [PAPER[v] for v in VARIANTS])
    if averages[top] == averages[bottom]:
        print("\ncannot compare with the paper: every variant has the same average score", flush=True)
        return
    verdict = ("agrees with the paper" if best_ok and worst_ok else
               "partly agrees with the paper" if best_ok or worst_ok else "does not agree with the paper")
    print(f"\n{verdict}: {BEST} is best here: {'yes' if best_ok else f'no (best: {top}, {averages[top]:.2f})'}; "
          f"{WORST} is worst here: {'yes' if worst_ok else f'no (worst: {bottom}, {averages[bottom]:.2f})'}; "
          f"rank correlation with the paper's column: {rho:.2f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS),
                        help="tasks to run (default all three)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--steps", type=int,
                        help="env steps per run on every task (default: 100,000 on CartPole-v1, 200,000 on "
                             "Acrobot-v1 and Pendulum-v1; 8,192 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 8,192 steps per run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one run each at a time (default 2)")
    parser.add_argument("--random-episodes", type=int, help="episodes of the random policy per task (default 20; 5 "
                                                             "with --quick)")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = {t: args.steps or TASKS[t][1 if args.quick else 0] for t in args.tasks}
    random_episodes = args.random_episodes or (5 if args.quick else 20)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    print(f"PPO surrogate objectives (the paper's Table 1): {len(VARIANTS)} variants x {len(args.tasks)} task(s) x "
          f"seeds {seeds} = {len(VARIANTS) * len(args.tasks) * len(seeds)} runs on {args.workers} worker(s)",
          flush=True)
    varied = {field for fields in VARIANTS.values() for field in fields}
    for env_id in args.tasks:
        config = task_config(env_id)
        shared = ", ".join(f"{field.name}={getattr(config, field.name)}" for field in dataclasses.fields(config)
                           if field.name not in varied and field.name != "log_interval")
        print(f"  {env_id}: {steps[env_id]:,} env steps per run; shared settings: {shared}", flush=True)
    randoms = {env_id: random_score(env_id, random_episodes) for env_id in args.tasks}
    print(f"  random policy ({random_episodes} episodes): "
          + ", ".join(f"{env_id} {score:.1f}" for env_id, score in randoms.items()), flush=True)

    start = time.perf_counter()
    jobs = [(env_id, variant, seed, steps[env_id]) for seed in seeds for env_id in args.tasks for variant in VARIANTS]
    runs = []
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, *job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs.append(run)
            outcome = f"diverged ({run['diverged']})" if run["diverged"] else (
                f"last {LAST_EPISODES} episodes {run['score']:.1f} ({run['episodes']} episodes in all)")
            print(f"  [{len(runs)}/{len(jobs)}] {run['env_id']:<12} {run['variant']:<26} seed {run['seed']}: "
                  f"{outcome}, {run['seconds']:.1f} s", flush=True)
    print_tables(runs, randoms, args.tasks, seeds)
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s of wall time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
