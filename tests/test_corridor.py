import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from rlcourse.envs.corridor import CorridorEnv


def test_make_registers_with_time_limit():
    env = gym.make("rlcourse/Corridor-v0")
    assert env.spec.max_episode_steps == 100
    assert env.observation_space.n == 6 and env.action_space.n == 2


def test_passes_gymnasium_check_env():
    check_env(gym.make("rlcourse/Corridor-v0").unwrapped)
    check_env(gym.make("rlcourse/Corridor-v0", render_mode="ansi", n_cells=3).unwrapped,
              skip_render_check=False)


def test_dynamics_wall_treasure_and_rewards():
    env = gym.make("rlcourse/Corridor-v0")
    obs, _ = env.reset(seed=0)
    assert obs == 0
    assert env.step(0)[:4] == (0, 0.0, False, False)          # the left wall holds
    for cell in range(1, 5):
        assert env.step(1)[:4] == (cell, 0.0, False, False)
    assert env.step(1)[:4] == (5, 1.0, True, False)            # treasure: reward 1, terminated


def test_step_limit_truncates():
    env = gym.make("rlcourse/Corridor-v0", max_episode_steps=7)
    env.reset(seed=0)
    results = [env.step(0) for _ in range(7)]
    assert [r[3] for r in results] == [False] * 6 + [True]
    assert not any(r[2] for r in results)


def test_render_ansi_and_human(capsys):
    env = gym.make("rlcourse/Corridor-v0", render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "o----T"
    env.step(1)
    assert env.render() == "-o---T"
    human = gym.make("rlcourse/Corridor-v0", render_mode="human", n_cells=4)
    human.reset(seed=0)
    human.step(1)
    assert capsys.readouterr().out.splitlines() == ["o--T", "-o-T"]


def test_transition_model_matches_step():
    env = CorridorEnv(n_cells=5)
    assert env.P[0][0] == [(1.0, 0, 0.0, False)]
    assert env.P[3][1] == [(1.0, 4, 1.0, True)]
    for s in range(4):
        for a in (0, 1):
            env.s = s
            obs, reward, terminated, _, _ = env.step(a)
            assert env.P[s][a] == [(1.0, obs, reward, terminated)]


@pytest.mark.parametrize("kwargs, field", [({"n_cells": 1}, "n_cells"), ({"render_mode": "rgb_array"}, "render_mode")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CorridorEnv(**kwargs)
