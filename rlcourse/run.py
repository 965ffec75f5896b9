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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlcourse.config import ConfigError

CHECKPOINT = "checkpoint.pkl"
_UMASK = os.umask(0)
os.umask(_UMASK)


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf; carries the env step at which it happened."""

    iteration: int | None = None  # the iteration, for a trainer that counts them (PPO-RLHF)

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
                f"{algo} needs a Discrete {kind} space, but {env.spec.id if env.spec else env} has {space}"
            )
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
            "algo": self.algo,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "seed": self.seed,
            "steps": self.steps,
            "status": self.status,
            "config": dataclasses.asdict(self.config),
            "timing": self.timing,
        }
        atomic_write(directory / "config.json", lambda f: f.write(json.dumps(meta, indent=2) + "\n"), mode="w")
        atomic_write(directory / "progress.csv", lambda f: self.log.to_csv(f, index=False), mode="w")
        self.policy.save(directory)
        fig = self.plot()
        atomic_write(directory / "learning_curve.png", lambda f: fig.savefig(f, format="png", dpi=100))
        import matplotlib.pyplot as plt

        plt.close(fig)
        return directory

    def plot(
        self, ax=None, column: str = "return", x: str = "env_steps", window: int | None = None, label: str | None = None
    ):
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
            raise ValueError(
                f"the log has no column {column if column not in self.log else x!r}; "
                f"its columns are {', '.join(self.log.columns)}"
            )
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


def check_device(device):
    """``device`` as a ``torch.device``, or one line saying it is not there."""
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device = {device!r} is not a device torch knows ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = '{device}': torch sees no CUDA GPU on this machine; use device 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device = '{device}': this machine has no Apple GPU (MPS); use device 'cpu'")
    return device


def check_count(name: str, value) -> None:
    """Fail naming the argument unless ``value`` is an integer >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} = {value!r} is out of range: it must be an integer >= 1")


def check_run_args(steps, threads: int = 1) -> None:
    """Fail naming the argument unless ``steps`` and ``threads`` are integers >= 1."""
    check_count("steps", steps)
    check_count("threads", threads)


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


RECORD_KEYS = ("rows", "window", "returns", "lengths", "iteration", "env_steps")  # a checkpoint's own


