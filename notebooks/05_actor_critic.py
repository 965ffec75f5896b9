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
# # Lesson 5: actor-critic, A2C and A3C
#
# Lesson 4 ended with REINFORCE weighting each log-probability by $G_t - V_\phi(s_t)$: a
# learned critic used only as a baseline. An actor-critic method lets the critic do more.
# It also stands in for the *future*: after a few real rewards, the rest of the return is
# replaced by the critic's estimate. That trades variance for bias, and the trade has a
# dial. In this lesson:
#
# 1. from $G_t - V(s_t)$ to bootstrapped targets: the $n$-step advantage and GAE, checked on
#    a hand-made batch;
# 2. the bias–variance dial ($n$, or GAE's $\lambda$) on CartPole;
# 3. A2C with its standard settings on CartPole and Acrobot, the critic's explained
#    variance, and what the entropy bonus does;
# 4. one network with two heads, or two networks;
# 5. A3C: the same loss, applied asynchronously by worker processes;
# 6. the functions you will write.
#
# The code is the lesson-4 core: the same `Rollout`, the same Ψ functions of
# `rlcourse.pg.psi`, the same `policy_gradient_loss`. The next cell holds the budgets. The
# values given run the whole notebook in about a minute on two CPU cores (71 s of CPU time,
# measured on a busy machine, 23 s of it A3C's); the test suite replaces them with tiny
# ones. None of these runs anneals its step size, so a longer budget
# replays the same first steps and goes on: where a section quotes what a longer run
# showed, it names the budget.
#
# The runs here are seeded with `SEED` (0; where several are averaged, `SEED`, `SEED + 1`,
# …), and a number quoted below "when this notebook was written" comes from those seeds on
# our machine: it shows what happened, not how often it happens. How often is a statement
# over many seeds: `docs/benchmarks.md` gives ten seeds' interquartile mean, 95%
# confidence interval and solved fraction for every algorithm on its lesson's task.

# %% tags=["parameters"]
SEED = 0
SWEEP_STEPS = 25_000        # environment steps per run of the n / λ sweep (section 2)
CARTPOLE_STEPS = 50_000     # environment steps of A2C with the default settings on CartPole
EVAL_EVERY = 5_000          # environment steps between greedy evaluations
EVAL_EPISODES = 5           # greedy episodes per evaluation
ACROBOT_STEPS = 50_000      # environment steps per A2C run on Acrobot (three entropy weights)
SHARED_STEPS = 25_000       # environment steps per run of the shared-trunk comparison
A3C_STEPS = 10_000          # environment steps per A3C run, all workers together
A3C_EVAL_EVERY = 2_000      # environment steps between greedy evaluations during A3C
TD_LAMBDA_AC_STEPS = 5_000  # environment steps of the TD(λ) actor-critic (section 7)

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rlcourse.pg import a2c, a3c, psi
from rlcourse.pg.a2c import A2CConfig
from rlcourse.pg.a3c import A3CConfig
from rlcourse.play import evaluate_policy

# The networks are tiny: torch's worker threads would only wait on each other.
torch.set_num_threads(1)


def finish(fig, axes, xlabel="environment steps", legend=True, solved=False):
    """Label the step axes in thousands, add legends (and CartPole's 500 line), lay out."""
    for ax in axes:
        if solved:
            ax.axhline(500, color="k", ls=":", lw=1)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:.0f}k")
        if legend:
            ax.legend(fontsize="small")
    fig.tight_layout()


def smooth(log, column, window):
    """Moving average of a log column over ``window`` rows, skipping rows without a value."""
    rows = log.dropna(subset=[column])
    return rows["env_steps"], rows[column].rolling(window, min_periods=1).mean()


