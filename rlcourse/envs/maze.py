"""The Dyna mazes of Sutton & Barto (2nd ed., Examples 8.1–8.3): a small grid with walls.

::

    .......#G       "dyna" (Example 8.1): S to G in 14 steps at best
    ..#....#.
    S.#....#.
    ..#......
    .....#...
    .........

States are the cells, numbered ``row · columns + column``; the actions are up, down, right,
left. A move into a wall or off the grid leaves the agent where it is. Reaching G pays 1
and ends the episode (``terminated``); every other step pays 0.

Two mazes change while the agent learns (the step count runs across episodes, from the
environment's creation):

* ``"blocking"`` (Example 8.2): the wall's gap is on the right; after ``switch_at`` steps
  (1000) the wall moves one cell right and the gap is on the left: the known path is blocked.
* ``"shortcut"`` (Example 8.3): the gap is on the left; after ``switch_at`` steps (3000) a
  second gap opens on the right, a shorter path that a model learned earlier does not know.

Like the corridor, the maze publishes its transition model ``P[s][a] == [(1.0, next_state,
reward, terminated)]`` (of the current layout), so the planners of lesson 2 can read it.
The goal cell is absorbing, with reward 0.
"""

from __future__ import annotations

import typing

import gymnasium as gym
from gymnasium import spaces

UP, DOWN, RIGHT, LEFT = 0, 1, 2, 3
MOVES = {UP: (-1, 0), DOWN: (1, 0), RIGHT: (0, 1), LEFT: (0, -1)}

LAYOUTS = {
    "dyna": (
        ".......#G",
        "..#....#.",
        "S.#....#.",
        "..#......",
        ".....#...",
        ".........",
    ),
    "blocking": (
        "........G",
        ".........",
        ".........",
        "########.",
        ".........",
        "...S.....",
    ),
    "shortcut": (
        "........G",
        ".........",
        ".........",
        ".########",
        ".........",
        "...S.....",
    ),
}
# What a changing maze becomes after ``switch_at`` steps, and when by default.
LATER = {
    "blocking": (LAYOUTS["shortcut"], 1000),
    "shortcut": (
        (
            "........G",
            ".........",
            ".........",
            ".#######.",
            ".........",
            "...S.....",
        ),
        3000,
    ),
}


def transition_model(rows: tuple[str, ...]) -> dict:
    """``P[s][a] = [(1.0, s', r, terminated)]`` of a layout (walls ``#``, goal ``G``)."""
    height, width = len(rows), len(rows[0])
    P: dict = {}
    for r in range(height):
        for c in range(width):
            s = r * width + c
            if rows[r][c] == "G":
                P[s] = {a: [(1.0, s, 0.0, True)] for a in MOVES}
                continue
            P[s] = {}
            for a, (dr, dc) in MOVES.items():
                nr, nc = r + dr, c + dc
                if not (0 <= nr < height and 0 <= nc < width) or rows[nr][nc] == "#":
                    nr, nc = r, c
                goal = rows[nr][nc] == "G"
                P[s][a] = [(1.0, nr * width + nc, float(goal), goal)]
    return P


class MazeEnv(gym.Env):
    # gymnasium's Env annotates metadata as an instance variable, though every env sets it on the class
    metadata: typing.ClassVar[dict] = {"render_modes": ["ansi", "human"], "render_fps": 4}  # type: ignore[misc]
    action_names = ("up", "down", "right", "left")

    def __init__(self, layout: str = "dyna", switch_at: int | None = None, render_mode: str | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"MazeEnv.layout = {layout!r} is not allowed: it must be one of {', '.join(LAYOUTS)}")
        if switch_at is not None and (isinstance(switch_at, bool) or not isinstance(switch_at, int) or switch_at < 1):
            raise ValueError(f"MazeEnv.switch_at = {switch_at!r} is out of range: it must be an integer >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"MazeEnv.render_mode = {render_mode!r} is not allowed: "
                f"it must be one of {self.metadata['render_modes']} or None"
            )
        self.layout, self.render_mode = layout, render_mode
        self.rows = LAYOUTS[layout]
        later = LATER.get(layout)
        self.later_rows = later[0] if later else None
        self.switch_at = (switch_at or later[1]) if later else None
        self.height, self.width = len(self.rows), len(self.rows[0])
        self.observation_space = spaces.Discrete(self.height * self.width)
        self.action_space = spaces.Discrete(4)
        self.P = transition_model(self.rows)
        self.start = next(
            r * self.width + c for r, row in enumerate(self.rows) for c, ch in enumerate(row) if ch == "S"
        )
        self.total_steps = 0  # across episodes: a changing maze changes after switch_at of them
        self.s = self.start

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.s = self.start
        if self.render_mode == "human":
            self.render()
        return self.s, {}

    def step(self, action):
        _, self.s, reward, terminated = self.P[self.s][int(action)][0]
        self.total_steps += 1
        if self.switch_at is not None and self.total_steps == self.switch_at:
            self.rows = self.later_rows
            self.P = transition_model(self.rows)
        if self.render_mode == "human":
            self.render()
        return self.s, reward, terminated, False, {}

    def render(self):
        cells = [list(row.replace("S", ".")) for row in self.rows]
        cells[self.s // self.width][self.s % self.width] = "A"
        text = "\n".join("".join(row) for row in cells)
        if self.render_mode == "human":
            print(text + "\n")
            return None
        return text


def shortest_path_length(rows: tuple[str, ...]) -> int:
    """Steps from S to G in a layout, by breadth-first search (for tests and plots)."""
    P = transition_model(rows)
    width = len(rows[0])
    start = next(r * width + c for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "S")
    frontier, seen, steps = [start], {start}, 0
    while frontier:
        steps += 1
        nxt = []
        for s in frontier:
            for a in MOVES:
                _, s2, _, done = P[s][a][0]
                if done:
                    return steps
                if s2 not in seen:
                    seen.add(s2)
                    nxt.append(s2)
        frontier = nxt
    raise ValueError("the goal cannot be reached")


__all__ = ["LAYOUTS", "MazeEnv", "shortest_path_length", "transition_model"]
