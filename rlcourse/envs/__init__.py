"""Environments that ship with rlcourse, registered with Gymnasium on import."""

import gymnasium as gym

from rlcourse.envs.corridor import CorridorEnv

if "rlcourse/Corridor-v0" not in gym.registry:
    gym.register(id="rlcourse/Corridor-v0", entry_point="rlcourse.envs.corridor:CorridorEnv", max_episode_steps=100)

__all__ = ["CorridorEnv"]
