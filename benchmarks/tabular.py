"""Benchmark: rlcourse's tabular Q-learning against a pandas-indexed Q-table.

The reference, :func:`pandas_q_learning`, is Q-learning as the lecture slides write it:
the Q-table is a ``pandas.DataFrame`` (rows = states, columns = actions) read and written
with ``.loc[state, action]``, with the greedy action taken from the row ``.loc[state]``.
Everything else is the same as in ``rlcourse.tabular.td_control.train``:

* the environment, made with ``gymnasium.make`` and reset with the same seed;
* ε-greedy with ties broken uniformly at random, drawing from
  ``numpy.random.default_rng(seed)`` in the same order;
* the linear ε schedule, α, γ and the initial Q values (from one ``TDControlConfig``);
* the number of environment steps, counted across episodes;
* an episode log kept during the loop and turned into a DataFrame at the end.

Because the random draws and the floating-point operations are the same, both runs
visit the same states and end with the same Q-table, bit for bit; the benchmark
checks this and prints it, so the timings compare two working implementations of one
algorithm, not two algorithms.

A timed run is the whole training call, ``gymnasium.make`` through the final
DataFrames. After a short untimed warm-up of both, the two implementations run in turn
``--repeat`` times and each keeps its fastest time (noise from other processes only ever
adds time). Peak memory comes from a separate, untimed run under ``tracemalloc`` (which
slows Python down, so it never overlaps a timed run).

Both implementations step the same Gymnasium environment, whose own cost is a floor
under both times: on FrozenLake-v1 one ``env.step`` through the wrappers that
``gymnasium.make`` adds costs several microseconds, a sizeable share of the package's
loop, so the ratio there is smaller than on the corridor.

Run ``python benchmarks/tabular.py`` (about a minute on two cores), ``--quick`` for a
few-second smoke run, ``--steps N`` to give every environment the same budget.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc

import gymnasium as gym
import numpy as np
import pandas as pd

import rlcourse  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.tabular.td_control import TDControlConfig, train

TARGET_RATIO = 20.0

# Default env-step budgets: both implementations run the same number of steps.
BUDGETS = {"rlcourse/Corridor-v0": 20_000, "FrozenLake-v1": 50_000}
QUICK_BUDGETS = {"rlcourse/Corridor-v0": 2_000, "FrozenLake-v1": 2_000}
MEMORY_STEPS = 2_000      # steps of the separate tracemalloc run
WARMUP_STEPS = 200
EVAL_EPISODES = 1_000     # greedy episodes per FrozenLake table


# --------------------------------------------------------------------------- reference


def pandas_q_learning(env_id: str, config: TDControlConfig, steps: int, seed: int):
    """Q-learning with the Q-table as a DataFrame indexed by ``.loc``, slide style.

    Returns ``(q_table, log)``: the DataFrame Q-table and one row per finished episode.
    """
    env = gym.make(env_id)
    n_states, n_actions = env.observation_space.n, env.action_space.n
    rng = np.random.default_rng(seed)
    q_table = pd.DataFrame(float(config.q_init), index=range(n_states), columns=range(n_actions))

    def epsilon_for(t):
        # ε falls linearly from epsilon_start to epsilon_end over the first steps, then stays
        span = config.exploration_fraction * steps
        if span <= 0 or t >= span:
            return config.epsilon_end
        return config.epsilon_start + (config.epsilon_end - config.epsilon_start) * t / span

    def choose_action(state, epsilon):
        if rng.random() < epsilon:                      # explore
            return int(rng.random() * n_actions)
        state_actions = q_table.loc[state, :]           # exploit: argmax, ties at random
        best = state_actions[state_actions == state_actions.max()].index
        return int(best[0]) if len(best) == 1 else int(best[int(rng.random() * len(best))])

    episode_returns, episode_lengths = [], []
    episode_return, episode_length = 0.0, 0
    state, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for t in range(steps):
        action = choose_action(state, epsilon_for(t))
        next_state, reward, terminated, truncated, _ = env.step(action)
        if terminated:
            q_target = reward
        else:
            q_target = reward + config.gamma * q_table.loc[next_state, :].max()
        q_predict = q_table.loc[state, action]
        q_table.loc[state, action] = q_predict + config.alpha * (q_target - q_predict)
        episode_return += reward
        episode_length += 1
        if terminated or truncated:
            episode_returns.append(episode_return)
            episode_lengths.append(episode_length)
            episode_return, episode_length = 0.0, 0
            state, _ = env.reset()
        else:
            state = next_state
    env.close()
    log = pd.DataFrame({"return": episode_returns, "length": episode_lengths})
    return q_table, log


def rlcourse_q_learning(env_id: str, config: TDControlConfig, steps: int, seed: int):
    """The package's implementation; returns ``(q_table, log)`` like the reference."""
    result = train(env_id, config, steps=steps, seed=seed)
    return result.q_table, result.log


IMPLEMENTATIONS = {"pandas .loc (slides)": pandas_q_learning, "rlcourse": rlcourse_q_learning}


# --------------------------------------------------------------------------- measuring


def timed(fn, *args):
    """Return ``(fn(*args), wall seconds, CPU seconds of this process)``."""
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - start, time.process_time() - cpu_start


