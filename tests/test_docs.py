"""The documentation builds without warnings and works offline.

One Sphinx build (notebook execution off, warnings as errors) into a temporary folder;
the checks then read the HTML it wrote.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py") if not p.name.startswith("_"))
LESSON_PAGES = {1: "lessons/01_tabular_control.html", 2: "lessons/02_evaluation_planning.html",
                3: "lessons/03_value_approximation.html", 4: "lessons/04_policy_gradients.html",
                5: "lessons/05_actor_critic.html", 6: "lessons/06_trust_regions.html",
                7: "lessons/07_rlhf_dpo.html"}
# what each lesson page must show of the package's code (``def name(`` in the page's text)
SHOWN = {1: ("td_target", "epsilon_at", "epsilon_greedy", "greedy_action", "train"),
         2: ("model_arrays", "exact_evaluation", "mc_evaluation", "td0_evaluation", "q_from_v",
             "value_iteration", "policy_iteration"),
         3: ("semi_gradient_td0_update", "dqn_target", "polyak_update", "dqn_update", "update_round"),
         4: ("reward_to_go", "gae", "policy_gradient_loss", "negative_log_likelihood"),
         5: ("n_step_advantage", "advantages", "a2c_loss", "step", "worker"),
         6: ("importance_sampled_loss", "clipped_surrogate_loss", "ppo_loss", "adapt_kl_coef",
             "conjugate_gradient", "fisher_vector_product", "natural_step", "policy_update"),
         7: ("sequence_logprobs", "sft_loss", "reward_loss", "dpo_loss")}

SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.IGNORECASE)
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="notebooks/ has no lesson notebooks yet")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    html = out / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
               "-D", "nb_execution_mode=off", "-d", str(out / "doctrees"), str(DOCS), str(html)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (f"sphinx-build failed with status {done.returncode}:\n"
                                  f"{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
    return html


def script_sources(page: Path) -> list[str]:
    return SCRIPT_SRC.findall(page.read_text(encoding="utf-8"))


def test_pages_exist(site):
    expected = ["index.html", "install.html", "cli.html", "instructors.html", "api.html", "benchmarks.html",
                *LESSON_PAGES.values(), *(f"notebooks/{name}.html" for name in NOTEBOOKS)]
    missing = [page for page in expected if not (site / page).is_file()]
    assert not missing, f"pages not built: {missing}"


def test_no_page_loads_a_script_from_the_network(site):
    remote = {str(page.relative_to(site)): src
              for page in site.rglob("*.html") for src in script_sources(page) if REMOTE.match(src)}
    assert not remote, f"pages load scripts over the network: {remote}"


def test_math_pages_load_the_bundled_mathjax(site):
    for name in LESSON_PAGES.values():
        page = site / name
        text = page.read_text(encoding="utf-8")
        assert 'class="math notranslate nohighlight"' in text, f"{name} has no rendered math"
        mathjax = [src for src in script_sources(page) if "mathjax" in src.lower()]
        assert len(mathjax) == 1, f"{name} should load MathJax once, found {mathjax}"
        assert not REMOTE.match(mathjax[0])
        local = (page.parent / urlsplit(mathjax[0]).path).resolve()
        assert local.is_file(), f"{name} loads {mathjax[0]}, but {local} does not exist"
        config = dict(q.split("=", 1) for q in urlsplit(mathjax[0]).query.split("&") if "=" in q)
        assert (local.parent / "config" / f"{config['config']}.js").is_file()
        assert "MathJax.Hub.Config" in text, f"{name} has no MathJax 2 configuration block"


def visible_text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_lesson_pages_show_the_package_code(site):
    for lesson, names in SHOWN.items():
        text = visible_text(site / LESSON_PAGES[lesson])
        missing = [name for name in names if f"def {name}(" not in text]
        assert not missing, f"lesson {lesson} does not show {missing}"
