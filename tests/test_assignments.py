"""The student release, the Gradescope bundle, and grading both ways: 0 on the release, full on the reference."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rlcourse.assignments.autograder import build_bundle
from rlcourse.assignments.markers import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, enclosing_function,
                                          find_blocks, solution_lines, stub_solutions)
from rlcourse.assignments.release import LESSON_OF_MODULE, ReleaseError, lesson_of, release
from rlcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRADED = ROOT / "tests" / "graded"
LESSONS = [1, 2, 6, 7]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    return out, release(out, LESSONS)


def test_every_marked_function_becomes_a_stub_naming_function_and_lesson(released):
    out, summary = released
    assert "td_target" in summary["functions"]["rlcourse/tabular/td_control.py"]
    assert "value_iteration" in summary["functions"]["rlcourse/tabular/planning.py"]
    source = (out / "rlcourse" / "tabular" / "td_control.py").read_text()
    assert ('raise NotImplementedError("lesson 1: write td_target in rlcourse/tabular/td_control.py'
            in source)
    assert '"""The one-step target' in source                # docstrings stay
    assert "# Hint:" in source                                  # hints stay
    readme = (out / "README.md").read_text()
    assert "`td_target`" in readme and "`value_iteration`" in readme
    # lesson 6: PPO's and TRPO's pieces, and their public graded tests
    functions = summary["functions"]
    assert functions["rlcourse/pg/ppo.py"] == ["adapt_kl_coef", "ppo_loss"]
    assert "clipped_surrogate_loss" in functions["rlcourse/pg/objective.py"]
    assert functions["rlcourse/pg/trpo.py"] == ["conjugate_gradient", "fisher_vector_product", "natural_step",
                                                "policy_update"]
    for path, names in (("ppo.py", functions["rlcourse/pg/ppo.py"]), ("trpo.py", functions["rlcourse/pg/trpo.py"]),
                        ("objective.py", ["clipped_surrogate_loss"])):
        source = (out / "rlcourse" / "pg" / path).read_text()
        for name in names:
            assert f'raise NotImplementedError("lesson 6: write {name} in rlcourse/pg/{path}' in source
        assert "`" + names[0] + "`" in readme
    assert (out / "tests" / "graded" / "test_lesson6.py").is_file()
    # lesson 7: RLHF's and DPO's pieces, one module at a time
    rlhf = {"model.py": ["sequence_logprobs"], "sft.py": ["sft_loss"], "reward.py": ["reward_loss"],
            "dpo.py": ["dpo_loss"], "ppo.py": ["per_token_rewards", "ppo_rlhf_loss", "token_advantages"]}
    for path, names in rlhf.items():
        assert functions[f"rlcourse/rlhf/{path}"] == names, path
        source = (out / "rlcourse" / "rlhf" / path).read_text()
        for name in names:
            assert f'raise NotImplementedError("lesson 7: write {name} in rlcourse/rlhf/{path}' in source
            assert "`" + name + "`" in readme
    assert (out / "tests" / "graded" / "test_lesson7.py").is_file()
    assert not (out / "tests" / "graded" / "test_lesson3.py").exists()     # lessons not chosen stay out


def test_nothing_of_the_solutions_or_hidden_tests_is_left(released):
    out, _ = released
    secrets, public = set(), set()
    for path in list((ROOT / "rlcourse").rglob("*.py")) + list((ROOT / "notebooks").glob("*.py")):
        source = path.read_text()
        secrets.update(solution_lines(source))
        public.update(line.strip() for line in stub_solutions(source, str(path), None)[0].splitlines())
    secrets -= public                      # lines the reference also shows outside any block
    assert len(secrets) > 20
    hidden_names = set()
    for path in GRADED.glob("test_*.py"):
        lines = path.read_text().splitlines()
        for block in find_blocks("\n".join(lines), BEGIN_HIDDEN, END_HIDDEN, str(path)):
            hidden = "\n".join(lines[block.begin:block.end + 1])     # a visible test may follow a block
            hidden_names.update(re.findall(r"def (test_\w+)", hidden))
    assert hidden_names, "the graded tests should keep some tests hidden"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".pyc" or "__pycache__" in p.parts]
    for path in files:
        text = path.read_text(errors="ignore")
        lines = {line.strip() for line in text.splitlines()}
        assert not lines & {BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN}, path      # no marker line
        assert not lines & secrets, (path, sorted(lines & secrets)[:3])
        assert not any(f"def {name}(" in text for name in hidden_names), path


