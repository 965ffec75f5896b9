"""Benchmark: rlcourse's DQN against Stable-Baselines3's on CartPole-v1, in one run.

The comparison runs both libraries with the same settings, the RL Zoo's hyperparameters
for DQN on CartPole-v1 (rl-baselines3-zoo, ``hyperparams/dqn.yml``: lr 2.3e-3, batch 64,
buffer 100,000, learning_starts 1,000, γ 0.99, target_update_interval 10, train_freq 256,
gradient_steps 128, exploration_fraction 0.16, exploration_final_eps 0.04, net_arch
[256, 256]; the Huber loss and gradient-norm clipping at 10 are SB3's defaults), which
are ``rlcourse.value.dqn.RL_ZOO``. A third row, ``rlcourse (defaults)``, trains
rlcourse's default config, which differs from the RL Zoo's where the first line of the
output says (γ 0.98, the square loss, 64 updates per round, a step size falling to 0):
it is rlcourse alone, not a comparison between the libraries, because SB3's DQN computes
the Huber loss with no option to change it. For each seed and each row the script
measures, the same way for all:

* **steps to 475**: the env steps at the first evaluation whose mean return reaches 475.
  An evaluation is 10 greedy (deterministic) episodes on a separate CartPole-v1, seeded
  0, 1, …, 9, every 2,000 env steps;
* **steps/s**: environment steps per second of training (acting, storing, updating),
  over the whole budget, with the evaluations left out of the clock;
* **final**: the same evaluation of the model as it is at the end of the budget (with the
  RL Zoo settings both libraries tend to solve CartPole and then forget it), and
  **last 10**, the mean of the last ten evaluations;
* **peak MB**: the peak resident memory of the process that ran it (each run has a
  fresh process).

Runs alternate between the libraries so that both see the same machine conditions.
rlcourse acts on one thread and updates on ``--threads`` (2 by default: on an idle
two-core machine the updates are about 1.25× faster); SB3 runs with
``torch.set_num_threads(--sb3-threads)``, 1 by default, because with 2 it was about 6%
slower here.

Run ``python benchmarks/dqn.py`` (100,000 steps, seeds 0 1 2: about 15 minutes on two
idle cores), ``--quick`` for a smoke run, ``--no-sb3`` without Stable-Baselines3 (install
it with ``pip install stable-baselines3 torch==2.13.0``, pinning the torch you have).
Whether the final models keep what they learned is a question for many seeds:
``rlcourse train dqn`` over ten seeds is in the DQN section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses

from common import Evaluator, print_run, print_table, run_fresh

ENV_ID = "CartPole-v1"
SOLVED = 475.0


class QAct:
    """The greedy action of a Q-network."""

    def __init__(self, network):
        self.network = network

    def __call__(self, obs) -> int:
        import torch

        with torch.no_grad():
            return int(self.network(torch.as_tensor(obs)).argmax())


def run_rlcourse(seed: int, steps: int, every: int, episodes: int, defaults: bool, threads: int) -> dict:
    from rlcourse.value import dqn

    config = dqn.DQNConfig() if defaults else dqn.DQNConfig(**dqn.RL_ZOO)
    evaluator = Evaluator(ENV_ID, every, episodes)
    result = dqn.train(ENV_ID, config, steps=steps, seed=seed, threads=threads,
                       callback=lambda env_steps, online: evaluator.maybe(env_steps, QAct(online)))
    final = evaluator.mean_return(QAct(result.policy))
    return evaluator.summary(final, steps, result.timing["seconds"], SOLVED)


def run_sb3(seed: int, steps: int, every: int, episodes: int, defaults: bool, threads: int) -> dict:
    import time

    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from rlcourse.value.dqn import RL_ZOO

    torch.set_num_threads(threads)
    zoo = dict(RL_ZOO)
    hidden = zoo.pop("hidden")
    zoo["learning_rate"] = zoo.pop("lr")
    if (zoo.pop("loss"), zoo.pop("lr_schedule")) != ("huber", "constant"):
        raise ValueError("SB3's DQN runs the Huber loss at a constant step size")
    model = DQN("MlpPolicy", gym.make(ENV_ID), policy_kwargs=dict(net_arch=list(hidden)), seed=seed,
                device="cpu", **zoo)
    evaluator = Evaluator(ENV_ID, every, episodes)

    def act(obs):
        return int(model.predict(obs, deterministic=True)[0])

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            evaluator.maybe(self.num_timesteps, act)
            return True

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Evaluate())
    seconds = time.perf_counter() - start - evaluator.seconds
    return evaluator.summary(evaluator.mean_return(act), steps, seconds, SOLVED)


RUNNERS = {"rlcourse (RL Zoo)": (run_rlcourse, False), "SB3 (RL Zoo)": (run_sb3, False),
           "rlcourse (defaults)": (run_rlcourse, True)}


def defaults_note() -> str:
    from rlcourse.value.dqn import RL_ZOO, DQNConfig

    zoo = DQNConfig(**RL_ZOO)
    differ = {f.name: getattr(DQNConfig(), f.name) for f in dataclasses.fields(DQNConfig)
              if getattr(DQNConfig(), f.name) != getattr(zoo, f.name)}
    return ", ".join(f"{k}={v}" for k, v in differ.items()) or "none"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="env steps per run (default 100,000; 6,000 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 6,000 steps, small evaluations")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--no-defaults", action="store_true", help="skip the rlcourse (defaults) row")
    parser.add_argument("--threads", type=int, default=2, help="rlcourse's update threads (default 2)")
    parser.add_argument("--sb3-threads", type=int, default=1,
                        help="SB3's torch threads (default 1: on two cores it was 6%% slower with 2)")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, help="default 10 (2 with --quick)")
    args = parser.parse_args(argv)
    steps = args.steps or (6_000 if args.quick else 100_000)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    episodes = args.eval_episodes or (2 if args.quick else 10)
    labels = [label for label in RUNNERS
              if not (args.no_sb3 and label.startswith("SB3")) and not (args.no_defaults and "defaults" in label)]
    if not args.no_sb3:
        try:
            import stable_baselines3   # noqa: F401
        except ImportError:
            parser.error("Stable-Baselines3 is not installed: pip install stable-baselines3 torch==2.13.0 "
                         "(or run with --no-sb3)")

    print(f"DQN on {ENV_ID}: {steps:,} env steps per run, seeds {seeds}; evaluation: {episodes} greedy "
          f"episodes every {args.eval_every:,} env steps; threads: rlcourse updates {args.threads}, SB3 "
          f"{args.sb3_threads}; the RL Zoo rows: both libraries with the RL Zoo's settings; rlcourse (defaults) "
          f"differs from them in: {defaults_note()}", flush=True)
    results = {label: [] for label in labels}
    for seed in seeds:
        for label in labels:
            runner, defaults = RUNNERS[label]
            threads = args.sb3_threads if runner is run_sb3 else args.threads
            row = run_fresh(runner, seed, steps, args.eval_every, episodes, defaults, threads)
            results[label].append(row)
            print_run(label, seed, row, SOLVED)
    print_table(results, steps, SOLVED, ours="rlcourse (RL Zoo)", reference="SB3 (RL Zoo)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
