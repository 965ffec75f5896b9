"""The student release of lessons 1, 2, 6 and 7, and grading it both ways: 0 on the release, full on the reference."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlcourse.assignments.grade import grade
from rlcourse.assignments.markers import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, find_blocks,
                                          solution_lines, stub_solutions)
from rlcourse.assignments.release import ReleaseError, release
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
    assert functions["rlcourse/pg/ppo.py"] == ["adapt_kl_coef", "clipped_surrogate_loss", "ppo_loss"]
    assert functions["rlcourse/pg/trpo.py"] == ["conjugate_gradient", "fisher_vector_product", "natural_step",
                                                "policy_update"]
    for path, names in (("ppo.py", functions["rlcourse/pg/ppo.py"]), ("trpo.py", functions["rlcourse/pg/trpo.py"])):
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


def test_untouched_release_scores_zero_and_the_reference_full_points():
    # The release is made fresh here so this test stands alone when run by itself.
    import tempfile

    # Lesson 7's graded tests are left out here: each graded test runs in its own process, and
    # importing transformers there costs seconds per test. They run on the reference with the
    # rest of the suite (tests/graded is collected), and the release is checked above.
    with tempfile.TemporaryDirectory() as tmp:
        out, tests = Path(tmp) / "student", Path(tmp) / "graded"
        shutil.copytree(GRADED, tests, ignore=shutil.ignore_patterns("test_lesson7.py", "__pycache__"))
        release(out, [1, 2])
        student = grade(out, tests="all", tests_dir=tests, timeout=120)
        reference = grade(ROOT, tests="all", tests_dir=tests, timeout=120)
    assert reference.max_score >= 20
    failing = [(t.title, t.reason) for t in reference.tests if t.score != t.points]
    assert not failing, failing
    assert reference.score == reference.max_score
    passing = [t.title for t in student.tests if t.score > 0]
    assert not passing, f"these graded tests pass on the untouched release: {passing}"
    assert all("NotImplementedError" in t.reason or "lesson" in t.reason for t in student.tests), \
        [(t.title, t.reason) for t in student.tests if "NotImplementedError" not in t.reason][:3]


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
