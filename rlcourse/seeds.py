"""Train one algorithm over many seeds, in worker processes, and report what the seeds agree on.

:func:`run_seeds` trains ``algo`` on ``env_id`` once per seed with the package's public
entry points (:func:`rlcourse.train`, the config table of :mod:`rlcourse.algorithms`),
judges each *final* model with :func:`rlcourse.evaluate` (the function behind
``rlcourse evaluate``) on episodes seeded from :func:`eval_seed`, seeds no training run
uses, a block of its own for each training seed, and summarises the seeds with
:mod:`rlcourse.stats`: the interquartile mean of the final greedy returns, its 95%
bootstrap interval and the solved fraction.

Each run has a process of its own (``spawn``: nothing inherited from the parent), torch on
one thread there, and at most ``workers`` of them at a time. On the CPU a run depends only
on its seed, the machine and its thread count, so the results repeat on the same machine;
on another machine the floating-point path differs, which is why the claims are about
the seeds taken together.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

import rlcourse
from rlcourse import stats
from rlcourse.algorithms import ALGORITHMS
from rlcourse.config import apply_overrides

EVAL_SEED_OFFSET = 10_000


def eval_seed(seed: int, episodes: int) -> int:
    """The first evaluation episode's seed for training seed ``seed``: ``10_000 + seed · episodes``.

    ``rlcourse.evaluate`` seeds its episodes ``s, s + 1, …, s + episodes − 1``, so every
    training seed is judged on episodes of its own, away from the seeds training uses (the
    run's seed and the next few for its environments; A3C's workers add 1,000 each).
    Shared episodes would make the seeds' scores move together and the interval too narrow.
    """
    return EVAL_SEED_OFFSET + seed * episodes


def one_thread() -> None:
    """Run torch on one thread in this process (the initializer of every worker)."""
    import torch

    torch.set_num_threads(1)


def run_in_workers(
    function: Callable, jobs: Sequence, workers: int, on_done: Callable[[int, Any], None] | None = None
) -> list:
    """``[function(job) for job in jobs]``, each call in a fresh spawned process, at most ``workers`` at once.

    ``function`` must be importable by name (a module-level function). Every process
    serves one job and exits, so no run inherits another's caches or memory, and the
    results come back in the order of ``jobs``. ``on_done(index, result)``, if given, runs
    in this process as each job finishes, in the order they finish (to save a long
    benchmark's runs one by one, so that an interrupted one loses only the runs under way).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers = {workers!r} is out of range: it must be an integer >= 1")
    jobs = list(jobs)
    if not jobs:
        return []
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(jobs))) as threads:
        futures = [threads.submit(_in_fresh_process, function, job) for job in jobs]
        if on_done is not None:
            index = {future: i for i, future in enumerate(futures)}
            for future in concurrent.futures.as_completed(futures):
                on_done(index[future], future.result())
        return [future.result() for future in futures]


def _in_fresh_process(function: Callable, job: Any) -> Any:
    """``function(job)`` in a spawned process of its own, on one torch thread, which then exits.
    (Not a ``multiprocessing.Pool``: its workers are daemons, and A3C's run starts processes.)"""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=one_thread) as process:
        return process.submit(function, job).result()


@dataclasses.dataclass(frozen=True)
class SeedJob:
    """One training run of :func:`run_seeds`, as sent to a worker."""

    algo: str
    env_id: str
    config: Any
    steps: int
    seed: int
    eval_episodes: int
    threshold: float
    window: int
    grid: tuple[float, ...]


def train_and_judge(job: SeedJob) -> dict:
    """Train one seed, evaluate its final model on unseen seeds; return the numbers and its curve.

    The learning curve is the mean return of the last ``window`` training episodes
    (:func:`rlcourse.stats.trailing_mean`), the policy as it explored; *steps to threshold*
    is the first env step at which that curve reaches ``threshold``.
    """
    start = time.perf_counter()
    result = rlcourse.train(job.algo, job.env_id, steps=job.steps, seed=job.seed, config=job.config)
    seconds = time.perf_counter() - start
    judged = rlcourse.evaluate(
        result, episodes=job.eval_episodes, seed=eval_seed(job.seed, job.eval_episodes), print_fn=None
    )
    log = result.log
    weights = log["episodes"].to_numpy(float) if "episodes" in log else np.ones(len(log))
    returns = log["return"].to_numpy(float)
    curve = stats.trailing_mean(returns, np.where(np.isnan(returns), 0.0, weights), job.window)
    steps = log["env_steps"].to_numpy(float)
    return {
        "seed": job.seed,
        "final_return": judged["mean_return"],
        "final_std": judged["std_return"],
        "final_length": judged["mean_length"],
        "train_return": float(curve[-1]) if len(curve) else float("nan"),
        "steps_to_threshold": stats.steps_to_threshold(steps, curve, job.threshold) if len(curve) else float("nan"),
        "seconds": seconds,
        "train_seconds": float(result.timing.get("seconds", seconds)),
        "env_steps": result.steps,
        "status": result.status,
        "curve": stats.on_grid(steps, curve, job.grid) if len(curve) else np.full(len(job.grid), np.nan),
    }


