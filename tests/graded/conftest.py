"""The graded tests' own conftest: the ``points`` marker and the choice of package.

``RLCOURSE_UNDER_TEST=DIR python -m pytest tests/graded`` tests ``DIR/rlcourse`` (a
student's tree, or a release) instead of the installed package. This file stands alone:
``rlcourse grade`` copies the graded test files, this one included, into a fresh folder.
"""

import os
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
