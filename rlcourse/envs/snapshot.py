"""Saving an environment in a checkpoint: what pickling leaves out of a simulator.

A checkpoint pickles the environments with the rest of a run's state, so that a resumed run
goes on from the same place. Most environments pickle whole; the MuJoCo and Box2D ones do
not (:func:`simulator_state` says what to save beside them, :func:`restored` puts it back).
Used by every trainer that checkpoints environments (``rlcourse.pg.rollout``,
``rlcourse.value.dqn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.utils import EzPickle

from rlcourse.config import ConfigError


def simulator_state(env: gym.Env) -> dict[str, Any] | None:
    """What pickling ``env`` leaves out, to be saved beside it (None: nothing).

    Most environments pickle whole. Gymnasium's MuJoCo and Box2D ones pickle through
    ``gymnasium.utils.EzPickle``: their constructor's arguments, not where the simulation
    stands, so they unpickle as new. A MuJoCo simulation's state is its ``MjData``, which
    pickles, and its random generator; a Box2D world cannot be saved (``"lost"``)."""
    if not isinstance(env.unwrapped, EzPickle):
        return None
    unwrapped: Any = env.unwrapped
    if type(getattr(unwrapped, "data", None)).__name__ == "MjData":
        return {"data": unwrapped.data, "np_random": unwrapped.np_random}
    return {"lost": True}


def restored(
    env: gym.Env, simulation: dict[str, Any] | None, wrapper: Callable[[gym.Env], gym.Env] | None = None
) -> gym.Env:
    """``env`` (optionally ``wrapper(env)``) with the state :func:`simulator_state` saved put back."""
    if simulation is not None and "lost" in simulation:
        raise ConfigError(
            f"cannot resume on {type(env.unwrapped).__name__}: its simulation pickles as a new one "
            f"(gymnasium.utils.EzPickle) and cannot be saved in a checkpoint; start the run again"
        )
    if simulation is not None:
        unwrapped: Any = env.unwrapped
        unwrapped.data, unwrapped.np_random = simulation["data"], simulation["np_random"]
    return env if wrapper is None else wrapper(env)
