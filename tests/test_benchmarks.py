"""Smoke test of the benchmarks: they run and report, whatever the speed of the machine."""

import re
import subprocess
import sys
from pathlib import Path

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
