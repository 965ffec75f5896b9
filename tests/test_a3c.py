import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

import rlcourse
from rlcourse.algorithms import ALGORITHMS
from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.pg import a3c
from rlcourse.pg.a3c import A3CConfig, SharedAdam, WorkerError
from rlcourse.play import evaluate_policy
from rlcourse.run import NonFiniteError

from faults import FaultyReward

ROOT = Path(__file__).resolve().parents[1]
TINY = A3CConfig(workers=2, hidden=(16,), log_interval=20)


# ---------------------------------------------------------------- test environments (importable by workers)


class Crash(Exception):
    pass


class CrashingCartPole(gym.Wrapper):
    """CartPole that raises at its ``at``-th step, in the worker whose seed is ``crash_seed``."""

    def __init__(self, at: int):
        from gymnasium.envs.classic_control import CartPoleEnv

        super().__init__(CartPoleEnv())
        self.at, self.count, self.armed = at, 0, False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.armed = seed == 1000          # only worker 1 (seed 0 + 1000·1) crashes
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.count += 1
        if self.armed and self.count == self.at:
            raise Crash("the environment broke on purpose")
        return self.env.step(action)


def faulty_cartpole(at: int, fault: str):
    from gymnasium.envs.classic_control import CartPoleEnv

    return FaultyReward(CartPoleEnv(), at, fault)


for _name, _entry, _kwargs in (("test/A3CCrashCartPole-v0", CrashingCartPole, {"at": 300}),
                               ("test/A3CNaNCartPole-v0", faulty_cartpole, {"at": 400, "fault": "nan"}),
                               ("test/A3CInterruptCartPole-v0", faulty_cartpole, {"at": 400, "fault": "interrupt"})):
    if _name not in gym.registry:
        gym.register(id=_name, entry_point=_entry, max_episode_steps=500, kwargs=_kwargs)


@pytest.fixture(autouse=True)
def no_orphans():
    """Every test leaves no worker process behind."""
    yield
    assert multiprocessing.active_children() == []


def assert_gone(pids):
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:          # a zombie is gone too, only not yet reaped
            assert f.read().split(") ")[1][0] == "Z", f"worker {pid} is still running"


def worker_pids():
    return [p.pid for p in multiprocessing.active_children()]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("field, value, message", [
    ("workers", 0, r"A3CConfig.workers = 0 is out of range: it must be in \[1, inf\)"),
    ("n_steps", 2.5, r"A3CConfig.n_steps = 2.5 must be an integer"),
    ("advantage", "td", r"A3CConfig.advantage = 'td' is not allowed: it must be one of 'n-step', 'gae'"),
    ("lr", 0.0, r"A3CConfig.lr = 0.0 is out of range: it must be in \(0, inf\)"),
    ("adam_betas", (0.9, 1.0), r"A3CConfig.adam_betas = \(0.9, 1.0\) must be two numbers in \[0, 1\)"),
    ("gamma", 1.5, r"A3CConfig.gamma = 1.5 is out of range: it must be in \[0, 1\]"),
    ("max_grad_norm", 0, r"A3CConfig.max_grad_norm = 0 is out of range: it must be in \(0, inf\)"),
    ("hidden", (64, 0), r"A3CConfig.hidden = \(64, 0\) must be a tuple of layer sizes"),
    ("lock", "yes", r"A3CConfig.lock = 'yes' is not allowed"),
])
def test_config_errors_name_the_field_and_its_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        A3CConfig(**{field: value})


def test_the_loss_settings_go_to_a2c_loss_unchanged():
    config = A3CConfig(advantage="gae", gae_lambda=0.9, ent_coef=0.02, vf_coef=0.25, shared=True, hidden=(8,))
    loss_config = config.a2c()
    for field in ("advantage", "gae_lambda", "gamma", "ent_coef", "vf_coef", "shared", "hidden",
                  "normalize_advantages", "n_steps", "num_envs"):
        assert getattr(loss_config, field) == getattr(config, field)
    assert ALGORITHMS["a3c"].config is A3CConfig and ALGORITHMS["a3c"].train is a3c.train


# ---------------------------------------------------------------- shared Adam