def peak_memory(fn, *args) -> int:
    """Peak bytes allocated by Python while ``fn(*args)`` runs (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def greedy_actions(values: np.ndarray) -> np.ndarray:
    return values.argmax(axis=1)


def greedy_success(env_id: str, values: np.ndarray, episodes: int, seed: int) -> float:
    """Share of ``episodes`` greedy episodes that end with a positive reward."""
    env = gym.make(env_id)
    policy = greedy_actions(values)
    successes = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        while True:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            if terminated or truncated:
                successes += reward > 0
                break
    env.close()
    return successes / episodes


def policy_check(env_id: str, table: pd.DataFrame, seed: int, episodes: int) -> str:
    """A line saying whether the greedy policy of ``table`` does its job."""
    values = table.to_numpy(dtype=float)
    if env_id.startswith("rlcourse/Corridor"):
        goal = len(values) - 1
        moves = greedy_actions(values)[:goal]
        ok = bool(np.all(moves == 1))
        arrows = "".join(">" if a == 1 else "<" for a in moves) + "T"
        return f"greedy path {arrows} ({'all right: solved' if ok else 'NOT solved'})"
    rate = greedy_success(env_id, values, episodes, seed=10_000 + seed)
    return f"greedy success {rate:.1%} over {episodes} episodes (random policy: ~1.5%)"


def fmt_bytes(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1024**2 else f"{n / 1024**2:,.1f} MiB"


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per run for every environment (default: per-env budgets "
                             + ", ".join(f"{k}={v}" for k, v in BUDGETS.items()) + ")")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets and no memory pass: a smoke run of a few seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", choices=sorted(BUDGETS),
                        help="environment to run (repeatable; default: all)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per implementation, interleaved; the fastest counts "
                             "(default 3, or 1 with --quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    args = parser.parse_args(argv)
    for flag in ("steps", "repeat"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} = {value} is out of range: it must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    budgets = QUICK_BUDGETS if args.quick else BUDGETS
    env_ids = args.env or list(BUDGETS)
    config = TDControlConfig(method="q-learning")
    memory = not (args.quick or args.no_memory)
    repeat = args.repeat or (1 if args.quick else 3)
    eval_episodes = 200 if args.quick else EVAL_EPISODES
    print(f"Q-learning: rlcourse vs a pandas .loc Q-table; {config}")
    print(f"seed {args.seed}; python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"pandas {pd.__version__}, gymnasium {gym.__version__}")
    print("updates/s = env steps (one Q update each) / wall seconds of the whole training call, "
          f"fastest of {repeat} interleaved run(s)\n")

    rows, ratios = [], {}
    for env_id in env_ids:
        steps = args.steps or budgets[env_id]
        for fn in IMPLEMENTATIONS.values():       # warm-up: imports, caches; untimed
            fn(env_id, config, WARMUP_STEPS, args.seed)
        best = {name: float("inf") for name in IMPLEMENTATIONS}
        best_cpu = dict(best)
        outputs = {}
        for _ in range(repeat):                    # interleaved, so load changes hit both
            for name, fn in IMPLEMENTATIONS.items():
                outputs[name], seconds, cpu = timed(fn, env_id, config, steps, args.seed)
                best[name] = min(best[name], seconds)
                best_cpu[name] = min(best_cpu[name], cpu)
        results = {}
        for name, fn in IMPLEMENTATIONS.items():
            mem = peak_memory(fn, env_id, config, min(steps, MEMORY_STEPS), args.seed) if memory else None
            results[name] = (*outputs[name], best[name], mem)
        ref_table = results["pandas .loc (slides)"][0]
        our_table = results["rlcourse"][0]
        assert isinstance(our_table, pd.DataFrame), "rlcourse's q_table should be a DataFrame"
        diff = float(np.max(np.abs(ref_table.to_numpy(float) - our_table.to_numpy(float))))
        same = "identical" if diff == 0 else f"differ (max |ΔQ| = {diff:.3g})"

        print(f"== {env_id}: {steps:,} env steps each; final Q-tables {same}")
        for name, (table, log, seconds, mem) in results.items():
            rate = steps / seconds
            check = policy_check(env_id, table, args.seed, eval_episodes)
            print(f"  {name:<21} {len(log):>6,} episodes  {check}")
            rows.append({"env": env_id, "implementation": name, "env steps": steps,
                         "seconds": round(seconds, 3), "cpu s": round(best_cpu[name], 3),
                         "updates/s": round(rate),
                         "peak memory": fmt_bytes(mem) if mem is not None else "-", "ratio": ""})
        ratio = results["pandas .loc (slides)"][2] / results["rlcourse"][2]
        rows[-1]["ratio"] = f"{ratio:.1f}x"
        ratios[env_id] = (ratio, best_cpu["pandas .loc (slides)"] / best_cpu["rlcourse"])
        if env_id.startswith("rlcourse/Corridor"):
            print("  rlcourse's Q-table (Result.q_table, a DataFrame):")
            print("    " + our_table.round(3).to_string().replace("\n", "\n    "))
        print()

    print(pd.DataFrame(rows).to_string(index=False))
    if memory:
        print(f"(peak memory: tracemalloc peak of a separate untimed run of "
              f"{MEMORY_STEPS:,} steps or the budget, whichever is smaller)")
    print()
    for env_id, (ratio, cpu_ratio) in ratios.items():
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        print(f"ratio {env_id}: rlcourse is {ratio:.1f}x faster than the pandas .loc version "
              f"({verdict} the {TARGET_RATIO:.0f}x target; CPU-time ratio {cpu_ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
