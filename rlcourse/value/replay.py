r"""Experience replay: a preallocated ring buffer of transitions (lesson 3, DQN).

Why replay. Q-learning with a network takes a gradient step on the TD error

.. math::

    \delta = r + \gamma (1 - d) \max_{a'} Q_{\bar\theta}(s', a') - Q_\theta(s, a)

Fed the transitions in the order the agent meets them, consecutive samples are strongly
correlated (one episode, one part of the state space), and the network chases the last
few hundred steps and forgets the rest. Storing the last ``capacity`` transitions and
training on minibatches drawn uniformly from them makes the samples close to independent,
and reuses every transition many times instead of once.

Why ``terminated`` and ``truncated`` are kept apart. The flag :math:`d` above is
``terminated``: the episode reached a terminal state and nothing follows, so the target
is :math:`r` alone. A ``truncated`` transition was cut by a time limit; the state it
reached still has a future, so its target still bootstraps with
:math:`\gamma \max_{a'} Q(s', a')`. Treating truncation as termination teaches the
network that states near the time limit are worth nothing. For the same reason
``next_obs`` is the *real* next observation: the final observation when an episode
ended, not the first observation of the next one that a vector env returns in its place.

The buffer is a set of NumPy arrays with a write position that wraps around, so the
oldest transition is overwritten first; :meth:`ReplayBuffer.sample` returns torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from rlcourse.config import ConfigError, check_range


class ReplayBuffer:
    """The last ``capacity`` transitions (obs, action, reward, next_obs, terminated, truncated)."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype=np.float32,
        action_shape: tuple[int, ...] = (),
        action_dtype=np.int64,
        seed: int | None = None,
    ):
        self.capacity = capacity
        check_range(self, "capacity", 1, integer=True)
        self.obs_shape = tuple(obs_shape)
        self.action_shape = tuple(action_shape)
        self.obs = np.zeros((capacity, *self.obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *self.obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *self.action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=bool)
        self.truncated = np.zeros(capacity, dtype=bool)
        self.pos = 0  # where the next transition goes
        self.size = 0  # how many are stored
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store N transitions at once: ``[N, ...]`` arrays from N environments (N may be 1).

        A single unbatched transition is accepted too. ``next_obs`` must be the real next
        observation (the final one when the episode ended).
        """
        obs = np.asarray(obs).reshape(-1, *self.obs_shape)
        n = len(obs)
        columns = {
            "obs": obs,
            "next_obs": np.asarray(next_obs).reshape(n, *self.obs_shape),
            "actions": np.asarray(action).reshape(n, *self.action_shape),
            "rewards": np.asarray(reward).reshape(n),
            "terminated": np.asarray(terminated).reshape(n),
            "truncated": np.asarray(truncated).reshape(n),
        }
        ### BEGIN SOLUTION
        keep = min(n, self.capacity)  # more than capacity at once: only the last ones survive
        index = (self.pos + np.arange(n - keep, n)) % self.capacity
        for name, values in columns.items():
            getattr(self, name)[index] = values[n - keep :]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        ### END SOLUTION

    def sample(self, batch_size: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """A minibatch of transitions drawn uniformly, with replacement."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(
                f"ReplayBuffer.sample batch_size = {batch_size!r} is out of range: it must be an integer in [1, inf)"
            )
        if self.size == 0:
            raise ConfigError(
                f"ReplayBuffer.sample batch_size = {batch_size!r}: the buffer is empty, add transitions first"
            )
        ### BEGIN SOLUTION
        index = self.rng.integers(self.size, size=batch_size)
        ### END SOLUTION
        return {
            name: torch.as_tensor(getattr(self, name)[index], device=device)
            for name in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
        }

    def state_dict(self) -> dict:
        """Everything needed to resume: the stored transitions, positions and the sampler's
        random state. Plain tensors, ints and strings, so ``torch.load(weights_only=True)``
        reads it back."""
        arrays = {
            name: torch.from_numpy(getattr(self, name)[: self.size].copy())
            for name in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
        }
        return {
            **arrays,
            "capacity": self.capacity,
            "pos": self.pos,
            "size": self.size,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ConfigError(
                f"ReplayBuffer.capacity = {self.capacity} does not match the saved "
                f"buffer's capacity {state['capacity']}"
            )
        for name in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated"):
            array = getattr(self, name)
            saved = state[name].numpy()
            if saved.shape[1:] != array.shape[1:]:
                raise ConfigError(
                    f"ReplayBuffer.{name} has shape {array.shape[1:]} per transition, "
                    f"the saved buffer {saved.shape[1:]}"
                )
            array[:] = 0
            array[: len(saved)] = saved
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self.rng.bit_generator.state = state["rng"]
