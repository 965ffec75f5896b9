"""What every training run shares: seeding, the Result it returns, safe checkpoints.

A run ends in one of three ways, and none of them loses what was learned:

* it finishes its budget: ``status == "finished"``;
* the user presses Ctrl-C: the loop catches ``KeyboardInterrupt`` and returns what it
  has so far, ``status == "interrupted"`` (the CLI then saves it as usual);
* a loss or value turns NaN/inf: the loop raises :class:`NonFiniteError` naming the step,
  and the last checkpoint written before it stays on disk untouched.

Files are written atomically (a temporary file in the same folder, flushed to disk,
then ``os.replace``), so a crash mid-write leaves the previous file in place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

CHECKPOINT = "checkpoint.pkl"
_UMASK = os.umask(0)
os.umask(_UMASK)


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf; carries the env step at which it happened."""

    def __init__(self, what: str, step: int, checkpoint: Path | None = None):
        self.step = step
        where = f"; the last good checkpoint is kept at {checkpoint}" if checkpoint else ""
        super().__init__(f"non-finite {what} at env step {step}: training stopped{where}")


class UnsupportedSpaceError(ValueError):
    """An algorithm was asked to run on an observation or action space it cannot handle."""


def require_discrete(algo: str, env) -> tuple[int, int]:
    """Return (n_states, n_actions), or fail naming ``algo`` and the offending space."""
    import gymnasium as gym

    for kind, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Discrete):
            raise UnsupportedSpaceError(
                f"{algo} needs a Discrete {kind} space, but {env.spec.id if env.spec else env} "
                f"has {space}")
    return int(env.observation_space.n), int(env.action_space.n)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar (``tqdm.auto``: a widget in notebooks), or a silent stand-in when disabled."""
    if not enabled:
        from tqdm import tqdm

        return tqdm(total=total, disable=True)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's global state and torch (if loaded); return a fresh Generator.

    Algorithms draw their own randomness from the returned generator and seed their
    environments with the same ``seed``, so a run depends on nothing else.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return np.random.default_rng(seed)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(directory: str | os.PathLike, state: dict) -> Path:
    """Pickle ``state`` to ``directory/checkpoint.pkl`` atomically; return the path."""
    path = Path(directory) / CHECKPOINT
    atomic_write(path, lambda f: pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def load_checkpoint(directory: str | os.PathLike) -> dict:
    with open(Path(directory) / CHECKPOINT, "rb") as f:
        return pickle.load(f)


@dataclasses.dataclass
class Result:
    """What ``train`` returns: the learned policy, the log, and how the run was made.

    ``log`` has one row per episode (tabular methods) or per iteration (deep methods)
    and no wall-clock column, so the same seed gives the same log bit for bit.
    Timing goes to ``timing`` instead.
    """

    algo: str
    env_id: str
    config: Any
    policy: Any
    log: pd.DataFrame
    seed: int
    steps: int
    status: str = "finished"
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    timing: dict = dataclasses.field(default_factory=dict)

    @property
    def q_table(self) -> pd.DataFrame:
        """The Q-table as a DataFrame with one named column per action (tabular runs)."""
        return self.policy.frame()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write config.json, progress.csv, learning_curve.png and the model to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "algo": self.algo, "env_id": self.env_id, "env_kwargs": self.env_kwargs,
            "seed": self.seed, "steps": self.steps, "status": self.status,
            "config": dataclasses.asdict(self.config), "timing": self.timing,
        }
        atomic_write(directory / "config.json",
                     lambda f: f.write(json.dumps(meta, indent=2) + "\n"), mode="w")
        atomic_write(directory / "progress.csv", lambda f: self.log.to_csv(f, index=False), mode="w")
        self.policy.save(directory)
        fig = self.plot()
        atomic_write(directory / "learning_curve.png", lambda f: fig.savefig(f, format="png", dpi=100))
        import matplotlib.pyplot as plt

        plt.close(fig)
        return directory

    def plot(self, ax=None, column: str = "return", x: str = "env_steps", window: int | None = None,
             label: str | None = None):
        """Plot a log column against ``x`` with its moving average; return the figure.

        ``window`` (rows averaged) defaults to a tenth of the log, between 1 and 50: 50
        episodes for a tabular run, a few iterations for a deep one.

        Alone (``ax=None``) it draws the raw curve faintly and the average boldly; given an
        ``ax`` it adds only the average, labelled ``label`` (default: the algorithm), so
        several runs can share one axis.
        """
        import matplotlib.pyplot as plt

        alone = ax is None
        if alone:
            fig, ax = plt.subplots(figsize=(6, 3.5))
        fig = ax.figure
        if column not in self.log or x not in self.log:
            raise ValueError(f"the log has no column {column if column not in self.log else x!r}; "
                             f"its columns are {', '.join(self.log.columns)}")
        window = window or max(1, min(50, len(self.log) // 10))
        xs, ys = self.log[x], self.log[column]
        smooth = ys.rolling(window, min_periods=1).mean()
        if alone:
            ax.plot(xs, ys, alpha=0.3, lw=0.8, label=column.replace("_", " "))
            ax.plot(xs, smooth, lw=1.8, label=label or f"mean of last {window}")
            ax.set_title(f"{self.algo} on {self.env_id} (seed {self.seed})")
        else:
            ax.plot(xs, smooth, lw=1.5, label=label or self.algo)
        ax.legend(loc="best", fontsize="small")
        ax.set_xlabel(x.replace("env_steps", "environment steps").replace("_", " "))
        ax.set_ylabel(column.replace("_", " "))
        fig.tight_layout()
        return fig


def check_run_args(steps, threads: int = 1) -> None:
    """Fail naming the argument unless ``steps`` and ``threads`` are integers >= 1."""
    for name, value in (("steps", steps), ("threads", threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} = {value!r} is out of range: it must be an integer >= 1")


class torch_threads:
    """``with torch_threads(n):`` run torch on n intra-op threads, then restore the number.

    Our networks are tiny: more threads only wait on each other, and one thread keeps a
    run's log the same bit for bit on machines with different core counts.
    """

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)


class IterationRecord:
    """The bookkeeping of an iteration loop (A2C, PPO, TRPO), kept out of the algorithm.

    After each iteration's update, :meth:`end_iteration` collects the episodes that ended,
    adds a log row every ``log_interval`` iterations (``make_row(iteration, env_steps,
    window, returns, lengths)`` turns the iterations' statistics into one), writes a
    checkpoint every ``checkpoint_every`` env steps to ``out`` (if given), and calls
    ``callback(env_steps, policy)``. :meth:`seconds` is the training time so far without
    the callback's; :meth:`result` ends the run.
    """

    def __init__(self, algo: str, steps: int, progress: bool, out, checkpoint_every: int, log_interval: int,
                 make_row: Callable[..., tuple], callback: Callable | None = None):
        import time

        self._clock = time.perf_counter
        self.algo, self.out, self.checkpoint_every, self.log_interval = algo, out, checkpoint_every, log_interval
        self.make_row, self.callback = make_row, callback
        self.rows: list[tuple] = []
        self.window, self.returns, self.lengths = [], [], []
        self.completed, self.env_steps = 0, 0
        self.last_checkpoint: Path | None = None
        self.next_checkpoint = checkpoint_every
        self.bar = progress_bar(steps, algo, progress)
        self.outside = 0.0
        self.start = self._clock()

    def end_iteration(self, iteration: int, final: bool, env_steps: int, batch, stats,
                      checkpoint: Callable[[], dict], policy) -> None:
        """Record one iteration: its ``stats`` (anything ``make_row`` reads) and ``batch``'s episodes;
        ``checkpoint()`` gives what to save besides the step, the iteration and the rows."""
        self.window.append(stats)
        self.completed, self.env_steps = iteration, env_steps
        self.returns += batch.episode_returns
        self.lengths += batch.episode_lengths
        self.bar.update(batch.size)
        if iteration % self.log_interval == 0 or final:
            self.flush()
        if self.out is not None and env_steps >= self.next_checkpoint:
            self.last_checkpoint = save_checkpoint(self.out, {"env_steps": env_steps, "iteration": iteration,
                                                              "rows": list(self.rows), **checkpoint()})
            self.next_checkpoint = (env_steps // self.checkpoint_every + 1) * self.checkpoint_every
        if self.callback is not None:
            entered = self._clock()
            self.callback(env_steps, policy)
            self.outside += self._clock() - entered

    def flush(self) -> None:
        """Turn the iterations since the last row into a row (if there are any)."""
        if self.window:
            self.rows.append(self.make_row(self.completed, self.env_steps, self.window, self.returns,
                                           self.lengths))
        self.window, self.returns, self.lengths = [], [], []

    def seconds(self) -> float:
        return self._clock() - self.start - self.outside

    def result(self, env_id: str, env_kwargs: dict | None, config, policy, columns: list[str], seed: int,
               env_steps: int, status: str) -> Result:
        """Close the progress bar and return the run's Result, with a policy that owns its parameters
        (training may have kept them as views of one flat vector)."""
        self.bar.close()
        seconds = self.seconds()
        for p in policy.parameters():
            p.data, p.grad = p.data.clone(), None
        return Result(algo=self.algo, env_id=env_id, env_kwargs=dict(env_kwargs or {}), config=config,
                      policy=policy.eval(), log=pd.DataFrame(self.rows, columns=columns), seed=seed,
                      steps=env_steps, status=status,
                      timing={"seconds": seconds, "steps_per_second": env_steps / max(seconds, 1e-9)})
