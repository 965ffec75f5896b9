"""Lesson 3: the DQN replay buffer — ring-buffer overwrites, uniform sampling, resuming."""

import io

import numpy as np
import pytest
import torch

from rlcourse.config import ConfigError
from rlcourse.value.replay import ReplayBuffer


def add_steps(buffer, first: int, n_steps: int, n_envs: int = 1):
    """Add transitions numbered first, first+1, …; the number is in obs, action and reward."""
    for start in range(first, first + n_steps * n_envs, n_envs):
        ids = np.arange(start, start + n_envs)
        buffer.add(obs=np.repeat(ids[:, None], 3, axis=1).astype(np.float32), action=ids,
                   reward=ids.astype(np.float32), next_obs=np.repeat(ids[:, None] + 0.5, 3, axis=1),
                   terminated=ids % 3 == 0, truncated=ids % 5 == 0)


def test_shapes_and_dtypes():
    buffer = ReplayBuffer(10, obs_shape=(3,), seed=0)
    add_steps(buffer, 0, 4, n_envs=2)
    batch = buffer.sample(5)
    assert batch["obs"].shape == (5, 3) and batch["obs"].dtype == torch.float32
    assert batch["next_obs"].shape == (5, 3) and batch["next_obs"].dtype == torch.float32
    assert batch["actions"].shape == (5,) and batch["actions"].dtype == torch.int64
    assert batch["rewards"].shape == (5,) and batch["rewards"].dtype == torch.float32
    assert batch["terminated"].dtype == torch.bool and batch["truncated"].dtype == torch.bool


def test_other_shapes_and_dtypes_and_one_unbatched_transition():
    buffer = ReplayBuffer(4, obs_shape=(2, 2), obs_dtype=np.uint8, action_shape=(2,),
                          action_dtype=np.float32, seed=0)
    buffer.add(np.full((2, 2), 7), np.array([0.5, -0.5]), 1.0, np.full((2, 2), 8), True, False)
    assert len(buffer) == 1
    batch = buffer.sample(1)
    assert batch["obs"].dtype == torch.uint8 and batch["obs"].shape == (1, 2, 2)
    assert batch["actions"].tolist() == [[0.5, -0.5]]
    assert batch["next_obs"].tolist() == [[[8, 8], [8, 8]]]
    assert batch["terminated"].tolist() == [True] and batch["truncated"].tolist() == [False]


def test_each_field_stays_with_its_transition():
    buffer = ReplayBuffer(50, obs_shape=(3,), seed=1)
    add_steps(buffer, 0, 10, n_envs=4)
    batch = buffer.sample(40)
    ids = batch["actions"]
    assert torch.equal(batch["obs"][:, 0], ids.float())
    assert torch.equal(batch["rewards"], ids.float())
    assert torch.equal(batch["next_obs"][:, 2], ids.float() + 0.5)
    assert torch.equal(batch["terminated"], ids % 3 == 0)
    assert torch.equal(batch["truncated"], ids % 5 == 0)


def test_wrap_around_overwrites_the_oldest():
    buffer = ReplayBuffer(5, obs_shape=(3,), seed=0)
    add_steps(buffer, 0, 4, n_envs=2)           # transitions 0..7 into 5 slots
    assert len(buffer) == 5
    assert sorted(buffer.actions.tolist()) == [3, 4, 5, 6, 7]
    assert set(buffer.sample(200)["actions"].tolist()) == {3, 4, 5, 6, 7}
    buffer.add(np.zeros((7, 3)), np.arange(100, 107), np.zeros(7), np.zeros((7, 3)),
               np.zeros(7, bool), np.zeros(7, bool))   # more than capacity at once
    assert sorted(buffer.actions.tolist()) == [102, 103, 104, 105, 106]


def test_sampling_is_with_replacement_and_only_from_stored_transitions():
    buffer = ReplayBuffer(20, obs_shape=(3,), seed=0)
    add_steps(buffer, 0, 12)
    ids = buffer.sample(5000)["actions"].numpy()
    assert set(ids.tolist()) == set(range(12))          # never an empty slot
    assert len(buffer.sample(30)["actions"]) == 30      # more than stored is fine
    repeats = [len(set(buffer.sample(12)["actions"].tolist())) < 12 for _ in range(50)]
    assert any(repeats)                                 # with replacement, like DQN's uniform sampling


def test_sampling_is_uniform_over_stored_transitions():
    buffer = ReplayBuffer(8, obs_shape=(3,), seed=3)
    add_steps(buffer, 0, 13)                 # 5..12 stored after wrapping
    draws = torch.cat([buffer.sample(4)["actions"] for _ in range(4000)]).numpy()
    assert set(draws.tolist()) == set(range(5, 13))
    counts = np.bincount(draws - 5, minlength=8)
    expected = len(draws) / 8
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 24.3                       # 7 degrees of freedom, p = 0.001


def test_state_dict_round_trip_of_a_full_buffer_resumes_exactly():
    buffer = ReplayBuffer(6, obs_shape=(3,), seed=4)
    add_steps(buffer, 0, 9)                  # full and wrapped
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)
    saved.seek(0)
    restored = ReplayBuffer(6, obs_shape=(3,), seed=99)
    restored.load_state_dict(torch.load(saved, weights_only=True))
    assert len(restored) == 6 and restored.pos == buffer.pos
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated"):
        assert np.array_equal(getattr(restored, name), getattr(buffer, name))
    for _ in range(5):                       # the same minibatches follow
        a, b = buffer.sample(4), restored.sample(4)
        assert all(torch.equal(a[k], b[k]) for k in a)
    add_steps(buffer, 9, 2)
    add_steps(restored, 9, 2)                # and new transitions go to the same slots
    assert np.array_equal(restored.actions, buffer.actions)


def test_state_dict_round_trip_of_a_partly_filled_buffer():
    buffer = ReplayBuffer(10, obs_shape=(3,), seed=0)
    add_steps(buffer, 0, 3)
    restored = ReplayBuffer(10, obs_shape=(3,))
    restored.load_state_dict(buffer.state_dict())
    assert len(restored) == 3 and np.array_equal(restored.actions, buffer.actions)
    with pytest.raises(ConfigError, match="capacity"):
        ReplayBuffer(11, obs_shape=(3,)).load_state_dict(buffer.state_dict())


@pytest.mark.parametrize("capacity", [0, -3, 2.5])
def test_bad_capacity_names_the_field(capacity):
    with pytest.raises(ConfigError, match="ReplayBuffer.capacity"):
        ReplayBuffer(capacity, obs_shape=(3,))


def test_bad_batch_size_names_the_field():
    buffer = ReplayBuffer(4, obs_shape=(3,))
    with pytest.raises(ConfigError, match="batch_size.*empty"):
        buffer.sample(2)
    add_steps(buffer, 0, 2)
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="batch_size"):
            buffer.sample(bad)
