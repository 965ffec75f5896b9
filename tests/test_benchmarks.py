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
