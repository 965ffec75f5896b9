r"""Deep Q-learning (DQN, Mnih et al. 2015) with experience replay and a target network (lesson 3).

DQN fits a network :math:`Q_\theta(s, a)` to the one-step Q-learning target. Two devices
keep the regression stable: a *replay buffer* :math:`\mathcal{D}` of past transitions,
sampled uniformly so the minibatches are close to independent, and a *target network*
:math:`Q_{\bar\theta}`, a lagging copy of :math:`Q_\theta` that the target is computed with,
so it does not move with every gradient step. For a minibatch :math:`B \subset \mathcal{D}`:

.. math::

    y_i = r_i + \gamma\,(1 - \text{terminated}_i)\,\max_{a'} Q_{\bar\theta}(s'_i, a')

    L(\theta) = \frac{1}{|B|} \sum_{i \in B} \ell\big(Q_\theta(s_i, a_i) - y_i\big)

with :math:`\ell` the Huber loss (δ = 1) or the square. Only ``terminated`` stops the
bootstrap: a transition cut by the time limit (``truncated``) still bootstraps from the
real next observation (``info["final_obs"]`` of a ``SAME_STEP`` vector env). Double DQN
(``double=True``) evaluates the online network's choice with the target network,
:math:`y_i = r_i + \gamma (1 - \text{terminated}_i) Q_{\bar\theta}(s'_i, \arg\max_{a'} Q_\theta(s'_i, a'))`;
``dueling=True`` uses the head :math:`Q = V + A - \operatorname{mean}_a A`
(:mod:`rlcourse.value.dqn_targets` has both). The target network follows by
:math:`\bar\theta \leftarrow \tau\theta + (1 - \tau)\bar\theta` every
``target_update_interval`` env steps; τ = 1 is the hard copy of the paper.

Behaviour is ε-greedy, with ε falling linearly from ``exploration_initial_eps`` to
``exploration_final_eps`` over the first ``exploration_fraction`` of the run.

Pseudocode (N environments stepped together; one *round* is ``train_freq`` vector steps)::

    initialise Q_θ, θ̄ ← θ, empty buffer D of capacity buffer_size
    repeat until `steps` env steps:
        for train_freq vector steps:
            ε ← linear schedule(env steps)
            a ← random action with probability ε, else argmax_a Q_θ(s, a)     (per env)
            step the envs; store (s, a, r, s'_real, terminated, truncated) in D
            every target_update_interval env steps: θ̄ ← τθ + (1 − τ)θ̄
        if env steps > learning_starts:                                     (update_round)
            α ← lr, or lr · (1 − env steps / steps) with lr_schedule="linear"
            for gradient_steps:
                B ← uniform minibatch of batch_size from D, and its targets y
                θ ← θ − α ∇θ L(θ), gradient norm clipped to max_grad_norm   (dqn_update, Adam)
        log one row

The flags ``use_target_network=False`` (the target uses :math:`Q_\theta` itself) and
``use_replay=False`` (D holds only the latest ``batch_size`` transitions, so every update
sees the same recent, correlated batch) switch the two devices off, for the notebook's
demonstration of divergence.

The defaults are the RL Zoo's hyperparameters for DQN on CartPole-v1
(rl-baselines3-zoo, ``hyperparams/dqn.yml``: lr 2.3e-3, batch 64, buffer 100,000,
learning_starts 1,000, γ 0.99, target_update_interval 10, train_freq 256, exploration
fraction 0.16, exploration_final_eps 0.04, net_arch [256, 256]) with two changes that
make the end of a run less of a gamble: ``gradient_steps`` 64 instead of 128 (one
update per four env steps, the ratio of Mnih et al. 2015) and a learning rate that falls
linearly to 0 (``lr_schedule="linear"``). With the RL Zoo's settings the greedy policy
solves CartPole and loses it again, over and over, until the last step; with ours it
still does (the cart drifts off the track when a small change flips the greedy action
in the states where the two actions' values are nearly equal), but less, and the model
saved at 100,000 steps scored 500, 235, 500, 99, 110 and 500 on seeds 0–5 (RL Zoo
settings: 96, 238, 120 on seeds 0–2). ``DQNConfig(gradient_steps=128,
lr_schedule="constant")`` is the RL Zoo's configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from rlcourse.config import ConfigError, check_choice, check_layers, check_range
from rlcourse.networks import clip_grad_norm, flatten_parameters, read_module, save_module
from rlcourse.run import (CHECKPOINT, NonFiniteError, Result, UnsupportedSpaceError, load_checkpoint,
                          progress_bar, save_checkpoint, seed_everything)
from rlcourse.value.dqn_targets import dqn_target, linear_epsilon, polyak_update, q_network, td_loss
from rlcourse.value.replay import ReplayBuffer

LOG_COLUMNS = ["env_steps", "return", "episodes", "epsilon", "lr", "loss", "q_mean"]


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    lr: float = 2.3e-3                    # Adam step size α
    batch_size: int = 64
    buffer_size: int = 100_000            # replay capacity
    learning_starts: int = 1_000          # env steps before the first update
    gamma: float = 0.99
    target_update_interval: int = 10      # env steps between target updates
    tau: float = 1.0                      # 1 = hard copy
    train_freq: int = 256                 # vector steps per round
    gradient_steps: int = 64              # updates per round (RL Zoo: 128)
    exploration_fraction: float = 0.16
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.04
    hidden: tuple[int, ...] = (256, 256)
    loss: str = "huber"
    max_grad_norm: float = 10.0
    num_envs: int = 1
    double: bool = False
    dueling: bool = False
    use_target_network: bool = True
    use_replay: bool = True
    lr_schedule: str = "linear"           # α falls linearly to 0 at the end of the run (RL Zoo: "constant")

    def __post_init__(self):
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "batch_size", 1, integer=True)
        check_range(self, "buffer_size", 1, integer=True)
        check_range(self, "learning_starts", 0, integer=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "target_update_interval", 1, integer=True)
        check_range(self, "tau", 0, 1, low_open=True)
        check_range(self, "train_freq", 1, integer=True)
        check_range(self, "gradient_steps", 0, integer=True)
        check_range(self, "exploration_fraction", 0, 1)
        check_range(self, "exploration_initial_eps", 0, 1)
        check_range(self, "exploration_final_eps", 0, 1)
        check_layers(self)
        check_choice(self, "loss", ("huber", "mse"))
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_range(self, "num_envs", 1, integer=True)
        check_choice(self, "lr_schedule", ("constant", "linear"))
        for flag in ("double", "dueling", "use_target_network", "use_replay"):
            check_choice(self, flag, (True, False))


class QPolicy(nn.Module):
    """A Q-network that acts greedily: ``act`` is :math:`\\arg\\max_a Q(s, a)`."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (256, 256),
                 dueling: bool = False):
        super().__init__()
        self.q = q_network(obs_dim, n_actions, tuple(hidden), dueling)
        self.spec = dict(self.q.spec)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs)

    @torch.no_grad()
    def act(self, obs, rng=None) -> int:
        """The greedy action for one observation."""
        return int(self.q(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).argmax())

    def save(self, directory) -> None:
        save_module(self, directory)

    @classmethod
    def load(cls, directory) -> "QPolicy":
        """The Q-network ``save`` wrote, in evaluation mode."""
        spec, weights = read_module(directory)
        spec.pop("kind")
        policy = cls(**spec)
        policy.load_state_dict(weights)
        return policy.eval()


