import gymnasium as gym
import matplotlib

matplotlib.use("Agg")

import rlcourse  # noqa: E402,F401  (registers rlcourse/Corridor-v0)
from faults import FaultyReward  # noqa: E402


def _make_faulty(at: int, fault: str, **kwargs):
    from rlcourse.envs.corridor import CorridorEnv

    return FaultyReward(CorridorEnv(**kwargs), at, fault)


for _name, _kwargs in (("test/FaultyCorridor-v0", {}),
                       ("test/InterruptAt900-v0", {"at": 900, "fault": "interrupt"}),
                       ("test/NaNAt25000-v0", {"at": 25_000, "fault": "nan"})):
    if _name not in gym.registry:
        gym.register(id=_name, entry_point=_make_faulty, max_episode_steps=100, kwargs=_kwargs)
