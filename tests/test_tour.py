import contextlib
import io
import json
import re

import pandas as pd
import pytest

from rlcourse.cli import main
from rlcourse.tour import _tour_pipeline
from rlcourse.value.dqn import DQNConfig


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """One quick, quiet tour: its folder, its report and what it printed to stderr."""
    out = tmp_path_factory.mktemp("tour")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["tour", "--out", str(out), "--quick", "--quiet"]) == 0
    return out, (out / "report.md").read_text(), stderr.getvalue()


def test_tour_writes_a_report_with_its_plots(tour):
    out, report, _ = tour
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 4
    for image in images:
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for heading in ("Lesson 1a", "Lesson 1b", "Lesson 1c", "Lesson 2a", "Lesson 2b", "Lesson 4a", "Lesson 4b",
                    "Lesson 5", "Lesson 6", "Lesson 7", "Lesson 8"):
        assert heading in report
    assert "same optimal policy: **True**" in report
    assert "mean length 5" in report


def test_quiet_tour_prints_no_progress_bars(tour):
    _, _, stderr = tour
    assert "Writing model shards" not in stderr
    assert "it/s" not in stderr


def test_dqn_reference_line_follows_the_configured_gamma(tour):
    _, report, _ = tour
    bound = 1 / (1 - DQNConfig().gamma)
    assert f"1/(1 − γ) = {bound:g}" in report


@pytest.mark.parametrize("lesson, first_column", [("4a", "Ψ_t"), ("8", "estimator")])
def test_every_column_of_the_variance_tables_is_defined(tour, lesson, first_column):
    _, report, _ = tour
    section = report.split(f"## Lesson {lesson}")[1].split("## ")[0]
    header = next(line for line in section.splitlines() if line.startswith(f"| {first_column} |"))
    columns = [name.strip() for name in header.strip("|").split("|")[1:]]
    assert columns
    for column in columns:
        name = "weight x, y, z" if column.startswith("weight ") else column
        assert f"- *{name}*:" in section, f"the column {column!r} is not defined"


def test_lesson8_reports_the_exact_table_and_pass_at_k(tour):
    out, report, _ = tour
    section = report.split("## Lesson 8")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert {"| exact ", "| rloo ", "| GRPO (std, sequence-mean) "} <= {row[: row.index("|", 2)] for row in rows}
    exact = next(row for row in rows if row.startswith("| exact "))
    assert [float(x) for x in exact.strip("|").split("|")[1:3]] == [1.0, 0.0]  # scale 1, bias 0 against itself
    summary = json.loads((out / "runs" / "rlvr_grpo" / "summary.json").read_text())
    shown = re.search(r"goes from \*\*(\d\.\d\d)\*\* to \*\*(\d\.\d\d)\*\*", section)
    assert shown, "the report states held-out pass@1 before and after"
    assert float(shown[1]) == round(summary["before"]["pass@1"], 2)
    assert float(shown[2]) == round(summary["after"]["pass@1"], 2)


def test_frozenlake_scores_come_with_their_standard_error(tour):
    _, report, _ = tour
    section = report.split("## Lesson 1b")[1].split("## ")[0]
    rates = [float(x) for x in re.findall(r"\*\*(0\.\d+)\*\* \(standard error (0\.\d+)\)", section)[0]]
    rate, stderr = rates
    assert stderr == pytest.approx((rate * (1 - rate) / 1000) ** 0.5, abs=1e-3)


def test_evaluation_table_gives_the_measure_the_plot_draws(tour):
    _, report, _ = tour
    section = report.split("## Lesson 2a")[1].split("## ")[0]
    assert "| estimator | RMS error at the end |" in section


def test_the_rlhf_frontier_has_several_points_per_method(tour):
    out, _, _ = tour
    config = _tour_pipeline(quick=False)
    assert len({config.dpo.beta, *config.dpo_betas}) >= 2
    assert len({config.ppo.kl_coef, *config.ppo_kl_coefs}) >= 2
    # the quick tour runs the same sweep code with QUICK's one extra β for DPO
    frontier = pd.read_csv(out / "runs" / "rlhf_pipeline" / "frontier.csv")
    assert (frontier["method"] == "dpo").sum() >= 2
