"""Every lesson notebook in notebooks/ runs from top to bottom, on small budgets.

Each notebook is a jupytext percent-format ``.py`` file with one cell tagged
``parameters`` holding its budgets. The test reads the notebook, puts a cell with the
small values of ``SMALL_BUDGETS`` right after that one (as papermill does), and executes
it in a fresh kernel in a temporary directory. The kernel runs this very Python
(``sys.executable``), so it sees the same installed ``rlcourse`` as pytest.

Each notebook is executed once per test session: ``executed_notebook`` keeps the executed
copy in a folder that the session's pytest-xdist workers share, and tests/test_docs.py
builds the site's notebook pages from those copies instead of running the notebooks again.
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
ipykernel_kernelspec = pytest.importorskip("ipykernel.kernelspec")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (after the skips)
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.py"))
KERNEL_NAME = "rlcourse-test-python"
CELL_TIMEOUT_S = 300

# Small budgets per notebook (file stem): every name must be set in the notebook's
# parameters cell. A new notebook needs its line here.
SMALL_BUDGETS = {
    "01_tabular_control": dict(
        TIE_DRAWS=200, TIE_EPISODES=5, CORRIDOR_STEPS=500, FROZENLAKE_STEPS=2_000,
        EVAL_EPISODES=20, CLIFF_STEPS=1_000, CLIFF_SEEDS=2,
    ),
    "02_policy_evaluation": dict(
        EPISODES=20, RUNS=2, TD_LAMBDA_SEEDS=2, DYNA_SEEDS=2, DYNA_EPISODES=10, DYNA_PLUS_SEEDS=1,
        DYNA_PLUS_STEPS=3_500,
    ),
    "03_value_approximation": dict(
        CORRIDOR_EPISODES=20, MOUNTAINCAR_STEPS=2_000, DQN_STEPS=1_500, TRIAD_STEPS=1_200, EVAL_EVERY=500,
        EVAL_EPISODES=2, BIAS_NETWORKS=5,
    ),
    # BC_SAMPLE_SIZES: the label counts of the two DAgger rounds, so that section 6 reuses the clones
    "04_policy_gradients": dict(VARIANCE_SAMPLES=2_000, CARTPOLE_STEPS=4_000, PENDULUM_STEPS=1_600, EVAL_EPISODES=2, BC_SAMPLE_SIZES=[100, 200], BC_SEEDS=1, BC_EVAL_EPISODES=2, DAGGER_ROUNDS=2, DAGGER_SEEDS=1),
    "05_actor_critic": dict(
        SWEEP_STEPS=800, CARTPOLE_STEPS=2_000, EVAL_EVERY=1_000, EVAL_EPISODES=1, ACROBOT_STEPS=1_600,
        SHARED_STEPS=800, A3C_STEPS=1_000, A3C_EVAL_EVERY=500, TD_LAMBDA_AC_STEPS=1_000,
    ),
    "06_trust_regions": dict(
        IS_REPEATS=200, TRPO_STEPS=2_048, CARTPOLE_STEPS=2_048, SURROGATE_STEPS=1_024, SURROGATE_SEEDS=1,
        PENDULUM_STEPS=4_096, EVAL_EPISODES=1, LUNAR_STEPS=1_024,
    ),
    "07_rlhf_dpo": dict(
        SFT_ROWS=128, SFT_EPOCHS=1, PAIRS=64, TEST_PAIRS=32, RM_EPOCHS=1, DPO_EPOCHS=1, PPO_ITERATIONS=1,
        EVAL_PROMPTS=16, DPO_SWEEP_BETAS=[0.5], PPO_SWEEP_KL_COEFS=[0.1],
    ),
    "08_rl_verifiable_rewards": dict(
        SFT_EPOCHS=1, RL_ITERATIONS=2, EVAL_PROMPTS=8, EVAL_SAMPLES=4, EXACT_DRAWS=200,
    ),
}


def parameter_names(source: str) -> set[str]:
    """The names a parameters cell assigns at top level."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    names.add(name.id)
    return names


