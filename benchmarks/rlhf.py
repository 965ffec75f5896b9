"""Benchmark: lesson 7's training stages (SFT, reward model, PPO-RLHF, DPO) and DPO against TRL's DPOTrainer.

Part 1, **the stages.** Each stage trains the toy task's tiny GPT-2 (``tiny_gpt2``: 2 layers,
64 dimensions, 2 heads, the 71-token ``WordTokenizer.toy()`` vocabulary, dropout off) with the
package's own loop and its default config, on data drawn with seed 0:

* ``sft``: ``train_sft`` on ``task.sft_corpus`` rows (``SFTConfig()``: batch 32, 3 epochs);
* ``reward``: ``train_reward`` of ``RewardModel.from_lm(tiny_gpt2)`` on ``data.toy_pairs``
  (``RewardConfig()``: batch 32 pairs, 2 epochs);
* ``ppo``: ``train_ppo`` of a tiny GPT-2 against its ``frozen_copy``, scored by the task's
  ground truth (``ground_truth_score``) on 256 prompts (``PPOConfig()``: 64 samples per
  iteration, 4 epochs of minibatches of 16, so 16 optimiser steps per iteration);
* ``dpo``: ``train_dpo`` against a ``frozen_copy`` on ``data.toy_pairs``
  (``DPOConfig()``: batch 32 pairs, 2 epochs, β 0.1, lr 1e-3, reference log-probs precomputed).

``--steps N`` sets the optimiser steps of every stage: the data is sized to
``ceil(N / epochs)`` minibatches per epoch (PPO: ``ceil(N / 16)`` iterations), so a stage may
run a few steps more than N; the table gives the number it ran.

**What is counted.** *tokens* are the real (non-padding) tokens of the sequences that the
gradient steps train on, ``<bos> prompt <sep> response <eos>``, counted once per optimiser
step that uses them: every SFT row once per epoch; both sequences of a pair (chosen and
rejected) once per epoch for the reward model and DPO; every sampled sequence once per PPO
epoch (``ppo_epochs`` times). Work that trains nothing is left out of the count but not out
of the clock: PPO's sampling and its scoring passes (policy, reference, value), DPO's
reference passes, tokenizing the text. *tokens/s* is tokens over the wall time of the whole
training call; *steady tokens/s* leaves out the first tenth of the steps (at least one, with
DPO's reference precomputation before them) and divides the tokens of the remaining steps by
their time, taken from the ``callback`` after each step.

**Memory.** Every measured run has a fresh spawned process (``common.run_fresh``). On the CPU,
*peak MB* is the process's peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
imports included, and *before MB* its resident set just before the training call (after the
imports, the model and the data; from ``/proc/self/statm``): the difference is what training
added. On CUDA, *peak MB* is ``torch.cuda.max_memory_allocated`` over the training call.

Part 2, **DPO against TRL's DPOTrainer** (``pip install '.[bench]'``; skipped without TRL).
Both train the same tiny GPT-2 (the same seed, so the same initial weights) against a frozen
copy of it, on the same pairs, with: batch 32 pairs, the same number of steps (2 epochs),
β 0.1, lr 1e-3 constant (TRL: ``lr_scheduler_type="constant"``, no warm-up), AdamW with
weight decay 0 (TRL: ``optim="adamw_torch"``), gradients clipped at norm 1, the sigmoid loss,
sequences of at most 32 tokens, dropout off, float32 on the CPU (TRL: ``bf16=False``,
``use_cpu=True``), torch on one thread, and the reference log-probs precomputed by both
(``--reference live``: by neither). TRL's defaults that differ are overridden and listed in
the header: its gradient checkpointing (on by default in TRL, off here: rlcourse does not
recompute activations), bf16 (on by default), lr 1e-6 and the linear decay.

TRL needs a Hugging Face tokenizer: a ``PreTrainedTokenizerFast`` over the same vocabulary
(the ``tokenizers`` WordLevel model, split on whitespace, the four special tokens as added
tokens). TRL tokenizes ``prompt + chosen`` as one string and appends the eos token, so its
prompt is written ``"<bos> PROMPT <sep>"``: both libraries then see the same token ids,
``[<bos>, prompt, <sep>, response, <eos>]``, and the same token counts: the script counts
the real tokens of each batch TRL's collator builds for the training loop and checks that
they, and TRL's own count (its ``num_tokens``), equal rlcourse's.

The clock: rlcourse's whole ``train_dpo`` call (tokenizing each minibatch, the reference
precomputation, the steps); TRL's ``DPOTrainer(...)`` construction (tokenizing the data set,
the reference precomputation) plus ``trainer.train()``. *cpu s* is the process CPU time
of the same span, less sensitive than wall time to other work on the machine; the ratio line
also gives the steady state by CPU time (the process CPU time between the step callbacks).
The two run in turn ``--repeat`` times, each in a fresh process; each keeps its fastest run,
and the best CPU times of any of its runs. As a check that both trained, it prints the last
epoch's mean loss and implicit-reward accuracy from each library's own log, and both final
policies scored with the same code (``concatenated_logprobs`` and ``dpo_loss``) on 512
held-out pairs. The target: rlcourse at least 1.5x TRL's tokens per second.

Part 3, **GPT-2 small** (only where CUDA is available, or with ``--stages gpt2-small``):
GPT-2 small built from ``GPT2Config()`` (124M parameters, random weights, no download, dropout
off) trained by ``train_sft`` (32 sequences per step) and ``train_dpo`` (16 pairs, reference
precomputed) on random sequences of exactly 256 tokens of a 50,257-word vocabulary, under
bf16 autocast on CUDA (the package's ``autocast`` inside its loops, or around the call where
``rlcourse.rlhf.model`` has none). It reports steady tokens/s and the
model-FLOPs utilisation MFU = 6 N tokens/s / peak, N the parameter count, peak the GPU's
dense bf16 FLOP/s (``PEAK_BF16_TFLOPS``, or ``--peak-tflops``). Its tokens/s are steady
state only: the first fifth of the steps (at least two) is left out as warm-up. 6 N counts
the policy's forward and backward matrix products per trained token; it leaves out
attention's own products (about 4% more at 256 tokens) and DPO's reference pass
(precomputed before the timed steps).

Run ``python benchmarks/rlhf.py`` (about 4 minutes on two busy cores), ``--quick`` for a
smoke run, ``--stages dpo --repeat 5`` for the comparison alone.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
import warnings

from common import run_fresh

STAGES = ("sft", "reward", "ppo", "dpo", "gpt2-small")
TARGET_RATIO = 1.5
SEED = 0
PPO_PROMPTS = 256
HELD_OUT_PAIRS = 512
TRL_HINT = "pip install '.[bench]'"

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, matched in this order against
#: ``torch.cuda.get_device_name()`` (so "H100 PCIe" before "H100", "A100" before "A10").
#: NVIDIA's data sheets print the figure with 2:4 sparsity, twice these: H100 SXM and H200
#: 1,979, H100 NVL 1,671, H100 PCIe 1,513, A100 624, L40S 733, L40 362, L4 242, A10 250.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0))


# --------------------------------------------------------------------------- measuring

def rss_mb() -> float | None:
    """The resident set of this process now, in MB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb() -> float:
    """The peak resident set of this process so far, in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def steady_rate(stamps: list[float], step_tokens: list[int]) -> float:
    """Tokens per second over the steps after the first tenth (at least one step left out).

    ``stamps[i]`` is the time at the end of step i + 1 and ``step_tokens[i]`` its tokens.
    """
    n = len(stamps)
    if n < 2:
        return float("nan")
    warm = max(1, n // 10)
    return sum(step_tokens[warm:]) / (stamps[-1] - stamps[warm - 1])


class Clock:
    """Wall and CPU time of a span, the resident set before it, and a time stamp per step."""

    def __init__(self):
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []

    def step(self, *_) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())

    def __enter__(self):
        self.before_mb = rss_mb()
        self.cpu, self.start = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu
        self.peak_mb = peak_rss_mb()        # before anything after training (held-out scoring) adds to it

    def row(self, tokens: int, step_tokens: list[int], **extra) -> dict:
        return {"steps": len(step_tokens), "tokens": tokens, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds, "tokens_per_second": tokens / self.seconds,
                "steady_tokens_per_second": steady_rate(self.stamps, step_tokens),
                "steady_tokens_per_cpu_second": steady_rate(self.cpu_stamps, step_tokens),
                "peak_mb": self.peak_mb, "before_mb": self.before_mb, **extra}


# --------------------------------------------------------------------------- the toy task

def quiet() -> None:
    """No progress bars, hub calls or library warnings in the measured processes."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()


