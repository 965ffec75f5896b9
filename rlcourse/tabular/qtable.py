"""The Q-table: an array Q[s, a], acted on greedily or ε-greedily, shown as a DataFrame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rlcourse.run import atomic_write

# Action names of Gymnasium's toy-text environments (from their documentation).
KNOWN_ACTION_NAMES = {
    "FrozenLake": ("left", "down", "right", "up"),
    "CliffWalking": ("up", "right", "down", "left"),
    "Taxi": ("south", "north", "east", "west", "pickup", "dropoff"),
}


def action_names_for(env) -> tuple[str, ...]:
    """Readable action names for ``env``: its own ``action_names``, a known table, or a0…"""
    names = getattr(env.unwrapped, "action_names", None)
    if names is None and env.spec is not None:
        family = env.spec.id.split("/")[-1].split("-")[0].replace("8x8", "").replace("Slippery", "")
        names = KNOWN_ACTION_NAMES.get(family)
    return tuple(names) if names else tuple(f"a{i}" for i in range(env.action_space.n))


def greedy_action(q_row, rng: np.random.Generator) -> int:
    """argmax_a Q(s, a), choosing uniformly among tied actions.

    A fresh table is all zeros: breaking ties by index would always pick action 0.
    ``q_row`` is a list of floats (the training loops keep Q as lists: plain Python is
    faster than NumPy on rows of a few numbers) or a 1-D array.
    """
    # Hint: find the largest value, then every action that reaches it. With one best
    # Hint: action return it; with several, draw one of them uniformly with ``rng``
    # Hint: (``rng.random()`` is a float in [0, 1)). Return a Python int.
    ### BEGIN SOLUTION
    best = max(q_row)
    ties = [a for a, value in enumerate(q_row) if value == best]
    return ties[0] if len(ties) == 1 else ties[int(rng.random() * len(ties))]
    ### END SOLUTION


def epsilon_greedy(q_row, epsilon: float, rng: np.random.Generator) -> int:
    """With probability ε a uniformly random action, otherwise a greedy one."""
    # Hint: one draw from ``rng`` decides whether to explore (probability ε). Exploring
    # Hint: picks any action uniformly, the greedy one included; exploiting reuses
    # Hint: ``greedy_action``.
    ### BEGIN SOLUTION
    if rng.random() < epsilon:
        return int(rng.random() * len(q_row))
    return greedy_action(q_row, rng)
    ### END SOLUTION


class QTable:
    """Action values ``values[s, a]`` with the names of the actions.

    ``act`` is the greedy policy (ties broken at random); ``frame()`` shows the table.
    """

    file_name = "q_table.npy"

    def __init__(self, values: np.ndarray, action_names: tuple[str, ...]):
        self.values = values
        self.action_names = tuple(action_names)

    def act(self, state: int, rng: np.random.Generator) -> int:
        return greedy_action(self.values[int(state)].tolist(), rng)

    def greedy_policy(self) -> np.ndarray:
        """π(s) = argmax_a Q(s, a) for every state (lowest index among ties)."""
        return self.values.argmax(axis=1)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.values, columns=list(self.action_names))
        frame.index.name = "state"
        return frame

    def __repr__(self) -> str:
        return f"QTable({self.values.shape[0]} states × {self.action_names})\n{self.frame()}"

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        atomic_write(directory / self.file_name, lambda f: np.save(f, self.values))
        atomic_write(
            directory / "actions.json", lambda f: f.write(json.dumps(list(self.action_names)) + "\n"), mode="w"
        )

    @classmethod
    def load(cls, directory: str | Path) -> QTable:
        directory = Path(directory)
        names = json.loads((directory / "actions.json").read_text())
        return cls(np.load(directory / cls.file_name), tuple(names))