def test_released_package_imports_and_notebooks_open(released):
    import jupytext

    out, _ = released
    done = subprocess.run([sys.executable, "-c", "import rlcourse, rlcourse.tabular.planning, rlcourse.rlhf.ppo, "
                           "rlcourse.rlhf.dpo; print(rlcourse.__file__)"],
                          cwd=out, capture_output=True, text=True, env={"PYTHONPATH": str(out), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(out))
    notebooks = sorted((out / "notebooks").glob("*.py"))
    # the notebooks of the chosen lessons, and only those
    assert [p.name for p in notebooks] == sorted(p.name for p in (ROOT / "notebooks").glob("*.py")
                                                 if int(p.name[:2]) in LESSONS)
    assert {"01", "02", "06"} <= {p.name[:2] for p in notebooks}
    for notebook in notebooks:
        assert len(jupytext.read(notebook).cells) > 5


def test_the_autograder_bundle_holds_no_solution_and_grades_release_zero_reference_full(tmp_path):
    """Every lesson, public and hidden tests, graded the way Gradescope would: by the bundle's own
    grader, whose package is the release (no solution anywhere), in the sandbox."""
    lessons = [int(p.stem.removeprefix("test_lesson")) for p in sorted(GRADED.glob("test_lesson*.py"))]
    summary = build_bundle(tmp_path / "autograder.zip", lessons)
    bundle = tmp_path / "bundle"
    with zipfile.ZipFile(summary["out"]) as archive:
        archive.extractall(bundle)
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert "--tests all" in (bundle / "run_autograder").read_text()
    assert f"torch=={summary['torch']}" in (bundle / "setup.sh").read_text()
    # the hidden tests are there for the grader; no line of any solution is
    assert (bundle / "tests" / "test_lesson1.py").read_text() == (GRADED / "test_lesson1.py").read_text()
    secrets, public = set(), set()
    for path in list((ROOT / "rlcourse").rglob("*.py")) + list((ROOT / "notebooks").glob("*.py")):
        source = path.read_text()
        secrets.update(solution_lines(source))
        public.update(line.strip() for line in stub_solutions(source, str(path), None)[0].splitlines())
    secrets -= public
    for path in (bundle / "package").rglob("*.py"):
        assert not {line.strip() for line in path.read_text().splitlines()} & secrets, path
    # grade with the bundle's grader: its rlcourse is the release
    env = {**os.environ, "PYTHONPATH": str(bundle / "package")}
    env.pop("RLCOURSE_UNDER_TEST", None)
    results = {}
    # the release's every test fails at once: one harness is enough for it
    for name, submission, jobs in (("release", bundle / "package", ["--jobs", "1"]), ("reference", ROOT, [])):
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "-m", "rlcourse.cli", "grade", str(submission), "--tests", "all",
                               "--tests-dir", str(bundle / "tests"), "--json", str(out), *jobs],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        results[name] = json.loads(out.read_text())
    reference, student = results["reference"], results["release"]
    failing = [(t["name"], t["output"]) for t in reference["tests"] if t["score"] != t["max_score"]]
    assert not failing, failing
    assert reference["score"] == sum(t["max_score"] for t in reference["tests"]) >= 150
    assert {t["name"].split("::")[0] for t in reference["tests"]} == {f"test_lesson{n}" for n in lessons}
    passing = [t["name"] for t in student["tests"] if t["score"] > 0]
    assert not passing, f"these graded tests pass on the untouched release: {passing}"
    assert all("NotImplementedError" in t["output"] for t in student["tests"]), \
        [(t["name"], t["output"]) for t in student["tests"] if "NotImplementedError" not in t["output"]][:3]


