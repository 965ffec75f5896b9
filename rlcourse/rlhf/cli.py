"""``rlcourse rlhf ...``: each stage of lesson 7 from the command line, and the whole pipeline.

::

    rlcourse rlhf data --out data/                                   # the toy task's JSONL files
    rlcourse rlhf sft --data data/sft.jsonl --out runs/sft           # --model toy | gpt2 | smollm2 | DIR | FILE.gguf
    rlcourse rlhf reward --data data/preferences.jsonl --out runs/rm
    rlcourse rlhf dpo --model runs/sft --data data/preferences.jsonl --out runs/dpo --set beta=0.2
    rlcourse rlhf ppo --model runs/sft --reward-model runs/rm --out runs/ppo --set kl_coef=0.05
    rlcourse rlhf evaluate runs/dpo --reference runs/sft
    rlcourse rlhf pipeline --out runs/pipeline                       # all of it, with summary.json

Every stage writes its model (``save_pretrained``, with the tokenizer), ``log.csv`` and
``train_config.json`` to ``--out`` and prints one JSON line of results. ``--set key=value``
overrides the stage's config (``SFTConfig``, ``RewardConfig``, ``DPOConfig``,
``PPOConfig``; the pipeline's ``PipelineConfig`` takes ``stage.key=value`` too). The device
is CUDA when present (bf16 autocast), else the CPU; ``--device cpu`` forces the CPU. SFT,
the reward model and DPO run data-parallel under
``torchrun --nproc_per_node K -m rlcourse rlhf sft|reward|dpo ...``
(:mod:`rlcourse.rlhf.distributed`).

With a chat model (``--model smollm2``, or any model whose tokenizer has a chat template)
every prompt is rendered by the model's chat template before it is trained on
(:func:`rlcourse.rlhf.tokenizer.chat_prompt`); the toy task's ground-truth reward still reads
the prompt as it was written.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from rlcourse.config import ConfigError, UsageError, apply_overrides, parse_overrides

TOY_MODEL = dict(n_embd=32, n_layer=2, n_head=2)  # the policy of the toy task (as in the pipeline)
TOY_REWARD_MODEL = dict(n_embd=64, n_layer=2, n_head=4)
TRAIN_CONFIG = "train_config.json"  # the stage's config (config.json is the model's own)
TRAINING_FAILED = 1  # the exit status of a stage stopped by a non-finite loss


def add_parser(sub, parser_class) -> None:
    """Register ``rlcourse rlhf`` and its subcommands on the top-level parser's ``sub``."""
    rlhf = sub.add_parser("rlhf", help="lesson 7: SFT, reward model, PPO-RLHF, DPO on GPT-2")
    stages = rlhf.add_subparsers(dest="stage", required=True, parser_class=parser_class)

    def stage(
        name: str, help: str, model_help: str | None = "toy (a tiny GPT-2), gpt2, smollm2, a model directory or a .gguf"
    ):
        p = stages.add_parser(name, help=help)
        p.add_argument("--out", required=True, help="the directory to write into")
        if model_help:
            p.add_argument("--model", default="toy", help=model_help)
        p.add_argument(
            "--set",
            nargs="+",
            action="extend",
            default=[],
            metavar="KEY=VALUE",
            help="override config fields, e.g. --set lr=1e-3 epochs=2",
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        return p

    p = stages.add_parser("data", help="write the toy task's sft.jsonl and preferences.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--sft-rows", type=int, default=4000)
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--noise-temperature", type=float, default=0.1, help="Bradley-Terry label noise (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data)

    p = stage("sft", "supervised fine-tuning on prompt/completion rows")
    p.add_argument("--data", help="SFT JSONL file (default: the toy corpus, --rows rows)")
    p.add_argument("--rows", type=int, default=4000, help="rows of the toy corpus when --data is not given")
    p.set_defaults(func=cmd_sft)

    p = stage(
        "reward",
        "fit a reward model to prompt/chosen/rejected rows",
        "toy (a fresh tiny GPT-2 body), or an LM directory or name whose body it starts from",
    )
    p.add_argument("--data", required=True, help="preference JSONL file")
    p.add_argument("--heldout", type=float, default=0.1, help="share of the pairs kept out for accuracy")
    p.set_defaults(func=cmd_reward)

    p = stage("dpo", "direct preference optimisation from an SFT model", "the SFT model's directory (or gpt2)")
    p.add_argument("--data", required=True, help="preference JSONL file")
    p.set_defaults(func=cmd_dpo)

    p = stage("ppo", "PPO-RLHF against a reward model", "the SFT model's directory (or gpt2)")
    p.add_argument(
        "--reward-model", required=True, help="a reward model directory, or ground-truth (the toy task's own reward)"
    )
    p.add_argument("--prompts", help="JSONL file whose rows have a prompt (default: toy prompts)")
    p.set_defaults(func=cmd_ppo)

    p = stages.add_parser("evaluate", help="ground-truth reward, win rate and KL of a tuned model")
    p.add_argument("model", help="the tuned model's directory")
    p.add_argument("--reference", required=True, help="the reference (SFT) model's directory")
    p.add_argument("--prompts", type=int, default=256, help="toy prompts to sample for")
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = stage("pipeline", "the whole toy pipeline: SFT, pairs, reward model, PPO, DPO, frontier", None)
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test; the bars are not met)")
    p.set_defaults(func=cmd_pipeline)


