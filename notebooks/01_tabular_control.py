# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 1: tabular control with Q-learning and SARSA
#
# An agent that knows nothing about its world keeps one number per state and action,
# $Q(s, a)$: how much return it expects if it takes action $a$ in state $s$ and behaves
# well afterwards. It acts on that table and corrects it after every step. In this lesson:
#
# 1. the corridor, a world small enough to see all of it at once;
# 2. the ε-greedy choice of action, and why ties must be broken at random;
# 3. Q-learning on the corridor: the table, the learning curve, the greedy walk;
# 4. Q-learning on FrozenLake, where the ice is slippery;
# 5. the cliff: Q-learning and SARSA learn different paths, and why.
#
# The next cell holds the budgets. The values given run the whole notebook in about a
# minute on two CPU cores; the test suite replaces them with tiny ones.
#
# The runs here are seeded with `SEED` (0; where several are averaged, `SEED`, `SEED + 1`,
# …), and a number quoted below "when this notebook was written" comes from those seeds on
# our machine: it shows what happened, not how often it happens. How often is a statement
# over many seeds: `docs/benchmarks.md` gives ten seeds' interquartile mean, 95%
# confidence interval and solved fraction for every algorithm on its lesson's task.

# %% tags=["parameters"]
SEED = 0
TIE_DRAWS = 10_000          # draws when counting the actions an all-zero table picks
TIE_EPISODES = 200          # greedy episodes on an all-zero corridor table
CORRIDOR_STEPS = 3_000
FROZENLAKE_STEPS = 300_000
EVAL_EPISODES = 1_000       # greedy episodes to measure a success rate
CLIFF_STEPS = 20_000
CLIFF_SEEDS = 10            # runs per algorithm averaged in the cliff learning curves

# %%
import dataclasses

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import rlcourse
from rlcourse.play import evaluate
from rlcourse.stats import curve_band
from rlcourse.tabular.qtable import QTable, epsilon_greedy, greedy_action

# %% [markdown]
# ## 1. The corridor
#
# Six cells in a row. The agent `o` starts in cell 0; the treasure `T` is in cell 5.
# Action 0 moves left (into the wall at cell 0 it stays put), action 1 moves right.
# Reaching the treasure gives reward $r = 1$ and ends the episode; every other step
# gives $0$. After 100 steps an episode is cut off (*truncated*).

# %%
env = gym.make("rlcourse/Corridor-v0", render_mode="ansi")
state, _ = env.reset(seed=SEED)
print(env.render())
print("states:", env.observation_space, " actions:", env.action_space,
      env.unwrapped.action_names)

# %% [markdown]
# The environment also publishes its model $P(s', r \mid s, a)$, in the form all of
# Gymnasium's toy-text worlds use: `P[s][a]` is a list of
# `(probability, next_state, reward, terminated)`. The corridor is deterministic, so
# each list has one entry. We will not use the model to learn in this lesson (that is
# lesson 2, planning), but it tells us exactly what the agent has to discover.

# %%
P = env.unwrapped.P
model = pd.DataFrame(
    [(s, env.unwrapped.action_names[a], p, s_next, r, done)
     for s in P for a in P[s] for p, s_next, r, done in P[s][a]],
    columns=["state", "action", "probability", "next state", "reward", "terminated"],
)
model

# %% [markdown]
# ## 2. Choosing an action: ε-greedy, with ties broken at random
#
# The agent exploits what it knows by taking the greedy action $\arg\max_a Q(s, a)$,
# and explores by taking a random action with a small probability $\varepsilon$:
#
# $$a = \begin{cases} \text{a uniformly random action} & \text{with probability } \varepsilon \\
# \arg\max_a Q(s, a) & \text{otherwise.} \end{cases}$$
#
# A fresh table is all zeros, so at the start *every* action is greedy. `np.argmax`
# returns the first of the tied maxima, which is always action 0. The package's
# `greedy_action` picks uniformly among the tied actions instead. Count what each one
# picks in state 0 of an all-zero table, with $\varepsilon = 0.1$:

