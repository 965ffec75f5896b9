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
# # Lesson 2: policy evaluation and planning
#
# Lesson 1 learned to *act*. This lesson steps back to a simpler question: given a
# policy $\pi$, how good is it? Its answer is the state-value function
#
# $$V^\pi(s) = \mathbb{E}_\pi\Big[\sum_{k \ge 0} \gamma^k r_{t+k+1} \,\Big|\, s_t = s\Big].$$
#
# 1. With the model known, $V^\pi$ is the solution of a linear system: exact.
# 2. Without the model, we estimate it from episodes: Monte-Carlo (first-visit,
#    every-visit, constant-α) and TD(0), and compare how fast they get close.
# 3. With the model known, we can also *plan*: value iteration and policy iteration find
#    the optimal policy of FrozenLake without taking a single step in it.
#
# The next cell holds the budgets; the values given run the notebook in well under a
# minute on two CPU cores. The test suite replaces them with tiny ones.
#
# The runs here are seeded with `SEED` (0; where several are averaged, `SEED`, `SEED + 1`,
# …), and a number quoted below "when this notebook was written" comes from those seeds on
# our machine: it shows what happened, not how often it happens. How often is a statement
# over many seeds: `docs/benchmarks.md` gives ten seeds' interquartile mean, 95%
# confidence interval and solved fraction for every algorithm on its lesson's task.

# %% tags=["parameters"]
SEED = 0
EPISODES = 300   # episodes per sampled evaluation run
RUNS = 50        # independent runs averaged in each error curve
TD_LAMBDA_SEEDS = 10   # runs per (λ, α) in the TD(λ) sweep
DYNA_SEEDS = 10        # seeds per number of planning steps in the Dyna-Q figure
DYNA_EPISODES = 50     # episodes per Dyna-Q run
DYNA_PLUS_SEEDS = 5    # seeds of Dyna-Q and Dyna-Q+ on the shortcut maze
DYNA_PLUS_STEPS = 6000 # real steps on the shortcut maze (it opens at step 3000)

# %%
import time

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.tabular.evaluation import (exact_evaluation, greedy_policy_matrix, mc_evaluation,
                                         model_arrays, td0_evaluation, uniform_policy)
from rlcourse.tabular.planning import policy_iteration, value_iteration

# %% [markdown]
# ## 1. Exact evaluation: a linear system
#
# $V^\pi$ satisfies the Bellman expectation equation: the value of a state is the
# expected reward of the next step plus the discounted value of where it leads,
#
# $$V^\pi(s) = \sum_a \pi(a \mid s) \Big[ R(s, a) + \gamma \sum_{s'} T(s, a, s')\, V^\pi(s') \Big].$$
#
# Averaging the model over the policy's actions gives a transition matrix
# $P_\pi(s, s') = \sum_a \pi(a \mid s)\, T(s, a, s')$ and a reward vector
# $r_\pi(s) = \sum_a \pi(a \mid s)\, R(s, a)$, and the equation becomes
#
# $$V^\pi = r_\pi + \gamma P_\pi V^\pi \quad\Longleftrightarrow\quad (I - \gamma P_\pi)\, V^\pi = r_\pi,$$
#
# one linear equation per state. `model_arrays` turns the environment's `P[s][a]` lists
# into the arrays $T[s, a, s']$ and $R[s, a]$. A transition that terminates pays its
# reward and adds nothing to $T$, so a terminal state's row is zero and its value is 0.
#
# Our policy is the uniform random one, $\pi(a \mid s) = 1/|\mathcal{A}|$, first on the
# corridor of lesson 1, with $\gamma = 0.9$.

# %%
corridor = gym.make("rlcourse/Corridor-v0")
P = corridor.unwrapped.P
n_states, n_actions = corridor.observation_space.n, corridor.action_space.n
T, R = model_arrays(P)
pi_random = uniform_policy(n_states, n_actions)
GAMMA = 0.9

P_pi = np.einsum("sa,sat->st", pi_random, T)
print("P_π (row s, column s'):")
print(pd.DataFrame(P_pi).round(2))
print("\nr_π:", (pi_random * R).sum(axis=1))

# %%
V_exact = exact_evaluation(P, pi_random, GAMMA)
pd.DataFrame({"V^π(s), γ = 0.9": V_exact,
              "V^π(s), γ = 1": exact_evaluation(P, pi_random, 1.0)},
             index=pd.Index(range(n_states), name="state")).round(4)