# ---------------------------------------------------------------- helpers


def _config(defaults, sets: list[str]):
    try:
        return apply_overrides(defaults, parse_overrides(sets))
    except ConfigError as err:
        raise UsageError(str(err)) from None


def _device(args):
    import torch
    from transformers.utils import logging

    from rlcourse.rlhf import distributed

    logging.disable_progress_bar()  # no "Writing model shards" bar for every save

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return distributed.setup(cuda=None if args.device == "auto" else args.device == "cuda")


def _load_lm(name: str, device, seed: int = 0):
    """(model, tokenizer) for ``toy``, a hub name, a directory, ``smollm2`` or a GGUF file."""
    from rlcourse.rlhf.model import load_model, tiny_gpt2
    from rlcourse.rlhf.tokenizer import WordTokenizer, load_tokenizer

    if name == "toy":
        tokenizer = WordTokenizer.toy()
        model = tiny_gpt2(
            tokenizer.vocab_size,
            seed=seed,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TOY_MODEL,
        )
        return model.to(device), tokenizer
    path = Path(name)
    if not path.exists() and str(path.parent) != "." and path.parent.is_dir():
        raise UsageError(f"--model {name}: no such model directory or file")
    try:
        return load_model(name).to(device), load_tokenizer(name)
    except (OSError, ImportError) as err:
        raise UsageError(f"--model {name}: cannot load it ({str(err).splitlines()[0]})") from None


def _chat_rows(tokenizer, rows: list[dict]) -> list[dict]:
    """``rows`` with each prompt rendered for a chat model (unchanged for any other tokenizer)."""
    from rlcourse.rlhf.tokenizer import chat_prompt

    return [{**row, "prompt": chat_prompt(tokenizer, row["prompt"])} for row in rows]


def _read(reader, path: str):
    from rlcourse.rlhf.data import DataError

    try:
        return reader(path)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except DataError as err:
        raise UsageError(str(err)) from None


def _finish(out: Path, model, tokenizer, log, config, result: dict) -> int:
    """Write the model (rank 0 only), its log and config, print the result line, leave the process group."""
    from rlcourse.rlhf import distributed
    from rlcourse.rlhf.pipeline import save_lm, write_json
    from rlcourse.rlhf.reward import RewardModel

    if distributed.is_main():
        if isinstance(model, RewardModel):
            model.save(out)
        save_lm(model, tokenizer, out)
        log.to_csv(out / "log.csv", index=False)
        write_json(out / TRAIN_CONFIG, dataclasses.asdict(config))
        print(json.dumps({"out": str(out), **result}))
    distributed.teardown()
    return 0


