"""``rlcourse tour``: every lesson that exists, on small budgets, in one Markdown report.

Each section trains or computes something, saves its plots next to the report and
writes a few lines of what to look at. Lessons 6 and 7 (PPO, and the RLHF pipeline,
about 40% of the work alone) run in a second process beside the other lessons, so that on
two CPU cores the tour takes about as long as either half (64 s of wall time and 121 s of
CPU on an idle two-core machine when this was written; ``quick=True`` shrinks every budget
for tests).

Every run here is seed 0, and the report says so: one seed shows what happens, not how
often. What the seeds agree on (the interquartile mean of ten seeds, its 95% interval and
the solved fraction) is the table in ``docs/benchmarks.md``, which the report cites.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import rlcourse
from rlcourse.play import evaluate, evaluate_policy
from rlcourse.run import torch_threads
from rlcourse.tabular import evaluation, planning
from rlcourse.tabular.qtable import QTable


def _savefig(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def _steps_in_thousands(*axes) -> None:
    """Write environment steps as 20k, 40k, … (or 0.5k, 1k, …) so that the tick labels never run together."""
    for ax in axes:
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")


@contextlib.contextmanager
def _transformers_progress_bars(shown: bool):
    """Turn transformers' own bars ("Writing model shards") on or off, as the tour's; then restore them."""
    from transformers.utils import logging as hf_logging

    was_shown = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_shown else hf_logging.disable_progress_bar)()


def _frozenlake() -> Any:
    """FrozenLake's own environment object, with its transition table ``P`` and map ``desc``."""
    return gym.make("FrozenLake-v1").unwrapped


def lesson1_corridor(out: Path, quick: bool) -> list[str]:
    result = rlcourse.train("q-learning", "rlcourse/Corridor-v0", steps=3000, seed=0)
    result.save(out / "runs" / "corridor_q-learning")
    score = evaluate(result, episodes=10, seed=0)
    frames: list[str] = []
    evaluate(result, episodes=1, seed=0, render="ansi", print_fn=frames.append)
    fig = result.plot(column="length", x="episode", window=20)
    fig.axes[0].axhline(5, color="k", ls=":", lw=1, label="shortest path (5 steps)")
    fig.axes[0].set_ylabel("episode length (steps)")
    fig.axes[0].set_title("Q-learning on the corridor, seed 0: steps to the treasure")
    fig.axes[0].legend(fontsize="small")
    return [
        "## Lesson 1a: Q-learning on the corridor",
        "",
        "Six cells, the treasure at the right end, reward 1 for reaching it. After 3,000 steps "
        f"(seed 0) the greedy policy walks straight to it: mean length {score['mean_length']:g} "
        "(the shortest path is 5). Every episode ends at the treasure with return 1, so the "
        "return cannot show the learning; the episode length does. It falls from tens of steps to "
        "a few more than 5 as the table fills in; what is left above 5 is ε-greedy exploration, "
        f"which has decayed to ε = {result.log['epsilon'].iloc[-1]:.2f} by the end.",
        "",
        "```",
        result.q_table.round(3).to_string(),
        "```",
        "",
        f"![corridor episode lengths]({_savefig(fig, out, 'corridor_curve.png')})",
        "",
        "A greedy episode:",
        "",
        "```",
        *frames[:-1],
        "```",
        "",
    ]


def lesson1_frozenlake(out: Path, quick: bool) -> list[str]:
    steps = 60_000 if quick else 300_000
    result = rlcourse.train("q-learning", "FrozenLake-v1", steps=steps, seed=0, alpha=0.02)
    success = evaluate(result, episodes=1000, seed=10_000)["mean_return"]
    optimal = planning.value_iteration(_frozenlake().P, 0.99)
    best = evaluate_policy(QTable(optimal.Q, result.policy.action_names), "FrozenLake-v1", episodes=1000, seed=10_000)[
        "mean_return"
    ]
    return [
        "## Lesson 1b: Q-learning on slippery FrozenLake",
        "",
        f"{steps:,} steps with α = 0.02, γ = 0.99, seed 0. Greedy success rate over 1,000 episodes: "
        f"**{success:.3f}** (standard error {_success_stderr(success, 1000):.3f}); the optimal policy "
        f"(value iteration on the true model) scores {best:.3f} ({_success_stderr(best, 1000):.3f}) on "
        "episodes with the same seeds. The ice is slippery, so even the best policy falls in a hole "
        "about a quarter of the time.",
        "",
        "A success rate measured on 1,000 episodes is itself a sample: its standard error is "
        f"√(p(1 − p)/1000), about {_success_stderr(best, 1000):.3f} here, so a difference of a few hundredths between the two "
        "rates is within sampling error. The learned policy may score a little above the optimal "
        "one on these episodes by luck; it cannot beat it in expectation.",
        "",
    ]


