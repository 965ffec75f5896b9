"""Lesson 4: DAgger on CartPole with the scripted expert."""

import dataclasses

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.pg import dagger
from rlcourse.pg.dagger import DAggerConfig, aggregate, drive
from rlcourse.pg.imitation import Demonstrations, cartpole_controller

TINY = DAggerConfig(labels_per_round=50, updates_per_round=20, hidden=(16,))


class Always:
    def __init__(self, action):
        self.action = action

    def act(self, obs, rng=None):
        return self.action


def test_aggregate_appends_the_labelled_states():
    data = Demonstrations(np.zeros((2, 4), np.float32), np.array([0, 1]), [10.0])
    more = aggregate(data, [np.ones(4), 2 * np.ones(4)], [1, 1])
    assert more.observations.dtype == np.float32 and more.actions.dtype == data.actions.dtype
    np.testing.assert_array_equal(more.observations[2:], [np.ones(4), 2 * np.ones(4)])
    assert more.actions.tolist() == [0, 1, 1, 1] and more.episode_returns == [10.0] and len(data) == 2


def test_drive_labels_every_state_with_the_expert():
    env, expert = gym.make("CartPole-v1"), cartpole_controller()
    rng = np.random.default_rng(0)
    # the learner pushes left for ever: short episodes, each of its states labelled by the expert
    states, labels, returns, episodes = drive(Always(0), expert, env, 60, 0.0, rng, first_seed=5)
    assert states.shape == (60, 4) and len(labels) == 60 and len(returns) == episodes - 1 >= 3
    assert sum(returns) <= 60 and labels.tolist() == [expert.act(s) for s in states]
    # β = 1: the expert drives, and never falls within 60 steps
    states, labels, returns, episodes = drive(Always(0), expert, env, 60, 1.0, rng, first_seed=5)
    assert returns == [] and episodes == 1
    first, _ = gym.make("CartPole-v1").reset(seed=5)
    np.testing.assert_allclose(states[0], first)


def test_train_logs_one_row_per_round_and_repeats_itself():
    result = dagger.train("CartPole-v1", TINY, steps=180, seed=1)
    log = result.log
    assert list(log.columns) == dagger.LOG_COLUMNS
    assert log["env_steps"].tolist() == [50, 100, 150, 180] and log["round"].tolist() == [0, 1, 2, 3]
    assert log["beta"].tolist() == [1.0, 0.0, 0.0, 0.0] and np.isnan(log["error_own_states"].iloc[0])
    assert log["error_own_states"].iloc[1:].between(0, 1).all() and result.steps == 180
    again = dagger.train("CartPole-v1", TINY, steps=180, seed=1)
    pd.testing.assert_frame_equal(again.log, log, check_exact=True)


def test_the_first_round_is_the_experts_own_play_and_beta_mixes():
    calls = []

    class Counting:
        def act(self, obs, rng=None):
            calls.append(np.asarray(obs))
            return cartpole_controller().act(obs)

    config = dataclasses.replace(TINY, beta=0.5)
    log = dagger.train("CartPole-v1", config, steps=150, seed=0, expert=Counting()).log
    assert log["beta"].tolist() == [1.0, 0.5, 0.25]
    assert len(calls) >= 150  # every state of every round is labelled


def test_cli_table_save_and_load(tmp_path):
    assert ALGORITHMS["dagger"].train is dagger.train
    result = rlcourse.train("dagger", "CartPole-v1", steps=100, seed=0, labels_per_round=50, updates_per_round=5)
    result.save(tmp_path)
    loaded = rlcourse.load(tmp_path)
    obs = np.zeros(4, np.float32)
    assert loaded.config == result.config and loaded.policy.act(obs) == result.policy.act(obs)


def test_an_environment_without_an_expert_is_refused(capsys):
    with pytest.raises(ConfigError, match="expert"):
        dagger.train("Acrobot-v1", TINY, steps=100)
    assert main(["train", "dagger", "--env", "Acrobot-v1", "--steps", "100", "--quiet"]) == 2
    assert "only CartPole-v1 has a scripted one" in capsys.readouterr().err


def test_config_is_checked():
    for field, value in (("labels_per_round", 0), ("beta", 1.5), ("updates_per_round", 0), ("lr", 0.0),
                         ("hidden", (0,))):
        with pytest.raises(ConfigError, match=field):
            DAggerConfig(**{field: value})


@pytest.mark.slow
def test_dagger_reaches_the_experts_return_on_its_own_states():
    # 5 seeds, 100 labels a round: by 800 labels at least 4 of 5 learners balance for 500 steps on
    # episodes no round trained on, and the error on their own states falls below a tenth of round 1's
    study = dagger.dagger_study(cartpole_controller(), "CartPole-v1", 8, range(5), DAggerConfig(labels_per_round=100),
                                eval_episodes=5)
    last = study[study["samples"] == 800]
    assert (last["return"] >= 475).sum() >= 4
    first = study[study["samples"] == 100]["error_own_states"].median()
    assert last["error_own_states"].median() < first / 10
