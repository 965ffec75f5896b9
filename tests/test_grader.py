"""The grader against a toy package whose functions misbehave in every way the issue lists."""

import json
import textwrap

import pytest

from rlcourse.assignments.grade import grade, graded_tests
from rlcourse.cli import main

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
'''

TOY_TESTS = '''
import pytest
import rlcourse


@pytest.mark.points(2)
def test_add():
    assert rlcourse.add(1, 2) == 3


@pytest.mark.points(2)
def test_wrong():
    assert rlcourse.wrong(1, 2) == 3


def test_loop():
    assert rlcourse.loop() == 1


def test_leave():
    assert rlcourse.leave() == 1


def test_vanish():
    assert rlcourse.vanish() == 1


def test_fake():
    assert rlcourse.fake() == 1


def test_forge():
    assert rlcourse.forge() == 1


def test_crash():
    assert rlcourse.crash() == 1


def test_hog():
    assert len(rlcourse.hog()) > 0


@pytest.mark.parametrize("x", [1, 2, 3])
def test_param(x):
    assert rlcourse.second_case_vanishes(x) == x


### BEGIN HIDDEN TESTS
@pytest.mark.points(3)
def test_secret():
    assert rlcourse.add(2, 2) == 4
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
    assert everything[-1].name == "test_secret" and everything[-1].hidden and everything[-1].points == 3


def test_misbehaving_code_earns_only_what_it_earned(toy):
    report = grade(toy / "sub", tests="all", tests_dir=toy / "graded", timeout=8, memory_mb=1024, jobs=2)
    scores = {t.name: t.score for t in report.tests}
    assert scores == {"test_add": 2, "test_wrong": 0, "test_loop": 0, "test_leave": 0, "test_vanish": 0,
                      "test_fake": 0, "test_forge": 0, "test_crash": 0, "test_hog": 0, "test_param": 0,
                      "test_secret": 3}
    reasons = {t.name: t.reason for t in report.tests}
    assert "timed out after 8 s" in reasons["test_loop"]
    assert "SystemExit" in reasons["test_leave"] or "exit" in reasons["test_leave"].lower()
    assert reasons["test_vanish"] == "the test process exited with status 0 before the test finished"
    assert reasons["test_crash"] == "the test process was killed by SIGABRT before the test finished"
    assert "MemoryError" in reasons["test_hog"]
    assert "assert 0 == 1" in reasons["test_fake"]
    assert report.score == 5 and report.max_score == 15


def test_cli_writes_gradescope_results(toy, capsys):
    out = toy / "results.json"
    code = main(["grade", str(toy / "sub"), "--tests", "public", "--json", str(out), "--timeout", "8",
                 "--memory-mb", "1024", "--tests-dir", str(toy / "graded")])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["score"] == 2
    assert {t["name"] for t in results["tests"]} >= {"test_toy::test_add", "test_toy::test_loop"}
    assert all(set(t) >= {"name", "score", "max_score", "output"} for t in results["tests"])
    table = capsys.readouterr().out
    assert "test_toy::test_add" in table and "total" in table and "2 / 12" in table


def test_a_submission_that_does_not_import_gets_zero_and_a_clear_message(toy):
    (toy / "sub" / "rlcourse" / "__init__.py").write_text("def broken(:\n    pass\n")
    report = grade(toy / "sub", tests_dir=toy / "graded", timeout=8)
    assert report.score == 0
    assert report.message.startswith("the submission does not import: SyntaxError")
    assert "__init__.py" in report.message


def test_a_missing_package_gets_zero_and_a_clear_message(toy, capsys):
    (toy / "empty").mkdir()
    report = grade(toy / "empty", tests_dir=toy / "graded")
    assert report.score == 0 and "has no package" in report.message
    assert main(["grade", str(toy / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