def _success_stderr(rate: float, episodes: int) -> float:
    """The standard error of a success rate measured on ``episodes`` independent episodes."""
    return float(np.sqrt(rate * (1 - rate) / episodes))


def lesson1_cliff(out: Path, quick: bool) -> list[str]:
    steps = 10_000 if quick else 20_000
    settings: dict[str, Any] = dict(alpha=0.2, gamma=1.0, epsilon_start=0.1, epsilon_end=0.1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    lines = [
        "## Lesson 1c: the cliff — SARSA walks safe, Q-learning walks the edge",
        "",
        "Seed 0 of each method:",
        "",
        "| method | greedy path length | online return, last 200 episodes |",
        "|---|---|---|",
    ]
    for method in ("q-learning", "sarsa", "expected-sarsa"):
        result = rlcourse.train(method, "CliffWalking-v1", steps=steps, seed=0, **settings)
        path = evaluate(result, episodes=1, seed=0)["mean_length"]
        online = result.log["return"].tail(200).mean()
        lines.append(f"| {method} | {path:g} | {online:.1f} |")
        ax.plot(result.log["episode"], result.log["return"].rolling(20, min_periods=1).mean(), label=method)
    ax.set_ylim(-150, 0)
    ax.set_xlabel("episode")
    ax.set_ylabel("return while learning (mean of 20)")
    ax.set_title("CliffWalking, seed 0: the ε-greedy episodes (ε = 0.1, α = 0.2)")
    ax.legend()
    lines += [
        "",
        "With ε held at 0.1, SARSA's targets include the exploratory steps that fall off the "
        "cliff, so it learns the longer safe path and earns more *while exploring*. "
        "Q-learning's target is the greedy action, so it learns the shortest path along the "
        "edge (13 steps) and falls more often while exploring (Sutton & Barto, 2nd ed., "
        "Example 6.6).",
        "",
        f"![cliff walking]({_savefig(fig, out, 'cliff_curves.png')})",
        "",
    ]
    return lines


def lesson2_evaluation(out: Path, quick: bool) -> list[str]:
    episodes = 500 if quick else 3000
    env = gym.make("FrozenLake-v1")
    P = _frozenlake().P
    pi = evaluation.uniform_policy(len(P), len(P[0]))
    gamma = 0.9
    exact = evaluation.exact_evaluation(P, pi, gamma)
    estimates = {
        "MC first-visit": evaluation.mc_evaluation(env, pi, gamma, episodes, seed=0),
        "MC every-visit": evaluation.mc_evaluation(env, pi, gamma, episodes, first_visit=False, seed=0),
        "MC α = 0.05": evaluation.mc_evaluation(env, pi, gamma, episodes, alpha=0.05, seed=0),
        "TD(0) α = 0.05": evaluation.td0_evaluation(env, pi, gamma, episodes, alpha=0.05, seed=0),
    }
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lines = [
        "## Lesson 2a: evaluating the random policy on FrozenLake",
        "",
        "The exact V^π solves the linear system (I − γP_π)V = r_π; the sample-based "
        f"estimators approach it ({episodes:,} episodes, γ = {gamma}, seed 0). The error is "
        "measured over the 16 states: the RMS error is √(mean over s of (V(s) − V^π(s))²), which "
        "the plot follows episode by episode; the max error is the largest |V(s) − V^π(s)|.",
        "",
        "| estimator | RMS error at the end | max error at the end |",
        "|---|---|---|",
    ]
    for name, estimate in estimates.items():
        rms = np.sqrt(((estimate.history - exact) ** 2).mean(axis=1))
        ax.plot(np.arange(1, len(rms) + 1), rms, label=name)
        lines.append(f"| {name} | {rms[-1]:.4f} | {np.abs(estimate.V - exact).max():.4f} |")
    ax.set_xlabel("episodes")
    ax.set_ylabel("RMS error of V over the states")
    ax.set_yscale("log")
    ax.set_title("Evaluating the random policy on FrozenLake")
    ax.legend(fontsize="small")
    lines += ["", f"![evaluation errors]({_savefig(fig, out, 'evaluation_errors.png')})", ""]
    return lines


def lesson2_planning(out: Path, quick: bool) -> list[str]:
    lake = _frozenlake()
    vi = planning.value_iteration(lake.P, 0.99)
    pi = planning.policy_iteration(lake.P, 0.99)
    same = bool(np.array_equal(vi.policy, pi.policy))
    tiles = lake.desc.astype(str)
    labels = np.where(np.isin(tiles, ["H", "G"]), tiles, np.array(["←", "↓", "→", "↑"])[vi.policy].reshape(tiles.shape))
    fig, ax = plt.subplots(figsize=(4.2, 4))
    image = ax.imshow(vi.V.reshape(tiles.shape), cmap="viridis")
    for (row, col), label in np.ndenumerate(labels):
        ax.text(col, row, label, ha="center", va="center", color="white", fontsize=16)
    ax.set_title("V* and greedy policy, γ = 0.99")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, shrink=0.8, label="V*(s)")
    return [
        "## Lesson 2b: policy iteration and value iteration",
        "",
        f"Value iteration took {vi.iterations} sweeps, policy iteration {pi.iterations} "
        f"improvements; same optimal policy: **{same}**, "
        f"max |V_VI − V_PI| = {np.abs(vi.V - pi.V).max():.2e}.",
        "",
        f"![FrozenLake V*]({_savefig(fig, out, 'frozenlake_v_star.png')})",
        "",
    ]


