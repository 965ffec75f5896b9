"""Environments that ship with rlcourse, registered with Gymnasium on import."""

import gymnasium as gym

from rlcourse.envs.corridor import CorridorEnv
from rlcourse.envs.maze import MazeEnv

if "rlcourse/Corridor-v0" not in gym.registry:
    gym.register(id="rlcourse/Corridor-v0", entry_point="rlcourse.envs.corridor:CorridorEnv", max_episode_steps=100)
# Sutton & Barto's Dyna mazes (Examples 8.1–8.3); the changing ones change after 1000 and 3000 steps
for _name, _layout in (("DynaMaze", "dyna"), ("BlockingMaze", "blocking"), ("ShortcutMaze", "shortcut")):
    if f"rlcourse/{_name}-v0" not in gym.registry:
        gym.register(
            id=f"rlcourse/{_name}-v0",
            entry_point="rlcourse.envs.maze:MazeEnv",
            kwargs={"layout": _layout},
            max_episode_steps=3000,
        )

__all__ = ["CorridorEnv", "MazeEnv"]
