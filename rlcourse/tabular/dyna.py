r"""Dyna-Q and Dyna-Q+: planning with a learned model (lesson 2; Sutton & Barto, 2nd ed., §8.2–8.3).

Dyna-Q learns from each real step twice over. *Direct RL*: the Q-learning update of lesson 1,

.. math::

    Q(s, a) \leftarrow Q(s, a) + \alpha\,[\,r + \gamma\,(1 - \text{terminated}) \max_{a'} Q(s', a') - Q(s, a)\,].

*Model learning*: it remembers what the step did, :math:`\hat M(s, a) = (r, s', \text{terminated})`
(the last outcome seen: exact in a deterministic world). *Planning*: it then replays
``planning_steps`` = n remembered pairs, each drawn uniformly from those seen, applying the
same update to the model's outcome. Each real step thus buys n + 1 updates, and the value
of the goal spreads back along the remembered path without walking it again.

Dyna-Q+ (§8.3) is for a world that changes. It adds an exploration bonus to the modelled
reward of a pair not tried for τ steps,

.. math::

    \hat r \leftarrow \hat r + \kappa \sqrt{\tau},

so that planning grows curious about what it has not checked in a while, and (as in the
book's footnote) it lets planning consider actions never tried from a visited state, with a
model that says they lead back to the same state with reward 0.

Pseudocode (§8.2, Tabular Dyna-Q)::

    Q(s, a) ← 0;  M ← empty
    for each step:
        a ← ε-greedy(Q(s, ·));  take a, observe r, s', terminated
        Q(s, a) += α (r + γ (1 − terminated) max_a' Q(s', a') − Q(s, a))      direct RL
        M(s, a) ← (r, s', terminated)                                          model learning
        repeat n times:                                                        planning
            (ŝ, â) ← a pair drawn uniformly from M;  (r̂, ŝ', t̂) ← M(ŝ, â)
            r̂ ← r̂ + κ √(steps since (ŝ, â) was last tried)                     (Dyna-Q+ only)
            Q(ŝ, â) += α (r̂ + γ (1 − t̂) max_a' Q(ŝ', a') − Q(ŝ, â))
        s ← reset() if the episode ended else s'

With n = 0 this is Q-learning with a constant ε (Sutton & Barto's Figure 8.2: on the
Dyna maze it needs about 25 episodes to find the 14-step path; with n = 50, about 3).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd

from rlcourse import stats
from rlcourse.config import check_range
from rlcourse.run import IterationRecord, NonFiniteError, Result, check_run_args, require_discrete, seed_everything
from rlcourse.tabular.qtable import QTable, action_names_for, epsilon_greedy


@dataclasses.dataclass(frozen=True)
class DynaQConfig:
    planning_steps: int = 5  # n: model updates per real step
    alpha: float = 0.1  # step size α (Sutton & Barto, Example 8.1)
    gamma: float = 0.95  # discount γ
    epsilon: float = 0.1  # ε of the ε-greedy behaviour, constant
    kappa: float = 0.0  # Dyna-Q+ bonus κ √τ; 0 is plain Dyna-Q
    q_init: float = 0.0  # initial value of every Q(s, a)

    def __post_init__(self):
        check_range(self, "planning_steps", 0, integer=True)
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon", 0, 1)
        check_range(self, "kappa", 0)
        check_range(self, "q_init")


class Model:
    """The learned deterministic model: ``outcome[(s, a)] = (r, s', terminated)``, the last one seen,
    with the step ``tried[(s, a)]`` at which the pair was last taken for real."""

    def __init__(self) -> None:
        self.outcome: dict[tuple[int, int], tuple[float, int, bool]] = {}
        self.tried: dict[tuple[int, int], int] = {}
        self.pairs: list[tuple[int, int]] = []  # the keys, for uniform draws

    def add(self, state: int, action: int, reward: float, next_state: int, terminated: bool, step: int) -> None:
        if (state, action) not in self.outcome:
            self.pairs.append((state, action))
        self.outcome[(state, action)] = (reward, next_state, terminated)
        self.tried[(state, action)] = step

    def add_untried(self, state: int, n_actions: int) -> None:
        """Dyna-Q+: the actions never taken in ``state`` stay there with reward 0, as if tried at step 0
        (so their bonus grows from the start of the run, which sends planning to try them)."""
        for action in range(n_actions):
            if (state, action) not in self.outcome:
                self.add(state, action, 0.0, state, False, 0)

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        return self.pairs[int(rng.random() * len(self.pairs))]

    def __len__(self) -> int:
        return len(self.pairs)


def q_learning_update(
    q: list, state: int, action: int, reward: float, next_state: int, terminated: bool, alpha: float, gamma: float
) -> float:
    """Q(s, a) += α (r + γ (1 − terminated) max_a' Q(s', a') − Q(s, a)) on the list of rows ``q``; return the TD error."""
    # Hint: the same one-step update as lesson 1's Q-learning; a terminated step has no max.
    ### BEGIN SOLUTION
    target = reward if terminated else reward + gamma * max(q[next_state])
    td_error = target - q[state][action]
    q[state][action] += alpha * td_error
    return td_error
    ### END SOLUTION


def planning_updates(q: list, model: Model, n: int, config: DynaQConfig, step: int, rng: np.random.Generator) -> None:
    """n Q-learning updates on pairs drawn uniformly from ``model``, Dyna-Q+'s bonus κ√τ added to their reward."""
    for _ in range(n):
        state, action = model.sample(rng)
        reward, next_state, terminated = model.outcome[(state, action)]
        # Hint: Dyna-Q+ adds κ √τ, with τ the steps since the pair was last tried for real
        # Hint: (``step - model.tried[(state, action)]``); κ = 0 is plain Dyna-Q. Then update.
        ### BEGIN SOLUTION
        if config.kappa:
            reward += config.kappa * math.sqrt(step - model.tried[(state, action)])
        q_learning_update(q, state, action, reward, next_state, terminated, config.alpha, config.gamma)
        ### END SOLUTION


def dyna_step(
    q: list, model: Model, env, obs: int, config: DynaQConfig, step: int, rng: np.random.Generator
) -> tuple[int, float, float, bool]:
    """One real step of Dyna-Q: act, direct RL, model learning, planning. Returns
    ``(next_obs, reward, td_error, episode_over)``."""
    if config.kappa:
        model.add_untried(obs, len(q[obs]))
    action = epsilon_greedy(q[obs], config.epsilon, rng)
    next_obs, gym_reward, terminated, truncated, _ = env.step(action)
    reward = float(gym_reward)
    td_error = q_learning_update(q, obs, action, reward, next_obs, terminated, config.alpha, config.gamma)
    model.add(obs, action, reward, next_obs, terminated, step)
    planning_updates(q, model, config.planning_steps, config, step, rng)
    return next_obs, reward, td_error, terminated or truncated


def _state(q: list, model: Model, env, obs: int, rng: np.random.Generator) -> dict:
    """What a checkpoint holds: Q, the model, the environment as it stands, the random state."""
    return {"q": [list(row) for row in q], "model": model, "env": env, "obs": obs, "rng": rng.bit_generator.state}


def train(
    env_id: str = "rlcourse/DynaMaze-v0",
    config: DynaQConfig | None = None,
    *,
    steps: int = 3000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    checkpoint_every: int = 10_000,
    resume: bool = False,
    tensorboard: str | Path | None = None,
    callback=None,
    episodes: int | None = None,
) -> Result:
    """Run Dyna-Q (Dyna-Q+ with ``kappa`` > 0) for ``steps`` real steps, or until ``episodes`` end.

    The log has one row per finished episode: ``episode``, ``env_steps``, ``return``,
    ``length``, ``model_size`` (pairs remembered) and ``mean_abs_td_error`` (of the real
    steps). Checkpoints and ``resume`` as in :func:`rlcourse.tabular.td_control.train`.
    """
    config = config or DynaQConfig()
    check_run_args(steps)
    env = gym.make(env_id, **(env_kwargs or {}))
    n_states, n_actions = require_discrete("dyna-q", env)
    rng = seed_everything(seed)
    q = [[float(config.q_init)] * n_actions for _ in range(n_states)]
    model = Model()
    policy = QTable(np.array(q), action_names_for(env))
    record = IterationRecord(
        "dyna-q",
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
    if record.resumed:
        q, model, env, obs = (record.resumed[key] for key in ("q", "model", "env", "obs"))
        rng.bit_generator.state = record.resumed["rng"]
    else:
        obs, _ = env.reset(seed=seed)
    episode_return, episode_length, abs_td, completed = 0.0, 0, 0.0, record.env_steps
    with record:
        for step in range(record.env_steps + 1, steps + 1):
            next_obs, reward, td_error, done = dyna_step(q, model, env, obs, config, step, rng)
            if not math.isfinite(td_error):
                raise NonFiniteError("TD error", step, record.last_checkpoint)
            episode_return += reward
            episode_length += 1
            abs_td += abs(td_error)
            obs, completed = next_obs, step
            if done:
                obs, _ = env.reset()
                stats = {"episode": len(record.rows), "return": episode_return, "length": episode_length}
                stats |= {"model_size": len(model), "mean_abs_td_error": abs_td / episode_length}
                if callback is not None:
                    policy.values[:] = q
                record.end_iteration(step, stats, [], [], lambda obs=obs: _state(q, model, env, obs, rng), policy)
                episode_return, episode_length, abs_td = 0.0, 0, 0.0
                if episodes is not None and len(record.rows) >= episodes:
                    break
    record.advance(completed)
    env.close()
    policy.values[:] = q
    return record.result(policy)


LOG_COLUMNS = ["episode", "env_steps", "return", "length", "model_size", "mean_abs_td_error"]


STUDY_COLUMNS = ["planning_steps", "seed", "episode", "length", "env_steps"]


def planning_study(
    env_id: str = "rlcourse/DynaMaze-v0",
    planning_steps=(0, 5, 50),
    seeds=range(10),
    episodes: int = 50,
    config: DynaQConfig | None = None,
    max_steps: int = 100_000,
    env_kwargs: dict | None = None,
) -> pd.DataFrame:
    """Sutton & Barto's Figure 8.2 as data: the length of each of the first ``episodes`` episodes,
    for every n in ``planning_steps`` and every seed (one row per episode; ``max_steps`` caps a run)."""
    config = config or DynaQConfig()
    frames = []
    for n in planning_steps:
        for seed in seeds:
            log = train(
                env_id,
                dataclasses.replace(config, planning_steps=n),
                steps=max_steps,
                seed=int(seed),
                episodes=episodes,
                env_kwargs=env_kwargs,
            ).log
            frames.append(
                pd.DataFrame(
                    {
                        "planning_steps": n,
                        "seed": int(seed),
                        "episode": log["episode"] + 1,
                        "length": log["length"],
                        "env_steps": log["env_steps"],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[STUDY_COLUMNS]


def episodes_to_solve(lengths, good_length: float, window: int = 5) -> float:
    """The episode (1-based) by which the last ``window`` episodes first average at most ``good_length``
    steps; NaN if they never do."""
    lengths = np.asarray(lengths, dtype=float)
    if len(lengths) < window:
        return float("nan")
    means = np.convolve(lengths, np.ones(window) / window, mode="valid")
    reached = np.flatnonzero(means <= good_length)
    return float(reached[0] + window) if len(reached) else float("nan")


def solve_summary(study: pd.DataFrame, good_length: float, window: int = 5) -> pd.DataFrame:
    """Per n: the seeds' episodes to solve (:func:`episodes_to_solve`), their IQM with a 95%
    bootstrap interval (:func:`rlcourse.stats.bootstrap_ci`), and how many seeds got there."""
    rows = []
    for n, group in study.groupby("planning_steps"):
        solved = np.array(
            [
                episodes_to_solve(g.sort_values("episode")["length"], good_length, window)
                for _, g in group.groupby("seed")
            ]
        )
        finite = solved[np.isfinite(solved)]
        interval = stats.bootstrap_ci(finite) if len(finite) else stats.Interval(*(3 * [float("nan")]))
        rows.append(
            {
                "planning_steps": n,
                "seeds": len(solved),
                "solved": len(finite),
                "iqm": interval.estimate,
                "ci_low": interval.low,
                "ci_high": interval.high,
            }
        )
    return pd.DataFrame(rows)


def plot_steps_per_episode(study: pd.DataFrame, ax=None, skip_first: bool = True):
    """Steps per episode against episodes for each n: the IQM over seeds with its 95% band."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for n, group in study.groupby("planning_steps"):
        table = group.pivot(index="seed", columns="episode", values="length")
        if skip_first:  # as in the book: the first episode is the same random walk for every n
            table = table.loc[:, table.columns > 1]
        band = stats.curve_band(table.to_numpy(float), table.columns.to_numpy(float))
        ax.plot(band["grid"], band["estimate"], label=f"n = {n}")
        ax.fill_between(band["grid"], band["low"], band["high"], alpha=0.2)
    seeds = study["seed"].nunique()
    ax.set(xlabel="episode", ylabel="steps per episode", title=f"Dyna-Q, IQM over {seeds} seeds (95% band)")
    ax.legend()
    return ax.figure