# %% [markdown]
# With $\gamma = 1$ every cell is worth exactly 1: the random walk always reaches the
# treasure in the end. Discounting makes a late treasure worth less, so with $\gamma = 0.9$
# the far cells, where the walk wanders longest, are worth least.
#
# The same three lines evaluate the random policy on FrozenLake (lesson 1's slippery
# 4×4 lake). There the only reward is 1 at the goal, so with $\gamma = 1$ the value of a
# state is the *probability* that the random policy reaches the goal from it.

# %%
lake = gym.make("FrozenLake-v1")
lake_P = lake.unwrapped.P
lake_map = lake.unwrapped.desc.astype(str)
V_lake_random = exact_evaluation(lake_P, uniform_policy(16, 4), 1.0)


def draw_lake(ax, V, title, actions=None):
    """V as a 4×4 heat map with the letters of the map and, optionally, the policy's arrows."""
    image = ax.imshow(V.reshape(4, 4), cmap="viridis")
    arrows = "←↓→↑"
    for s in range(16):
        row, col = divmod(s, 4)
        tile = lake_map[row, col]
        label = tile if tile in "HG" else f"{V[s]:.3f}"
        if actions is not None and tile not in "HG":
            label = f"{arrows[actions[s]]}\n{label}"
        ax.text(col, row, label, ha="center", va="center", fontsize=10,
                color="white" if V[s] < 0.6 * V.max() else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return image


fig, ax = plt.subplots(figsize=(4, 4))
fig.colorbar(draw_lake(ax, V_lake_random, "FrozenLake: $V^\\pi$ of the random policy (γ = 1)"),
             ax=ax, shrink=0.8)
plt.show()
print(f"the random policy reaches the goal from the start with probability {V_lake_random[0]:.4f}")

# %% [markdown]
# ## 2. Estimating $V^\pi$ from experience: Monte-Carlo and TD(0)
#
# Without the model, the agent can only play episodes with $\pi$ and watch. **Monte-Carlo
# (MC)** waits until the episode ends, computes the return that followed each visit,
#
# $$G_t = r_{t+1} + \gamma G_{t+1}, \qquad G_T = 0,$$
#
# and moves $V(s_t)$ toward it: $V(s_t) \leftarrow V(s_t) + \alpha_t [\, G_t - V(s_t) \,]$.
# Three flavours:
#
# * **first-visit MC**: only the first visit to $s$ in each episode counts, and
#   $\alpha_t = 1/N(s)$ makes $V(s)$ the plain average of the $N(s)$ returns seen;
# * **every-visit MC**: every visit counts, still averaging;
# * **constant-α MC**: a fixed step size α, so old returns are slowly forgotten.
#
# **TD(0)** does not wait for the end. After every step it moves $V(s_t)$ toward a target
# built from its own estimate of the next state (*bootstrapping*):
#
# $$V(s_t) \leftarrow V(s_t) + \alpha \big[\, r_{t+1} + \gamma V(s_{t+1}) - V(s_t) \,\big].$$
#
# Each method returns a `ValueEstimate` whose `history[k]` is the estimate after episode
# $k+1$. We measure the root-mean-square error against the exact $V^\pi$ over the
# non-terminal states,
# $\text{RMS}_k = \sqrt{\tfrac{1}{|\mathcal{S}|}\sum_s (V_k(s) - V^\pi(s))^2}$,
# and average it over independent runs.

# %%
ALPHA = 0.05
nonterminal = T.sum(axis=(1, 2)) > 0  # the treasure cell has no continuation


def rms_error(history):
    return np.sqrt(((history[:, nonterminal] - V_exact[nonterminal]) ** 2).mean(axis=1))


methods = {
    "first-visit MC": lambda seed: mc_evaluation(corridor, pi_random, GAMMA, EPISODES, seed=seed),
    "every-visit MC": lambda seed: mc_evaluation(corridor, pi_random, GAMMA, EPISODES,
                                                 first_visit=False, seed=seed),
    f"constant-α MC (α = {ALPHA})": lambda seed: mc_evaluation(
        corridor, pi_random, GAMMA, EPISODES, alpha=ALPHA, seed=seed),
    f"TD(0) (α = {ALPHA})": lambda seed: td0_evaluation(
        corridor, pi_random, GAMMA, EPISODES, alpha=ALPHA, seed=seed),
}
estimates = {name: [run(SEED + i) for i in range(RUNS)] for name, run in methods.items()}

fig, ax = plt.subplots(figsize=(8, 4))
for name, runs in estimates.items():
    ax.plot(np.arange(1, EPISODES + 1), np.mean([rms_error(r.history) for r in runs], axis=0),
            label=name)
ax.set_xlabel("episodes")
ax.set_ylabel("RMS error of V")
ax.set_title(f"Corridor, random policy, γ = {GAMMA}: error against the exact $V^\\pi$ "
             f"(mean of {RUNS} runs)")
ax.set_ylim(bottom=0)
ax.legend()
plt.show()

# %% [markdown]
# What the curves show:
#
# * The **averaging** MC methods keep improving: the average of $N$ independent returns
#   has an error that shrinks like $1/\sqrt{N}$. Every-visit MC counts more returns per
#   episode (the random walk revisits cells often), so here it is ahead of first-visit MC,
#   although its returns from the same episode are correlated.
# * The **constant-α** methods stop improving at a floor: each new return or target
#   moves $V$ by a fraction α, so the estimate keeps jittering around $V^\pi$ with a
#   spread that grows with α. In exchange they follow a target that changes, which is what
#   control needs (lesson 1's Q-learning uses a constant α for that reason).
# * **TD(0) against constant-α MC**, same α: TD starts slower. All estimates start at 0
#   and the only reward is at the treasure, so TD's information creeps back one cell per
#   update, while MC hands every visited cell the whole return at once. But TD's target
#   $r + \gamma V(s')$ depends on one random step, not on the rest of a long random walk,
#   so it has much less variance, and TD settles at a lower floor.
#
# The final estimates of one run of each, next to the exact values:

# %%
final = pd.DataFrame({name: runs[0].V for name, runs in estimates.items()},
                     index=pd.Index(range(n_states), name="state"))
final.insert(0, "exact V^π", V_exact)
final.round(3)

# %% [markdown]
# ## 3. Planning: value iteration and policy iteration
#
# Knowing the model, we need not sample at all to find the *best* policy. Its values
# $V^*$ solve the Bellman **optimality** equation, the expectation equation with the
# average over actions replaced by a max:
#
# $$V^*(s) = \max_a Q^*(s, a), \qquad Q^*(s, a) = R(s, a) + \gamma \sum_{s'} T(s, a, s')\, V^*(s').$$
#
# The max makes it nonlinear, so there is no single linear solve. Two classic ways:
#
# * **Value iteration** repeats the optimality backup on every state,
#   $V_{k+1}(s) = \max_a \big[R(s, a) + \gamma \sum_{s'} T(s, a, s') V_k(s')\big]$,
#   until the largest change $\Delta_k = \max_s |V_{k+1}(s) - V_k(s)|$ is below a
#   tolerance. Each sweep is cheap; the error shrinks by a factor $\gamma$ per sweep.
# * **Policy iteration** evaluates the current policy exactly (the linear system of
#   section 1), then makes it greedy with respect to those values,
#   $\pi_{k+1}(s) = \arg\max_a Q^{\pi_k}(s, a)$, and stops when no action changes. Each
#   iteration is expensive (a linear solve) but there are very few.
#
# Both on FrozenLake with $\gamma = 0.99$:

# %%
LAKE_GAMMA = 0.99
start = time.perf_counter()
vi = value_iteration(lake_P, LAKE_GAMMA)
vi_seconds = time.perf_counter() - start
start = time.perf_counter()
pi_plan = policy_iteration(lake_P, LAKE_GAMMA)
pi_seconds = time.perf_counter() - start

print(f"value iteration : {vi.iterations} sweeps, {vi_seconds * 1e3:.1f} ms")
print(f"policy iteration: {pi_plan.iterations} iterations, {pi_seconds * 1e3:.1f} ms")
print("same policy:", bool((vi.policy == pi_plan.policy).all()),
      f"  max |V_VI − V_PI| = {np.abs(vi.V - pi_plan.V).max():.1e}")

# %% [markdown]
# The same policy, and the same values to within the tolerance. Here is $V^*$ with the
# optimal action in each cell:

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.5))
fig.colorbar(draw_lake(ax, vi.V, f"FrozenLake: $V^*$ and $\\pi^*$ (γ = {LAKE_GAMMA})", vi.policy),
             ax=ax, shrink=0.8)
