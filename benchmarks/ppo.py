"""Benchmark: rlcourse's PPO against Stable-Baselines3's on CartPole-v1 and Pendulum-v1, in one run.

Both libraries get the RL Zoo's hyperparameters for PPO (rl-baselines3-zoo,
``hyperparams/ppo.yml``) and its budget, ``n_timesteps`` 1e5 on both tasks, rounded up to
whole iterations (100,096 env steps on CartPole-v1, 102,400 on Pendulum-v1): SB3's
``learn`` always finishes the rollout it has begun, so both libraries get the rounded budget:

* CartPole-v1: n_envs 8, n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98,
  n_epochs 20, ent_coef 0.0, learning_rate lin_0.001, clip_range lin_0.2;
* Pendulum-v1: n_envs 4, n_steps 1024 (batch_size 64, SB3's default), gae_lambda 0.95,
  gamma 0.9, n_epochs 10, ent_coef 0.0, learning_rate 1e-3, clip_range 0.2, use_sde True,
  sde_sample_freq 4.

rlcourse trains with ``PPOConfig.for_env(env_id)``, which holds those numbers ("lin_x"
is x with ``anneal_lr`` / ``anneal_clip``). SB3 gets exactly the Zoo's values (a linear
schedule is a callable of SB3's ``progress_remaining``) on a ``DummyVecEnv`` of
``n_envs`` copies from ``make_vec_env``, SB3's defaults otherwise. One difference remains:
``PPOConfig.for_env`` leaves gSDE (state-dependent exploration; rlcourse's ``use_sde``) off,
so on Pendulum-v1 its policy is a plain Gaussian with a state-independent σ. ``--sb3-no-sde`` runs SB3 the same
way (``use_sde=False``) for a like-for-like comparison; the header says which settings ran.

For each task, seed and library the script measures, the same way for both:

* **steps to the threshold** (475 on CartPole-v1, −250 on Pendulum-v1): the env steps at
  the first evaluation whose mean return reaches it. An evaluation is 10 greedy
  (deterministic) episodes on a separate environment, seeded 0, 1, …, 9, taken after the
  update of the first iteration that ends at or after each multiple of 2,000 env steps:
  rlcourse's ``callback`` runs after each update, SB3's ``_on_rollout_start`` before each
  rollout, that is after the previous update (an iteration is 8 × 32 = 256 steps on
  CartPole-v1 and 4 × 1024 = 4,096 on Pendulum-v1, so Pendulum is evaluated after every
  iteration);
* **steps/s**: environment steps per second of the whole training call (building the
  model and the environments, acting, updating), evaluations left out of the clock;
* **final**, **last 10**, **peak MB**: as in ``benchmarks/a2c.py`` (``common.py``).

Runs alternate between the libraries so that both see the same machine, each in a fresh
spawned process. Both run torch on one thread. The issue's target, checked per task at the
end: no more steps to the threshold than SB3 (medians over seeds) and at least 2× its
steps per second.

Run ``python benchmarks/ppo.py`` (100,000 steps per task, seeds 0 1 2),
``--sb3-no-sde`` for SB3 without gSDE on Pendulum-v1, ``--quick`` for a smoke run,
``--no-sb3`` without Stable-Baselines3 (``pip install stable-baselines3 torch==2.13.0``,
pinning the torch you have).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import Evaluator, print_run, print_table, run_fresh

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}
ZOO_STEPS = 100_000                                        # the Zoo's n_timesteps for both tasks
QUICK_STEPS = {"CartPole-v1": 2_048, "Pendulum-v1": 4_096}  # 8 iterations and 1 iteration
TARGET_SPEEDUP = 2.0


def sb3_settings(env_id: str, no_sde: bool) -> tuple[int, dict]:
    """``(n_envs, keyword arguments of PPO)``: the RL Zoo's values, in SB3's words.

    Strings, not callables, for the schedules (``"lin_0.001"``), so that the header can
    print them; ``sb3_kwargs`` turns them into SB3's callables.
    """
    if env_id == "CartPole-v1":
        return 8, dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                       learning_rate="lin_0.001", clip_range="lin_0.2")
    if env_id == "Pendulum-v1":
        kwargs = dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
                      clip_range=0.2)
        if no_sde:
            return 4, dict(kwargs, use_sde=False)
        return 4, dict(kwargs, use_sde=True, sde_sample_freq=4)
    raise ValueError(f"no RL Zoo settings here for {env_id}")


def linear_schedule(initial: float):
    """The Zoo's ``lin_x``: x times SB3's progress_remaining (1 at the start, 0 at the end)."""
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial
    return schedule


def sb3_kwargs(kwargs: dict) -> dict:
    return {key: linear_schedule(float(value[4:])) if isinstance(value, str) and value.startswith("lin_")
            else value for key, value in kwargs.items()}


def whole_iterations(env_id: str, steps: int) -> int:
    """``steps`` rounded up to whole iterations (n_envs × n_steps), the budget SB3 runs anyway.

    SB3's ``learn`` always collects full rollouts, so it would overshoot a budget that is
    not a multiple; rlcourse stops at the budget. Both get the rounded budget instead.
    """
    n_envs, kwargs = sb3_settings(env_id, False)
    size = n_envs * kwargs["n_steps"]
    return -(-steps // size) * size


def sb3_label(env_id: str, no_sde: bool) -> str:
    if env_id != "Pendulum-v1":
        return "SB3"
    return "SB3 (no gSDE)" if no_sde else "SB3 (gSDE)"


def run_rlcourse(env_id: str, seed: int, steps: int, every: int, episodes: int, no_sde: bool) -> dict:
    from rlcourse.pg import ppo

    evaluator = Evaluator(env_id, every, episodes)
    start = time.perf_counter()
    result = ppo.train(env_id, ppo.PPOConfig.for_env(env_id), steps=steps, seed=seed,
                       callback=lambda env_steps, policy: evaluator.maybe(env_steps, policy.act))
    seconds = time.perf_counter() - start - evaluator.seconds
    return evaluator.summary(evaluator.mean_return(result.policy.act), result.steps, seconds, THRESHOLDS[env_id])


def run_sb3(env_id: str, seed: int, steps: int, every: int, episodes: int, no_sde: bool) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    evaluator = Evaluator(env_id, every, episodes)
    discrete = isinstance(evaluator.env.action_space, gym.spaces.Discrete)

    def act(obs):
        action = model.predict(obs, deterministic=True)[0]
        return int(action) if discrete else action

    class Evaluate(BaseCallback):
        def _on_rollout_start(self) -> None:
            evaluator.maybe(self.num_timesteps, act)

        def _on_step(self) -> bool:
            return True

    n_envs, kwargs = sb3_settings(env_id, no_sde)
    start = time.perf_counter()
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **sb3_kwargs(kwargs))   # the rest: SB3's defaults
    model.learn(total_timesteps=steps, callback=Evaluate())
    evaluator.maybe(model.num_timesteps, act)     # the last update, as rlcourse's callback sees it
    seconds = time.perf_counter() - start - evaluator.seconds
    return evaluator.summary(evaluator.mean_return(act), model.num_timesteps, seconds, THRESHOLDS[env_id])


def describe_settings(env_id: str, no_sde: bool, with_sb3: bool) -> list[str]:
    from rlcourse.pg.ppo import RL_ZOO

    ours = ", ".join(f"{key}={value}" for key, value in RL_ZOO.get(env_id, {}).items())
    lines = [f"  rlcourse: PPOConfig.for_env({env_id!r}): {ours}"
             + ("; gSDE off: a plain Gaussian policy" if env_id == "Pendulum-v1" else "")]
    if with_sb3:
        n_envs, kwargs = sb3_settings(env_id, no_sde)
        theirs = ", ".join(f"{key}={value}" for key, value in kwargs.items())
        note = ""
        if env_id == "Pendulum-v1":
            note = ("; --sb3-no-sde: the Zoo's settings WITHOUT gSDE, a plain Gaussian like ours"
                    if no_sde else "; the Zoo's settings WITH gSDE (rlcourse has none: --sb3-no-sde to match it)")
        lines.append(f"  SB3:      PPO('MlpPolicy', make_vec_env(n_envs={n_envs}, DummyVecEnv), {theirs}{note}")
    return lines


def summarise(rows: list[dict]) -> tuple[float, float]:
    """(median steps to the threshold, with never as infinity; mean steps/s), as print_table counts them."""
    return (statistics.median([row["solved_at"] or float("inf") for row in rows]),
            statistics.fmean(row["steps_per_second"] for row in rows))


def print_target(env_id: str, ours: list[dict], reference: list[dict], steps: int) -> None:
    threshold = THRESHOLDS[env_id]
    (our_median, our_speed), (ref_median, ref_speed) = summarise(ours), summarise(reference)

    def text(median):
        return f"{median:,.0f}" if median != float("inf") else f"> {steps:,}"

    if our_median == ref_median == float("inf"):
        steps_verdict = f"undecided: neither reached {threshold:g} within {steps:,} steps"
    else:
        steps_verdict = "met" if our_median <= ref_median else "NOT met"
    speed_verdict = "met" if our_speed >= TARGET_SPEEDUP * ref_speed else "NOT met"
    print(f"target on {env_id}: steps to {threshold:g} no more than SB3's (median {text(our_median)} vs "
          f"{text(ref_median)}): {steps_verdict}; at least {TARGET_SPEEDUP:g}x SB3's steps per second "
          f"({our_speed / ref_speed:.2f}x): {speed_verdict}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", choices=list(THRESHOLDS), default=list(THRESHOLDS),
                        help="tasks to run (default both)")
    parser.add_argument("--steps", type=int,
                        help="env steps per run on every task, rounded up to whole iterations (default "
                             "100,000, the Zoo's budget; --quick: 2,048 on CartPole-v1, 4,096 on Pendulum-v1)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, tiny budgets, small evaluations")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--sb3-no-sde", action="store_true",
                        help="Pendulum-v1: SB3 without gSDE (a plain Gaussian policy), as rlcourse runs")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, help="default 10 (2 with --quick)")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    episodes = args.eval_episodes or (2 if args.quick else 10)
    if not args.no_sb3:
        try:
            import stable_baselines3   # noqa: F401
        except ImportError:
            parser.error("Stable-Baselines3 is not installed: pip install stable-baselines3 torch==2.13.0 "
                         "(or run with --no-sb3)")

    for env_id in args.envs:
        asked = args.steps or (QUICK_STEPS[env_id] if args.quick else ZOO_STEPS)
        steps = whole_iterations(env_id, asked)
        threshold = THRESHOLDS[env_id]
        sb3 = sb3_label(env_id, args.sb3_no_sde)
        runners = {"rlcourse": run_rlcourse} if args.no_sb3 else {"rlcourse": run_rlcourse, sb3: run_sb3}
        rounded = f" ({asked:,} rounded up to whole iterations)" if steps != asked else ""
        print(f"PPO on {env_id} (threshold {threshold:g}), RL Zoo settings: {steps:,} env steps per run{rounded}, "
              f"seeds {seeds}; evaluation: {episodes} greedy episodes every {args.eval_every:,} env steps",
              flush=True)
        for line in describe_settings(env_id, args.sb3_no_sde, not args.no_sb3):
            print(line, flush=True)
        results = {label: [] for label in runners}
        for seed in seeds:
            for label, runner in runners.items():
                row = run_fresh(runner, env_id, seed, steps, args.eval_every, episodes, args.sb3_no_sde)
                results[label].append(row)
                print_run(label, seed, row, threshold)
        print_table(results, steps, threshold, ours="rlcourse", reference=sb3)
        if not args.no_sb3:
            print_target(env_id, results["rlcourse"], results[sb3], steps)
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
