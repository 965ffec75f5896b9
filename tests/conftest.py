import gymnasium as gym
import matplotlib

matplotlib.use("Agg")

import rlcourse  # noqa: E402,F401  (registers rlcourse/Corridor-v0)


class FaultyReward(gym.Wrapper):
    """The corridor, but at env step ``at`` (counted across episodes) the reward is NaN
    or the step raises KeyboardInterrupt, as if the user pressed Ctrl-C."""

    def __init__(self, env, at: int, fault: str):
        super().__init__(env)
        self.at, self.fault, self.count = at, fault, 0

    def step(self, action):
        self.count += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.count == self.at:
            if self.fault == "interrupt":
                raise KeyboardInterrupt
            reward = float("nan")
        return obs, reward, terminated, truncated, info


def _make_faulty(at: int, fault: str, **kwargs):
    from rlcourse.envs.corridor import CorridorEnv

    return FaultyReward(CorridorEnv(**kwargs), at, fault)


for _name, _kwargs in (("test/FaultyCorridor-v0", {}),
                       ("test/InterruptAt900-v0", {"at": 900, "fault": "interrupt"}),
                       ("test/NaNAt25000-v0", {"at": 25_000, "fault": "nan"})):
    if _name not in gym.registry:
        gym.register(id=_name, entry_point=_make_faulty, max_episode_steps=100, kwargs=_kwargs)
