r"""Tabular TD control: Q-learning, SARSA and expected SARSA (lesson 1).

All three follow an ε-greedy behaviour policy and move Q(s, a) toward a one-step target:

.. math::

    Q(s_t, a_t) \leftarrow Q(s_t, a_t) + \alpha\,[\,y_t - Q(s_t, a_t)\,]

and differ only in the target :math:`y_t`:

* Q-learning (off-policy): :math:`y_t = r_{t+1} + \gamma \max_a Q(s_{t+1}, a)`
* SARSA (on-policy): :math:`y_t = r_{t+1} + \gamma Q(s_{t+1}, a_{t+1})`, with
  :math:`a_{t+1}` the action the agent will actually take next
* expected SARSA: :math:`y_t = r_{t+1} + \gamma \sum_a \pi(a \mid s_{t+1}) Q(s_{t+1}, a)`

At a terminal :math:`s_{t+1}` the target is :math:`r_{t+1}` alone. An episode cut by
the step limit (``truncated``) still bootstraps: the state it stopped in is not terminal.

Pseudocode (Sutton & Barto, 2nd ed., §6.4–6.5)::

    for each step:
        take a_t, observe r_{t+1}, s_{t+1}
        y_t = target above
        Q(s_t, a_t) += α (y_t − Q(s_t, a_t))
        a_{t+1} ← ε-greedy(Q(s_{t+1}, ·))     (SARSA picks it before the update)

ε falls linearly from ``epsilon_start`` to ``epsilon_end`` over the first
``exploration_fraction`` of the steps, then stays there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlcourse.config import check_choice, check_range
from rlcourse.run import IterationRecord, NonFiniteError, Result, check_run_args, require_discrete, seed_everything
from rlcourse.tabular.qtable import QTable, action_names_for, epsilon_greedy

METHODS = ("q-learning", "sarsa", "expected-sarsa")


@dataclasses.dataclass(frozen=True)
class TDControlConfig:
    method: str = "q-learning"
    alpha: float = 0.1  # step size α
    gamma: float = 0.99  # discount γ
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    exploration_fraction: float = 0.5  # share of the steps over which ε falls
    q_init: float = 0.0  # initial value of every Q(s, a)

    def __post_init__(self):
        check_choice(self, "method", METHODS)
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon_start", 0, 1)
        check_range(self, "epsilon_end", 0, 1)
        check_range(self, "exploration_fraction", 0, 1)
        check_range(self, "q_init")


def epsilon_at(config: TDControlConfig, step: int, total_steps: int) -> float:
    """Linear ε schedule: epsilon_start → epsilon_end over exploration_fraction · total_steps."""
    # Hint: the schedule lasts span = exploration_fraction · total_steps steps. From step
    # Hint: ``span`` on (and always when span is 0) ε is epsilon_end; before that, ε moves
    # Hint: in a straight line from epsilon_start (step 0) toward epsilon_end (step span).
    ### BEGIN SOLUTION
    span = config.exploration_fraction * total_steps
    if span <= 0 or step >= span:
        return config.epsilon_end
    return config.epsilon_start + (config.epsilon_end - config.epsilon_start) * step / span
    ### END SOLUTION


def td_target(
    config: TDControlConfig, q_next, next_action: int, reward: float, terminated: bool, epsilon: float
) -> float:
    """The one-step target y_t of the chosen method (``q_next`` is the row Q(s_{t+1}, ·))."""
    # Hint: a terminated step has nothing to bootstrap from. Otherwise the three methods
    # Hint: differ only in the value of s_{t+1} they use (see the module docstring): the
    # Hint: max of the row, the entry of ``next_action``, or its mean under the ε-greedy
    # Hint: policy, where each action gets ε/|A| and the greedy actions share 1 − ε equally.
    # Hint: return a Python float.
    ### BEGIN SOLUTION
    if terminated:
        return reward
    if config.method == "q-learning":
        bootstrap = max(q_next)
    elif config.method == "sarsa":
        bootstrap = q_next[next_action]
    else:  # expected SARSA under the ε-greedy policy, ties sharing the greedy mass
        best = max(q_next)
        ties = sum(value == best for value in q_next)
        bootstrap = sum(value * (epsilon / len(q_next) + (1 - epsilon) * (value == best) / ties) for value in q_next)
    return reward + config.gamma * float(bootstrap)
    ### END SOLUTION


def train(env_id: str = "rlcourse/Corridor-v0", config: TDControlConfig | None = None, *, steps: int = 3000,
          seed: int = 0, out: str | Path | None = None, progress: bool = False, env_kwargs: dict | None = None,
          checkpoint_every: int = 10_000, resume: bool = False, tensorboard: str | Path | None = None,
          callback=None) -> Result:  # fmt: skip
    """Run TD control for ``steps`` environment steps; return a Result with a QTable.

    One log row (``LOG_COLUMNS``) and one iteration of the :class:`~rlcourse.run.IterationRecord`
    per finished episode: checkpoints, ``resume`` and ``callback(env_steps, q_table)`` come at episode ends.
    """
    config = config or TDControlConfig()
    check_run_args(steps)
    env = gym.make(env_id, **(env_kwargs or {}))
    n_states, n_actions = require_discrete(config.method, env)
    rng = seed_everything(seed)
    q = [[float(config.q_init)] * n_actions for _ in range(n_states)]  # Q[s][a], synced to policy.values
    policy = QTable(np.array(q), action_names_for(env))
    alpha, sarsa = config.alpha, config.method == "sarsa"
    record = IterationRecord(
        config.method,
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
    q, env, obs, action, epsilon = (
        _load(record.resumed, rng) if record.resumed else _start(env, q, config, seed, steps, rng)
    )
    episode_return, episode_length, abs_td, completed = 0.0, 0, 0.0, record.env_steps
    with record:
        for step in range(record.env_steps + 1, steps + 1):
            next_obs, gym_reward, terminated, truncated, _ = env.step(action)
            reward = float(gym_reward)
            epsilon = epsilon_at(config, step, steps)
            next_action = epsilon_greedy(q[next_obs], epsilon, rng) if sarsa else -1
            # Hint: the TD error is y_t − Q(s_t, a_t), with y_t from ``td_target`` (an episode
            # Hint: cut by the step limit, ``truncated``, still bootstraps); then move
            # Hint: Q(s_t, a_t) by α times it. Q is the list of lists ``q[state][action]``.
            ### BEGIN SOLUTION
            td_error = td_target(config, q[next_obs], next_action, reward, terminated, epsilon) - q[obs][action]
            q[obs][action] += alpha * td_error
            ### END SOLUTION
            if not math.isfinite(td_error):
                raise NonFiniteError("TD error", step, record.last_checkpoint)
            episode_return += reward
            episode_length += 1
            completed = step
            abs_td += abs(td_error)
            if terminated or truncated:
                obs, _ = env.reset()
                action = epsilon_greedy(q[obs], epsilon, rng)
                stats = {
                    "episode": len(record.rows),
                    "return": episode_return,
                    "length": episode_length,
                    "epsilon": epsilon,
                    "mean_abs_td_error": abs_td / episode_length,
                }
                if callback is not None:
                    policy.values[:] = q
                state = functools.partial(_snapshot, q, env, obs, action, epsilon, rng)
                record.end_iteration(step, stats, [], [], state, policy)
                episode_return, episode_length, abs_td = 0.0, 0, 0.0
            else:
                obs = next_obs
                action = next_action if sarsa else epsilon_greedy(q[obs], epsilon, rng)
    record.advance(completed)
    env.close()
    policy.values[:] = q
    return record.result(policy)


LOG_COLUMNS = ["episode", "env_steps", "return", "length", "epsilon", "mean_abs_td_error"]


def _start(env: gym.Env, q: list, config: TDControlConfig, seed: int, steps: int, rng: np.random.Generator) -> tuple:
    """Q, the environment reset with ``seed``, its first observation, the first action and ε."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    epsilon = epsilon_at(config, 0, steps)
    return q, env, obs, epsilon_greedy(q[obs], epsilon, rng), epsilon


def _snapshot(q: list, env: gym.Env, obs: int, action: int, epsilon: float, rng: np.random.Generator) -> dict:
    """What a checkpoint holds: Q, the environment as it stands, the next action and ε, the random state."""
    return {
        "q": [list(row) for row in q],
        "env": env,
        "obs": obs,
        "action": action,
        "epsilon": epsilon,
        "rng": rng.bit_generator.state,
    }


def _load(state: dict, rng: np.random.Generator) -> tuple:
    """Q, the environment (as it stood), its observation, the next action and ε, from a checkpoint."""
    rng.bit_generator.state = state["rng"]
    return state["q"], state["env"], state["obs"], state["action"], state["epsilon"]
