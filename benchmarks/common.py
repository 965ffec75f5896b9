"""What the benchmarks against Stable-Baselines3 share: one way to evaluate, to run, to report.

Every library is measured the same way:

* an **evaluation** is the mean return of ``episodes`` greedy episodes on a separate
  environment seeded 0, 1, …, taken at the first step at or after each multiple of
  ``every`` env steps (algorithms that step several environments at once cross a
  multiple between two calls); its time is kept apart from the training clock;
* **steps to the threshold** is the env steps of the first evaluation whose mean reaches it;
* **steps/s** is the budget divided by the training time, evaluations excluded;
* every run has a fresh process (``run_fresh``), so ``peak MB`` is that run's own peak
  resident memory and no run inherits another's warm caches.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import statistics
import time


class Evaluator:
    """Evaluate a greedy ``act(obs) -> action`` every ``every`` env steps, on its own clock."""

    def __init__(self, env_id: str, every: int, episodes: int):
        import gymnasium as gym

        self.env = gym.make(env_id)
        self.every, self.episodes = every, episodes
        self.next = every
        self.history: list[tuple[int, float]] = []
        self.seconds = 0.0

    def mean_return(self, act) -> float:
        start = time.perf_counter()
        total = 0.0
        for episode in range(self.episodes):
            obs, _ = self.env.reset(seed=episode)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = self.env.step(act(obs))
                total += float(reward)
                done = terminated or truncated
        self.seconds += time.perf_counter() - start
        return total / self.episodes

    def maybe(self, env_steps: int, act) -> None:
        """Evaluate if ``env_steps`` has reached the next multiple of ``every``."""
        if env_steps >= self.next:
            self.history.append((env_steps, self.mean_return(act)))
            self.next = (env_steps // self.every + 1) * self.every

    def summary(self, final: float, steps: int, train_seconds: float, threshold: float) -> dict:
        """What a run measured, given its final evaluation and its training time."""
        solved_at = next((env_steps for env_steps, mean in self.history if mean >= threshold), None)
        last = [mean for _, mean in self.history[-10:]]
        return {"solved_at": solved_at, "final": final, "last10": statistics.fmean(last) if last else final,
                "steps_per_second": steps / train_seconds, "train_seconds": train_seconds,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_fresh(function, *args) -> dict:
    """``function(*args)`` in a new spawned process; return its result."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def print_run(label: str, seed: int, row: dict, threshold: float) -> None:
    solved = f"{row['solved_at']:,}" if row["solved_at"] is not None else "not reached"
    print(f"  {label:<20} seed {seed}: {row['steps_per_second']:,.0f} steps/s, {threshold:g} at {solved}, "
          f"final {row['final']:.1f}, last 10 {row['last10']:.1f}, peak {row['peak_mb']:.0f} MB", flush=True)


def print_table(results: dict[str, list[dict]], steps: int, threshold: float,
                ours: str | None = None, reference: str | None = None) -> None:
    """One row per label (medians and means over seeds), then ours over the reference's speed."""
    header = (f"{'':<22}{f'steps to {threshold:g} (median)':>22}{'reached':>9}{'steps/s':>9}"
              f"{'final (mean)':>14}{f'>= {threshold:g} at end':>15}{'peak MB':>9}")
    print()
    print(header)
    print("-" * len(header))
    summary = {}
    for label, rows in results.items():
        reached = sum(row["solved_at"] is not None for row in rows)
        # a run that never reached the threshold counts as needing more than the budget
        median = statistics.median([row["solved_at"] or float("inf") for row in rows])
        speed = statistics.fmean(row["steps_per_second"] for row in rows)
        summary[label] = (median, speed)
        median_text = f"{median:,.0f}" if median != float("inf") else f"> {steps:,}"
        kept = sum(row["final"] >= threshold for row in rows)
        final = statistics.fmean(row["final"] for row in rows)
        print(f"{label:<22}{median_text:>22}{f'{reached}/{len(rows)}':>9}{speed:>9,.0f}{final:>14.1f}"
              f"{f'{kept}/{len(rows)}':>15}{max(row['peak_mb'] for row in rows):>9.0f}")
    if ours in summary and reference in summary:
        (ours_median, ours_speed), (ref_median, ref_speed) = summary[ours], summary[reference]
        print(f"\nsame settings, {ours} / {reference}: {ours_speed / ref_speed:.2f}x the steps per second; "
              f"median steps to {threshold:g}: {ours_median:,.0f} vs {ref_median:,.0f}")
