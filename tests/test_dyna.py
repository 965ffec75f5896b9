"""Lesson 2: Dyna-Q and Dyna-Q+ on Sutton & Barto's mazes (Examples 8.1–8.3)."""

import dataclasses

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.config import ConfigError
from rlcourse.envs.maze import LAYOUTS, MazeEnv, shortest_path_length
from rlcourse.run import load_checkpoint
from rlcourse.tabular import dyna, td_control
from rlcourse.tabular.dyna import DynaQConfig, Model, episodes_to_solve, planning_updates, q_learning_update


def test_the_mazes_of_the_book():
    assert shortest_path_length(LAYOUTS["dyna"]) == 14  # Example 8.1
    env = MazeEnv("blocking", switch_at=3)
    assert env.P[env.start][dyna_up := 0][0][1] == env.start - 9  # (5, 3) → (4, 3)
    wall_gap = 3 * 9 + 8  # the blocking maze's wall is open on the right, then on the left
    assert env.P[wall_gap + 9][dyna_up][0][1] == wall_gap
    env.reset()
    for _ in range(3):
        env.step(0)
    assert env.P[wall_gap + 9][dyna_up][0][1] == wall_gap + 9 and env.P[3 * 9 + 9][dyna_up][0][1] == 3 * 9
    shortcut = MazeEnv("shortcut", switch_at=1)
    assert shortcut.P[wall_gap + 9][0][0][1] == wall_gap + 9
    shortcut.step(2)
    assert shortcut.P[wall_gap + 9][0][0][1] == wall_gap
    with pytest.raises(ValueError, match="layout"):
        MazeEnv("spiral")
    with pytest.raises(ValueError, match="switch_at"):
        MazeEnv("blocking", switch_at=0)


