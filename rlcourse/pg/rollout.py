"""Collect experience from Gymnasium vector environments into a time-major batch.

``Rollout(env_id, num_envs, seed).collect(policy, T)`` steps N environments T times, with
actions drawn by ``policy.sample(obs)`` (actions and their log-probabilities), and returns
a :class:`Batch` of ``[T, N]`` tensors (see :mod:`rlcourse.pg.psi` for what each holds).

Episode boundaries. Gymnasium 1.x vector environments reset a finished sub-environment
on the *next* step by default (``AutoresetMode.NEXT_STEP``): that step's action is
ignored and its reward is 0, and a collector that does not know it trains on a fake
transition across the boundary. We ask for ``AutoresetMode.SAME_STEP`` instead: the step
that ends an episode already returns the first observation of the next one, and the
real final observation arrives in ``info["final_obs"]``. So every stored transition
(s_t, a_t, r_t, s_{t+1}) belongs to one episode, and ``next_obs[t]`` is the real s_{t+1},
from which a truncated episode is bootstrapped.

Off the main process. ``vectorization="async"`` steps each environment in a worker process
of its own (``gym.vector.AsyncVectorEnv``): worth it when the simulator, not the network,
takes the time (MuJoCo), and the same numbers as ``"sync"`` bit for bit, since each
environment is seeded and stepped the same way wherever it runs.

Gymnasium's own vectorised implementations. ``vectorization="vector_entry_point"`` builds
the environment's ``vector_entry_point`` (CartPole: one NumPy simulation of all N). Those
know only ``NEXT_STEP``: the step that ends an episode returns its real final observation,
and the next step of that environment is a *reset step* (action ignored, reward 0, the
next episode's first observation returned). The collector still steps it, but marks its
transition ``valid = False``: it crosses the boundary from one episode to the next and must
not be trained on (the trainers drop those rows after computing Ψ; the done flag of the
step before already cuts GAE there). Reset steps count as environment steps, as in SB3.

Normalisation (off by default; :mod:`rlcourse.pg.normalize`). With an observation
normaliser, every observation the environments return is counted into its statistics and
the batch holds the normalised ones, the policy's inputs (``obs``, ``next_obs``); with a
reward scaler, ``rewards`` holds the scaled rewards. ``episode_returns`` are always the
environments' own, so the log reads as without them.

Action bounds. A Gaussian policy's sample can fall outside a Box's bounds; the environment
gets ``clip(a, low, high)``, while the batch keeps the unclipped a and its log-probability,
so that the ratio π_θ(a | s)/π_θold(a | s) is one of densities of the same sample (as SB3 and
CleanRL do; the docs page on MuJoCo and Box2D weighs it against a tanh-squashed Gaussian).
A squashed policy (``policy.squash``) samples u; the environment gets ``policy.squash_action(u)``,
inside the bounds, and the batch keeps u, at which its log-density is evaluated.

Exploration noise. At the start of every :meth:`Rollout.collect` the policy's
``reset_noise(N)`` is called: gSDE draws its noise matrices there (others do nothing).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from rlcourse.config import ConfigError
from rlcourse.envs.snapshot import restored, simulator_state
from rlcourse.networks import owned
from rlcourse.pg.normalize import VECTOR_ENTRY_POINT, ObsNormalizer, RewardScaler
from rlcourse.run import random_state, restore_random_state


class SamplingPolicy(Protocol):
    """What :meth:`Rollout.collect` needs of a policy (:class:`rlcourse.pg.policies.Policy` has it all):
    actions for a batch of observations, with their log-probabilities; a new draw of its exploration
    noise at the start of each rollout (gSDE); and, if it squashes, the action for the environment."""

    squash: bool

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]: ...

    def reset_noise(self, num_envs: int) -> None: ...

    def squash_action(self, u: Tensor) -> Tensor: ...


@dataclasses.dataclass
class Batch:
    obs: Tensor  # [T, N, obs_dim]  s_t
    actions: Tensor  # [T, N] (Discrete) or [T, N, act_dim] (Box)
    logp: Tensor  # [T, N]  log π_old(a_t | s_t) at collection time
    rewards: Tensor  # [T, N]
    terminated: Tensor  # [T, N] bool
    truncated: Tensor  # [T, N] bool
    next_obs: Tensor  # [T, N, obs_dim]  the real s_{t+1} (final observation at an episode's end)
    starts: Tensor  # [T, N] bool: s_t is the first state of its episode
    timesteps: Tensor  # [T, N] long: t's index within its episode
    valid: Tensor | None = None  # [T, N] bool: a real transition, not a NEXT_STEP reset step (None: all are)
    values: Tensor | None = None  # [T, N]  V(s_t), filled by add_values
    next_values: Tensor | None = None  # [T, N]  V(s_{t+1})
    episode_returns: list[float] = dataclasses.field(default_factory=list)  # episodes that ended here
    episode_lengths: list[int] = dataclasses.field(default_factory=list)

    @property
    def size(self) -> int:
        return self.rewards.numel()

    @torch.no_grad()
    def add_values(self, value_fn: Callable[[Tensor], Tensor]) -> Batch:
        """Fill ``values`` and ``next_values`` with one batched pass of the critic each."""
        self.values = value_fn(self.obs)
        self.next_values = value_fn(self.next_obs)
        return self


class Rollout:
    """N copies of an environment, stepped together, that remember where they left off."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        env_kwargs: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        *,
        vectorization: str = "sync",
    ) -> None:
        self.vectorization = vectorization
        if vectorization == VECTOR_ENTRY_POINT:
            self.envs = native_vector_env(env_id, num_envs, env_kwargs)
        else:
            self.envs = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode=vectorization,
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                # async: each worker's environment can be sent back whole for a checkpoint
                wrappers=[SendBack] if vectorization == "async" else None,
                **(env_kwargs or {}),
            )
        # NEXT_STEP: an environment whose episode ended is reset by its next step (see the module's docstring)
        self.next_step_reset = self.envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        self.single_action_space = self.envs.single_action_space
        self.single_observation_space = self.envs.single_observation_space
        self.continuous = isinstance(self.single_action_space, gym.spaces.Box)
        self.obs_normalizer: ObsNormalizer | None = None  # see normalize()
        self.reward_scaler: RewardScaler | None = None
        obs, _ = self.envs.reset(seed=seed)
        self.envs.action_space.seed(seed)
        self.obs: np.ndarray = obs  # where each environment stands (as the environment sent it)
        self.starts = np.ones(num_envs, dtype=bool)
        self.resetting = np.zeros(num_envs, dtype=bool)  # NEXT_STEP: the next step of these is a reset step
        self.timesteps = np.zeros(num_envs, dtype=np.int64)
        self.episode_return = np.zeros(num_envs)
        self.env_steps = 0
        self.device = torch.device(device)  # where the policy runs and the batch goes

    def normalize(self, obs: ObsNormalizer | None = None, rewards: RewardScaler | None = None) -> Rollout:
        """From now on normalise observations with ``obs`` (counting the ones the environments
        stand at first) and scale rewards with ``rewards`` (None: not normalised)."""
        if obs is not None:
            obs.update(self.obs)
        self.obs_normalizer, self.reward_scaler = obs, rewards
        return self

    @classmethod
    def for_config(
        cls, env_id: str, config: Any, seed: int, env_kwargs: dict[str, Any] | None, device: str | torch.device
    ) -> Rollout:
        """``config.num_envs`` environments stepped as ``config.vectorization`` says, with the
        observation normaliser and reward scaler its ``normalize_obs``/``normalize_reward`` ask for."""
        rollout = cls(env_id, config.num_envs, seed, env_kwargs, device, vectorization=config.vectorization)
        obs_dim = gym.spaces.flatdim(rollout.single_observation_space)
        return rollout.normalize(
            ObsNormalizer(obs_dim, config.clip_obs) if config.normalize_obs else None,
            RewardScaler(config.num_envs, config.gamma, config.clip_reward) if config.normalize_reward else None,
        )

    def close(self) -> None:
        self.envs.close()

    def __enter__(self) -> Rollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state_dict(self) -> dict[str, Any]:
        """Where every environment stands (the environments themselves, pickled), for a checkpoint,
        with the normalisation statistics (if any)."""
        envs: list[tuple[Any, dict[str, Any] | None]]  # (environment, what pickling it leaves out)
        if isinstance(self.envs, gym.vector.SyncVectorEnv):
            envs = [(env, simulator_state(env)) for env in self.envs.envs]
        elif isinstance(self.envs, gym.vector.AsyncVectorEnv):  # each worker sends its environment back, pickled
            envs = list(self.envs.call("inner"))
        else:  # vector_entry_point: one simulation of all N, pickled whole
            envs = [(self.envs, None)]
        state = {
            "envs": [env for env, _ in envs],
            "simulators": [simulation for _, simulation in envs],
            "obs": self.obs.copy(),
            "starts": self.starts.copy(),
            "resetting": self.resetting.copy(),
            "timesteps": self.timesteps.copy(),
            "episode_return": self.episode_return.copy(),
            "env_steps": self.env_steps,
        }
        if self.obs_normalizer is not None:
            state["obs_normalizer"] = self.obs_normalizer.state_dict()
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from a :meth:`state_dict`: the same environments, in the same state, and the same
        statistics (loaded into the normalisers in place: the policy holds the same one)."""
        self.envs.close()
        saved = zip(state["envs"], state.get("simulators") or [None] * len(state["envs"]))
        if self.vectorization == VECTOR_ENTRY_POINT:
            self.envs = state["envs"][0]
        elif self.vectorization == "sync":
            same: list[Callable[[], gym.Env]] = [functools.partial(restored, *pair) for pair in saved]
            self.envs = gym.vector.SyncVectorEnv(same, autoreset_mode=AutoresetMode.SAME_STEP)
        else:  # each worker restores its environment where it will run
            sent: list[Callable[[], gym.Env]] = [functools.partial(restored, *pair, SendBack) for pair in saved]
            self.envs = gym.vector.AsyncVectorEnv(sent, autoreset_mode=AutoresetMode.SAME_STEP)
        self.obs, self.starts, self.timesteps = state["obs"], state["starts"], state["timesteps"]
        self.resetting = state.get("resetting", np.zeros_like(self.starts))
        self.episode_return, self.env_steps = state["episode_return"], state["env_steps"]
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])

    def collect(self, policy: SamplingPolicy, steps: int) -> Batch:
        """Step every environment ``steps`` times with actions sampled from ``policy``."""
        n = self.obs.shape[0]
        # NumPy buffers, filled in place and handed to torch once at the end: at a few
        # environments per step, a dozen small torch writes per step would cost more than
        # the policy's forward pass.
        obs = np.empty((steps, *self.obs.shape), dtype=np.float32)
        next_obs = np.empty_like(obs)
        actions = np.empty(
            (steps, n, *(self.single_action_space.shape or ())), dtype=np.float32 if self.continuous else np.int64
        )
        logp = np.empty((steps, n), dtype=np.float32)
        rewards = np.empty((steps, n), dtype=np.float32)
        terminated = np.empty((steps, n), dtype=bool)
        truncated = np.empty((steps, n), dtype=bool)
        starts = np.empty((steps, n), dtype=bool)
        timesteps = np.empty((steps, n), dtype=np.int64)
        valid = np.empty((steps, n), dtype=bool) if self.next_step_reset else None
        finished_returns: list[float] = []
        finished_lengths: list[int] = []
        space = self.single_action_space
        low, high = (space.low, space.high) if isinstance(space, gym.spaces.Box) else (None, None)

        with torch.inference_mode():
            policy.reset_noise(n)
            for t in range(steps):
                obs[t], starts[t], timesteps[t] = self.policy_input(self.obs), self.starts, self.timesteps
                action, action_logp = policy.sample(torch.from_numpy(obs[t]).to(self.device))
                actions[t], logp[t] = action.cpu().numpy(), action_logp.cpu().numpy()
                if policy.squash:  # a = c + h tanh(u) for the environment; the batch keeps u
                    env_action = policy.squash_action(action).cpu().numpy()
                else:
                    env_action = np.clip(actions[t], low, high) if self.continuous else actions[t]
                new_obs, reward, term, trunc, info = self.envs.step(env_action)
                done = term | trunc
                real = None  # which transitions belong to an episode (None: all)
                if valid is not None:
                    real = valid[t] = ~self.resetting
                if self.obs_normalizer is not None:  # every first observation, no final one
                    self.obs_normalizer.update(new_obs[~done] if self.next_step_reset else new_obs)
                next_obs[t] = self.policy_input(new_obs if self.next_step_reset else real_next_obs(new_obs, done, info))
                rewards[t] = reward if self.reward_scaler is None else self.reward_scaler(reward, done, real)
                terminated[t], truncated[t] = term, trunc
                self.episode_return += reward
                for i in np.flatnonzero(done):
                    finished_returns.append(float(self.episode_return[i]))
                    finished_lengths.append(int(self.timesteps[i]) + 1)
                self.episode_return[done] = 0.0
                first = self.resetting if self.next_step_reset else done  # now at an episode's first state
                self.timesteps = np.where(done | first, 0, self.timesteps + 1)
                self.starts, self.resetting = first, done & self.next_step_reset
                self.obs = new_obs
        self.env_steps += steps * n

        def tensor(x: np.ndarray) -> Tensor:
            return torch.from_numpy(x).to(self.device)

        return Batch(
            obs=tensor(obs),
            actions=tensor(actions),
            logp=tensor(logp),
            rewards=tensor(rewards),
            terminated=tensor(terminated),
            truncated=tensor(truncated),
            next_obs=tensor(next_obs),
            starts=tensor(starts),
            timesteps=tensor(timesteps),
            valid=None if valid is None else tensor(valid),
            episode_returns=finished_returns,
            episode_lengths=finished_lengths,
        )

    def policy_input(self, obs: np.ndarray) -> np.ndarray:
        """What the policy sees of observations: normalised, if the rollout normalises them."""
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs)


def native_vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None) -> gym.vector.VectorEnv:
    """Gymnasium's own vectorised ``env_id`` (``vectorization_mode="vector_entry_point"``), or a
    :class:`ConfigError` if it has none or resets its environments in a way the collector does not know."""
    if gym.spec(env_id).vector_entry_point is None:
        raise ConfigError(
            f"vectorization='vector_entry_point': {env_id} has no vectorised implementation in Gymnasium "
            f"(no vector_entry_point in its registration); use 'sync' or 'async'"
        )
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **(env_kwargs or {}))
    mode = envs.metadata.setdefault("autoreset_mode", AutoresetMode.NEXT_STEP)  # Gymnasium's default
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        envs.close()
        raise ConfigError(
            f"vectorization='vector_entry_point': {env_id} resets its environments by {mode}, "
            f"which the collector does not handle; use 'sync' or 'async'"
        )
    return envs


def real_next_obs(new_obs: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """s_{t+1} of each environment: the returned observation, or the final one where an episode ended
    (the returned one is then the next episode's first)."""
    if not done.any():
        return new_obs
    real: np.ndarray = new_obs.copy()
    real[done] = np.stack(info["final_obs"][done])
    return real


class SendBack(gym.Wrapper):
    """An environment in an ``AsyncVectorEnv`` worker that can send its inner environment
    (wrappers, state, random generator) back for a checkpoint: ``envs.call("inner")``."""

    def inner(self) -> tuple[gym.Env, dict[str, Any] | None]:
        return self.env, simulator_state(self.env)


#: What a checkpoint can hold by name: a tensor, a network, an optimiser (None: left out).
Part = Tensor | torch.nn.Module | torch.optim.Optimizer | None


def training_state(
    rng: np.random.Generator | None = None, rollout: Rollout | None = None, **parts: Part
) -> dict[str, Any]:
    """What a checkpoint of a policy-gradient run holds: where the environments stand, the
    random state, and each of ``parts`` (networks, optimisers, tensors) by name. The
    networks' tensors are copied: ours are views of one flat parameter vector."""
    state: dict[str, Any] = {}
    if rollout is not None:
        if rng is None:
            raise ValueError("training_state: a rollout's checkpoint needs the run's generator, rng")
        state.update(rollout=rollout.state_dict(), rng=random_state(rng))
    for name, part in parts.items():
        if isinstance(part, torch.Tensor):
            state[name] = part.detach().clone()
        elif part is not None:
            state[name] = owned(part.state_dict()) if isinstance(part, torch.nn.Module) else part.state_dict()
    return state


def load_training_state(
    state: dict[str, Any], rng: np.random.Generator | None = None, rollout: Rollout | None = None, **parts: Part
) -> None:
    """Go on from a :func:`training_state`: every part as it was saved (tensors in place)."""
    for name, part in parts.items():
        if isinstance(part, torch.Tensor):
            part.copy_(state[name])
        elif part is not None:
            part.load_state_dict(state[name])
    if rollout is not None:
        if rng is None:
            raise ValueError("load_training_state: a rollout's checkpoint needs the run's generator, rng")
        rollout.load_state_dict(state["rollout"])
        restore_random_state(rng, state["rng"])
