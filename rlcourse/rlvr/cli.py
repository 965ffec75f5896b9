"""``rlcourse rlvr ...``: lesson 8 from the command line.

::

    rlcourse rlvr train --method grpo --out runs/grpo            # SFT, pass@k, GRPO, pass@k: summary.json
    rlcourse rlvr train --method rloo --out runs/rloo --set iterations=100 grpo.lr=1e-4
    rlcourse rlvr seeds --method grpo --seeds 5 --out runs/seeds # the lift over seeds: IQM, 95% CI, k of n
    rlcourse rlvr exact                                          # the exact-gradient table

``--set key=value`` overrides a field of ``RLVRConfig`` (``method``, ``digits``,
``iterations``, ``sft_epochs``, ``model``, …) and ``--set grpo.key=value`` one of
``GRPOConfig`` (``lr``, ``group_size``, ``kl_coef``, ``aggregation``, …). ``--model gpt2``
(or a directory saved with ``save_pretrained``, a ``.gguf`` file, or ``smollm2``, the
SmolLM2-135M-Instruct of the ``smollm`` extra) runs the same pipeline on a pretrained model;
a chat model is asked in words through its chat template (set ``sft_epochs=0``).

``train`` runs data-parallel under ``torchrun`` (:mod:`rlcourse.rlhf.distributed`; SFT and
GRPO split their batches over the processes, each rank sampling whole groups)::

    torchrun --nproc_per_node 2 -m rlcourse rlvr train --out runs/grpo-2
    torchrun --nproc_per_node 2 -m rlcourse rlvr train --out runs/grpo-2 --set grpo.sampling=per-group
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rlcourse.config import ConfigError, UsageError, apply_overrides, parse_overrides

LIFT_BAR = 0.30  # the lesson's claim: RL lifts held-out pass@1 by at least 30 points


def add_parser(sub, parser_class) -> None:
    """Register ``rlcourse rlvr`` and its subcommands on the top-level parser's ``sub``."""
    rlvr = sub.add_parser("rlvr", help="lesson 8: GRPO, RLOO, Dr. GRPO with a verifier (multi-digit addition)")
    commands = rlvr.add_subparsers(dest="rlvr_command", required=True, parser_class=parser_class)

    def common(p):
        p.add_argument("--method", default="grpo", help="grpo, dr_grpo, rloo or reinforce")
        p.add_argument(
            "--model", default="toy", help="toy (a tiny GPT-2), gpt2, smollm2, a model directory or a .gguf file"
        )
        p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override RLVRConfig fields (key=value) or GRPOConfig fields (grpo.key=value)")  # fmt: skip
        p.add_argument("--out", required=True, help="the directory to write into")

    p = commands.add_parser("train", help="one run: SFT warm start, RL, pass@k before and after")
    common(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("seeds", help="the run over several seeds: the lift of pass@1, IQM and CI")
    common(p)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0, 1, …, N − 1")
    p.add_argument("--workers", type=int, default=2, help="runs at once, one process each")
    p.set_defaults(func=cmd_seeds)

    p = commands.add_parser("exact", help="the exact-gradient table: bias and variance of each estimator")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--draws", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_exact)


def configs(args, seed: int):
    """(RLVRConfig, GRPOConfig) from --method, --model, --set and ``seed``; a bad value is a UsageError."""
    from rlcourse.rlvr.pipeline import RLVRConfig, rl_config

    try:
        sets = parse_overrides(args.set)
        ours = {k: v for k, v in sets.items() if not k.startswith("grpo.")}
        theirs = {k.removeprefix("grpo."): v for k, v in sets.items() if k.startswith("grpo.")}
        config = apply_overrides(RLVRConfig(seed=seed), {"method": args.method, "model": args.model, **ours})
        return config, apply_overrides(rl_config(config), theirs)
    except (ConfigError, ValueError) as err:
        raise UsageError(str(err)) from None


def cmd_train(args) -> int:
    """One run; under ``torchrun`` each process is a rank, and only rank 0 writes and prints."""
    from rlcourse.rlhf import distributed
    from rlcourse.rlvr.pipeline import run_rlvr

    config, rl = configs(args, args.seed)
    distributed.setup(cuda=False)  # the pipeline trains on the CPU: the gloo backend under torchrun
    rank0 = distributed.is_main()
    try:
        summary = run_rlvr(config, rl, Path(args.out) if rank0 else None)
    finally:
        distributed.teardown()
    if rank0:
        print(json.dumps({"out": args.out, **summary}))
    return 0


def one_seed(job: tuple) -> dict:
    """One seed's summary (a module-level function, for the worker processes)."""
    from rlcourse.rlvr.pipeline import run_rlvr

    config, rl = job
    return run_rlvr(config, rl)


def seed_study(config, rl, seeds: int, workers: int) -> dict:
    """Run ``seeds`` seeds (0, 1, …) in worker processes; the summaries and the lift's IQM, CI and k of n."""
    from rlcourse import stats
    from rlcourse.seeds import run_in_workers

    jobs = [(dataclasses.replace(config, seed=s), dataclasses.replace(rl, seed=s)) for s in range(seeds)]
    runs = run_in_workers(one_seed, jobs, workers)
    lifts = [r["lift"] for r in runs]
    return {"bar": LIFT_BAR, "lift": stats.summarise(lifts, LIFT_BAR), "runs": runs}


def plot_seeds(runs: list[dict]):
    """Held-out pass@1 over the RL iterations (one line a seed, where curves were logged) and
    pass@k before and after, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in runs:
        curve = {0: run["before"]["pass@1"], **{int(k): v for k, v in run.get("curve", {}).items()}}
        axes[0].plot(list(curve), list(curve.values()), "o-", ms=3, label=f"seed {run['seed']}")
        ks = [int(k.split("@")[1]) for k in run["before"]]
        axes[1].plot(ks, list(run["before"].values()), "o--", color="C0", alpha=0.6)
        axes[1].plot(ks, list(run["after"].values()), "o-", color="C1", alpha=0.6)
    axes[0].set(xlabel="RL iteration", ylabel="held-out pass@1", title="pass@1 during RL (n = 4 at the checks)")
    axes[0].legend(fontsize=8)
    axes[1].plot([], [], "o--", color="C0", label="after SFT")
    axes[1].plot([], [], "o-", color="C1", label="after RL")
    axes[1].set_xscale("log", base=2)
    axes[1].set(xlabel="k", ylabel="held-out pass@k", title="pass@k before and after, each seed")
    axes[1].legend()
    fig.tight_layout()
    return fig


def cmd_seeds(args) -> int:
    from rlcourse.rlhf.pipeline import write_json

    for flag, value in (("--seeds", args.seeds), ("--workers", args.workers)):
        if value < 1:
            raise UsageError(f"{flag} = {value} is out of range: it must be >= 1")
    config, rl = configs(args, 0)
    result = seed_study(config, rl, args.seeds, args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "seeds.json", {"rlvr": dataclasses.asdict(config), "grpo": dataclasses.asdict(rl), **result})
    figure = plot_seeds(result["runs"])
    figure.savefig(out / "seeds.png", dpi=120)
    print(json.dumps({"out": args.out, "bar": LIFT_BAR, **result["lift"]}))
    return 0


def cmd_exact(args) -> int:
    import pandas as pd

    from rlcourse.rlvr import exact

    if args.group_size < 2 or args.draws < 2:
        raise UsageError("--group-size and --draws must be >= 2")
    model, tokenizer = exact.toy_model(args.seed)
    e = exact.enumerate_policy(model, tokenizer)
    print("J_x (success rate of each prompt):", {k: round(v, 3) for k, v in exact.success_rates(e).items()})
    table = exact.bias_variance_table(e, args.group_size, args.draws, args.seed)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    return 0