# %%
rng = np.random.default_rng(SEED)
q_row = np.zeros(2)
epsilon = 0.1


def epsilon_argmax(q_row, epsilon, rng):
    """ε-greedy with np.argmax: ties always go to the lowest action index."""
    return int(rng.integers(q_row.size)) if rng.random() < epsilon else int(np.argmax(q_row))


counts = pd.DataFrame({
    "ties broken at random": np.bincount(
        [epsilon_greedy(q_row, epsilon, rng) for _ in range(TIE_DRAWS)], minlength=2),
    "np.argmax (first index)": np.bincount(
        [epsilon_argmax(q_row, epsilon, rng) for _ in range(TIE_DRAWS)], minlength=2),
}, index=pd.Index(env.unwrapped.action_names, name="action chosen"))
counts

# %% [markdown]
# With `np.argmax`, "right" is tried only when exploration happens to pick it
# ($\varepsilon/2 = 5\%$ of the time). That is bad enough in the corridor; with a purely
# greedy agent ($\varepsilon = 0$) it is fatal. The reward is only at the far end, so
# until the agent first reaches the treasure every $Q$ stays $0$ and every choice is a
# tie. Let a greedy agent on the all-zero table walk the corridor: how often does it
# reach the treasure before the 100-step limit?

# %%
def reaches_treasure(choose, rng):
    env = gym.make("rlcourse/Corridor-v0")
    state, _ = env.reset()
    q = np.zeros((env.observation_space.n, env.action_space.n))
    done = False
    while not done:
        state, reward, terminated, truncated, _ = env.step(choose(q[state], rng))
        done = terminated or truncated
    return terminated


rng = np.random.default_rng(SEED)
for name, choose in [("ties broken at random", greedy_action),
                     ("np.argmax (first index)", lambda q_row, rng: int(np.argmax(q_row)))]:
    rate = np.mean([reaches_treasure(choose, rng) for _ in range(TIE_EPISODES)])
    print(f"{name:24s}: reaches the treasure in {rate:.0%} of {TIE_EPISODES} episodes")

# %% [markdown]
# Breaking ties at random turns the untrained greedy agent into a random walker, which
# finds the treasure; `np.argmax` walks into the left wall for ever.
#
# ## 3. Q-learning on the corridor
#
# After each step $(s_t, a_t, r_{t+1}, s_{t+1})$ Q-learning moves $Q(s_t, a_t)$ a step
# $\alpha$ toward a one-step target:
#
# $$Q(s_t, a_t) \leftarrow Q(s_t, a_t) + \alpha \big[\, r_{t+1} + \gamma \max_{a} Q(s_{t+1}, a) - Q(s_t, a_t) \,\big]$$
#
# with the target just $r_{t+1}$ when $s_{t+1}$ is terminal. The bracket is the *TD
# error* $\delta_t$. The agent behaves ε-greedily, with $\varepsilon$ falling linearly from
# 1 to 0.05 over the first half of the run. Defaults: $\alpha = 0.1$, $\gamma = 0.99$.

# %%
corridor = rlcourse.train("q-learning", "rlcourse/Corridor-v0", steps=CORRIDOR_STEPS, seed=SEED)
print(corridor.config)
print(f"{len(corridor.log)} episodes in {corridor.timing['seconds']:.2f} s")
corridor.q_table.round(3)

# %% [markdown]
# Moving right is better in every cell. The optimal values are known in closed form:
# from cell $s$ the treasure is $5 - s$ steps away and only the last step is rewarded, so
#
# $$Q^*(s, \text{right}) = \gamma^{4 - s}, \qquad Q^*(s, \text{left}) = \gamma \, V^*(\max(s - 1, 0)) = \gamma^{\,6 - s - [s = 0]}.$$
#
# (The treasure cell is terminal; its row is never updated and stays 0.) The "right"
# values match closely. The "left" values lag behind: once $\varepsilon$ is small the
# agent rarely tries "left", so those entries get few updates.

