"""How long ``rlcourse grade`` takes: every lesson, each lesson alone, and a submission that hangs.

Three submissions, each graded with public and hidden tests, as ``rlcourse grade`` would
(``--isolation auto``: namespaces as root, none otherwise):

* the reference (it must earn every point);
* the untouched student release (every function raises ``NotImplementedError``: 0 points);
* a submission whose every function loops forever (0 points; each test waits out its
  time limit, so this is the slowest a submission can make the grader).

Each grading runs in a fresh process, timed from start to report. The targets (issue 14):
all lessons in under 5 minutes, one lesson in under 1 minute, the hanging submission too.

    python benchmarks/grader.py                  # all lessons, then each lesson alone
    python benchmarks/grader.py --lessons 1,3    # those lessons only
    python benchmarks/grader.py --quick          # lesson 5: the reference, and the hanging one at 1 s a test (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRADED = ROOT / "tests" / "graded"


def hanging_submission(release_dir: Path, into: Path) -> Path:
    """The release with every stub's ``raise NotImplementedError`` turned into an endless loop."""
    import shutil

    shutil.copytree(release_dir / "rlcourse", into / "rlcourse")
    for path in (into / "rlcourse").rglob("*.py"):
        source = path.read_text()
        looped = re.sub(r"^(\s*)raise NotImplementedError\(\"lesson .*$", r"\1while True:\n\1    pass",
                        source, flags=re.MULTILINE)
        if looped != source:
            path.write_text(looped)
    return into


def time_grading(submission: Path, lessons: list[int], workdir: Path, timeout: float | None) -> dict:
    """Grade in a fresh process; return seconds, points and the number of tests."""
    out = workdir / f"results-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "rlcourse.cli", "grade", str(submission), "--tests", "all",
               "--lessons", ",".join(map(str, lessons)), "--tests-dir", str(GRADED), "--json", str(out)]
    if timeout:
        command += ["--timeout", str(timeout)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"grading failed: {done.stderr.strip()[-500:]}")
    results = json.loads(out.read_text())
    isolation = done.stdout.splitlines()[0]
    return {"seconds": seconds, "score": results["score"], "max": sum(t["max_score"] for t in results["tests"]),
            "tests": len(results["tests"]), "isolation": isolation,
            "timed_out": sum("timed out" in t["output"] for t in results["tests"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", help="e.g. 1,3 (default: every lesson with graded tests)")
    parser.add_argument("--quick", action="store_true", help="lesson 5 only: the reference at the grader's own "
                        "limits, the hanging submission at 1 s a test")
    parser.add_argument("--timeout", type=float, help="seconds per test (default: the grader's, from the "
                        "reference's timings)")
    parser.add_argument("--no-each", action="store_true", help="skip grading each lesson alone")
    args = parser.parse_args(argv)
    from rlcourse.assignments.release import available_lessons, release

    lessons = [5] if args.quick else ([int(n) for n in args.lessons.split(",")] if args.lessons
                                      else available_lessons(ROOT))
    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="rlcourse-bench-") as tmp:
        work = Path(tmp)
        release(work / "release", lessons)
        submissions = {"reference": ROOT, "release": work / "release",
                       "hanging": hanging_submission(work / "release", work / "hanging")}
        if args.quick:
            del submissions["release"]
        cases = [(name, lessons) for name in submissions]
        if len(lessons) > 1 and not args.no_each:
            cases += [(name, [n]) for n in lessons for name in ("reference", "hanging")]
        print(f"{'submission':<10} {'lessons':<14} {'tests':>5} {'points':>11} {'timed out':>9} {'seconds':>8}")
        first = True
        for name, chosen in cases:
            limit = 1.0 if args.quick and name == "hanging" else args.timeout
            result = time_grading(submissions[name], chosen, work, limit)
            if first:
                print(result["isolation"])
                first = False
            print(f"{name:<10} {','.join(map(str, chosen)):<14} {result['tests']:>5} "
                  f"{result['score']:>5g} / {result['max']:<3g} {result['timed_out']:>9} {result['seconds']:>8.1f}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory of one process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