def lesson3_linear(out: Path, quick: bool) -> list[str]:
    steps = 20_000 if quick else 100_000
    result = rlcourse.train("linear-q", "MountainCar-v0", steps=steps, seed=0)
    score = evaluate(result, episodes=10, seed=0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    result.plot(ax=ax, label="linear Q-learning, tile coding")
    ax.set_ylabel("return of the training episodes")
    ax.set_title("MountainCar-v0, seed 0: training return")
    _steps_in_thousands(ax)
    return [
        "## Lesson 3a: linear Q-learning with tile coding on MountainCar",
        "",
        f"Q(s, a) = φ(s)ᵀW[:, a] with 8 tilings of 8 × 8 tiles over position and velocity "
        f"(Sutton & Barto, Example 10.1), {steps:,} steps, seed 0. The greedy policy reaches the flag in "
        f"{score['mean_length']:.0f} steps on average (return {score['mean_return']:.0f}; the "
        "time limit is 200 steps, and a good policy needs 100–120).",
        "",
        f"![MountainCar learning curve]({_savefig(fig, out, 'mountaincar_curve.png')})",
        "",
    ]


def lesson3_dqn(out: Path, quick: bool) -> list[str]:
    steps = 2_000 if quick else 30_000
    result = rlcourse.train("dqn", "CartPole-v1", steps=steps, seed=0)
    result.save(out / "runs" / "cartpole_dqn")
    score = evaluate(result, episodes=10, seed=0)
    gamma = result.config.gamma
    bound = 1 / (1 - gamma)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    result.plot(ax=left, label="training episodes (ε-greedy)")
    left.set_ylabel("episode return")
    result.plot(ax=right, column="q_mean", window=1, label="mean Q(s, a) of the minibatches")
    right.axhline(bound, color="k", ls=":", lw=1, label=f"1/(1 − γ) = {bound:g}: balancing forever")
    right.set_ylabel("Q(s, a)")
    right.legend(fontsize="small", loc="lower right")
    left.set_title("DQN on CartPole-v1, seed 0: training return")
    right.set_title("what the network believes")
    _steps_in_thousands(left, right)
    return [
        "## Lesson 3b: DQN on CartPole-v1",
        "",
        "A Q-network with a replay buffer and a target network, with the RL Zoo's hyperparameters but "
        f"the square loss, γ = {gamma:g}, half the updates and a step size that decays to 0 (`DQNConfig` in "
        "`rlcourse/value/dqn.py`; lesson 3's page says why); "
        f"{steps:,} steps ({result.timing['steps_per_second']:,.0f} steps/s). The left panel is the return "
        "of the ε-greedy episodes played while training; the greedy policy at the end, over 10 episodes "
        f"(seed 0), returns **{score['mean_return']:.0f}** (500 is the maximum). With γ = {gamma:g} and +1 "
        f"per step, no state is worth more than 1 + γ + γ² + … = 1/(1 − γ) = {bound:g}, the value of "
        "balancing forever (a state near a fall is worth less); watch the Q-values climb toward that "
        "line, the dotted one on the right.",
        "",
        f"![DQN curves]({_savefig(fig, out, 'dqn_curves.png')})",
        "",
    ]


def lesson4_variance(out: Path, quick: bool) -> list[str]:
    from rlcourse.pg.variance import variance_table

    samples = 2000 if quick else 20_000
    table = variance_table(samples=samples)
    lines = [
        "## Lesson 4a: the variance of the policy-gradient estimators",
        "",
        "A small MDP whose exact gradient ∇J comes from enumerating every trajectory. Each row "
        f"samples {samples:,} trajectories (seed 0) and turns each into one estimate of ∇J with that Ψ_t. "
        "The columns:",
        "",
        f"- *miss*: ‖mean of the {samples:,} estimates − ∇J‖, how far their average lands from the exact gradient;",
        "- *noise*: √(variance / N), the miss to expect from noise alone if the estimator is unbiased;",
        "- *variance*: the trace of the covariance of one trajectory's estimate, measured on the samples;",
        "- *exact variance*: the same trace, computed by enumerating every trajectory.",
        "",
        "Every estimator here is unbiased, and the table shows it: each miss is of the order of its noise, "
        "within the factor of two or so by which one sample's error can differ from its expected size, and "
        "both shrink like 1/√N. What differs is the variance, so the number of trajectories needed for "
        "the same accuracy:",
        "",
        "| Ψ_t | miss | noise | variance | exact variance |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.estimator} | {row.bias_norm:.3f} | {row.stderr_norm:.3f} | "
            f"{row.total_variance:.2f} | {row.exact_variance:.2f} |"
        )
    return [*lines, ""]


def lesson4_reinforce(out: Path, quick: bool) -> list[str]:
    steps = 12_000 if quick else 50_000
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lines = [
        "## Lesson 4b: REINFORCE on CartPole-v1",
        "",
        f"{steps:,} environment steps per run, seed 0, with twice the default step size (α = 0.01) so that "
        "a short run shows the difference. Two numbers per run, which differ: the *training* "
        "return is the mean return of the episodes the stochastic policy played in the last 5 batches "
        "(the end of the curves below); the *greedy* return is what the trained policy scores afterwards "
        "when it always takes its most likely action (10 episodes).",
        "",
        "| Ψ_t | training return, last 5 batches | greedy return after training |",
        "|---|---|---|",
    ]
    for psi in ("total-return", "reward-to-go", "value-baseline"):
        result = rlcourse.train("reinforce", "CartPole-v1", steps=steps, seed=0, psi=psi, lr=1e-2)
        result.plot(ax=ax, window=5, label=psi)
        training = result.log["return"].tail(5).mean()
        lines.append(f"| {psi} | {training:.0f} | {evaluate(result, episodes=10)['mean_return']:.0f} |")
    ax.set_ylabel("training return (mean of 5 batches)")
    ax.set_title("REINFORCE on CartPole-v1, seed 0: training return")
    _steps_in_thousands(ax)
    return [
        *lines,
        "",
        "Subtracting a baseline and keeping only the rewards that follow an action lower the variance "
        "(Lesson 4a), so on average the agent learns faster. One seed can order anything; over ten "
        "seeds of 150,000 steps with the default step size, 0, 7 and 10 of them end at 475 or more with "
        "these three weights (`docs/benchmarks.md`).",
        "",
        f"![REINFORCE curves]({_savefig(fig, out, 'reinforce_curves.png')})",
        "",
    ]


def lesson5_a2c(out: Path, quick: bool) -> list[str]:
    steps = 8_000 if quick else 60_000
    result = rlcourse.train("a2c", "CartPole-v1", steps=steps, seed=0)
    score = evaluate(result, episodes=10, seed=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    result.plot(ax=left, label="training episodes")
    left.set_ylabel("episode return")
    result.plot(ax=right, column="explained_variance", window=1, label="explained_variance")
    right.set_ylabel("1 − Var(target − V) / Var(target)")
    left.set_title("A2C on CartPole-v1, seed 0: training return")
    right.set_title("how much of the return the critic explains")
    _steps_in_thousands(left, right)
    return [
        "## Lesson 5: A2C on CartPole-v1",
        "",
        f"8 environments, 5 steps each per update, Ψ = the 5-step advantage from a learned critic "
        f"(the RL Zoo's settings), {steps:,} steps, seed 0 ({result.timing['steps_per_second']:,.0f} steps/s). "
        f"Greedy return over 10 episodes: **{score['mean_return']:.0f}**. Unlike REINFORCE it does "
        "not wait for episodes to end: it updates every 40 steps, bootstrapping from the critic.",
        "",
        f"![A2C curves]({_savefig(fig, out, 'a2c_curves.png')})",
        "",
    ]


def lesson6_ppo(out: Path, quick: bool) -> list[str]:
    steps = 8_000 if quick else 40_000
    result = rlcourse.train("ppo", "CartPole-v1", steps=steps, seed=0)
    score = evaluate(result, episodes=10, seed=0)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.5))
    result.plot(ax=left, label="training episodes")
    left.set_ylabel("episode return")
    left.set_title("PPO on CartPole-v1, seed 0: training return")
    result.plot(ax=middle, column="clipfrac", window=10, label="clipfrac (mean of 10 updates)")
    middle.set_ylabel("share of samples with |r − 1| > ε")
    middle.set_title("how many samples the clip held back")
    result.plot(ax=right, column="approx_kl", window=10, label="approx_kl (mean of 10 updates)")
    right.set_yscale("log")
    right.set_ylabel("KL(old ‖ new), nats (log scale)")
    right.set_title("how far each update moved the policy")
    _steps_in_thousands(left, middle, right)
    return [
        "## Lesson 6: PPO on CartPole-v1",
        "",
        f"The clipped surrogate, 20 epochs of minibatch steps on each batch of 8 × 32 steps (the RL Zoo's "
        f"settings), {steps:,} steps, seed 0 ({result.timing['steps_per_second']:,.0f} steps/s). Greedy return over "
        f"10 episodes: **{score['mean_return']:.0f}**. The clip keeps each update near the policy that "
        "collected the data: the share of clipped samples (`clipfrac`, middle) and the KL between the "
        "policies before and after an update (`approx_kl`, right) stay small while the step size "
        "and ε anneal to 0.",
        "",
        f"![PPO curves]({_savefig(fig, out, 'ppo_curves.png')})",
        "",
    ]