# %%
gamma = corridor.config.gamma
cells = np.arange(5)
compare = pd.DataFrame({
    "learned Q(s, right)": corridor.policy.values[:5, 1],
    "Q*(s, right) = γ^(4-s)": gamma ** (4 - cells),
    "learned Q(s, left)": corridor.policy.values[:5, 0],
    "Q*(s, left)": gamma ** (6 - cells - (cells == 0)),
}, index=pd.Index(cells, name="state"))
compare.round(4)

# %% [markdown]
# The learning curve. `corridor.plot()` would draw the return per episode, but here
# every episode that reaches the treasure has return 1, so that curve is flat. The log
# has more telling columns: the episode length falls from a random walk's dozens of
# steps to the shortest path, 5 steps, plus the odd exploratory step while
# $\varepsilon > 0$; and the mean $|\delta_t|$ per episode falls as the table stops
# being surprised. The spikes late in the run are episodes with an exploratory step
# "left", an action whose values have not converged yet.

# %%
log = corridor.log
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot(log["env_steps"], log["length"], lw=0.8, alpha=0.5, label="episode length")
axes[0].plot(log["env_steps"], log["length"].rolling(20, min_periods=1).mean(), lw=1.8,
             label="mean of last 20")
axes[0].axhline(5, color="k", ls=":", lw=1, label="shortest path (5)")
axes[0].set_yscale("log")
axes[0].set_yticks([5, 10, 20, 40], labels=["5", "10", "20", "40"])
axes[0].minorticks_off()
axes[0].set_ylabel("steps per episode")
axes[0].legend(fontsize="small")
ax_eps = axes[0].twinx()
ax_eps.plot(log["env_steps"], log["epsilon"], color="gray", lw=1)
ax_eps.set_ylabel("ε (gray line)")
axes[1].plot(log["env_steps"], log["mean_abs_td_error"], lw=1)
axes[1].set_yscale("log")
axes[1].set_ylabel("mean |TD error| in the episode")
for ax in axes:
    ax.set_xlabel("environment steps")
fig.suptitle("Q-learning on the corridor")
fig.tight_layout()
plt.show()

# %% [markdown]
# Now the greedy policy, $\pi(s) = \arg\max_a Q(s, a)$, with no exploration: one episode,
# drawn frame by frame.

# %%
evaluate(corridor, episodes=1, seed=SEED, render="ansi")

# %% [markdown]
# ## 4. FrozenLake: the same algorithm on slippery ice
#
# `FrozenLake-v1` is a 4×4 lake: start `S`, goal `G` (reward 1), holes `H` (the episode
# ends with 0). The ice is slippery: the agent moves in the intended direction with
# probability 1/3 and to either side with probability 1/3 each. Even the best policy
# reaches the goal only about 74% of the time within the 100-step limit.
#
# With random transitions the target $r + \gamma \max_a Q(s', a)$ is noisy, and a large
# $\alpha$ makes $Q$ chase the last few samples. A small step size averages over many:
# $\alpha = 0.02$, with a longer run to make up for it.

# %%
lake_env = gym.make("FrozenLake-v1", render_mode="ansi")
lake_env.reset(seed=SEED)
print(lake_env.render())
print("from state 0, action 'right':", lake_env.unwrapped.P[0][2])

# %%
lake = rlcourse.train("q-learning", "FrozenLake-v1", steps=FROZENLAKE_STEPS, seed=SEED, alpha=0.02)
print(f"{len(lake.log)} episodes in {lake.timing['seconds']:.1f} s")
fig = lake.plot(window=500)
fig.axes[0].set_ylabel("return (1 = reached the goal)")
plt.show()

# %% [markdown]
# The learning curve above is the *online* success rate, while the agent still explores.
# The greedy policy is what we keep. We measure its success rate over many episodes and
# compare it with the uniform random policy. The random policy is free to build: the
# greedy policy of an all-zero table, whose ties are broken at random, picks every
# action with equal probability.