plt.show()

# %% [markdown]
# The arrows look odd at first: in the start cell the optimal action is "left", into the
# wall. On slippery ice an action moves the agent in the intended direction or either
# perpendicular one, never backwards. "Left" in the start cell can only slide left or up
# (both bump into the wall and stay) or down, so the agent edges down the left column and
# never slips right into the worse top row. Next to a hole, the chosen action is the one
# whose slides avoid it, as far as any action can. Lesson 1's Q-learning found almost the
# same arrows by trial and error.
#
# How good is it? With $\gamma = 1$ and the goal's reward of 1, the exact value of the
# start state under $\pi^*$ is its probability of ever reaching the goal. (Lesson 1's
# Q-learning succeeds in 0.726 of its episodes, the interquartile mean of ten seeds with a
# 95% interval of 0.713 to 0.741 in `docs/benchmarks.md`: its episodes are cut off at 100
# steps.)

# %%
success = exact_evaluation(lake_P, greedy_policy_matrix(vi.policy, 4), 1.0)[0]
print(f"π* reaches the goal from the start with probability {success:.3f} "
      f"(the random policy: {V_lake_random[0]:.3f})")

# %% [markdown]
# The convergence histories. For value iteration, $\Delta_k$ per sweep falls
# geometrically. The backup is a $\gamma$-contraction, so $\Delta_k$ falls at least as
# fast as $\gamma^k$ (dotted line), and with $\gamma$ close to 1 that guarantee alone
# would need thousands of sweeps. Here it falls much faster, because walks on the lake end
# in a hole or at the goal: the rate is set by how quickly the optimal policy's episodes
# terminate. For policy iteration, the number of states whose action changed, per
# iteration, reaches 0 after a handful of iterations.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
sweeps = np.arange(1, len(vi.history) + 1)
axes[0].semilogy(sweeps, vi.history, label="value iteration: $\\Delta_k$")
axes[0].semilogy(sweeps, vi.history[0] * LAKE_GAMMA ** (sweeps - 1), "k:", lw=1,
                 label="$\\Delta_1 \\gamma^{k-1}$")
