"""Environments that misbehave on purpose, for the tests of the failure paths."""

import gymnasium as gym


class FaultyReward(gym.Wrapper):
    """At the ``at``-th step of this copy (counted across episodes) the reward is NaN, or
    the step raises KeyboardInterrupt as if the user pressed Ctrl-C."""

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


def faulty_corridor(at: int, fault: str, **kwargs):
    from rlcourse.envs.corridor import CorridorEnv

    return FaultyReward(CorridorEnv(**kwargs), at, fault)


def faulty_cartpole(at: int, fault: str):
    from gymnasium.envs.classic_control import CartPoleEnv

    return FaultyReward(CartPoleEnv(), at, fault)


class OddSpaces(gym.Env):
    """An environment with whatever spaces it is given, for the unsupported-space errors."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
