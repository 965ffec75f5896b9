"""rlcourse.stats against closed forms and brute force; rlcourse.seeds.run_seeds on the corridor."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rlcourse
from rlcourse import stats
from rlcourse.seeds import curve_grid, curves_table, eval_seed, run_in_workers, run_seeds, table_band

ROOT = Path(__file__).resolve().parents[1]


def brute_iqm(x):
    """The middle half of the scores, each repeated 4 times (then 4 divides the count exactly)."""
    x = np.sort(np.repeat(np.asarray(x, float), 4))
    n = len(x) // 4
    return x[n:len(x) - n].mean()


# ---------------------------------------------------------------- IQM

def test_iqm_of_known_arrays():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5                  # mean of 3, 4, 5, 6
    # ten scores: the 3rd and 8th count half, the 4th-7th fully: 2(0.05·3 + 0.1·22 + 0.05·8)
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]) == pytest.approx(5.5)
    assert stats.iqm([7.0]) == 7.0
    assert stats.iqm([3, 1]) == 2.0


@pytest.mark.parametrize("n", range(1, 16))
def test_iqm_matches_the_brute_force_middle_half(n):
    x = np.random.default_rng(n).normal(size=n) * 10
    assert stats.iqm(x) == pytest.approx(brute_iqm(x))


def test_iqm_ignores_the_outer_quarters():
    x = np.arange(12.0)
    y = x.copy()
    y[0], y[-1] = -1e9, 1e9
    assert stats.iqm(y) == stats.iqm(x) == pytest.approx(5.5)


def test_iqm_along_an_axis_is_the_iqm_of_each_column():
    x = np.random.default_rng(0).normal(size=(9, 4))
    np.testing.assert_allclose(stats.iqm(x, axis=0), [brute_iqm(column) for column in x.T])
    assert stats.iqm(x) == pytest.approx(brute_iqm(x.ravel()))


# ---------------------------------------------------------------- bootstrap intervals

def coverage(statistic, truth, n=20, trials=300, draw=None):
    rng = np.random.default_rng(123)
    hits = 0
    for trial in range(trials):
        sample = draw(rng, n) if draw else rng.normal(3.0, 2.0, size=n)
        interval = stats.bootstrap_ci(sample, statistic=statistic, resamples=1000, seed=trial)
        hits += interval.low <= truth <= interval.high
    return hits / trials


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    # percentile intervals undercover a little at n = 20; a 50% interval would give ~0.5 here
    assert 0.88 <= coverage(np.mean, 3.0) <= 0.98


def test_bootstrap_interval_of_the_iqm_covers_the_center_of_a_symmetric_distribution():
    # the IQM of a symmetric distribution is its center
    assert 0.88 <= coverage(stats.iqm, 3.0) <= 0.99


def test_interval_contains_its_point_estimate_and_repeats_with_its_seed():
    x = np.random.default_rng(5).exponential(size=10)
    interval = stats.bootstrap_ci(x)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.estimate == pytest.approx(stats.iqm(x))
    assert stats.bootstrap_ci(x) == interval
    assert stats.bootstrap_ci(x, seed=1) != interval
    wider = stats.bootstrap_ci(x, confidence=0.99)
    assert wider.low <= interval.low and wider.high >= interval.high


def test_degenerate_inputs_give_a_point_interval():
    assert stats.bootstrap_ci([4.0] * 10) == stats.Interval(4.0, 4.0, 4.0)
    assert stats.bootstrap_ci([2.5]) == stats.Interval(2.5, 2.5, 2.5)


def test_stratified_resampling_never_mixes_the_tasks():
    # each task's runs agree, so every stratified resample pools three 0s and three 10s;
    # resampling the six pooled runs together would give a wide interval
    interval = stats.bootstrap_ci({"a": [0, 0, 0], "b": [10, 10, 10]}, statistic=np.mean)
    assert interval == stats.Interval(5.0, 5.0, 5.0)


def test_stratified_resamples_have_the_exact_bootstrap_distribution():
    # task a = [0, 1], task b = [0, 2]: 4 × 4 equally likely resamples, enumerated
    strata = [np.array([0.0, 1.0]), np.array([0.0, 2.0])]
    exact = {}
    for a in itertools.product(strata[0], repeat=2):
        for b in itertools.product(strata[1], repeat=2):
            total = sum(a) + sum(b)
            exact[total] = exact.get(total, 0) + 1 / 16
    drawn = stats.resample(strata, 200_000, np.random.default_rng(0))
    assert drawn.shape == (200_000, 4)
    assert set(np.unique(drawn[:, :2])) <= {0.0, 1.0} and set(np.unique(drawn[:, 2:])) <= {0.0, 2.0}
    totals, counts = np.unique(drawn.sum(axis=1), return_counts=True)
    assert dict(zip(totals, counts / len(drawn))) == pytest.approx(exact, abs=0.005)


def test_runs_by_tasks_array_is_one_stratum_per_column():
    x = np.random.default_rng(2).normal(size=(6, 3))
    assert stats.bootstrap_ci(x) == stats.bootstrap_ci([x[:, 0], x[:, 1], x[:, 2]])


def test_difference_interval():
    rng = np.random.default_rng(7)
    base = rng.normal(size=10)
    shifted = stats.difference_ci(base + 5, base)
    assert shifted.estimate == pytest.approx(5.0) and shifted.excludes(0) and not shifted.excludes(5)
    same = stats.difference_ci(rng.normal(size=10), rng.normal(size=10))
    assert same.low < same.estimate < same.high and not same.excludes(0)
    hits = 0
    for trial in range(200):
        diff = stats.difference_ci(rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 20), statistic=np.mean,
                                   resamples=1000, seed=trial)
        hits += diff.low <= 1.0 <= diff.high
    assert 0.88 <= hits / 200 <= 0.99


def test_solved_fraction_counts_the_threshold_itself():
    assert stats.solved_fraction([1, 2, 3, 4], 3) == 0.5
    assert stats.solved_fraction([475.0] * 3, 475) == 1.0


@pytest.mark.parametrize("call, name", [
    (lambda: stats.iqm([]), "scores"),
    (lambda: stats.iqm([1.0, np.nan]), "scores"),
    (lambda: stats.bootstrap_ci(["a"]), "scores"),
    (lambda: stats.bootstrap_ci([1, 2], confidence=1.5), "confidence"),
    (lambda: stats.bootstrap_ci([1, 2], resamples=0), "resamples"),
    (lambda: stats.bootstrap_ci({"x": [1.0, np.inf]}), "scores['x']"),
    (lambda: stats.bootstrap_ci({}), "scores"),
    (lambda: stats.bootstrap_ci(np.ones((2, 2, 2))), "scores"),
    (lambda: stats.difference_ci([1, 2], []), "second"),
    (lambda: stats.solved_fraction([1, 2], float("nan")), "threshold"),
    (lambda: stats.trailing_mean([1, 2], [1, 1], 0), "window"),
    (lambda: stats.trailing_mean([1, 2], [1], 1), "weights"),
    (lambda: stats.steps_to_threshold([1, 2], [1, 2, 3], 1), "curve"),
    (lambda: stats.curve_band(np.ones((3, 2)), [1, 2, 3]), "curves"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[")):
        call()


def test_summarise_counts_solved_and_reached_runs():
    row = stats.summarise([1.0, 2.0, 3.0, 4.0], 3, steps=[10.0, np.nan, 30.0, 20.0])
    assert (row["runs"], row["solved"], row["solved_fraction"], row["reached"]) == (4, 2, 0.5, 3)
    assert row["iqm"] == 2.5 and row["mean"] == 2.5 and row["ci_low"] <= 2.5 <= row["ci_high"]
    assert row["steps_median"] == 25.0                         # median of 10, 20, 30 and never (inf)
    assert stats.summarise([1.0, 2.0], 3, steps=[np.nan, 5.0])["steps_median"] == np.inf
    assert "reached" not in stats.summarise([1.0], 0)


# ---------------------------------------------------------------- learning curves

def test_trailing_mean_matches_brute_force():
    rng = np.random.default_rng(3)
    weights = rng.integers(0, 4, size=60).astype(float)
    values = np.where(weights > 0, rng.normal(size=60), np.nan)
    for window in (1, 5, 17):
        got = stats.trailing_mean(values, weights, window)
        for i in range(60):
            total, weighted, j = 0.0, 0.0, i
            while j >= 0 and total < window:
                if weights[j] > 0:
                    total, weighted = total + weights[j], weighted + weights[j] * values[j]
                j -= 1
            expected = weighted / total if total >= window else np.nan
            np.testing.assert_allclose(got[i], expected, err_msg=f"row {i}, window {window}")


def test_steps_to_threshold_and_the_grid():
    steps, curve = [100, 200, 300, 400], [1.0, np.nan, 5.0, 4.0]
    assert stats.steps_to_threshold(steps, curve, 5.0) == 300
    assert np.isnan(stats.steps_to_threshold(steps, curve, 6.0))
    np.testing.assert_array_equal(stats.on_grid(steps, curve, [50, 100, 250, 400, 900]),
                                  [np.nan, 1.0, np.nan, 4.0, 4.0])


def test_curve_band_is_the_iqm_per_point_with_an_interval_around_it():
    curves = np.random.default_rng(4).normal(size=(10, 5))
    curves[3, 0] = np.nan
    band = stats.curve_band(curves, [10, 20, 30, 40, 50])
    assert list(band.columns) == ["grid", "estimate", "low", "high"]
    assert band.loc[0, ["estimate", "low", "high"]].isna().all()
    np.testing.assert_allclose(band["estimate"][1:], stats.iqm(curves[:, 1:], axis=0))
    assert (band["low"][1:] <= band["estimate"][1:]).all() and (band["estimate"][1:] <= band["high"][1:]).all()
    flat = stats.curve_band(np.full((4, 3), 2.0), [1, 2, 3])
    assert (flat[["estimate", "low", "high"]].to_numpy() == 2.0).all()


def test_a_curves_table_written_to_csv_gives_back_the_band_of_its_seeds(tmp_path):
    rng = np.random.default_rng(3)
    grid, curves = np.array([100.0, 200.0, 300.0, 400.0]), rng.normal(size=(3, 4))
    curves[1, 0] = np.nan                                              # seed 7 had no return yet at 100
    table = curves_table(grid, curves, [3, 7, 11])
    assert list(table.columns) == ["env_steps", "seed3", "seed7", "seed11"]
    table.assign(algo="ppo", seconds=1.0).to_csv(tmp_path / "curves.csv", index=False)
    band, seeds = table_band(pd.read_csv(tmp_path / "curves.csv"))     # other columns are not seeds
    assert seeds == 3
    pd.testing.assert_frame_equal(band, stats.curve_band(curves, grid))
    assert np.isnan(band.loc[0, "estimate"]) and band["estimate"][1:].notna().all()
    # a seed with no value anywhere (it never finished `window` episodes) is left out, not a NaN band
    table["seed7"] = np.nan
    band, seeds = table_band(table)
    assert seeds == 2
    pd.testing.assert_frame_equal(band, stats.curve_band(curves[[0, 2]], grid))
    band, seeds = table_band(table.drop(columns=["seed3", "seed7", "seed11"]))
    assert seeds == 0 and band["estimate"].isna().all() and list(band["grid"]) == list(grid)
    with pytest.raises(ValueError, match=r"curves must be \[3 seeds, 4 grid points\]"):
        curves_table(grid, curves[:, :3], [3, 7, 11])


# ---------------------------------------------------------------- running seeds

def test_run_seeds_on_the_corridor_matches_training_each_seed_here():
    result = run_seeds("q-learning", "rlcourse/Corridor-v0", seeds=(0, 1), steps=3000, threshold=1.0,
                       eval_episodes=5, workers=2, window=20)
    runs = result.runs
    assert list(runs["seed"]) == [0, 1]
    assert result.curves.shape == (2, 50) and result.grid[-1] == 3000
    for seed in (0, 1):
        # the same seed trained here (the same machine, one thread) gives the same numbers
        local = rlcourse.train("q-learning", "rlcourse/Corridor-v0", steps=3000, seed=seed)
        judged = rlcourse.evaluate(local, episodes=5, seed=eval_seed(seed, 5), print_fn=None)
        row = runs[runs["seed"] == seed].iloc[0]
        assert row["final_return"] == judged["mean_return"] == 1.0
        assert row["final_length"] == judged["mean_length"] == 5.0          # the shortest path
        curve = stats.trailing_mean(local.log["return"], np.ones(len(local.log)), 20)
        assert row["train_return"] == curve[-1]
        assert row["steps_to_threshold"] == stats.steps_to_threshold(local.log["env_steps"], curve, 1.0)
    assert eval_seed(1, 5) == eval_seed(0, 5) + 5 >= 10_000      # a block of episodes per seed
    assert result.summary["solved"] == 2 and result.summary["iqm"] == 1.0
    assert (result.summary["ci_low"], result.summary["ci_high"]) == (1.0, 1.0)
    assert result.band()["estimate"].iloc[-1] == 1.0
    assert list(result.curves_table().columns) == ["env_steps", "seed0", "seed1"]
    pd.testing.assert_frame_equal(table_band(result.curves_table())[0], result.band())


@pytest.mark.parametrize("kwargs, name", [
    (dict(algo="no-such-algo"), "algo"),
    (dict(seeds=(0, 0)), "seeds"),
    (dict(steps=0), "steps"),
    (dict(eval_episodes=0), "eval_episodes"),
    (dict(sets={"alpha": "2"}), "alpha"),
])
def test_run_seeds_rejects_bad_input_before_starting_a_process(kwargs, name):
    arguments = dict(algo="q-learning", env_id="rlcourse/Corridor-v0", seeds=(0,), steps=100, threshold=1.0)
    with pytest.raises(ValueError, match=name):
        run_seeds(**{**arguments, **kwargs})


def test_run_in_workers_reports_each_run_as_it_finishes_and_returns_them_in_order():
    seen = []
    assert run_in_workers(abs, [-3, 1], workers=2, on_done=lambda i, result: seen.append((i, result))) == [3, 1]
    assert sorted(seen) == [(0, 3), (1, 1)]
    assert curve_grid(100, 4) == (25.0, 50.0, 75.0, 100.0)  # the steps where run_seeds reads each curve


def test_run_in_workers_needs_a_worker():
    with pytest.raises(ValueError, match="workers"):
        run_in_workers(abs, [1], workers=0)
    assert run_in_workers(abs, [], workers=2) == []


def test_benchmark_script_prints_iqm_interval_and_solved_fraction(tmp_path):
    csv = tmp_path / "runs.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seeds.py"), "q-learning", "rlcourse/Corridor-v0",
                           "--seeds", "2", "--steps", "2000", "--csv", str(csv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "final greedy return: IQM 1.000, 95% CI [1.000, 1.000]" in proc.stdout, proc.stdout
    assert "solved (>= 1) 2/2" in proc.stdout
    runs = pd.read_csv(csv)
    assert list(runs["seed"]) == [0, 1] and runs["command"].str.contains("--steps 2000").all()