def _failed(err) -> int:
    import sys

    print(f"rlcourse: {err}; the files in --out are not replaced", file=sys.stderr)
    return TRAINING_FAILED


# ---------------------------------------------------------------- the commands


def cmd_data(args) -> int:
    from rlcourse.rlhf.data import make_toy_files

    for flag, value in (("--sft-rows", args.sft_rows), ("--pairs", args.pairs)):
        if value < 1:
            raise UsageError(f"{flag} = {value} is out of range: it must be >= 1")
    if args.noise_temperature < 0:
        raise UsageError(f"--noise-temperature = {args.noise_temperature} is out of range: it must be >= 0")
    paths = make_toy_files(args.out, args.sft_rows, args.pairs, args.seed, args.noise_temperature or None)
    print(json.dumps({name: str(path) for name, path in paths.items()}))
    return 0


def cmd_sft(args) -> int:
    from rlcourse.rlhf import task
    from rlcourse.rlhf.data import read_sft
    from rlcourse.rlhf.evaluate import generate_and_score
    from rlcourse.rlhf.sft import SFTConfig, train_sft
    from rlcourse.run import NonFiniteError

    config = _config(SFTConfig(lr=3e-3, epochs=8, seed=args.seed), args.set)
    rows = _read(read_sft, args.data) if args.data else task.sft_corpus(args.rows, np.random.default_rng(args.seed))
    device = _device(args)
    model, tokenizer = _load_lm(args.model, device, args.seed)
    try:
        log = train_sft(model, tokenizer, _chat_rows(tokenizer, rows), config)
    except NonFiniteError as err:
        return _failed(err)
    result = {"steps": len(log), "loss": float(log["loss"].iloc[-1])}
    if args.model == "toy":
        prompts = task.sample_prompts(256, np.random.default_rng(args.seed + 1))
        result["reward"] = float(generate_and_score(model, tokenizer, prompts, seed=args.seed)[1].mean())
    return _finish(Path(args.out), model, tokenizer, log, config, result)


def cmd_reward(args) -> int:
    from rlcourse.rlhf.data import read_preferences
    from rlcourse.rlhf.model import tiny_gpt2
    from rlcourse.rlhf.pipeline import accuracy_ceiling
    from rlcourse.rlhf.reward import RewardConfig, RewardModel, evaluate_reward_model, train_reward
    from rlcourse.run import NonFiniteError

    if not 0 <= args.heldout < 1:
        raise UsageError(f"--heldout = {args.heldout} is out of range: it must be in [0, 1)")
    config = _config(RewardConfig(epochs=6, seed=args.seed), args.set)
    pairs = _read(read_preferences, args.data)
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    n_heldout = round(args.heldout * len(pairs))
    heldout, train = [pairs[i] for i in order[:n_heldout]], [pairs[i] for i in order[n_heldout:]]
    device = _device(args)
    if args.model == "toy":
        from rlcourse.rlhf.tokenizer import WordTokenizer

        tokenizer = WordTokenizer.toy()
        body = tiny_gpt2(
            tokenizer.vocab_size,
            seed=args.seed,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TOY_REWARD_MODEL,
        )
    else:
        body, tokenizer = _load_lm(args.model, device)
    import torch

    torch.manual_seed(args.seed)  # the head's initial weights
    rm = RewardModel.from_lm(body).to(device)
    try:
        log = train_reward(rm, tokenizer, _chat_rows(tokenizer, train), config)
    except NonFiniteError as err:
        return _failed(err)
    result = {"steps": len(log), "train_accuracy": float(log["accuracy"].tail(20).mean())}
    if heldout:
        result.update(heldout_accuracy=evaluate_reward_model(rm, tokenizer, _chat_rows(tokenizer, heldout))["accuracy"])
        if args.model == "toy":
            result.update(accuracy_ceiling=accuracy_ceiling(heldout, 0.1))
    return _finish(Path(args.out), rm, tokenizer, log, config, result)


