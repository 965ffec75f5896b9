"""Smoke runs on the field's tasks (the mujoco and box2d extras): PPO with the RL Zoo's settings
runs a few thousand steps, saves, loads and evaluates with its observation statistics. The
learning claims are benchmarks (benchmarks/mujoco.py), not tests."""

import dataclasses
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from resumed import assert_resumes_bit_for_bit, stop_at

import rlcourse
from rlcourse.config import ConfigError
from rlcourse.pg import ppo, trpo
from rlcourse.pg.normalize import PRIOR_COUNT
from rlcourse.play import evaluate

ROOT = Path(__file__).resolve().parents[1]
TASKS = [
    ("HalfCheetah-v5", "mujoco"),
    ("Hopper-v5", "mujoco"),
    ("Walker2d-v5", "mujoco"),
    ("LunarLander-v3", "Box2D"),
]


@pytest.mark.parametrize("env_id, module", TASKS, ids=[t[0] for t in TASKS])
def test_ppo_with_the_zoo_settings_runs_saves_and_evaluates(tmp_path, env_id, module):
    pytest.importorskip(module, reason=f"{env_id} needs the {'mujoco' if module == 'mujoco' else 'box2d'} extra")
    # the Zoo's settings but for the update's length (seconds, not a minute, on two busy cores)
    config = dataclasses.replace(ppo.PPOConfig.for_env(env_id), n_epochs=1)
    if env_id == "LunarLander-v3":
        config = dataclasses.replace(config, num_envs=4)  # four environments: not all 2,048 steps in one iteration
    result = ppo.train(env_id, config, steps=1_024, seed=0)
    assert result.steps == 1_024 and len(result.log) >= 1
    numbers = result.log.drop(columns=["return", "length"]).to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    stats = result.policy.obs_normalizer
    assert (stats is not None) == config.normalize_obs
    result.save(tmp_path)
    loaded = rlcourse.load(tmp_path)
    if stats is not None:
        assert loaded.policy.obs_normalizer.state_dict() == stats.state_dict()
    # the same greedy actions (a MuJoCo model takes a second to build here: no second environment)
    for obs in np.random.default_rng(0).normal(size=(5, result.policy.spec["obs_dim"])).astype(np.float32):
        np.testing.assert_array_equal(loaded.policy.act(obs), result.policy.act(obs))
    assert math.isfinite(evaluate(loaded, episodes=1, seed=0, max_steps=200)["mean_return"])


def test_the_zoo_mujoco_networks_are_relu_without_orthogonal_initialisation(tmp_path):
    pytest.importorskip("mujoco")
    config = ppo.PPOConfig.for_env("Hopper-v5")
    assert (config.activation, config.ortho_init, config.hidden, config.log_std_init) == ("relu", False, (256, 256), -2)
    assert config.normalize_obs and config.normalize_reward and config.num_envs == 1
    policy, critic = ppo.make_networks("ppo", "Hopper-v5", None, (256, 256), -2.0, "relu", ortho_init=False)
    assert isinstance(policy.mean[1], torch.nn.ReLU) and isinstance(critic.v[1], torch.nn.ReLU)
    first = policy.mean[0]
    assert first.bias.abs().max() > 0  # torch's default draws the biases too; the orthogonal init zeroes them
    assert first.weight.abs().max() <= 1 / math.sqrt(first.in_features)  # kaiming_uniform(a=√5)'s bound
    policy.save(tmp_path)
    assert json.loads((tmp_path / "policy.json").read_text())["activation"] == "relu"
    assert isinstance(rlcourse.pg.policies.load_policy(tmp_path).mean[1], torch.nn.ReLU)


