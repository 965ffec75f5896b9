r"""Linear value-function approximation: tile coding, semi-gradient TD(0), gradient MC, linear Q-learning (lesson 3).

A value is a dot product of a weight vector with features of the state,

.. math::

    \hat v(s, \mathbf w) = \boldsymbol\phi(s)^\top \mathbf w, \qquad
    \hat q(s, a, \mathbf W) = \boldsymbol\phi(s)^\top \mathbf W_{:, a},
    \qquad \nabla_{\mathbf w}\, \hat v(s, \mathbf w) = \boldsymbol\phi(s),

and each method moves :math:`\mathbf w` along :math:`\boldsymbol\phi(s_t)` by its error:

.. math::

    \text{gradient MC:}\quad
    \mathbf w \leftarrow \mathbf w + \alpha\,[\,G_t - \boldsymbol\phi(s_t)^\top \mathbf w\,]\,
    \boldsymbol\phi(s_t)

    \text{semi-gradient TD(0):}\quad
    \mathbf w \leftarrow \mathbf w + \alpha\,[\,r_{t+1} + \gamma\,(1 - \text{terminated})\,
    \boldsymbol\phi(s_{t+1})^\top \mathbf w - \boldsymbol\phi(s_t)^\top \mathbf w\,]\,
    \boldsymbol\phi(s_t)

    \text{linear Q-learning:}\quad
    \mathbf W_{:, a_t} \leftarrow \mathbf W_{:, a_t} + \alpha\,[\,r_{t+1} + \gamma\,
    (1 - \text{terminated}) \max_{a'} \boldsymbol\phi(s_{t+1})^\top \mathbf W_{:, a'}
    - \boldsymbol\phi(s_t)^\top \mathbf W_{:, a_t}\,]\,\boldsymbol\phi(s_t)

Only ``terminated`` drops the bootstrap; a step cut by the time limit (``truncated``)
still bootstraps. The update functions change the weights **in place** and return the
error in brackets. Gradient MC descends the mean squared value error, so it converges to
the least-squares fit :math:`\mathbf w_{MC} = (\Phi^\top D \Phi)^{-1} \Phi^\top D\, v_\pi`;
TD(0) is not a gradient method (the target depends on :math:`\mathbf w` too) and
converges to the TD fixed point instead (Sutton & Barto, 2nd ed., §9.4),

.. math::

    \mathbf w_{TD} = \big(\Phi^\top D\, (I - \gamma P_\pi)\, \Phi\big)^{-1} \Phi^\top D\, r_\pi ,

with :math:`D` the diagonal of expected visits per episode. With one-hot features
(:class:`OneHot`) the three updates are exactly their tabular versions.

Tile coding (§9.5.4) covers the box ``[low, high]`` with ``tilings`` grids, each shifted
by :math:`(1, 3, 5, \dots) \cdot w / n` (tile width :math:`w`, :math:`n` tilings), and
sets :math:`\phi_i = 1` for the one tile of each grid that holds :math:`s`: exactly
:math:`n` ones, so :math:`\alpha = 0.1/n` moves :math:`\hat v(s)` a tenth of the way to
its target.

Pseudocode of :func:`train`, linear Q-learning (§10.1, Example 10.1: MountainCar, 8
tilings of 8 × 8 tiles, :math:`\mathbf W = 0`, which is optimistic there)::

    W ← 0
    for each step:
        a ← ε-greedy(φ(s)ᵀ W)
        take a, observe r, s', terminated, truncated
        W[:, a] += α (r + γ (1 − terminated) max_a' φ(s')ᵀ W[:, a'] − φ(s)ᵀ W[:, a]) φ(s)
        s ← reset() if terminated or truncated else s'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from rlcourse.config import check_range
from rlcourse.run import (
    IterationRecord,
    NonFiniteError,
    Result,
    UnsupportedSpaceError,
    atomic_write,
    check_run_args,
    seed_everything,
)
from rlcourse.tabular.evaluation import check_count, check_gamma, check_policy, sample_action
from rlcourse.tabular.qtable import epsilon_greedy
from rlcourse.value.dqn_targets import linear_epsilon

MAX_FEATURES = 1_000_000


def _box(name: str, low, high) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"{name}: low and high must be 1-D and of one shape, got {low.shape} and {high.shape}")
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
        raise ValueError(
            f"{name}: low = {low.tolist()} and high = {high.tolist()} must be finite, "
            f"with low < high in every dimension"
        )
    return low, high


class OneHot:
    """φ(s) = e_s for a Discrete state: linear approximation becomes a table."""

    def __init__(self, n_states: int):
        check_count("OneHot.n_states", n_states)
        self.n_features = int(n_states)
        self.spec = {"n_states": self.n_features}

    def __call__(self, obs) -> np.ndarray:
        phi = np.zeros(self.n_features)
        phi[int(obs)] = 1.0
        return phi


class TileCoder:
    """Binary features: one active tile in each of ``tilings`` offset grids over [low, high].

    Each grid has ``tiles_per_dim + 1`` tiles per dimension, so that every shifted grid
    still covers the box; observations outside it are clipped to its edge.
    """

    def __init__(self, low, high, tiles_per_dim: int = 8, tilings: int = 8):
        self.low, self.high = _box("TileCoder", low, high)
        check_count("TileCoder.tiles_per_dim", tiles_per_dim)
        check_count("TileCoder.tilings", tilings)
        dims = len(self.low)
        self.tilings = int(tilings)
        self.scale = tiles_per_dim / (self.high - self.low)  # observation → tile units
        displacement = 2 * np.arange(dims) + 1  # (1, 3, 5, …)
        self.offsets = (np.arange(tilings)[:, None] * displacement / tilings) % 1.0  # [tilings, dims]
        self.strides = (tiles_per_dim + 1) ** np.arange(dims)
        self.tiles_per_tiling = (tiles_per_dim + 1) ** dims
        self.tiling_starts = np.arange(tilings) * self.tiles_per_tiling
        self.n_features = self.tilings * self.tiles_per_tiling
        self.spec = {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "tiles_per_dim": int(tiles_per_dim),
            "tilings": self.tilings,
        }

    def active(self, obs) -> np.ndarray:
        """The index of the active tile of each tiling, [tilings] integers."""
        # Hint: clip obs to [low, high], express it in tile units (× self.scale after − low), add
        # Hint: each tiling's offsets, floor to integer tile coordinates [tilings, dims], and turn
        # Hint: them into one index per tiling with self.strides, starting at self.tiling_starts.
        ### BEGIN SOLUTION
        u = (np.minimum(np.maximum(obs, self.low), self.high) - self.low) * self.scale
        coords = np.floor(u + self.offsets).astype(np.intp)
        return self.tiling_starts + coords @ self.strides
        ### END SOLUTION

    def __call__(self, obs) -> np.ndarray:
        phi = np.zeros(self.n_features)
        phi[self.active(obs)] = 1.0
        return phi


class RadialBasis:
    r"""Gaussian bumps :math:`\phi_i(s) = \exp(-\lVert x - c_i \rVert^2 / 2\sigma^2)` on a grid.

    :math:`x` is the observation rescaled to :math:`[0, 1]^d` (and clipped), the centres
    :math:`c_i` a grid of ``centers_per_dim`` points per dimension and σ = ``width`` in
    those units. ``bias=True`` appends a constant feature 1.
    """

    def __init__(self, low, high, centers_per_dim: int = 5, width: float = 0.2, bias: bool = False):
        self.low, self.high = _box("RadialBasis", low, high)
        check_count("RadialBasis.centers_per_dim", centers_per_dim)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
            raise ValueError(f"RadialBasis.width = {width!r} is out of range: it must be in (0, inf)")
        grid = np.linspace(0.0, 1.0, centers_per_dim)
        self.centers = np.stack(np.meshgrid(*[grid] * len(self.low), indexing="ij"), -1).reshape(-1, len(self.low))
        self.width, self.bias = float(width), bool(bias)
        self.n_features = len(self.centers) + self.bias
        self.spec = {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "centers_per_dim": int(centers_per_dim),
            "width": self.width,
            "bias": self.bias,
        }

    def __call__(self, obs) -> np.ndarray:
        x = (np.clip(np.asarray(obs, float), self.low, self.high) - self.low) / (self.high - self.low)
        phi = np.exp(-((x - self.centers) ** 2).sum(axis=1) / (2 * self.width**2))
        return np.append(phi, 1.0) if self.bias else phi


FEATURE_MAPS = {cls.__name__: cls for cls in (OneHot, TileCoder, RadialBasis)}


def linear_value(w: np.ndarray, phi: np.ndarray):
    """φᵀw: a value for a weight vector w, the row of action values for a matrix W."""
    return phi @ w


def semi_gradient_td0_update(w, phi_s, reward: float, phi_next, terminated: bool, alpha: float, gamma: float) -> float:
    """One semi-gradient TD(0) step on ``w`` (in place); return the TD error δ."""
    # Hint: δ = target − φ(s)ᵀw, where the target is r alone after a terminal step and
    # Hint: r + γ φ(s')ᵀw otherwise (truncated steps bootstrap); then w += α δ φ(s).
    ### BEGIN SOLUTION
    target = reward if terminated else reward + gamma * linear_value(w, phi_next)
    delta = target - linear_value(w, phi_s)
    w += alpha * delta * phi_s
    return float(delta)
    ### END SOLUTION


def gradient_mc_update(w, phi_s, G: float, alpha: float) -> float:
    """One gradient Monte-Carlo step toward the return G (in place); return G − φ(s)ᵀw."""
    # Hint: the error is G − φ(s)ᵀw; the gradient of φ(s)ᵀw with respect to w is φ(s).
    ### BEGIN SOLUTION
    error = G - linear_value(w, phi_s)
    w += alpha * error * phi_s
    return float(error)
    ### END SOLUTION


def linear_q_learning_update(
    W, phi_s, action: int, reward: float, phi_next, terminated: bool, alpha: float, gamma: float
) -> float:
    """One linear Q-learning step on column ``action`` of W [features, actions] (in place); return δ."""
    # Hint: φ(s')ᵀW is the row of action values at s'; only W[:, action] moves, along φ(s).
    ### BEGIN SOLUTION
    target = reward if terminated else reward + gamma * linear_value(W, phi_next).max()
    delta = target - linear_value(W[:, action], phi_s)
    W[:, action] += alpha * delta * phi_s
    return float(delta)
    ### END SOLUTION


class LinearEstimate(NamedTuple):
    w: np.ndarray  # final weights, [n_features]
    history: np.ndarray  # the weights after each episode, [episodes, n_features]


def _prediction_setup(env, policy, gamma: float, episodes: int, alpha: float):
    """Validate; return ``policy`` as a callable (obs, rng) → action."""
    check_gamma(gamma)
    check_count("episodes", episodes)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
        raise ValueError(f"alpha = {alpha!r} is out of range: it must be in (0, inf)")
    if callable(policy):
        return policy
    cdf = np.cumsum(check_policy(policy, env.observation_space.n, env.action_space.n), axis=1)
    return lambda obs, rng: sample_action(cdf, obs, rng)


def semi_gradient_td0(
    env, policy, features, gamma: float, episodes: int, *, alpha: float = 0.1, seed: int = 0
) -> LinearEstimate:
    """Semi-gradient TD(0) prediction of v_π with ``features``; updates after every step.

    ``policy`` is a callable ``policy(obs, rng) -> action`` (such as a trained policy's
    ``act``) or, for a Discrete environment, a matrix π [n_states, n_actions] sampled
    exactly as :func:`rlcourse.tabular.evaluation.td0_evaluation` samples it: with
    :class:`OneHot` features the two give the same values.
    """
    act = _prediction_setup(env, policy, gamma, episodes, alpha)
    rng = np.random.default_rng(seed)
    w = np.zeros(features.n_features)
    history = np.empty((episodes, features.n_features))
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        phi, done = features(obs), False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs, rng))
            phi_next = features(obs)
            semi_gradient_td0_update(w, phi, float(reward), phi_next, terminated, alpha, gamma)
            phi, done = phi_next, terminated or truncated
        history[episode] = w
    return LinearEstimate(w, history)


def gradient_mc(
    env, policy, features, gamma: float, episodes: int, *, alpha: float = 0.01, seed: int = 0
) -> LinearEstimate:
    """Every-visit gradient Monte-Carlo prediction of v_π with ``features``.

    After each episode the returns are accumulated backwards, :math:`G_t = r_{t+1} + \\gamma
    G_{t+1}`, and each step updates ``w`` in that order, as every-visit constant-α
    :func:`~rlcourse.tabular.evaluation.mc_evaluation` does (``policy``: see
    :func:`semi_gradient_td0`). An episode cut by the time limit gives cut returns.
    """
    act = _prediction_setup(env, policy, gamma, episodes, alpha)
    rng = np.random.default_rng(seed)
    w = np.zeros(features.n_features)
    history = np.empty((episodes, features.n_features))
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        phis, rewards, done = [], [], False
        while not done:
            next_obs, reward, terminated, truncated, _ = env.step(act(obs, rng))
            phis.append(features(obs))
            rewards.append(float(reward))
            obs, done = next_obs, terminated or truncated
        G = 0.0
        for t in reversed(range(len(rewards))):
            G = rewards[t] + gamma * G
            gradient_mc_update(w, phis[t], G, alpha)
        history[episode] = w
    return LinearEstimate(w, history)


@dataclasses.dataclass(frozen=True)
class LinearQConfig:
    alpha: float = 0.5 / 8  # step size α; α · tilings is the share of δ that Q(s, a) moves
    gamma: float = 1.0  # discount γ (MountainCar's episodes end at the goal)
    epsilon_start: float = 0.1
    epsilon_end: float = 0.0
    exploration_fraction: float = 0.5  # share of the steps over which ε falls
    tiles_per_dim: int = 8  # tile coding of Box observations; Discrete ones are one-hot
    tilings: int = 8

    def __post_init__(self):
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon_start", 0, 1)
        check_range(self, "epsilon_end", 0, 1)
        check_range(self, "exploration_fraction", 0, 1)
        check_range(self, "tiles_per_dim", 1, integer=True)
        check_range(self, "tilings", 1, integer=True)


class LinearQPolicy:
    """Q(s, ·) = φ(s)ᵀW; ``act`` is greedy (the lowest index among tied actions)."""

    def __init__(self, W: np.ndarray, features):
        self.W, self.features = W, features

    def q_values(self, obs) -> np.ndarray:
        return linear_value(self.W, self.features(obs))

    def act(self, obs, rng=None) -> int:
        return int(np.argmax(self.q_values(obs)))

    def save(self, directory) -> None:
        directory = Path(directory)
        atomic_write(directory / "linear_q.npy", lambda f: np.save(f, self.W))
        spec = {"features": type(self.features).__name__, **self.features.spec}
        atomic_write(directory / "features.json", lambda f: f.write(json.dumps(spec) + "\n"), mode="w")

    @classmethod
    def load(cls, directory) -> LinearQPolicy:
        directory = Path(directory)
        spec = json.loads((directory / "features.json").read_text())
        features = FEATURE_MAPS[spec.pop("features")](**spec)
        return cls(np.load(directory / "linear_q.npy"), features)


def features_for(env, config: LinearQConfig):
    """One-hot features for a Discrete observation space, tile coding for a bounded flat Box."""
    name, space = env.spec.id if env.spec else str(env), env.observation_space
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise UnsupportedSpaceError(f"linear-q needs a Discrete action space, but {name} has {env.action_space}")
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(int(space.n))
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise UnsupportedSpaceError(
            f"linear-q needs a Discrete or a flat Box observation space, but {name} has {space}"
        )
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise UnsupportedSpaceError(f"linear-q tiles a bounded Box, but {name} has {space} with infinite bounds")
    n = config.tilings * (config.tiles_per_dim + 1) ** space.shape[0]
    if n > MAX_FEATURES:
        raise UnsupportedSpaceError(
            f"linear-q: tile coding the {space.shape[0]}-dimensional {space} of {name} "
            f"needs {n:,} features (at most {MAX_FEATURES:,}); lower tiles_per_dim"
        )
    return TileCoder(space.low, space.high, config.tiles_per_dim, config.tilings)


def train(env_id: str = "MountainCar-v0", config: LinearQConfig | None = None, *, steps: int = 150_000,
          seed: int = 0, out: str | Path | None = None, progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 50_000, resume: bool = False, tensorboard: str | Path | None = None,
          callback=None) -> Result:  # fmt: skip
    """Run linear Q-learning for ``steps`` env steps; return a Result holding a LinearQPolicy.

    One log row (``LOG_COLUMNS``, those of tabular TD control) and one iteration of the
    :class:`~rlcourse.run.IterationRecord` per finished episode: checkpoints (W, the
    environment, the random state), ``resume`` and ``callback(env_steps, policy)`` come at episode ends.
    """
    config = config or LinearQConfig()
    check_run_args(steps)
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        features = features_for(env, config)
    except UnsupportedSpaceError:
        env.close()
        raise
    assert isinstance(env.action_space, gym.spaces.Discrete)  # features_for checked it
    rng = seed_everything(seed)
    W = np.zeros((features.n_features, int(env.action_space.n)))
    policy = LinearQPolicy(W, features)
    record = IterationRecord(
        "linear-q",
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
        callback=callback,
        resume=resume,
        tensorboard=tensorboard,
    )
    schedule = (config.epsilon_start, config.epsilon_end, config.exploration_fraction, steps)
    if record.resumed:
        W[:], env, obs, epsilon = (record.resumed[key] for key in ("W", "env", "obs", "epsilon"))
        rng.bit_generator.state = record.resumed["rng"]
    else:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        epsilon = linear_epsilon(0, *schedule)
    phi = features(obs)
    episode_return, episode_length, abs_td, completed = 0.0, 0, 0.0, record.env_steps
    with record:
        for step in range(record.env_steps + 1, steps + 1):
            action = epsilon_greedy(linear_value(W, phi).tolist(), epsilon, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            phi_next = features(obs)
            td_error = linear_q_learning_update(
                W, phi, action, float(reward), phi_next, terminated, config.alpha, config.gamma
            )
            if not math.isfinite(td_error):
                raise NonFiniteError("TD error", step, record.last_checkpoint)
            episode_return += float(reward)
            episode_length += 1
            completed = step
            abs_td += abs(td_error)
            epsilon = linear_epsilon(step, *schedule)
            if terminated or truncated:
                obs, _ = env.reset()
                phi_next = features(obs)
                stats = {
                    "episode": len(record.rows),
                    "return": episode_return,
                    "length": episode_length,
                    "epsilon": epsilon,
                    "mean_abs_td_error": abs_td / episode_length,
                }
                state = functools.partial(_snapshot, W, env, obs, epsilon, rng)
                record.end_iteration(step, stats, [], [], state, policy)
                episode_return, episode_length, abs_td = 0.0, 0, 0.0
            phi = phi_next
    record.advance(completed)
    env.close()
    return record.result(policy)


def _snapshot(W: np.ndarray, env: gym.Env, obs, epsilon: float, rng: np.random.Generator) -> dict:
    """What a checkpoint holds: W, the environment as it stands, its observation, ε, the random state."""
    return {"W": W.copy(), "env": env, "obs": obs, "epsilon": epsilon, "rng": rng.bit_generator.state}


LOG_COLUMNS = ["episode", "env_steps", "return", "length", "epsilon", "mean_abs_td_error"]