def toy_model(tokenizer, seed: int = SEED):
    """The toy task's tiny GPT-2 (the package's defaults), its special ids those of ``tokenizer``."""
    from rlcourse.rlhf.model import tiny_gpt2

    return tiny_gpt2(len(tokenizer), seed=seed, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def toy_data(n_rows: int, n_pairs: int) -> dict:
    """SFT rows, preference pairs, PPO prompts and held-out pairs, all drawn from one seed."""
    import numpy as np

    from rlcourse.rlhf import data, task

    rng = np.random.default_rng(SEED)
    return {"rows": task.sft_corpus(n_rows, rng), "pairs": data.toy_pairs(n_pairs, rng),
            "prompts": task.sample_prompts(PPO_PROMPTS, rng), "held_out": data.toy_pairs(HELD_OUT_PAIRS, rng)}


def sequence_tokens(tokenizer, prompts, responses, max_length: int) -> list[int]:
    """Real tokens of each ``<bos> prompt <sep> response <eos>`` sequence, as the training loops encode it."""
    from rlcourse.rlhf.batching import encode

    return encode(tokenizer, prompts, responses, max_length).attention_mask.sum(1).tolist()


def pair_tokens(tokenizer, pairs, max_length: int) -> list[int]:
    """Real tokens of each pair's chosen plus rejected sequence."""
    prompts = [p["prompt"] for p in pairs]
    chosen = sequence_tokens(tokenizer, prompts, [p["chosen"] for p in pairs], max_length)
    rejected = sequence_tokens(tokenizer, prompts, [p["rejected"] for p in pairs], max_length)
    return [c + r for c, r in zip(chosen, rejected)]


def tokens_per_step(per_row: list[int], config) -> list[int]:
    """Tokens of each step, the minibatches replayed in the order the training loops draw them."""
    import torch

    from rlcourse.rlhf.sft import minibatches

    generator = torch.Generator().manual_seed(config.seed)
    return [sum(per_row[i] for i in index)
            for _, index in minibatches(len(per_row), config.batch_size, config.epochs, generator)]


def sized(steps: int, epochs: int, batch_size: int) -> int:
    """Rows (or pairs) for at least ``steps`` optimiser steps of ``epochs`` passes in full minibatches."""
    return batch_size * math.ceil(steps / epochs)


def last_epoch_mean(log, column: str) -> float:
    return float(log.loc[log["epoch"] == log["epoch"].max(), column].mean())


# --------------------------------------------------------------------------- part 1: the stages

def run_sft(steps: int) -> dict:
    quiet()
    from rlcourse.rlhf.sft import SFTConfig, train_sft
    from rlcourse.rlhf.tokenizer import WordTokenizer

    tokenizer, config = WordTokenizer.toy(), SFTConfig()
    rows = toy_data(sized(steps, config.epochs, config.batch_size), 0)["rows"]
    model = toy_model(tokenizer)
    per_row = sequence_tokens(tokenizer, [r["prompt"] for r in rows], [r["completion"] for r in rows],
                              config.max_length)
    step_tokens = tokens_per_step(per_row, config)
    with Clock() as clock:
        log = train_sft(model, tokenizer, rows, config, callback=clock.step)
    assert len(log) == len(step_tokens)
    return clock.row(config.epochs * sum(per_row), step_tokens,
                     note=f"last-epoch loss {last_epoch_mean(log, 'loss'):.3f}")


def run_reward(steps: int) -> dict:
    quiet()
    import torch

    from rlcourse.rlhf.reward import RewardConfig, RewardModel, train_reward
    from rlcourse.rlhf.tokenizer import WordTokenizer

    tokenizer, config = WordTokenizer.toy(), RewardConfig()
    pairs = toy_data(0, sized(steps, config.epochs, config.batch_size))["pairs"]
    torch.manual_seed(SEED)           # the head's initial weights come from torch's global generator
    rm = RewardModel.from_lm(toy_model(tokenizer))
    per_pair = pair_tokens(tokenizer, pairs, config.max_length)
    step_tokens = tokens_per_step(per_pair, config)
    with Clock() as clock:
        log = train_reward(rm, tokenizer, pairs, config, callback=clock.step)
    assert len(log) == len(step_tokens)
    return clock.row(config.epochs * sum(per_pair), step_tokens,
                     note=f"last-epoch accuracy {last_epoch_mean(log, 'accuracy'):.2f}")


def run_ppo(steps: int) -> dict:
    quiet()
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlhf.ppo import PPOConfig, ground_truth_score, train_ppo
    from rlcourse.rlhf.tokenizer import WordTokenizer

    tokenizer = WordTokenizer.toy()
    per_iteration = PPOConfig().ppo_epochs * -(-PPOConfig().batch_size // PPOConfig().minibatch_size)
    config = PPOConfig(iterations=math.ceil(steps / per_iteration))
    prompts = toy_data(0, 0)["prompts"]
    policy = toy_model(tokenizer)
    reference = frozen_copy(policy)
    prompt_tokens = []        # per iteration: <bos> prompt <sep> of the sampled prompts

    def score(batch_prompts, responses):
        prompt_tokens.append(sum(len(tokenizer.encode(p)) + 2 for p in batch_prompts))
        return ground_truth_score(batch_prompts, responses)

    with Clock() as clock:
        log = train_ppo(policy, reference, tokenizer, prompts, score, config, callback=clock.step)
    response_tokens = [round(length * config.batch_size) for length in log["response_length"]]
    sampled = [p + r for p, r in zip(prompt_tokens, response_tokens)]
    iteration_tokens = [config.ppo_epochs * s for s in sampled]
    row = clock.row(sum(iteration_tokens), iteration_tokens,
                    note=f"{sum(response_tokens) / clock.seconds:,.0f} sampled tokens/s; "
                         f"last score {log['score'].iloc[-1]:.2f}")
    row["steps"] = config.iterations * per_iteration
    return row


def run_ours_dpo(steps: int, precompute: bool) -> dict:
    quiet()
    import torch

    from rlcourse.rlhf.dpo import DPOConfig, train_dpo
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlhf.tokenizer import WordTokenizer

    torch.set_num_threads(1)      # train_dpo runs on one thread; so does everything else here
    tokenizer = WordTokenizer.toy()
    config = DPOConfig(precompute_reference=precompute)
    toy = toy_data(0, sized(steps, config.epochs, config.batch_size))
    policy = toy_model(tokenizer)
    reference = frozen_copy(policy)
    per_pair = pair_tokens(tokenizer, toy["pairs"], config.max_length)
    step_tokens = tokens_per_step(per_pair, config)
    with Clock() as clock:
        log = train_dpo(policy, reference, tokenizer, toy["pairs"], config, callback=clock.step)
    assert len(log) == len(step_tokens)
    held_loss, held_accuracy = held_out_dpo(policy, reference, tokenizer, toy["held_out"], config)
    return clock.row(config.epochs * sum(per_pair), step_tokens,
                     last_loss=last_epoch_mean(log, "loss"), last_accuracy=last_epoch_mean(log, "reward_accuracy"),
                     held_loss=held_loss, held_accuracy=held_accuracy,
                     note=f"last-epoch reward accuracy {last_epoch_mean(log, 'reward_accuracy'):.2f}")


def held_out_dpo(policy, reference, tokenizer, pairs, config) -> tuple[float, float]:
    """The DPO loss and implicit-reward accuracy of ``policy`` on ``pairs``: the same code for both libraries."""
    import torch

    from rlcourse.rlhf.dpo import concatenated_logprobs, dpo_loss, encode_pairs

    policy.eval()
    with torch.no_grad():
        chosen, rejected = encode_pairs(tokenizer, pairs, config.max_length)
        terms = dpo_loss(*concatenated_logprobs(policy, chosen, rejected),
                         *concatenated_logprobs(reference, chosen, rejected), config.beta)
    return terms.loss.item(), terms.reward_accuracy.item()


# --------------------------------------------------------------------------- part 2: TRL's DPOTrainer

def trl_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
        import trl  # noqa: F401
    except ImportError:
        return None
    try:
        return version("trl")
    except PackageNotFoundError:
        return "?"


def hf_tokenizer(tokenizer):
    """A ``PreTrainedTokenizerFast`` that gives the WordTokenizer's ids: one token per word, specials split off."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from rlcourse.rlhf.tokenizer import SPECIAL_TOKENS

    core = Tokenizer(models.WordLevel(vocab=dict(tokenizer.ids), unk_token=None))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # added tokens are matched before the pre-tokenizer: "<sep>great" and "lovely<eos>" split as they should
    core.add_special_tokens([AddedToken(token, special=True) for token in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   sep_token="<sep>")


def trl_settings(precompute: bool, steps_per_epoch: int) -> dict:
    """DPOConfig keyword arguments: rlcourse's DPOConfig() numbers, in TRL's words."""
    from rlcourse.rlhf.dpo import DPOConfig

    ours = DPOConfig()
    return dict(per_device_train_batch_size=ours.batch_size, num_train_epochs=ours.epochs, beta=ours.beta,
                learning_rate=ours.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
                weight_decay=ours.weight_decay, max_grad_norm=ours.max_grad_norm, max_length=ours.max_length,
                loss_type=["sigmoid"], precompute_ref_log_probs=precompute, disable_dropout=True,
                gradient_checkpointing=False, bf16=False, use_cpu=True, seed=ours.seed,
                logging_steps=steps_per_epoch, report_to="none", save_strategy="no", disable_tqdm=True,
                dataloader_num_workers=0)


def run_trl_dpo(steps: int, precompute: bool) -> dict:
    quiet()
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    from rlcourse.rlhf.dpo import DPOConfig
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlhf.tokenizer import WordTokenizer

    torch.set_num_threads(1)
    tokenizer = WordTokenizer.toy()
    ours = DPOConfig(precompute_reference=precompute)
    toy = toy_data(0, sized(steps, ours.epochs, ours.batch_size))
    pairs = toy["pairs"]
    dataset = Dataset.from_list([{"prompt": f"<bos> {p['prompt']} <sep>", "chosen": p["chosen"],
                                  "rejected": p["rejected"]} for p in pairs])
    processing = hf_tokenizer(tokenizer)
    policy = toy_model(tokenizer)
    reference = frozen_copy(policy)
    expected = ours.epochs * sum(pair_tokens(tokenizer, pairs, ours.max_length))
    steps_per_epoch = len(pairs) // ours.batch_size

    clock, counted = Clock(), []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.step()

    with tempfile.TemporaryDirectory() as output_dir:
        args = TRLConfig(output_dir=output_dir, **trl_settings(precompute, steps_per_epoch))
        with clock:
            trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=dataset,
                                 processing_class=processing, callbacks=[Stamp()])
            trainer.remove_callback(PrinterCallback)        # it prints each log row (tqdm is off)
            collate = trainer.data_collator

            def counting(examples):                         # the real tokens of each batch the loop trains on
                batch = collate(examples)
                counted.append(int(batch["attention_mask"].sum()))
                return batch

            trainer.data_collator = counting
            trainer.train()
    step_tokens = counted[:len(clock.stamps)]       # the loader may collate a batch ahead; batches come in order
    own = getattr(trainer, "_total_train_tokens", sum(step_tokens))    # TRL's own count, its num_tokens
    if not sum(step_tokens) == own == expected:
        raise RuntimeError(f"TRL trained on {sum(step_tokens)} tokens (its own count: {own}), rlcourse's count "
                           f"is {expected}: the two do not see the same sequences")
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "rewards/accuracies" in entry]
    held_loss, held_accuracy = held_out_dpo(policy, reference, tokenizer, toy["held_out"], ours)
    return clock.row(expected, step_tokens, last_loss=logs[-1]["loss"], last_accuracy=logs[-1]["rewards/accuracies"],
                     held_loss=held_loss, held_accuracy=held_accuracy)


# --------------------------------------------------------------------------- part 3: GPT-2 small

def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def run_gpt2_small(stage: str, seq_len: int, batch_size: int, steps: int, peak: float | None) -> dict:
    quiet()
    import contextlib

    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlcourse.rlhf import model as model_module
    from rlcourse.rlhf.dpo import DPOConfig, train_dpo
    from rlcourse.rlhf.model import frozen_copy
    from rlcourse.rlhf.sft import SFTConfig, train_sft
    from rlcourse.rlhf.tokenizer import WordTokenizer

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    base = GPT2Config()
    tokenizer = WordTokenizer([f"w{i}" for i in range(base.vocab_size - 4)])   # 4 specials + words = 50,257
    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())          # the tied embedding counted once
    # every sequence exactly seq_len tokens: <bos> P words <sep> C words <eos>
    prompt_words = seq_len // 4
    response_words = seq_len - prompt_words - 3
    warm = max(2, steps // 5)     # untimed first steps: CUDA start-up, allocator, autotuning
    rng = np.random.default_rng(SEED)
    words = tokenizer.tokens[4:]

    def text(n):
        return " ".join(words[i] for i in rng.integers(len(words), size=n))

    # the package's loops autocast themselves where rlcourse.rlhf.model has autocast; else it is done here
    inner = hasattr(model_module, "autocast")
    precision = "bf16 autocast" if cuda else "float32"
    outer = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and not inner else contextlib.nullcontext())
    clock = Clock()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if stage == "sft":
        train_config = SFTConfig(lr=1e-5, epochs=1, batch_size=batch_size, max_length=seq_len)
        rows = [{"prompt": text(prompt_words), "completion": text(response_words)}
                for _ in range(batch_size * (steps + warm))]
        with outer, clock:
            train_sft(model, tokenizer, rows, train_config, callback=clock.step)
        step_tokens = [batch_size * seq_len] * len(clock.stamps)
    else:
        train_config = DPOConfig(lr=1e-5, epochs=1, batch_size=batch_size, max_length=seq_len)
        pairs = [{"prompt": text(prompt_words), "chosen": text(response_words), "rejected": text(response_words)}
                 for _ in range(batch_size * (steps + warm))]
        reference = frozen_copy(model)
        with outer, clock:
            train_dpo(model, reference, tokenizer, pairs, train_config, callback=clock.step)
        step_tokens = [2 * batch_size * seq_len] * len(clock.stamps)
    # the steady window: the steps after the first `warm`
    rate = sum(step_tokens[warm:]) / (clock.stamps[-1] - clock.stamps[warm - 1])
    memory = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else peak_rss_mb()
    return {"stage": stage, "device": torch.cuda.get_device_name() if cuda else "cpu", "precision": precision,
            "params": n_params, "seq_len": seq_len, "batch_size": batch_size, "steps": len(step_tokens) - warm,
            "steady_tokens_per_second": rate, "mfu": 6 * n_params * rate / (peak * 1e12) if cuda and peak else None,
            "peak_mb": memory}


# --------------------------------------------------------------------------- printing

def mb(value) -> str:
    """A number of MB or tokens/s for a table: "-" when there is none."""
    return "-" if value is None or value != value else f"{value:,.0f}"


def print_stages(rows: dict[str, dict]) -> None:
    header = (f"{'stage':<8}{'steps':>7}{'tokens':>10}{'seconds':>9}{'tokens/s':>10}{'steady tok/s':>14}{'cpu s':>7}"
              f"{'tok/cpu-s':>11}{'peak MB':>9}{'before MB':>11}  notes")
    print()
    print(header)
    print("-" * len(header))
    for stage, row in rows.items():
        print(f"{stage:<8}{row['steps']:>7,}{row['tokens']:>10,}{row['seconds']:>9.2f}"
              f"{row['tokens_per_second']:>10,.0f}{mb(row['steady_tokens_per_second']):>14}{row['cpu_seconds']:>7.2f}"
              f"{row['tokens'] / row['cpu_seconds']:>11,.0f}{mb(row['peak_mb']):>9}{mb(row['before_mb']):>11}  "
              f"{row.get('note', '')}", flush=True)


def print_comparison(best: dict[str, dict], version: str | None) -> None:
    header = (f"{'':<18}{'steps':>6}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'steady tok/s':>14}{'cpu s':>7}"
              f"{'tok/cpu-s':>11}{'peak MB':>9}{'before MB':>11}{'last-epoch loss/acc':>21}{'held-out loss/acc':>19}")
    print()
    print(header)
    print("-" * len(header))
    for label, row in best.items():
        print(f"{label:<18}{row['steps']:>6}{row['tokens']:>9,}{row['seconds']:>9.2f}{row['tokens_per_second']:>10,.0f}"
              f"{mb(row['steady_tokens_per_second']):>14}{row['cpu_seconds']:>7.2f}"
              f"{row['tokens'] / row['cpu_seconds']:>11,.0f}{mb(row['peak_mb']):>9}"
              f"{mb(row['before_mb']):>11}{row['last_loss']:>14.3f} / {row['last_accuracy']:.2f}"
              f"{row['held_loss']:>12.3f} / {row['held_accuracy']:.2f}", flush=True)
    if version is None:
        print(f"TRL DPOTrainer: skipped ({TRL_HINT})", flush=True)
        return
    ours, theirs = best["rlcourse"], best[f"TRL {version}"]
    ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
    cpu_ratio = theirs["cpu_seconds"] / ours["cpu_seconds"]
    steady = ours["steady_tokens_per_second"] / theirs["steady_tokens_per_second"]
    steady_cpu = ours["steady_tokens_per_cpu_second"] / theirs["steady_tokens_per_cpu_second"]
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"\nratio rlcourse / TRL {version}: {ratio:.2f}x the tokens per second of the whole call "
          f"({verdict} the {TARGET_RATIO:g}x target; CPU-time ratio {cpu_ratio:.2f}x; steady state {steady:.2f}x, "
          f"by CPU time {steady_cpu:.2f}x)")
    gap = abs(ours["held_loss"] - theirs["held_loss"])
    print(f"sanity: held-out DPO loss {ours['held_loss']:.3f} vs {theirs['held_loss']:.3f}, reward accuracy "
          f"{ours['held_accuracy']:.2f} vs {theirs['held_accuracy']:.2f} "
          f"({'similar' if gap < 0.05 else 'DIFFERENT'}: both started at log 2 = 0.693)", flush=True)


def print_gpt2(rows: list[dict]) -> None:
    header = (f"{'GPT-2 small':<12}{'device':>22}{'precision':>15}{'seq':>5}{'batch':>6}{'steps':>6}"
              f"{'tokens/s':>11}{'MFU':>8}{'peak MB':>9}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        print(f"{row['stage']:<12}{row['device'][:21]:>22}{row['precision']:>15}{row['seq_len']:>5}"
              f"{row['batch_size']:>6}{row['steps']:>6}{mb(row['steady_tokens_per_second']):>11}{mfu:>8}"
              f"{mb(row['peak_mb']):>9}", flush=True)


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES,
                        help="what to run (default: sft reward ppo dpo, and gpt2-small where CUDA is available); "
                             "dpo includes the comparison with TRL")
    parser.add_argument("--steps", type=int, help="optimiser steps per stage (default 128; 8 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 steps, one repeat; measures nothing useful")
    parser.add_argument("--repeat", type=int, help="runs of each DPO implementation, in turn; the fastest counts "
                                                   "(default 3; 1 with --quick)")
    parser.add_argument("--reference", choices=("precomputed", "live"), default="precomputed",
                        help="DPO's reference log-probs: computed once before training (both libraries), "
                             "or by a reference forward pass at every step (both)")
    parser.add_argument("--no-trl", action="store_true", help="leave TRL's DPOTrainer out")
    parser.add_argument("--gpt2-steps", type=int,
                        help="timed steps of GPT-2 small per stage (default 30; 3 with --quick)")
    parser.add_argument("--seq-len", type=int, help="GPT-2 small's tokens per sequence (default 256; 32 with --quick)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if it is not in the table")
    args = parser.parse_args(argv)
    for name in ("steps", "repeat", "gpt2_steps", "seq_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    stages = args.stages or [s for s in STAGES if s != "gpt2-small" or cuda]
    steps = args.steps or (8 if args.quick else 128)
    repeat = args.repeat or (1 if args.quick else 3)
    precompute = args.reference == "precomputed"
    version = None if args.no_trl else trl_version()

    import transformers

    print(f"lesson 7 training stages on the toy task's tiny GPT-2 (2 layers, 64 dims, 71 tokens), seed {SEED}, "
          f"{steps} optimiser steps per stage, one torch thread; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, TRL {version or 'not installed'}")
    print("tokens = real tokens of the sequences each optimiser step trains on (PPO: x ppo_epochs); "
          "tokens/s over the whole training call; peak MB = peak RSS of a fresh process", flush=True)

    rows = {}
    for stage, runner in (("sft", run_sft), ("reward", run_reward), ("ppo", run_ppo)):
        if stage in stages:
            rows[stage] = run_fresh(runner, steps)
            print(f"  {stage}: {rows[stage]['tokens_per_second']:,.0f} tokens/s", flush=True)

    if "dpo" in stages:
        runners = {"rlcourse": run_ours_dpo}
        if version is not None:
            runners[f"TRL {version}"] = run_trl_dpo
            settings = ", ".join(f"{k}={v}" for k, v in trl_settings(precompute, 0).items()
                                 if k not in ("logging_steps", "report_to", "save_strategy", "disable_tqdm",
                                              "dataloader_num_workers"))
            print(f"DPO side by side ({args.reference} reference), fastest of {repeat} interleaved run(s); "
                  f"TRL DPOConfig: {settings}", flush=True)
        best: dict[str, dict] = {}
        for attempt in range(repeat):
            for label, runner in runners.items():
                row = run_fresh(runner, steps, precompute)
                print(f"  {label} run {attempt + 1}: {row['tokens_per_second']:,.0f} tokens/s, "
                      f"{row['seconds']:.2f} s, {row['cpu_seconds']:.2f} cpu s", flush=True)
                previous = best.get(label)
                if previous is None or row["seconds"] < previous["seconds"]:
                    best[label] = row
                if previous is not None:      # CPU times: the best of any run, as tabular.py takes them
                    best[label]["cpu_seconds"] = min(row["cpu_seconds"], previous["cpu_seconds"])
                    best[label]["steady_tokens_per_cpu_second"] = max(row["steady_tokens_per_cpu_second"],
                                                                      previous["steady_tokens_per_cpu_second"])
        rows["dpo"] = best["rlcourse"]
        print_stages(rows)
        print_comparison(best, version)
    elif rows:
        print_stages(rows)

    if "gpt2-small" in stages:
        name = torch.cuda.get_device_name() if cuda else "cpu"
        peak = args.peak_tflops or (peak_tflops(name) if cuda else None)
        seq_len = args.seq_len or (32 if args.quick else 256)
        gpt2_steps = args.gpt2_steps or (3 if args.quick else 30)
        batches = {"sft": 32, "dpo": 16} if cuda and not args.quick else {"sft": 2, "dpo": 1}
        if not cuda:
            print("\nGPT-2 small without CUDA: float32 on the CPU, no MFU (slow: use --quick)", flush=True)
        elif peak is None:
            print(f"\nGPT-2 small: no bf16 peak known for {name!r}, so no MFU (give --peak-tflops)", flush=True)
        else:
            print(f"\nGPT-2 small on {name}: MFU against {peak:g} TFLOP/s dense bf16", flush=True)
        results = [run_fresh(run_gpt2_small, stage, seq_len, batches[stage], gpt2_steps, peak)
                   for stage in ("sft", "dpo")]
        print_gpt2(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
