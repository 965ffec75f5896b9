"""Every single-process trainer: stopped (Ctrl-C) and resumed, it ends with the log, bit for bit,
and the model of a run that was never stopped. The same run, one step apart, refuses to resume."""

import dataclasses

import pandas as pd
import pytest
import torch

from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.run import load_checkpoint

# algorithm, environment, small-budget overrides, steps, checkpoint_every, where the callback stops it
CASES = [
    ("q-learning", "FrozenLake-v1", {}, 6_000, 1_000, 4_000),
    ("sarsa", "CliffWalking-v1", {}, 3_000, 500, 2_000),
    ("expected-sarsa", "rlcourse/Corridor-v0", {}, 2_000, 300, 1_500),
    ("linear-q", "MountainCar-v0", {}, 3_000, 500, 2_000),
    ("reinforce", "CartPole-v1", {"steps_per_env": 250}, 4_000, 1_000, 3_000),
    ("reinforce", "Pendulum-v1", {"psi": "running-baseline", "steps_per_env": 200}, 3_200, 800, 2_400),
    ("a2c", "CartPole-v1", {"log_interval": 7}, 3_000, 600, 2_000),
    ("ppo", "CartPole-v1", {}, 3_000, 768, 2_000),
    ("ppo", "Pendulum-v1", {"n_steps": 128, "surrogate": "adaptive-kl"}, 2_048, 512, 1_536),
    ("trpo", "CartPole-v1", {"n_steps": 256}, 2_560, 512, 2_000),
    ("dqn", "CartPole-v1", {"hidden": (32, 32), "learning_starts": 200, "train_freq": 64, "gradient_steps": 16,
                            "buffer_size": 5_000}, 3_000, 640, 2_000),
]


def config_for(algo, env_id, overrides):
    spec = ALGORITHMS[algo]
    return dataclasses.replace(spec.defaults_for(env_id), **overrides)


@pytest.mark.parametrize("algo, env_id, overrides, steps, every, stop_at", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_resumed_run_equals_one_that_never_stopped(tmp_path, algo, env_id, overrides, steps, every, stop_at):
    train, config = ALGORITHMS[algo].train, config_for(algo, env_id, overrides)
    straight = train(env_id, config, steps=steps, seed=3)

    def stop(env_steps, _model):
        if env_steps >= stop_at:
            raise KeyboardInterrupt

    stopped = train(env_id, config, steps=steps, seed=3, out=tmp_path, checkpoint_every=every, callback=stop)
    assert stopped.status == "interrupted" and stopped.steps < steps
    assert 0 < load_checkpoint(tmp_path)["env_steps"] <= stopped.steps
    resumed = train(env_id, config, steps=steps, seed=3, out=tmp_path, checkpoint_every=every, resume=True)
    assert resumed.status == "finished" and resumed.steps == straight.steps
    pd.testing.assert_frame_equal(resumed.log, straight.log, check_exact=True)
    if hasattr(straight.policy, "parameters"):
        for a, b in zip(resumed.policy.parameters(), straight.policy.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    else:
        assert (getattr(resumed.policy, "values", None) == getattr(straight.policy, "values", None)).all() \
            if hasattr(straight.policy, "values") else (resumed.policy.W == straight.policy.W).all()


@pytest.mark.parametrize("change, message", [
    (dict(seed=4), r"seed = 3, this one has seed = 4"),
    (dict(steps=2_500), r"steps = 2000, this one has steps = 2500"),
    (dict(alpha=0.3), r"config"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, message):
    train = ALGORITHMS["q-learning"].train
    config = config_for("q-learning", "FrozenLake-v1", {})
    train("FrozenLake-v1", config, steps=2_000, seed=3, out=tmp_path, checkpoint_every=500)
    kwargs = dict(steps=2_000, seed=3, out=tmp_path, resume=True)
    if "alpha" in change:
        config = dataclasses.replace(config, alpha=change.pop("alpha"))
    with pytest.raises(ConfigError, match=message):
        train("FrozenLake-v1", config, **(kwargs | change))
    with pytest.raises(ConfigError, match="no checkpoint.pkl"):
        train("FrozenLake-v1", config, steps=2_000, out=tmp_path / "empty", resume=True)


def test_cli_resume_finishes_a_stopped_ppo_run_as_if_never_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    config = ALGORITHMS["ppo"].defaults_for("CartPole-v1")

    def stop(env_steps, _policy):
        if env_steps >= 2_000:
            raise KeyboardInterrupt

    ALGORITHMS["ppo"].train("CartPole-v1", config, steps=3_000, seed=1, out=out, checkpoint_every=768, callback=stop)
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "3000", "--seed", "1", "--out", str(out),
                 "--quiet", "--resume"]) == 0
    straight = ALGORITHMS["ppo"].train("CartPole-v1", config, steps=3_000, seed=1)
    pd.testing.assert_frame_equal(pd.read_csv(out / "progress.csv"), straight.log, check_dtype=False)
    assert "does not support" not in capsys.readouterr().err


def test_a3c_resumes_from_its_last_checkpoint(tmp_path):
    """A3C's workers interleave, so no run of it repeats bit for bit; resumed, it keeps the networks,
    Adam's statistics and the log of its last checkpoint, and runs the rest of its budget."""
    train, config = ALGORITHMS["a3c"].train, config_for("a3c", "CartPole-v1", {"workers": 1, "log_interval": 20})

    def stop(env_steps, _policy):
        if env_steps >= 2_000:
            raise KeyboardInterrupt

    stopped = train("CartPole-v1", config, steps=4_000, seed=1, out=tmp_path, checkpoint_every=1_000, callback=stop,
                    callback_every=500)
    saved = load_checkpoint(tmp_path)
    assert stopped.status == "interrupted" and saved["env_steps"] == 2_000
    resumed = train("CartPole-v1", config, steps=4_000, seed=1, out=tmp_path, checkpoint_every=1_000, resume=True)
    assert resumed.status == "finished" and resumed.steps == 4_000
    assert resumed.log.iloc[:len(saved["rows"])].to_dict("records") == saved["rows"]
    assert resumed.log["env_steps"].is_monotonic_increasing and resumed.log["env_steps"].iloc[-1] == 4_000


@pytest.mark.parametrize("algo, env_id", [("ppo", "CartPole-v1"), ("reinforce", "Pendulum-v1")])
def test_device_cpu_is_the_default_bit_for_bit(algo, env_id):
    train = ALGORITHMS[algo].train
    default = train(env_id, steps=2_048, seed=5)
    cpu = train(env_id, steps=2_048, seed=5, device="cpu")
    pd.testing.assert_frame_equal(cpu.log, default.log, check_exact=True)
    assert all(p.device.type == "cpu" for p in cpu.policy.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_that_is_not_there_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"device = 'cuda': torch sees no CUDA GPU on this machine"):
        ALGORITHMS["a2c"].train("CartPole-v1", steps=100, device="cuda")
    assert main(["train", "trpo", "--env", "CartPole-v1", "--steps", "100", "--device", "cuda", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch sees no CUDA GPU" in err[0]
    assert main(["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--device", "cpu", "--out",
                 str(tmp_path / "q")]) == 2
    assert "--device: q-learning does not support it" in capsys.readouterr().err