def test_shared_adam_gives_torch_adams_numbers():
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    shared = SharedAdam(ours.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-5)
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-5, foreach=False)
    x = torch.randn(16, 4)
    for _ in range(5):
        for net, opt in ((ours, shared), (theirs, reference)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(shared.state[p][key], reference.state[q][key], rtol=0, atol=0)


def step_in_child(param, optimizer):
    param.grad = torch.ones_like(param)
    optimizer.step()


def test_a_step_in_another_process_moves_the_shared_parameters_and_statistics():
    param = torch.nn.Parameter(torch.zeros(3))
    param.data.share_memory_()
    optimizer = SharedAdam([param], lr=0.1)
    child = mp.get_context("spawn").Process(target=step_in_child, args=(param, optimizer))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    state = optimizer.state[param]
    assert state["step"].item() == 1
    torch.testing.assert_close(state["exp_avg"], torch.full((3,), 0.1))       # (1 − β1) g
    torch.testing.assert_close(param.data, torch.full((3,), -0.1))           # Adam's first step: −α sign(g)


# ---------------------------------------------------------------- training runs


def test_short_run_logs_finite_numbers_and_the_saved_policy_loads(tmp_path):
    calls = []
    result = a3c.train("CartPole-v1", TINY, steps=3000, seed=0, out=tmp_path / "ck", checkpoint_every=1000,
                       callback=lambda env_steps, policy: calls.append(env_steps), callback_every=1000)
    assert result.status == "finished" and result.steps == 3000
    log = result.log
    assert list(log.columns) == a3c.LOG_COLUMNS and set(log["worker"]) == {0, 1}
    assert log["env_steps"].is_monotonic_increasing and log["env_steps"].iloc[-1] == 3000
    assert np.isfinite(log[["policy_loss", "value_loss", "entropy", "grad_norm"]].to_numpy()).all()
    assert log["episodes"].sum() > 10
    # one call after the first update that reaches each thousand, with every worker paused
    assert len(calls) == 3 and all(1000 * k <= c < 1000 * k + 10 for k, c in zip((1, 2, 3), calls)), calls
    assert (tmp_path / "ck" / "checkpoint.pkl").is_file()
    result.save(tmp_path / "run")
    loaded = rlcourse.load(tmp_path / "run")
    assert loaded.algo == "a3c" and loaded.config == TINY
    obs = gym.make("CartPole-v1").observation_space.sample()
    assert loaded.policy.act(obs) == result.policy.act(obs)
    assert evaluate_policy(loaded.policy, "CartPole-v1", episodes=3, print_fn=None) == \
        evaluate_policy(result.policy, "CartPole-v1", episodes=3, print_fn=None)


def test_one_worker_is_reproducible_bit_for_bit():
    config = A3CConfig(workers=1, hidden=(16,), log_interval=25)
    evaluations = [[], []]
    runs = [a3c.train("CartPole-v1", config, steps=1500, seed=3, callback_every=500,
                      callback=lambda s, p, k=k: evaluations[k].append(
                          (s, evaluate_policy(p, "CartPole-v1", episodes=2, print_fn=None)["mean_return"])))
            for k in range(2)]
    pd.testing.assert_frame_equal(runs[0].log, runs[1].log)
    assert evaluations[0] == evaluations[1] and len(evaluations[0]) == 3
    for a, b in zip(runs[0].policy.parameters(), runs[1].policy.parameters()):
        assert torch.equal(a, b)


def test_a_crashing_worker_stops_the_run_and_is_named():
    pids = []
    with pytest.raises(WorkerError, match=r"A3C worker 1 failed: Crash: the environment broke on purpose") as err:
        a3c.train("test/A3CCrashCartPole-v0", TINY, steps=20_000, seed=0,
                  callback=lambda s, p: pids.extend(worker_pids()), callback_every=100)
    assert err.value.rank == 1 and "Traceback" in str(err.value)
    assert len(pids) >= 2
    assert_gone(set(pids))


def test_a_non_finite_loss_names_the_step():
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(worker [01]\) at env step \d+") as err:
        a3c.train("test/A3CNaNCartPole-v0", TINY, steps=20_000, seed=0)
    assert 400 <= err.value.step <= 1000


def test_ctrl_c_stops_the_workers_and_returns_what_was_learned():
    pids = []

    def interrupt(env_steps, policy):
        pids.extend(worker_pids())
        if env_steps >= 1000:
            raise KeyboardInterrupt

    result = a3c.train("CartPole-v1", TINY, steps=100_000, seed=0, callback=interrupt, callback_every=500)
    assert result.status == "interrupted" and 1000 <= result.steps < 2000
    assert evaluate_policy(result.policy, "CartPole-v1", episodes=2, print_fn=None)["mean_return"] > 0
    assert len(set(pids)) == 2
    assert_gone(set(pids))


def test_ctrl_c_in_a_terminal_stops_the_run_cleanly(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the parent handles it, the
    workers ignore it and are stopped, the policy is saved, the exit status is 130."""
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlcourse", "train", "a3c", "--env", "CartPole-v1", "--steps",
                             "10000000", "--out", str(out), "--quiet", "--set", "hidden=16", "log_interval=10"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,   # SIGINT's default action, as from a terminal (a
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # runner's may ignore it
    try:
        children = []
        deadline = time.monotonic() + 60
        while len(children) < 2 and time.monotonic() < deadline:   # wait for both workers to be at work
            time.sleep(0.5)
            children = [pid for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]   # not the resource tracker
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "interrupted at env step" in stderr and "Traceback" not in stderr
    assert len(children) == 2
    assert_gone(int(pid) for pid in children)
    assert rlcourse.load(out).status == "interrupted"


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, whatever the runner set: a job a shell starts in
    the background (``cmd &``, nohup) has SIGINT ignored, and so has every process it starts."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_the_middle_of_reading_a_message_waits_until_it_is_read(python_sigint):
    """An interrupt that lands while the parent reads a worker's message is held back until the
    read is over, then raised: cut in half, the read would leave the pipe mid-message and the
    shut-down's next read would wait forever."""
    import signal

    finished = []

    class InterruptedRead:
        def get(self, timeout):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C lands mid-read
            finished.append(True)  # ... and the read still completes
            return ("log", ())

    parent = object.__new__(a3c._Parent)
    parent.messages = InterruptedRead()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        parent._next_message()
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_the_workers_start_is_raised_once_they_have_started(python_sigint):
    """A Ctrl-C while the workers start (the parent ignores SIGINT then, for the children to inherit)
    is held pending and raised once both have started, not lost (the run would train on for its
    whole budget)."""
    import signal

    started = []

    class Starting:
        def start(self):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C lands during the start
            started.append(True)

    parent = object.__new__(a3c._Parent)
    parent.processes = [Starting(), Starting()]
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        parent._start_workers()
    assert started == [True, True]
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_cli_trains_two_workers_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "a3c", "--env", "CartPole-v1", "--steps", "3000", "--out", str(out), "--quiet",
                 "--set", "workers=2", "hidden=32,32", "log_interval=50"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["env_steps"] == 3000
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["workers"] == 2 and config["hidden"] == [32, 32]
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 2
    # a KeyboardInterrupt inside a worker counts as Ctrl-C: exit status 130, the policy saved
    assert main(["train", "a3c", "--env", "test/A3CInterruptCartPole-v0", "--steps", "20000", "--out",
                 str(tmp_path / "stopped"), "--quiet", "--set", "hidden=16"]) == 130
    assert rlcourse.load(tmp_path / "stopped").status == "interrupted"
    assert main(["train", "a3c", "--env", "CartPole-v1", "--set", "workers=0"]) == 2
    assert "A3CConfig.workers = 0 is out of range" in capsys.readouterr().err


# ---------------------------------------------------------------- learning and the benchmark


@pytest.mark.slow
def test_two_workers_reach_475_within_500k_steps():
    # the bar, measured as benchmarks/a3c.py does: 10 greedy episodes every 2,000 env steps
    reached = []

    def evaluate(env_steps, policy):
        if not reached and evaluate_policy(policy, "CartPole-v1", episodes=10, seed=0,
                                           print_fn=None)["mean_return"] >= 475:
            reached.append(env_steps)

    result = a3c.train("CartPole-v1", A3CConfig(workers=2), steps=500_000, seed=0, callback=evaluate,
                       callback_every=2_000)
    assert result.status == "finished" and reached, "no evaluation reached 475"


def test_benchmark_quick_runs_and_prints_the_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "a3c.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(\d) workers?\s+[\d,]+\s+[\d.]+x\s+(?:[\d,]+|> 2,000)\s+\d/1\s+[\d.]+$", proc.stdout,
                      flags=re.MULTILINE)
    assert rows == ["1", "2"], proc.stdout


# ---------------------------------------------------------------- squashed Gaussians and gSDE (docs/mujoco.md)


class InsideBoundsPendulum(gym.Wrapper):
    """Pendulum that raises on an action on or beyond its bounds ±2 (importable by workers): clipping puts
    about 5% of σ = 1 samples there, c + h tanh(u) none."""

    def __init__(self):
        from gymnasium.envs.classic_control import PendulumEnv

        super().__init__(PendulumEnv())

    def step(self, action):
        if np.abs(action).max() >= 2.0:
            raise Crash(f"action {action} is not strictly inside (-2, 2)")
        return self.env.step(action)


if "test/A3CInsideBoundsPendulum-v1" not in gym.registry:
    gym.register(id="test/A3CInsideBoundsPendulum-v1", entry_point=InsideBoundsPendulum, max_episode_steps=200)


def test_gaussian_option_errors_name_a3c():
    with pytest.raises(ConfigError, match=r"A3CConfig.sde_sample_freq = 0 is not allowed"):
        A3CConfig(sde_sample_freq=0)
    with pytest.raises(ConfigError, match=r"A3CConfig.squash_output = 'yes' is not allowed"):
        A3CConfig(squash_output="yes")


def test_squashed_gsde_workers_act_inside_the_bounds(tmp_path):
    from dataclasses import replace

    from rlcourse.pg.policies import GSDEPolicy

    config = A3CConfig(workers=1, hidden=(16,), log_interval=10, squash_output=True, use_sde=True,
                       sde_sample_freq=4)
    result = a3c.train("test/A3CInsideBoundsPendulum-v1", config, steps=600, seed=1)
    policy = result.policy
    assert isinstance(policy, GSDEPolicy) and policy.squash and policy.sde_sample_freq == 4
    assert result.log["episodes"].sum() == 3 and np.isfinite(result.log["entropy"]).all()
    result.save(tmp_path)
    assert rlcourse.load(tmp_path).policy.spec == policy.spec
    # the same run with clipping sends an action onto the bound, and the worker that did is named
    with pytest.raises(WorkerError, match="A3C worker 0 failed: Crash: action"):
        a3c.train("test/A3CInsideBoundsPendulum-v1", replace(config, squash_output=False), steps=600)
