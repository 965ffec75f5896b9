# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 8: RL with verifiable rewards — GRPO, RLOO and Dr. GRPO
#
# Lesson 7 needed a reward model because "a good answer" was a person's judgement. For
# arithmetic, code or a proof checker the reward is a *program*: 1 if the answer is right,
# 0 otherwise. The methods that train today's reasoning models sample a group of G answers
# per prompt, score each with the verifier, and use the group itself as the baseline: no
# critic, no reward model. Each of them is lesson 4's policy gradient with another Ψ:
#
# | method | Ψ of answer i (every one of its tokens) | aggregation |
# |---|---|---|
# | REINFORCE | r_i | sum / constant |
# | RLOO (Ahmadian et al. 2024) | r_i − mean of the *other* answers | sum / constant |
# | Dr. GRPO (Liu et al. 2025) | r_i − mean of the group | sum / constant |
# | GRPO (Shao et al. 2024) | (r_i − mean) / std of the group | mean per answer |
#
# In this notebook:
#
# 1. the task: two-digit addition and its verifier;
# 2. Ψ of one group, and the three ways of averaging a batch of answers;
# 3. the variance lesson continued: an LM small enough to enumerate every answer, its exact
#    gradient, and which estimators are unbiased;
# 4. generation with a key/value cache;
# 5. a short SFT warm start, then GRPO: held-out pass@1 and pass@k before and after;
# 6. the functions you will write, and exercises.
#
# The values in the next cell run the notebook in about a minute on two CPU cores. The
# claim "RL lifts held-out pass@1 by ≥ 30 points" is a statement over seeds, made on the
# lesson page with `rlcourse rlvr seeds` (300 iterations each); here one seed runs a third of that.

# %% tags=["parameters"]
SEED = 0
SFT_EPOCHS = 3               # passes of the SFT warm start over the 9,500 training problems
RL_ITERATIONS = 100          # GRPO iterations of 32 prompts × 8 answers
EVAL_PROMPTS = 200           # held-out prompts for pass@k
EVAL_SAMPLES = 16            # answers per prompt (pass@k for k ≤ 16)
EXACT_DRAWS = 4_000          # batches drawn per estimator in the exact-gradient study

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch

from rlcourse.pg import psi
from rlcourse.rlhf.batching import generate, left_padded
from rlcourse.rlhf.sft import SFTConfig, train_sft
from rlcourse.rlvr import arithmetic, exact
from rlcourse.rlvr.grpo import train_grpo
from rlcourse.rlvr.pipeline import RLVRConfig, build, heldout_pass, rl_config, verifier

torch.set_num_threads(1)
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. The task and its verifier
#
# A prompt is two 2-digit numbers, one token per digit; the answer is the sum. The
# verifier parses the answer and compares: no model, nothing to exploit. 500 of the
# 10,000 problems are held out; neither SFT nor RL ever sees them.

# %%
train, heldout = arithmetic.split(2, 500)
p = heldout[0]
for answer in (arithmetic.answer(*arithmetic.operands(p)), "1 0", "", "1 1 2 3"):
    print(f"{p!r:14} → {answer!r:10} reward {arithmetic.verify(p, answer)}")
print(len(train), "training problems,", len(heldout), "held out")

# %% [markdown]
# ## 2. Ψ of a group, and how a batch is averaged
#
# Four answers to one prompt, two right. The group mean is 0.5; RLOO compares each answer
# with the mean of the three others (G/(G−1) times the group mean's Ψ); GRPO also divides
# by the group's standard deviation. A group whose answers all score the same gives Ψ = 0:
# nothing is learned from a prompt that is always (or never) solved.

# %%
rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
for name, f in [("REINFORCE", psi.no_baseline), ("group mean", psi.group_mean_baseline),
                ("RLOO", psi.rloo_advantages), ("GRPO", psi.grpo_advantages)]:
    print(f"{name:11}", f(rewards).numpy().round(3).tolist())