class IterationRecord:
    """The bookkeeping every training loop shares, kept out of the algorithm.

    One *iteration* is one pass of a trainer's loop: an update of a policy-gradient method,
    a round of DQN, an episode of tabular TD control. A trainer builds the record, asks it
    whether the run resumes (:attr:`resumed`: the state the trainer saved, or None), runs
    its loop inside ``with record:``, calls :meth:`end_iteration` after each iteration with
    that iteration's numbers *by name*, and returns :meth:`result`. The record

    * adds a log row every ``log_interval`` iterations (and one at the end):
      ``make_row(window, returns, lengths)`` turns the iterations' named numbers and the
      episodes that ended in them into a dict of the row's numbers; it adds
      ``iteration``, ``env_steps`` and the episode columns ``return``, ``episodes``,
      ``length`` where ``columns`` has them;
    * writes a checkpoint every ``checkpoint_every`` env steps to ``out`` (if given): the
      trainer's state (``checkpoint()``) with the record's own, so that ``resume=True``
      goes on from it and ends with the same log, bit for bit, as a run never stopped;
    * calls ``callback(env_steps, model)`` after each iteration, off the clock;
    * with ``tensorboard`` (a folder), writes every number of every row to TensorBoard under
      its column's name, at its ``env_steps`` (the ``tensorboard`` extra);
    * turns Ctrl-C (``KeyboardInterrupt``) into ``status == "interrupted"`` with what was
      learned so far, and shows a progress bar.
    """

    def __init__(
        self,
        algo: str,
        env_id: str,
        env_kwargs: dict | None,
        config,
        seed: int,
        steps: int,
        *,
        columns: list[str],
        make_row: Callable[..., dict],
        out=None,
        progress: bool = False,
        checkpoint_every: int = 50_000,
        log_interval: int = 1,
        callback: Callable | None = None,
        resume: bool = False,
        tensorboard: str | os.PathLike | None = None,
    ):
        import time

        self._clock = time.perf_counter
        self.algo, self.env_id, self.env_kwargs, self.config = algo, env_id, dict(env_kwargs or {}), config
        self.seed, self.steps, self.out, self.columns, self.make_row = seed, steps, out, columns, make_row
        self.checkpoint_every, self.log_interval, self.callback = checkpoint_every, log_interval, callback
        self.run_id = {
            "algo": algo,
            "env_id": env_id,
            "env_kwargs": self.env_kwargs,
            "config": dataclasses.asdict(config),
            "seed": seed,
            "steps": steps,
        }
        self.rows: list[dict] = []
        self.window: list[dict] = []
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.iteration, self.env_steps = 0, 0
        self.status = "finished"
        self.last_checkpoint: Path | None = None
        self.resumed = self._resume() if resume else None
        self.next_checkpoint = (self.env_steps // checkpoint_every + 1) * checkpoint_every
        self.bar = progress_bar(steps, algo, progress)
        self.bar.update(self.env_steps)
        self.writer = _tensorboard_writer(tensorboard, self.rows)
        self.outside = 0.0
        self.start = self._clock()

    def _resume(self) -> dict:
        """The trainer's state from the checkpoint in ``out``, once it is known to be this run's."""
        path = None if self.out is None else Path(self.out) / CHECKPOINT
        if path is None or not path.is_file():
            raise ConfigError(
                f"resume=True needs a checkpoint to resume from, but there is no {CHECKPOINT} in {self.out}"
            )
        state = load_checkpoint(self.out)
        saved = state.pop("run", {})
        for key, value in self.run_id.items():
            if saved.get(key) != value:
                raise ConfigError(
                    f"cannot resume from {path}: it was saved by a run with {key} = "
                    f"{saved.get(key)!r}, this one has {key} = {value!r}"
                )
        self.rows, self.window, self.returns, self.lengths = (state.pop(k) for k in RECORD_KEYS[:4])
        self.iteration, self.env_steps, self.last_checkpoint = state.pop("iteration"), state.pop("env_steps"), path
        return state

    def __enter__(self) -> IterationRecord:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        """Ctrl-C ends the run as ``interrupted``, keeping its rows; any other error goes on up,
        closing the progress bar (:meth:`result` closes it otherwise, after the last steps)."""
        if kind is KeyboardInterrupt:
            self.status = "interrupted"
            self.flush()
        elif kind is not None:
            self.close()
        return kind is KeyboardInterrupt

    def end_iteration(
        self,
        env_steps: int,
        stats: dict,
        returns: list,
        lengths: list,
        checkpoint: Callable[..., dict],  # called with no arguments; "..." admits a lambda that binds loop variables
        model,
        final: bool = False,
    ) -> None:
        """Record one iteration: its named numbers ``stats`` and the episodes that ended in it;
        ``checkpoint()`` gives the trainer's state to save (networks, optimiser, random state, …)."""
        self.advance(env_steps)
        self.iteration += 1
        self.window.append(stats)
        self.returns += returns
        self.lengths += lengths
        if self.iteration % self.log_interval == 0 or final:
            self.flush()
        if self.out is not None and env_steps >= self.next_checkpoint:
            self.save(checkpoint())
        self.call(self.callback, model)

    def save(self, state: dict) -> None:
        """Write a checkpoint now: the trainer's ``state`` and the record's own."""
        own = {
            "run": self.run_id,
            "rows": list(self.rows),
            "window": list(self.window),
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
        }
        self.last_checkpoint = save_checkpoint(self.out, {**own, **state})
        self.next_checkpoint = (self.env_steps // self.checkpoint_every + 1) * self.checkpoint_every

    def call(self, function: Callable | None, model) -> None:
        """``function(env_steps, model)``, off the training clock (an evaluation, say)."""
        if function is not None:
            entered = self._clock()
            function(self.env_steps, model)
            self.outside += self._clock() - entered

    def add_row(self, row: dict) -> None:
        """A log row made elsewhere (A3C's workers make their own)."""
        self.rows.append({column: row[column] for column in self.columns})
        if self.writer is not None:
            _write_scalars(self.writer, self.rows[-1])

    def advance(self, env_steps: int) -> None:
        """The run has taken ``env_steps`` steps in all (for a loop whose rows come per episode)."""
        self.bar.update(min(env_steps, self.steps) - self.bar.n)  # N envs may step past the budget
        self.env_steps = env_steps

    def flush(self) -> None:
        """Turn the iterations since the last row into a row (if there are any)."""
        if self.window:
            returns, lengths = self.returns, self.lengths
            row = {
                "iteration": self.iteration,
                "env_steps": self.env_steps,
                "return": float(np.mean(returns)) if returns else float("nan"),
                "episodes": len(returns),
                "length": float(np.mean(lengths)) if lengths else float("nan"),
                **self.make_row(self.window, returns, lengths),
            }
            self.add_row(row)
        self.window, self.returns, self.lengths = [], [], []

    def seconds(self) -> float:
        return self._clock() - self.start - self.outside

    def close(self) -> None:
        """Close the progress bar and the TensorBoard file (``result`` does it)."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def result(self, policy) -> Result:
        """The run's Result, with a policy that owns its parameters (training may have kept
        them as views of one flat vector)."""
        self.close()
        seconds = self.seconds()
        if hasattr(policy, "parameters"):
            policy = policy.cpu()  # evaluated, saved and loaded on the CPU
            for p in policy.parameters():
                p.data, p.grad = p.data.clone(), None
            policy = policy.eval()
        return Result(
            algo=self.algo,
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            config=self.config,
            policy=policy,
            log=pd.DataFrame(self.rows, columns=self.columns),
            seed=self.seed,
            steps=self.env_steps,
            status=self.status,
            timing={"seconds": seconds, "steps_per_second": self.env_steps / max(seconds, 1e-9)},
        )


def _tensorboard_writer(log_dir, rows: list[dict]):
    """A TensorBoard writer for ``log_dir`` (None: none), with the rows so far written (a resumed run)."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "tensorboard: the TensorBoard package is missing; install the tensorboard extra "
            '(pip install torch==2.13.0 -e ".[tensorboard]")'
        ) from None
    writer = SummaryWriter(log_dir=str(log_dir), purge_step=rows[-1]["env_steps"] + 1 if rows else None)
    return writer


def _write_scalars(writer, row: dict) -> None:
    """Every number of a log row, at its env step, under the column's name (the same names as progress.csv)."""
    for name, value in row.items():
        if name != "env_steps" and isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            writer.add_scalar(name, float(value), int(row["env_steps"]))


def random_state(rng: np.random.Generator) -> dict:
    """What a checkpoint needs to draw the same numbers again: the run's NumPy generator and
    torch's global one."""
    import torch

    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_random_state(rng: np.random.Generator, state: dict) -> None:
    import torch

    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
