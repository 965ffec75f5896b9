"""Benchmark: how close PPO comes to this machine's ceiling, and to SB3, in env steps per second.

For each task, with ``PPOConfig.for_env``'s settings (the RL Zoo's) and one torch thread:

* **env alone**: the task's vector environment (``num_envs`` copies, as PPO makes them)
  stepped with random actions: no training can collect faster;
* **env + policy**: the same, with the actions drawn by the untrained policy, as rollout
  collection draws them (with the observation normaliser, action clipping and reward
  scaling the settings ask for): the speed PPO would reach if its update, the critic's
  pass over the batch included, cost nothing;
* **rlcourse PPO** and **SB3 PPO** (the same settings in SB3's words, through
  ``mujoco_box2d.sb3_seed``): a whole training run of ``--steps`` env steps, in one
  process each, the libraries in turn; steps per second of the training call;
* **rlcourse PPO, compiled** (``--compiled``): the same run with ``compile_loss=True``
  (``torch.compile`` of the minibatch loss), its compiling counted in the run's time.

It prints each figure, rlcourse's share of the two ceilings, and rlcourse / SB3. Run it
with nothing else on the machine (``--repeats`` runs the libraries alternately and keeps
each one's best, the figure least disturbed by other work)::

    python benchmarks/ceiling.py --envs CartPole-v1 HalfCheetah-v5 LunarLander-v3
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import gymnasium as gym
import numpy as np
import torch
from mujoco_box2d import SB3Job, machine, sb3_seed, whole_iterations

import rlcourse
from rlcourse.pg import ppo
from rlcourse.pg.rollout import Rollout

STEPS = {"CartPole-v1": 20_480, "HalfCheetah-v5": 20_480, "LunarLander-v3": 32_768}


def env_alone(env_id: str, config, steps: int, seed: int = 0) -> float:
    """Env steps per second of the vector environment with random actions."""
    rollout = Rollout(env_id, config.num_envs, seed, vectorization=config.vectorization)
    envs = rollout.envs
    start = time.perf_counter()
    for _ in range(steps // config.num_envs):
        envs.step(envs.action_space.sample())
    seconds = time.perf_counter() - start
    rollout.close()
    return steps / seconds


def env_and_policy(env_id: str, config, steps: int, seed: int = 0) -> float:
    """Env steps per second when the untrained policy draws the actions: the work of
    ``Rollout.collect`` without its bookkeeping (observations normalised and counted, actions
    clipped to the bounds, rewards scaled, where ``config`` asks for them). The critic is left
    out: rlcourse values a batch's states in one pass after collecting it (``gae_batch``)."""
    policy, _ = ppo.make_networks("ppo", env_id, None, config.hidden, config.log_std_init, config.activation,
                                  config.ortho_init, **ppo.gaussian_options(config))
    rollout = Rollout.for_config(env_id, config, seed, None, "cpu")
    envs, obs, scaler = rollout.envs, rollout.obs, rollout.reward_scaler
    space = rollout.single_action_space
    bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps // config.num_envs):
            tensor = torch.as_tensor(rollout.policy_input(obs), dtype=torch.float32)
            action, _ = policy.sample(tensor)
            action = action.numpy() if bounds is None else np.clip(action.numpy(), *bounds)
            obs, reward, term, trunc, _ = envs.step(action)
            if rollout.obs_normalizer is not None:
                rollout.obs_normalizer.update(obs)
            if scaler is not None:
                scaler(reward, term | trunc)
    seconds = time.perf_counter() - start
    rollout.close()
    return steps / seconds


def rlcourse_ppo(env_id: str, config, steps: int, seed: int = 0) -> float:
    """rlcourse's steps per second of the training call (compiling included, if ``config.compile_loss``)."""
    result = rlcourse.train("ppo", env_id, steps=steps, seed=seed, config=config)
    return result.steps / result.timing["seconds"]


def sb3_ppo(env_id: str, config, steps: int, seed: int = 0) -> float:
    """SB3's steps per second of the training call (``mujoco_box2d.sb3_seed``, one evaluation episode after)."""
    job = SB3Job(env_id, config, seed, steps, episodes=1, threshold=float("inf"), grid=(float(steps),))
    return sb3_seed(job)["steps_per_second"]


def measure(env_id: str, steps: int | None, repeats: int, with_sb3: bool, compiled: bool = False) -> dict:
    config = ppo.PPOConfig.for_env(env_id)
    steps = whole_iterations(config, steps or STEPS.get(env_id, 20_480))
    row = {"env": env_id, "steps": steps,
           "env alone": max(env_alone(env_id, config, steps) for _ in range(repeats)),
           "env + policy": max(env_and_policy(env_id, config, steps) for _ in range(repeats))}
    ours, theirs, ours_compiled = [], [], []
    for _ in range(repeats):  # alternately, so that a change of load falls on both
        ours.append(rlcourse_ppo(env_id, config, steps))
        if with_sb3:
            theirs.append(sb3_ppo(env_id, config, steps))
        if compiled:
            ours_compiled.append(rlcourse_ppo(env_id, dataclasses.replace(config, compile_loss=True), steps))
    row["rlcourse PPO"] = max(ours)
    row["SB3 PPO"] = max(theirs) if theirs else float("nan")
    row["compiled"] = max(ours_compiled) if ours_compiled else float("nan")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(STEPS))
    parser.add_argument("--steps", type=int, help="env steps per measurement (default: per task, whole iterations)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements of each, the best kept (default 1)")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--compiled", action="store_true", help="also rlcourse with compile_loss=True")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gym.logger.min_level = 40
    print(f"PPO with PPOConfig.for_env's settings, one torch thread; {machine()}", flush=True)
    extra = (" rlcourse PPO, compiled | compiled / SB3 |", "---|---|") if args.compiled else ("", "")
    print("| task | steps | env alone | env + policy | rlcourse PPO | SB3 PPO | rlcourse / SB3 | "
          "rlcourse / env + policy |" + extra[0])
    print("|---|---|---|---|---|---|---|---|" + extra[1])
    for env_id in args.envs:
        row = measure(env_id, args.steps, args.repeats, not args.no_sb3, args.compiled)
        ratio = row["rlcourse PPO"] / row["SB3 PPO"]
        compiled = f" {row['compiled']:,.0f} | {row['compiled'] / row['SB3 PPO']:.2f}× |" if args.compiled else ""
        print(f"| {env_id} | {row['steps']:,} | {row['env alone']:,.0f} | {row['env + policy']:,.0f} | "
              f"{row['rlcourse PPO']:,.0f} | {row['SB3 PPO']:,.0f} | {ratio:.2f}× | "
              f"{row['rlcourse PPO'] / row['env + policy']:.0%} |{compiled}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
