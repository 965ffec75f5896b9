import contextlib
import io
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
                    "Lesson 5", "Lesson 6", "Lesson 7"):
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


def test_every_column_of_the_variance_table_is_defined(tour):
    _, report, _ = tour
    section = report.split("## Lesson 4a")[1].split("## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| Ψ_t |"))
    columns = [name.strip() for name in header.strip("|").split("|")[1:]]
    assert columns
    for column in columns:
        assert f"- *{column}*:" in section, f"the column {column!r} is not defined"


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