def test_maze_steps_and_renders():
    env = gym.make("rlcourse/DynaMaze-v0", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert obs == 18 and env.render().splitlines()[2] == "A.#....#."
    assert env.step(3)[0] == 18  # the left edge
    obs, reward, terminated, truncated, _ = env.step(0)
    assert (obs, reward, terminated, truncated) == (9, 0.0, False, False)


def test_q_learning_update_by_hand():
    q = [[0.0, 1.0], [2.0, 4.0]]
    delta = q_learning_update(q, 0, 1, 1.0, 1, False, 0.5, 0.5)  # target 1 + 0.5 · 4 = 3
    assert delta == 2.0 and q[0][1] == 2.0
    assert q_learning_update(q, 1, 0, 1.0, 0, True, 0.5, 0.5) == -1.0 and q[1][0] == 1.5


def test_planning_updates_replay_the_model_with_the_dyna_q_plus_bonus():
    model = Model()
    model.add(0, 1, 0.0, 1, False, step=3)
    q = [[0.0, 0.0], [0.0, 0.0]]
    rng = np.random.default_rng(0)
    planning_updates(q, model, 1, DynaQConfig(alpha=0.5, kappa=0.0), step=7, rng=rng)
    assert q == [[0.0, 0.0], [0.0, 0.0]]
    planning_updates(q, model, 1, DynaQConfig(alpha=0.5, kappa=0.5), step=7, rng=rng)  # bonus 0.5 √4 = 1
    assert q == [[0.0, 0.5], [0.0, 0.0]]
    model.add_untried(1, 2)
    assert model.outcome[(1, 0)] == (0.0, 1, False) and model.tried[(1, 0)] == 0 and len(model) == 3


def test_dyna_q_without_planning_is_q_learning():
    # n = 0 and a constant ε: lesson 1's Q-learning, step for step (the same draws from the same seed)
    config = DynaQConfig(planning_steps=0, alpha=0.2, gamma=0.9, epsilon=0.1)
    mine = dyna.train("rlcourse/DynaMaze-v0", config, steps=5_000, seed=4)
    theirs = td_control.train("rlcourse/DynaMaze-v0", td_control.TDControlConfig(
        alpha=0.2, gamma=0.9, epsilon_start=0.1, epsilon_end=0.1), steps=5_000, seed=4)
    assert len(mine.log) > 5
    np.testing.assert_array_equal(mine.log["length"], theirs.log["length"])
    np.testing.assert_array_equal(mine.policy.values, theirs.policy.values)


def test_planning_cuts_the_episodes_to_solve_the_maze():
    # Sutton & Barto's Figure 8.2 on 5 seeds: n = 50 finds the short path in a few episodes, n = 0 in ~25
    study = dyna.planning_study(planning_steps=(0, 50), seeds=range(5), episodes=40)
    assert set(study.columns) == set(dyna.STUDY_COLUMNS) and len(study) == 2 * 5 * 40
    summary = dyna.solve_summary(study, good_length=20).set_index("planning_steps")
    assert (summary["solved"] == 5).all()
    assert summary.loc[0, "iqm"] > 2.5 * summary.loc[50, "iqm"]
    assert summary.loc[50, "iqm"] <= 10


def test_planning_helps_on_the_corridor_too():
    # a 10-cell corridor (9 steps at best), 5 seeds: when this test was written, five episodes in a
    # row averaged at most 12 steps after 12.6 episodes (IQM) without planning and 6.7 with n = 50
    study = dyna.planning_study("rlcourse/Corridor-v0", planning_steps=(0, 50), seeds=range(5), episodes=40,
                                env_kwargs={"n_cells": 10})
    summary = dyna.solve_summary(study, good_length=12).set_index("planning_steps")
    assert (summary["solved"] == 5).all() and summary.loc[50, "iqm"] < 0.7 * summary.loc[0, "iqm"]


def test_episodes_to_solve():
    assert episodes_to_solve([100, 50, 20, 14, 14, 14, 16], 20, window=3) == 5  # episodes 3–5 average 16
    assert np.isnan(episodes_to_solve([100, 90], 20, window=3))
    assert np.isnan(episodes_to_solve([100, 90, 80, 70], 20, window=3))


def test_dyna_q_plus_finds_the_shortcut():
    # Example 8.3: after 3000 steps a shorter path opens; with its bonus Dyna-Q+ tries the old
    # wall again and its greedy path shrinks from 16 to 10 steps; Dyna-Q keeps its model's path
    lengths = {}
    for kappa in (0.0, 1e-3):
        config = DynaQConfig(planning_steps=50, kappa=kappa)
        result = dyna.train("rlcourse/ShortcutMaze-v0", config, steps=6_000, seed=0)
        lengths[kappa] = result.log["length"].tail(10).median()
    assert lengths[1e-3] <= 12 < lengths[0.0]


def test_config_is_checked():
    for field, value in (("planning_steps", -1), ("alpha", 0.0), ("epsilon", 1.5), ("kappa", -1.0)):
        with pytest.raises(ConfigError, match=field):
            DynaQConfig(**{field: value})


def test_cli_table_save_and_load(tmp_path):
    assert ALGORITHMS["dyna-q"].train is dyna.train
    result = rlcourse.train("dyna-q", "rlcourse/DynaMaze-v0", steps=500, seed=1, planning_steps=3)
    result.save(tmp_path)
    loaded = rlcourse.load(tmp_path)
    assert loaded.config == result.config and (loaded.policy.values == result.policy.values).all()
    pd.testing.assert_frame_equal(loaded.log, result.log)


def test_a_resumed_run_equals_one_that_never_stopped(tmp_path):
    config = DynaQConfig(planning_steps=5, kappa=1e-3)
    straight = dyna.train("rlcourse/BlockingMaze-v0", config, steps=4_000, seed=2)

    def stop(env_steps, _model):
        if env_steps >= 1_000:
            raise KeyboardInterrupt

    stopped = dyna.train("rlcourse/BlockingMaze-v0", config, steps=4_000, seed=2, out=tmp_path,
                         checkpoint_every=300, callback=stop)
    assert stopped.status == "interrupted" and 0 < load_checkpoint(tmp_path)["env_steps"] <= stopped.steps
    resumed = dyna.train("rlcourse/BlockingMaze-v0", config, steps=4_000, seed=2, out=tmp_path,
                         checkpoint_every=300, resume=True)
    pd.testing.assert_frame_equal(resumed.log, straight.log, check_exact=True)
    assert (resumed.policy.values == straight.policy.values).all()


def test_episodes_stops_early():
    result = dyna.train("rlcourse/DynaMaze-v0", dataclasses.replace(DynaQConfig(), planning_steps=5), steps=50_000,
                        seed=0, episodes=3)
    assert len(result.log) == 3 and result.steps == result.log["env_steps"].iloc[-1] < 50_000
