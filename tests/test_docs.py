"""The documentation builds without warnings and works offline.

One Sphinx build (warnings as errors) into a temporary folder; the checks then read the
HTML it wrote. The notebook pages show real outputs without the build running a notebook:
the build reads the notebooks that tests/test_notebooks.py executes at small budgets
(``-D course_notebook_outputs``; each notebook runs once per session, by whichever of the
two test files asks first). So these checks see what a notebook prints and plots, only
on smaller budgets than the published site.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from test_notebooks import executed_notebook, session_folder

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOK_PATHS = sorted(p for p in (ROOT / "notebooks").glob("*.py") if not p.name.startswith("_"))
NOTEBOOKS = [p.stem for p in NOTEBOOK_PATHS]
LESSON_PAGES = {1: "lessons/01_tabular_control.html", 2: "lessons/02_evaluation_planning.html",
                3: "lessons/03_value_approximation.html", 4: "lessons/04_policy_gradients.html",
                5: "lessons/05_actor_critic.html", 6: "lessons/06_trust_regions.html",
                7: "lessons/07_rlhf_dpo.html", 8: "lessons/08_rl_verifiable_rewards.html"}
# what each lesson page must show of the package's code (``def name(`` in the page's text)
SHOWN = {1: ("td_target", "epsilon_at", "epsilon_greedy", "greedy_action", "train"),
         2: ("model_arrays", "exact_evaluation", "mc_evaluation", "td0_evaluation", "q_from_v",
             "value_iteration", "policy_iteration"),
         3: ("semi_gradient_td0_update", "dqn_target", "polyak_update", "dqn_update", "update_round"),
         4: ("reward_to_go", "gae", "policy_gradient_loss", "negative_log_likelihood"),
         5: ("n_step_advantage", "advantages", "a2c_loss", "step", "worker"),
         6: ("importance_sampled_loss", "clipped_surrogate_loss", "ppo_loss", "adapt_kl_coef",
             "conjugate_gradient", "fisher_vector_product", "natural_step", "policy_update"),
         7: ("sequence_logprobs", "sft_loss", "reward_loss", "dpo_loss"),
         8: ("verify", "rloo_advantages", "grpo_advantages", "token_weights", "grpo_loss")}

SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.IGNORECASE)
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="notebooks/ has no lesson notebooks yet")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    executed = session_folder(tmp_path_factory)
    # tests/test_notebooks.py walks the notebooks forwards, perhaps at the same time in
    # another worker; walking backwards, the two meet in the middle
    for path in reversed(NOTEBOOK_PATHS):
        executed_notebook(path, executed)
    out = tmp_path_factory.mktemp("docs")
    html = out / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
               "-D", f"course_notebook_outputs={executed}",
               "-d", str(out / "doctrees"), str(DOCS), str(html)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (f"sphinx-build failed with status {done.returncode}:\n"
                                  f"{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
    assert "WARNING" not in done.stderr, f"the build printed warnings:\n{done.stderr[-5000:]}"
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


def test_notebook_pages_show_their_outputs(site):
    for name in NOTEBOOKS:
        text = (site / "notebooks" / f"{name}.html").read_text(encoding="utf-8")
        assert 'class="cell_output' in text, f"notebooks/{name}.html shows no outputs"
        assert re.search(r'<img [^>]*src="[^"]*\.png"', text), f"notebooks/{name}.html has no figure"


def test_notebook_pages_link_colab_binder_and_the_ipynb(site):
    for name in NOTEBOOKS:
        page = site / "notebooks" / f"{name}.html"
        links = re.findall(r'<a [^>]*href="([^"]+)"', page.read_text(encoding="utf-8"))
        colab = [url for url in links if url.startswith("https://colab.research.google.com/github/")]
        binder = [url for url in links if url.startswith("https://mybinder.org/v2/gh/")]
        assert colab and all(url.endswith(f"/notebooks/{name}.ipynb") for url in colab), colab
        assert binder and all(parse_qs(urlsplit(url).query)["labpath"] == [f"notebooks/{name}.py"]
                              for url in binder), binder
        assert f"{name}.ipynb" in links, f"notebooks/{name}.html does not link its .ipynb"


def test_downloadable_notebooks_are_plain_ipynb(site):
    nbformat = pytest.importorskip("nbformat")
    for name in NOTEBOOKS:
        path = site / "notebooks" / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert not any(cell.outputs for cell in code), f"{path.name} carries outputs"
        assert "rlcourse" in code[0].source and "%pip install" in code[0].source, \
            f"{path.name} does not start by installing rlcourse where it is missing"
        assert "jupytext" not in json.dumps(notebook.metadata), "jupytext metadata left in"


def machine_paths(tmp_path_factory) -> list[str]:
    """Paths of this machine that no page may show: the checkout, the home folder, the
    Python installation, the temporary folders of this test session."""
    paths = {str(ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix,
             str(tmp_path_factory.getbasetemp().parent)}
    home = str(Path.home())
    if home.strip("/"):
        paths.add(home)
    return sorted(path.rstrip("/") + "/" for path in paths if path.strip("/"))


def test_no_page_shows_a_path_of_the_build_machine(site, tmp_path_factory):
    paths = machine_paths(tmp_path_factory)
    temporary = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/(tmp|rlcourse-|pytest-)")
    shown = {}
    for page in sorted(site.rglob("*.html")):
        text = html.unescape(page.read_text(encoding="utf-8"))
        found = [path for path in paths if path in text] + temporary.findall(text)
        if found:
            shown[str(page.relative_to(site))] = found
    assert not shown, f"pages show paths of the machine that built them: {shown}"


def test_pages_load_no_remote_stylesheet_or_font(site):
    link_href = re.compile(r"<link\b[^>]*\bhref=\"([^\"]+)\"", re.IGNORECASE)
    remote = {}
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for tag in re.findall(r"<link\b[^>]*>", text, re.IGNORECASE):
            if re.search(r'rel="(stylesheet|preload|icon)"', tag):
                href = link_href.search(tag)
                if href and REMOTE.match(href.group(1)):
                    remote.setdefault(str(page.relative_to(site)), []).append(href.group(1))
    for css in site.rglob("*.css"):
        urls = re.findall(r"(?:@import\s+|url\()\s*['\"]?((?:https?:)?//[^'\")\s]+)",
                          css.read_text(encoding="utf-8", errors="replace"))
        if urls:
            remote[str(css.relative_to(site))] = urls
    assert not remote, f"the site loads styles or fonts over the network: {remote}"


TINY_NOTEBOOK = '''# %% [markdown]
# # Tiny {name}

# %%
print("{name} ran")
'''


def test_a_build_executes_each_notebook_once(tmp_path):
    """The real build's path, on two tiny notebooks: executed side by side before Sphinx
    reads the pages, the outputs on the pages, nothing executed again on a second build,
    and no warning from the kernels (ipykernel warns about TCP without encryption)."""
    notebooks, source = tmp_path / "notebooks", tmp_path / "site"
    notebooks.mkdir()
    source.mkdir()
    for name in ("first", "second"):
        (notebooks / f"{name}.py").write_text(TINY_NOTEBOOK.format(name=name))
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "extensions = ['myst_nb', 'course_notebooks']\n"
        "nb_custom_formats = {'.py': 'course_notebooks.read_percent'}\n"
        "nb_execution_mode = 'cache'\n"
        "exclude_patterns = ['conf.py', '_build']\n"
        f"course_notebook_source = {str(notebooks)!r}\n"
        "course_notebook_jobs = 2\n"
        "course_repository_url = 'https://github.com/example/course'\n")
    (source / "index.md").write_text("# Tiny\n\n```{toctree}\n:glob:\n\nnotebooks/*\n```\n")

    def build():
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", str(source), str(tmp_path / "html"),
                   "-d", str(tmp_path / "doctrees")]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    log = build()
    assert "executing 2 notebook(s), 2 at a time" in log, log
    assert "WARNING" not in log, log
    for name in ("first", "second"):
        assert f"{name} ran" in visible_text(tmp_path / "html" / "notebooks" / f"{name}.html")
        assert (tmp_path / "html" / "notebooks" / f"{name}.ipynb").is_file()
    (notebooks / "second.py").write_text(TINY_NOTEBOOK.format(name="second") + "print('changed')\n")
    log = build()
    assert "executing 1 notebook(s), 1 at a time: second" in log, log
    assert "changed" in visible_text(tmp_path / "html" / "notebooks" / "second.html")