# %% [markdown]
# Every token of answer i carries Ψ_i; the loss is Σ w_{i,t} ℓ_{i,t}. GRPO takes a mean over
# each answer's tokens (w = 1/(B·|y_i|)), DAPO one mean over the batch's tokens, Dr. GRPO a
# sum over a constant (w = 1/(B·C)). Answers of 3, 1 and 4 tokens:

# %%
mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float64)
for aggregation in psi.AGGREGATIONS:
    print(f"{aggregation:14}", psi.token_weights(mask, aggregation, constant=4).numpy().round(3).tolist())

# %% [markdown]
# ## 3. Which estimators are unbiased? An LM we can enumerate
#
# A one-layer GPT-2 whose answers are at most three tokens from {a, b, <eos>}: 15 answers per
# prompt, so J(θ) = mean over prompts of Σ_y π(y|x) R(x, y) and its gradient are finite sums.
# Three prompts of different difficulty. For each estimator we draw many batches (G = 4 per
# prompt) and compare the mean estimate with the exact gradient: `scale` is the best fit
# E ĝ ≈ α ∇J, `bias` what is left (relative), `noise` the Monte-Carlo floor of that number,
# `variance` the batch's noise relative to the signal, `weight x/y/z` how much each prompt
# counts, and `length_drift` how fast the mean answer length moves along the estimate.

# %%
model, tokenizer = exact.toy_model(SEED)
enumerated = exact.enumerate_policy(model, tokenizer)
print("success rate per prompt:", {k: round(v, 3) for k, v in exact.success_rates(enumerated).items()})
table = exact.bias_variance_table(enumerated, group_size=4, draws=EXACT_DRAWS, seed=SEED)
table.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
rows = table[table.estimator != "exact"]
axes[0].barh(rows.estimator, rows.bias, color="C3", label="bias")
axes[0].barh(rows.estimator, rows.noise, color="k", alpha=0.4, label="Monte-Carlo floor")
axes[0].set_xlabel("‖E ĝ − α∇J‖ / ‖α∇J‖")
axes[0].legend()
axes[1].barh(rows.estimator, rows.variance, color="C0")
axes[1].set_xlabel("tr Cov(ĝ/α) / ‖∇J‖²")
axes[1].set_yticklabels([])
fig.suptitle("Each estimator against the exact gradient (G = 4)")
fig.tight_layout()

# %% [markdown]
# What the table says, measured:
#
# * REINFORCE, RLOO, the group mean (Dr. GRPO) and the token-mean keep the direction of ∇J:
#   their bias is at the Monte-Carlo floor. RLOO's scale is 1/C exactly; the group mean's is
#   (G − 1)/G of that, because r_i sits in its own baseline. The baselines cut the variance
#   below REINFORCE's.
# * Dividing by each answer's length (sequence-mean, GRPO's aggregation) is biased: tokens of
#   short answers weigh more than tokens of long ones, the prompt weights go wrong, and the
#   answer length moves at a rate the exact gradient does not ask for (`length_drift`).
# * Dividing by the group's std re-weights prompts by how often they are solved; with binary
#   rewards and small G the effect is small (for G = 3 it vanishes: σ is the same for one or
#   two right answers) and grows with G (the unit tests enumerate G = 6).

# %% [markdown]
# ## 4. Generation with a key/value cache
#
# GRPO spends most of its time sampling. Without a cache every new token runs the whole
# prefix again (O(L²) per answer); with `past_key_values` the prompt runs once and each step
# feeds one token. Same generator, same tokens:

# %%
lm, tok = build(RLVRConfig(seed=SEED))
ids, attention = left_padded(tok, heldout[:64])
out = {}
for cache in (False, True):
    start = time.process_time()
    out[cache] = generate(lm, ids, attention, 8, tok.eos_token_id, tok.pad_token_id,
                          generator=torch.Generator().manual_seed(0), use_cache=cache)
    print(f"use_cache={cache}: {time.process_time() - start:.3f} s CPU")
print("same tokens:", torch.equal(out[False][0], out[True][0]))

