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
            for gradient_steps (−1: the round's env steps):
                B ← uniform minibatch of batch_size from D, and its targets y
                θ ← θ − α ∇θ L(θ), gradient norm clipped to max_grad_norm   (dqn_update, Adam)
        log one row

The flags ``use_target_network=False`` (the target uses :math:`Q_\theta` itself) and
``use_replay=False`` (D holds only the latest ``batch_size`` transitions, so every update
sees the same recent, correlated batch) switch the two devices off, for the notebook's
demonstration of divergence.

Why the greedy policy of a DQN forgets CartPole, and what the defaults change. With the RL
Zoo's tuned hyperparameters (``RL_ZOO``, from rl-baselines3-zoo ``hyperparams/dqn.yml``) the
greedy policy balances the pole for all 500 steps at some evaluations and about 100 at the
others, and the model saved at 100,000 steps scored ≥ 475 for 2 of 10 seeds. The failed
policies balance the pole, tilted by 5–8°, and the cart accelerates under it until it
leaves the track after about 100 steps. The network does not know the track ends: it
predicts :math:`Q \approx 107`–129 for a cart about to leave it (true value: about 1),
because of two things:

* **The Huber loss treats the most informative transitions as outliers.** Its gradient is
  :math:`\operatorname{clip}(Q - y, -1, 1)`. The transitions that end an episode at the
  track's edge have targets :math:`y = 1` and predictions near 100, so TD errors near 100,
  and each counts no more than an ordinary transition with an error of 1. The clip was
  made for Atari's rewards clipped to ±1 (Mnih et al. 2015); CartPole's values are 100
  times that scale. The square (``loss="mse"``, CleanRL's choice) weighs them by their
  error, and the network learns that the edge is worth little (Q of 26–52 there).
* **γ = 0.99 asks more of the target network than the budget gives.** The values must
  grow from 0 to :math:`1/(1-\gamma) = 100` one backup per round (390 rounds in 100,000
  steps, :math:`0.99^{390} \approx 0.02`), and every backup's error is carried on for about
  :math:`1/(1-\gamma)` more, so the mean Q overshoots 100 and is still climbing at the
  end of the run (to 110–170), and late collapses came with that climb. With γ = 0.98
  (the horizon of 50 steps the RL Zoo gives PPO on CartPole) the values settle near
  :math:`1/(1-\gamma) = 50` by 40,000 steps and stay there, while 50 steps is still far
  enough ahead to see the end of the track coming.

The greedy action is decided by the action gap :math:`Q(s, 1) - Q(s, 0)`, a fraction of a
point where Q is about 100 (Wang et al. 2016 make the same point for Atari), so either
error is enough to flip it in many states at once.

``DQNConfig()``'s defaults are therefore the RL Zoo's values with four changes:
``loss="mse"`` and ``gamma=0.98`` (the two above), ``gradient_steps`` 64 instead of 128
(one update per four env steps, the ratio of Mnih et al. 2015) and a step size that falls
linearly to 0 (``lr_schedule="linear"``). Trained for 100,000 steps (``rlcourse train dqn
--env CartPole-v1 --steps 100000 --seed S``) and judged on 20 greedy episodes seeded
1000–1019 (``rlcourse evaluate RUN --episodes 20 --seed 1000``), the final model scored
≥ 475 for 9 of the 10 seeds 0–9 (500 on nine, 389 on seed 5) and for 4 of 4 more, seeds
10–13; with the RL Zoo's settings (``--set gamma=0.99 loss=huber gradient_steps=128
lr_schedule=constant``) for 2 of 10, and with the defaults before this change (the Huber
loss, γ = 0.99) for 3 of 10. ``DQNConfig(**RL_ZOO)`` is the RL Zoo's configuration.

Other environments. :meth:`DQNConfig.for_env` (what ``rlcourse train dqn`` and ``train``
start from) swaps in the RL Zoo's tuned values for the environments in :data:`TUNED`:
LunarLander-v3 (the ``box2d`` extra) with ``RL_ZOO_LUNAR_LANDER``, a round of 4 steps
followed by ``gradient_steps=-1`` updates, Stable-Baselines3's "as many updates as the round
took env steps" (here 4, one per env step). Every other environment, CartPole included,
gets ``DQNConfig()``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from rlcourse.config import check_choice, check_layers, check_range
from rlcourse.envs.snapshot import restored, simulator_state
from rlcourse.networks import clip_grad_norm, flatten_parameters, read_module, save_module
from rlcourse.run import (
    IterationRecord,
    NonFiniteError,
    Result,
    UnsupportedSpaceError,
    check_run_args,
    seed_everything,
    torch_threads,
)
from rlcourse.value.dqn_targets import dqn_target, linear_epsilon, polyak_update, q_network, td_loss
from rlcourse.value.replay import ReplayBuffer

LOG_COLUMNS = ["env_steps", "return", "episodes", "epsilon", "lr", "loss", "q_mean"]

# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1 (its budget: 50,000 steps); the Huber loss
# (δ = 1) and the gradient-norm clip at 10 are Stable-Baselines3's, which the Zoo runs
RL_ZOO: dict[str, Any] = dict(
    lr=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1_000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    hidden=(256, 256),
    loss="huber",
    max_grad_norm=10.0,
    lr_schedule="constant",
)

# rl-baselines3-zoo, hyperparams/dqn.yml, LunarLander-v3 (named LunarLander-v2, with the same values, until
# commit ad1ae18 of June 2025; https://github.com/DLR-RM/rl-baselines3-zoo/blob/22e3ff2450fd92033f7f032915e1f64894a09584/
# hyperparams/dqn.yml, the file as last changed in commit eec15dc). Its budget: n_timesteps 1e5. gradient_steps -1
# is SB3's "as many as the env steps collected since the last update"; policy_kwargs net_arch=[256, 256] is
# hidden (ReLU, as SB3's and ours). The fields the entry leaves out take SB3's DQN defaults
# (stable_baselines3/dqn/dqn.py): the Huber loss, the gradient-norm clip at 10, τ = 1, ε from 1, a constant lr.
RL_ZOO_LUNAR_LANDER: dict[str, Any] = dict(
    lr=6.3e-4,
    batch_size=128,
    buffer_size=50_000,
    learning_starts=0,
    gamma=0.99,
    target_update_interval=250,
    train_freq=4,
    gradient_steps=-1,
    exploration_fraction=0.12,
    exploration_final_eps=0.1,
    hidden=(256, 256),
    loss="huber",
    max_grad_norm=10.0,
    lr_schedule="constant",
)

# the environments whose runs start from tuned values instead of DQNConfig()'s (CartPole's: see the docstring)
TUNED: dict[str, dict[str, Any]] = {"LunarLander-v3": RL_ZOO_LUNAR_LANDER}


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    lr: float = 2.3e-3  # Adam step size α
    batch_size: int = 64
    buffer_size: int = 100_000  # replay capacity
    learning_starts: int = 1_000  # env steps before the first update
    gamma: float = 0.98  # RL Zoo: 0.99
    target_update_interval: int = 10  # env steps between target updates
    tau: float = 1.0  # 1 = hard copy
    train_freq: int = 256  # vector steps per round
    gradient_steps: int = 64  # updates per round (RL Zoo: 128); -1: one per env step of the round
    exploration_fraction: float = 0.16
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.04
    hidden: tuple[int, ...] = (256, 256)
    loss: str = "mse"  # RL Zoo (SB3): "huber"
    max_grad_norm: float = 10.0
    num_envs: int = 1
    double: bool = False
    dueling: bool = False
    use_target_network: bool = True
    use_replay: bool = True
    lr_schedule: str = "linear"  # α falls linearly to 0 at the end of the run (RL Zoo: "constant")

    def __post_init__(self):
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "batch_size", 1, integer=True)
        check_range(self, "buffer_size", 1, integer=True)
        check_range(self, "learning_starts", 0, integer=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "target_update_interval", 1, integer=True)
        check_range(self, "tau", 0, 1, low_open=True)
        check_range(self, "train_freq", 1, integer=True)
        check_range(self, "gradient_steps", -1, integer=True)
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

    @classmethod
    def for_env(cls, env_id: str) -> DQNConfig:
        """The defaults with the RL Zoo's tuned values for ``env_id`` swapped in (if :data:`TUNED` has them)."""
        return cls(**TUNED.get(env_id, {}))


