"""Benchmark: PPO (or TRPO, A2C, DQN) on the field's tasks, MuJoCo and Box2D, over seeds, side by side with SB3.

The tasks and their settings: HalfCheetah-v5, Hopper-v5, Walker2d-v5 (the ``mujoco`` extra)
and LunarLander-v3 (the ``box2d`` extra), with the algorithm's ``for_env`` (``PPOConfig``,
``TRPOConfig``, ``A2CConfig``, ``DQNConfig``: the RL Zoo's tuned values,
``rl-baselines3-zoo/hyperparams/ALGO.yml``; observation normalisation and reward scaling on
for the MuJoCo tasks, as the Zoo's ``normalize: true``) and the Zoo's budget,
1,000,000 env steps, rounded up to whole iterations (SB3's ``learn`` always finishes the
rollout it has begun).

For each task:

* **rlcourse**, through :func:`rlcourse.seeds.train_and_judge` (a seed of
  :func:`rlcourse.seeds.run_seeds`): one spawned process per seed, one torch thread each;
  every final model judged on ``--eval-episodes`` greedy episodes seeded from
  :func:`rlcourse.seeds.eval_seed` (a block per seed, no seed training used), with its saved
  observation statistics; the interquartile
  mean of the final returns with its 95% stratified bootstrap interval and the solved
  fraction (the environment's ``reward_threshold``: 4,800 HalfCheetah, 3,800 Hopper, 200
  LunarLander; Walker2d-v5 has none, 3,000 here);
* **SB3** (``--no-sb3`` to skip; TRPO is sb3-contrib's): the same settings in SB3's words
  (:func:`sb3_settings`, :func:`sb3_trpo_settings`, :func:`sb3_a2c_settings`,
  :func:`sb3_dqn_settings`; ``VecNormalize(gamma=γ)`` where the config normalises, the
  networks' size, activation, initialisation and log σ; a config SB3 cannot run is refused
  before anything trains), the same budget, the same evaluation (VecNormalize's statistics
  frozen), one process per seed;
* the runs go to ``--workers`` processes at a time seed by seed, each seed's rlcourse run then
  its SB3 run, so that both libraries share the machine alike; each run's numbers are printed
  as it finishes and appended to a journal (``--journal``, by default beside ``--csv``); an
  interrupted benchmark started again with the same command reads the runs its journal holds
  and runs only the rest;
* the difference of the two IQMs with its interval, and each library's env steps per second;
* LunarLander-v3: how many seeds meet the Hugging Face course's bar, mean − std ≥ 200 over
  the evaluation episodes (``--eval-episodes 10`` is the course's count);
* ``--curves FILE``: both libraries' training curves (the mean return of the last 100
  training episodes, on a grid of 50 points) and steps to the threshold in training;
  ``--plot FILE.png --curves FILE`` draws them (the IQM over seeds with a pointwise 95%
  bootstrap band) without training again.

``--vectorization async`` steps rlcourse's environments in worker processes (the same
numbers, other speed). ``--set key=value`` changes the config of both libraries (e.g. ``--algo
trpo --set max_kl=0.02``). ``--quick`` is a smoke run: one seed,
2,048 steps, two evaluation episodes.

(Not ``benchmarks/mujoco.py``: a script's folder comes first on ``sys.path``, and a file of
that name would stand in for the ``mujoco`` package in every process it starts.)

Run (next to nothing else on the machine; ``--workers`` up to the cores)::

    python benchmarks/mujoco_box2d.py --envs HalfCheetah-v5 Hopper-v5 Walker2d-v5 --seeds 5 --workers 2 --csv DIR
    python benchmarks/mujoco_box2d.py --envs LunarLander-v3 --seeds 5 --eval-episodes 10 --csv DIR
    python benchmarks/mujoco_box2d.py --algo trpo --envs HalfCheetah-v5 --seeds 5 --csv FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rlcourse import stats
from rlcourse.algorithms import ALGORITHMS
from rlcourse.config import apply_overrides
from rlcourse.seeds import SeedJob, curve_grid, curves_table, eval_seed, run_in_workers, table_band, train_and_judge

TASKS = {"HalfCheetah-v5": 4_800.0, "Hopper-v5": 3_800.0, "Walker2d-v5": 3_000.0, "LunarLander-v3": 200.0}
ZOO_STEPS = 1_000_000  # the Zoo's PPO, TRPO and A2C n_timesteps for all four
ZOO_DQN_STEPS = 100_000  # the Zoo's DQN n_timesteps for LunarLander
QUICK_STEPS = 2_048
COURSE_BAR = ("LunarLander-v3", 200.0)  # the Hugging Face Deep RL course: mean - std >= 200


def whole_iterations(config, steps: int) -> int:
    """``steps`` rounded up to whole iterations of ``num_envs × n_steps``, the budget SB3 runs anyway."""
    size = config.num_envs * getattr(config, "n_steps", 1)
    return -(-steps // size) * size


def rlcourse_config(algo: str, env_id: str, sets: list[str], vectorization: str):
    config = apply_overrides(ALGORITHMS[algo].defaults_for(env_id), dict(item.split("=", 1) for item in sets))
    return dataclasses.replace(config, vectorization=vectorization) if hasattr(config, "vectorization") else config


def sb3_policy_kwargs(config) -> dict:
    """The networks of a PPO, TRPO or A2C config in SB3's words: separate π and V networks of
    ``config.hidden``, their activation and initialisation (TRPO and A2C: tanh and orthogonal, as
    SB3's defaults), the initial log σ and gSDE."""
    import torch

    return dict(
        net_arch=dict(pi=list(config.hidden), vf=list(config.hidden)),
        activation_fn={"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[getattr(config, "activation", "tanh")],
        ortho_init=getattr(config, "ortho_init", True),
        log_std_init=config.log_std_init,
    )


def sb3_normalize(config) -> dict | None:
    """VecNormalize's keyword arguments where ``config`` normalises observations or rewards, else None."""
    if not (config.normalize_obs or config.normalize_reward):
        return None
    return dict(norm_obs=config.normalize_obs, norm_reward=config.normalize_reward, clip_obs=config.clip_obs,
                clip_reward=config.clip_reward, gamma=config.gamma)


def refuse_unlike(algo: str, config, unlike: dict) -> None:
    """A ValueError naming the first field of ``config`` that SB3's ``algo`` cannot run as rlcourse does."""
    for field, value in unlike.items():
        if getattr(config, field) != value:
            raise ValueError(f"SB3's {algo} cannot run {field} = {getattr(config, field)!r} (it has {value!r} only)")


def sb3_settings(config) -> dict:
    """Keyword arguments of SB3's PPO: a ``PPOConfig``'s numbers in SB3's words."""
    refuse_unlike("PPO", config, {"squash_output": False, "surrogate": "clip"})
    lr, clip = config.lr, config.clip_range
    return dict(
        n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma,
        gae_lambda=config.gae_lambda, learning_rate=(lambda p: p * lr) if config.anneal_lr else lr,
        clip_range=(lambda p: p * clip) if config.anneal_clip else clip, ent_coef=config.ent_coef,
        vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm, target_kl=config.target_kl,
        clip_range_vf=config.clip_range_vf, normalize_advantage=config.normalize_advantages,
        use_sde=config.use_sde, sde_sample_freq=config.sde_sample_freq, policy_kwargs=sb3_policy_kwargs(config),
    )


def sb3_a2c_settings(config) -> dict:
    """Keyword arguments of SB3's A2C: an ``A2CConfig``'s numbers in SB3's words (RMSprop with the config's
    α and ε; SB3 has separate networks only, and standardises advantages where rlcourse divides by their RMS)."""
    import torch

    refuse_unlike("A2C", config, {"squash_output": False, "shared": False, "normalize_advantages": False})
    lr = config.lr
    policy_kwargs = dict(sb3_policy_kwargs(config), optimizer_class=torch.optim.RMSprop,
                         optimizer_kwargs=dict(alpha=config.rms_alpha, eps=config.rms_eps, weight_decay=0))
    return dict(n_steps=config.n_steps, gamma=config.gamma, gae_lambda=config.gae_lambda,
                learning_rate=(lambda p: p * lr) if config.anneal_lr else lr, ent_coef=config.ent_coef,
                vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm, use_sde=config.use_sde,
                sde_sample_freq=config.sde_sample_freq, normalize_advantage=False, policy_kwargs=policy_kwargs)


def sb3_trpo_settings(config, action_dims: int) -> dict:
    """Keyword arguments of sb3-contrib's TRPO: a ``TRPOConfig``'s numbers in its words (cg_max_steps
    the CG iterations, the line search's shrinking factor and tries, the critic's Adam step, minibatch
    and passes; no sub-sampling). sb3-contrib averages a Gaussian's KL over the action's
    ``action_dims`` dimensions (1 for discrete actions), so its target_kl and cg_damping are δ and λ
    divided by them (rlcourse.pg.trpo's docstring)."""
    refuse_unlike("TRPO", config, {"squash_output": False, "method": "trpo"})
    return dict(n_steps=config.n_steps, batch_size=config.critic_batch_size, gamma=config.gamma,
                gae_lambda=config.gae_lambda, learning_rate=config.critic_lr, n_critic_updates=config.critic_epochs,
                cg_max_steps=config.cg_iters, cg_damping=config.cg_damping / action_dims,
                target_kl=config.max_kl / action_dims,
                line_search_shrinking_factor=config.backtrack_coef, line_search_max_iter=config.backtrack_iters,
                normalize_advantage=config.normalize_advantages, sub_sampling_factor=1, use_sde=config.use_sde,
                sde_sample_freq=config.sde_sample_freq, policy_kwargs=sb3_policy_kwargs(config))


def sb3_dqn_settings(config) -> dict:
    """Keyword arguments of SB3's DQN: a ``DQNConfig``'s numbers in SB3's words (SB3 has only the Huber
    loss, a constant step size, one environment's exploration and no double or dueling network)."""
    refuse_unlike("DQN", config,
                  {"loss": "huber", "lr_schedule": "constant", "double": False, "dueling": False, "num_envs": 1})
    names = ("batch_size", "buffer_size", "learning_starts", "gamma", "target_update_interval", "tau", "train_freq",
             "gradient_steps", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
             "max_grad_norm")
    return dict(learning_rate=config.lr, policy_kwargs=dict(net_arch=list(config.hidden)),
                **{name: getattr(config, name) for name in names})


@dataclasses.dataclass(frozen=True)
class SB3Job:
    env_id: str
    config: object
    seed: int
    steps: int
    episodes: int
    threshold: float
    grid: tuple[float, ...]
    window: int = 100
    algo: str = "ppo"


def sb3_env(env_id: str, num_envs: int, seed: int):
    """SB3's ``DummyVecEnv`` of ``num_envs`` copies, *without* a render mode, as rlcourse trains.

    ``make_vec_env`` makes every environment with ``render_mode="rgb_array"`` unless told
    otherwise, and LunarLander then adds a Box2D body (a flame particle, drawn, not felt)
    for every engine firing: the physics slows down as the policy learns to fly, about 6×
    by 250,000 steps here.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    return make_vec_env(env_id, n_envs=num_envs, seed=seed, vec_env_cls=DummyVecEnv, env_kwargs={"render_mode": None})


def training_curve(ends: list[tuple[int, float]], job: SB3Job) -> tuple[np.ndarray, float]:
    """SB3's episodes (env step at its end, return) as run_seeds makes rlcourse's curve: the mean
    of the last ``window`` returns on ``job.grid``, and the first step it reaches the threshold."""
    if not ends:
        return np.full(len(job.grid), np.nan), float("nan")
    steps, returns = (np.asarray(column, dtype=float) for column in zip(*ends))
    curve = stats.trailing_mean(returns, np.ones_like(returns), job.window)
    return stats.on_grid(steps, curve, job.grid), stats.steps_to_threshold(steps, curve, job.threshold)


SB3_SETTINGS = {"ppo": sb3_settings, "a2c": sb3_a2c_settings, "dqn": sb3_dqn_settings}


def sb3_kwargs(algo: str, config, env_id: str) -> dict:
    """Keyword arguments of SB3's ``algo`` for ``config`` on ``env_id`` (TRPO's depend on the action's dimensions)."""
    if algo == "trpo":
        import gymnasium as gym

        probe = gym.make(env_id)
        space = probe.action_space
        probe.close()
        return sb3_trpo_settings(config, int(np.prod(space.shape)) if isinstance(space, gym.spaces.Box) else 1)
    return SB3_SETTINGS[algo](config)


def sb3_class(algo: str):
    """SB3's class for ``algo`` (TRPO: sb3-contrib's)."""
    if algo == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def sb3_seed(job: SB3Job) -> dict:
    """Train SB3's PPO (TRPO, A2C, DQN) with ``job.config``'s settings; judge the final model as run_seeds judges
    ours."""
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    kwargs = sb3_kwargs(job.algo, job.config, job.env_id)
    normalize = None if job.algo == "dqn" else sb3_normalize(job.config)
    start = time.perf_counter()
    env = sb3_env(job.env_id, job.config.num_envs, job.seed)
    if normalize is not None:
        env = VecNormalize(env, **normalize)
    model = sb3_class(job.algo)("MlpPolicy", env, seed=job.seed, device="cpu", **kwargs)
    ends: list[tuple[int, float]] = []  # (env steps, return) of each training episode, from SB3's Monitor

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            ends.extend((self.num_timesteps, info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info)
            return True

    model.learn(total_timesteps=job.steps, callback=Episodes())
    seconds = time.perf_counter() - start
    curve, reached = training_curve(ends, job)
    if normalize is not None:
        env.training = False  # frozen statistics, as rlcourse's saved ones
    evaluation, returns = gym.make(job.env_id), []
    for episode in range(job.episodes):
        obs, _ = evaluation.reset(seed=eval_seed(job.seed, job.episodes) + episode)
        total, done = 0.0, False
        while not done:
            seen = env.normalize_obs(obs) if normalize is not None else obs
            action = model.predict(seen, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = evaluation.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return {"seed": job.seed, "final_return": float(np.mean(returns)), "final_std": float(np.std(returns)),
            "steps_to_threshold": reached, "env_steps": model.num_timesteps, "seconds": seconds,
            "steps_per_second": model.num_timesteps / seconds, "curve": curve}


def machine() -> str:
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores (load average {load}), Python {platform.python_version()}, torch {torch.__version__}"


def summary_line(label: str, runs: pd.DataFrame, threshold: float) -> str:
    row = stats.summarise(runs["final_return"].to_numpy(float), threshold)
    speed = float((runs["env_steps"] / runs["seconds"]).mean())
    return (f"{label}: IQM {row['iqm']:,.1f}, 95% CI [{row['ci_low']:,.1f}, {row['ci_high']:,.1f}], "
            f"mean {row['mean']:,.1f}, solved (>= {threshold:g}) {row['solved']}/{row['runs']}, {speed:,.0f} steps/s")


def curves_frame(env_id: str, library: str, grid, curves: np.ndarray, seeds) -> pd.DataFrame:
    """One library's ``[seeds, grid]`` curves on one task: a row per grid point, a column per seed."""
    return curves_table(grid, curves, seeds).assign(env=env_id, library=library)


def library_of(job) -> str:
    return "SB3" if isinstance(job, SB3Job) else "rlcourse"


def run_one(job) -> dict:
    """One worker's run: an rlcourse seed (a ``SeedJob``) or an SB3 one (an ``SB3Job``)."""
    return sb3_seed(job) if isinstance(job, SB3Job) else train_and_judge(job)


def journal_key(job) -> str:
    """What makes two runs the same run: library, task, algorithm, budget, seed, evaluation and settings."""
    episodes = job.episodes if isinstance(job, SB3Job) else job.eval_episodes
    return json.dumps([library_of(job), job.env_id, job.algo, job.steps, job.seed, episodes, repr(job.config)])


def read_journal(path: str | None) -> dict[str, dict]:
    """The finished runs a journal holds, by :func:`journal_key` (a line cut short by a kill is left out)."""
    if not path or not Path(path).exists():
        return {}
    done = {}
    for line in Path(path).read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[entry["key"]] = entry["row"]
    return done


def append_journal(path: str, job, row: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    entry = {"key": journal_key(job), "row": {**row, "curve": np.asarray(row["curve"], dtype=float).tolist()}}
    with open(path, "a+b") as journal:  # appends go to the end wherever the reads were
        if journal.seek(0, os.SEEK_END) > 0:
            journal.seek(-1, os.SEEK_END)
            if journal.read(1) != b"\n":  # a line cut short by a kill: start a fresh one
                journal.write(b"\n")
        journal.write(json.dumps(entry, default=lambda x: x.item()).encode() + b"\n")


def run_task(env_id: str, args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both libraries on ``env_id``: (one row per seed and library, the training curves).

    The runs go to the workers seed by seed, rlcourse's then SB3's, so that each library's
    runs share the machine alike; each finished run is appended to ``args.journal``, and a
    run the journal already holds is read from it instead of run again."""
    threshold = TASKS[env_id]
    config = rlcourse_config(args.algo, env_id, args.set, args.vectorization)
    budget = ZOO_DQN_STEPS if args.algo == "dqn" else ZOO_STEPS
    steps = whole_iterations(config, args.steps or (QUICK_STEPS if args.quick else budget))
    print(f"{args.algo} on {env_id}: {steps:,} steps, seeds {args.seeds}, {args.eval_episodes} evaluation episodes "
          f"per seed, threshold {threshold:g}; {machine()}\n  rlcourse config: {config}", flush=True)
    grid = curve_grid(steps)
    libraries = ["rlcourse"] + ([] if args.no_sb3 else ["SB3"])
    jobs = [SeedJob(args.algo, env_id, config, steps, seed, args.eval_episodes, threshold, 100, grid)
            if library == "rlcourse" else SB3Job(env_id, config, seed, steps, args.eval_episodes, threshold, grid,
                                                 algo=args.algo)
            for seed in args.seeds for library in libraries]
    journal = read_journal(args.journal)
    rows = {i: journal[journal_key(job)] for i, job in enumerate(jobs) if journal_key(job) in journal}
    if rows:
        print(f"  {len(rows)} of {len(jobs)} runs read from {args.journal}, finished by an earlier invocation",
              flush=True)
    todo = [i for i in range(len(jobs)) if i not in rows]

    def finished(k: int, row: dict) -> None:
        job = jobs[todo[k]]
        rows[todo[k]] = row
        if args.journal:
            append_journal(args.journal, job, row)
        print(f"  {library_of(job)} seed {job.seed}: final greedy return {row['final_return']:,.1f}, "
              f"{row['env_steps'] / row['seconds']:,.0f} env steps/s", flush=True)

    run_in_workers(run_one, [jobs[i] for i in todo], args.workers, on_done=finished)
    frames, curves = [], []
    for library in libraries:
        picked = [dict(rows[i]) for i, job in enumerate(jobs) if library_of(job) == library]
        curve = np.stack([np.asarray(row.pop("curve"), dtype=float) for row in picked])
        frames.append(pd.DataFrame(picked).assign(library=library))
        curves.append(curves_frame(env_id, library, grid, curve, args.seeds))
    runs = pd.concat(frames, ignore_index=True)
    print(runs[["library", "seed", "final_return", "final_std", "steps_to_threshold", "env_steps", "seconds"]]
          .to_string(index=False))
    for library, group in runs.groupby("library", sort=False):
        print(summary_line(library, group, threshold), flush=True)
    if len(frames) == 2:
        for column, what in (("final_return", "final greedy return"), ("steps_per_second", "env steps per second")):
            a, b = ((frame["env_steps"] / frame["seconds"] if column == "steps_per_second" else frame[column])
                    .to_numpy(float) for frame in frames)
            diff = stats.difference_ci(a, b)
            verdict = "excludes 0: a difference" if diff.excludes(0) else "contains 0: no difference claimed"
            print(f"rlcourse - SB3, IQM of the {what}: {diff.estimate:+,.1f}, 95% CI "
                  f"[{diff.low:+,.1f}, {diff.high:+,.1f}]; the interval {verdict}", flush=True)
    if env_id == COURSE_BAR[0]:
        for library, group in runs.groupby("library", sort=False):
            met = int((group["final_return"] - group["final_std"] >= COURSE_BAR[1]).sum())
            print(f"{library}: mean - std >= {COURSE_BAR[1]:g} over {args.eval_episodes} episodes: "
                  f"{met}/{len(group)} seeds", flush=True)
    return runs.assign(env=env_id, algo=args.algo, steps=steps), pd.concat(curves, ignore_index=True)


def plot(curves_path: str, png: str) -> None:
    """One panel per task: each library's training curve, IQM over seeds with a pointwise 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = pd.read_csv(curves_path)
    tasks = list(dict.fromkeys(curves["env"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(8.0, 5.2 * len(tasks)), 4.2), squeeze=False)
    for ax, env_id in zip(axes[0], tasks):
        for library, frame in curves[curves["env"] == env_id].groupby("library", sort=False):
            band, seeds = table_band(frame)
            if not seeds:  # no seed saw 100 episodes end
                continue
            line, = ax.plot(band["grid"], band["estimate"], lw=1.8, label=f"{library}, {seeds} seeds")
            ax.fill_between(band["grid"], band["low"], band["high"], color=line.get_color(), alpha=0.25, lw=0)
        ax.axhline(TASKS[env_id], color="grey", ls="--", lw=0.8, label=f"threshold {TASKS[env_id]:g}")
        ax.set_title(f"{curves['algo'].iloc[0].upper()} on {env_id}", fontsize="medium")
        millions = curves["env_steps"].max() >= 1e6
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _, m=millions: f"{x / 1e6:g}M" if m else f"{x / 1e3:g}k"))
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training return, mean of last 100 episodes")
        ax.legend(fontsize="small", loc="best")
    fig.suptitle("Training return (the exploring policy): IQM over seeds, pointwise 95% bootstrap band",
                 fontsize="medium")
    fig.tight_layout()
    if "machine" in curves:
        lines = textwrap.wrap(f"{curves['machine'].iloc[0]}. Command: docs/mujoco.md.", int(fig.get_figwidth() * 17))
        fig.subplots_adjust(bottom=fig.subplotpars.bottom + 0.045 * len(lines))
        fig.text(0.005, 0.005, "\n".join(lines), fontsize="x-small", color="grey", va="bottom")
    fig.savefig(png, dpi=90)
    plt.close(fig)
    print(f"wrote {png}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--algo", choices=("ppo", "trpo", "a2c", "dqn"), default="ppo",
                        help="dqn: LunarLander-v3 only (discrete actions)")
    parser.add_argument("--steps", type=int, help=f"env steps per run (default {ZOO_STEPS:,}, dqn {ZOO_DQN_STEPS:,}; "
                        f"--quick {QUICK_STEPS:,})")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 5; --quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--eval-episodes", type=int, help="greedy episodes per final model (default 10; --quick 2)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--vectorization", choices=("sync", "async"), default="sync")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 2,048 steps, two episodes")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--csv", help="write every seed's row of both libraries to this file")
    parser.add_argument("--curves", help="write both libraries' training curves to this file")
    parser.add_argument("--journal", help="append every finished run to this file, and read the runs it already "
                        "holds instead of running them again (default: --csv FILE's name with .runs.jsonl)")
    parser.add_argument("--plot", metavar="PNG", help="draw --curves FILE's curves into PNG (no training)")
    args = parser.parse_args(argv)
    if args.plot:
        if not args.curves:
            parser.error("--plot draws the curves of --curves FILE: give both")
        plot(args.curves, args.plot)
        return 0
    args.seeds = list(range(args.seeds or (1 if args.quick else 5)))
    if args.journal is None and args.csv:
        args.journal = str(Path(args.csv).with_suffix(".runs.jsonl"))
    args.eval_episodes = args.eval_episodes or (2 if args.quick else 10)
    if args.algo == "dqn" and args.envs != ["LunarLander-v3"]:
        parser.error("--algo dqn: DQN needs discrete actions; of these tasks only LunarLander-v3 has them "
                     "(--envs LunarLander-v3)")
    if not args.no_sb3:
        package, name = ("sb3_contrib", "sb3-contrib") if args.algo == "trpo" else ("stable_baselines3", "stable-baselines3")
        if importlib.util.find_spec(package) is None:
            parser.error(f"{name} is not installed: pip install {name} torch==2.13.0 (or --no-sb3)")
        for env_id in args.envs:
            try:
                sb3_kwargs(args.algo, rlcourse_config(args.algo, env_id, args.set, args.vectorization), env_id)
            except ValueError as error:
                parser.error(f"--algo {args.algo} on {env_id}: {error} (or --no-sb3)")
    results = [run_task(env_id, args) for env_id in args.envs]
    for path, frame in ((args.csv, pd.concat([runs for runs, _ in results], ignore_index=True)),
                        (args.curves, pd.concat([curves for _, curves in results], ignore_index=True))):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            frame.assign(algo=args.algo, machine=machine()).to_csv(path, index=False)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