# %% [markdown]
# At 4 new tokens the cache saves little; at hundreds it is the difference between minutes
# and hours (the lesson page has GPT-2-small's numbers).
#
# ## 5. SFT warm start, then GRPO
#
# A fresh tiny GPT-2 (two layers, 64 wide) learns the format and some of the arithmetic from
# three epochs of correct sums. Then RL with the verifier's 0/1 reward, on the training
# problems, and pass@k on held-out ones before and after.

# %%
config = RLVRConfig(seed=SEED, iterations=RL_ITERATIONS, eval_prompts=EVAL_PROMPTS, eval_samples=EVAL_SAMPLES)
evaluation = heldout[:EVAL_PROMPTS]
torch.manual_seed(SEED)
sft_log = train_sft(lm, tok, arithmetic.sft_rows(train),
                    SFTConfig(lr=3e-3, epochs=SFT_EPOCHS, batch_size=64, max_length=16, seed=SEED))
before = heldout_pass(lm, tok, evaluation, config)
print("after SFT:", {k: round(v, 3) for k, v in before.items()})

# %%
curve = {}


def every_25(iteration, policy):
    if iteration % 25 == 0:
        curve[iteration] = heldout_pass(policy, tok, evaluation, config, n=4)["pass@1"]


start = time.process_time()
log = train_grpo(lm, tok, train, verifier(), rl_config(config), callback=every_25)
after = heldout_pass(lm, tok, evaluation, config)
print(f"GRPO: {time.process_time() - start:.0f} s CPU")
print("after GRPO:", {k: round(v, 3) for k, v in after.items()})
print(f"lift of held-out pass@1: {after['pass@1'] - before['pass@1']:+.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].plot(log.iteration, log.accuracy.rolling(10, min_periods=1).mean(), label="training answers (10-it. mean)")
axes[0].plot([0, *curve], [before["pass@1"], *curve.values()], "o-", label="held-out pass@1")
axes[0].set_xlabel("GRPO iteration")
axes[0].set_ylabel("share correct")
axes[0].legend()
ks = [int(k.split("@")[1]) for k in before]
axes[1].plot(ks, list(before.values()), "o-", label="after SFT")
axes[1].plot(ks, list(after.values()), "o-", label="after GRPO")
axes[1].set_xscale("log", base=2)
axes[1].set_xlabel("k")
axes[1].set_ylabel("held-out pass@k")
axes[1].legend()
fig.tight_layout()

# %% [markdown]
# Read the right panel as Yue et al. (2025) do: RL lifts pass@1 a lot, pass@16 much less.
# The SFT model could already sample most right answers; RL moved probability onto them.
# Over five seeds (the lesson page) pass@16 moved by at most ±0.03 where the warm start was
# good, fell for the seed whose RL failed, and rose clearly (0.645 to 0.78) only for a seed
# that started low.
#
# `log.no_signal` is the share of groups whose answers all scored the same: those prompts
# teach nothing. As the model improves, more groups are all right and the signal thins
# (DAPO's "dynamic sampling" refills the batch with groups that have some spread).

# %%
log[["iteration", "accuracy", "no_signal", "response_length", "approx_kl", "clipfrac"]].iloc[::20]

# %% [markdown]
# ## 6. What you write, and exercises
#
# In `rlcourse/pg/psi.py`: `group_mean_baseline`, `rloo_advantages`, `grpo_advantages`,
# `token_weights`; in `rlcourse/rlvr/grpo.py`: `k3` and `grpo_loss` (lesson 6's clipped
# surrogate with the weights inside Ψ). `pytest tests/graded/test_lesson8.py` grades them.
#
# Exercises:
#
# 1. Run `rlcourse rlvr train --method rloo` and `--method dr_grpo` and compare the lift with
#    GRPO's. Over how many seeds would you need to compare them before believing a difference?
# 2. In the exact study, raise G to 8 and watch the `weight` columns of "std, constant".
# 3. Add `grpo.kl_coef=0.04` (k3 in the loss) and `grpo.kl_in=reward`: what happens to the
#    lift and to `kl` in the log?
# 4. Set `format_weight=0.1`. Does a format reward help a model that already writes numbers?
