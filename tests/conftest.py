import sys
from pathlib import Path

import gymnasium as gym
import matplotlib
import pytest

matplotlib.use("Agg")

import rlcourse  # noqa: E402,F401  (registers rlcourse/Corridor-v0)
from faults import OddSpaces  # noqa: E402

# Entry points are named by string, so that the environments pickle (checkpoints hold them).

for _name, _kwargs in (("test/FaultyCorridor-v0", {}),
                       ("test/InterruptAt900-v0", {"at": 900, "fault": "interrupt"}),
                       ("test/NaNAt25000-v0", {"at": 25_000, "fault": "nan"})):
    if _name not in gym.registry:
        gym.register(id=_name, entry_point="faults:faulty_corridor", max_episode_steps=100, kwargs=_kwargs)

BOX = gym.spaces.Box(-1.0, 1.0, (3,))
for _name, _entry, _kwargs in (
        ("test/NaNRewardCartPole-v0", "faults:faulty_cartpole", {"at": 1000, "fault": "nan"}),
        ("test/InterruptCartPole-v0", "faults:faulty_cartpole", {"at": 500, "fault": "interrupt"}),
        ("test/DictObs-v0", OddSpaces, {"observation_space": gym.spaces.Dict({"x": BOX}),
                                        "action_space": gym.spaces.Discrete(2)}),
        ("test/MultiDiscreteActions-v0", OddSpaces, {"observation_space": BOX,
                                                     "action_space": gym.spaces.MultiDiscrete([2, 3])})):
    if _name not in gym.registry:
        gym.register(id=_name, entry_point=_entry, max_episode_steps=500, kwargs=_kwargs)


@pytest.fixture(scope="module")
def one_thread():
    """Tests that build networks outside ``train`` run torch on one thread: with two on a busy
    machine, the orthogonal initialisation's QR alone takes about 0.1 s per layer."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mujoco_box2d():
    """benchmarks/mujoco_box2d.py as a module (its folder is not a package)."""
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        import mujoco_box2d
    finally:
        sys.path.remove(benchmarks)
    return mujoco_box2d