def test_the_benchmark_quick_runs_both_libraries_over_seeds(tmp_path):
    # with Stable-Baselines3 where it is installed (an optional dependency); without it, rlcourse alone
    pytest.importorskip("mujoco")
    with_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    curves, table = tmp_path / "curves.csv", tmp_path / "runs.csv"
    script = [sys.executable, str(ROOT / "benchmarks" / "mujoco_box2d.py")]
    command = [*script, "--quick", "--envs", "Hopper-v5", "--steps", "1024", "--workers", "1", "--curves", str(curves),
               "--csv", str(table), *([] if with_sb3 else ["--no-sb3"])]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ppo on Hopper-v5: 1,024 steps, seeds [0]" in proc.stdout
    summaries = re.findall(r"^(rlcourse|SB3): IQM -?[\d,.]+, 95% CI \[", proc.stdout, flags=re.MULTILINE)
    libraries = ["rlcourse", "SB3"] if with_sb3 else ["rlcourse"]
    assert summaries == libraries, proc.stdout
    if with_sb3:
        for what in ("final greedy return", "env steps per second"):
            assert re.search(rf"^rlcourse - SB3, IQM of the {what}: [+-][\d,.]+, 95% CI", proc.stdout,
                             flags=re.MULTILINE), proc.stdout
    first = pd.read_csv(table)
    assert first[["library", "seed"]].values.tolist() == [[library, 0] for library in libraries]
    # both libraries' curves on one grid of 50 points up to the budget (NaN until 100 episodes have ended)
    frame = pd.read_csv(curves)
    assert list(dict.fromkeys(frame["library"])) == libraries
    for _, group in frame.groupby("library"):
        assert len(group) == 50 and group["env_steps"].iloc[-1] == 1024 and "seed0" in group
    plot = subprocess.run([*script, "--curves", str(curves), "--plot", str(tmp_path / "curves.png")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 10_000, plot.stderr
    # the same command again reads every run from the journal beside --csv and trains nothing
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{len(libraries)} of {len(libraries)} runs read from {tmp_path / 'runs.runs.jsonl'}" in again.stdout
    finished = re.compile(r"^  (rlcourse|SB3) seed 0: final greedy return", flags=re.MULTILINE)
    assert len(finished.findall(proc.stdout)) == len(libraries) and not finished.findall(again.stdout)
    pd.testing.assert_frame_equal(pd.read_csv(table).drop(columns="machine"), first.drop(columns="machine"))


def test_the_benchmark_journal_keeps_the_runs_finished_before_a_kill(mujoco_box2d, tmp_path):
    job = mujoco_box2d.SB3Job("Hopper-v5", ppo.PPOConfig(), 0, 1024, 2, 3800.0, (512.0, 1024.0))
    other = dataclasses.replace(job, seed=1)
    path = str(tmp_path / "runs.runs.jsonl")
    row = {"seed": 0, "final_return": np.float64(1.5), "env_steps": np.int64(1024), "curve": np.array([np.nan, 2.0])}
    mujoco_box2d.append_journal(path, job, row)
    with open(path, "a") as journal:
        journal.write('{"key": "[\\"SB3\\", \\"Hop')  # killed while writing the next line
    mujoco_box2d.append_journal(path, other, {**row, "seed": 1})
    done = mujoco_box2d.read_journal(path)
    assert set(done) == {mujoco_box2d.journal_key(job), mujoco_box2d.journal_key(other)}
    first = done[mujoco_box2d.journal_key(job)]
    assert first["final_return"] == 1.5 and first["env_steps"] == 1024 and math.isnan(first["curve"][0])
    # another budget, settings or library is another run
    assert mujoco_box2d.journal_key(dataclasses.replace(job, steps=2048)) not in done
    assert mujoco_box2d.journal_key(dataclasses.replace(job, config=ppo.PPOConfig(n_steps=512))) not in done
    assert mujoco_box2d.read_journal(str(tmp_path / "none.jsonl")) == {}


def test_the_benchmark_runs_dqn_on_lunarlander_beside_sb3_and_refuses_it_on_mujoco():
    pytest.importorskip("Box2D")
    with_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    script = [sys.executable, str(ROOT / "benchmarks" / "mujoco_box2d.py"), "--algo", "dqn"]
    proc = subprocess.run([*script, "--envs", "LunarLander-v3", "--quick", "--steps", "300", "--workers", "1",
                           *([] if with_sb3 else ["--no-sb3"])], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dqn on LunarLander-v3: 300 steps, seeds [0]" in proc.stdout
    # the RL Zoo's LunarLander values reached SB3 (an SB3 that ran other settings would print them too)
    libraries = re.findall(r"^(rlcourse|SB3): mean - std >= 200 over 2 episodes", proc.stdout, flags=re.MULTILINE)
    assert libraries == (["rlcourse", "SB3"] if with_sb3 else ["rlcourse"]), proc.stdout
    refused = subprocess.run([*script, "--envs", "Hopper-v5", "--quick"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "only LunarLander-v3" in refused.stderr.strip().splitlines()[-1]


def test_sb3_trpo_gets_the_zoo_halfcheetah_settings_and_refuses_what_it_cannot_run(mujoco_box2d):
    # hyperparams/trpo.yml, HalfCheetah-v4: the mujoco-defaults (n_envs 2, n_steps 1024, batch_size 128,
    # n_critic_updates 20, cg_max_steps 25, cg_damping 0.1, learning_rate 1e-3) with target_kl 0.04, for
    # sb3-contrib's KL averaged over the 6 action dimensions: ours, of the whole action, is 6 times both
    from rlcourse.pg.trpo import TRPOConfig

    config = TRPOConfig.for_env("HalfCheetah-v5")
    assert (config.max_kl, config.cg_damping) == pytest.approx((0.24, 0.6))
    assert (TRPOConfig.for_env("Hopper-v5").max_kl, TRPOConfig.for_env("Walker2d-v5").max_kl) == \
        pytest.approx((0.03, 0.06))
    kwargs = mujoco_box2d.sb3_kwargs("trpo", config, "HalfCheetah-v5")
    assert (kwargs["n_steps"], kwargs["batch_size"], kwargs["n_critic_updates"]) == (1024, 128, 20)
    assert (kwargs["cg_max_steps"], kwargs["cg_damping"], kwargs["learning_rate"]) == (25, pytest.approx(0.1), 1e-3)
    assert (kwargs["target_kl"], kwargs["gae_lambda"], kwargs["sub_sampling_factor"]) == (pytest.approx(0.04), 0.95, 1)
    assert mujoco_box2d.sb3_kwargs("trpo", TRPOConfig.for_env("CartPole-v1"), "CartPole-v1")["cg_damping"] == 1e-3
    assert (kwargs["line_search_shrinking_factor"], kwargs["line_search_max_iter"]) == (0.8, 10)
    assert kwargs["policy_kwargs"]["net_arch"] == {"pi": [64, 64], "vf": [64, 64]}
    assert kwargs["policy_kwargs"]["ortho_init"] is True and kwargs["policy_kwargs"]["log_std_init"] == 0.0
    assert mujoco_box2d.sb3_normalize(config) == dict(norm_obs=True, norm_reward=True, clip_obs=10.0,
                                                      clip_reward=10.0, gamma=0.99)
    with pytest.raises(ValueError, match="TRPO cannot run method = 'npg'"):
        mujoco_box2d.sb3_kwargs("trpo", dataclasses.replace(config, method="npg"), "HalfCheetah-v5")


def test_sb3_a2c_gets_rmsprop_as_ours_and_refuses_what_it_cannot_run(mujoco_box2d):
    from rlcourse.pg.a2c import A2CConfig

    config = A2CConfig.for_env("HalfCheetah-v5")
    kwargs = mujoco_box2d.sb3_a2c_settings(dataclasses.replace(config, rms_alpha=0.9))
    assert kwargs["policy_kwargs"]["optimizer_class"] is torch.optim.RMSprop
    assert kwargs["policy_kwargs"]["optimizer_kwargs"] == dict(alpha=0.9, eps=1e-5, weight_decay=0)
    assert (kwargs["n_steps"], kwargs["gae_lambda"], kwargs["learning_rate"], kwargs["normalize_advantage"]) == \
        (5, 1.0, 7e-4, False)
    assert mujoco_box2d.sb3_normalize(config)["norm_obs"] and mujoco_box2d.sb3_normalize(A2CConfig()) is None
    schedule = mujoco_box2d.sb3_a2c_settings(A2CConfig.for_env("LunarLander-v3"))["learning_rate"]
    assert schedule(1.0) == 0.00083 and schedule(0.5) == 0.00083 / 2  # SB3's progress runs from 1 down to 0
    for field, value in (("shared", True), ("normalize_advantages", True)):
        with pytest.raises(ValueError, match=f"A2C cannot run {field} = True"):
            mujoco_box2d.sb3_a2c_settings(dataclasses.replace(config, **{field: value}))


def test_the_benchmark_runs_trpo_beside_sb3_contrib_and_refuses_what_sb3_cannot_run(mujoco_box2d, capsys):
    pytest.importorskip("mujoco")
    pytest.importorskip("sb3_contrib")  # the bench extra; without it the PPO test above covers the script
    with pytest.raises(SystemExit) as refused:  # refused before anything trains: one line, exit 2
        mujoco_box2d.main(["--algo", "trpo", "--envs", "Hopper-v5", "--quick", "--set", "method=npg"])
    out, err = capsys.readouterr()
    assert refused.value.code == 2 and out == ""
    assert "--algo trpo on Hopper-v5: SB3's TRPO cannot run method = 'npg'" in err.strip().splitlines()[-1]
    script = [sys.executable, str(ROOT / "benchmarks" / "mujoco_box2d.py"), "--algo", "trpo", "--envs", "Hopper-v5"]
    proc = subprocess.run([*script, "--quick", "--steps", "512", "--workers", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trpo on Hopper-v5: 2,048 steps, seeds [0]" in proc.stdout  # whole iterations of 2 × 1024
    summaries = re.findall(r"^(rlcourse|SB3): IQM -?[\d,.]+, 95% CI \[", proc.stdout, flags=re.MULTILINE)
    assert summaries == ["rlcourse", "SB3"], proc.stdout


def test_sb3_dqn_gets_the_zoo_lunarlander_settings_and_refuses_what_it_cannot_run(mujoco_box2d):
    from rlcourse.value.dqn import DQNConfig

    kwargs = mujoco_box2d.sb3_dqn_settings(DQNConfig.for_env("LunarLander-v3"))
    assert kwargs["learning_rate"] == 6.3e-4 and kwargs["batch_size"] == 128 and kwargs["buffer_size"] == 50_000
    assert kwargs["gradient_steps"] == -1 and kwargs["train_freq"] == 4 and kwargs["target_update_interval"] == 250
    assert kwargs["exploration_fraction"] == 0.12 and kwargs["exploration_final_eps"] == 0.1
    assert kwargs["policy_kwargs"] == {"net_arch": [256, 256]} and kwargs["learning_starts"] == 0
    with pytest.raises(ValueError, match="loss = 'mse'"):
        mujoco_box2d.sb3_dqn_settings(DQNConfig())  # the course's defaults use the square loss


def test_sb3_environments_have_no_render_mode_as_ours_do(mujoco_box2d):
    # make_vec_env's default, render_mode="rgb_array", makes LunarLander add a Box2D body for every
    # engine firing (a flame drawn on screen), which slowed SB3's runs about 6x as the policy learned
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("Box2D")
    env = mujoco_box2d.sb3_env("LunarLander-v3", 2, seed=0)
    assert env.get_attr("render_mode") == [None, None]
    env.reset()
    for _ in range(50):
        env.step(np.full(2, 2))  # the main engine, every step
    assert env.get_attr("particles") == [[], []]
    env.close()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_a_resumed_mujoco_run_equals_one_that_never_stopped(tmp_path, vectorization):
    """MuJoCo's environments pickle their constructor's arguments only (EzPickle): the checkpoint
    saves each simulation's MjData and random generator beside it, and a resumed run goes on
    from them (Hopper falls often, so resets draw from the restored generator)."""
    pytest.importorskip("mujoco")
    config = dataclasses.replace(ppo.PPOConfig.for_env("Hopper-v5"), n_epochs=1, n_steps=256, num_envs=2,
                                 vectorization=vectorization)
    straight, _ = assert_resumes_bit_for_bit(ppo.train, "Hopper-v5", config, tmp_path, steps=2_048, every=512,
                                             stop=1_024)
    assert straight.log["episodes"].sum() > 4


def test_a_box2d_run_refuses_to_resume_in_one_line(tmp_path):
    pytest.importorskip("Box2D")
    config = dataclasses.replace(ppo.PPOConfig.for_env("LunarLander-v3"), num_envs=2, n_steps=128, n_epochs=1)

    ppo.train("LunarLander-v3", config, steps=1_024, seed=0, out=tmp_path, checkpoint_every=256, callback=stop_at(512))
    with pytest.raises(ConfigError, match=r"cannot resume on LunarLander: its simulation pickles as a new one"):
        ppo.train("LunarLander-v3", config, steps=1_024, seed=0, out=tmp_path, checkpoint_every=256, resume=True)


def test_trpo_with_the_zoo_mujoco_settings_normalises_and_runs():
    pytest.importorskip("mujoco")
    config = trpo.TRPOConfig.for_env("HalfCheetah-v5")
    assert (config.normalize_obs, config.normalize_reward, config.max_kl, config.num_envs) == \
        (True, True, pytest.approx(0.24), 2)
    assert trpo.TRPOConfig.for_env("Hopper-v5").max_kl == pytest.approx(0.03)  # 0.01 for each of 3 dimensions
    result = trpo.train("Hopper-v5", dataclasses.replace(config, critic_epochs=1), steps=1_024, seed=0)
    assert result.steps == 1_024 and result.policy.obs_normalizer.rms.count == PRIOR_COUNT + 1_024 + 2
    assert np.isfinite(result.log.drop(columns=["return", "length"]).to_numpy(dtype=float)).all()
