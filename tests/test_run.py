import json
import pickle

import numpy as np
import pandas as pd
import pytest

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.run import atomic_write, load_checkpoint, save_checkpoint, seed_everything


def test_save_load_round_trip(tmp_path):
    result = rlcourse.train("sarsa", "FrozenLake-v1", steps=5000, seed=3, alpha=0.2)
    result.save(tmp_path / "run")
    for name in ("config.json", "progress.csv", "learning_curve.png", "q_table.npy", "actions.json"):
        assert (tmp_path / "run" / name).is_file()
    back = rlcourse.load(tmp_path / "run")
    assert back.config == result.config and back.algo == "sarsa" and back.seed == 3
    assert back.env_id == "FrozenLake-v1" and back.steps == 5000 and back.status == "finished"
    assert np.array_equal(back.policy.values, result.policy.values)
    pd.testing.assert_frame_equal(back.q_table, result.q_table)
    pd.testing.assert_frame_equal(back.log, result.log, check_exact=True)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["alpha"] == 0.2


def test_load_names_a_missing_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        rlcourse.load(tmp_path / "nothing")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.bin"
    atomic_write(path, lambda f: f.write(b"good"))

    def crash_halfway(f):
        f.write(b"half of a new fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash_halfway)
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]      # no temporary left behind


def test_checkpoint_survives_a_crash_during_the_next_save(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"step": 1000, "q": np.ones(3)})

    def broken_dump(obj, f, protocol=None):
        f.write(b"\x80\x05partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", broken_dump)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, {"step": 2000, "q": np.zeros(3)})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["step"] == 1000


def test_seed_everything_returns_a_reproducible_generator():
    import random

    a = seed_everything(5)
    first = (random.random(), np.random.rand(), a.random())
    b = seed_everything(5)
    assert (random.random(), np.random.rand(), b.random()) == first


def test_plot_returns_a_figure_with_the_curve():
    result = rlcourse.train("q-learning", "rlcourse/Corridor-v0", steps=500, seed=0)
    fig = result.plot()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "environment steps"
    assert len(ax.lines) == 2 and len(ax.lines[0].get_xdata()) == len(result.log)


def test_tensorboard_gets_the_same_named_numbers_as_the_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = ALGORITHMS["ppo"].train("CartPole-v1", steps=1_536, seed=0, tensorboard=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    numeric = [c for c in result.log.columns if c != "env_steps"]
    assert set(events.Tags()["scalars"]) == set(numeric)
    for column in ("return", "policy_loss", "approx_kl", "explained_variance"):
        logged = events.Scalars(column)
        assert [e.step for e in logged] == list(result.log["env_steps"])
        np.testing.assert_allclose([e.value for e in logged], result.log[column], rtol=1e-6)


def test_tensorboard_without_its_package_is_one_clear_error(monkeypatch):
    import sys

    from rlcourse.config import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"install the tensorboard extra"):
        ALGORITHMS["q-learning"].train("rlcourse/Corridor-v0", steps=100, tensorboard="nowhere")