def cmd_dpo(args) -> int:
    from rlcourse.rlhf.data import read_preferences
    from rlcourse.rlhf.dpo import DPOConfig, train_dpo
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.run import NonFiniteError

    config = _config(DPOConfig(beta=0.2, lr=3e-3, seed=args.seed), args.set)
    device = _device(args)
    policy, tokenizer = _load_lm(args.model, device, args.seed)
    pairs = _read(read_preferences, args.data)
    reference = frozen_copy(policy)
    try:
        log = train_dpo(policy, reference, tokenizer, _chat_rows(tokenizer, pairs), config)
    except NonFiniteError as err:
        return _failed(err)
    result = {
        "steps": len(log),
        "loss": float(log["loss"].iloc[-1]),
        "reward_accuracy": float(log["reward_accuracy"].tail(20).mean()),
    }
    return _finish(Path(args.out), policy, tokenizer, log, config, result)


def cmd_ppo(args) -> int:
    from rlcourse.rlhf import task
    from rlcourse.rlhf.data import read_prompts
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlhf.ppo import PPOConfig, Score, ground_truth_score, reward_model_score, train_ppo
    from rlcourse.rlhf.reward import RewardModel
    from rlcourse.run import NonFiniteError

    config = _config(PPOConfig(iterations=40, batch_size=32, minibatch_size=16, seed=args.seed), args.set)
    prompts = (
        _read(read_prompts, args.prompts)
        if args.prompts
        else task.sample_prompts(2048, np.random.default_rng(args.seed + 4))
    )
    device = _device(args)
    policy, tokenizer = _load_lm(args.model, device, args.seed)
    rendered = [row["prompt"] for row in _chat_rows(tokenizer, [{"prompt": p} for p in prompts])]
    asked = dict(zip(rendered, prompts))
    score: Score
    if args.reward_model == "ground-truth":  # the toy task's reward reads the prompt as written

        def score(chat_prompts, responses):
            return ground_truth_score([asked[p] for p in chat_prompts], responses)

    else:
        try:
            rm = RewardModel.load(args.reward_model).to(device)
        except (FileNotFoundError, OSError) as err:
            raise UsageError(f"--reward-model: {err}") from None
        score = reward_model_score(rm, tokenizer)
    reference = frozen_copy(policy)
    try:
        log = train_ppo(policy, reference, tokenizer, rendered, score, config)
    except NonFiniteError as err:
        return _failed(err)
    result = {"iterations": len(log), "score": float(log["score"].iloc[-1]), "kl": float(log["kl"].iloc[-1])}
    return _finish(Path(args.out), policy, tokenizer, log, config, result)


def cmd_evaluate(args) -> int:
    from rlcourse.rlhf import task
    from rlcourse.rlhf.evaluate import generate_and_score
    from rlcourse.rlhf.pipeline import judge

    if args.prompts < 1:
        raise UsageError(f"--prompts = {args.prompts} is out of range: it must be >= 1")
    device = _device(args)
    model, tokenizer = _load_lm(args.model, device)
    reference, _ = _load_lm(args.reference, device)
    prompts = task.sample_prompts(args.prompts, np.random.default_rng(args.seed + 1))
    _, baseline = generate_and_score(reference, tokenizer, prompts, args.max_new_tokens, seed=args.seed)
    scores = judge(model, reference, baseline, tokenizer, prompts, args.max_new_tokens, args.seed)
    print(json.dumps({"reference_reward": float(baseline.mean()), **scores}))
    return 0


def cmd_pipeline(args) -> int:
    from rlcourse.rlhf.pipeline import QUICK, PipelineConfig, run_pipeline
    from rlcourse.run import NonFiniteError

    base = PipelineConfig(seed=args.seed, **(QUICK if args.quick else {}))
    try:
        config = base.with_overrides(parse_overrides(args.set))
    except ConfigError as err:
        raise UsageError(str(err)) from None
    device = _device(args)
    try:
        summary = run_pipeline(args.out, config, device=device)
    except NonFiniteError as err:
        return _failed(err)
    print(json.dumps({"out": args.out, **{k: v for k, v in summary.items() if k != "seconds"}}))
    return 0
