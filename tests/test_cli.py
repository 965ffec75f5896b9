import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rlcourse
from rlcourse.algorithms import ALGORITHMS
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


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlcourse: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tabular run (q_table.npy) and a deep one (policy.pt), each trained once; tests damage copies."""
    root = tmp_path_factory.mktemp("runs")
    for algo, env in (("q-learning", "rlcourse/Corridor-v0"), ("reinforce", "CartPole-v1")):
        assert main(["train", algo, "--env", env, "--steps", "300", "--out", str(root / algo), "--quiet"]) == 0
    return root


def edit_config(run: Path, **changes):
    meta = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**meta, **changes}))


@pytest.mark.parametrize("algo, damage, message", [
    ("reinforce", lambda run: (run / "policy.pt").unlink(), "is missing policy.pt"),
    ("q-learning", lambda run: (run / "q_table.npy").unlink(), "is missing q_table.npy"),
    ("q-learning", lambda run: (run / "progress.csv").unlink(), "is missing progress.csv"),
    ("reinforce", lambda run: (run / "policy.pt").write_bytes(b"not a model"), "holds a damaged run"),
    ("q-learning", lambda run: (run / "config.json").write_text("{"), "config.json is damaged: it is not JSON"),
    ("q-learning", lambda run: (run / "config.json").write_text("[]"), "is not the config.json of a run"),
    ("q-learning", lambda run: edit_config(run, algo="dqn-9000"), "names the algorithm 'dqn-9000'"),
    ("q-learning", lambda run: edit_config(run, env_id="NoSuchEnv-v0"), "unknown environment 'NoSuchEnv-v0'"),
    ("q-learning", lambda run: edit_config(run, config={"alpha": 7.0}), "holds a damaged run"),
    # what `rlcourse rlhf sft --out DIR` leaves: the model's own config.json beside train_config.json
    ("q-learning", lambda run: ((run / "config.json").write_text('{"model_type": "gpt2"}'),
                                (run / "train_config.json").write_text("{}")), "rlcourse rlhf evaluate"),
])
def test_evaluate_a_folder_that_holds_no_sound_run_exits_2_with_one_line(runs, tmp_path, capsys, algo, damage,
                                                                        message):
    run = tmp_path / "run"
    shutil.copytree(runs / algo, run)
    damage(run)
    assert main(["evaluate", str(run), "--episodes", "1"]) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "RUN", "--seed", "-1"], "--seed = -1 is out of range: it must be >= 0"),
    (["evaluate", "RUN", "--episodes", "0"], "--episodes = 0 is out of range: it must be >= 1"),
    (["train", "q-learning", "--env", "rlcourse/Corridor-v0", "--seed", "-1", "--out", "NEW"],
     "--seed = -1 is out of range: it must be >= 0"),
    (["train", "q-lerning", "--env", "rlcourse/Corridor-v0"], "did you mean 'q-learning'?"),
    (["train", "ppo2", "--env", "CartPole-v1"], "did you mean 'ppo'?"),
    (["train", "dqn", "--env", "CartPole-v1", "--steps", "100", "--out", "RUN", "--resume", "--force"],
     "give one of them"),
    (["rlhf", "sft", "--out", "NEW", "--seed", "-1"], "--seed = -1 is out of range"),
])
def test_bad_numbers_and_names_exit_2_with_one_line(runs, tmp_path, capsys, argv, message):
    argv = [{"RUN": str(runs / "q-learning"), "NEW": str(tmp_path / "new")}.get(a, a) for a in argv]
    assert main(argv) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "new").exists()


def train_corridor(algo: str, out: Path, *flags: str) -> int:
    return main(["train", algo, "--env", "rlcourse/Corridor-v0", "--steps", "200", "--out", str(out), "--quiet",
                 *flags])


def test_train_refuses_an_out_that_holds_another_algorithm_unless_forced(tmp_path, capsys):
    assert train_corridor("q-learning", tmp_path / "run") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    capsys.readouterr()
    assert train_corridor("sarsa", tmp_path / "run") == 2
    assert "--out " + str(tmp_path / "run") + " holds a run of q-learning" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    (tmp_path / "run" / "episode.gif").write_bytes(b"GIF89a: the q-learning run's")
    assert train_corridor("sarsa", tmp_path / "run", "--force") == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["algo"] == "sarsa"
    assert not (tmp_path / "run" / "episode.gif").exists()


def test_train_refuses_an_out_that_holds_no_run_unless_forced(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("mine")
    assert train_corridor("q-learning", tmp_path / "notes") == 2
    assert "holds files that are not a run" in one_error_line(capsys)
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    assert train_corridor("q-learning", tmp_path / "file") == 2
    assert train_corridor("q-learning", tmp_path / "notes", "--force") == 0
    assert not (tmp_path / "notes" / "thesis.tex").exists()


def test_the_same_algorithm_again_replaces_the_old_run_and_resume_keeps_it(tmp_path, capsys):
    assert train_corridor("q-learning", tmp_path) == 0
    (tmp_path / "episode.gif").write_bytes(b"GIF89a: the old run's")
    assert train_corridor("q-learning", tmp_path) == 0
    assert not (tmp_path / "episode.gif").exists()
    assert main(["train", "dqn", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "dqn"),
                 "--quiet"]) == 0
    (tmp_path / "dqn" / "episode.gif").write_bytes(b"GIF89a")
    capsys.readouterr()
    assert main(["train", "dqn", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "dqn"),
                 "--quiet", "--resume"]) == 2
    assert "needs a checkpoint" in one_error_line(capsys)
    assert (tmp_path / "dqn" / "episode.gif").exists() and (tmp_path / "dqn" / "policy.pt").exists()


def test_train_never_removes_the_current_directory(tmp_path, capsys, monkeypatch):
    assert train_corridor("q-learning", tmp_path) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert train_corridor("q-learning", Path("."), "--force") == 2
    assert "holds the current directory" in one_error_line(capsys)
    assert (tmp_path / "q_table.npy").is_file()


def test_train_help_lists_every_algorithm_and_the_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())       # argparse wraps lines
    assert all(name in text for name in ALGORITHMS)
    assert "environment steps (default: 10000)" in text and "(default: 0)" in text


def test_version_is_the_package_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"rlcourse {rlcourse.__version__}"
    assert importlib.metadata.version("rlcourse") == rlcourse.__version__


@pytest.mark.parametrize("algo, env, steps, env_steps", [
    ("ppo", "CartPole-v1", 100, 104),                 # 8 environments step together: 13 steps of each
    ("q-learning", "rlcourse/Corridor-v0", 300, 300),   # the budget ends in the middle of an episode
])
def test_the_progress_bar_ends_at_the_budget(tmp_path, capsys, algo, env, steps, env_steps):
    assert main(["train", algo, "--env", env, "--steps", str(steps), "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["env_steps"] == env_steps
    final = captured.err.rsplit("\r", 1)[-1]
    assert final.startswith(f"{algo}: 100%|") and f" {steps}/{steps} " in final


def test_evaluate_records_an_mp4(runs, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "cartpole.mp4"
    assert main(["evaluate", str(runs / "reinforce"), "--episodes", "1", "--render", "mp4",
                 "--video", str(video)]) == 0
    assert video.read_bytes()[4:8] == b"ftyp"
    import imageio.v2 as imageio

    frames = [frame for frame in imageio.get_reader(video)]    # (list() would ask its length: inf)
    assert len(frames) == last_json(capsys.readouterr().out)["mean_length"] + 1     # the first frame too
    assert frames[0].shape == (400, 600, 3)


def test_evaluate_mp4_without_imageio_names_the_extra(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)          # import imageio_ffmpeg now fails
    assert main(["evaluate", str(runs / "reinforce"), "--render", "mp4"]) == 2
    assert '"rlcourse[video]"' in one_error_line(capsys)
    assert not (runs / "reinforce" / "episode.mp4").exists()


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_rlhf_cli_imports_nothing_of_the_top_level_cli_and_no_private_name():
    package = Path(rlcourse.__file__).parent
    for path in (package / "cli.py", package / "rlhf" / "cli.py"):
        for name in imports_of(path):
            leaf = name.rsplit(".", 1)[-1]
            assert not name.startswith("rlcourse.cli"), (path, name)
            assert not (leaf.startswith("_") and not leaf.endswith("__")), (path, name)

