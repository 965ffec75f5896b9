"""The algorithms the command line can train: name → config class, defaults, train, policy loader;
and :func:`load`, which brings back any saved run. This module alone knows every algorithm.

A plain table, not a plugin system: each later lesson adds its line here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rlcourse.config import config_from_dict
from rlcourse.pg import a2c, a3c, dagger, ppo, reinforce, td_lambda_ac, trpo
from rlcourse.pg.policies import load_policy
from rlcourse.run import Result
from rlcourse.tabular import dyna, td_control
from rlcourse.tabular.qtable import QTable
from rlcourse.value import dqn, linear


@dataclasses.dataclass(frozen=True)
class Algorithm:
    config: type
    defaults: Any  # a config, or a function env_id -> config (per-environment tuned values)
    train: Callable
    load_policy: Callable

    def defaults_for(self, env_id: str):
        """The config a run on ``env_id`` starts from."""
        return self.defaults(env_id) if callable(self.defaults) else self.defaults


ALGORITHMS = {
    "q-learning": Algorithm(
        td_control.TDControlConfig, td_control.TDControlConfig(method="q-learning"), td_control.train, QTable.load
    ),
    "sarsa": Algorithm(
        td_control.TDControlConfig, td_control.TDControlConfig(method="sarsa"), td_control.train, QTable.load
    ),
    "expected-sarsa": Algorithm(
        td_control.TDControlConfig, td_control.TDControlConfig(method="expected-sarsa"), td_control.train, QTable.load
    ),
    "dyna-q": Algorithm(dyna.DynaQConfig, dyna.DynaQConfig(), dyna.train, QTable.load),
    "reinforce": Algorithm(reinforce.ReinforceConfig, reinforce.ReinforceConfig(), reinforce.train, load_policy),
    "dqn": Algorithm(dqn.DQNConfig, dqn.DQNConfig.for_env, dqn.train, dqn.QPolicy.load),
    "linear-q": Algorithm(linear.LinearQConfig, linear.LinearQConfig(), linear.train, linear.LinearQPolicy.load),
    "a2c": Algorithm(a2c.A2CConfig, a2c.A2CConfig.for_env, a2c.train, load_policy),
    "a3c": Algorithm(a3c.A3CConfig, a3c.A3CConfig(), a3c.train, load_policy),
    "td-lambda-ac": Algorithm(
        td_lambda_ac.TDLambdaACConfig, td_lambda_ac.TDLambdaACConfig(), td_lambda_ac.train, load_policy
    ),
    "dagger": Algorithm(dagger.DAggerConfig, dagger.DAggerConfig(), dagger.train, load_policy),
    "ppo": Algorithm(ppo.PPOConfig, ppo.PPOConfig.for_env, ppo.train, load_policy),
    "trpo": Algorithm(trpo.TRPOConfig, trpo.TRPOConfig.for_env, trpo.train, load_policy),
}


def load(directory: str | os.PathLike) -> Result:
    """Bring back a run written by :meth:`Result.save`."""
    directory = Path(directory)
    meta_path = directory / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} is not a run directory: it has no config.json")
    meta = json.loads(meta_path.read_text())
    algo = ALGORITHMS[meta["algo"]]
    return Result(
        algo=meta["algo"],
        env_id=meta["env_id"],
        env_kwargs=meta.get("env_kwargs", {}),
        config=config_from_dict(algo.config, meta["config"]),
        policy=algo.load_policy(directory),
        log=pd.read_csv(directory / "progress.csv"),
        seed=meta["seed"],
        steps=meta["steps"],
        status=meta["status"],
        timing=meta.get("timing", {}),
    )
