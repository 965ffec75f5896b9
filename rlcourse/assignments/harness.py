"""The pytest plugin of the trusted harness: ``rlcourse grade`` runs the graded tests with it.

The harness is a pytest process that imports the trusted package (the grader's own, with
every solution cut out) and the graded tests, never the student's package. It:

* makes :func:`~rlcourse.assignments.sandbox.student_module` hand out proxies, and after
  collection starts the sandbox zygote (``sandbox.Slot``) that imports the student's modules;
* gives each graded test function its time budget (shared by its parametrised cases) and a
  fresh sandbox process per case, killed with everything it started when the case ends;
* reports each case's outcome to the grader over a pipe only the grader holds, with a
  reason that, for a hidden test, names what went wrong but shows none of its source.

Its settings come in a JSON file named by ``RLCOURSE_HARNESS``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

import pytest

from rlcourse.assignments import isolation, sandbox
from rlcourse.assignments.plain import WireError
from rlcourse.assignments.sandbox import SandboxError, Session, Slot, StudentError, TimeLimit

SETTINGS: dict = {}


class Harness:
    """The slot (zygote) of this job, and the session of the test case running now."""

    def __init__(self, slot: Slot, limits: dict, default_limit: float):
        self.slot, self.limits, self.default_limit = slot, limits, default_limit
        self.session: Session | None = None
        self.limit, self.deadline = 0.0, 0.0
        self.started: dict[str, float] = {}
        self.error: str = ""

    def begin(self, title: str) -> None:
        """Start (or go on with) the clock of one graded test function, shared by its cases."""
        self.limit = float(self.limits.get(title, self.default_limit))
        self.deadline = self.started.setdefault(title, time.monotonic()) + self.limit

    def session_for_test(self) -> Session:
        if self.error:
            raise SandboxError(self.error)
        if self.session is None:
            if time.monotonic() >= self.deadline:
                raise TimeLimit(f"timed out after {self.limit:g} s")
            self.session = self.slot.new_child(self.deadline, self.limit)
        return self.session

    def end(self) -> None:
        if self.session is not None:
            self.session = None
            self.slot.end_child()


HARNESS: Harness | None = None
_REPORTS: TextIO | None = None  # where the events go: the report pipe pytest_configure opens


def _send(**fields) -> None:
    assert _REPORTS is not None, "pytest_configure opens the report pipe first"
    _REPORTS.write(json.dumps(fields) + "\n")
    _REPORTS.flush()


def title_of(item) -> str:
    return f"{Path(str(item.fspath)).stem}::{getattr(item, 'originalname', None) or item.name}"


def pytest_configure(config) -> None:
    global HARNESS, _REPORTS
    SETTINGS.update(json.loads(Path(os.environ["RLCOURSE_HARNESS"]).read_text()))
    isolation.harden_trusted_process(subreaper=True)
    isolation.die_with_parent(signal.SIGTERM)
    _REPORTS = os.fdopen(SETTINGS["report_fd"], "w", buffering=1)
    slot = Slot(
        SETTINGS["level"],
        SETTINGS["uid"],
        Path(SETTINGS["work"]),
        Path(SETTINGS["package_dir"]),
        SETTINGS["memory_mb"],
        SETTINGS["hide"],
        SETTINGS["token"],
    )
    HARNESS = Harness(slot, SETTINGS["limits"], SETTINGS["default_limit"])
    sandbox.HARNESS = HARNESS
    signal.signal(signal.SIGTERM, _stop)
    if SETTINGS["level"] != "none":  # the tests are out of its reach: start it while pytest collects
        slot.launch(SETTINGS["modules"])


def _stop(*_) -> None:
    if HARNESS is not None:
        HARNESS.slot.stop()
    os._exit(143)


def pytest_collectreport(report) -> None:
    if report.failed:
        _send(
            event="report",
            title=None,
            nodeid=report.nodeid,
            outcome="failed",
            reason=f"the test could not be collected: {str(report.longrepr).strip().splitlines()[-1][:300]}",
        )


def pytest_collection_finish(session) -> None:
    """Start the sandbox once the tests are in memory (and, without a sandbox user, off the disk)."""
    assert HARNESS is not None, "pytest_configure makes the harness first"
    titles = sorted({title_of(item) for item in session.items})
    _send(event="collected", titles=titles)
    tests_dir = Path(SETTINGS["tests_dir"]).resolve()
    sandbox.LOCAL_MODULES.update(
        name
        for name, module in list(sys.modules.items())
        if Path(getattr(module, "__file__", None) or "/").resolve().parent == tests_dir
    )
    if SETTINGS["level"] == "none":  # the student's code runs as us: take the tests off the disk first
        for path in Path(SETTINGS["tests_dir"]).glob("*.py"):
            path.unlink()
        HARNESS.slot.launch(SETTINGS["modules"] + [m for m in sandbox.DECLARED if m not in SETTINGS["modules"]])
    _warm_up()
    try:
        HARNESS.slot.wait_ready(SETTINGS["import_timeout"])
    except SandboxError as error:
        HARNESS.error = str(error)
    _send(event="ready", problems=HARNESS.slot.problems, error=HARNESS.error)


def _warm_up() -> None:
    """What torch loads on first use (autograd, an optimiser's step), loaded before the first
    test's clock starts, as the sandbox's zygote does."""
    import torch

    if True:
        p = torch.nn.Parameter(torch.zeros(2))
        (p * 2.0).sum().backward()
        for optimizer in (torch.optim.SGD([p], lr=0.1), torch.optim.Adam([p], lr=0.1)):
            optimizer.step()
            optimizer.load_state_dict(optimizer.state_dict())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    HARNESS.begin(title_of(item))
    try:
        yield
    finally:
        HARNESS.end()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed or report.skipped:
        report.rlcourse_reason = _reason(call.excinfo, title_of(item) in SETTINGS["hidden"]) if call.excinfo else ""


def _reason(excinfo, hidden: bool) -> str:
    """What the student is told; a hidden test's own source and values never appear."""
    error = excinfo.value
    if isinstance(error, (TimeLimit, SandboxError, WireError)):
        return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    if isinstance(error, StudentError):
        if hidden:
            return f"your code raised {error.student_type}"
        first = (str(error).strip().splitlines() or [""])[0]
        return f"your code raised {error.student_type}: {first}"[:400]
    if excinfo.typename == "Skipped":
        return "skipped"
    if hidden:
        return (
            "a check failed" if isinstance(error, AssertionError) else f"{excinfo.typename} in a check"
        ) + " (a hidden test: its details are not shown)"
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return (first if isinstance(error, AssertionError) and first else f"{excinfo.typename}: {first}")[:400]


def pytest_runtest_logreport(report) -> None:
    reason = getattr(report, "rlcourse_reason", "") if report.outcome != "passed" else ""
    title = f"{Path(report.fspath).stem}::{report.nodeid.split('::')[-1].split('[')[0]}"
    _send(
        event="report",
        title=title,
        nodeid=report.nodeid,
        when=report.when,
        outcome=report.outcome,
        reason=reason or report.outcome,
        seconds=report.duration,
    )


def pytest_sessionfinish(session, exitstatus) -> None:
    if HARNESS is not None:
        HARNESS.slot.stop()
    _send(event="finished")
    sys.stdout.flush()