def dqn_update(online: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, y: torch.Tensor,
               config: DQNConfig) -> tuple[float, float]:
    """One gradient step of the regression of Q(s, a) on the targets ``y``; return
    (loss, mean Q(s, a)). A non-finite loss is returned without stepping, for the caller
    to report. ``optimizer`` holds one flat parameter, the online network's
    (:func:`~rlcourse.networks.flatten_parameters`)."""
    (flat,) = optimizer.param_groups[0]["params"]
    ### BEGIN SOLUTION
    q_taken = online(batch["obs"]).gather(-1, batch["actions"].long().unsqueeze(-1)).squeeze(-1)
    loss = td_loss(q_taken, y, config.loss)
    if not torch.isfinite(loss):
        return float(loss.detach()), float("nan")
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    clip_grad_norm(flat, config.max_grad_norm)
    optimizer.step()
    ### END SOLUTION
    return float(loss.detach()), float(q_taken.detach().mean())


def update_round(online: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer,
                 buffer: ReplayBuffer, config: DQNConfig) -> tuple[list[float], list[float]]:
    """A round's ``gradient_steps`` updates on uniform minibatches; return their losses
    and mean Q-values (stopping after a non-finite loss).

    The target network does not move during a round (it is updated while acting), so
    the targets of all the round's minibatches can be computed before its first step,
    in a few large forward passes of 512 rows (large enough to be efficient, small
    enough to stay in the cache): faster than one pass per minibatch, and the same
    numbers. Double DQN and ``use_target_network=False`` need the online network, which
    changes after every step, so they compute each minibatch's target just before it.
    """
    batch = buffer.sample(config.batch_size * config.gradient_steps)
    if config.use_target_network and not config.double:
        slices = zip(*(batch[name].split(512) for name in ("rewards", "next_obs", "terminated")))
        y = torch.cat([dqn_target(rewards, next_obs, terminated, target, config.gamma)
                       for rewards, next_obs, terminated in slices])
    else:
        y = None
    minibatches = zip(*(column.split(config.batch_size) for column in batch.values()))
    losses, qs = [], []
    for k, columns in enumerate(minibatches):
        minibatch = dict(zip(batch, columns))
        if y is None:
            y_k = dqn_target(minibatch["rewards"], minibatch["next_obs"], minibatch["terminated"],
                             target if config.use_target_network else online, config.gamma,
                             double=config.double, online_net=online)
        else:
            y_k = y[k * config.batch_size:(k + 1) * config.batch_size]
        loss, q_mean = dqn_update(online, optimizer, minibatch, y_k, config)
        losses.append(loss)
        qs.append(q_mean)
        if not math.isfinite(loss):
            break
    return losses, qs