def test_release_refuses_a_non_empty_directory_and_unknown_lessons(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ReleaseError, match="not empty"):
        release(tmp_path, [1])
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(ReleaseError, match="no graded tests for lesson"):
        release(tmp_path / "new", [42])
    assert main(["assignment", "release", "--out", str(tmp_path), "--lessons", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["assignment", "release", "--out", str(tmp_path / "x"), "--lessons", "one"]) == 2


def test_the_release_readme_gives_one_grade_command_and_pytest_names_what_is_left_to_write(released, tmp_path):
    out, summary = released
    readme = (out / "README.md").read_text()
    assert "python -m venv .venv && . .venv/bin/activate" in readme and 'pip install torch==2.13.0 -e ".[dev]"' in readme
    assert "rlcourse grade . --lessons 1,2,6,7" in readme
    assert "policy_gradient_loss" not in readme and "rlcourse/value/replay.py" not in readme      # lessons 4, 3
    assert summary["functions"]["rlcourse/pg/objective.py"] == ["clipped_surrogate_loss"]
    # td_target written, wrongly: its tests fail with a traceback; the other stubs are one line each
    student = tmp_path / "student"
    shutil.copytree(out, student)
    td_control = student / "rlcourse" / "tabular" / "td_control.py"
    stub = 'raise NotImplementedError("lesson 1: write td_target in rlcourse/tabular/td_control.py'
    td_control.write_text(re.sub(re.escape(stub) + ".*", "return 0.0", td_control.read_text()))
    for lesson in (2, 6, 7):                             # lesson 1's tests alone are quicker
        (student / "tests" / "graded" / f"test_lesson{lesson}.py").unlink()
    # as a student runs it (-n 1 instead of the release's -n 2: one worker is enough for lesson 1)
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider"],
                          cwd=student, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RLCOURSE_UNDER_TEST": str(student)})
    assert done.returncode == 1, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    left = [f for path in ("rlcourse/tabular/qtable.py", "rlcourse/tabular/td_control.py")
            for f in summary["functions"][path] if f != "td_target"]
    (total,) = [line for line in lines if "functions still to write: " in line]
    assert total.startswith(f"{len(left)} functions still to write: ") and "td_target" not in total
    assert all(f"{name} (lesson 1, rlcourse/tabular/" in total for name in left)
    assert any(line.startswith("NOT WRITTEN tests/graded/test_lesson1.py::test_greedy_action") for line in lines)
    assert "FAILED tests/graded/test_lesson1.py::test_td_target_of_q_learning_and_sarsa" in done.stdout
    assert "def test_td_target_of_q_learning_and_sarsa():" in done.stdout            # its traceback
    assert "raise NotImplementedError" not in done.stdout                             # no stub's traceback


# Solution blocks that no graded test names, each with the reason it is not a hole in the grade.
GRADED_THROUGH_ANOTHER = {
    ("rlcourse/tabular/td_lambda.py", "td_lambda_episode"): "td_lambda_evaluation, graded against the λ-return",
}


def test_every_function_a_student_writes_is_named_by_a_graded_test_of_its_lesson():
    # a solution block no graded test reaches is work a student is never marked on: a stub left
    # raising NotImplementedError would lose nothing
    ungraded = []
    for path in LESSON_OF_MODULE:
        source = (ROOT / path).read_text()
        for block in find_blocks(source, BEGIN_SOLUTION, END_SOLUTION, path):
            function = enclosing_function(source, block.begin)
            tests = (ROOT / "tests" / "graded" / f"test_lesson{lesson_of(path, function)}.py").read_text()
            name = function.split(".")[-1]  # a method: its name, e.g. ReplayBuffer.add's buffer.add(
            called = re.search(rf"\.{name}\b|\b{name}\(", tests)
            if not called and (path, function) not in GRADED_THROUGH_ANOTHER:
                ungraded.append(f"{path}: {function}")
    assert not ungraded, ungraded