# %%
greedy_score = evaluate(lake, episodes=EVAL_EPISODES, seed=SEED)
untrained = dataclasses.replace(
    lake, policy=QTable(np.zeros_like(lake.policy.values), lake.policy.action_names))
random_score = evaluate(untrained, episodes=EVAL_EPISODES, seed=SEED)
print(f"greedy policy : success rate {greedy_score['mean_return']:.3f} "
      f"over {EVAL_EPISODES} episodes (mean length {greedy_score['mean_length']:.1f})")
print(f"random policy : success rate {random_score['mean_return']:.3f}")

# %% [markdown]
# The learned policy, drawn on the lake. Look at the cells next to holes: the agent often
# aims *away* from the goal, because on slippery ice the direction it asks for is the one
# it can never slide against (moving "left" slides up or down, never right).

# %%
arrows = np.array(["←", "↓", "→", "↑"])
desc = lake_env.unwrapped.desc.astype(str)
greedy = lake.policy.greedy_policy().reshape(4, 4)
policy_map = np.where(np.isin(desc, ["H", "G"]), desc, arrows[greedy])
print("\n".join(" ".join(row) for row in policy_map))

# %% [markdown]
# ## 5. The cliff: Q-learning against SARSA
#
# `CliffWalking-v1` is a 4×12 grid. The agent starts at the bottom left and the goal is
# at the bottom right; the cells between them are a cliff. Every step costs $-1$; stepping
# into the cliff costs $-100$ and sends the agent back to the start (Sutton & Barto,
# Example 6.6).
#
# SARSA differs from Q-learning in one term: it bootstraps from the action $a_{t+1}$ it
# is actually going to take, chosen ε-greedily,
#
# $$Q(s_t, a_t) \leftarrow Q(s_t, a_t) + \alpha \big[\, r_{t+1} + \gamma Q(s_{t+1}, a_{t+1}) - Q(s_t, a_t) \,\big],$$
#
# and expected SARSA averages over that choice,
# $r_{t+1} + \gamma \sum_a \pi(a \mid s_{t+1}) Q(s_{t+1}, a)$.
#
# Q-learning's target uses the best next action, whatever the agent will really do: it
# learns the values $q_*$ of the optimal policy (*off-policy*). SARSA learns the values
# $q_\pi$ of the ε-greedy policy it follows, exploration included (*on-policy*). We keep
# $\varepsilon = 0.1$ fixed as in the book's example, with $\gamma = 1$ (the task is
# undiscounted) and our choice of step size $\alpha = 0.2$, and average each algorithm over
# several seeds.

# %%
cliff_config = dict(alpha=0.2, gamma=1.0, epsilon_start=0.1, epsilon_end=0.1)
algos = ["q-learning", "sarsa", "expected-sarsa"]
cliff = {algo: [rlcourse.train(algo, "CliffWalking-v1", steps=CLIFF_STEPS, seed=SEED + i,
                               **cliff_config)
                for i in range(CLIFF_SEEDS)]
         for algo in algos}

fig, ax = plt.subplots(figsize=(8, 4))
for algo, runs in cliff.items():
    n = min(len(run.log) for run in runs)
    smoothed = np.array([run.log["return"].rolling(20, min_periods=1).mean().to_numpy()[:n] for run in runs])
    band = curve_band(smoothed, np.arange(1, n + 1))     # per episode: IQM over seeds, 95% interval
    line, = ax.plot(band["grid"], band["estimate"], label=algo)
    ax.fill_between(band["grid"], band["low"], band["high"], color=line.get_color(), alpha=0.25, lw=0)
ax.set_ylim(-100, 0)
ax.set_xlabel("episode")
ax.set_ylabel("return during the episode")
ax.set_title(f"CliffWalking, ε = 0.1: online return smoothed over 20 episodes\n"
             f"(interquartile mean of {CLIFF_SEEDS} seeds, 95% bootstrap band)")
ax.legend()
plt.show()

