import json
import subprocess
import sys

import pytest

from rlcourse.cli import main


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_then_evaluate_corridor(tmp_path, capsys, seed):
    out = tmp_path / "run"
    assert main(["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--seed", str(seed),
                 "--steps", "3000", "--out", str(out), "--quiet"]) == 0
    for name in ("config.json", "progress.csv", "learning_curve.png", "q_table.npy"):
        assert (out / name).is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "10"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary == {"mean_return": 1.0, "std_return": 0.0, "mean_length": 5.0, "episodes": 10}


def test_evaluate_renders_ansi_and_gif(tmp_path, capsys):
    main(["train", "q-learning", "--env", "FrozenLake-v1", "--steps", "2000", "--out", str(tmp_path), "--quiet"])
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path), "--episodes", "1", "--render", "ansi"]) == 0
    out = capsys.readouterr().out
    assert "SFFF" in out.replace("\x1b[41m", "").replace("\x1b[0m", "")
    assert main(["evaluate", str(tmp_path), "--episodes", "2", "--render", "gif"]) == 0
    assert (tmp_path / "episode.gif").read_bytes()[:6] == b"GIF89a"
    assert last_json(capsys.readouterr().out)["episodes"] == 2


def test_set_overrides_reach_the_saved_config(tmp_path, capsys):
    assert main(["train", "sarsa", "--env", "CliffWalking-v1", "--steps", "500", "--out", str(tmp_path),
                 "--quiet", "--set", "alpha=0.5", "gamma=1", "--set", "epsilon_end=0.1"]) == 0
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    assert (config["alpha"], config["gamma"], config["epsilon_end"], config["method"]) == (0.5, 1.0, 0.1, "sarsa")


@pytest.mark.parametrize("argv, message", [
    (["train", "dqn-9000", "--env", "rlcourse/Corridor-v0"], "unknown algorithm 'dqn-9000'"),
    (["train", "q-learning", "--env", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
    (["train", "q-learning", "--env", "CartPole-v1"], "q-learning needs a Discrete observation space"),
    (["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--set", "alpha=7"],
     r"TDControlConfig.alpha = 7.0 is out of range: it must be in (0, 1]"),
    (["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--set", "alpha"], "--set expects key=value"),
    (["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--set", "beta=1"], "has no field 'beta'"),
    (["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--steps", "0"], "--steps = 0 is out of range"),
    (["train", "q-learning"], "the following arguments are required: --env"),
    (["evaluate", "no/such/run"], "no/such/run is not a run directory"),
    (["evaluate", "RUN", "--render", "gif"], "cannot render 'gif'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, message):
    if "RUN" in argv:
        main(["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--steps", "50", "--out",
              str(tmp_path), "--quiet"])
        argv = [str(tmp_path) if a == "RUN" else a for a in argv]
        capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlcourse: error: ")
    assert message in err[0]


def test_ctrl_c_saves_what_was_learned(tmp_path, capsys):
    import rlcourse

    code = main(["train", "q-learning", "--env", "test/InterruptAt900-v0", "--steps", "5000",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 130
    assert "interrupted at env step 899" in capsys.readouterr().err
    saved = rlcourse.load(tmp_path)
    assert saved.status == "interrupted" and saved.steps == 899
    assert saved.policy.values.any()


def test_nan_exits_1_naming_the_step_and_keeps_the_checkpoint(tmp_path, capsys):
    from rlcourse.run import load_checkpoint

    code = main(["train", "q-learning", "--env", "test/NaNAt25000-v0", "--steps", "30000",
                 "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "non-finite TD error at env step 25000" in err[0]
    assert 20_000 <= load_checkpoint(tmp_path)["env_steps"] < 25_000    # the episode end after 20,000 steps
    assert not (tmp_path / "config.json").exists()


def test_python_dash_m_and_console_script_work(tmp_path):
    for command in ([sys.executable, "-m", "rlcourse"], ["rlcourse"]):
        done = subprocess.run(command + ["train", "sarsa", "--env", "rlcourse/Corridor-v0", "--steps", "300",
                                         "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert last_json(done.stdout)["env_steps"] == 300
    bad = subprocess.run([sys.executable, "-m", "rlcourse", "evaluate", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