def _spaces(env_id: str, env_kwargs: dict | None) -> tuple[int, int]:
    probe = gym.make(env_id, **(env_kwargs or {}))
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UnsupportedSpaceError(f"dqn needs a flat Box observation space, but {env_id} has {obs_space}")
    if not isinstance(act_space, gym.spaces.Discrete):
        raise UnsupportedSpaceError(f"dqn needs a Discrete action space, but {env_id} has {act_space}")
    return obs_space.shape[0], int(act_space.n)


def train(env_id: str = "CartPole-v1", config: DQNConfig | None = None, *,
          steps: int = 100_000, seed: int = 0, out: str | Path | None = None,
          progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 50_000, resume: bool = False, threads: int = 1,
          callback: Callable[[int, nn.Module], None] | None = None) -> Result:
    """Run DQN for ``steps`` environment steps; return a Result holding the greedy QPolicy.

    The log has one row per round (``train_freq`` vector steps, then the round's updates;
    the last round may be shorter), columns ``LOG_COLUMNS``: ``return`` is the mean return
    of the episodes that ended in the round (NaN if none did), ``episodes`` their number,
    ``epsilon`` ε at the round's last step, ``lr`` the step size of its updates, ``loss``
    and ``q_mean`` means over its updates (NaN before ``learning_starts``).

    With ``out`` set, everything the run needs to go on (networks, optimiser, replay
    buffer, environments, random states, log) is checkpointed to ``out/checkpoint.pkl``
    every ``checkpoint_every`` env steps, and ``resume=True`` continues from there: the
    resumed run gives the same log, bit for bit, as one that was never stopped. It must
    be the same run: same environment, config, seed and ``steps``.

    Acting runs on one CPU thread; the updates on ``threads``. Two threads make them
    about 1.25× faster on an otherwise idle two-core machine and give the same log, bit
    for bit, but on a busy machine they can be many times slower, so the default is one.

    ``callback(env_steps, online_network)``, if given, is called after every vector step
    (the benchmarks evaluate with it); time spent in it is excluded from ``timing``.
    """
    config = config or DQNConfig()
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps = {steps!r} is out of range: it must be an integer >= 1")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads = {threads!r} is out of range: it must be an integer >= 1")
    obs_dim, n_actions = _spaces(env_id, env_kwargs)
    rng = seed_everything(seed)
    n = config.num_envs
    online = QPolicy(obs_dim, n_actions, config.hidden, config.dueling)
    target = QPolicy(obs_dim, n_actions, config.hidden, config.dueling)
    target.load_state_dict(online.state_dict())
    online_flat, target_flat = flatten_parameters(online), flatten_parameters(target)
    target_flat.requires_grad_(False)
    optimizer = torch.optim.Adam([online_flat], lr=config.lr, fused=True)
    capacity = config.buffer_size if config.use_replay else config.batch_size
    buffer = ReplayBuffer(capacity, (obs_dim,), seed=seed)
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **(env_kwargs or {}))
    obs, _ = envs.reset(seed=seed)
    run_id = {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}), "config": dataclasses.asdict(config),
              "seed": seed, "steps": steps}
    rows, env_steps, calls, episode_return = [], 0, 0, np.zeros(n)
    if resume:
        envs.close()
        state = _resume_state(out, run_id)
        online.load_state_dict(state["online"])
        target.load_state_dict(state["target"])
        optimizer.load_state_dict(state["optimizer"])
        buffer.load_state_dict(state["replay"])
        envs = gym.vector.SyncVectorEnv([functools.partial(_same, env) for env in state["envs"]],
                                        autoreset_mode=AutoresetMode.SAME_STEP)
        obs, episode_return = state["obs"], state["episode_return"]
        rows, env_steps, calls = state["rows"], state["env_steps"], state["calls"]
        rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
    target_every = max(config.target_update_interval // n, 1)   # in vector steps

    user_threads = torch.get_num_threads()
    torch.set_num_threads(1)   # acting on one observation: more threads only cost
    status, last_checkpoint = "finished", None
    next_checkpoint = (env_steps // checkpoint_every + 1) * checkpoint_every
    bar = progress_bar(steps, "dqn", progress)
    bar.update(env_steps)
    outside = 0.0     # seconds spent in the callback
    start = time.perf_counter()
    try:
        while env_steps < steps:
            finished, epsilon = [], config.exploration_final_eps
            for _ in range(config.train_freq):
                if env_steps >= steps:
                    break
                epsilon = linear_epsilon(env_steps, config.exploration_initial_eps,
                                         config.exploration_final_eps, config.exploration_fraction, steps)
                explore = rng.random(n) < epsilon
                actions = rng.integers(n_actions, size=n)
                if not explore.all():
                    with torch.inference_mode():
                        greedy = online(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()
                    actions = np.where(explore, actions, greedy)
                new_obs, reward, term, trunc, info = envs.step(actions)
                done = term | trunc
                real_next = new_obs
                if done.any():
                    real_next = new_obs.copy()
                    for i in np.flatnonzero(done):
                        real_next[i] = info["final_obs"][i]
                buffer.add(obs, actions, reward, real_next, term, trunc)
                episode_return += reward
                finished += [float(episode_return[i]) for i in np.flatnonzero(done)]
                episode_return[done] = 0.0
                obs = new_obs
                env_steps += n
                calls += 1
                bar.update(n)
                if config.use_target_network and calls % target_every == 0:
                    polyak_update(target_flat, online_flat, config.tau)
                if callback is not None:
                    entered = time.perf_counter()
                    callback(env_steps, online)
                    outside += time.perf_counter() - entered

            lr = config.lr * (1.0 - env_steps / steps if config.lr_schedule == "linear" else 1.0)
            losses, qs = [], []
            if env_steps > config.learning_starts and config.gradient_steps > 0:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.set_num_threads(threads)
                losses, qs = update_round(online, target, optimizer, buffer, config)
                torch.set_num_threads(1)
                if not math.isfinite(losses[-1]):
                    raise NonFiniteError("TD loss", env_steps, last_checkpoint)
            rows.append((env_steps, float(np.mean(finished)) if finished else float("nan"), len(finished),
                         epsilon, lr, float(np.mean(losses)) if losses else float("nan"),
                         float(np.mean(qs)) if qs else float("nan")))
            if out is not None and env_steps >= next_checkpoint:
                last_checkpoint = save_checkpoint(out, {
                    "run": run_id, "env_steps": env_steps, "calls": calls, "rows": list(rows),
                    "online": online.state_dict(), "target": target.state_dict(),
                    "optimizer": optimizer.state_dict(), "replay": buffer.state_dict(), "envs": envs.envs,
                    "obs": obs.copy(), "episode_return": episode_return.copy(),
                    "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}})
                next_checkpoint = (env_steps // checkpoint_every + 1) * checkpoint_every
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
        envs.close()
        torch.set_num_threads(user_threads)
    elapsed = time.perf_counter() - start - outside
    return Result(algo="dqn", env_id=env_id, env_kwargs=dict(env_kwargs or {}), config=config,
                  policy=online.eval(), log=pd.DataFrame(rows, columns=LOG_COLUMNS), seed=seed,
                  steps=env_steps, status=status,
                  timing={"seconds": elapsed, "steps_per_second": env_steps / max(elapsed, 1e-9)})


def _same(env: gym.Env) -> gym.Env:
    return env


def _resume_state(out, run_id: dict) -> dict:
    """The checkpoint in ``out``, after checking it belongs to the run described by ``run_id``."""
    if out is None or not (Path(out) / CHECKPOINT).is_file():
        raise ConfigError(f"resume=True needs a checkpoint to resume from, but there is no "
                          f"{CHECKPOINT} in {out}")
    state = load_checkpoint(out)
    saved = state.get("run", {})
    for key, value in run_id.items():
        if saved.get(key) != value:
            raise ConfigError(f"cannot resume from {Path(out) / CHECKPOINT}: it was saved by a run with "
                              f"{key} = {saved.get(key)!r}, this one has {key} = {value!r}")
    return state