def greedy_every(every, env_id, episodes):
    """A ``train`` callback that plays the greedy policy once ``every`` env steps have passed.

    Returns the callback and the list it appends (env steps, mean greedy return) to.
    """
    points, due = [], [every]

    def callback(env_steps, policy):
        if env_steps >= due[0]:
            with torch.no_grad():
                score = evaluate_policy(policy, env_id, episodes, seed=0, print_fn=None)
            points.append((env_steps, score["mean_return"]))
            due[0] = (env_steps // every + 1) * every

    return callback, points


# %% [markdown]
# ## 1. From $G_t - V(s_t)$ to bootstrapped targets
#
# Notation as in the code: $r_t$ is the reward for the action taken at step $t$ (the
# lecture, like Sutton & Barto, calls it $r_{t+1}$), and $V$ is the critic.
#
# With $\Psi_t = G_t - V(s_t)$ the baseline costs no bias (lesson 4: the score has mean
# zero), but $G_t$ is a sum over every reward to the end of the episode, up to 500 of them
# on CartPole, each depending on random actions. The critic can stand in for most of that
# sum. Take $n$ real rewards and let $V$ estimate the rest:
#
# $$q^{(n)}_t = r_t + \gamma r_{t+1} + \dots + \gamma^{n-1} r_{t+n-1} + \gamma^n V(s_{t+n}),
# \qquad \hat A^{(n)}_t = q^{(n)}_t - V(s_t).$$
#
# - $n = 1$: $\hat A^{(1)}_t = r_t + \gamma V(s_{t+1}) - V(s_t) = \delta_t$, the TD error.
#   One random reward, one random transition: little variance. But if $V$ is wrong, so is
#   the target: the bias is $\gamma\,\mathbb E[V(s_{t+1}) - V^\pi(s_{t+1})]$.
# - $n \to \infty$ (to the end of the episode): $\hat A_t = G_t - V(s_t)$, the Monte-Carlo
#   advantage of lesson 4. No bias from the critic, all the variance of the return.
# - In between, the critic's error is discounted by $\gamma^n$ and the variance grows with
#   the number of random steps summed.
#
# Adding and subtracting $\gamma^k V(s_{t+k})$ turns the $n$-step advantage into a sum of
# TD errors, $\hat A^{(n)}_t = \sum_{k=0}^{n-1} \gamma^k \delta_{t+k}$ (the $V$ terms
# telescope). GAE (Schulman et al., 2016) does not pick one $n$; it averages all of them
# with weights $(1-\lambda)\lambda^{n-1}$, and the average is again a sum of TD errors:
#
# $$\hat A^{\text{GAE}(\gamma,\lambda)}_t = (1-\lambda) \sum_{n \ge 1} \lambda^{n-1} \hat A^{(n)}_t
# = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l},$$
#
# so $\lambda = 0$ is the TD error and $\lambda = 1$ the Monte-Carlo advantage.
#
# Every sum stops where the episode stops. A **terminated** step has no future: its
# target is $r_t$ alone. A **truncated** step (the time limit) still has one, worth
# $V$ of the real final observation, which the collector keeps as `next_obs[t]`. The end
# of the batch is a cut of the same kind, bootstrapped from $V$ of the state the next
# batch starts from.
#
# A hand-made batch, $T = 5$ steps of $N = 2$ environments, $\gamma = 0.9$, every reward 1.
# Environment 0 *terminates* at $t = 2$ and starts a new episode; environment 1 is
# *truncated* at $t = 1$. The critic's values are made up. `next_values[t]` is
# $V(s_{t+1})$: the next row's value inside an episode, $V$ of the final observation where
# an episode ended (2.0 for the terminated one, which must be ignored, 8.0 for the
# truncated one), and at $t = 4$ the value of the state after the batch.

# %%
gamma = 0.9
T, N = 5, 2
rewards = torch.ones(T, N)
terminated = torch.zeros(T, N, dtype=torch.bool)
truncated = torch.zeros(T, N, dtype=torch.bool)
terminated[2, 0] = True
truncated[1, 1] = True
values = torch.tensor([[4.0, 6.0], [3.0, 5.0], [1.5, 7.0], [5.0, 6.5], [4.5, 6.0]])
next_values = torch.cat([values[1:], torch.tensor([[4.0, 5.5]])])
next_values[2, 0] = 2.0      # V(final obs) of the terminated episode: must not be used
next_values[1, 1] = 8.0      # V(final obs) of the truncated episode: the bootstrap

delta = psi.td_residual(rewards, values, next_values, terminated, gamma)
n_step = {n: psi.n_step_advantage(rewards, values, next_values, terminated, truncated, gamma, n)
          for n in range(1, T + 1)}
monte_carlo = psi.reward_to_go(rewards, terminated, truncated, gamma, next_values) - values
gae = {lam: psi.gae(rewards, values, next_values, terminated, truncated, gamma, lam) for lam in (0.0, 0.5, 1.0)}

columns = {"r": rewards, "terminated": terminated, "truncated": truncated, "V(s_t)": values,
           "V(s_t+1)": next_values, "δ_t": delta, "A(1)": n_step[1], "GAE λ=0": gae[0.0],
           "A(2)": n_step[2], "A(T)": n_step[T], "G_t − V": monte_carlo, "GAE λ=1": gae[1.0],
           "GAE λ=0.5": gae[0.5]}
pd.concat({f"env {i}": pd.DataFrame({name: x[:, i].numpy() for name, x in columns.items()},
                                    index=pd.Index(range(T), name="t"))
           for i in range(N)}).round(3)

# %% [markdown]
# Read the columns in groups. $\delta_t$, $\hat A^{(1)}$ and GAE at $\lambda = 0$ are the
# same numbers; so are $\hat A^{(T)}$, $G_t - V(s_t)$ with the bootstraps at the cuts, and
# GAE at $\lambda = 1$. At the boundaries:
#
# - env 0, $t = 2$ (terminated): every estimator gives $1 - 1.5 = -0.5$. The 2.0 in
#   `V(s_t+1)` is ignored, and $t = 0, 1$ see no reward after $t = 2$.
# - env 1, $t = 1$ (truncated): $1 + 0.9 \cdot 8 - 5 = 3.2$ for every estimator. Treating
#   the time limit as a terminal state would give $1 - 5 = -4$, and teach the critic that
#   being alive at step 500 is worth nothing.
# - the last row, $t = 4$: one step is left in the batch, so every $n \ge 1$ gives the
#   one-step answer. The first row gets up to $T$ rewards. In A2C, $T$ (`n_steps`) is
#   therefore the *largest* $n$, not a fixed one: step $t$ of a rollout uses
#   $n = T - t$ rewards when its episode does not end first.
#
# And the mixture: with the sums cut at the batch end, GAE is the weighted average of the
# $n$-step advantages, the weight $\lambda^{T-1}$ of everything from $n = T$ on falling on
# $\hat A^{(T)}$:

# %%
lam = 0.5
mixture = (1 - lam) * sum(lam ** (n - 1) * n_step[n] for n in range(1, T)) + lam ** (T - 1) * n_step[T]
checks = {
    "δ = A(1) = GAE(λ=0)": torch.allclose(delta, n_step[1]) and torch.allclose(delta, gae[0.0]),
    "A(T) = G − V = GAE(λ=1)": torch.allclose(n_step[T], monte_carlo) and torch.allclose(n_step[T], gae[1.0]),
    "A(n) = Σ_k<n γ^k δ_t+k (env 1, t=2, n=3)": math.isclose(
        n_step[3][2, 1].item(), sum(gamma ** k * delta[2 + k, 1].item() for k in range(3)), rel_tol=1e-6),
    "GAE(λ=0.5) = (1−λ) Σ λ^(n−1) A(n)": torch.allclose(gae[0.5], mixture),
}
checks

# %% [markdown]
# ## 2. The dial: how far to look before trusting the critic
#
# A2C (the synchronous form of Mnih et al.'s A3C, 2016) steps $N = 8$ copies of the
# environment together for $T$ steps, computes $\hat A$ for the $T \times N$ batch with
# the critic, and takes one gradient step on
#
# $$L = \underbrace{-\frac{1}{|B|}\sum \log \pi_\theta(a_t \mid s_t)\, \hat A_t}_{\text{actor}}
# + c_V \underbrace{\frac{1}{|B|}\sum \big(V_\phi(s_t) - y_t\big)^2}_{\text{critic}}
# - c_H \underbrace{\frac{1}{|B|}\sum \mathcal H\big(\pi_\theta(\cdot \mid s_t)\big)}_{\text{entropy}},
# \qquad y_t = \hat A_t + V_\phi(s_t),$$
#
# with $\hat A$ and $y$ held fixed. The critic regresses on the same bootstrapped target the
# actor uses. Two sweeps on CartPole, one seed each:
#
# - **GAE's λ** with $T = 20$: every run sees the same number of updates of the same size;
#   only the estimator differs.
# - **$T$** (`n_steps`) with $\lambda = 1$, the $n$-step advantage of the previous section.
#   Here more changes than $n$: the batch holds $8T$ steps, so $T = 1$ makes 3,125 small
#   updates in 25,000 steps and $T = 100$ only 32 large ones.

# %%
def sweep_run(steps, **fields):
    """A2C on CartPole with some fields changed; one log row per about 2,000 env steps."""
    n_steps = fields.get("n_steps", A2CConfig.n_steps)
    config = A2CConfig(log_interval=max(1, 2_000 // (A2CConfig.num_envs * n_steps)), **fields)
    return a2c.train("CartPole-v1", config, steps=steps, seed=SEED)


LAMBDAS = [0.0, 0.5, 0.9, 1.0]
N_STEPS = [1, 5, 20, 100]
by_lambda = {lam: sweep_run(SWEEP_STEPS, n_steps=20, gae_lambda=lam) for lam in LAMBDAS}
by_n = {n: by_lambda[1.0] if n == 20 else sweep_run(SWEEP_STEPS, n_steps=n) for n in N_STEPS}

fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
for lam, run in by_lambda.items():
    axes[0].plot(*smooth(run.log, "return", 3), label=f"λ = {lam}")
for n, run in by_n.items():
    axes[1].plot(*smooth(run.log, "return", 3), label=f"T = {n}")
axes[0].set_title("GAE(γ = 0.99, λ), T = 20 steps per update")
axes[1].set_title("n-step advantage (λ = 1), T steps per update")
axes[0].set_ylabel("training return (moving average of 3 rows)")
fig.suptitle(f"A2C on CartPole-v1, seed {SEED}")
finish(fig, axes, solved=True)
plt.show()

runs = {**{f"λ = {lam}, T = 20": run for lam, run in by_lambda.items()},
        **{f"λ = 1, T = {n}": run for n, run in by_n.items() if n != 20}}
pd.DataFrame({
    "greedy return at the end": [evaluate_policy(run.policy, "CartPole-v1", EVAL_EPISODES, print_fn=None)
                                 ["mean_return"] for run in runs.values()],
    "training return, last third": [run.log["return"].iloc[-max(1, len(run.log) // 3):].mean()
                                    for run in runs.values()],
    "updates": [run.log["iteration"].iloc[-1] for run in runs.values()],
    "seconds": [run.timing["seconds"] for run in runs.values()],
}, index=pd.Index(runs, name="run")).round(1)

# %% [markdown]
# What the left panel shows for this seed: $\lambda = 0$, the pure TD error, stays near
# 50. Early on the critic knows nothing ($V \approx 0$ everywhere), so
# $\delta_t = 1 + \gamma V(s_{t+1}) - V(s_t) \approx 1$ for good and bad actions alike:
# the critic's error is the whole signal until it catches up, and a one-step target moves
# what the critic knows back by only one step per update. $\lambda = 0.9$ and $1$ let
# real rewards from many steps ahead in and climb first; $\lambda = 0.5$ stays with
# $\lambda = 0$ within these 25,000 steps (with `SWEEP_STEPS = 60_000` it followed after
# about 35,000 steps).
#
# The right panel mixes the estimator with the update schedule. $T = 1$ is again the TD
# error, now with batches of only 8 steps, and does not learn within the budget;
# $T = 100$ has the least bias but only 32 updates, and climbs slowly; $T = 5$ (the
# default) and $T = 20$ are in between on both counts.
#
# **What one seed shows.** The ordering is only suggestive. When this notebook was
# written, seed 0's greedy returns after 25,000 steps were 51–74 for $\lambda = 0$,
# $\lambda = 0.5$ and $T = 1$, against 279–500 for the rest (the table). Longer curves are
# noisy too: with `SWEEP_STEPS = 60_000` the $T = 5$ run fell from about 470 to 250 between
# 38,000 and 50,000 steps and climbed back, and seeds 0 and 1 both put $\lambda = 0$ and
# $T = 1$ last (greedy returns 22–56, against 190–500 for the rest), but the order among
# $\lambda = 0.5, 0.9, 1$ and $T = 5, 20, 100$ changed between seeds. To rank those, run
# several seeds and compare means with their spread, as `benchmarks/` does.

# %% [markdown]
# ## 3. A2C with its standard settings
#
# `A2CConfig()` holds the RL Zoo's A2C hyperparameters for CartPole-v1
# (rl-baselines3-zoo, `hyperparams/a2c.yml`: 8 environments, `ent_coef` 0) on top of
# Stable-Baselines3's A2C defaults ($T = 5$, $\gamma = 0.99$, $\lambda = 1$, RMSprop with
# step size $7 \cdot 10^{-4}$, $c_V = 0.5$, the whole gradient clipped to norm 0.5, two
# separate $[64, 64]$ tanh networks); `rlcourse/pg/a2c.py` gives the sources. The
# callback plays the greedy policy every `EVAL_EVERY` steps.

# %%
callback, evaluations = greedy_every(EVAL_EVERY, "CartPole-v1", EVAL_EPISODES)
cartpole = a2c.train("CartPole-v1", A2CConfig(), steps=CARTPOLE_STEPS, seed=SEED, callback=callback)
evaluations = pd.DataFrame(evaluations, columns=["env_steps", "greedy_return"])

fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1.4, 1]})
axes[0].plot(cartpole.log["env_steps"], cartpole.log["return"], alpha=0.6,
             label=f"training episodes (mean per row of {cartpole.config.log_interval} updates)")
axes[0].plot(evaluations["env_steps"], evaluations["greedy_return"], "o-", ms=4,
             label=f"greedy policy ({EVAL_EPISODES} episodes)")
axes[0].axhline(500, color="k", ls=":", lw=1)
axes[0].set_ylabel("return")
axes[0].set_title(f"A2C, A2CConfig(), on CartPole-v1, seed {SEED}")
axes[0].legend(fontsize="small")
axes[1].plot(cartpole.log["env_steps"], cartpole.log["explained_variance"], "o-", ms=3)
axes[1].axhline(0, color="k", lw=0.5)
axes[1].set_ylim(-0.2, 1.05)
axes[1].set_title("critic: explained variance 1 − Var(y − V) / Var(y)")
finish(fig, axes, legend=False)
plt.show()
print(f"{cartpole.steps:,} steps in {cartpole.timing['seconds']:.1f} s "
      f"({cartpole.timing['steps_per_second']:,.0f} steps/s, evaluations excluded); "
      f"greedy returns: {evaluations['greedy_return'].round().astype(int).tolist()}")

# %% [markdown]
# The greedy policy plays the full 500 steps long before the stochastic one that
# collects the data does so on average: the training return counts the exploring
# policy's episodes, and a few episodes that fail early pull a row's mean down (here to
# about 230 at 48,000 steps, while the greedy policy held 500). With no entropy bonus and
# a constant step size, A2C keeps changing a policy that already works, and how good it
# is at a given moment varies from seed to seed: `tests/test_a2c.py` records greedy means
# of 500, 258, 487, 423 and 487 for seeds 0 to 4 after 40,000 steps. The RL Zoo's budget
# for CartPole is 500,000 steps, and with it every one of ten seeds ends at 500
# (`docs/benchmarks.md`).
#
# **The critic's explained variance** is $1 - \operatorname{Var}(y - V)/\operatorname{Var}(y)$
# over a row's batches: 1 when $V$ predicts its targets exactly, 0 when it does no better
# than their mean. On CartPole it says less than it seems to. When this notebook was
# written, recording `Terms.values` and `Terms.targets` of every update of this run,
# continued to 100,000 steps (`CARTPOLE_STEPS = 100_000`), showed three phases, the first
# two of them in the plot above:
#
# - up to about 10,000 steps, episodes are short and end often; $V$ learns which states
#   are about to fail, and explains a good share of the targets (0.6 in the first row);
# - from there to about 85,000 steps, the critic's *mean* climbs steadily, from about 20
#   to 99, towards $\sum_t 0.99^t = 100$, the value of never falling (each 5-step target
#   carries the values back only 5 steps per update: the bias of bootstrapping, made
#   visible). Across states $V$ hardly varies (standard deviation about 1), and most of
#   the variance of the targets comes from the handful of steps just before the pole falls,
#   whose targets are near 1. The critic does not see those falls coming: 0.02 to 0.3;
# - once no episode fails, $V$ and every target equal 100, $\operatorname{Var}(y)$ is
#   almost 0, and the ratio of two almost-zero numbers comes out near 1.
#
# On a task whose values differ a lot from state to state (Acrobot, next) it is more
# telling.

# %% [markdown]
# ### Acrobot, and the entropy bonus
#
# Acrobot-v1 swings a two-link arm up by torquing its middle joint: 3 actions, $-1$ per
# step until the tip rises above a line, at most 500 steps, so a random policy scores
# close to $-500$. `A2CConfig(num_envs=16)` is the RL Zoo's A2C setting for Acrobot-v1
# (16 environments, `ent_coef` 0) without the observation and reward normalisation the
# Zoo adds. After the Zoo's 500,000 steps its final greedy return over ten seeds has an
# interquartile mean of −84.0 (95% CI −86.8 to −81.6), every seed at −100 or better
# (`docs/benchmarks.md`). We train for `ACROBOT_STEPS` with three entropy weights $c_H$:
#
# $$\mathcal H\big(\pi(\cdot \mid s)\big) = -\sum_a \pi(a \mid s) \log \pi(a \mid s)
# \;\le\; \log 3 \approx 1.099,$$
#
# the maximum reached by the uniform policy. The bonus $-c_H \mathcal H$ in the loss pushes
# every state's action distribution back towards uniform, so the policy keeps exploring
# instead of committing early to what it happened to try first.

# %%
ENT_COEFS = [0.0, 0.01, 0.1]
acrobot = {c: a2c.train("Acrobot-v1", A2CConfig(num_envs=16, ent_coef=c), steps=ACROBOT_STEPS, seed=SEED)
           for c in ENT_COEFS}

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for c, run in acrobot.items():
    axes[0].plot(*smooth(run.log, "return", 2), label=f"c_H = {c}")
    axes[1].plot(run.log["env_steps"], run.log["entropy"], label=f"c_H = {c}")
    axes[2].plot(run.log["env_steps"], run.log["explained_variance"], label=f"c_H = {c}")
axes[0].set_title(f"A2C on Acrobot-v1, seed {SEED}: training return")
axes[1].axhline(math.log(3), color="k", ls=":", lw=1, label="log 3 (uniform)")
axes[1].set_title("mean entropy of π(·|s_t)")
axes[2].set_ylim(-0.2, 1.05)
axes[2].set_title("critic: explained variance")
finish(fig, axes)
plt.show()

pd.DataFrame({
    "greedy return": [evaluate_policy(run.policy, "Acrobot-v1", EVAL_EPISODES, print_fn=None)["mean_return"]
                      for run in acrobot.values()],
    "entropy, last row": [run.log["entropy"].iloc[-1] for run in acrobot.values()],
    "RMS of Â = √value_loss": [math.sqrt(run.log["value_loss"].mean()) for run in acrobot.values()],
    "seconds": [run.timing["seconds"] for run in acrobot.values()],
}, index=pd.Index(ENT_COEFS, name="c_H")).round(3)

# %% [markdown]
# Without a bonus (the Zoo's setting) the entropy falls from $\log 3$ as the policy
# commits, and the greedy policy swings the arm up in about 80 steps (−81 after these
# 50,000 steps when this notebook was written). With $c_H = 0.1$ the entropy stays near
# $\log 3$: the policy stays close to uniform, and its training return turns back down
# towards a random policy's at the end of the run (about −205). Its greedy policy, the most
# likely action in each state, still scored −78 here; with `ACROBOT_STEPS = 150_000` it
# fell to −176, against −103 without a bonus. With $c_H = 0.01$ the entropy falls just
# like without a bonus; in this run it even ends lower (0.41 against 0.57; 0.15 against
# 0.23 after 150,000 steps), which with one seed is best read as "no effect", not as the
# opposite effect.
#
# Why so little, then so much? The bonus competes with the actor's term, whose size is set
# by $|\hat A|$. The critic's loss is exactly the mean of $\hat A^2$ (its target is
# $y = \hat A + V$), so $\sqrt{\texttt{value\_loss}}$ is the root mean square of the
# advantages: a few units here. A gradient of $0.01 \cdot \nabla\mathcal H$ is small next to
# one of $\hat A \cdot \nabla \log \pi$; at $0.1$ it wins. The weight is only meaningful
# relative to the scale of the advantages, so a value tuned for one task (A3C's
# $\beta = 0.01$ on Atari) does not carry over to another; dividing $\hat A$ by its root
# mean square (`normalize_advantages=True`) fixes the scale.
#
# Within these 50,000 steps the critic's explained variance falls from about 0.45 to 0.2
# for every weight, while the episodes shorten. With `ACROBOT_STEPS = 150_000` it then
# climbed towards 0.9 for $c_H = 0$ and $0.01$, unlike on CartPole: how many steps are
# left until the arm swings up differs a lot between states, and the critic learns to
# predict it. For the near-uniform policy of $c_H = 0.1$ luck decides more of the return
# than the state does, and the critic explained about 0.1 of it.

# %% [markdown]
# ## 4. One trunk with two heads, or two networks
#
# `shared=True` reads $V$ off a linear head on the policy network's last hidden layer, so
# the actor's and the critic's gradients both flow into the same trunk; `shared=False`
# (the default) gives the critic a network of its own.

# %%
shared_runs = {
    "two networks (default)": sweep_run(SHARED_STEPS),
    "shared trunk": sweep_run(SHARED_STEPS, shared=True),
    "shared trunk, c_V = 0.05": sweep_run(SHARED_STEPS, shared=True, vf_coef=0.05),
}

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for name, run in shared_runs.items():
    axes[0].plot(*smooth(run.log, "return", 3), label=name)
    axes[1].plot(run.log["env_steps"], run.log["grad_norm"], label=name)
axes[0].axhline(500, color="k", ls=":", lw=1)
axes[0].set_title(f"A2C on CartPole-v1, seed {SEED}: training return")
axes[1].axhline(A2CConfig.max_grad_norm, color="k", ls=":", lw=1, label="max_grad_norm")
axes[1].set_yscale("log")
axes[1].set_title("norm of the whole gradient, before clipping")
finish(fig, axes)
plt.show()
pd.DataFrame({
    "greedy return": [evaluate_policy(run.policy, "CartPole-v1", EVAL_EPISODES, print_fn=None)["mean_return"]
                      for run in shared_runs.values()],
    "value_loss, last third": [run.log["value_loss"].iloc[-max(1, len(run.log) // 3):].mean()
                               for run in shared_runs.values()],
}, index=pd.Index(shared_runs, name="run")).round(1)

# %% [markdown]
# With the default weights the shared trunk learns far more slowly here. A plausible
# reading: the critic's regression gradient scales with $\hat A$, a few units to tens, and
# grows as the returns grow, while the actor's scales with the score. In a shared trunk
# both land on the same weights, and RMSprop divides each weight's step by the size of its
# recent gradients, which the critic dominates, so the actor's share of every trunk step
# shrinks. (Clipping the whole gradient scales both parts alike and does not change the
# shares.) Lowering $c_V$ gives the actor its share back; in this run it helps a little
# within 25,000 steps (greedy 124 against 101, two networks 500) and more with
# `SHARED_STEPS = 60_000` (315 against 153), though one seed is a hint, not proof. Two networks need no such balancing, and they are what `A2CConfig` copies from
# Stable-Baselines3's MLP policies. With images as input, where a convolutional trunk is
# costly to learn twice, sharing is the usual choice: Mnih et al. (2016) share all
# non-output layers, with a softmax head for the policy and a linear one for the value.

# %% [markdown]
# ## 5. A3C: the same loss, asynchronously
#
# A2C waits: all $N$ environments step together, and one update uses them all. A3C
# (Mnih et al. 2016) runs $W$ worker processes instead, each with its own environment and
# a local copy of the networks. A worker repeatedly copies the shared parameters, collects
# $T$ steps (the paper's $t_\text{max}$; 20 here), computes the gradient of `a2c_loss`
# (term for term the loss above), and applies it to the shared parameters with the shared
# optimiser, without waiting for anyone.
#
# - **Hogwild updates.** There is no lock around the update (Recht et al., 2011,
#   *Hogwild!*): two workers may write the same parameters at the same moment, and a
#   worker's gradient was computed on parameters that others have changed since it copied
#   them. With small, sparse-enough steps this costs little, and no worker ever waits.
#   (`A3CConfig(lock=True)` puts a lock around each step.)
# - **Shared optimiser statistics.** Adam keeps running averages of $g$ and $g^2$ per
#   parameter. Mnih et al. found that sharing these statistics between the workers (their
#   "shared RMSProp") was more robust than one set per worker. `SharedAdam` allocates $t$,
#   $m$ and $v$ in shared memory once, so every worker's step updates the same numbers:
#
# $$m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
# \theta \leftarrow \theta - \frac{\alpha}{1-\beta_1^t}\,\frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}.$$
#
# The workers are separate processes, started with `spawn`: each imports the package
# afresh, so the environment must be one it can create (Gymnasium's built-in ones, as
# here; an environment registered in the notebook is passed to the workers as its spec,
# so its entry point must be importable). Starting them takes a second or two, left out of
# the throughput below; so are the pauses for the greedy evaluations, which run with
# every worker stopped so that they see one consistent model.

# %%
a3c_runs, a3c_evals = {}, {}
for workers in (1, 2):
    evals = []

    def record(env_steps, policy, evals=evals):
        with torch.no_grad():
            evals.append((env_steps, evaluate_policy(policy, "CartPole-v1", EVAL_EPISODES, print_fn=None)
                          ["mean_return"]))

    started = time.perf_counter()
    a3c_runs[workers] = a3c.train("CartPole-v1", A3CConfig(workers=workers, log_interval=10), steps=A3C_STEPS,
                                  seed=SEED, callback=record, callback_every=A3C_EVAL_EVERY)
    a3c_runs[workers].timing["wall_seconds"] = time.perf_counter() - started
    a3c_evals[workers] = pd.DataFrame(evals, columns=["env_steps", "greedy_return"])

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for workers, run in a3c_runs.items():
    line, = axes[0].plot(*smooth(run.log, "return", 5), label=f"{workers} worker{'s' * (workers > 1)}")
    axes[1].plot(a3c_evals[workers]["env_steps"], a3c_evals[workers]["greedy_return"], "o-", ms=4,
                 color=line.get_color(), label=f"{workers} worker{'s' * (workers > 1)}")
axes[0].set_title(f"A3C on CartPole-v1, seed {SEED}: training return")
axes[1].set_title(f"greedy policy, {EVAL_EPISODES} episodes, workers paused")
finish(fig, axes, "environment steps, all workers together", solved=True)
plt.show()

pd.DataFrame({
    "env steps/s": [run.timing["steps_per_second"] for run in a3c_runs.values()],
    "training seconds": [run.timing["seconds"] for run in a3c_runs.values()],
    "start-up seconds": [run.timing["startup_seconds"] for run in a3c_runs.values()],
    "wall seconds (all in)": [run.timing["wall_seconds"] for run in a3c_runs.values()],
    "greedy returns": [a3c_evals[w]["greedy_return"].round().astype(int).tolist() for w in a3c_runs],
}, index=pd.Index(list(a3c_runs), name="workers")).round(1)

# %% [markdown]
# **Throughput.** Two workers can step at most twice as many environments per second as
# one, and only if each has a core of its own: this machine has two, shared with the
# parent process (which reads the workers' messages and runs the evaluations) and with
# whatever else is running. When this notebook was written, with one core free, a
# 30,000-step run gave about 2,600 steps/s with one worker and 4,700 with two (1.8×);
# with another job holding one of the two cores, this notebook gave 2,400 and 2,100–2,200:
# two workers were *slower*; at a load average of 6 on the two cores, both gave about
# 1,300. `benchmarks/README.md` measured 2,420 and 2,954 steps/s (1.22×) on two busy
# cores. Either way A3C is about ten times slower per step than A2C's
# batched loop above: each worker steps one environment and runs its networks on one
# observation at a time. Spreading the work over processes pays when each process has a
# core to itself and each step is expensive enough to keep it busy (Atari games and
# convolutional networks, in the paper).
#
# **Learning.** A3C's CartPole settings (Adam $10^{-3}$, $T = 20$, $c_H = 0.01$, clip at
# 40; sources in the module's docstring) learn within a few tens of thousands of steps,
# and, like A2C, do not always keep what they learnt. The one-worker run is the same
# every time: over these 10,000 steps its greedy returns are 170, 356, 300, 403 and 229
# (the table); with `A3C_STEPS = 20_000` it wandered between 150 and 430, and with
# `A3C_STEPS = 40_000` held 500 from 30,000 steps on. The two-worker run is not: one run
# of 10,000 steps scored 79, 386, 466, 500 and 500, another ended at 483; one
# 20,000-step run reached 500 at 10,000 steps, fell to 119 and ended at 500; with 40,000
# steps, one run reached 500 at 15,000 steps and ended at 216, the next never got past
# 483. Judge the worker counts on several seeds and runs (`benchmarks/a3c.py`), not on
# one.
#
# **What is deterministic.** From the module docstring of `rlcourse/pg/a3c.py`:
#
# > With `workers=1` a run is reproducible bit for bit: same seed, same log, same
# > evaluations, same final policy (on the same machine, CPU). With W ≥ 2 it is not:
# > which worker claims which steps, and whose gradient lands on which version of θ, is
# > decided by the operating system's scheduler, so the log, the evaluations and the policy
# > differ from run to run.
#
# Run the cell again: the one-worker row repeats its greedy returns exactly, the
# two-worker row does not. What stays fixed even with two workers: the seeds of each
# worker's environments and sampling ($\text{seed} + 1000\,i$), the initial model, the
# total number of steps, and one evaluation per `callback_every` steps.

# %% [markdown]
# ## 6. The functions you will write
#
# In the student release these bodies are empty and the tests grade them:
#
# - `rlcourse.pg.a2c.advantages(config, batch, values, next_values)`: $\hat A$ for the
#   batch, by `config.advantage` (`"n-step"` or `"gae"`), calling `rlcourse.pg.psi`. The
#   hand-made batch of section 1 is a good first test: a terminated step must not
#   bootstrap, a truncated one must.
# - `rlcourse.pg.a2c.a2c_loss(policy, critic, batch, config)`: the combined loss
#   $L_\pi + c_V L_V - c_H \mathcal H$ and its terms (`Terms`). One forward pass of the
#   critic over $s_t$ and $s_{t+1}$; $\hat A$ and $y$ computed on detached values; the
#   critic's loss on the values *with* their gradient.
# - `rlcourse.pg.a3c.SharedAdam.step()`: Adam's update on statistics that live in shared
#   memory: increment $t$, update $m$ and $v$ in place, step the parameters with the
#   bias-corrected ratio.
#
# **Try it:** add `normalize_advantages=True` to the $c_H = 0.01$ Acrobot run and watch the
# entropy column; give A3C `lock=True`; or run section 2 with seeds 1 and 2 and see which
# parts of its ordering survive.

# %% [markdown]
# ## 7. The TD(λ) actor-critic: GAE, one step at a time
#
# GAE needs the TD errors *after* step $t$, so A2C collects a batch before it updates.
# Lesson 2's eligibility traces turn the sum around: keep a trace per parameter vector,
# $\mathbf z_\theta \leftarrow \gamma\lambda\,\mathbf z_\theta + \nabla_\theta \log\pi_\theta(a_t \mid s_t)$
# (and $\mathbf z_w$ likewise with $\nabla_w V_w(s_t)$), and after every single step move
# $\theta \leftarrow \theta + \alpha_\theta\,\delta_t\,\mathbf z_\theta$,
# $w \leftarrow w + \alpha_w\,\delta_t\,\mathbf z_w$. Summed over an episode with the
# parameters held fixed, the actor's steps are exactly $\sum_t \nabla_\theta \log\pi_\theta
# \cdot \hat A^{\text{GAE}}_t$: the same member of the Ψ family, in its backward view.
# The check, on one CartPole episode (the two agree to float32 rounding, about $10^{-6}$):

# %%
import gymnasium as gym

from rlcourse.pg.policies import ValueFunction, make_policy
from rlcourse.pg.td_lambda_ac import TDLambdaACConfig, decay_and_add
from rlcourse.pg.td_lambda_ac import train as td_lambda_ac_train

torch.manual_seed(SEED)
pg_env = gym.make("CartPole-v1")
actor = make_policy("td-lambda-ac", pg_env.observation_space, pg_env.action_space, (16,))
value_net = ValueFunction(4, (16,))
obs, _ = pg_env.reset(seed=SEED)
states, actions, rewards, done = [obs], [], [], False
while not done:
    with torch.no_grad():
        action = int(actor.distribution(torch.as_tensor(obs).unsqueeze(0)).sample())
    obs, reward, terminated, truncated, _ = pg_env.step(action)
    states.append(obs)
    actions.append(action)
    rewards.append(float(reward))
    done = terminated or truncated
x = torch.as_tensor(np.array(states))
with torch.no_grad():
    v = value_net(x)
next_v = v[1:].clone()
if terminated:
    next_v[-1] = 0.0  # nothing follows a terminal state
deltas = torch.as_tensor(rewards) + 0.99 * next_v - v[:-1]
params = list(actor.parameters())
traces, summed = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
for t, a in enumerate(actions):
    logp = actor.log_prob(actor.distribution(x[t:t + 1]), torch.tensor([a])).sum()
    decay_and_add(traces, torch.autograd.grad(logp, params), 0.99 * 0.9)
    for s_, z in zip(summed, traces):
        s_.add_(z, alpha=float(deltas[t]))
ends = torch.zeros(len(actions), 1, dtype=torch.bool)
gae_A = psi.gae(torch.as_tensor(rewards).unsqueeze(1), v[:-1].unsqueeze(1), next_v.unsqueeze(1), ends, ends,
                0.99, 0.9)[:, 0]
forward = torch.autograd.grad((actor.log_prob(actor.distribution(x[:-1]), torch.as_tensor(actions)) * gae_A).sum(),
                              params)
print(f"{len(actions)} steps: max |Σ δ_t z_t − ∇ Σ log π · GAE| = "
      f"{max(float((a - b).abs().max()) for a, b in zip(summed, forward)):.1e}")

# %% [markdown]
# Online, the parameters change after every step, and the trace is an approximation of
# that forward view, as online TD(λ) is of the λ-return. It needs no batch and no memory
# of the episode, but it also takes one noisy step per transition, with plain SGD, on one
# environment: it learns CartPole, slowly (with seed 0, from episodes of about 20 steps to
# a mean of 79 over the last 20 episodes in these 5,000 steps).

# %%
ac_result = td_lambda_ac_train("CartPole-v1", TDLambdaACConfig(), steps=TD_LAMBDA_AC_STEPS, seed=SEED)
fig = ac_result.plot(window=20)
plt.show()
print(f"mean return of the last 20 episodes: {ac_result.log['return'].tail(20).mean():.1f}")
