"""``rlcourse grade SUBMISSION``: run the graded tests against a student's package.

The unit of grading is one test function of ``tests/graded/test_*.py`` (all its
parametrised cases must pass); its points come from ``@pytest.mark.points(n)`` (1 if
absent), read from the source without importing it. Each unit runs in its own process:

* the student's ``rlcourse/`` package alone is copied next to fresh copies of the tests,
  so nothing else from the submission (a ``sitecustomize.py``, a ``conftest.py``, an
  edited test) is on the path;
* the process has a wall-clock limit (``timeout``), an address-space limit
  (``memory_mb``), a file-size limit, and its own process group, killed at the end so no
  child outlives it;
* its result comes back over a private pipe, marked with a one-time nonce, and counts
  only if the process also reports that the session finished (see grading_plugin.py).
  Exit status and printed output are never read as results, so ``sys.exit``,
  ``os._exit``, a crash, fake pytest output or a forged ``results.json`` earn nothing.

This guards against accidents and the usual tricks; it is not a sandbox against a
student who reads this file and attacks the pipe from inside the test process. For
that, grade in an isolated container (Gradescope does) with the hidden tests.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlcourse.assignments.markers import BEGIN_HIDDEN, END_HIDDEN, find_blocks, strip_hidden

PLUGIN = Path(__file__).with_name("grading_plugin.py")
PYTEST_INI = """[pytest]
markers =
    points(n): points the test is worth
    slow: a long test
addopts = -p no:cacheprovider -p _rlcourse_grading_plugin -q --tb=line -W ignore::DeprecationWarning
"""


@dataclasses.dataclass
class GradedTest:
    file: str
    name: str
    points: float
    hidden: bool
    score: float = 0.0
    reason: str = ""
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return f"{Path(self.file).stem}::{self.name}"


@dataclasses.dataclass
class GradeReport:
    tests: list[GradedTest]
    message: str = ""

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def gradescope(self) -> dict:
        """Gradescope's results.json: score, output, and one entry per test."""
        return {
            "score": self.score,
            "output": self.message or f"{self.score:g} / {self.max_score:g} points",
            "tests": [{"name": t.title, "score": t.score, "max_score": t.points,
                       "output": t.reason or "passed",
                       "visibility": "after_published" if t.hidden else "visible"}
                      for t in self.tests],
        }

    def table(self) -> str:
        width = max([len(t.title) for t in self.tests] + [4])
        lines = [f"{'test':<{width}}  points  reason", f"{'-' * width}  ------  ------"]
        for t in self.tests:
            reason = t.reason.splitlines()[0] if t.reason else ""
            lines.append(f"{t.title:<{width}}  {t.score:>2g} / {t.points:<2g}  {reason}".rstrip())
        lines.append(f"{'total':<{width}}  {self.score:g} / {self.max_score:g}")
        if self.message:
            lines.insert(0, self.message)
        return "\n".join(lines)


def graded_tests(tests_dir: Path, include_hidden: bool) -> list[GradedTest]:
    """Read every ``test_*`` function and its points from the graded test files."""
    found = []
    for path in sorted(tests_dir.glob("test_*.py")):
        source = path.read_text()
        hidden_spans = [(b.begin + 1, b.end + 1) for b in find_blocks(source, BEGIN_HIDDEN, END_HIDDEN, str(path))]
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                hidden = any(lo <= node.lineno <= hi for lo, hi in hidden_spans)
                if hidden and not include_hidden:
                    continue
                found.append(GradedTest(path.name, node.name, _points(node), hidden))
    return found


def _points(node: ast.FunctionDef) -> float:
    for decorator in node.decorator_list:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "points" and decorator.args):
            return float(ast.literal_eval(decorator.args[0]))
    return 1.0


# Run a command under resource limits: set in the child, then exec (no preexec_fn, which
# is unsafe with the grader's threads).
LIMITED = """import os, resource, sys
memory = int(sys.argv[1]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024 * 1024, 256 * 1024 * 1024))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.execv(sys.argv[2], sys.argv[2:])
"""


def _prepare(work: Path, package: Path, tests_dir: Path, include_hidden: bool) -> None:
    shutil.copytree(package, work / "pkg" / "rlcourse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    tests = work / "tests"
    tests.mkdir()
    for path in tests_dir.glob("*.py"):
        source = path.read_text()
        (tests / path.name).write_text(source if include_hidden else strip_hidden(source, str(path)))
    shutil.copy(PLUGIN, work / "pkg" / "_rlcourse_grading_plugin.py")
    (work / "pytest.ini").write_text(PYTEST_INI)


def _environment(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "RLCOURSE"))}
    env.update(PYTHONPATH=str(work / "pkg"), PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               HOME=str(work), SDL_VIDEODRIVER="dummy")
    return env


