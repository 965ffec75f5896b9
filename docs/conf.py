"""Sphinx configuration of the rlcourse documentation.

Build it, offline, from the repository root with::

    sphinx-build -b html docs docs/_build/html

and add ``-D nb_execution_mode=off`` to skip running the lesson notebooks.

Three things here are not stock Sphinx:

* The lesson notebooks live in ``../notebooks/`` as jupytext percent-format ``.py``
  files. The local extension ``_ext/course_notebooks.py`` mirrors them into
  ``docs/notebooks/`` (generated, ignored by git), where MyST-NB reads them; it executes
  each notebook once, the notebooks side by side, and keeps the outputs in MyST-NB's
  execution cache (``_build/.jupyter_cache``) until the notebook changes; it writes a
  plain ``.ipynb`` next to each notebook page and links it, with Colab and Binder, at the
  top of the page.
* The theme is sphinx-book-theme (the theme of Jupyter Book), with ``_static/course.css``
  for the width of code, equations and figures.
* Math is rendered by MathJax 2.7 served from the built site itself, taken from the
  ``jupyter-server-mathjax`` package, instead of Sphinx's default CDN URL, so that the
  pages show equations without a network connection.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import rlcourse  # noqa: E402

# -- where the course lives --------------------------------------------------------------

# MAINTAINERS: set these once. The URL below is a PLACEHOLDER, not a real repository. It
# builds each notebook page's Colab and Binder links and the repository button, and the
# downloadable notebooks install rlcourse from it (pip's "git+URL").
#   * Binder starts the branch course_repository_branch and opens notebooks/NAME.py there.
#   * Colab opens only .ipynb files on GitHub: it opens notebooks/NAME.ipynb from
#     course_site_branch, the branch the built site (_build/html) is published to.
course_repository_url = "https://github.com/rlcourse/rlcourse"   # PLACEHOLDER
course_repository_branch = "main"
course_site_branch = "gh-pages"

# -- project -----------------------------------------------------------------------------

project = "rlcourse"
author = "the rlcourse authors"
copyright = "the rlcourse authors"
version = release = rlcourse.__version__

extensions = [
    "myst_nb",               # MyST Markdown pages and notebooks (loads myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "course_notebooks",      # _ext/course_notebooks.py: the lesson notebooks
]

root_doc = "index"
# _ext holds Python modules, which MyST-NB would otherwise take for notebooks
exclude_patterns = ["_build", "_ext", "_static", "_templates", "jupyter_execute", "conf.py",
                    "**/.ipynb_checkpoints", "**/__pycache__"]

# -- theme: sphinx-book-theme ------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "rlcourse"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_theme_options = {
    "repository_url": course_repository_url,
    "repository_branch": course_repository_branch,
    "path_to_docs": "docs",
    "use_repository_button": True,
    "use_download_button": True,     # the page source, and for notebooks the .ipynb
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "navbar_persistent": [],         # search lives in the left sidebar, not in a second bar
}
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
# Inherited docstrings come from Gymnasium (for CorridorEnv.step, reset, ...) and are not
# reStructuredText; document only what rlcourse itself says.
autodoc_inherit_docstrings = False

# -- MyST --------------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# MyST's own MathJax tweak writes a MathJax 3/4 configuration; the MathJax 2 settings
# below already limit MathJax to the math Sphinx marks up, so it is switched off.
myst_update_mathjax = False

# -- notebooks (MyST-NB and _ext/course_notebooks.py) ------------------------------------

# The .py notebooks are read by jupytext, through the extension (which can hand MyST-NB
# outputs executed elsewhere: -D course_notebook_outputs=FOLDER, see tests/test_docs.py).
nb_custom_formats = {".py": "course_notebooks.read_percent"}
# "cache": each notebook is executed once, before Sphinx reads the pages, and its outputs
# are kept in _build/.jupyter_cache until the notebook changes. The extension executes
# course_notebook_jobs notebooks at a time (0: one per CPU core). Turn execution off with
# -D nb_execution_mode=off.
nb_execution_mode = "cache"
course_notebook_jobs = 0
nb_execution_timeout = 300          # seconds per cell
nb_execution_in_temp = True         # files a notebook writes land in a temporary folder
nb_execution_raise_on_error = True  # a failing notebook fails the build
nb_execution_show_tb = True
nb_merge_streams = True
# Pages with ipywidgets would load require.js and the widget manager from a CDN; the
# site stays offline, so widget outputs fall back to their text form.
nb_ipywidgets_js = {}

# -- math: MathJax 2.7 from the jupyter-server-mathjax package ---------------------------


def mathjax_folder() -> Path:
    """The MathJax 2.7 tree shipped in the PyPI package ``jupyter-server-mathjax``."""
    try:
        import jupyter_server_mathjax
    except ImportError as error:
        raise RuntimeError("the docs serve MathJax from the jupyter-server-mathjax package: "
                           "pip install 'jupyter-server-mathjax>=0.2.6' (it is in the dev extra)") from error
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise RuntimeError(f"{folder} has no MathJax.js: reinstall jupyter-server-mathjax")
    return folder


MATHJAX_FOLDER = mathjax_folder()
MATHJAX_TARGET = "mathjax"   # inside _static/

# The package ships one combined configuration, TeX-AMS-MML_HTMLorMML-full.js (TeX and
# MathML input, HTML-CSS output, everything in one file), and only the STIX-Web fonts.
# A mathjax_path with "MathJax.js?config=" is what Sphinx's mathjax extension knows as
# MathJax 2: it keeps the query string, and setting mathjax2_config makes it emit a
# MathJax.Hub.Config(...) block and load the script with async.
mathjax_path = f"{MATHJAX_TARGET}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    # Only the delimiters Sphinx writes around the math it found: \( … \) and \[ … \].
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                "processEscapes": False},
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web",
                 "imageFont": None},
    "SVG": {"font": "STIX-Web"},
}
# A display equation wider than the text column is broken across lines at its relations
# and operators, as LaTeX would, instead of running past the column's edge.
mathjax2_config["HTML-CSS"]["linebreaks"] = {"automatic": True}
mathjax2_config["SVG"]["linebreaks"] = {"automatic": True}


def copy_mathjax(app, exception) -> None:
    """After an HTML build, put the MathJax tree at ``_static/mathjax/``."""
    if exception is not None or app.builder.format != "html":
        return
    shutil.copytree(MATHJAX_FOLDER, Path(app.outdir) / "_static" / MATHJAX_TARGET,
                    dirs_exist_ok=True)


def hide_solution_markers(app, doctree):
    """Drop nbgrader's marker lines from code pulled in with literalinclude.

    The reference modules mark student work with "### BEGIN SOLUTION" / "### END
    SOLUTION" lines (see rlcourse/assignments/markers.py); they mean nothing to a reader.
    """
    from docutils import nodes

    from rlcourse.assignments.markers import BEGIN_SOLUTION, END_SOLUTION

    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if BEGIN_SOLUTION not in text:
            continue
        kept = "\n".join(line for line in text.splitlines()
                         if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))
        block.children = [nodes.Text(kept)]
        block.rawsource = kept


# A code block with a line longer than this many characters, or a notebook cell that shows
# a figure, is marked "wide": on a wide screen it takes the margin beside the text column
# too (_static/course.css), where sphinx-book-theme's page contents step aside for it.
# The package's code runs to 120 characters; the text column holds about 76.
WIDE_CODE_CHARACTERS = 76
# MathJax breaks a long display equation across lines, but not the rows of an ``aligned``
# block: such a block with a row longer than this many characters of TeX is marked wide too.
WIDE_ALIGNED_ROW_CHARACTERS = 150


def longest_row(tex: str) -> int:
    """The length of the longest row (``\\\\``-separated) of ``tex``, spaces collapsed."""
    return max(len(" ".join(row.split())) for row in tex.split("\\\\"))


def outermost_block(node):
    """The element to widen for ``node``: itself, its caption wrapper, or its notebook cell."""
    widest = node
    while node.parent is not None:
        node = node.parent
        if {"literal-block-wrapper", "cell"} & set(node.get("classes", [])):
            widest = node
    return widest


def mark_wide_blocks(app, doctree):
    """Add the classes ``wide`` and ``full-width`` to long code blocks, figure cells and
    aligned equations with long rows.

    ``full-width`` is sphinx-book-theme's own class: its script hides the page's table of
    contents while such an element is on the screen. ``wide`` sets the width.
    """
    from docutils import nodes

    wide = [block for block in doctree.findall(nodes.literal_block)
            if max(map(len, block.astext().splitlines()), default=0) > WIDE_CODE_CHARACTERS]
    wide += [image for image in doctree.findall(nodes.image)
             if "cell" in outermost_block(image).get("classes", [])]
    wide += [math for math in doctree.findall(nodes.math_block)
             if "aligned" in math.astext() and longest_row(math.astext()) > WIDE_ALIGNED_ROW_CHARACTERS]
    for node in wide:
        classes = outermost_block(node)["classes"]
        classes.extend(name for name in ("wide", "full-width") if name not in classes)


def setup(app):
    app.connect("doctree-read", hide_solution_markers)
    app.connect("doctree-read", mark_wide_blocks)
    app.connect("build-finished", copy_mathjax)
