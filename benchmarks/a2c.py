"""Benchmark: rlcourse's A2C against Stable-Baselines3's on CartPole-v1, in one run.

Both get the RL Zoo's hyperparameters for A2C on CartPole-v1 (rl-baselines3-zoo,
``hyperparams/a2c.yml``: n_envs 8, ent_coef 0.0) and SB3's A2C defaults for everything
else (n_steps 5, γ 0.99, gae_lambda 1.0, lr 7e-4, vf_coef 0.5, max_grad_norm 0.5,
RMSprop with alpha 0.99 and eps 1e-5, separate [64, 64] tanh networks): ``A2CConfig()``
is that configuration. SB3 steps its 8 environments with a ``DummyVecEnv``. For each seed
and each library the script measures, the same way for both:

* **steps to 475**: the env steps at the first evaluation whose mean return reaches 475.
  An evaluation is 10 greedy (deterministic) episodes on a separate CartPole-v1, seeded
  0, 1, …, 9. It is taken after the update of the first iteration that ends at or after
  each multiple of 2,000 env steps (an iteration is 8 × 5 = 40 steps, so exactly at the
  multiples): rlcourse's ``callback`` runs after each update, SB3's ``_on_rollout_start``
  before each rollout, that is after the previous update;
* **steps/s**: environment steps per second of the whole training call (building the
  model and the environments, acting, updating), with the evaluations left out of the
  clock;
* **final**: the same evaluation of the model at the end of the budget, and **last 10**,
  the mean of the last ten evaluations;
* **peak MB**: the peak resident memory of the process that ran it (each run has a
  fresh, spawned process).

Runs alternate between the libraries so that both see the same machine conditions. Both
run torch on one thread (``torch.set_num_threads(1)``; rlcourse does it itself).

Run ``python benchmarks/a2c.py`` (500,000 steps, seeds 0 1 2: about ten minutes on two
cores), ``--quick`` for a smoke run, ``--no-sb3`` without Stable-Baselines3 (install it
with ``pip install stable-baselines3 torch==2.13.0``, pinning the torch you have).
"""

from __future__ import annotations

import argparse
import time

from common import Evaluator, print_run, print_table, run_fresh

ENV_ID = "CartPole-v1"
SOLVED = 475.0
N_ENVS = 8


def run_rlcourse(seed: int, steps: int, every: int, episodes: int) -> dict:
    from rlcourse.pg import a2c

    evaluator = Evaluator(ENV_ID, every, episodes)
    start = time.perf_counter()
    result = a2c.train(ENV_ID, a2c.A2CConfig(), steps=steps, seed=seed,
                       callback=lambda env_steps, policy: evaluator.maybe(env_steps, policy.act))
    seconds = time.perf_counter() - start - evaluator.seconds
    return evaluator.summary(evaluator.mean_return(result.policy.act), result.steps, seconds, SOLVED)


def run_sb3(seed: int, steps: int, every: int, episodes: int) -> dict:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    evaluator = Evaluator(ENV_ID, every, episodes)

    def act(obs):
        return int(model.predict(obs, deterministic=True)[0])

    class Evaluate(BaseCallback):
        def _on_rollout_start(self) -> None:
            evaluator.maybe(self.num_timesteps, act)

        def _on_step(self) -> bool:
            return True

    start = time.perf_counter()
    env = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed, vec_env_cls=DummyVecEnv)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")   # the rest: SB3's defaults
    model.learn(total_timesteps=steps, callback=Evaluate())
    evaluator.maybe(model.num_timesteps, act)     # the last update, as rlcourse's callback sees it
    seconds = time.perf_counter() - start - evaluator.seconds
    return evaluator.summary(evaluator.mean_return(act), model.num_timesteps, seconds, SOLVED)


RUNNERS = {"rlcourse": run_rlcourse, "SB3": run_sb3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="env steps per run (default 500,000; 4,000 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 4,000 steps, small evaluations")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, help="default 10 (2 with --quick)")
    args = parser.parse_args(argv)
    steps = args.steps or (4_000 if args.quick else 500_000)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    episodes = args.eval_episodes or (2 if args.quick else 10)
    labels = [label for label in RUNNERS if not (args.no_sb3 and label == "SB3")]
    if not args.no_sb3:
        try:
            import stable_baselines3   # noqa: F401
        except ImportError:
            parser.error("Stable-Baselines3 is not installed: pip install stable-baselines3 torch==2.13.0 "
                         "(or run with --no-sb3)")

    print(f"A2C on {ENV_ID}, RL Zoo settings ({N_ENVS} envs x 5 steps per update): {steps:,} env steps per "
          f"run, seeds {seeds}; evaluation: {episodes} greedy episodes every {args.eval_every:,} env steps",
          flush=True)
    results = {label: [] for label in labels}
    for seed in seeds:
        for label in labels:
            row = run_fresh(RUNNERS[label], seed, steps, args.eval_every, episodes)
            results[label].append(row)
            print_run(label, seed, row, SOLVED)
    print_table(results, steps, SOLVED, ours="rlcourse", reference="SB3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
