"""The pytest plugin inside each grading process (copied there as ``_rlcourse_grading_plugin``).

It reports to the grader over a pipe whose file descriptor and a one-time nonce arrive in
the environment; both are removed from ``os.environ`` before any test (and so any student
code) is imported. The grader trusts only what arrives on that pipe with the nonce: not
the exit status, not stdout. A result counts only when the ``finished`` line arrives too,
so a test process that calls ``os._exit`` or crashes halfway earns nothing for the tests
it did not finish.
"""

import json
import os

_FD = int(os.environ.pop("RLCOURSE_GRADING_FD"))
_NONCE = os.environ.pop("RLCOURSE_GRADING_NONCE")
_PIPE = os.fdopen(_FD, "w", buffering=1)


def _send(**fields):
    _PIPE.write(json.dumps({"nonce": _NONCE, **fields}) + "\n")
    _PIPE.flush()


def _reason(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip()[:400]


def pytest_collectreport(report):
    if report.failed:
        _send(event="report", nodeid=report.nodeid, when="collect", outcome="failed",
              reason=_reason(report))


def pytest_collection_finish(session):
    _send(event="collected", count=len(session.items))


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        reason = _reason(report) if report.outcome != "passed" else ""
        if report.outcome == "skipped":
            reason = f"skipped: {reason}"
        _send(event="report", nodeid=report.nodeid, when=report.when, outcome=report.outcome,
              reason=reason)


def pytest_sessionfinish(session, exitstatus):
    _send(event="finished")
