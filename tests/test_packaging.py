"""The package as a user gets it: ``python -m build`` makes an sdist and a wheel, and the wheel,
installed in a fresh virtual environment, runs there.

Nothing is downloaded: the build uses the setuptools at hand (``--no-isolation``), and the
virtual environment sees this machine's packages (torch, gymnasium, …) while rlcourse
itself comes from the wheel alone.
"""

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import rlcourse

ROOT = Path(rlcourse.__file__).resolve().parents[1]


def run(command: list, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=out)
    return out


def test_the_sdist_holds_the_readme_license_changelog_and_the_graded_tests(dist):
    (sdist,) = dist.glob(f"rlcourse-{rlcourse.__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[-1] for name in archive.getnames()}
    assert {"README.md", "LICENSE", "CHANGELOG.md", "setup.cfg", "tests/graded/conftest.py",
            "tests/conftest.py", "notebooks/01_tabular_control.py"} <= names


def test_the_wheel_holds_every_module_of_the_package(dist):
    (wheel,) = dist.glob(f"rlcourse-{rlcourse.__version__}-py3-none-any.whl")
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "rlcourse").rglob("*.py")}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert modules <= names, sorted(modules - names)
    assert f"rlcourse-{rlcourse.__version__}.dist-info/licenses/LICENSE" in names


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed: its bin folder."""
    (wheel,) = dist.glob("*.whl")
    here = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", here / "venv"], cwd=here)
    bin_dir = here / "venv" / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", wheel],
        cwd=here)
    return bin_dir


# every module of the package, imported in the venv; __main__ would run the CLI
EVERY_MODULE = ("import importlib, pkgutil, sys, rlcourse\n"
                "for m in pkgutil.walk_packages(rlcourse.__path__, 'rlcourse.'):\n"
                "    if not m.name.endswith('.__main__'): importlib.import_module(m.name)\n"
                "print(*(m.__file__ for name, m in sys.modules.items() if name.split('.')[0] == 'rlcourse'), sep='\\n')")


def test_the_wheel_installs_in_a_fresh_venv_and_runs_from_there(venv, tmp_path):
    # the wheel's code, every module of it, and not this checkout's (which is on the system's path too)
    loaded = run([venv / "python", "-c", EVERY_MODULE], cwd=tmp_path).split()
    in_checkout = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rlcourse").rglob("*.py")}
    assert all(Path(f).is_relative_to(venv.parent) for f in loaded), loaded
    in_venv = {"rlcourse/" + f.split("/site-packages/rlcourse/", 1)[1] for f in loaded}
    assert in_venv == in_checkout - {"rlcourse/__main__.py"}, sorted(in_venv ^ in_checkout)

    assert run([venv / "rlcourse", "--version"], cwd=tmp_path).strip() == f"rlcourse {rlcourse.__version__}"
    summary = run([venv / "rlcourse", "train", "q-learning", "--env", "rlcourse/Corridor-v0", "--steps", "300",
                   "--quiet", "--out", "run"], cwd=tmp_path)
    assert json.loads(summary.splitlines()[-1])["env_steps"] == 300
    assert (tmp_path / "run" / "q_table.npy").is_file()


@pytest.mark.slow  # tests/test_tour.py runs the same quick tour from the checkout; above, every module loads from the wheel
def test_the_wheel_runs_the_tour(venv, tmp_path):
    run([venv / "rlcourse", "tour", "--quick", "--quiet", "--out", "tour"], cwd=tmp_path)
    assert (tmp_path / "tour" / "report.md").is_file()
