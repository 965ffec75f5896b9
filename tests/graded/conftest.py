"""The graded tests' own conftest: the ``points`` marker, the choice of package, and a short
report of the functions still to write.

``RLCOURSE_UNDER_TEST=DIR python -m pytest tests/graded`` tests ``DIR/rlcourse`` (a
student's tree, or a release) instead of the installed package. This file stands alone:
``rlcourse grade`` copies the graded test files, this one included, into a fresh folder.

A test that fails because it reached a function whose body is still the release's stub
(``NotImplementedError("lesson N: write NAME in PATH ...")``) is reported as "not
written" in one line instead of with its traceback, and a summary lists those functions;
it still counts as failed. Against the reference, and under ``rlcourse grade``'s harness,
nothing changes.
"""

import os
import re
import sys

import pytest

UNDER_TEST = os.environ.get("RLCOURSE_UNDER_TEST")
if UNDER_TEST:
    _root = os.path.abspath(UNDER_TEST)
    if not os.path.isfile(os.path.join(_root, "rlcourse", "__init__.py")):
        raise pytest.UsageError(f"RLCOURSE_UNDER_TEST={UNDER_TEST!r}: there is no rlcourse/__init__.py in {_root}")
    sys.path.insert(0, _root)
    # A conftest further up (tests/conftest.py) may have imported the installed rlcourse
    # already: forget it, so that the next import finds the one under test.
    for _name in [name for name in sys.modules if name == "rlcourse" or name.startswith("rlcourse.")]:
        del sys.modules[_name]


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): what the test is worth; every case must pass to earn it")


def pytest_report_header(config):
    try:
        import rlcourse
    except Exception as error:  # the tests will say more; the header must not crash
        return f"rlcourse under test does not import: {error!r}"
    return f"rlcourse under test: {os.path.dirname(os.path.abspath(rlcourse.__file__))}"


STUB = re.compile(r"lesson (\d+): write (\S+) in (\S+) \(your code replaces this line\)")
NOT_WRITTEN = "not written"


def _stub_reached(report):
    """The (lesson, function, path) of the stub a failed test ran into, or None."""
    if report.when != "call" or not report.failed:
        return None
    sandbox = sys.modules.get("rlcourse.assignments.sandbox")
    if getattr(sandbox, "HARNESS", None) is not None:        # rlcourse grade reports for itself
        return None
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = getattr(crash, "message", "")
    match = message.startswith("NotImplementedError: ") and STUB.match(message.removeprefix("NotImplementedError: "))
    return match.groups() if match else None


def _stubs_of(lessons: set) -> list:
    """Every (lesson, path, function) still stubbed in the package under test, for these lessons."""
    import rlcourse

    stubs = set()
    for folder, _, files in os.walk(os.path.dirname(os.path.abspath(rlcourse.__file__))):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as source:
                    found = STUB.findall(source.read())
                stubs.update((int(lesson), path, function) for lesson, function, path in found)
    return sorted(stub for stub in stubs if stub[0] in lessons)


def pytest_report_teststatus(report, config):
    if _stub_reached(report):
        return NOT_WRITTEN, "n", "NOT WRITTEN"
    return None


def pytest_terminal_summary(terminalreporter):
    reports = terminalreporter.stats.get(NOT_WRITTEN, [])
    if not reports:
        return
    terminalreporter.write_sep("=", "functions still to write")
    lessons = set()
    for report in reports:
        lesson, function, _ = _stub_reached(report)
        lessons.add(int(lesson))
        terminalreporter.write_line(f"NOT WRITTEN {report.nodeid}: {function} (lesson {lesson})")
    stubs = _stubs_of(lessons)
    names = ", ".join(f"{function} (lesson {lesson}, {path})" for lesson, path, function in stubs)
    terminalreporter.write_line(f"{len(stubs)} functions still to write: {names}")