def _tour_pipeline(quick: bool):
    """Lesson 7's pipeline as the tour runs it: the defaults, with one more coefficient for each
    method than the one it reports, so that the frontier has two points per method (the full
    ``rlcourse rlhf pipeline`` sweeps two more)."""
    from rlcourse.rlhf.pipeline import QUICK, PipelineConfig

    return PipelineConfig(**QUICK) if quick else PipelineConfig(dpo_betas=(1.0,), ppo_kl_coefs=(0.2,))


def lesson7_rlhf(out: Path, quick: bool) -> list[str]:
    from rlcourse.rlhf.pipeline import plot_frontier, run_pipeline

    config = _tour_pipeline(quick)
    s = run_pipeline(out / "runs" / "rlhf_pipeline", config, progress=None)
    fig = plot_frontier(pd.read_csv(out / "runs" / "rlhf_pipeline" / "frontier.csv"))
    ax = fig.axes[0]
    ax.margins(x=0.15, y=0.12)  # room for the coefficients written beside the points
    ax.set_title("RLHF on the toy task, seed 0: reward against KL")
    return [
        "## Lesson 7: RLHF and DPO on a tiny GPT-2",
        "",
        "The prompted-sentiment task: a prompt says *praise* or *criticise*, the reward is the response's "
        "sentiment signed by that instruction. SFT on a mildly negative corpus, then preference pairs sampled "
        "from the SFT model and labelled with Bradley–Terry noise; from them a reward model and PPO against it, "
        "and DPO directly; `rlcourse rlhf pipeline`'s settings, seed 0, judged by the ground-truth reward on "
        "held-out prompts:",
        "",
        "| | ground-truth reward | win rate vs SFT | KL to SFT (nats) |",
        "|---|---|---|---|",
        f"| SFT | {s['sft_reward']:+.3f} | | |",
        f"| DPO (β = {config.dpo.beta:g}) | {s['dpo_reward']:+.3f} | {s['dpo_win_rate']:.2f} | {s['dpo_kl']:.1f} |",
        f"| PPO with the reward model (β_KL = {config.ppo.kl_coef:g}) | {s['ppo_reward']:+.3f} | "
        f"{s['ppo_win_rate']:.2f} | {s['ppo_kl']:.1f} |",
        "",
        "The reward is the mean ground-truth reward of the model's samples (−1 to +1); the win rate is how "
        "often a sample beats the SFT model's on the same prompt; the KL is KL[π ‖ π_SFT] of a whole "
        f"response. The reward model's held-out accuracy is {s['rm_accuracy']:.3f}, of the "
        f"{s['rm_accuracy_ceiling']:.3f} that the label noise allows.",
        "",
        f"The frontier below runs DPO with {len({config.dpo.beta, *config.dpo_betas})} values of β and PPO with "
        f"{len({config.ppo.kl_coef, *config.ppo_kl_coefs})} values of β_KL, each point labelled with its own: "
        "a weaker pull toward π_SFT buys reward with KL. Where one method's points lie higher at the same KL, "
        "it spends its KL budget better. `rlcourse rlhf pipeline --out DIR` draws it with two more values each.",
        "",
        f"![reward against KL]({_savefig(fig, out, 'rlhf_frontier.png')})",
        "",
    ]


