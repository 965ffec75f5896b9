"""``rlcourse grade SUBMISSION``: score a student's package with points per graded test.

The unit of grading is one test function of ``tests/graded/test_*.py`` (all its
parametrised cases must pass); its points come from ``@pytest.mark.points(n)`` (1 if
absent), read from the source without importing it. The process that decides a score never
runs student code:

* this process (the *grader*) copies the student's ``rlcourse/`` package without
  following links, refusing links and special files; makes a *trusted* copy of its own
  package with every solution cut out; and copies the tests of the chosen lessons into a
  folder only it can read;
* ``jobs`` *harness* processes run the graded tests with pytest and the plugin in
  ``harness.py``, importing only the trusted copy; every call of a student function goes
  to that harness's *sandbox* (``sandbox.py``, ``isolation.py``), whose answers are plain
  data checked by the test;
* each test function has a time limit, a multiple of the reference solution's own time for
  it (``tests/graded/timings.json``) with a floor, and the whole grading a deadline;
* when the harnesses are done (or the deadline passes, or this process is stopped), every
  process of the sandboxes is killed, and only then is the report made: the table and
  ``results.json`` come from that one report.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlcourse.assignments import isolation
from rlcourse.assignments.markers import BEGIN_HIDDEN, END_HIDDEN, find_blocks, strip_hidden, stub_solutions

# The harnesses' pytest loads no plugin grading does not need (unraisableexception's garbage
# collections at the end alone took a second of CPU per harness).
PYTEST_INI = """[pytest]
markers =
    points(n): points the test is worth
    slow: a long test
addopts = -p no:cacheprovider -p no:xdist -p no:randomly -q --tb=no -W ignore::DeprecationWarning
    -p no:unraisableexception -p no:threadexception
"""
TIMINGS = "timings.json"
LIMIT_MULTIPLE, LIMIT_FLOOR = 10.0, 2.5  # a test's limit: max(floor, multiple × the reference's time)
MAX_SUBMISSION_FILES, MAX_SUBMISSION_BYTES = 2_000, 50 << 20


class SubmissionError(ValueError):
    """The submission cannot be graded as it is (a link, a special file, too large)."""


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
    isolation: str = ""

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
            "tests": [
                {
                    "name": t.title,
                    "score": t.score,
                    "max_score": t.points,
                    "output": t.reason or "passed",
                    "visibility": "after_published" if t.hidden else "visible",
                }
                for t in self.tests
            ],
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


def graded_tests(tests_dir: Path, include_hidden: bool, lessons: list[int] | None = None) -> list[GradedTest]:
    """Read every ``test_*`` function and its points from the graded test files."""
    found = []
    for path in test_files(tests_dir, lessons):
        source = path.read_text()
        hidden_spans = [(b.begin + 1, b.end + 1) for b in find_blocks(source, BEGIN_HIDDEN, END_HIDDEN, str(path))]
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                hidden = any(lo <= node.lineno <= hi for lo, hi in hidden_spans)
                if hidden and not include_hidden:
                    continue
                found.append(GradedTest(path.name, node.name, _points(node), hidden))
    return found


def test_files(tests_dir: Path, lessons: list[int] | None) -> list[Path]:
    """The graded test files, or those of ``lessons`` only (``test_lessonN.py``)."""
    files = sorted(Path(tests_dir).glob("test_*.py"))
    if lessons is None:
        return files
    chosen = [p for p in files if any(p.name == f"test_lesson{n}.py" for n in lessons)]
    missing = [n for n in lessons if not any(p.name == f"test_lesson{n}.py" for p in chosen)]
    if missing:
        have = sorted(
            int(p.stem.removeprefix("test_lesson")) for p in files if p.stem.removeprefix("test_lesson").isdigit()
        )
        raise FileNotFoundError(
            f"no graded tests for lesson(s) {', '.join(map(str, missing))} in {tests_dir}; "
            f"lessons there: {', '.join(map(str, have)) or 'none'}"
        )
    return chosen


def _points(node: ast.FunctionDef) -> float:
    for decorator in node.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "points"
            and decorator.args
        ):
            return float(ast.literal_eval(decorator.args[0]))
    return 1.0


def time_limits(tests_dir: Path, tests: list[GradedTest], timeout: float | None) -> dict[str, float]:
    """Seconds per test function: ``timeout`` if given, else from the reference's timings."""
    if timeout is not None:
        return {t.title: float(timeout) for t in tests}
    path = Path(tests_dir) / TIMINGS
    reference = json.loads(path.read_text()).get("tests", {}) if path.is_file() else {}
    return {t.title: max(LIMIT_FLOOR, LIMIT_MULTIPLE * float(reference.get(t.title, LIMIT_FLOOR))) for t in tests}