@dataclasses.dataclass(frozen=True)
class SeedResults:
    """What :func:`run_seeds` found: one row per seed, the seeds' curves on one grid, a summary.

    ``runs`` columns: ``seed``, ``final_return`` (mean of the greedy evaluation episodes),
    ``final_std``, ``final_length``, ``train_return`` (last ``window`` training episodes),
    ``steps_to_threshold`` (NaN: never reached), ``seconds`` (wall time of the training
    call), ``train_seconds`` (the run's own clock), ``env_steps``, ``status``.
    ``curves``: ``[seeds, grid]`` training curves. ``summary``: see :func:`summarise`.
    """

    algo: str
    env_id: str
    threshold: float
    runs: pd.DataFrame
    grid: np.ndarray
    curves: np.ndarray
    summary: dict

    def band(self, **options) -> pd.DataFrame:
        """The curves' IQM and 95% interval at every grid point (:func:`rlcourse.stats.curve_band`)."""
        return stats.curve_band(self.curves, self.grid, **options)

    def curves_table(self) -> pd.DataFrame:
        """The curves as :func:`curves_table` writes them (the benchmarks' ``*_curves.csv``)."""
        return curves_table(self.grid, self.curves, self.runs["seed"])


def curves_table(grid, curves, seeds) -> pd.DataFrame:
    """``[seeds, grid]`` curves as a table: a row per grid point, column ``env_steps`` and one
    column per seed, ``seed0``, ``seed1``, ... (the benchmarks' ``*_curves.csv`` files)."""
    curves = np.asarray(curves, dtype=float)
    seeds = [int(seed) for seed in seeds]
    if curves.ndim != 2 or curves.shape != (len(seeds), len(grid)):
        raise ValueError(f"curves must be [{len(seeds)} seeds, {len(grid)} grid points], got shape {curves.shape}")
    table = pd.DataFrame(curves.T, columns=[f"seed{seed}" for seed in seeds])
    table.insert(0, "env_steps", np.asarray(grid, dtype=float))
    return table


def table_band(table: pd.DataFrame, **options) -> tuple[pd.DataFrame, int]:
    """The IQM band (:func:`rlcourse.stats.curve_band`) of a :func:`curves_table` over its
    ``env_steps``, and how many seeds went into it: the ``seed*`` columns with any value
    (a seed that never finished ``window`` episodes has none and is left out; with no
    seed left the band is all NaN)."""
    seeds = [column for column in table.columns if column.startswith("seed") and table[column].notna().any()]
    grid = table["env_steps"].to_numpy(float)
    if not seeds:
        nothing = np.full(len(grid), np.nan)
        return pd.DataFrame({"grid": grid, "estimate": nothing, "low": nothing, "high": nothing}), 0
    return stats.curve_band(table[seeds].to_numpy(float).T, grid, **options), len(seeds)


def summarise(runs: pd.DataFrame, threshold: float) -> dict:
    """:func:`rlcourse.stats.summarise` of ``final_return`` and ``steps_to_threshold``, and the
    median wall time of a run, ``seconds_median``."""
    return {
        **stats.summarise(runs["final_return"], threshold, runs["steps_to_threshold"]),
        "seconds_median": float(runs["seconds"].median()),
    }


def curve_grid(steps: int, points: int = 50) -> tuple[float, ...]:
    """The env steps at which :func:`run_seeds` reads each training curve: ``points`` evenly spaced, the last at
    ``steps``."""
    return tuple(np.linspace(0, steps, points + 1)[1:].tolist())


def run_seeds(
    algo: str,
    env_id: str,
    seeds: Sequence[int] = range(10),
    *,
    steps: int,
    threshold: float,
    sets: dict[str, str] | None = None,
    config=None,
    workers: int = 2,
    eval_episodes: int = 20,
    window: int = 100,
    grid_points: int = 50,
) -> SeedResults:
    """Train ``algo`` on ``env_id`` once per seed (``workers`` processes at a time) and summarise.

    The config is ``config`` or the algorithm's default for ``env_id``, with ``sets``
    (``{"field": "text"}``, as ``--set field=text``) applied. ``threshold`` is the final
    greedy mean return that counts as solving the task. Each final model is evaluated on
    ``eval_episodes`` episodes seeded from :func:`eval_seed`. The training curves are put
    on ``grid_points`` points from 0 to ``steps``.
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"algo = {algo!r} is unknown; choose one of: {', '.join(ALGORITHMS)}")
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds = {seeds!r} must be distinct integers >= 0, at least one")
    for name, value in (
        ("steps", steps),
        ("eval_episodes", eval_episodes),
        ("window", window),
        ("grid_points", grid_points),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} = {value!r} is out of range: it must be an integer >= 1")
    config = apply_overrides(config or ALGORITHMS[algo].defaults_for(env_id), dict(sets or {}))
    grid = curve_grid(steps, grid_points)
    jobs = [SeedJob(algo, env_id, config, steps, seed, eval_episodes, float(threshold), window, grid) for seed in seeds]
    rows = run_in_workers(train_and_judge, jobs, workers)
    curves = np.stack([row.pop("curve") for row in rows])
    runs = pd.DataFrame(rows)
    return SeedResults(algo, env_id, float(threshold), runs, np.asarray(grid), curves, summarise(runs, threshold))