def _pass_at_k_figure(before: dict[str, float], after: dict[str, float], title: str):
    ks = [int(name.split("@")[1]) for name in before]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ks, list(before.values()), "o--", label="after SFT, before RL")
    ax.plot(ks, list(after.values()), "o-", label="after GRPO")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(xlabel="k, answers sampled per prompt", ylabel="held-out pass@k", ylim=(0, 1.02), title=title)
    ax.legend(loc="lower right")
    return fig


def lesson8_rlvr(out: Path, quick: bool) -> list[str]:
    from rlcourse.rlvr import exact
    from rlcourse.rlvr.pipeline import RLVRConfig, run_rlvr

    model, tokenizer = exact.toy_model(seed=0)
    draws = 400 if quick else 4000
    table = exact.bias_variance_table(exact.enumerate_policy(model, tokenizer), group_size=4, draws=draws, seed=0)
    lines = [
        "## Lesson 8: RL with verifiable rewards — GRPO, RLOO and Dr. GRPO",
        "",
        "**Which group estimators are unbiased.** A tiny GPT-2 small enough to enumerate every answer "
        "(at most 3 tokens from {a, b, <eos>}) to three prompts, each with a verifier that scores 0 or 1, "
        "so the exact gradient ∇J is a finite sum. Each row draws a group of 4 answers per prompt "
        f"{draws:,} times (seed 0) and compares the mean of its gradient estimates ĝ with ∇J. The columns:",
        "",
        "- *scale*: α of the least-squares fit E ĝ ≈ α ∇J (a step-size factor, harmless);",
        "- *bias*: ‖E ĝ − α ∇J‖ / ‖α ∇J‖, what is left: near *noise* means it points where ∇J does;",
        f"- *noise*: the bias that {draws:,} draws of an unbiased estimator would show from chance alone;",
        "- *variance*: tr Cov(ĝ / α) / ‖∇J‖², one group's noise against the signal, at the same step size;",
        "- *length drift*: how fast the mean answer length changes along E ĝ / α (the exact row: along ∇J);",
        "- *weight x, y, z*: how much each prompt's own gradient counts in E ĝ (1 each for ∇J; x is easy, z is hard).",
        "",
        "| estimator | scale | bias | noise | variance | length drift | weight x | weight y | weight z |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['estimator']} | {row['scale']:.3f} | {row['bias']:.3f} | {row['noise']:.3f} | "
            f"{row['variance']:.2f} | {row['length_drift']:+.2f} | {row['weight x']:.2f} | {row['weight y']:.2f} | "
            f"{row['weight z']:.2f} |"
        )
    by = table.set_index("estimator", drop=False).to_dict("index")
    grpo = "GRPO (std, sequence-mean)"
    config = (
        RLVRConfig(iterations=2, sft_epochs=1, heldout=40, eval_prompts=20, eval_samples=4)
        if quick
        else RLVRConfig(iterations=40, eval_prompts=100, eval_samples=8)
    )
    s = run_rlvr(config, out=out / "runs" / "rlvr_grpo")
    fig = _pass_at_k_figure(s["before"], s["after"], f"GRPO on {config.digits}-digit sums, seed 0")
    return [
        *lines,
        "",
        f"RLOO and the group mean (Dr. GRPO) miss ∇J by about what chance alone gives (bias {by['rloo']['bias']:.3f} "
        f"and {by['group mean (Dr. GRPO)']['bias']:.3f}, noise {by['rloo']['noise']:.3f}): they are unbiased. "
        "Dividing by the group's σ re-weights the prompts by how often the policy solves them (*std, "
        f"constant*: bias {by['std, constant']['bias']:.3f}). Dividing each answer's tokens by its length "
        f"(*sequence-mean*, GRPO's) is the large bias here ({by[grpo]['bias']:.3f}): it shortens the answers "
        f"faster than ∇J would (length drift {by[grpo]['length_drift']:+.2f} against "
        f"{by['exact']['length_drift']:+.2f}) and gives the hard prompt z, whose one right answer is as "
        f"long as an answer can be, a weight of {by[grpo]['weight z']:.2f}: a negative weight pushes its success rate down.",
        "",
        f"**GRPO on sums.** A tiny GPT-2 ({config.n_layer} layers, {config.n_embd} wide) learns "
        f"{config.digits}-digit addition: {config.sft_epochs} epochs of SFT on correct sums, then "
        f"{config.iterations} GRPO iterations (the default run has 300) of 32 prompts × 8 answers, each "
        "answer scored 1 if its number is the sum; seed 0. Held-out pass@1 "
        f"({config.eval_prompts} prompts never trained on, {config.eval_samples} answers each) goes from "
        f"**{s['before']['pass@1']:.2f}** to **{s['after']['pass@1']:.2f}**. pass@k is the chance that at "
        "least one of k answers is right: where it rises at k = 1 but hardly at the largest k, RL sharpened "
        "what the SFT model could already sample rather than finding new answers. Over five seeds of the "
        "default run, four lift pass@1 by 30 points or more (`docs/lessons/08_rl_verifiable_rewards.md`).",
        "",
        f"![pass@k before and after]({_savefig(fig, out, 'rlvr_pass_at_k.png')})",
        "",
    ]


