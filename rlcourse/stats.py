r"""Statistics over seeds that a reader can trust: IQM, bootstrap intervals, curves with bands.

One training run is one draw from a distribution of outcomes: the seed picks the initial
weights, the exploration and the environment's randomness, and the floating-point path
(thread count, machine) can move a run further still. A claim about an algorithm is
therefore a claim about that distribution, estimated from a handful of seeds. Agarwal et
al. (2021), *Deep Reinforcement Learning at the Edge of the Statistical Precipice*
(NeurIPS; the ``rliable`` library), recommend, and this module computes:

* the **interquartile mean** (IQM) of the final scores: the mean of the middle 50% of
  runs. It ignores the best and worst quarter, so one lucky or broken seed moves it far
  less than the mean, while it uses far more of the data than the median;
* a 95% **stratified bootstrap confidence interval** of it (Efron & Tibshirani 1993,
  *An Introduction to the Bootstrap*, ch. 13, the percentile interval): resample the
  runs with replacement *within each task* (stratum), recompute the statistic, repeat,
  and take the 2.5th and 97.5th percentiles of the recomputed values;
* the **solved fraction**: the share of runs whose final score reaches a threshold;
* **steps to threshold** from a learning curve, and learning curves with a band: the
  IQM across seeds at every point of a common grid of env steps, with its interval;
* the interval of a **difference** between two sets of runs (two libraries, two
  settings): resample each set on its own. A claim that one is better is made only where
  that interval excludes 0.

Everything here is a pure function of arrays (NumPy, pandas); running the seeds is
:mod:`rlcourse.seeds`. Bad input (empty, non-finite, the wrong shape) raises
``ValueError`` naming the argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

Statistic = Callable[..., np.ndarray]  # statistic(array, axis=k) reduces axis k


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (for a difference: a claim may be made)."""
        return not self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def check_scores(scores, name: str = "scores", allow_nan: bool = False) -> np.ndarray:
    """``scores`` as a float array of at least one run; ``name`` is what an error calls it."""
    try:
        array = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {scores!r}") from None
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one run, got {scores!r}")
    if not allow_nan and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers, got {scores!r}")
    return array


def iqm(scores, axis: int | None = None):
    r"""The interquartile mean: twice the integral of the quantile function over [¼, ¾].

    For :math:`n` sorted scores :math:`x_{(1)} \le \dots \le x_{(n)}` the empirical
    distribution puts mass :math:`1/n` on each, the :math:`i`-th covering the quantiles
    :math:`[(i-1)/n,\ i/n]`, so

    .. math::  \mathrm{IQM} = 2 \sum_i x_{(i)} \,\bigl|[(i-1)/n,\ i/n] \cap [\tfrac14, \tfrac34]\bigr|.

    When 4 divides :math:`n` this is the plain mean of the middle :math:`n/2` scores; for
    other :math:`n` the two scores that straddle a quartile count in part (10 seeds: the
    3rd and 8th with weight ½, the 4th to 7th fully). ``rliable`` uses
    ``scipy.stats.trim_mean(x, 0.25)`` instead, which drops :math:`\lfloor n/4 \rfloor`
    scores from each end whole; the two agree when 4 divides :math:`n`.

    ``axis=None`` pools every score; an integer reduces that axis only.
    """
    array = check_scores(scores)
    if axis is None:
        array, axis = array.ravel(), 0
    ordered = np.sort(array, axis=axis)
    n = ordered.shape[axis]
    lower, upper = np.arange(n) / n, np.arange(1, n + 1) / n
    weights = 2.0 * np.clip(np.minimum(upper, 0.75) - np.maximum(lower, 0.25), 0.0, None)
    shape = [1] * ordered.ndim
    shape[axis] = n
    return np.sum(ordered * weights.reshape(shape), axis=axis)


