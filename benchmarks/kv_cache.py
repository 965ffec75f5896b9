"""Generation tokens/s with and without the key/value cache, on GPT-2-small's architecture
(random weights: 12 layers, 768 wide, vocabulary 50,257), on the CPU, one thread.

    python benchmarks/kv_cache.py --new-tokens 128 256 --uncached-up-to 128

Prints one JSON line per setting: new tokens, batch, use_cache, CPU seconds, tokens/s (CPU time).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlcourse.rlhf.batching import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--uncached-up-to", type=int, default=128, help="skip the uncached path above this")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT-2 small, random weights
    ids = torch.randint(0, 50_000, (args.batch, args.prompt))
    mask = torch.ones_like(ids)
    for new in args.new_tokens:
        for cache in (True, False):
            if not cache and new > args.uncached_up_to:
                continue
            start = time.process_time()
            # eos = -1 never matches: every row generates all `new` tokens
            tokens, _ = generate(model, ids, mask, new, -1, 0, 1.0, torch.Generator().manual_seed(0), cache)
            seconds = time.process_time() - start
            row = {"new_tokens": new, "batch": args.batch, "use_cache": cache, "cpu_seconds": round(seconds, 2),
                   "tokens_per_s": round(tokens.numel() / seconds, 1)}  # fmt: skip
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