axes[0].set_xlabel("sweep $k$")
axes[0].set_ylabel("max$_s$ |change in V|")
axes[0].legend()
iterations = np.arange(1, len(pi_plan.history) + 1)
axes[1].bar(iterations, pi_plan.history)
axes[1].set_xticks(iterations)
axes[1].set_xlabel("policy iteration $k$")
axes[1].set_ylabel("states whose action changed")
fig.suptitle("FrozenLake: convergence of the two planners")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Try it:** evaluate the optimal policy on the corridor, or the random policy with a
# larger α for TD(0) and constant-α MC and watch their floors rise; run value iteration
# with $\gamma = 0.9$ and count the sweeps.

# %% [markdown]
# ## 4. Eligibility traces: TD(λ)
#
# TD(0) looks one step ahead; Monte-Carlo looks to the end of the episode. The
# **λ-return** averages every n-step return $G_{t:t+n}$, with weights
# $(1-\lambda)\lambda^{n-1}$, in one backward recursion over the episode:
#
# $$G^\lambda_t = r_{t+1} + \gamma\big[(1-\lambda)V(s_{t+1}) + \lambda G^\lambda_{t+1}\big].$$
#
# λ = 0 is the TD(0) target, λ = 1 the Monte-Carlo return. Moving every visited state
# toward its λ-return at the end of an episode is the *forward view* (the offline
# λ-return algorithm). The *backward view*, TD(λ), gets the same effect step by step:
# each state keeps an **eligibility trace** $e(s)$, decayed by $\gamma\lambda$ every step
# and bumped when the state is visited, and every TD error $\delta_t$ moves every state
# by $\alpha\,\delta_t\,e(s)$. An *accumulating* trace adds 1 on a visit, a *replacing*
# one resets it to 1.
#
# The two views are the same computation, reordered: with $V$ fixed through the episode,
# $G^\lambda_t - V(s_t) = \sum_{k \ge t} (\gamma\lambda)^{k-t}\delta_k$. So TD(λ) with
# accumulating traces whose increments are applied at the end of the episode
# (`offline=True`) gives the forward view's values to rounding, and at λ = 0 online TD(λ)
# is TD(0), draw for draw:

# %%
from rlcourse.tabular.td_lambda import lambda_return_evaluation, td_lambda_evaluation