def _strata(scores, name: str) -> list[np.ndarray]:
    """Scores as a list of strata (tasks), each a 1-D array of runs.

    A 1-D array is one task; a 2-D array is ``[runs, tasks]`` (``rliable``'s layout); a
    mapping or a list of 1-D arrays gives one task each (their numbers of runs may differ).
    """
    if isinstance(scores, Mapping):
        items = [(f"{name}[{key!r}]", value) for key, value in scores.items()]
    elif isinstance(scores, (list, tuple)) and len(scores) and np.ndim(scores[0]) >= 1:
        items = [(f"{name}[{i}]", value) for i, value in enumerate(scores)]
    else:
        array = check_scores(scores, name)
        if array.ndim > 2:
            raise ValueError(f"{name} must be [runs] or [runs, tasks], got shape {array.shape}")
        return [array] if array.ndim == 1 else [array[:, k] for k in range(array.shape[1])]
    if not items:
        raise ValueError(f"{name} must hold at least one task, got {scores!r}")
    strata = [check_scores(value, label) for label, value in items]
    for (label, _), stratum in zip(items, strata):
        if stratum.ndim != 1:
            raise ValueError(f"{label} must be 1-D (one score per run), got shape {stratum.shape}")
    return strata


def _check_options(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence!r} is out of range: it must be in (0, 1)")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples = {resamples!r} is out of range: it must be an integer >= 1")


