r"""DAgger: imitation learning on the learner's own states (lesson 4).

Behaviour cloning (:mod:`rlcourse.pg.imitation`) fits the expert's actions on the expert's
states, and its errors compound once it drives itself into states the expert never showed:
:math:`J(\hat\pi) \le J(\pi^\star) + T^2\epsilon`. DAgger (*Dataset Aggregation*; Ross,
Gordon & Bagnell, *A Reduction of Imitation Learning and Structured Prediction to No-Regret
Online Learning*, AISTATS 2011, Algorithm 3.1) collects expert decisions in the states the
*learner* reaches, where an expert alone would never go:

.. math::

    \mathcal D_i = \{(s, \pi^\star(s)) : s \sim d_{\pi_i}\}, \qquad
    \mathcal D \leftarrow \mathcal D \cup \mathcal D_i, \qquad
    \hat\pi_{i+1} = \arg\min_\pi \sum_{(s, a) \in \mathcal D} -\log \pi(a \mid s),

with :math:`\pi_i = \beta_i \pi^\star + (1 - \beta_i)\hat\pi_i` the policy that drives in
round i (here :math:`\beta_i = \beta^i`; β = 0, the default, lets the learner drive alone
from the first round on, a choice the paper's analysis allows). Because the data now
follow the learner's own state distribution, the supervised error ε is measured where it
matters and the bound becomes linear in the horizon, :math:`J(\hat\pi) \le J(\pi^\star) +
uT\epsilon_N + O(1)` (their Theorem 3.2, :math:`u` bounding how much one wrong action
can cost).

Pseudocode (round 0 is behaviour cloning on the expert's own episodes)::

    D ← labels_per_round (s, a) pairs of the expert's own play
    π̂ ← fit(D)
    for i = 1, 2, …:
        play labels_per_round steps, each with π* with probability β^i, else π̂
        D ← D ∪ {(s, π*(s)) for every state s visited}                  (the expert labels)
        π̂ ← fit(D)                                                     (updates_per_round Adam steps)

Here the learner is trained on, not rebuilt: each round continues the same network and
optimiser for ``updates_per_round`` minibatch steps on the whole aggregated set (Ross et
al. retrain; continuing is cheaper and, on CartPole, reaches the same place).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from rlcourse import stats
from rlcourse.config import ConfigError, check_layers, check_range
from rlcourse.pg.imitation import (
    Demonstrations,
    StateLog,
    cartpole_controller,
    collect_demonstrations,
    disagreement,
    negative_log_likelihood,
)
from rlcourse.pg.policies import make_policy
from rlcourse.play import evaluate_policy
from rlcourse.run import IterationRecord, Result, check_run_args, seed_everything, torch_threads

ROLLOUT_SEED_OFFSET = 10_000  # the learner's episodes start from reset(seed = 100 000 · seed + 10 000 + k)


@dataclasses.dataclass(frozen=True)
class DAggerConfig:
    labels_per_round: int = 250  # expert labels per round: the states the driver visits
    beta: float = 0.0  # the expert drives a step of round i with probability β^i
    updates_per_round: int = 300  # Adam steps on the aggregated data after each round
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3  # Adam step size
    batch_size: int = 256

    def __post_init__(self):
        check_range(self, "labels_per_round", 1, integer=True)
        check_range(self, "beta", 0, 1)
        check_range(self, "updates_per_round", 1, integer=True)
        check_layers(self)
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "batch_size", 1, integer=True)


def aggregate(data: Demonstrations, states, expert_actions) -> Demonstrations:
    """D ∪ {(s, π*(s))}: the new states with the expert's labels appended to the data set."""
    # Hint: stack the observations and concatenate the actions, keeping their dtypes
    # Hint: (float32 observations, the actions as ``data.actions`` has them).
    ### BEGIN SOLUTION
    observations = np.concatenate([data.observations, np.asarray(states, dtype=np.float32)])
    actions = np.concatenate([data.actions, np.asarray(expert_actions, dtype=data.actions.dtype)])
    ### END SOLUTION
    return dataclasses.replace(data, observations=observations, actions=actions)


def drive(learner, expert, env, steps: int, beta: float, rng: np.random.Generator, first_seed: int):
    """Play ``steps`` steps, each by the expert with probability ``beta`` and else by the learner;
    return the states visited, the expert's label of each, and the returns of the episodes that ended."""
    states, labels, returns = [], [], []
    obs, _ = env.reset(seed=first_seed)
    total, episodes = 0.0, 1
    for _ in range(steps):
        expert_action = expert.act(obs, rng)
        # Hint: record the state and the expert's label for it; then take the expert's action
        # Hint: with probability β (one draw from ``rng``), else the learner's own ``act``.
        ### BEGIN SOLUTION
        states.append(np.asarray(obs, dtype=np.float32))
        labels.append(expert_action)
        action = expert_action if rng.random() < beta else learner.act(obs, rng)
        ### END SOLUTION
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            returns.append(total)
            obs, _ = env.reset(seed=first_seed + episodes)
            total, episodes = 0.0, episodes + 1
    return np.asarray(states), np.asarray(labels), returns, episodes


