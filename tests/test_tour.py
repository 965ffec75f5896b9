import re

from rlcourse.cli import main


def test_tour_writes_a_report_with_its_plots(tmp_path, capsys):
    assert main(["tour", "--out", str(tmp_path), "--quick", "--quiet"]) == 0
    report = (tmp_path / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 4
    for image in images:
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for heading in ("Lesson 1a", "Lesson 1b", "Lesson 1c", "Lesson 2a", "Lesson 2b", "Lesson 4a", "Lesson 4b",
                    "Lesson 5", "Lesson 6", "Lesson 7"):
        assert heading in report
    assert "same optimal policy: **True**" in report
    assert "mean length 5" in report