lake_pi = uniform_policy(16, 4)
lake = gym.make("FrozenLake-v1")
backward = td_lambda_evaluation(lake, lake_pi, 0.9, 0.8, 200, alpha=0.1, offline=True, seed=SEED)
forward = lambda_return_evaluation(lake, lake_pi, 0.9, 0.8, 200, alpha=0.1, seed=SEED)
print(f"offline TD(0.8) vs the λ-return, 200 episodes: max |difference| = "
      f"{np.abs(backward.history - forward.history).max():.1e}")
td_zero = td0_evaluation(lake, lake_pi, 0.9, 200, alpha=0.1, seed=SEED)
online_zero = td_lambda_evaluation(lake, lake_pi, 0.9, 0.0, 200, alpha=0.1, seed=SEED)
print(f"online TD(λ = 0) vs TD(0): max |difference| = {np.abs(online_zero.history - td_zero.history).max():.1e}")

# %% [markdown]
# Which λ is best? A classic experiment (Sutton & Barto, Figure 12.3, there on a 19-state
# random walk): the error after a few episodes, for a grid of λ and α. Here on a 10-cell
# corridor with the random policy, γ = 0.9, 20 episodes: the root-mean-square error over
# the cells, the interquartile mean over `TD_LAMBDA_SEEDS` runs.

# %%
from rlcourse import stats

long_corridor = gym.make("rlcourse/Corridor-v0", n_cells=10, max_episode_steps=1000)
corridor_pi = uniform_policy(10, 2)
V_long = exact_evaluation(long_corridor.unwrapped.P, corridor_pi, 0.9)
lambdas = [0.0, 0.4, 0.8, 0.9, 1.0]
fig, ax = plt.subplots(figsize=(6, 3.5))
for alpha in (0.05, 0.1, 0.2):
    errors = [stats.iqm(np.array([
        np.sqrt(np.mean((td_lambda_evaluation(long_corridor, corridor_pi, 0.9, lam, 20, alpha=alpha,
                                              seed=SEED + run).V - V_long)[:-1] ** 2))
        for run in range(TD_LAMBDA_SEEDS)])) for lam in lambdas]
    ax.plot(lambdas, errors, "o-", label=f"α = {alpha}")
ax.set(xlabel="λ", ylabel="RMS error after 20 episodes", title="TD(λ) on a 10-cell corridor")
ax.legend()
plt.show()

# %% [markdown]
# When this notebook was written (10 runs) the curves were U-shaped: at α = 0.05 the
# error fell from about 0.13 at λ = 0 to about 0.04 at λ = 0.8 and rose again toward
# λ = 1. Small λ passes the treasure's reward back one cell per visit, like TD(0); λ
# near 1 carries the whole noisy return, like MC, and the larger α, the more that noise
# costs. In between, the trace sends each TD error back along the recent path at once
# while keeping the bootstrap's low variance.
#
# ## 5. Planning with a learned model: Dyna-Q
#
# Section 3 planned with the model the environment publishes. Dyna-Q (Sutton & Barto,
# §8.2) *learns* the model as it goes: it remembers, for each state-action pair it tried,
# the reward and next state it saw. After each real step it does the Q-learning update of
# lesson 1, stores the step in the model, and then makes $n$ more Q-learning updates on
# pairs drawn from the model, without moving. With $n = 0$ it is Q-learning.
#
# The maze of Sutton & Barto's Example 8.1: 47 open cells, S to G in 14 steps at best,
# reward 1 at G and 0 elsewhere, γ = 0.95, α = 0.1, ε = 0.1.

# %%
from rlcourse.envs.maze import LAYOUTS
from rlcourse.tabular.dyna import DynaQConfig, planning_study, plot_steps_per_episode, solve_summary
from rlcourse.tabular.dyna import train as dyna_train

print("\n".join(LAYOUTS["dyna"]))
study = planning_study(planning_steps=(0, 5, 50), seeds=range(SEED, SEED + DYNA_SEEDS), episodes=DYNA_EPISODES)
fig = plot_steps_per_episode(study)
fig.axes[0].set_ylim(0, 800)
plt.show()
solve_summary(study, good_length=20).round(1)