def fit(policy, optimizer, data: Demonstrations, updates: int, batch_size: int, rng: np.random.Generator) -> float:
    """``updates`` Adam steps on minibatches drawn from all of ``data``; return the loss on all of it."""
    observations = torch.as_tensor(data.observations)
    actions = torch.as_tensor(data.actions)
    for _ in range(updates):
        idx = torch.as_tensor(rng.integers(0, len(data), size=min(batch_size, len(data))))
        loss = negative_log_likelihood(policy, observations[idx], actions[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(negative_log_likelihood(policy, observations, actions))


def expert_for(env_id: str, expert=None):
    """The expert to imitate: ``expert`` if given, else the scripted controller of CartPole-v1."""
    if expert is not None:
        return expert
    if env_id != "CartPole-v1":
        raise ConfigError(f"dagger needs an expert to label states; only CartPole-v1 has a scripted one, not {env_id}")
    return cartpole_controller()


def train(
    env_id: str = "CartPole-v1",
    config: DAggerConfig | None = None,
    *,
    steps: int = 2_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    callback=None,
    expert=None,
) -> Result:
    """DAgger until ``steps`` expert labels are used; return a Result with the learner's policy.

    ``steps`` counts expert labels (the states the expert was asked about, its own
    demonstrations in round 0 included). The log has one row per round: ``round``,
    ``env_steps`` (labels so far), ``return`` (mean return of the episodes that ended while
    the round's driver played; NaN in round 0 and when none ended), ``episodes``,
    ``error_own_states`` (how often the learner that drove disagreed with the expert on the
    states it visited, before retraining), ``loss`` (negative log-likelihood of all the data
    after retraining) and ``beta``. ``callback(env_steps, policy)`` runs after each round.
    """
    config = config or DAggerConfig()
    check_run_args(steps)
    expert = expert_for(env_id, expert)
    env = gym.make(env_id, **(env_kwargs or {}))
    rng = seed_everything(seed)
    policy = make_policy("dagger", env.observation_space, env.action_space, config.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    record = IterationRecord(
        "dagger",
        env_id,
        env_kwargs,
        config,
        seed,
        steps,
        columns=LOG_COLUMNS,
        make_row=lambda window, returns, lengths: window[-1],
        out=out,
        progress=progress,
        checkpoint_every=10**12,
        callback=callback,
    )
    base = 100_000 * seed
    first = min(config.labels_per_round, steps)
    data = collect_demonstrations(expert, env_id, 1, base, env_kwargs, min_pairs=first).subset(slice(0, first))
    next_seed = base + ROLLOUT_SEED_OFFSET
    with record, torch_threads(1):
        for round_ in range(math.ceil(steps / config.labels_per_round)):
            returns, error, beta = [], float("nan"), config.beta**round_
            if round_ > 0:
                n = min(config.labels_per_round, steps - len(data))
                states, labels, returns, episodes = drive(policy, expert, env, n, beta, rng, next_seed)
                next_seed += episodes
                with torch.no_grad():
                    error = float(np.mean([policy.act(s, rng) != a for s, a in zip(states, labels)]))
                data = aggregate(data, states, labels)
            loss = fit(policy, optimizer, data, config.updates_per_round, config.batch_size, rng)
            stats = {"round": round_, "error_own_states": error, "loss": loss, "beta": beta}
            record.end_iteration(len(data), stats, returns, [], lambda: {}, policy.eval(), final=True)
            policy.train()
    env.close()
    return record.result(policy)


LOG_COLUMNS = ["round", "env_steps", "return", "episodes", "error_own_states", "loss", "beta"]


def dagger_study(
    expert,
    env_id: str,
    rounds: int,
    seeds=(0,),
    config: DAggerConfig | None = None,
    eval_episodes: int = 10,
    env_kwargs=None,
) -> pd.DataFrame:
    """DAgger for ``rounds`` rounds per seed, each learner judged after every round as
    :func:`~rlcourse.pg.imitation.compounding_error_study` judges a clone: ``eval_episodes``
    greedy episodes from ``reset(seed = 100 000 · seed + 60 000)`` on, episodes no round trains on.

    One row per (round, seed): ``samples`` (expert labels so far), ``seed``, ``return``,
    ``error_own_states`` (disagreement with the expert on the states the learner visited in
    those episodes), ``own_states``.
    """
    config = config or DAggerConfig()
    rows = []
    for seed in seeds:

        def judge(labels, policy, seed=seed):
            driver = StateLog(policy)
            played = evaluate_policy(
                driver, env_id, eval_episodes, 100_000 * seed + 60_000, print_fn=None, env_kwargs=env_kwargs
            )
            error = disagreement(policy, expert, driver.states)
            rows.append([labels, seed, played["mean_return"], error, len(driver.states)])

        train(
            env_id,
            config,
            steps=rounds * config.labels_per_round,
            seed=seed,
            env_kwargs=env_kwargs,
            callback=judge,
            expert=expert,
        )
    return pd.DataFrame(rows, columns=["samples", "seed", "return", "error_own_states", "own_states"])


def plot_label_efficiency(studies: dict, column: str = "return", ax=None):
    """``column`` against expert labels, one curve per study (``{"DAgger": frame, ...}``): the IQM
    over seeds with its pointwise 95% bootstrap band."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, frame in studies.items():
        table = frame.pivot(index="seed", columns="samples", values=column)
        band = stats.curve_band(table.to_numpy(float), table.columns.to_numpy(float))
        ax.plot(band["grid"], band["estimate"], "o-", ms=3, label=name)
        ax.fill_between(band["grid"], band["low"], band["high"], alpha=0.2)
    ax.set_xscale("log")
    ax.set(xlabel="expert labels", ylabel=column.replace("_", " "))
    ax.legend()
    return ax.figure
