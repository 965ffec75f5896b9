"""The corridor: the 1-D world of the first lecture.

::

    o----T      the agent starts in cell 0, the treasure is in cell n_cells - 1

States are the cells 0 … n−1; action 0 moves left, 1 moves right. Walking into the left
wall leaves the agent where it is. Reaching the treasure gives reward 1 and ends the
episode (``terminated``); every other step gives 0. ``gymnasium.make`` adds a step limit
(``max_episode_steps``, default 100) that ends an episode with ``truncated``.

The transition model is public, in the form Gymnasium's toy-text environments use::

    P[s][a] == [(probability, next_state, reward, terminated)]

so the planners of lesson 2 can read it. The treasure cell is absorbing: every action
there stays put with reward 0, which makes V(treasure) = 0.
"""

from __future__ import annotations

import typing

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LEFT, RIGHT = 0, 1


class CorridorEnv(gym.Env):
    # gymnasium's Env annotates metadata as an instance variable, though every env sets it on the class
    metadata: typing.ClassVar[dict] = {"render_modes": ["ansi", "human"], "render_fps": 4}  # type: ignore[misc]
    action_names = ("left", "right")

    def __init__(self, n_cells: int = 6, render_mode: str | None = None):
        if not isinstance(n_cells, (int, np.integer)) or n_cells < 2:
            raise ValueError(f"CorridorEnv.n_cells = {n_cells!r} is out of range: it must be an integer >= 2")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"CorridorEnv.render_mode = {render_mode!r} is not allowed: "
                f"it must be one of {self.metadata['render_modes']} or None"
            )
        self.n_cells = int(n_cells)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(self.n_cells)
        self.action_space = spaces.Discrete(2)
        goal = self.n_cells - 1
        self.P = {
            s: {
                a: [(1.0, goal, 0.0, True)] if s == goal else [(1.0, nxt, float(nxt == goal), nxt == goal)]
                for a, nxt in ((LEFT, max(s - 1, 0)), (RIGHT, s + 1))
            }
            for s in range(self.n_cells)
        }
        self.s = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.s = 0
        if self.render_mode == "human":
            self.render()
        return self.s, {}

    def step(self, action):
        _, self.s, reward, terminated = self.P[self.s][int(action)][0]
        if self.render_mode == "human":
            self.render()
        return self.s, reward, terminated, False, {}

    def render(self):
        line = "".join("o" if i == self.s else ("T" if i == self.n_cells - 1 else "-") for i in range(self.n_cells))
        if self.render_mode == "human":
            print(line)
            return None
        return line
