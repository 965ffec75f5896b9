"""``rlcourse tour``: every lesson that exists, on small budgets, in one Markdown report.

Each section trains or computes something, saves its plots next to the report and
writes a few lines of what to look at. The whole tour takes about two minutes on two
CPU cores, half of it lesson 7's RLHF pipeline (``quick=True`` shrinks it for tests).

Every run here is seed 0, and the report says so: one seed shows what happens, not how
often. What the seeds agree on (the interquartile mean of ten seeds, its 95% interval and
the solved fraction) is the table in ``docs/benchmarks.md``, which the report cites.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import rlcourse  # noqa: E402
from rlcourse.play import evaluate, evaluate_policy  # noqa: E402
from rlcourse.tabular import evaluation, planning  # noqa: E402
from rlcourse.tabular.qtable import QTable  # noqa: E402


def _savefig(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def lesson1_corridor(out: Path, quick: bool) -> list[str]:
    result = rlcourse.train("q-learning", "rlcourse/Corridor-v0", steps=3000, seed=0)
    result.save(out / "runs" / "corridor_q-learning")
    score = evaluate(result, episodes=10, seed=0)
    frames = []
    evaluate(result, episodes=1, seed=0, render="ansi", print_fn=frames.append)
    return [
        "## Lesson 1a: Q-learning on the corridor",
        "",
        "Six cells, the treasure at the right end, reward 1 for reaching it. After 3,000 steps "
        f"(seed 0) the greedy policy walks straight to it: mean length {score['mean_length']:g} "
        "(the shortest path is 5).",
        "",
        "```",
        result.q_table.round(3).to_string(),
        "```",
        "",
        f"![corridor learning curve]({_savefig(result.plot(), out, 'corridor_curve.png')})",
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
    optimal = planning.value_iteration(gym.make("FrozenLake-v1").unwrapped.P, 0.99)
    best = evaluate_policy(QTable(optimal.Q, result.policy.action_names), "FrozenLake-v1",
                           episodes=1000, seed=10_000)["mean_return"]
    return [
        "## Lesson 1b: Q-learning on slippery FrozenLake",
        "",
        f"{steps:,} steps with α = 0.02, γ = 0.99, seed 0. Greedy success rate over 1,000 episodes: "
        f"**{success:.3f}**; the optimal policy (value iteration on the true model) scores "
        f"{best:.3f} on the same episodes. The ice is slippery, so even the best policy falls in a hole "
        "a quarter of the time.",
        "",
    ]


def lesson1_cliff(out: Path, quick: bool) -> list[str]:
    steps = 10_000 if quick else 20_000
    settings = dict(alpha=0.2, gamma=1.0, epsilon_start=0.1, epsilon_end=0.1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    lines = ["## Lesson 1c: the cliff — SARSA walks safe, Q-learning walks the edge", "",
             "Seed 0 of each method:", "",
             "| method | greedy path length | online return, last 200 episodes |", "|---|---|---|"]
    for method in ("q-learning", "sarsa", "expected-sarsa"):
        result = rlcourse.train(method, "CliffWalking-v1", steps=steps, seed=0, **settings)
        path = evaluate(result, episodes=1, seed=0)["mean_length"]
        online = result.log["return"].tail(200).mean()
        lines.append(f"| {method} | {path:g} | {online:.1f} |")
        ax.plot(result.log["episode"], result.log["return"].rolling(20, min_periods=1).mean(),
                label=method)
    ax.set_ylim(-150, 0)
    ax.set_xlabel("episode")
    ax.set_ylabel("return (mean of 20)")
    ax.set_title("CliffWalking, ε = 0.1 fixed, α = 0.2")
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
    P = env.unwrapped.P
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
    lines = ["## Lesson 2a: evaluating the random policy on FrozenLake", "",
             "The exact V^π solves the linear system (I − γP_π)V = r_π; the sample-based "
             f"estimators approach it ({episodes:,} episodes, γ = {gamma}).", "",
             "| estimator | max abs error at the end |", "|---|---|"]
    for name, estimate in estimates.items():
        rms = np.sqrt(((estimate.history - exact) ** 2).mean(axis=1))
        ax.plot(np.arange(1, len(rms) + 1), rms, label=name)
        lines.append(f"| {name} | {np.abs(estimate.V - exact).max():.4f} |")
    ax.set_xlabel("episodes")
    ax.set_ylabel("RMS error vs exact V^π")
    ax.set_yscale("log")
    ax.legend()
    lines += ["", f"![evaluation errors]({_savefig(fig, out, 'evaluation_errors.png')})", ""]
    return lines


def lesson2_planning(out: Path, quick: bool) -> list[str]:
    lake = gym.make("FrozenLake-v1").unwrapped
    vi = planning.value_iteration(lake.P, 0.99)
    pi = planning.policy_iteration(lake.P, 0.99)
    same = bool(np.array_equal(vi.policy, pi.policy))
    tiles = lake.desc.astype(str)
    labels = np.where(np.isin(tiles, ["H", "G"]), tiles,
                      np.array(["←", "↓", "→", "↑"])[vi.policy].reshape(tiles.shape))
    fig, ax = plt.subplots(figsize=(4.2, 4))
    image = ax.imshow(vi.V.reshape(tiles.shape), cmap="viridis")
    for (row, col), label in np.ndenumerate(labels):
        ax.text(col, row, label, ha="center", va="center", color="white", fontsize=16)
    ax.set_title("V* and greedy policy, γ = 0.99")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, shrink=0.8)
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
    ax.set_title("MountainCar-v0")
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
    steps = 4_000 if quick else 50_000
    result = rlcourse.train("dqn", "CartPole-v1", steps=steps, seed=0)
    result.save(out / "runs" / "cartpole_dqn")
    score = evaluate(result, episodes=10, seed=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    result.plot(ax=left, label="episode return")
    result.plot(ax=right, column="q_mean", window=1, label="mean Q(s, a) of the minibatches")
    left.set_title("DQN on CartPole-v1")
    right.set_title("what the network believes")
    return [
        "## Lesson 3b: DQN on CartPole-v1",
        "",
        f"A [256, 256] Q-network, a replay buffer and a target network, with the RL Zoo's "
        f"hyperparameters but one update per four steps and a step size that decays to 0; "
        f"{steps:,} steps ({result.timing['steps_per_second']:,.0f} steps/s). "
        f"Greedy return over 10 episodes (seed 0): **{score['mean_return']:.0f}** (500 is the maximum). "
        "With γ = 0.99 and +1 per step the true value of a state in a 500-step episode is at "
        "most 100; watch the Q-values climb toward it.",
        "",
        f"![DQN curves]({_savefig(fig, out, 'dqn_curves.png')})",
        "",
    ]


def lesson4_variance(out: Path, quick: bool) -> list[str]:
    from rlcourse.pg.variance import variance_table

    table = variance_table(samples=2000 if quick else 20_000)
    lines = ["## Lesson 4a: the variance of the policy-gradient estimators", "",
             "A small MDP whose exact gradient comes from enumerating every trajectory. All "
             "estimators are unbiased; their variance (trace of the covariance of one "
             "trajectory's estimate) is what differs:", "",
             "| Ψ_t | bias norm | noise norm | variance | exact variance |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.estimator} | {row.bias_norm:.3f} | {row.stderr_norm:.3f} | "
                     f"{row.total_variance:.2f} | {row.exact_variance:.2f} |")
    return lines + [""]


def lesson4_reinforce(out: Path, quick: bool) -> list[str]:
    import torch

    torch.set_num_threads(1)
    steps = 20_000 if quick else 100_000
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lines = ["## Lesson 4b: REINFORCE on CartPole-v1", "",
             f"{steps:,} environment steps per run, seed 0.", "",
             "| Ψ_t | greedy return (10 episodes) |", "|---|---|"]
    for psi in ("total-return", "reward-to-go", "value-baseline"):
        result = rlcourse.train("reinforce", "CartPole-v1", steps=steps, seed=0, psi=psi)
        result.plot(ax=ax, window=5, label=psi)
        lines.append(f"| {psi} | {evaluate(result, episodes=10)['mean_return']:.0f} |")
    ax.set_title("REINFORCE on CartPole-v1")
    return lines + ["", "Subtracting a baseline and keeping only the rewards that follow an "
                    "action lower the variance, and the agent learns faster: over ten seeds of 150,000 "
                    "steps, 0, 7 and 10 of them end at 475 or more with these three weights "
                    "(`docs/benchmarks.md`).", "",
                    f"![REINFORCE curves]({_savefig(fig, out, 'reinforce_curves.png')})", ""]


def lesson5_a2c(out: Path, quick: bool) -> list[str]:
    steps = 20_000 if quick else 150_000
    result = rlcourse.train("a2c", "CartPole-v1", steps=steps, seed=0)
    score = evaluate(result, episodes=10, seed=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    result.plot(ax=left, label="episode return")
    result.plot(ax=right, column="explained_variance", window=1, label="critic's explained variance")
    left.set_title("A2C on CartPole-v1")
    right.set_title("how much of the return the critic explains")
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
    steps = 20_000 if quick else 100_000
    result = rlcourse.train("ppo", "CartPole-v1", steps=steps, seed=0)
    score = evaluate(result, episodes=10, seed=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    result.plot(ax=left, label="episode return")
    result.plot(ax=right, column="clipfrac", window=10, label="clipfrac")
    result.plot(ax=right, column="approx_kl", window=10, label="approx_kl")
    right.set_yscale("log")
    left.set_title("PPO on CartPole-v1")
    right.set_title("how far each update moved the policy")
    return [
        "## Lesson 6: PPO on CartPole-v1",
        "",
        f"The clipped surrogate, 20 epochs of minibatch steps on each batch of 8 × 32 steps (the RL Zoo's "
        f"settings), {steps:,} steps, seed 0 ({result.timing['steps_per_second']:,.0f} steps/s). Greedy return over "
        f"10 episodes: **{score['mean_return']:.0f}**. The clip keeps each update near the policy that "
        "collected the data: the share of clipped samples and the KL moved stay small while the step size "
        "and ε anneal to 0.",
        "",
        f"![PPO curves]({_savefig(fig, out, 'ppo_curves.png')})",
        "",
    ]


def lesson7_rlhf(out: Path, quick: bool) -> list[str]:
    from rlcourse.rlhf.pipeline import QUICK, PipelineConfig, run_pipeline

    # the pipeline's defaults, without the frontier's extra sweep points (the full run adds four)
    config = PipelineConfig(**QUICK) if quick else PipelineConfig(dpo_betas=(), ppo_kl_coefs=())
    s = run_pipeline(out / "runs" / "rlhf_pipeline", config, progress=None)
    shutil.copy(out / "runs" / "rlhf_pipeline" / "frontier.png", out / "rlhf_frontier.png")
    return [
        "## Lesson 7: RLHF and DPO on a tiny GPT-2",
        "",
        "The prompted-sentiment task: a prompt says *praise* or *criticise*, the reward is the response's "
        "sentiment signed by that instruction. SFT on a mildly negative corpus, then preference pairs sampled "
        "from the SFT model and labelled with Bradley–Terry noise; from them a reward model and PPO against it, "
        "and DPO directly. Seed 0:",
        "",
        "| | ground-truth reward | win rate vs SFT | KL to SFT (nats) |",
        "|---|---|---|---|",
        f"| SFT | {s['sft_reward']:+.3f} | | |",
        f"| DPO (β = {config.dpo.beta:g}) | {s['dpo_reward']:+.3f} | {s['dpo_win_rate']:.2f} | {s['dpo_kl']:.1f} |",
        f"| PPO with the reward model (β_KL = {config.ppo.kl_coef:g}) | {s['ppo_reward']:+.3f} | "
        f"{s['ppo_win_rate']:.2f} | {s['ppo_kl']:.1f} |",
        "",
        f"The reward model's held-out accuracy is {s['rm_accuracy']:.3f}, of the {s['rm_accuracy_ceiling']:.3f} "
        "that the label noise allows. `rlcourse rlhf pipeline --out DIR` runs the same with a sweep of β for "
        "the frontier below.",
        "",
        "![reward against KL](rlhf_frontier.png)",
        "",
    ]


LESSONS = [lesson1_corridor, lesson1_frozenlake, lesson1_cliff, lesson2_evaluation,
           lesson2_planning, lesson3_linear, lesson3_dqn, lesson4_variance, lesson4_reinforce, lesson5_a2c,
           lesson6_ppo, lesson7_rlhf]


def run_tour(out: Path, quick: bool = False, progress: bool = True) -> Path:
    """Run every lesson, write ``out/report.md`` with its plots, and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# rlcourse tour", "",
             "Every lesson that exists so far, on small budgets. Plots sit beside this file.", "",
             "Every run is seed 0: one seed shows what happens, not how often it does. How often is the "
             "ten-seed table of `docs/benchmarks.md` (interquartile mean, 95% confidence interval, "
             "solved fraction for every algorithm on its lesson's task).", ""]
    start = time.perf_counter()
    for lesson in tqdm(LESSONS, desc="tour", unit="lesson", disable=not progress):
        lines += lesson(out, quick)
    lines.append(f"_Finished in {time.perf_counter() - start:.1f} s._")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
