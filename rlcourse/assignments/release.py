"""``rlcourse assignment release --out DIR``: the student version of the package.

What DIR gets:

* ``rlcourse/``: every module, each solution block replaced by a ``NotImplementedError``
  that names the function and the lesson (hints, signatures and docstrings stay);
* ``notebooks/`` and ``tests/graded/`` for the chosen lessons, hidden tests removed;
* ``docs/`` (its code listings come from the stubbed modules), ``setup.cfg``,
  ``pyproject.toml``, and a README listing what to write.

Every solution block is stubbed, whichever lessons are chosen, so no solution of a later
assignment leaks. Before it returns, the release checks itself: no marker and no line of
any solution remains in any file of DIR, and the released package imports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from rlcourse.assignments.markers import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    solution_lines,
    strip_hidden,
    stub_solutions,
)

# Which lesson each marked module belongs to (named in the stubs' messages). Each later
# lesson adds its modules here.
LESSON_OF_MODULE = {
    "rlcourse/tabular/qtable.py": 1,
    "rlcourse/tabular/td_control.py": 1,
    "rlcourse/tabular/evaluation.py": 2,
    "rlcourse/tabular/planning.py": 2,
    "rlcourse/tabular/td_lambda.py": 2,
    "rlcourse/tabular/dyna.py": 2,
    "rlcourse/tabular/lookahead.py": 2,
    "rlcourse/value/linear.py": 3,
    "rlcourse/value/replay.py": 3,
    "rlcourse/value/dqn_targets.py": 3,
    "rlcourse/value/dqn.py": 3,
    "rlcourse/value/true_online.py": 3,
    "rlcourse/pg/objective.py": 4,
    "rlcourse/pg/psi.py": 4,
    "rlcourse/pg/reinforce.py": 4,
    "rlcourse/pg/imitation.py": 4,
    "rlcourse/pg/dagger.py": 4,
    "rlcourse/pg/a2c.py": 5,
    "rlcourse/pg/a3c.py": 5,
    "rlcourse/pg/td_lambda_ac.py": 5,
    "rlcourse/pg/ppo.py": 6,
    "rlcourse/pg/trpo.py": 6,
    "rlcourse/rlhf/model.py": 7,
    "rlcourse/rlhf/sft.py": 7,
    "rlcourse/rlhf/reward.py": 7,
    "rlcourse/rlhf/dpo.py": 7,
    "rlcourse/rlhf/ppo.py": 7,
    "rlcourse/rlvr/grpo.py": 8,
}
# Functions of a shared module that belong to a later lesson than the module.
LESSON_OF_FUNCTION = {
    "rlcourse/pg/objective.py": {"clipped_surrogate_loss": 6},
    "rlcourse/pg/psi.py": {
        name: 8 for name in ("group_mean_baseline", "grpo_advantages", "rloo_advantages", "token_weights")
    },
}
IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", "_build", "jupyter_execute", ".ipynb_checkpoints", ".jupyter_cache"
)
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)


class ReleaseError(RuntimeError):
    """The release would be wrong (a leak, a marker left, a package that does not import)."""


def source_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.cfg").is_file() or not (root / "tests" / "graded").is_dir():
        raise ReleaseError(f"{root} is not an rlcourse source checkout: release from one (pip install -e .)")
    return root


def available_lessons(root: Path) -> list[int]:
    return sorted(
        {
            int(m.group(1))
            for p in (root / "tests" / "graded").glob("test_lesson*.py")
            if (m := re.match(r"test_lesson(\d+)", p.name))
        }
    )


def release(out: str | Path, lessons: list[int] | None = None, root: Path | None = None) -> dict:
    """Write the student version to ``out`` (which must be empty or absent); return a summary."""
    root = root or source_root()
    out = Path(out)
    known = available_lessons(root)
    lessons = sorted(lessons or known)
    unknown = [n for n in lessons if n not in known]
    if unknown:
        raise ReleaseError(f"no graded tests for lesson(s) {unknown}; lessons with graded tests: {known}")
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty: release into a new directory")
    out.mkdir(parents=True, exist_ok=True)

    to_write = _stubbed_package(root, out)
    _copy_setup_and_docs(root, out)
    _copy_lessons(root, out, lessons)
    rows = functions_to_write(lessons, to_write)
    (out / "README.md").write_text(_readme(lessons, rows))

    check_release(out, root)
    functions: dict[str, list[str]] = {}
    for _, path, names in rows:
        functions.setdefault(path, []).extend(names)
    return {"out": str(out), "lessons": lessons, "functions": functions}


def _stubbed_package(root: Path, out: Path) -> dict[str, list[str]]:
    """Copy the package with every solution block stubbed; return module → functions to write."""
    to_write: dict[str, list[str]] = {}
    shutil.copytree(root / "rlcourse", out / "rlcourse", ignore=IGNORE)
    for path in sorted((out / "rlcourse").rglob("*.py")):
        relative = path.relative_to(out).as_posix()
        stubbed, functions = stub_solutions(
            path.read_text(), relative, LESSON_OF_MODULE.get(relative), LESSON_OF_FUNCTION.get(relative)
        )
        if functions:
            path.write_text(stubbed)
            to_write[relative] = functions
    return to_write


def _copy_setup_and_docs(root: Path, out: Path) -> None:
    shutil.copy(root / "pyproject.toml", out / "pyproject.toml")
    # pytest loads the conftest of its testpaths first, on xdist's controller too: that one
    # turns a stub's failure into one line and lists the functions still to write
    (out / "setup.cfg").write_text(
        re.sub(r"(?m)^testpaths = tests$", "testpaths = tests/graded", (root / "setup.cfg").read_text())
    )
    if (root / "docs").is_dir():
        ignore = shutil.ignore_patterns("_build", "jupyter_execute", "notebooks", "__pycache__")
        shutil.copytree(root / "docs", out / "docs", ignore=ignore)


def _copy_lessons(root: Path, out: Path, lessons: list[int]) -> None:
    """The notebooks (stubbed) and the public graded tests of ``lessons``."""
    (out / "notebooks").mkdir()
    for lesson in lessons:
        for notebook in sorted((root / "notebooks").glob(f"{lesson:02d}_*.py")):
            stubbed, _ = stub_solutions(notebook.read_text(), f"notebooks/{notebook.name}", lesson)
            (out / "notebooks" / notebook.name).write_text(stubbed)
    graded = out / "tests" / "graded"
    graded.mkdir(parents=True)
    for path in sorted((root / "tests" / "graded").glob("*.py")):
        match = re.match(r"test_lesson(\d+)", path.name)
        if match is None or int(match.group(1)) in lessons:
            (graded / path.name).write_text(strip_hidden(path.read_text(), str(path)))


def secret_lines(root: Path) -> set[str]:
    """Lines that appear only inside solution blocks or hidden tests (a line the reference also
    shows outside a block is public anyway)."""
    secrets: set[str] = set()
    public: set[str] = set()
    sources = list((root / "rlcourse").rglob("*.py")) + list((root / "notebooks").glob("*.py"))
    for path in sources:
        source = path.read_text()
        secrets.update(solution_lines(source, str(path)))
        public.update(line.strip() for line in stub_solutions(source, str(path), None)[0].splitlines())
    for path in (root / "tests" / "graded").glob("*.py"):
        source = path.read_text()
        public.update(line.strip() for line in strip_hidden(source, str(path)).splitlines())
        secrets.update(
            line.strip() for line in source.splitlines() if len(line.strip()) >= 12 and line.strip() not in MARKERS
        )
    return secrets - public


def _leaks(out: Path, secrets: set[str]) -> list[str]:
    leaks = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.suffix in (".pyc", ".pyo"):
            leaks.append(f"{path}: compiled file")
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for line in text.splitlines():
            stripped = line.strip()
            if stripped in MARKERS:
                leaks.append(f"{path}: marker {stripped!r}")
            elif stripped in secrets:
                leaks.append(f"{path}: solution or hidden-test line {stripped!r}")
    return leaks


def check_release(out: Path, root: Path) -> None:
    """Fail if DIR holds a marker or any solution line, or if its package does not import.

    A "secret" is a line that appears only inside solution blocks or hidden tests: a line
    such as ``Q = q_from_v(T, R, V, gamma)`` that the reference also shows outside a block
    is public anyway.
    """
    leaks = _leaks(out, secret_lines(root))
    if leaks:
        raise ReleaseError("the release would leak:\n  " + "\n  ".join(leaks[:20]))
    done = subprocess.run(
        [sys.executable, "-c", "import rlcourse; print(rlcourse.__file__)"],
        cwd=out,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(out), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if done.returncode != 0 or not done.stdout.strip().startswith(str(out.resolve())):
        raise ReleaseError(f"the released package does not import: {done.stderr.strip()[-500:]}")


def lesson_of(path: str, function: str) -> int | None:
    """The lesson a function of the reference belongs to (its module's, unless it is listed apart)."""
    return LESSON_OF_FUNCTION.get(path, {}).get(function, LESSON_OF_MODULE.get(path))


def functions_to_write(lessons: list[int], stubbed: dict[str, list[str]]) -> list[tuple[int, str, list[str]]]:
    """``(lesson, module, functions)`` for each module with stubbed functions of the chosen lessons."""
    rows = []
    for lesson in lessons:
        for path, functions in stubbed.items():
            mine = [f for f in functions if lesson_of(path, f) == lesson]
            if mine:
                rows.append((lesson, path, mine))
    return rows


def _readme(lessons: list[int], rows: list[tuple[int, str, list[str]]]) -> str:
    numbers = ",".join(map(str, lessons))
    return "\n".join(
        [
            "# rlcourse: your assignment",
            "",
            f"{'Lesson' if len(lessons) == 1 else 'Lessons'} {', '.join(map(str, lessons))}. Each function "
            "below raises `NotImplementedError` until you write its body; the docstring above it gives "
            "the equation and the hints.",
            "",
            *(f"- `{path}` (lesson {lesson}): " + ", ".join(f"`{f}`" for f in names) for lesson, path, names in rows),
            "",
            "Install it once, in a virtual environment of its own (torch pinned to the CPU build the",
            "course uses):",
            "",
            "```sh",
            "python -m venv .venv && . .venv/bin/activate",
            'pip install torch==2.13.0 -e ".[dev]"',
            "```",
            "",
            "Then, in this folder, grade yourself the way your submission will be graded (the public",
            "tests, with points per test):",
            "",
            "```sh",
            f"rlcourse grade . --lessons {numbers}",
            "```",
            "",
            "`python -m pytest` runs the same tests without the points: it lists the functions still",
            "to write, and shows the traceback of a test that fails in a function you wrote.",
            "",
            "The notebooks in `notebooks/` open in Jupyter (`jupytext --to notebook FILE` writes an",
            "`.ipynb`). Functions of other lessons raise `NotImplementedError` too; you do not",
            "need them for these lessons.",
            "",
        ]
    )