class QPolicy(nn.Module):
    """A Q-network that acts greedily: ``act`` is :math:`\\arg\\max_a Q(s, a)`."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (256, 256), dueling: bool = False):
        super().__init__()
        self.q = q_network(obs_dim, n_actions, tuple(hidden), dueling)
        self.spec = dict(cast(dict, self.q.spec))  # q_network's description of itself

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs)

    @torch.no_grad()
    def act(self, obs, rng=None) -> int:
        """The greedy action for one observation."""
        return int(self.q(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).argmax())

    def save(self, directory) -> None:
        save_module(self, directory)

    @classmethod
    def load(cls, directory) -> QPolicy:
        """The Q-network ``save`` wrote, in evaluation mode."""
        spec, weights = read_module(directory)
        spec.pop("kind")
        policy = cls(**spec)
        policy.load_state_dict(weights)
        return policy.eval()


def dqn_update(
    online: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, y: torch.Tensor, config: DQNConfig
) -> tuple[float, float]:
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


def update_round(
    online: nn.Module,
    target: nn.Module,
    optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer,
    config: DQNConfig,
    updates: int | None = None,
) -> tuple[list[float], list[float]]:
    """A round's ``updates`` (default ``gradient_steps``) updates on uniform minibatches; return
    their losses and mean Q-values (stopping after a non-finite loss).

    The target network does not move during a round (it is updated while acting), so
    the targets of all the round's minibatches can be computed before its first step,
    in a few large forward passes of 512 rows (large enough to be efficient, small
    enough to stay in the cache): faster than one pass per minibatch, and the same
    numbers. Double DQN and ``use_target_network=False`` need the online network, which
    changes after every step, so they compute each minibatch's target just before it.
    """
    batch = buffer.sample(config.batch_size * (config.gradient_steps if updates is None else updates))
    if config.use_target_network and not config.double:
        slices = zip(*(batch[name].split(512) for name in ("rewards", "next_obs", "terminated")))
        y = torch.cat(
            [
                dqn_target(rewards, next_obs, terminated, target, config.gamma)
                for rewards, next_obs, terminated in slices
            ]
        )
    else:
        y = None
    minibatches = zip(*(column.split(config.batch_size) for column in batch.values()))
    losses, qs = [], []
    for k, columns in enumerate(minibatches):
        minibatch = dict(zip(batch, columns))
        if y is None:
            y_k = dqn_target(
                minibatch["rewards"],
                minibatch["next_obs"],
                minibatch["terminated"],
                target if config.use_target_network else online,
                config.gamma,
                double=config.double,
                online_net=online,
            )
        else:
            y_k = y[k * config.batch_size : (k + 1) * config.batch_size]
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


@dataclasses.dataclass
class DQNState:
    """Everything a DQN run carries from one round to the next, and all a checkpoint saves.

    ``online_flat`` and ``target_flat`` are the two networks' parameters as one vector each
    (:func:`~rlcourse.pg.policies.flatten_parameters`): the networks' own parameters are
    views of them. ``calls`` counts vector steps. The log, the env steps and the run's
    identity are the :class:`~rlcourse.run.IterationRecord`'s.
    """

    online: QPolicy
    target: QPolicy
    online_flat: torch.Tensor
    target_flat: torch.Tensor
    optimizer: torch.optim.Optimizer
    buffer: ReplayBuffer
    envs: gym.vector.SyncVectorEnv
    obs: np.ndarray
    episode_return: np.ndarray
    rng: np.random.Generator
    env_steps: int = 0
    calls: int = 0

    def checkpoint(self) -> dict:
        """The state a checkpoint saves beside the record's own."""
        return {
            "calls": self.calls,
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.buffer.state_dict(),
            "envs": self.envs.envs,
            "simulations": [simulator_state(env) for env in self.envs.envs],  # what pickling an env leaves out
            "obs": self.obs.copy(),
            "episode_return": self.episode_return.copy(),
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
        }

    def restore(self, saved: dict, env_steps: int) -> None:
        """Continue from a checkpoint's state (the inverse of :meth:`checkpoint`) at ``env_steps``."""
        self.envs.close()
        self.online.load_state_dict(saved["online"])
        self.target.load_state_dict(saved["target"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.buffer.load_state_dict(saved["replay"])
        simulations = saved.get("simulations", [None] * len(saved["envs"]))
        self.envs = gym.vector.SyncVectorEnv(
            [functools.partial(restored, env, simulation) for env, simulation in zip(saved["envs"], simulations)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        self.obs, self.episode_return = saved["obs"], saved["episode_return"]
        self.env_steps, self.calls = env_steps, saved["calls"]
        self.rng.bit_generator.state = saved["rng"]["numpy"]
        torch.set_rng_state(saved["rng"]["torch"])


def start(env_id: str, config: DQNConfig, seed: int, env_kwargs: dict | None) -> DQNState:
    """A fresh run: seeded networks (θ̄ = θ), Adam, an empty buffer, reset environments."""
    obs_dim, n_actions = _spaces(env_id, env_kwargs)
    rng = seed_everything(seed)
    online = QPolicy(obs_dim, n_actions, config.hidden, config.dueling)
    target = QPolicy(obs_dim, n_actions, config.hidden, config.dueling)
    target.load_state_dict(online.state_dict())
    online_flat, target_flat = flatten_parameters(online), flatten_parameters(target)
    target_flat.requires_grad_(False)
    optimizer = torch.optim.Adam([online_flat], lr=config.lr, fused=True)
    capacity = config.buffer_size if config.use_replay else config.batch_size
    buffer = ReplayBuffer(capacity, (obs_dim,), seed=seed)
    envs = gym.make_vec(
        env_id,
        num_envs=config.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **(env_kwargs or {}),
    )
    assert isinstance(envs, gym.vector.SyncVectorEnv)  # its envs are what a checkpoint saves
    obs, _ = envs.reset(seed=seed)
    return DQNState(
        online, target, online_flat, target_flat, optimizer, buffer, envs, obs, np.zeros(config.num_envs), rng
    )


def act(state: DQNState, config: DQNConfig, steps: int) -> tuple[list[float], float]:
    """One vector step: ε-greedy actions, the transitions stored with their real next
    observations, the target network's update when it is due; return the returns of the
    episodes that ended and ε."""
    n = config.num_envs
    epsilon = linear_epsilon(
        state.env_steps,
        config.exploration_initial_eps,
        config.exploration_final_eps,
        config.exploration_fraction,
        steps,
    )
    explore = state.rng.random(n) < epsilon
    actions = state.rng.integers(int(cast(gym.spaces.Discrete, state.envs.single_action_space).n), size=n)
    if not explore.all():
        with torch.inference_mode():
            greedy = state.online(torch.as_tensor(state.obs, dtype=torch.float32)).argmax(-1).numpy()
        actions = np.where(explore, actions, greedy)
    new_obs, reward, term, trunc, info = state.envs.step(actions)
    done = term | trunc
    real_next = new_obs
    if done.any():
        real_next = new_obs.copy()
        for i in np.flatnonzero(done):
            real_next[i] = info["final_obs"][i]
    state.buffer.add(state.obs, actions, reward, real_next, term, trunc)
    state.episode_return += reward
    finished = [float(state.episode_return[i]) for i in np.flatnonzero(done)]
    state.episode_return[done] = 0.0
    state.obs = new_obs
    state.env_steps += n
    state.calls += 1
    if config.use_target_network and state.calls % max(config.target_update_interval // n, 1) == 0:
        polyak_update(state.target_flat, state.online_flat, config.tau)
    return finished, epsilon


def act_round(
    state: DQNState, config: DQNConfig, steps: int, after_step: Callable[[], None]
) -> tuple[list[float], float]:
    """``train_freq`` vector steps (fewer if the budget ends first), each followed by
    ``after_step()``; return the returns of the episodes that ended and ε at the last step."""
    finished, epsilon = [], config.exploration_final_eps
    for _ in range(config.train_freq):
        if state.env_steps >= steps:
            break
        ended, epsilon = act(state, config, steps)
        finished += ended
        after_step()
    return finished, epsilon


def learning_rate(config: DQNConfig, env_steps: int, steps: int) -> float:
    """α for the round ending at ``env_steps``: ``lr``, or lr · (1 − env_steps / steps) when linear."""
    return config.lr * (1.0 - env_steps / steps if config.lr_schedule == "linear" else 1.0)


def learn(state: DQNState, config: DQNConfig, lr: float, threads: int, collected: int) -> dict[str, float]:
    """The round's updates at step size ``lr`` on ``threads`` threads, once ``learning_starts``
    steps are in the buffer: ``gradient_steps`` of them, or with −1 as many as the round's
    ``collected`` env steps. Return the means of their ``loss`` and ``q_mean`` (NaN before),
    and ``last_loss``, the last update's loss (a non-finite one stops the round)."""
    losses: list[float] = []
    qs: list[float] = []
    updates = collected if config.gradient_steps == -1 else config.gradient_steps
    if state.env_steps > config.learning_starts and updates > 0:
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        with torch_threads(threads):
            losses, qs = update_round(state.online, state.target, state.optimizer, state.buffer, config, updates)
    nan = float("nan")
    return {
        "loss": float(np.mean(losses)) if losses else nan,
        "q_mean": float(np.mean(qs)) if qs else nan,
        "last_loss": losses[-1] if losses else 0.0,
    }


def train(
    env_id: str = "CartPole-v1",
    config: DQNConfig | None = None,
    *,
    steps: int = 100_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    checkpoint_every: int = 50_000,
    resume: bool = False,
    threads: int = 1,
    callback: Callable[[int, nn.Module], None] | None = None,
    tensorboard: str | Path | None = None,
) -> Result:
    """Run DQN for ``steps`` environment steps; return a Result holding the greedy QPolicy.
    ``config`` defaults to ``DQNConfig.for_env(env_id)``.

    Each round is :func:`act_round`, :func:`learn` at the step size :func:`learning_rate`
    gives, and one row of the log (``LOG_COLUMNS``): the mean ``return`` of the episodes
    that ended in the round (NaN if none did) and their number, ε at its last step, its
    ``lr``, and the means of its updates' ``loss`` and ``q_mean`` (NaN before ``learning_starts``).

    The bookkeeping is :class:`~rlcourse.run.IterationRecord`'s, one iteration a round: with
    ``out`` set, the :class:`DQNState` is checkpointed to ``out/checkpoint.pkl`` every
    ``checkpoint_every`` env steps, and ``resume=True`` goes on from there (same
    environment, config, seed and ``steps``) to the same log, bit for bit, as a run that
    never stopped; ``tensorboard`` (a folder) gets every row. The networks are built and
    act on one thread, whatever the caller's thread count; the updates run on ``threads``
    (on a busy machine more can be slower). ``callback(env_steps, online_network)`` is
    called after every vector step; its time is left out of ``timing``.
    """
    config = config or DQNConfig.for_env(env_id)
    check_run_args(steps, threads)
    record = IterationRecord(
        "dqn",
        env_id,
        env_kwargs,
        config,
        seed,
        steps,
        columns=LOG_COLUMNS,
        make_row=lambda window, returns, lengths: window[-1],
        out=out,
        progress=progress,
        checkpoint_every=checkpoint_every,
        resume=resume,
        tensorboard=tensorboard,
    )
    with torch_threads(1):  # the networks are built, and act on one observation, on one thread
        state = start(env_id, config, seed, env_kwargs)
        if record.resumed is not None:
            state.restore(record.resumed, record.env_steps)

        def after_step() -> None:
            record.advance(state.env_steps)
            record.call(callback, state.online)

        try:
            with record:
                while state.env_steps < steps:
                    round_start = state.env_steps
                    returns, epsilon = act_round(state, config, steps, after_step)
                    lr = learning_rate(config, state.env_steps, steps)
                    stats = learn(state, config, lr, threads, state.env_steps - round_start)
                    if not math.isfinite(stats.pop("last_loss")):
                        raise NonFiniteError("TD loss", state.env_steps, record.last_checkpoint)
                    stats = {"epsilon": epsilon, "lr": lr, **stats}
                    record.end_iteration(state.env_steps, stats, returns, [], state.checkpoint, state.online)
        finally:
            state.envs.close()
    return record.result(state.online)