# %% [markdown]
# The first episode is the same random walk for every $n$ (all values are 0 and planning
# has nothing to spread) and is left out, as in the book's Figure 8.2. After it,
# planning takes over: by the end of the first episode the model knows the last step into
# G, and with $n = 50$ the value of G spreads back through the remembered cells in the
# planning updates of the next steps. The table counts the episodes until five in a row
# average at most 20 steps: when this notebook was written (10 seeds, IQM with its 95%
# bootstrap interval), 28.3 [26.4, 31.0] episodes without planning, 8.9 [8.3, 9.5] with
# $n = 5$ and 7.1 [6.3, 8.7] with $n = 50$: planning cuts the episodes to solve the maze
# about fourfold (five is the fewest this measure can give).
#
# **A world that changes.** A model can be wrong. In the shortcut maze (Example 8.3) the
# wall has a gap on the left; at step 3000 a second gap opens on the right, a path 10 steps
# long instead of 16. Dyna-Q's model says the right end is a wall, its greedy policy never
# goes there, and ε-exploration alone almost never gets that far. **Dyna-Q+** adds a bonus
# $\kappa\sqrt{\tau}$ to the modelled reward of a pair not tried for $\tau$ steps, so its
# planning grows curious about what it has not checked lately (here κ = 0.001, n = 50).
# The curves count the episodes completed, the cumulative reward:

# %%
grid = np.arange(0, DYNA_PLUS_STEPS + 1, 100)
fig, ax = plt.subplots(figsize=(6, 3.5))
for kappa, name in ((0.0, "Dyna-Q"), (1e-3, "Dyna-Q+")):
    curves = []
    for seed in range(SEED, SEED + DYNA_PLUS_SEEDS):
        log = dyna_train("rlcourse/ShortcutMaze-v0", DynaQConfig(planning_steps=50, kappa=kappa),
                         steps=DYNA_PLUS_STEPS, seed=seed).log
        curves.append(np.searchsorted(log["env_steps"].to_numpy(), grid, side="right"))
    band = stats.curve_band(np.array(curves, dtype=float), grid)
    ax.plot(grid, band["estimate"], label=name)
    ax.fill_between(grid, band["low"], band["high"], alpha=0.2)
ax.axvline(3000, color="k", lw=0.8, ls=":")
ax.set(xlabel="time steps", ylabel="cumulative reward", title=f"Shortcut maze, IQM over {DYNA_PLUS_SEEDS} seeds")
ax.legend()
plt.show()

# %% [markdown]
# Curiosity has a price and a payoff. Before the change Dyna-Q+ is behind: its bonus keeps
# sending it to check pairs it has not tried lately, so it settles on the long path later.
# After the wall opens its curve gets steeper (its episodes fall to the new 10 steps) while
# Dyna-Q's keeps its old slope: Dyna-Q's model says the right end is a wall, and nothing
# makes it look again. Over 10 seeds (`benchmarks/lesson2_planning.py`, in the lesson's
# page) Dyna-Q+ completed about 52 more episodes than Dyna-Q in the 3000 steps after the
# change.
#
# **Try it:** train `rlcourse train dyna-q --env rlcourse/BlockingMaze-v0 --set kappa=0.001`
# (Example 8.2: the short path is blocked at step 1000) and compare with `kappa=0`.

# %% [markdown]
# **Lookahead: planning at decision time.** Dyna spreads values through a table in the
# background. A model can also be used at the moment of acting: from the current state,
# expand the tree of what the model says each action leads to, $d$ levels deep, and back
# the values up, $Q_d(s, a) = \hat r + \gamma\,(1-\hat t)\max_{a'} Q_{d-1}(\hat s', a')$.
# Here the model is learned by wandering the Dyna maze at random for 200 or 5,000 steps,
# and each plan is judged by value iteration on the *true* model (section 3's planner):
# the share of cells whose chosen action is optimal, and the path the plan walks from S.

# %%
from rlcourse.tabular.lookahead import lookahead_study

looked = lookahead_study("rlcourse/DynaMaze-v0", explore_steps=[200, 5_000], depths=[5, 10, 20],
                         seeds=range(SEED, SEED + 3))
looked.groupby(["explore_steps", "depth"])[["model_pairs", "optimal_fraction", "path_length"]].median()

# %% [markdown]
# Depth matters until the search can see the goal (14 steps from S); after that only the
# model does. 200 random steps leave half the maze's pairs unknown, and no depth repairs
# that; with 5,000 the 20-step search walks the 14-step path that value iteration on the
# true model walks.
