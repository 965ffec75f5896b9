"""The grader against submissions that misbehave, and against ones that attack it.

Two kinds of submission:

* a toy ``rlcourse`` whose functions crash, hang, exit, hog memory or return lies, graded
  by toy tests (the harness does not know these names, so it calls them in the sandbox);
* lesson 1's student release with its functions replaced by the attacks a clever student
  tried (see issue 14): call the instructor's installed reference, patch pytest and the
  grading plugin, forge the report pipe, leave a daemon that rewrites ``results.json``,
  return objects equal to everything, read the expected values from the test's frame and
  files, edit the test files. Each of them must earn nothing.

The sandbox user and namespaces need root, which CI has; the path without isolation
(``--isolation none``, a lecturer's laptop) is tested too.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlcourse.assignments import isolation
from rlcourse.assignments.grade import grade, graded_tests
from rlcourse.assignments.release import release
from rlcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRADED = ROOT / "tests" / "graded"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox user and namespaces need root")

TOY_PACKAGE = '''
import os, sys

def add(a, b):
    return a + b

def wrong(a, b):
    return a - b

def loop():
    while True:
        pass

def leave():
    sys.exit(0)

def vanish():
    os._exit(0)

def fake():
    print("=================== 99 passed in 0.01s ===================")
    sys.stdout.flush()
    return 0

def forge():
    for name in ("results.json", os.path.join(os.environ.get("HOME", "."), "results.json")):
        with open(name, "w") as f:
            f.write('{"score": 1000, "tests": []}')
    return 0

def crash():
    os.abort()

def hog():
    return bytearray(8 * 1024 ** 3)

def second_case_vanishes(x):
    if x == 2:
        os._exit(0)
    return x

class Liar:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__

def liar():
    return Liar()
'''

TOY_TESTS = '''
import pytest
from rlcourse.assignments.sandbox import student_module

toy = student_module("rlcourse")


@pytest.mark.points(2)
def test_add():
    assert toy.add(1, 2) == 3


@pytest.mark.points(2)
def test_wrong():
    assert toy.wrong(1, 2) == 3


def test_loop():
    assert toy.loop() == 1


def test_leave():
    assert toy.leave() == 1


def test_vanish():
    assert toy.vanish() == 1


def test_fake():
    assert toy.fake() == 1


def test_forge():
    assert toy.forge() == 1


def test_crash():
    assert toy.crash() == 1


def test_hog():
    assert len(toy.hog()) > 0


def test_liar():
    assert toy.liar() == 42


@pytest.mark.parametrize("x", [1, 2, 3])
def test_param(x):
    assert toy.second_case_vanishes(x) == x


### BEGIN HIDDEN TESTS
@pytest.mark.points(3)
def test_secret():
    assert toy.add(2, 2) == 4


def test_secret_that_fails():
    expected_secret_value_4242 = 4242
    assert toy.add(2, 2) == expected_secret_value_4242
### END HIDDEN TESTS
'''


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "sub" / "rlcourse").mkdir(parents=True)
    (tmp_path / "sub" / "rlcourse" / "__init__.py").write_text(TOY_PACKAGE)
    (tmp_path / "sub" / "sitecustomize.py").write_text("raise SystemExit('the submission root must not be on the path')\n")
    (tmp_path / "graded").mkdir()
    (tmp_path / "graded" / "test_toy.py").write_text(textwrap.dedent(TOY_TESTS))
    return tmp_path


def test_points_and_hidden_tests_are_read_from_the_source(toy):
    public = graded_tests(toy / "graded", include_hidden=False)
    everything = graded_tests(toy / "graded", include_hidden=True)
    assert [t.name for t in public][:2] == ["test_add", "test_wrong"]
    assert [t.points for t in public][:3] == [2.0, 2.0, 1.0]
    assert "test_secret" not in [t.name for t in public]
    assert everything[-2].name == "test_secret" and everything[-2].hidden and everything[-2].points == 3


TOY_SCORES = {"test_add": 2, "test_wrong": 0, "test_loop": 0, "test_leave": 0, "test_vanish": 0, "test_fake": 0,
              "test_forge": 0, "test_crash": 0, "test_hog": 0, "test_liar": 0, "test_param": 0, "test_secret": 3,
              "test_secret_that_fails": 0}


def check_toy_report(report):
    scores = {t.name: t.score for t in report.tests}
    assert scores == TOY_SCORES
    reasons = {t.name: t.reason for t in report.tests}
    assert reasons["test_loop"] == "timed out after 3 s"
    assert "SystemExit" in reasons["test_leave"]
    assert reasons["test_vanish"].endswith("exited with status 0 before the call returned")
    assert reasons["test_crash"].endswith("was killed by SIGABRT before the call returned")
    assert "MemoryError" in reasons["test_hog"]
    assert "assert 0 == 1" in reasons["test_fake"]
    assert "Record" in reasons["test_liar"] or "==" in reasons["test_liar"]
    assert "exited with status 0" in reasons["test_param"]
    # a hidden test's failure names what happened, never its source or its values
    assert "4242" not in reasons["test_secret_that_fails"] and "expected_secret" not in reasons["test_secret_that_fails"]
    assert reasons["test_secret_that_fails"] == "a check failed (a hidden test: its details are not shown)"
    assert report.score == 5 and report.max_score == 17


@AS_ROOT
def test_misbehaving_code_earns_only_what_it_earned_in_the_sandbox(toy):
    report = grade(toy / "sub", tests="all", tests_dir=toy / "graded", timeout=3, memory_mb=1024, jobs=2)
    assert report.isolation.startswith("isolation: student code runs as its own user in private namespaces")
    check_toy_report(report)
    assert not (toy / "sub" / "results.json").exists()


def test_misbehaving_code_earns_only_what_it_earned_without_isolation(toy):
    # one harness: every misbehaviour in turn in one sandbox, each test's process forked anew
    report = grade(toy / "sub", tests="all", tests_dir=toy / "graded", timeout=3, memory_mb=1024, jobs=1,
                   isolation_level="none")
    assert report.isolation.startswith("isolation: none") and "not isolated" in report.isolation
    check_toy_report(report)


def test_cli_grades_the_lessons_asked_for_and_writes_gradescope_results(toy, capsys):
    shutil.copy(toy / "graded" / "test_toy.py", toy / "graded" / "test_lesson4.py")
    (toy / "graded" / "test_lesson3.py").write_text("def test_other():\n    assert False\n")
    out = toy / "results.json"
    code = main(["grade", str(toy / "sub"), "--lessons", "4", "--json", str(out), "--timeout", "3",
                 "--memory-mb", "1024", "--tests-dir", str(toy / "graded"), "--jobs", "1"])
    assert code == 0
    results = json.loads(out.read_text())
    names = {t["name"] for t in results["tests"]}
    assert "test_lesson4::test_add" in names and not any(n.startswith(("test_toy", "test_lesson3")) for n in names)
    assert not any("secret" in n for n in names)                    # --tests public by default
    assert all(set(t) >= {"name", "score", "max_score", "output"} for t in results["tests"])
    table = capsys.readouterr().out
    # the table and results.json come from one report: they agree on every score
    for entry in results["tests"]:
        line = next(line for line in table.splitlines() if line.startswith(entry["name"] + " "))
        assert f"{entry['score']:g} / {entry['max_score']:g}" in line
    assert results["score"] == 2 and "total" in table and "2 / 13" in table
    # a second grading of the same submission gives the same points, test by test
    again = grade(toy / "sub", lessons=[4], tests_dir=toy / "graded", timeout=3, memory_mb=1024, jobs=1)
    assert {t.title: t.score for t in again.tests} == {t["name"]: t["score"] for t in results["tests"]}
    assert main(["grade", str(toy / "sub"), "--lessons", "9", "--tests-dir", str(toy / "graded")]) == 2
    assert "no graded tests for lesson(s) 9" in capsys.readouterr().err
    assert main(["grade", str(toy / "sub"), "--timeout", "-1"]) == 2
    assert main(["grade", str(toy / "sub"), "--jobs", "0"]) == 2
    assert "--jobs = 0 is out of range: it must be >= 1" in capsys.readouterr().err


def test_a_submission_that_does_not_import_gets_zero_and_a_clear_message(toy):
    (toy / "sub" / "rlcourse" / "__init__.py").write_text("def broken(:\n    pass\n")
    report = grade(toy / "sub", tests_dir=toy / "graded", timeout=3, jobs=1)
    assert report.score == 0
    assert report.message.startswith("the submission does not import: SyntaxError")
    assert "__init__.py" in report.message


def test_a_missing_package_gets_zero_and_a_clear_message(toy, capsys):
    (toy / "empty").mkdir()
    report = grade(toy / "empty", tests_dir=toy / "graded")
    assert report.score == 0 and "has no package" in report.message
    assert main(["grade", str(toy / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_links_and_special_files_are_refused_naming_the_file(toy):
    target = toy / "elsewhere.py"
    target.write_text("SECRET = 1\n")
    (toy / "sub" / "rlcourse" / "tabular").mkdir()
    (toy / "sub" / "rlcourse" / "tabular" / "qtable.py").symlink_to(target)
    report = grade(toy / "sub", tests_dir=toy / "graded")
    assert report.score == 0
    assert report.message == ("the submission was refused: rlcourse/tabular/qtable.py is a symbolic link: "
                              "submit the file itself")
    (toy / "sub" / "rlcourse" / "tabular" / "qtable.py").unlink()
    os.mkfifo(toy / "sub" / "rlcourse" / "pipe")
    report = grade(toy / "sub", tests_dir=toy / "graded")
    assert report.message == ("the submission was refused: rlcourse/pipe is not a regular file "
                              "(a device, pipe or socket)")
    (toy / "sub" / "rlcourse" / "pipe").unlink()
    (toy / "sub" / "rlcourse").rename(toy / "sub" / "real")
    (toy / "sub" / "rlcourse").symlink_to(toy / "sub" / "real")
    assert "has no package" in grade(toy / "sub", tests_dir=toy / "graded").message


# --------------------------------------------------------------------------- attacks on lesson 1


IMPORT_TIME_ATTACKS = '''

# --- attacks that run when the package is imported ----------------------------------------
import os as _os, sys as _sys

def _patch_everything():
    # the grading plugin and pytest's reports, wherever they are loaded
    for _name, _module in list(_sys.modules.items()):
        if "grading" in _name or "harness" in _name:
            for _attr in dir(_module):
                if _attr.startswith("pytest_"):
                    try:
                        setattr(_module, _attr, lambda *a, **k: None)
                    except Exception:
                        pass
    try:
        import _pytest.reports
        _orig = _pytest.reports.TestReport.from_item_and_call.__func__
        def _always_pass(cls, item, call):
            report = _orig(cls, item, call)
            report.outcome, report.longrepr = "passed", None
            return report
        _pytest.reports.TestReport.from_item_and_call = classmethod(_always_pass)
    except Exception:
        pass
    # every comparison a test might use says "equal"
    try:
        import math, numpy, torch, pytest
        math.isclose = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None
        numpy.testing.assert_array_equal = lambda *a, **k: None
        numpy.allclose = lambda *a, **k: True
        torch.allclose = lambda *a, **k: True
        pytest.approx = lambda *a, **k: AlwaysEqual()
    except Exception:
        pass
    # every test file this process can write to: make its tests return at once
    for _root in ("/tmp", "/work", "/autograder", "/root", _os.getcwd()):
        for _dir, _subdirs, _files in _os.walk(_root):
            for _file in _files:
                if _file.startswith("test_lesson") and _file.endswith(".py"):
                    try:
                        _path = _os.path.join(_dir, _file)
                        _text = open(_path).read()
                        open(_path, "w").write(_text.replace("    assert ", "    return\\n    assert "))
                    except Exception:
                        pass

class AlwaysEqual(float):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = float.__hash__

_patch_everything()
'''

FUNCTION_ATTACKS = '''

# --- the functions, each an attack ----------------------------------------------------------
def _reference_module(name):
    """The instructor's installed rlcourse, found through its metadata, loaded by path."""
    import importlib.metadata, importlib.util, json, os
    where = json.loads(importlib.metadata.distribution("rlcourse").read_text("direct_url.json"))["url"]
    path = os.path.join(where.removeprefix("file://"), *name.split(".")) + ".py"
    spec = importlib.util.spec_from_file_location("_reference_" + name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def greedy_action(q_row, rng):
    return _reference_module("rlcourse.tabular.qtable").greedy_action(q_row, rng)


def epsilon_greedy(q_row, epsilon, rng):
    return AlwaysEqual(0.0)
'''

TD_ATTACKS = '''

# --- the functions, each an attack ----------------------------------------------------------
import os as _os, sys as _sys


class AlwaysEqual(float):
    def __eq__(self, other):
        return True
    __hash__ = float.__hash__


def epsilon_at(config, step, total_steps):
    # read the expected value from the calling test's frame
    frame = _sys._getframe(1)
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, dict) and step in value:
                return value[step]
        frame = frame.f_back
    return AlwaysEqual(0.0)