def with_small_budgets(path: Path):
    """Read ``path`` and return the notebook with the override cell in place."""
    nb = jupytext.read(path)
    tagged = [i for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        pytest.fail(f"{path.name} must have exactly one code cell tagged 'parameters' "
                    f"(write it as '# %% tags=[\"parameters\"]'); it has {len(tagged)}")
    if path.stem not in SMALL_BUDGETS:
        pytest.fail(f"{path.name} has no small budgets: add an entry {path.stem!r} to "
                    f"SMALL_BUDGETS in {Path(__file__).name}")
    budgets = SMALL_BUDGETS[path.stem]
    unknown = set(budgets) - parameter_names(nb.cells[tagged[0]].source)
    if unknown:
        pytest.fail(f"{path.name}: SMALL_BUDGETS sets {sorted(unknown)}, which its "
                    f"parameters cell does not define")
    source = "\n".join(f"{name} = {value!r}" for name, value in budgets.items())
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
        source, metadata={"tags": ["injected-parameters"]}))
    return nb


def session_folder(tmp_path_factory) -> Path:
    """A folder that every pytest-xdist worker of this test session shares.

    Each worker has a base temporary folder of its own inside the session's; without
    xdist the session's is the base folder itself.
    """
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "notebooks"
    folder.mkdir(exist_ok=True)
    return folder


def kernel_specs(folder: Path) -> KernelSpecManager:
    """A kernel spec that starts ipykernel with this interpreter, whatever else is installed."""
    ipykernel_kernelspec.write_kernel_spec(folder / KERNEL_NAME)
    return KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)


def executed_notebook(path: Path, folder: Path) -> Path:
    """``folder/NAME.ipynb``: the notebook at ``path`` executed at its small budgets.

    The first caller in a session executes it and writes the copy (or ``NAME.error`` when
    it fails); a later caller, in this worker or another, reads what the first one left.
    A lock file per notebook makes a second worker that asks meanwhile wait for the first.
    """
    from filelock import FileLock

    executed, failed = folder / f"{path.stem}.ipynb", folder / f"{path.stem}.error"
    with FileLock(folder / f"{path.stem}.lock"):
        if failed.exists():
            pytest.fail(failed.read_text(encoding="utf-8"), pytrace=False)
        if executed.exists():
            return executed
        nb = with_small_budgets(path)
        try:
            execute(nb, folder / f"{path.stem}.run")
        except Exception as error:
            failed.write_text(f"{path.name} failed (in another test of this session):\n{error}", encoding="utf-8")
            raise
        nbformat.write(nb, executed)
    return executed


def execute(nb, folder: Path) -> None:
    """Run ``nb`` in place in a fresh kernel of this Python, working in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    manager = kernel_specs(folder)
    # The kernel talks over Unix sockets (IPC), not TCP: no eavesdropping warning from
    # ipykernel. Their paths must stay short, so they go to a folder of their own.
    with tempfile.TemporaryDirectory(prefix="rlcourse-kernel-") as sockets:
        km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=manager,
                           transport="ipc", ip=os.path.join(sockets, "kernel"))
        assert km.kernel_spec.argv[0] == sys.executable
        client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME,
                                         resources={"metadata": {"path": str(folder)}})
        try:
            client.execute()
        finally:                    # nbclient leaves a kernel manager it was given running
            if km.has_kernel:
                km.shutdown_kernel()


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path_factory):
    nb = nbformat.read(executed_notebook(path, session_folder(tmp_path_factory)), as_version=4)
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code"
               and cell.source.strip()), f"{path.name}: not every code cell was executed"


# The notebooks promise to run in about a minute on two CPU cores at their default budgets
# (the docs build runs them so). A run that needs twice that much CPU time has outgrown the
# promise: shrink its budgets, and say in the notebook what a longer run shows. CPU time,
# the kernel's own and that of the processes it started (A3C's workers), does not grow
# when other work loads the machine, as wall time does.
DEFAULT_BUDGET_CPU_LIMIT_S = 120

CPU_SECONDS_CELL = """\
import resource
print(sum(getattr(resource.getrusage(who), field)
          for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime")))
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_at_its_default_budgets_fits_in_about_a_minute(path, tmp_path):
    nb = jupytext.read(path)
    nb.cells.append(nbformat.v4.new_code_cell(CPU_SECONDS_CELL))
    execute(nb, tmp_path)
    cpu_seconds = float(nb.cells[-1].outputs[0]["text"])
    assert cpu_seconds < DEFAULT_BUDGET_CPU_LIMIT_S, (
        f"{path.name} took {cpu_seconds:.0f} s of CPU time at its default budgets; the limit is "
        f"{DEFAULT_BUDGET_CPU_LIMIT_S} s, twice the minute the notebooks promise")