# %% [markdown]
# The band is where the interquartile mean of the seeds would land if we drew the seeds
# again (a 95% bootstrap interval, `rlcourse.stats.curve_band`). While learning, SARSA
# collects *more* reward than Q-learning, and the bands do not overlap. Over the last 200
# episodes of 20,000 steps, ten seeds give −23.8 for SARSA (95% CI −24.5 to −23.0),
# −49.2 for Q-learning (−52.8 to −47.1) and −21.6 for expected SARSA (−22.8 to −20.4)
# (`docs/benchmarks.md`). Now the greedy paths the three tables describe (seed 0), found
# by following $\arg\max_a Q(s, a)$ through the model from the start:

# %%
cliff_env = gym.make("CliffWalking-v1").unwrapped
START, GOAL = 36, 47


def greedy_path(q_values, limit=100):
    """States visited by the greedy policy from the start, stopping at the goal or a loop."""
    path = [START]
    while path[-1] != GOAL and len(path) <= limit:
        _, s_next, _, _ = cliff_env.P[path[-1]][int(np.argmax(q_values[path[-1]]))][0]
        if s_next in path:  # an untrained table can walk in circles
            break
        path.append(int(s_next))
    return path


fig, ax = plt.subplots(figsize=(10, 3.8))
grid = np.zeros((4, 12))
grid[3, 1:11] = 1
ax.imshow(grid, cmap="Greys", vmin=0, vmax=2.5)
ax.text(0, 3, "S", ha="center", va="center", fontsize=14, weight="bold")
ax.text(11, 3, "G", ha="center", va="center", fontsize=14, weight="bold")
ax.text(5.5, 3, "the cliff", ha="center", va="center", color="white", fontsize=12)
rows = []
for (algo, runs), offset in zip(cliff.items(), (0.15, -0.15, 0.0)):
    path = greedy_path(runs[0].policy.values)
    r, c = np.divmod(np.array(path), 12)
    reached = path[-1] == GOAL
    ax.plot(c + offset, r + offset, marker="o", ms=4, lw=2,
            label=f"{algo}: {len(path) - 1} steps" + ("" if reached else " (no goal)"))
    online = [run.log["return"].tail(200).mean() for run in runs]
    rows.append((algo, len(path) - 1, reached, np.mean(online)))
ax.set_xticks(range(12))
ax.set_yticks(range(4))
ax.set_xlim(-0.5, 11.5)
ax.set_ylim(3.5, -0.5)
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
ax.set_title("greedy paths after training (seed 0)")
fig.tight_layout()
plt.show()
pd.DataFrame(rows, columns=["algorithm", "greedy path length", "reaches goal",
                            "online return, last 200 episodes"]).set_index("algorithm").round(1)

# %% [markdown]
# **Why they differ.** Q-learning's values belong to the optimal policy, and the optimal
# path runs along the edge of the cliff: 13 steps, return $-13$. But the agent does not
# *follow* that policy while learning: one step in ten is random, and next to the cliff a
# random "down" costs $-100$. So its online return is poor.
#
# SARSA's values include those exploratory falls: a cell next to the cliff is worth less
# under the ε-greedy policy than a cell one row up. Its greedy path keeps a safe distance
# (17 steps, on each of ten seeds in `docs/benchmarks.md`), and while learning it falls
# far less often. Expected SARSA's path
# lies in between, and its online return is the best of the three: it averages over the
# next action instead of sampling it, which takes one source of noise out of its updates,
# so it tolerates larger step sizes: with $\alpha = 0.5$ plain SARSA's greedy policy
# walks in circles for some seeds, expected SARSA's does not.
#
# Neither is wrong: they answer different questions. If $\varepsilon$ decayed to 0, SARSA's
# policy would become greedy and both would end on the optimal path.
#
# **Try it:** set `epsilon_end=0.0` with `exploration_fraction=0.9` for SARSA and watch its
# path move toward the cliff; or raise $\alpha$ on FrozenLake and watch the success rate fall.
