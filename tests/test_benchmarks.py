"""Smoke test of the benchmarks: they run and report, whatever the speed of the machine."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tabular_benchmark_quick_runs_and_prints_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tabular.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ratios = re.findall(r"^ratio (\S+): rlcourse is [\d.]+x faster", proc.stdout, flags=re.MULTILINE)
    assert ratios == ["rlcourse/Corridor-v0", "FrozenLake-v1"], proc.stdout
    # the two implementations are the same algorithm: same seed, same Q-table
    assert proc.stdout.count("final Q-tables identical") == 2, proc.stdout


def test_dqn_benchmark_quick_runs_and_prints_the_table():
    # Stable-Baselines3 is an optional benchmark dependency: the smoke run leaves it out
    # one update thread: the suite runs on two busy cores, where a second thread only waits
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dqn.py"), "--quick", "--no-sb3",
                           "--threads", "1", "--steps", "2000", "--eval-every", "1000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(rlcourse \((?:RL Zoo|defaults)\))\s+\S+.*\s(\d+)\s*$", proc.stdout, flags=re.MULTILINE)
    assert [label for label, _ in rows] == ["rlcourse (RL Zoo)", "rlcourse (defaults)"], proc.stdout
    assert "steps/s" in proc.stdout


@pytest.mark.parametrize("env_id, threshold, sb3", [("CartPole-v1", "475", "SB3"),
                                                     ("Pendulum-v1", "-250", "SB3 (gSDE)")])
def test_ppo_benchmark_quick_runs_and_prints_the_table(env_id, threshold, sb3):
    # with Stable-Baselines3 where it is installed (an optional dependency), so that the
    # ratio and target lines are checked too; without it, rlcourse's row alone
    with_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    command = [sys.executable, str(ROOT / "benchmarks" / "ppo.py"), "--quick", "--envs", env_id,
               "--steps", "1024", "--eval-every", "512"]
    proc = subprocess.run(command + ([] if with_sb3 else ["--no-sb3"]),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(rlcourse|SB3(?: \((?:no )?gSDE\))?) {2,}\S.*\s(\d+)\s*$", proc.stdout, flags=re.MULTILINE)
    assert [label for label, _ in rows] == (["rlcourse", sb3] if with_sb3 else ["rlcourse"]), proc.stdout
    assert f"steps to {threshold} (median)" in proc.stdout
    if with_sb3:
        assert re.search(rf"^same settings, rlcourse / {re.escape(sb3)}: [\d.]+x the steps per second",
                         proc.stdout, flags=re.MULTILINE), proc.stdout
        assert re.search(rf"^target on {env_id}: steps to {threshold} no more than SB3's .*: "
                         rf"(met|NOT met|undecided.*); at least 2x SB3's steps per second \([\d.]+x\): (met|NOT met)$",
                         proc.stdout, flags=re.MULTILINE), proc.stdout


def test_ppo_surrogates_benchmark_quick_runs_and_prints_the_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ppo_surrogates.py"), "--quick",
                           "--steps", "2048", "--workers", "2", "--random-episodes", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("average normalised score", 1)[1]
    # the paper's eleven rows, in its order, each with our average and the paper's number
    rows = re.findall(r"^(no clipping or penalty|clipping, eps=[\d.]+|adaptive KL, d_targ=[\d.]+|"
                      r"fixed KL, beta=[\d.]+) +(-?[\d.]+) +(-?[\d.]+)", table, flags=re.MULTILINE)
    assert [label for label, _, _ in rows] == [
        "no clipping or penalty", "clipping, eps=0.1", "clipping, eps=0.2", "clipping, eps=0.3",
        "adaptive KL, d_targ=0.003", "adaptive KL, d_targ=0.01", "adaptive KL, d_targ=0.03",
        "fixed KL, beta=0.3", "fixed KL, beta=1", "fixed KL, beta=3", "fixed KL, beta=10"], proc.stdout
    assert [float(paper) for _, _, paper in rows][:3] == [-0.39, 0.76, 0.82]
    assert re.search(r"^(agrees with the paper|partly agrees with the paper|does not agree with the paper|"
                     r"cannot compare with the paper): ", table, flags=re.MULTILINE), proc.stdout
    assert "33 runs in" in proc.stdout


def test_rlhf_benchmark_quick_runs_and_prints_tokens_per_second_and_memory():
    # TRL is an optional benchmark dependency: the smoke run leaves it out
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rlhf.py"), "--quick", "--no-trl",
                           "--stages", "sft", "dpo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(sft|dpo)\s+\d+\s+[\d,]+\s+[\d.]+\s+([\d,]+)\s+[\d,]+\s+[\d.]+\s+[\d,]+\s+(\d+)", proc.stdout,
                      flags=re.MULTILINE)
    assert [stage for stage, _, _ in rows] == ["sft", "dpo"], proc.stdout
    assert all(int(tps.replace(",", "")) > 0 and int(mb) > 0 for _, tps, mb in rows)
    assert "TRL DPOTrainer: skipped" in proc.stdout


def test_grader_benchmark_quick_grades_the_reference_fully_and_the_hanging_submission_to_zero():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "grader.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(reference|hanging)\s+5\s+(\d+)\s+(\S+) / (\S+)\s+(\d+)\s+([\d.]+)$", proc.stdout,
                      flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["reference", "hanging"], proc.stdout
    (_, tests, score, most, timed_out, _), hanging = rows
    assert score == most and int(timed_out) == 0
    assert hanging[2] == "0" and int(hanging[4]) == int(hanging[1]), proc.stdout     # every test timed out