def run_one(test: GradedTest, package: Path, tests_dir: Path, include_hidden: bool,
            timeout: float, memory_mb: int) -> GradedTest:
    """Run one graded test function in a fresh, limited process; fill in score and reason."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rlcourse-grade-") as tmp:
        work = Path(tmp)
        _prepare(work, package, tests_dir, include_hidden)
        nonce = secrets.token_hex(16)
        read_fd, write_fd = os.pipe()
        env = _environment(work)
        env.update(RLCOURSE_GRADING_FD=str(write_fd), RLCOURSE_GRADING_NONCE=nonce)
        lines: list[str] = []
        with open(work / "output.txt", "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", LIMITED, str(memory_mb), sys.executable, "-m", "pytest",
                 "-c", str(work / "pytest.ini"), "--rootdir", str(work), f"tests/{test.file}::{test.name}"],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True)
            os.close(write_fd)
            reader = threading.Thread(target=_read_lines, args=(read_fd, lines), daemon=True)
            reader.start()
            try:
                process.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(process)
            reader.join(timeout=5)
        test.seconds = time.perf_counter() - start
        tail = (work / "output.txt").read_bytes()[-300:].decode(errors="replace").strip()
        test.score, test.reason = _verdict(test, lines, nonce, timed_out, timeout, process.returncode, tail)
    return test


def _read_lines(fd: int, into: list[str]) -> None:
    with os.fdopen(fd, "r", errors="replace") as pipe:
        for line in pipe:
            into.append(line)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _verdict(test, lines, nonce, timed_out, timeout, returncode, tail) -> tuple[float, str]:
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("nonce") == nonce:
            events.append(event)
    failures = [e for e in events if e.get("event") == "report" and e.get("outcome") != "passed"]
    passes = [e for e in events if e.get("event") == "report" and e.get("when") == "call"
              and e.get("outcome") == "passed"]
    collected = next((e["count"] for e in events if e.get("event") == "collected"), None)
    finished = any(e.get("event") == "finished" for e in events)
    if failures:
        return 0.0, failures[0].get("reason") or "failed"
    if timed_out:
        return 0.0, f"timed out after {timeout:g} s"
    if not finished:
        how = (f"was killed by {signal.Signals(-returncode).name}" if returncode < 0
               else f"exited with status {returncode}")
        hint = " (out of memory)" if "MemoryError" in tail else ""
        return 0.0, f"the test process {how}{hint} before the test finished"
    if not collected:
        return 0.0, "no test was collected"
    if len(passes) != collected:
        return 0.0, f"{len(passes)} of {collected} cases passed"
    return test.points, ""


def check_import(package: Path, timeout: float = 120) -> str:
    """'' if the submission's package imports; otherwise its error, in one line."""
    with tempfile.TemporaryDirectory(prefix="rlcourse-import-") as tmp:
        work = Path(tmp)
        shutil.copytree(package, work / "pkg" / "rlcourse", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        try:
            done = subprocess.run([sys.executable, "-c", "import rlcourse"], cwd=work, env=_environment(work),
                                  capture_output=True, text=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            return f"importing rlcourse took longer than {timeout:g} s"
    if done.returncode == 0:
        return ""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    where = next((line.strip() for line in reversed(lines) if line.strip().startswith("File ")), "")
    return f"{lines[-1] if lines else f'exit status {done.returncode}'}" + (f" ({where})" if where else "")


def grade(submission: str | Path, tests: str = "public", tests_dir: str | Path | None = None,
          timeout: float = 60, memory_mb: int = 4096, jobs: int | None = None) -> GradeReport:
    """Grade the ``rlcourse`` package found in ``submission``; return the report."""
    if tests not in ("public", "all"):
        raise ValueError(f"tests = {tests!r} is not allowed: it must be 'public' or 'all'")
    tests_dir = Path(tests_dir) if tests_dir else default_tests_dir()
    include_hidden = tests == "all"
    report = GradeReport(graded_tests(tests_dir, include_hidden))
    if not report.tests:
        raise FileNotFoundError(f"no graded tests (test_*.py) in {tests_dir}")
    package = Path(submission) / "rlcourse"
    if not (package / "__init__.py").is_file():
        problem = f"the submission has no package: {package / '__init__.py'} is missing"
    else:
        problem = check_import(package)
        if problem:
            problem = f"the submission does not import: {problem}"
    if problem:
        report.message = problem
        for test in report.tests:
            test.reason = "not run: the submission does not import" if "import" in problem else "not run"
        return report
    jobs = jobs or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda t: run_one(t, package, tests_dir, include_hidden, timeout, memory_mb), report.tests))
    return report


def default_tests_dir() -> Path:
    """``tests/graded`` of the checkout this rlcourse was installed from."""
    root = Path(__file__).resolve().parents[2]
    path = root / "tests" / "graded"
    if not path.is_dir():
        raise FileNotFoundError(f"no graded tests at {path}: pass --tests-dir, or install rlcourse "
                                "from its source checkout (pip install -e .)")
    return path