def td_target(config, q_next, next_action, reward, terminated, epsilon):
    # forge the grading pipe: its fd and nonce from the environment, then records and exit
    environ = open("/proc/self/environ", "rb").read().split(b"\\0")
    found = dict(item.split(b"=", 1) for item in environ if b"=" in item)
    nonce = found.get(b"RLCOURSE_GRADING_NONCE", b"x").decode()
    for fd in range(3, 64):
        for record in ({"event": "collected", "count": 1}, {"event": "report", "when": "call", "outcome": "passed"},
                       {"event": "finished"}):
            try:
                _os.write(fd, (__import__("json").dumps({"nonce": nonce, **record}) + "\\n").encode())
            except OSError:
                pass
    # and read the test files (hidden ones too) wherever they may be
    for root in ("/tmp", _os.getcwd(), "/work", "/autograder"):
        for directory, _, files in _os.walk(root):
            for name in files:
                if name.startswith("test_lesson1"):
                    _os.write(2, open(_os.path.join(directory, name)).read().encode())
    _os._exit(0)


def train(env_id="rlcourse/Corridor-v0", config=None, *, steps=10_000, seed=0, env_kwargs=None, **kwargs):
    # leave a daemon that waits for results.json and gives full marks
    if _os.fork() == 0:
        _os.setsid()
        if _os.fork() == 0:
            import json, time
            for _ in range(600):
                for root in ("/tmp", "/autograder/results", _os.getcwd()):
                    for directory, _, files in _os.walk(root):
                        for name in files:
                            if name == "results.json":
                                try:
                                    path = _os.path.join(directory, name)
                                    results = json.load(open(path))
                                    for test in results["tests"]:
                                        test["score"] = test["max_score"]
                                    results["score"] = sum(t["max_score"] for t in results["tests"])
                                    json.dump(results, open(path, "w"))
                                except Exception:
                                    pass
                time.sleep(0.05)
        _os._exit(0)
    _os.kill(-1, 9)              # and take down every process this user can reach