LESSONS = [
    lesson1_corridor,
    lesson1_frozenlake,
    lesson1_cliff,
    lesson2_evaluation,
    lesson2_planning,
    lesson3_linear,
    lesson3_dqn,
    lesson4_variance,
    lesson4_reinforce,
    lesson5_a2c,
    lesson6_ppo,
    lesson7_rlhf,
    lesson8_rlvr,
]
# Lessons 6 and 7 (the RLHF pipeline alone is about 40% of the tour's CPU time) run in a second
# process beside the others, so that on two cores the tour takes about as long as the longer half.
BACKGROUND_LESSONS = (lesson6_ppo, lesson7_rlhf)


def _run_lesson(lesson, out: Path, quick: bool, progress: bool) -> list[str]:
    """Run ``lesson`` on one torch thread, with transformers' progress bars shown as the tour's are."""
    with torch_threads(1), _transformers_progress_bars(shown=progress):
        return lesson(out, quick)


def run_tour(out: Path, quick: bool = False, progress: bool = True) -> Path:
    """Run every lesson, write ``out/report.md`` with its plots, and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# rlcourse tour",
        "",
        "Every lesson that exists so far, on small budgets. Plots sit beside this file.",
        "",
        "Every run is seed 0: one seed shows what happens, not how often it does. How often is the "
        "ten-seed table of `docs/benchmarks.md` (interquartile mean, 95% confidence interval, "
        "solved fraction for every algorithm on its lesson's task).",
        "",
    ]
    start = time.perf_counter()
    bar = tqdm(total=len(LESSONS), desc="tour", unit="lesson", disable=not progress)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool, bar:
        background = {lesson: pool.submit(_run_lesson, lesson, out, quick, progress) for lesson in BACKGROUND_LESSONS}
        sections = {}
        for lesson in LESSONS:
            if lesson not in background:
                sections[lesson] = _run_lesson(lesson, out, quick, progress)
                bar.update()
        for lesson, future in background.items():
            sections[lesson] = future.result()
            bar.update()
    for lesson in LESSONS:
        lines += sections[lesson]
    lines.append(f"_Finished in {time.perf_counter() - start:.1f} s._")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