def resample(strata: Sequence[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` stratified bootstrap samples, pooled: shape ``[resamples, runs, ...]``.

    Within each stratum of :math:`n_k` runs, draw :math:`n_k` indices uniformly with
    replacement; then put the strata side by side, as the statistic sees the real data.
    """
    drawn = [stratum[rng.integers(0, len(stratum), size=(resamples, len(stratum)))] for stratum in strata]
    return np.concatenate(drawn, axis=1)


def bootstrap_ci(
    scores, statistic: Statistic = iqm, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """The statistic of the pooled runs and its stratified percentile bootstrap interval.

    ``scores``: a 1-D array of final scores, one per run (one task), or a list/dict of such
    arrays (one per task; the runs are resampled within each). ``statistic(x, axis=k)``
    reduces axis ``k``: :func:`iqm` (default), ``np.mean``, ``np.median``. The interval is
    the :math:`(1-c)/2` and :math:`(1+c)/2` quantiles of the statistic over ``resamples``
    bootstrap samples drawn with ``np.random.default_rng(seed)``, so it repeats exactly.
    With a single run, or runs that all agree, it shrinks to the point.
    """
    _check_options(confidence, resamples)
    strata = _strata(scores, "scores")
    estimate = float(statistic(np.concatenate(strata), axis=0))
    values = statistic(resample(strata, resamples, np.random.default_rng(seed)), axis=1)
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high))


def difference_ci(
    first, second, statistic: Statistic = iqm, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """``statistic(first) − statistic(second)`` and its bootstrap interval.

    The two sets of runs are independent (different seeds, different libraries), so each
    is resampled on its own, stratified as in :func:`bootstrap_ci`, and the interval is
    the percentile interval of the differences. If it excludes 0, the data support a
    difference at that confidence; if not, they do not separate the two.
    """
    _check_options(confidence, resamples)
    rng = np.random.default_rng(seed)
    parts = [_strata(first, "first"), _strata(second, "second")]
    estimate = float(statistic(np.concatenate(parts[0]), axis=0) - statistic(np.concatenate(parts[1]), axis=0))
    values = statistic(resample(parts[0], resamples, rng), axis=1) - statistic(
        resample(parts[1], resamples, rng), axis=1
    )
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high))


def solved_fraction(scores, threshold: float) -> float:
    """The share of runs whose score is at least ``threshold``."""
    array = check_scores(scores)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold = {threshold!r} must be a finite number")
    return float(np.mean(array >= threshold))


def summarise(scores, threshold: float, steps=None) -> dict:
    """What a table row reports about a set of runs' final scores (and their steps to threshold).

    ``iqm``, ``ci_low``, ``ci_high`` (:func:`bootstrap_ci`), ``mean``, ``runs``, ``solved``
    (runs with a score ``>= threshold``) and ``solved_fraction``; given ``steps`` (each
    run's steps to threshold, NaN where never), ``reached`` (how many got there) and
    ``steps_median``, the median with a run that never got there counted as infinitely
    many steps (so it is ``inf`` when half never did).
    """
    array = check_scores(scores)
    interval = bootstrap_ci(array)
    row = {
        "iqm": interval.estimate,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "mean": float(array.mean()),
        "runs": len(array),
        "solved": int((array >= threshold).sum()),
        "solved_fraction": solved_fraction(array, threshold),
    }
    if steps is not None:
        steps = check_scores(steps, "steps", allow_nan=True)
        row["reached"] = int(np.isfinite(steps).sum())
        row["steps_median"] = float(np.median(np.where(np.isfinite(steps), steps, np.inf)))
    return row


def trailing_mean(values, weights, window: float) -> np.ndarray:
    r"""At each row, the weighted mean of the last rows holding at least ``window`` weight.

    A training log has one row per episode (weight 1) or per iteration (weight: the
    episodes that ended in it, ``values`` their mean return). Row :math:`i`'s value is
    :math:`\sum_{j=s}^{i} w_j v_j / \sum_{j=s}^{i} w_j` with :math:`s` the latest row such
    that :math:`\sum_{j=s}^{i} w_j \ge` ``window``: the mean of (about) the last
    ``window`` episodes, whole rows at a time. NaN until ``window`` weight has been seen.
    Rows of weight 0 (no episode ended) carry no value of their own.
    """
    v, w = check_scores(values, "values", allow_nan=True), check_scores(weights, "weights")
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError(f"values and weights must be 1-D of one length, got shapes {v.shape} and {w.shape}")
    if np.any(w < 0) or np.any(np.isnan(v) & (w > 0)):
        raise ValueError("weights must be >= 0, and 0 wherever values is NaN")
    if not window > 0:
        raise ValueError(f"window = {window!r} is out of range: it must be > 0")
    cum_w = np.concatenate([[0.0], np.cumsum(w)])
    cum_wv = np.concatenate([[0.0], np.cumsum(np.where(w > 0, w * np.nan_to_num(v), 0.0))])
    # the start s of row i's window: the last s with cum_w[i+1] - cum_w[s] >= window
    start = np.searchsorted(cum_w, cum_w[1:] - window, side="right") - 1
    full = cum_w[1:] - window >= 0
    start = np.clip(start, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (cum_wv[1:] - cum_wv[start]) / (cum_w[1:] - cum_w[start])
    return np.where(full, mean, np.nan)


def steps_to_threshold(steps, curve, threshold: float) -> float:
    """The first ``steps[i]`` at which ``curve[i] >= threshold``; NaN if it never does."""
    x, y = check_scores(steps, "steps"), check_scores(curve, "curve", allow_nan=True)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"steps and curve must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    reached = np.flatnonzero(y >= threshold)
    return float(x[reached[0]]) if len(reached) else float("nan")


def on_grid(steps, curve, grid) -> np.ndarray:
    """The curve's last value at or before each grid point (NaN before its first row).

    Runs log at different env steps (episodes end when they end); putting every run on
    one grid lets the seeds be compared point by point.
    """
    x, y = check_scores(steps, "steps"), check_scores(curve, "curve", allow_nan=True)
    if x.shape != y.shape or x.ndim != 1 or np.any(np.diff(x) < 0):
        raise ValueError("steps must be 1-D, non-decreasing and as long as curve")
    index = np.searchsorted(x, np.asarray(grid, dtype=float), side="right") - 1
    return np.where(index >= 0, y[np.clip(index, 0, None)], np.nan)


def curve_band(
    curves, grid, statistic: Statistic = iqm, confidence: float = 0.95, resamples: int = 2_000, seed: int = 0
) -> pd.DataFrame:
    """Per grid point, the statistic across runs and its bootstrap interval.

    ``curves`` is ``[runs, len(grid)]`` (one row per seed, e.g. from :func:`on_grid`). The
    runs are resampled whole, one index set per bootstrap sample for every grid point, so
    the band is the pointwise percentile interval of the seeds' curves. Where any run has
    no value yet (NaN), that grid point has none either. Returns columns ``grid`` (the
    grid's points: env steps, episodes), ``estimate``, ``low``, ``high``.
    """
    _check_options(confidence, resamples)
    values = check_scores(curves, "curves", allow_nan=True)
    grid = np.asarray(grid, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(grid):
        raise ValueError(
            f"curves must be [runs, {len(grid)}] for a grid of {len(grid)} points, got shape {values.shape}"
        )
    known = ~np.isnan(values).any(axis=0)
    estimate, low, high = (np.full(len(grid), np.nan) for _ in range(3))
    if known.any():
        ok = values[:, known]
        estimate[known] = statistic(ok, axis=0)
        boot = statistic(resample([ok], resamples, np.random.default_rng(seed)), axis=1)
        low[known], high[known] = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return pd.DataFrame({"grid": grid, "estimate": estimate, "low": low, "high": high})
