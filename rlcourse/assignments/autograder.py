"""``rlcourse assignment autograder``: the Gradescope bundle, with no reference solution in it.

The zip holds what Gradescope's autograder container needs and nothing more:

* ``package/``: the student release of the chosen lessons (every solution block cut out,
  checked for leaks by :func:`~rlcourse.assignments.release.check_release`); the grader in
  the container is this package's own ``rlcourse grade``, so the trusted code the harness
  imports is the release too;
* ``tests/``: the graded tests of those lessons, public and hidden, their helpers, and
  ``timings.json`` (the reference's time per test, for the time limits);
* ``setup.sh``: installs the package (torch pinned, the CPU build);
* ``run_autograder``: makes the tests readable by root alone, then grades
  ``/autograder/submission`` with ``--tests all`` and writes ``results.json``.

And :func:`reference_timings` measures the reference's time per graded test, which
``rlcourse grade`` turns into each test's limit.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import zipfile
from pathlib import Path

from rlcourse.assignments.grade import TIMINGS, grade, test_files
from rlcourse.assignments.release import ReleaseError, available_lessons, release, source_root

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
cd /autograder/source
pip3 install --no-cache-dir torch=={torch} --extra-index-url https://download.pytorch.org/whl/cpu
pip3 install --no-cache-dir ./package
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this, as root, for each submission.
set -uo pipefail
cd /autograder/source
chmod -R go-rwx /autograder/source          # the hidden tests: root alone may read them
mkdir -p /autograder/results && chmod 755 /autograder/results
submission=/autograder/submission
if [ ! -d "$submission/rlcourse" ] && [ -f "$submission/__init__.py" ]; then
    mkdir -p /tmp/submission && cp -r --no-dereference "$submission" /tmp/submission/rlcourse
    submission=/tmp/submission
fi
rlcourse grade "$submission" --lessons {lessons} --tests all --tests-dir /autograder/source/tests \\
    --json /autograder/results/results.json --deadline {deadline}
"""


def build_bundle(out: str | Path, lessons: list[int], root: Path | None = None, deadline: float = 1200) -> dict:
    """Write the Gradescope zip to ``out``; return what it holds."""
    root = root or source_root()
    unknown = sorted(set(lessons) - set(available_lessons(root)))
    if unknown:
        raise ReleaseError(
            f"no graded tests for lesson(s) {unknown}; lessons with graded tests: {available_lessons(root)}"
        )
    out = Path(out)
    if out.suffix != ".zip":
        raise ReleaseError(f"{out}: the bundle is a .zip file")
    graded = root / "tests" / "graded"
    with tempfile.TemporaryDirectory(prefix="rlcourse-bundle-") as tmp:
        staging = Path(tmp) / "autograder"
        release(staging / "package", lessons, root)
        shutil.rmtree(staging / "package" / "tests")  # the bundle's tests/ below has them all
        tests = staging / "tests"
        tests.mkdir()
        chosen = test_files(graded, lessons)
        for path in sorted(graded.glob("*.py")):
            if not path.name.startswith("test_") or path in chosen:
                shutil.copy(path, tests / path.name)
        if (graded / TIMINGS).is_file():
            shutil.copy(graded / TIMINGS, tests / TIMINGS)
        torch_version = _torch_version()
        (staging / "setup.sh").write_text(SETUP.format(torch=torch_version))
        (staging / "run_autograder").write_text(RUN.format(lessons=",".join(map(str, lessons)), deadline=deadline))
        out.parent.mkdir(parents=True, exist_ok=True)
        files = []
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                name = path.relative_to(staging).as_posix()
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes())
                files.append(name)
    return {"out": str(out), "lessons": lessons, "files": files, "torch": torch_version}


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def reference_timings(out: str | Path | None = None, root: Path | None = None, jobs: int = 2) -> dict:
    """Grade the reference with every test (hidden ones too) and record each test's seconds."""
    root = root or source_root()
    graded = root / "tests" / "graded"
    report = grade(root, tests="all", tests_dir=graded, timeout=600, jobs=jobs)
    failing = [t.title for t in report.tests if t.score != t.points]
    if failing:
        raise ReleaseError(f"the reference fails graded tests, so its timings mean nothing: {failing[:5]}")
    timings = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "jobs": jobs,
        "tests": {t.title: round(t.seconds, 3) for t in report.tests},
    }
    path = Path(out) if out else graded / TIMINGS
    path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
    return timings