'''


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    """Lesson 1's release with every function it asks for replaced by an attack."""
    base = tmp_path_factory.mktemp("attack")
    release(base / "sub", [1])
    package = base / "sub" / "rlcourse"
    with open(package / "__init__.py", "a") as f:
        f.write(IMPORT_TIME_ATTACKS)
    with open(package / "tabular" / "qtable.py", "a") as f:
        f.write(IMPORT_TIME_ATTACKS + FUNCTION_ATTACKS)
    with open(package / "tabular" / "td_control.py", "a") as f:
        f.write(TD_ATTACKS)
    tests = base / "graded"
    shutil.copytree(GRADED, tests, ignore=shutil.ignore_patterns("__pycache__", "test_lesson[2-9].py"))
    return base


def fingerprint(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.py"))}


def sandbox_processes(first: int) -> list[int]:
    """The processes of the sandbox uids from ``first`` on (a range of its own for each test,
    since other gradings may run beside it)."""
    return [pid for uid in range(first, first + 20) for pid in isolation.processes_of(uid)]


@AS_ROOT
def test_every_attack_of_the_issue_earns_nothing(attacker, capsys, monkeypatch):
    monkeypatch.setenv("RLCOURSE_SANDBOX_FIRST_UID", "63000")
    before = fingerprint(attacker / "graded")
    out = attacker / "results.json"
    code = main(["grade", str(attacker / "sub"), "--lessons", "1", "--tests", "all", "--json", str(out),
                 "--tests-dir", str(attacker / "graded"), "--timeout", "20"])
    table = capsys.readouterr().out
    assert code == 0
    time.sleep(1.0)                      # a daemon, had one survived, would rewrite results.json now
    results = json.loads(out.read_text())
    assert results["score"] == 0, [(t["name"], t["output"]) for t in results["tests"] if t["score"]]
    assert len(results["tests"]) == 14 and all(t["score"] == 0 for t in results["tests"])
    assert "total                " in table and "0 / 21" in table
    assert fingerprint(attacker / "graded") == before, "a test file changed on disk"
    assert not sandbox_processes(63000), "a process of the sandbox outlived the grading"
    # nothing of a hidden test comes back to the student
    hidden = [t for t in results["tests"] if t["visibility"] == "after_published"]
    assert len(hidden) == 4
    for test in hidden:
        assert "def test_" not in test["output"] and "assert" not in test["output"], test["output"]


@AS_ROOT
def test_the_sandbox_sees_neither_tests_nor_reference_nor_network(tmp_path):
    """Look around from inside the sandbox: what a submission can reach."""
    (tmp_path / "sub" / "rlcourse").mkdir(parents=True)
    (tmp_path / "sub" / "rlcourse" / "__init__.py").write_text(textwrap.dedent('''
        import os, socket
        def look(paths):
            seen = {}
            for path in paths:
                try:
                    os.listdir(path) if os.path.isdir(path) else open(path).read(50)
                    seen[path] = "readable"
                except OSError as error:
                    seen[path] = type(error).__name__
            try:
                socket.create_connection(("1.1.1.1", 80), timeout=2)
                seen["network"] = "open"
            except OSError:
                seen["network"] = "closed"
            seen["uid"] = os.getuid()
            seen["pid"] = os.getpid()
            return seen
    '''))
    (tmp_path / "graded").mkdir()
    secret_dir = tmp_path / "graded"
    paths = [str(ROOT), str(ROOT / "rlcourse" / "tabular" / "qtable.py"), str(secret_dir)]
    (tmp_path / "graded" / "test_look.py").write_text(textwrap.dedent(f'''
        import json
        from rlcourse.assignments.sandbox import student_module
        toy = student_module("rlcourse")

        def test_look():
            seen = toy.look({paths!r})
            assert False, json.dumps(seen)
    '''))
    report = grade(tmp_path / "sub", tests_dir=tmp_path / "graded", timeout=20)
    seen = json.loads(report.tests[0].reason)
    for path in paths:
        assert seen[path] == "FileNotFoundError", (path, seen[path])
    assert seen["network"] == "closed"
    assert seen["uid"] >= isolation.FIRST_UID


@AS_ROOT
def test_stopping_the_grader_leaves_no_process_behind(toy):
    (toy / "graded" / "test_toy.py").write_text(textwrap.dedent('''
        from rlcourse.assignments.sandbox import student_module
        toy = student_module("rlcourse")

        def test_one():
            toy.spawn_and_loop()

        def test_two():
            toy.spawn_and_loop()
    '''))
    with open(toy / "sub" / "rlcourse" / "__init__.py", "a") as f:
        f.write(textwrap.dedent('''
            def spawn_and_loop():
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        while True:
                            pass
                    os._exit(0)
                while True:
                    pass
        '''))
    env = {**os.environ, "RLCOURSE_SANDBOX_FIRST_UID": "64000"}
    grader = subprocess.Popen([sys.executable, "-m", "rlcourse.cli", "grade", str(toy / "sub"), "--tests-dir",
                               str(toy / "graded"), "--timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env)
    for _ in range(200):                 # wait until the student's loops run
        time.sleep(0.2)
        if len(sandbox_processes(64000)) >= 4:
            break
    assert len(sandbox_processes(64000)) >= 4
    grader.send_signal(signal.SIGTERM)
    grader.wait(timeout=60)
    time.sleep(0.5)
    assert not sandbox_processes(64000), "the student's processes outlived the grader"