# --------------------------------------------------------------------------- the files


def copy_submission(package: Path, into: Path) -> None:
    """Copy the student's ``rlcourse/`` as plain files and folders, following no link.

    A link, a device, a pipe or a socket anywhere in it is refused, naming the file; so is a
    package of more than MAX_SUBMISSION_FILES files or MAX_SUBMISSION_BYTES bytes.
    """
    count, size = 0, 0
    into.mkdir(parents=True)
    os.chmod(into, 0o755)
    for root, dirs, files in os.walk(package, followlinks=False):
        relative = Path(root).relative_to(package)
        for name in sorted(dirs + files):
            source = Path(root) / name
            shown = Path("rlcourse") / relative / name
            info = os.lstat(source)
            if stat.S_ISLNK(info.st_mode):
                raise SubmissionError(f"{shown} is a symbolic link: submit the file itself")
            if name in ("__pycache__",) or name.endswith((".pyc", ".pyo")):
                if stat.S_ISDIR(info.st_mode):
                    dirs.remove(name)
                continue
            target = into / relative / name
            if stat.S_ISDIR(info.st_mode):
                target.mkdir()
                os.chmod(target, 0o755)
            elif stat.S_ISREG(info.st_mode):
                count, size = count + 1, size + info.st_size
                if count > MAX_SUBMISSION_FILES or size > MAX_SUBMISSION_BYTES:
                    raise SubmissionError(
                        f"the package is too large (more than {MAX_SUBMISSION_FILES} files or "
                        f"{MAX_SUBMISSION_BYTES >> 20} MB)"
                    )
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as f_in, open(target, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
                os.chmod(target, 0o644)
            else:
                raise SubmissionError(f"{shown} is not a regular file (a device, pipe or socket)")


def trusted_copy(into: Path) -> Path:
    """The grader's own package with every solution block cut out: what the harness imports."""
    own = Path(__file__).resolve().parents[1]
    shutil.copytree(own, into / "rlcourse", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in (into / "rlcourse").rglob("*.py"):
        relative = path.relative_to(into).as_posix()
        stubbed, functions = stub_solutions(path.read_text(), relative, *_lessons_of(relative))
        if functions:
            path.write_text(stubbed)
    return into


def _lessons_of(relative: str) -> tuple:
    from rlcourse.assignments.release import LESSON_OF_FUNCTION, LESSON_OF_MODULE

    return LESSON_OF_MODULE.get(relative), LESSON_OF_FUNCTION.get(relative)


def copy_tests(tests_dir: Path, files: list[Path], include_hidden: bool, into: Path) -> None:
    into.mkdir(mode=0o700)
    for path in sorted(Path(tests_dir).glob("*.py")):
        if path.name.startswith("test_") and path not in files:
            continue
        source = path.read_text()
        (into / path.name).write_text(source if include_hidden else strip_hidden(source, str(path)))
    (into / "pytest.ini").write_text(PYTEST_INI)


def student_modules(files: list[Path]) -> list[str]:
    """The modules the sandbox imports up front: rlcourse and every one the test files ask for
    with ``student_module("…")`` (so no test's clock pays for an import)."""
    found = ["rlcourse"]
    for path in files:
        for name in re.findall(r"student_module\(\s*[\"']([\w.]+)[\"']\s*\)", path.read_text()):
            if name not in found:
                found.append(name)
    return found


def hidden_paths() -> list[str]:
    """Where the grader's own rlcourse lives, to be masked if the sandbox would see it."""
    return [str(Path(__file__).resolve().parents[1])]


# --------------------------------------------------------------------------- grading


def grade(
    submission: str | Path,
    tests: str = "public",
    tests_dir: str | Path | None = None,
    timeout: float | None = None,
    memory_mb: int = 4096,
    jobs: int | None = None,
    lessons: list[int] | None = None,
    isolation_level: str = "auto",
    deadline: float = 1200.0,
) -> GradeReport:
    """Grade the ``rlcourse`` package found in ``submission``; return the report."""
    if tests not in ("public", "all"):
        raise ValueError(f"tests = {tests!r} is not allowed: it must be 'public' or 'all'")
    tests_dir = Path(tests_dir) if tests_dir else default_tests_dir()
    include_hidden = tests == "all"
    files = test_files(tests_dir, lessons)
    report = GradeReport(graded_tests(tests_dir, include_hidden, lessons))
    if not report.tests:
        raise FileNotFoundError(f"no graded tests (test_*.py) in {tests_dir}")
    level = isolation.mode(isolation_level)
    report.isolation = isolation.notice(level)
    package = Path(submission) / "rlcourse"
    if not (package / "__init__.py").is_file() or os.path.islink(package):
        return _not_run(report, f"the submission has no package: {package / '__init__.py'} is missing")
    work = make_temporary("rlcourse-grade-")
    try:
        try:
            copy_submission(package, work / "submission" / "rlcourse")
        except SubmissionError as error:
            return _not_run(report, f"the submission was refused: {error}")
        os.chmod(work / "submission", 0o755)
        trusted = trusted_copy(_private_dir(work / "trusted"))
        limits = time_limits(tests_dir, report.tests, timeout)
        run = _Run(
            report,
            work,
            trusted,
            level,
            limits,
            memory_mb,
            jobs or min(2, os.cpu_count() or 1),
            deadline,
            student_modules(files),
        )
        for index in range(len(run.groups)):  # one copy per harness: each may delete its own
            copy_tests(tests_dir, files, include_hidden, work / f"tests{index}")
        run.go()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def make_temporary(prefix: str) -> Path:
    """A new folder only its owner may list, which others may pass through (0711)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)
    return path


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def _not_run(report: GradeReport, message: str) -> GradeReport:
    report.message = message
    for test in report.tests:
        test.reason = "not run: " + message.split(":")[0]
    return report


class _Run:
    """The harness processes of one grading, their reports, their deadline and their end."""

    def __init__(
        self,
        report: GradeReport,
        work: Path,
        trusted: Path,
        level: str,
        limits: dict[str, float],
        memory_mb: int,
        jobs: int,
        deadline: float,
        modules: list[str],
    ) -> None:
        self.report, self.work, self.trusted, self.level, self.modules = report, work, trusted, level, modules
        self.limits, self.memory_mb, self.deadline = limits, memory_mb, time.monotonic() + deadline
        self.deadline_s = deadline
        self.groups = _partition(report.tests, limits, jobs)
        self.results: dict[str, list[dict]] = {t.title: [] for t in report.tests}
        self.collected: dict[str, bool] = {}
        self.harnesses: list[subprocess.Popen] = []
        self.uids: list[tuple[int, int]] = []  # (uid, the fd of its lock)
        self.problems: dict = {}
        self.errors: list[str] = []
        self.token = secrets.token_hex(16)

    def go(self) -> None:
        previous = {sig: signal.signal(sig, self._stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
        isolation.harden_trusted_process(subreaper=False)
        try:
            selector = selectors.DefaultSelector()
            for index, group in enumerate(self.groups):
                selector.register(self._start(index, group), selectors.EVENT_READ, data=bytearray())
            self._listen(selector)
        finally:
            self._end()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._score()

    def _start(self, index: int, group: list[GradedTest]):
        read_fd, write_fd = os.pipe()
        hidden = [t.title for t in self.report.tests if t.hidden]
        uid = None
        if self.level != "none":
            uid, lock = isolation.claim_uid()
            self.uids.append((uid, lock))
            if self.level == "user" and index == 0:
                isolation.check_python_for(uid)
        settings = {
            "uid": uid,
            "level": self.level,
            "token": f"{self.token}-{index}",
            "work": str(self.work / f"slot{index}"),
            "package_dir": str(self.work / "submission"),
            "memory_mb": self.memory_mb,
            "hide": hidden_paths(),
            "limits": self.limits,
            "default_limit": LIMIT_FLOOR,
            "hidden": hidden,
            "report_fd": write_fd,
            "import_timeout": 120,
            "tests_dir": str(self.work / f"tests{index}"),
            "modules": self.modules,
        }
        (self.work / f"slot{index}").mkdir(mode=0o711)
        path = self.work / f"harness{index}.json"
        path.write_text(json.dumps(settings))
        os.chmod(path, 0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "RLCOURSE"))}
        tests = self.work / f"tests{index}"
        env.update(
            PYTHONPATH=f"{self.trusted}{os.pathsep}{tests}",
            RLCOURSE_HARNESS=str(path),
            PYTHONDONTWRITEBYTECODE="1",
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MPLBACKEND="Agg",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        nodeids = [f"{t.file}::{t.name}" for t in group]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-c",
                str(tests / "pytest.ini"),
                "--rootdir",
                str(tests),
                "-p",
                "rlcourse.assignments.harness",
                *nodeids,
            ],
            cwd=tests,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / f"harness{index}.log", "wb"),
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self.harnesses.append(process)
        return os.fdopen(read_fd, "rb", buffering=0)

    def _listen(self, selector) -> None:
        while selector.get_map():
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.errors.append(f"the grading stopped at its deadline of {self.deadline_s:g} s")
                return
            for key, _ in selector.select(timeout=min(left, 1.0)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                key.data.extend(chunk)
                while b"\n" in key.data:
                    line, _, rest = bytes(key.data).partition(b"\n")
                    key.data[:] = rest
                    self._event(line)

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        kind = event.get("event")
        if kind == "report" and event.get("title") in self.results:
            self.results[event["title"]].append(event)
        elif kind == "report":
            self.errors.append(event.get("reason", "a test could not be collected"))
        elif kind == "collected":
            self.collected.update({title: True for title in event.get("titles", [])})
        elif kind == "ready":
            self.problems.update(event.get("problems") or {})
            if event.get("error"):
                self.errors.append(event["error"])

    def _stopped(self, signum, frame):
        self._end()
        raise KeyboardInterrupt(f"grading stopped by {signal.Signals(signum).name}")

    def _end(self) -> None:
        """Stop every harness and kill every process of every sandbox, whatever happened."""
        for process in self.harnesses:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        for process in self.harnesses:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.level == "none":
            for index in range(len(self.harnesses)):
                isolation.kill_all(token=f"{self.token}-{index}")
        for uid, lock in self.uids:
            isolation.kill_all(uid=uid)
            os.close(lock)
        self.uids.clear()

    def _score(self) -> None:
        if "rlcourse" in self.problems:
            self.report.message = f"the submission does not import: {self.problems['rlcourse']}"
        elif self.errors:
            self.report.message = self.errors[0]
        for test in self.report.tests:
            events = self.results[test.title]
            failures = [e for e in events if e.get("outcome") != "passed"]
            passes = [e for e in events if e.get("outcome") == "passed" and e.get("when") == "call"]
            test.seconds = sum(float(e.get("seconds") or 0) for e in events)
            if failures:
                test.score, test.reason = 0.0, str(failures[0].get("reason") or "failed")[:400]
            elif not passes:
                test.score = 0.0
                test.reason = (
                    "not run: the grading's deadline passed"
                    if any("deadline" in e for e in self.errors)
                    else "not run: the harness stopped before this test"
                )
            else:
                test.score, test.reason = test.points, ""


def _partition(tests: list[GradedTest], limits: dict, jobs: int) -> list[list[GradedTest]]:
    """Split the tests among ``jobs`` harnesses, longest expected first, each to the least loaded."""
    groups: list[list[GradedTest]] = [[] for _ in range(max(1, min(jobs, len(tests))))]
    load = [0.0] * len(groups)
    for test in sorted(tests, key=lambda t: -limits[t.title]):
        i = load.index(min(load))
        groups[i].append(test)
        load[i] += limits[test.title]
    order = {t.title: n for n, t in enumerate(tests)}
    return [sorted(g, key=lambda t: order[t.title]) for g in groups]


def default_tests_dir() -> Path:
    """``tests/graded`` of the checkout this rlcourse was installed from."""
    root = Path(__file__).resolve().parents[2]
    path = root / "tests" / "graded"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no graded tests at {path}: pass --tests-dir, or install rlcourse "
            "from its source checkout (pip install -e .)"
        )
    return path
