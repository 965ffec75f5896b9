"""The algorithms the command line can train: name → config class, defaults, train, policy loader.

A plain table, not a plugin system: each later lesson adds its line here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rlcourse.pg import a2c, a3c, ppo, reinforce, trpo
from rlcourse.pg.policies import load_module
from rlcourse.tabular import td_control
from rlcourse.tabular.qtable import QTable
from rlcourse.value import dqn, linear


@dataclasses.dataclass(frozen=True)
class Algorithm:
    config: type
    defaults: Any            # a config, or a function env_id -> config (per-environment tuned values)
    train: Callable
    load_policy: Callable

    def defaults_for(self, env_id: str):
        """The config a run on ``env_id`` starts from."""
        return self.defaults(env_id) if callable(self.defaults) else self.defaults


ALGORITHMS = {
    "q-learning": Algorithm(td_control.TDControlConfig, td_control.TDControlConfig(method="q-learning"),
                            td_control.train, QTable.load),
    "sarsa": Algorithm(td_control.TDControlConfig, td_control.TDControlConfig(method="sarsa"),
                       td_control.train, QTable.load),
    "expected-sarsa": Algorithm(td_control.TDControlConfig,
                                td_control.TDControlConfig(method="expected-sarsa"),
                                td_control.train, QTable.load),
    "reinforce": Algorithm(reinforce.ReinforceConfig, reinforce.ReinforceConfig(), reinforce.train, load_module),
    "dqn": Algorithm(dqn.DQNConfig, dqn.DQNConfig(), dqn.train, load_module),
    "linear-q": Algorithm(linear.LinearQConfig, linear.LinearQConfig(), linear.train, linear.LinearQPolicy.load),
    "a2c": Algorithm(a2c.A2CConfig, a2c.A2CConfig(), a2c.train, load_module),
    "a3c": Algorithm(a3c.A3CConfig, a3c.A3CConfig(), a3c.train, load_module),
    "ppo": Algorithm(ppo.PPOConfig, ppo.PPOConfig.for_env, ppo.train, load_module),
    "trpo": Algorithm(trpo.TRPOConfig, trpo.TRPOConfig.for_env, trpo.train, load_module),
}
