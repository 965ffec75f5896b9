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
# # Lesson 7: RLHF and DPO: the language model as a policy
#
# Lessons 4 to 6 trained policies that balance poles and swing up pendulums. Here the
# policy is a language model, an action is the next token, and the reward is what a
# person thinks of the answer. The recipe of InstructGPT has three stages: supervised
# fine-tuning (SFT) on demonstrations, a reward model fitted to comparisons, and PPO
# against that reward model with a KL penalty to the SFT model. Direct preference
# optimisation (DPO) reaches the optimum of the same objective from the comparisons
# alone. In this lesson:
#
# 1. the toy task: prompts that ask to praise or to criticise, a reward we can compute,
#    and the SFT corpus;
# 2. a tiny GPT-2 as a policy: the log-probability of a response, and why it does not
#    depend on padding;
# 3. SFT, and the moment the model starts to read its instruction;
# 4. preferences with label noise, the best accuracy they allow, and a reward model;
# 5. DPO from the SFT model: its log, its reward, its win rate and its KL;
# 6. PPO-RLHF with the ground truth and with the learned reward model, the KL penalty at
#    work, and reward hacking;
# 7. the reward-versus-KL frontier of the DPO paper, on the toy task;
# 8. the functions you will write, and exercises.
#
# The derivations are on the lesson page; this notebook runs them. Everything is
# `rlcourse.rlhf`: the same GAE and clipped objective as lessons 5 and 6, now on a grid
# of tokens. The next cell holds the budgets. The values given run the whole notebook in
# about a minute on two CPU cores; the test suite replaces them with tiny ones.
#
# The runs here are seeded with `SEED` (0; where several are averaged, `SEED`, `SEED + 1`,
# …), and a number quoted below "when this notebook was written" comes from those seeds on
# our machine: it shows what happened, not how often it happens. How often is a statement
# over many seeds: `docs/benchmarks.md` gives ten seeds' interquartile mean, 95%
# confidence interval and solved fraction for every algorithm on its lesson's task.

# %% tags=["parameters"]
SEED = 0
SFT_ROWS = 4_000             # demonstrations in the SFT corpus
SFT_EPOCHS = 4               # passes over them (batches of 32: 500 steps)
PAIRS = 2_000                # labelled preference pairs for the reward model and DPO
TEST_PAIRS = 1_000           # held-out pairs
RM_EPOCHS = 4                # passes of the reward model over PAIRS (batches of 32: 250 steps)
DPO_EPOCHS = 2               # passes of DPO over PAIRS
PPO_ITERATIONS = 40          # PPO-RLHF iterations of 32 sampled responses each
EVAL_PROMPTS = 256           # held-out prompts for every evaluation
DPO_SWEEP_BETAS = [0.05, 0.5]    # extra DPO runs for the frontier (section 7)
PPO_SWEEP_KL_COEFS = [0.1]       # extra PPO runs with the ground truth for the frontier

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rlcourse.rlhf import task
from rlcourse.rlhf.batching import encode, response_text, sample
from rlcourse.rlhf.data import toy_pairs
from rlcourse.rlhf.dpo import DPOConfig, reference_logprobs, train_dpo
from rlcourse.rlhf.evaluate import k3_kl, sequence_kl, win_rate
from rlcourse.rlhf.model import frozen_copy, sequence_logprobs, tiny_gpt2, token_logprobs
from rlcourse.rlhf.ppo import PPOConfig, ground_truth_score, reward_model_score, train_ppo
from rlcourse.rlhf.reward import RewardConfig, RewardModel, evaluate_reward_model, train_reward
from rlcourse.rlhf.sft import SFTConfig, train_sft
from rlcourse.rlhf.tokenizer import WordTokenizer

# The models are tiny: torch's worker threads would only wait on each other.
torch.set_num_threads(1)

NOISE_TEMPERATURE = 0.1      # T of the simulated labeller (section 4)
MAX_NEW_TOKENS = 10          # the longest sampled response: 8 words and <eos> fit
DPO_BETA = 0.2               # β of the main DPO run (section 5)
PPO_KL_COEF = 0.05           # β of the main PPO runs (section 6)
seconds = {}                 # wall-clock time of each stage, shown at the end


def rng(stream):
    """A numpy generator for one use (``stream``), derived from SEED."""
    return np.random.default_rng([SEED, stream])


def evaluate(model, prompts=None):
    """Sample one response per held-out prompt; return (responses, ground-truth rewards, batch).

    Plain sampling at temperature 1 with a fixed generator, so every model answers the same
    prompts under the same random numbers.
    """
    prompts = eval_prompts if prompts is None else prompts
    batch = sample(model, tokenizer, prompts, MAX_NEW_TOKENS, generator=torch.Generator().manual_seed(SEED))
    responses = response_text(tokenizer, batch)
    return responses, np.array([task.reward(p, y) for p, y in zip(prompts, responses)]), batch


def by_instruction(prompts, rewards):
    """Mean reward of the praise prompts and of the criticise prompts."""
    signs = np.array([task.prompt_sign(p) for p in prompts])
    rewards = np.asarray(rewards, dtype=float)
    return {instruction: rewards[signs == sign].mean() if (signs == sign).any() else np.nan
            for instruction, sign in task.INSTRUCTIONS.items()}


# %% [markdown]
# ## 1. The task: praise or criticise
#
# A prompt is an instruction word and a topic, `praise the food` or `criticise the old
# film`; a response is a few words. The ground-truth reward is the response's sentiment,
# signed by the instruction:
#
# $$r(x, y) = s(x)\, \frac{\#\text{positive}(y) - \#\text{negative}(y)}{|y|} \in [-1, 1],
# \qquad s(x) = \pm 1 \text{ for praise / criticise} .$$
#
# The sign is what makes the task a test of reading. The same response scores $+r$ after
# one instruction and $-r$ after the other, so a model that just writes more positive words,
# whatever it was asked, gains nothing on average. In the IMDb task of the DPO paper the
# reward is plain sentiment, and shifting word frequencies is enough.
#
# The tokenizer has one token per word, and four special tokens first: `<pad>`, `<bos>`,
# `<eos>` (the policy's way to stop) and `<sep>` (between prompt and response).

# %%
tokenizer = WordTokenizer.toy()
examples = ["great lovely superb", "the food was quite bad", "awful dull and boring", "the food"]
print(tokenizer, "with special tokens", tokenizer.tokens[:4])
print("'praise the food' →", tokenizer.encode("praise the food"))
pd.DataFrame({instruction: [task.reward(f"{instruction} the food", y) for y in examples]
              for instruction in task.INSTRUCTIONS},
             index=pd.Index(examples, name="response")).round(3)

# %% [markdown]
# The SFT corpus is what the demonstrators wrote: each word is, independently, of the
# requested sentiment with probability 0.2, of the opposite one with probability 0.4, and
# neutral otherwise. The demonstrations follow their instruction, but badly: the expected
# reward is $0.2 - 0.4 = -0.2$. SFT will imitate that, and the later stages have room to
# improve on their teachers.

# %%
corpus = task.sft_corpus(SFT_ROWS, rng(1))
corpus_rewards = np.array([task.reward(row["prompt"], row["completion"]) for row in corpus])
print(f"{len(corpus)} demonstrations, mean reward {corpus_rewards.mean():+.3f} (expected −0.2); "
      f"by instruction: " + ", ".join(f"{k} {v:+.3f}" for k, v in
                                     by_instruction([r["prompt"] for r in corpus], corpus_rewards).items()))
pd.DataFrame(corpus[:8]).assign(reward=corpus_rewards[:8].round(3))

# %% [markdown]
# ## 2. The language model as a policy
#
# The policy is GPT-2, as small as it gets: 2 layers, 2 heads, 32 dimensions, randomly
# initialised (`tiny_gpt2`; the same code loads the real GPT-2 with `load_model("gpt2")`).
# One change: GPT-2 draws its initial weights with standard deviation 0.02, a value chosen
# for 768 dimensions. At 32 dimensions that makes every attention score almost 0 at the
# start, and the model takes a long time to learn to look at one particular token, which is
# exactly what this task needs (section 3). `make_policy` multiplies the initial weights
# by 5, as if GPT-2 had been configured with `initializer_range=0.1`. A sequence
# is `<bos> prompt <sep> response <eos>`. The state is everything so far, the action is
# the next token, and the log-probability of a response is the sum of its tokens' log-
# probabilities, counted on the **response mask** only: the prompt was given, padding is
# not text, and `<eos>` is an action (deciding to stop):
#
# $$\log \pi_\theta(y \mid x) = \sum_t m_t \log \pi_\theta(x_t \mid x_{<t}) .$$
#
# The table shows one sequence of a right-padded batch, with each token's log-probability
# under the untrained model, in the column of the token it scores. The padding columns hold
# numbers too, which mean nothing: the masks are what keep them out.

# %%
INIT_SCALE = 5.0   # initial weights with standard deviation 5 × 0.02 = 0.1 (see the text below)


def make_policy(seed):
    """tiny_gpt2's 2-layer, 2-head, 32-dimensional GPT-2, its initial weights scaled by INIT_SCALE."""
    model = tiny_gpt2(len(tokenizer), n_embd=32, n_layer=2, n_head=2, seed=seed,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:          # embeddings and weight matrices; not LayerNorm's or the biases
                weight.mul_(INIT_SCALE)
    return model


untrained = make_policy(SEED).eval()
print(f"{sum(p.numel() for p in untrained.parameters()):,} parameters")

batch = encode(tokenizer, ["praise the food", "criticise the old film"],
               ["great and lovely", "the film was dull and very boring"])
with torch.no_grad():
    logp = token_logprobs(untrained, batch.input_ids, batch.attention_mask)
    seq_logp = sequence_logprobs(untrained, *batch)
row = 0
pd.DataFrame({
    "token": [tokenizer.tokens[i] for i in batch.input_ids[row].tolist()],
    "attention_mask": batch.attention_mask[row].tolist(),
    "response_mask": batch.response_mask[row].tolist(),
    "log π(token | before)": [np.nan] + logp[row].tolist(),
}).round(3).T

# %%
by_hand = (logp[row] * batch.response_mask[row, 1:]).sum().item()
length = int(batch.response_mask[row].sum())
print(f"log π(y | x) = {seq_logp[row].item():.3f} (sum of the masked column: {by_hand:.3f}); "
      f"a uniform policy would give {length} × log(1/{len(tokenizer)}) = {-length * math.log(len(tokenizer)):.3f}")

# Padding invariance: the first sequence alone, in the batch next to a longer one, and with
# five extra columns of padding. Position ids come from the attention mask.
alone = encode(tokenizer, ["praise the food"], ["great and lovely"])
padded = type(alone)(*(torch.nn.functional.pad(t, (0, 5), value=0) for t in alone))
with torch.no_grad():
    values = [sequence_logprobs(untrained, *b)[0].item() for b in (alone, batch, padded)]
print("alone {:.6f}, in a batch {:.6f}, with extra padding {:.6f}".format(*values))

# %% [markdown]
# The three numbers agree to float precision (a test checks it): the padding is masked
# out of the attention and of the sum, and the position of each token is counted from the
# attention mask, so the same response gets the same score wherever it sits. This matters
# because every later stage compares log-probabilities of the same response under two
# models, or in two batches, and differences of sums of a dozen numbers are small.
#
# The untrained policy is close to the uniform one. Its samples are word salad, including
# special tokens and instruction words where no demonstrator would put them:

# %%
eval_prompts = task.sample_prompts(EVAL_PROMPTS, rng(2))
responses, rewards, _ = evaluate(untrained)
print(f"mean reward of the untrained policy: {rewards.mean():+.3f}")
pd.DataFrame({"prompt": eval_prompts[:5], "response": responses[:5]})

# %% [markdown]
# ## 3. Supervised fine-tuning
#
# SFT is maximum likelihood on the demonstrations: `train_sft` minimises the mean cross-
# entropy over the response tokens of each batch (`sft_loss`). The callback samples
# responses to 128 held-out prompts a few times during training and scores them with the
# ground truth, split by instruction.

# %%
sft_model = make_policy(SEED)
sft_config = SFTConfig(epochs=SFT_EPOCHS, lr=3e-3, seed=SEED)
sft_steps = math.ceil(SFT_ROWS / sft_config.batch_size) * SFT_EPOCHS
probe_prompts = eval_prompts[:128]
probe_steps = set(np.linspace(0, sft_steps, 9).round().astype(int).tolist())
sft_curve = []


def sft_probe(step, model):
    if step in probe_steps:
        model.eval()
        _, probe_rewards, _ = evaluate(model, probe_prompts)
        model.train()
        sft_curve.append({"step": step, "mean": probe_rewards.mean(), **by_instruction(probe_prompts, probe_rewards)})


sft_probe(0, sft_model)
start = time.perf_counter()
sft_log = train_sft(sft_model, tokenizer, corpus, sft_config, callback=sft_probe)
seconds["SFT"] = time.perf_counter() - start
sft_model.eval()
sft_curve = pd.DataFrame(sft_curve)

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
axes[0].plot(sft_log["step"], sft_log["loss"], lw=0.5, alpha=0.4)
axes[0].plot(sft_log["step"], sft_log["loss"].ewm(span=50).mean(), label="moving mean (50 steps)")
axes[0].set_ylim(top=min(sft_log["loss"].max(), 5.0))
axes[0].set_title("SFT loss (cross-entropy per response token)")
for column, style in (("mean", "k-o"), ("praise", "C2--o"), ("criticise", "C3--o")):
    axes[1].plot(sft_curve["step"], sft_curve[column], style, ms=4, label=column)
axes[1].axhline(-0.2, color="gray", ls=":", label="the corpus, −0.2")
axes[1].axhline(0, color="k", lw=0.5)
axes[1].set_title("ground-truth reward of samples (128 held-out prompts)")
for ax in axes:
    ax.set_xlabel("SFT step")
    ax.legend(fontsize="small")
fig.tight_layout()
plt.show()

sft_responses, sft_rewards, _ = evaluate(sft_model)
_, sft_probe_rewards, _ = evaluate(sft_model, probe_prompts)
print(f"{sft_steps} steps in {seconds['SFT']:.1f} s; final loss {sft_log['loss'].tail(50).mean():.3f}; "
      f"mean reward on {EVAL_PROMPTS} held-out prompts {sft_rewards.mean():+.3f}; by instruction: "
      + ", ".join(f"{k} {v:+.3f}" for k, v in by_instruction(eval_prompts, sft_rewards).items()))
pd.DataFrame({"prompt": eval_prompts[:6], "response": sft_responses[:6], "reward": sft_rewards[:6].round(3)})

# %% [markdown]
# The loss falls fast at first, to about 3.85 nats per token: the model learns the
# vocabulary of responses, their length and when to stop. Samples of that stage look like
# the corpus, but score about 0 after either instruction: the model writes the corpus's
# average mix, 30% positive and 30% negative words, without looking at the first word of
# the prompt. Reading the instruction is worth little to the loss. The difference between
# the mixes 0.2/0.4 and 0.3/0.3 is about 0.03 nats per token, and before the model can
# collect it, attention from every response position to one token of the prompt has to be
# learned. When this notebook was written the reward of both instructions reached the
# corpus's −0.2 after about 250 steps, and the final model scored −0.19 on held-out
# prompts, −0.18 after praise and −0.20 after criticise.
#
# This step is where the initial weights matter. With GPT-2's own 0.02 (`INIT_SCALE = 1`)
# and otherwise the same settings, five of the six models we tried sat at a reward of 0
# for 500 to 1,000 steps before they found the instruction, and the sixth had not found
# it after 1,000. With 0.1, five of six found it within 250 steps, and the sixth was
# halfway there (−0.13) after 500. A plateau followed by a sudden step is common when a
# network has to learn to route information before it can use it. It is worth checking in
# every run: an SFT model that does not read its instruction gives the later stages little
# to build on, and the reward model and DPO of the next sections have the same step to
# take.

# %% [markdown]
# ## 4. Preferences and the reward model
#
# The preference data are made the DPO paper's way: two responses to the same prompt,
# labelled by a simulated labeller. The labeller is noisy in the Bradley–Terry way: it
# prefers $a$ to $b$ with probability
#
# $$P(a \succ b) = \sigma\big((r(x, a) - r(x, b)) / T\big), \qquad T = 0.1 .$$
#
# (`data.toy_pairs` draws the two responses from the corpus's distribution, redrawing
# ties; the pipeline of the package draws them from the SFT model.) No predictor can
# agree with such labels more often than $\max(p, 1 - p)$ on a pair, and the mean of that
# over a data set, `bt_accuracy_ceiling`, is the yardstick for any reward model.

# %%
pairs = toy_pairs(PAIRS, rng(3), noise_temperature=NOISE_TEMPERATURE)
test_pairs = toy_pairs(TEST_PAIRS, rng(4), noise_temperature=NOISE_TEMPERATURE)


def true_rewards(rows):
    """Ground-truth rewards of the chosen and the rejected responses of preference rows."""
    return (np.array([task.reward(r["prompt"], r["chosen"]) for r in rows]),
            np.array([task.reward(r["prompt"], r["rejected"]) for r in rows]))


test_chosen, test_rejected = true_rewards(test_pairs)
ceiling = task.bt_accuracy_ceiling(test_chosen, test_rejected, NOISE_TEMPERATURE)
chosen, rejected = true_rewards(pairs[:6])
print(f"held-out pairs: accuracy ceiling {ceiling:.3f}; the ground truth itself agrees with "
      f"{(test_chosen > test_rejected).mean():.3f} of the labels")
pd.DataFrame(pairs[:6]).assign(
    r_chosen=chosen.round(3), r_rejected=rejected.round(3),
    p_chosen=task.preference_probability(chosen, rejected, NOISE_TEMPERATURE).round(3))

# %% [markdown]
# The ceiling is about 0.91 here: one label in eleven or so goes against the true reward,
# mostly on pairs whose rewards are close. The last column is the probability with which
# the labeller made the choice in that row.
#
# The reward model is a GPT-2 body with a linear head on the hidden state of the last real
# token, the one position that has read the prompt and the whole response. Its body is a
# copy of the SFT model's (`RewardModel.from_lm`), as in InstructGPT. `train_reward`
# minimises the Bradley–Terry loss $-\log \sigma(r_\phi(x, y_w) - r_\phi(x, y_l))$.

# %%
torch.manual_seed(SEED)                  # the head's initial weights
rm = RewardModel.from_lm(sft_model)
start = time.perf_counter()
rm_log = train_reward(rm, tokenizer, pairs, RewardConfig(epochs=RM_EPOCHS, lr=1e-3, seed=SEED))
seconds["reward model"] = time.perf_counter() - start
rm.eval()
rm_test = evaluate_reward_model(rm, tokenizer, test_pairs)
rm_score = reward_model_score(rm, tokenizer)

# The scores of every held-out response against its true reward.
scatter_prompts = [r["prompt"] for r in test_pairs] * 2
scatter_responses = [r["chosen"] for r in test_pairs] + [r["rejected"] for r in test_pairs]
scatter_scores = rm_score(scatter_prompts, scatter_responses).numpy()
scatter_truth = np.concatenate([test_chosen, test_rejected])
scatter_sign = np.array([task.prompt_sign(p) for p in scatter_prompts])

fig, axes = plt.subplots(1, 3, figsize=(16, 4))
window = max(1, len(rm_log) // 10)
axes[0].plot(rm_log["step"], rm_log["loss"].rolling(window, min_periods=1).mean())
axes[0].axhline(math.log(2), color="gray", ls=":", label="log 2 (no idea)")
axes[0].set_title("Bradley–Terry loss (moving mean)")
axes[1].plot(rm_log["step"], rm_log["accuracy"].rolling(window, min_periods=1).mean(), label="training minibatches")
axes[1].axhline(ceiling, color="k", ls="--", label=f"ceiling {ceiling:.3f}")
axes[1].axhline(rm_test["accuracy"], color="C1", label=f"held out {rm_test['accuracy']:.3f}")
axes[1].set_title("accuracy")
for ax in axes[:2]:
    ax.set_xlabel("reward-model step")
    ax.legend(fontsize="small")
for sign, name, color in ((1, "praise", "C2"), (-1, "criticise", "C3")):
    chosen_rows = scatter_sign == sign
    axes[2].scatter(scatter_truth[chosen_rows], scatter_scores[chosen_rows], s=4, alpha=0.4, color=color,
                    label=f"{name} prompts")
axes[2].set_xlabel("ground-truth reward r(x, y)")
axes[2].set_ylabel("r_φ(x, y)")
axes[2].set_title("learned score against the truth (held-out responses)")
axes[2].legend(fontsize="small")
fig.tight_layout()
plt.show()

slope = {name: np.polyfit(scatter_truth[scatter_sign == sign], scatter_scores[scatter_sign == sign], 1)
         for name, sign in task.INSTRUCTIONS.items() if (scatter_sign == sign).sum() > 1}
print(f"held-out accuracy {rm_test['accuracy']:.3f} = {rm_test['accuracy'] / ceiling:.2f} of the ceiling "
      f"({seconds['reward model']:.1f} s); " + "; ".join(
          f"{name}: r_φ ≈ {a:.1f} r {b:+.1f}" for name, (a, b) in slope.items()))

# %% [markdown]
# When this notebook was written the reward model reached 0.86 on held-out pairs, 0.95 of
# the ceiling, after four epochs (250 steps). Its loss stayed at $\log 2$ for the first 140
# steps: it too had to learn that the first word of the prompt flips the meaning of every
# other word. The SFT body helps, but it reads the instruction to choose words, never to
# judge them, and the head reads the hidden state of `<eos>`, a position whose output SFT
# never trained. The step size matters here. With SFT's $3 \times 10^{-3}$ instead of
# $10^{-3}$, two of six initialisations of the head were still below 0.75 after 250 steps;
# with $10^{-3}$ all six reached 0.86 or 0.87. From an untrained body (`make_policy(s)`)
# instead of the SFT model's, three runs reached 0.64, 0.80 and 0.83 in the same 250
# steps: the SFT body does not make the task possible, it makes the wait shorter.
#
# The right panel shows what Bradley–Terry does and does not pin down.
#
# - **The scale.** The score grows roughly linearly with the truth, by about 6 per unit
#   (the fit printed above). A perfectly fitted Bradley–Terry model would have slope
#   $1/T = 10$: the noisier the labels, the flatter the learned reward.
# - **The offset.** The two instructions' clouds sit at different heights, about 1 apart
#   here, and nothing in the data could have told them to agree: adding any function of
#   the prompt alone, $r_\phi(x, y) + f(x)$, changes no comparison, and the loss never
#   compares two prompts. Scores of different prompts cannot be compared, and a batch's
#   mean score says something about which prompts it drew. PPO does not mind: only
#   differences between responses to the same prompt move the policy, and its value
#   function learns each prompt's baseline.
# - **The edges.** Above a true reward of about 0.25 the score hardly grows. The pairs
#   come from the corpus's distribution, whose rewards average −0.2, and few of them
#   compare two good responses: the data say little about what is better than good, and
#   nothing about responses unlike the corpus's. Section 6 shows what PPO makes of that.

# %% [markdown]
# ## 5. DPO from the SFT model
#
# DPO fits the same Bradley–Terry likelihood, but with the policy's **implicit reward**
# $\hat r_\theta(x, y) = \beta \log \frac{\pi_\theta(y \mid x)}{\pi_\text{ref}(y \mid x)}$
# in place of $r_\phi$:
#
# $$L_\text{DPO}(\theta) = -\mathbb E\Big[\log \sigma\Big(\beta \log \frac{\pi_\theta(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)}
# - \beta \log \frac{\pi_\theta(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)}\Big)\Big] .$$
#
# The reference is a frozen copy of the SFT model, and the policy starts as another copy.
# `train_dpo` computes the reference's log-probabilities of all pairs once, before the
# first step. The callback samples from the policy five times during training, for the
# frontier of section 7.

# %%
def run_dpo(beta):
    """DPO with ``beta`` from the SFT model; returns (policy, log, curve of probe evaluations)."""
    policy, reference = frozen_copy(sft_model).requires_grad_(True), frozen_copy(sft_model)
    config = DPOConfig(beta=beta, lr=3e-3, epochs=DPO_EPOCHS, seed=SEED)
    steps = math.ceil(PAIRS / config.batch_size) * DPO_EPOCHS
    curve = [{"step": 0, "reward": sft_probe_rewards.mean(), "kl": 0.0}]
    probes = set(np.linspace(0, steps, 6).round().astype(int).tolist()[1:])

    def probe(step, model):
        if step in probes:
            model.eval()
            _, probe_rewards, probe_batch = evaluate(model, probe_prompts)
            curve.append({"step": step, "reward": probe_rewards.mean(),
                          "kl": sequence_kl(model, reference, probe_batch)})
            model.train()

    start = time.perf_counter()
    log = train_dpo(policy, reference, tokenizer, pairs, config, callback=probe)
    seconds[f"DPO β={beta}"] = time.perf_counter() - start
    return policy.eval(), log, pd.DataFrame(curve)


dpo_model, dpo_log, dpo_curve = run_dpo(DPO_BETA)

fig, axes = plt.subplots(1, 3, figsize=(16, 4))
window = max(1, len(dpo_log) // 10)
smooth = lambda column: dpo_log[column].rolling(window, min_periods=1).mean()  # noqa: E731
axes[0].plot(dpo_log["step"], smooth("loss"))
axes[0].axhline(math.log(2), color="gray", ls=":", label="log 2 (π = π_ref)")
axes[0].set_title(f"DPO loss, β = {DPO_BETA}")
axes[1].plot(dpo_log["step"], smooth("chosen_reward"), color="C2", label="chosen: β log π/π_ref (y_w)")
axes[1].plot(dpo_log["step"], smooth("rejected_reward"), color="C3", label="rejected: β log π/π_ref (y_l)")
axes[1].plot(dpo_log["step"], smooth("reward_margin"), "k--", label="margin")
axes[1].axhline(0, color="k", lw=0.5)
axes[1].set_title("implicit rewards of the training pairs")
axes[2].plot(dpo_log["step"], smooth("reward_accuracy"), label="training minibatches")
axes[2].axhline(ceiling, color="k", ls="--", label=f"ceiling {ceiling:.3f}")
axes[2].set_title("implicit-reward accuracy")
for ax in axes:
    ax.set_xlabel("DPO step")
    ax.legend(fontsize="small")
fig.tight_layout()
plt.show()


@torch.no_grad()
def implicit_accuracy(policy, reference, rows):
    """Share of ``rows`` whose chosen response has the larger implicit reward under ``policy``."""
    policy_chosen, policy_rejected = reference_logprobs(policy, tokenizer, rows, 256)
    ref_chosen, ref_rejected = reference_logprobs(reference, tokenizer, rows, 256)
    return ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) > 0).float().mean().item()


print(f"DPO: {len(dpo_log)} steps in {seconds[f'DPO β={DPO_BETA}']:.1f} s; implicit-reward accuracy on the "
      f"held-out pairs {implicit_accuracy(dpo_model, sft_model, test_pairs):.3f} "
      f"(reward model {rm_test['accuracy']:.3f}, ceiling {ceiling:.3f})")

# %% [markdown]
# The loss starts at $\log 2$, where the policy is its reference and every implicit reward
# is 0 (so the accuracy starts at 0: a tie counts as wrong). The implicit reward of the
# chosen responses falls as well as the rejected one's: the loss only sees their
# difference, and probability taken from both goes to responses that are in no pair. All
# these numbers are about the training pairs; none says what the policy writes. For that we sample, and compare with the SFT model on the same prompts:
#
# - the mean **ground-truth reward** of the samples;
# - the **win rate** against the SFT model: the share of prompts on which the policy's
#   sample has the higher reward, ties counting half (`evaluate.win_rate`);
# - the **KL to the reference** in nats, estimated from the policy's own samples, with
#   `sequence_kl` (k1, the mean of $\sum_t \log \pi_\theta - \log \pi_\text{ref}$) and
#   `k3_kl` (Schulman's k3, never negative).

# %%
results = {}


def report(name, model):
    """Evaluate ``model`` on the held-out prompts against the SFT model; store and return the row."""
    responses, rewards, batch = evaluate(model)
    signs = by_instruction(eval_prompts, rewards)
    results[name] = {
        "ground-truth reward": rewards.mean(), "praise": signs["praise"], "criticise": signs["criticise"],
        "win rate vs SFT": win_rate(rewards, sft_rewards),
        "KL k1 (nats)": sequence_kl(model, sft_model, batch), "KL k3 (nats)": k3_kl(model, sft_model, batch),
        "words per response": np.mean([len(y.split()) for y in responses]),
        "empty responses": np.mean([y == "" for y in responses]),
    }
    return responses, rewards


report("SFT", sft_model)
dpo_responses, dpo_rewards = report(f"DPO β={DPO_BETA}", dpo_model)
pd.DataFrame(results).T.round(3)

# %%
pd.DataFrame({"prompt": eval_prompts[:6], "SFT": sft_responses[:6], "DPO": dpo_responses[:6],
              "reward": dpo_rewards[:6].round(3)})

# %% [markdown]
# When this notebook was written DPO raised the mean reward from −0.19 to 0.87, with a win
# rate of 0.998 against the SFT model (255 wins and a tie in 256 prompts), at a KL of 9.7
# nats by k1 (11.4 by k3). That is one seed. Over ten seeds of `rlcourse rlhf pipeline`
# (its SFT trains 8 epochs, DPO the same β), DPO gains an interquartile mean of 0.99 over
# SFT (95% CI 0.51 to 1.04), and on two seeds of ten it gains nothing because their SFT
# never learned to read the instruction (`docs/benchmarks.md`).
#
# That is a long way: $e^{9.7} \approx 16\,000$, so the policy's samples are, in geometric
# mean, sixteen thousand times likelier under the policy than under the reference. The
# praise and criticise columns rose together, so the policy reads its instruction; a
# shift of word frequencies could not raise both.
#
# DPO never sampled during training; the preference pairs were all it saw. Its implicit
# reward orders the held-out pairs about as well as the explicit reward model of section 4
# (0.858 against 0.861 when this notebook was written).

# %% [markdown]
# ## 6. PPO-RLHF
#
# The RL route samples from the policy and rewards what it wrote. `train_ppo` is lesson 6's
# PPO on the token grid: each iteration samples 32 responses, scores each with
# `score(prompts, responses)`, pays every token $-\beta (\log \pi_\theta - \log
# \pi_\text{ref})$ and the last token the score as well, computes GAE with a value head on
# the policy's last hidden state ($\gamma = 1$, $\lambda = 0.95$), and takes 4 epochs of
# clipped-surrogate steps on minibatches of 16. The return of a response is
# $R(x, y) - \beta \sum_t \log \frac{\pi_\theta(y_t \mid s_t)}{\pi_\text{ref}(y_t \mid s_t)}$, whose expectation is
# the KL-regularised objective of the lesson page.
#
# Three runs from the SFT model, on the same prompts:
#
# - the ground truth as the score, $\beta = 0.05$: what PPO can do with the real reward
#   (the DPO paper's "PPO-GT");
# - the same with $\beta = 0.2$: the KL penalty at work;
# - the learned reward model as the score, $\beta = 0.05$: RLHF proper.
#
# The score function of every run also records the ground truth and the reward model's
# opinion of each batch, so the two can be compared along the way.

# %%
ppo_prompts = task.sample_prompts(1_000, rng(5))


def run_ppo(score_name, kl_coef):
    """PPO-RLHF from the SFT model against the ground truth or the reward model; returns (policy, log)."""
    policy, reference = frozen_copy(sft_model).requires_grad_(True), frozen_copy(sft_model)
    tracked = []

    def score(prompts, responses):
        truth, learned = ground_truth_score(prompts, responses), rm_score(prompts, responses)
        tracked.append((truth.mean().item(), learned.mean().item()))
        return truth if score_name == "ground truth" else learned

    config = PPOConfig(iterations=PPO_ITERATIONS, batch_size=32, minibatch_size=16, max_new_tokens=MAX_NEW_TOKENS,
                       lr=2e-3, kl_coef=kl_coef, seed=SEED)
    start = time.perf_counter()
    log = train_ppo(policy, reference, tokenizer, ppo_prompts, score, config)
    seconds[f"PPO {score_name} β={kl_coef}"] = time.perf_counter() - start
    log["ground_truth"], log["reward_model"] = zip(*tracked)
    return policy.eval(), log


ppo_runs = {(name, beta): run_ppo(name, beta)
            for name, beta in (("ground truth", PPO_KL_COEF), ("ground truth", 0.2), ("reward model", PPO_KL_COEF))}

fig, axes = plt.subplots(2, 2, figsize=(13, 7))
axes = axes.ravel()
window = max(1, PPO_ITERATIONS // 8)
for i, ((name, beta), (_, log)) in enumerate(ppo_runs.items()):
    style = dict(color=f"C{i}", label=f"score: {name}, β = {beta}")
    roll = lambda column: log[column].rolling(window, min_periods=1).mean()  # noqa: E731,B023
    axes[0].plot(log["iteration"], roll("ground_truth"), **style)
    axes[1].plot(log["iteration"], roll("reward_model"), **style)
    axes[2].plot(log["iteration"], roll("kl"), **style)
    axes[3].plot(log["iteration"], roll("response_length"), **style)
axes[0].axhline(results["SFT"]["ground-truth reward"], color="gray", ls=":", label="SFT")
axes[0].set_title("ground-truth reward of the samples")
axes[1].set_title("the reward model's score of the samples")
axes[2].set_title("KL[π_θ ‖ π_ref] of the samples, k1 (nats)")
axes[3].set_title("response length (tokens, with <eos>)")
for ax in axes:
    ax.set_xlabel("PPO iteration")
    ax.legend(fontsize="small")
fig.tight_layout()
plt.show()

for (name, beta), (model, _) in ppo_runs.items():
    report(f"PPO {name} β={beta}", model)
pd.DataFrame(results).T.round(3)

# %% [markdown]
# Each curve is a moving mean over a few iterations of the logged batches. When this
# notebook was written:
#
# - **With the ground truth and $\beta = 0.05$** the reward climbed steadily, to 0.89 on
#   the held-out prompts, as the policy learned to answer each instruction with its
#   sentiment, in fewer words (4 instead of 5.6: the reward is a share of the words, and
#   "superb" alone scores 1). The KL rose with it, to about 7 nats.
# - **With $\beta = 0.2$** the policy stayed near the SFT model: the KL levelled off at
#   about 1 nat and the reward at about 0.15. Dropping some of the opposed words is cheap in
#   KL; answering in the requested sentiment means rewriting most words, and at this price
#   it costs more than it earns. This is the penalty doing its job: $\beta$ chooses a point
#   on the trade-off between reward and distance, it does not remove the trade-off.
# - **With the reward model** the ground truth rose for 25 iterations, to about 0.5, and
#   then fell, to 0.4 on the held-out prompts at the end, while the score the policy was
#   trained on kept rising, above that of the policy trained on the truth (upper right).
#   The responses got shorter and the KL grew to about 7 nats. A proxy that keeps
#   improving while the true objective declines is **reward hacking**, or
#   over-optimisation of the reward model (Gao, Schulman & Hilton 2022 measured how it
#   grows with the KL).
#
# What did the policy find? The cell below splits its final samples by instruction, and
# asks the reward model about a few responses of our choosing.

# %%
questions = ["superb", "great lovely superb", "the food was good", "good and awful", "the food", "",
             "praise praise great", "awful dull and boring"]
answers = {}
for prompt in ("praise the food", "criticise the food"):
    answers[prompt, "truth"] = [task.reward(prompt, y) for y in questions]
    answers[prompt, "reward model"] = rm_score([prompt] * len(questions), questions).tolist()
display_questions = pd.DataFrame(answers, index=pd.Index([y or "(empty)" for y in questions], name="response"))

rm_responses, rm_rewards, _ = evaluate(ppo_runs["reward model", PPO_KL_COEF][0])
hacked = pd.DataFrame({
    "ground truth": by_instruction(eval_prompts, rm_rewards),
    "reward model": by_instruction(eval_prompts, rm_score(eval_prompts, rm_responses).numpy()),
    "empty responses": by_instruction(eval_prompts, [y == "" for y in rm_responses]),
})
print("the final policy of PPO against the reward model, on the held-out prompts:")
print(hacked.round(3).to_string())
display_questions.round(2)

# %% [markdown]
# When this notebook was written, 58% of the final policy's answers to `criticise`
# prompts were empty: `<eos>` at once. The ground truth gives an empty response 0. The
# reward model gave it 3.9 after `criticise the food`, as much as a real criticism (4.1
# for "awful dull and boring"), and it gave the single word "superb" 3.65 there. Every
# demonstration, and so every response in the preference pairs, had four to eight words:
# what the reward model says about shorter responses is an extrapolation that no label
# ever checked, and PPO went looking for it. After `praise` the policy kept writing
# praise (0.49), where the reward model is roughly right, if not discerning: it ranks
# "the food was good" above "great lovely superb".
#
# This is the argument for the KL penalty in RLHF: a reward model can only be trusted near
# the data it was fitted to, and the penalty keeps the policy near there (exercise 3 raises
# it). It is also a reason to read samples, and not only the score being optimised.

# %% [markdown]
# ## 7. The reward-versus-KL frontier
#
# A policy can always buy reward with distance from the reference, so one run is one point
# and a comparison of methods needs the whole trade-off. The DPO paper's IMDb experiment
# (its figure 2, left) plots, for many runs and checkpoints, the ground-truth reward of
# the samples against their KL to the reference. We do the same: DPO with a few values of
# $\beta$ (the probe evaluations of each run, and its final held-out evaluation), PPO with
# the ground truth and a few KL coefficients, and PPO with the reward model (the moving
# mean of their logged batches, which are samples of the current policy).

# %%
dpo_runs = {DPO_BETA: (dpo_model, dpo_log, dpo_curve)}
for beta in DPO_SWEEP_BETAS:
    if beta not in dpo_runs:
        dpo_runs[beta] = run_dpo(beta)
        report(f"DPO β={beta}", dpo_runs[beta][0])
for beta in PPO_SWEEP_KL_COEFS:
    if ("ground truth", beta) not in ppo_runs:
        ppo_runs["ground truth", beta] = run_ppo("ground truth", beta)
        report(f"PPO ground truth β={beta}", ppo_runs["ground truth", beta][0])

fig, ax = plt.subplots(figsize=(10, 6))
ax.plot([0], [results["SFT"]["ground-truth reward"]], "k*", ms=14, label="SFT (the reference)")
blues, greens = plt.cm.Blues, plt.cm.Greens
for i, (beta, (_, _, curve)) in enumerate(sorted(dpo_runs.items())):
    color = blues(0.45 + 0.5 * i / max(1, len(dpo_runs) - 1))
    ax.plot(curve["kl"], curve["reward"], "o-", color=color, ms=4, alpha=0.6)
    final = results[f"DPO β={beta}"]
    ax.plot(final["KL k1 (nats)"], final["ground-truth reward"], "o", color=color, ms=10, mec="k",
            label=f"DPO β = {beta}")
ppo_ground_truth = sorted(beta for name, beta in ppo_runs if name == "ground truth")
window = max(1, PPO_ITERATIONS // 8)
for (name, beta), (_, log) in sorted(ppo_runs.items()):
    if name == "ground truth":
        i = ppo_ground_truth.index(beta)
        color, label = greens(0.45 + 0.5 * i / max(1, len(ppo_ground_truth) - 1)), f"PPO, ground truth, β = {beta}"
    else:
        color, label = "C3", f"PPO, reward model, β = {beta}"
    ax.plot(log["kl"].rolling(window, min_periods=1).mean(), log["ground_truth"].rolling(window, min_periods=1).mean(),
            "-", color=color, alpha=0.6)
    final = results[f"PPO {name} β={beta}"]
    ax.plot(final["KL k1 (nats)"], final["ground-truth reward"], "s", color=color, ms=10, mec="k", label=label)
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("KL[π_θ ‖ π_SFT] (nats, k1 on the policy's samples)")
ax.set_ylabel("ground-truth reward r(x, y)")
ax.set_title("reward against KL: lines are training, large markers the final held-out evaluation")
ax.legend(fontsize="small", loc="lower right")
fig.tight_layout()
plt.show()
pd.DataFrame(results).T.round(3)

# %% [markdown]
# A method is better when its points lie above another's at the same KL. When this
# notebook was written:
#
# - **PPO with the reward model** ended lowest for its KL, 0.40 at 7.4 nats, its path
#   turning down as it found the hack of section 6.
# - **DPO** ended at 0.87 (β = 0.2), 0.65 (0.5) and 0.55 (0.05), at 9 to 12 nats. Its paths
#   pass above PPO with the reward model at the same KL: from the same 2,000 pairs, and
#   without a single sample during training, DPO did better than PPO on the reward model
#   fitted to them. That is the DPO paper's result.
# - **PPO with the ground truth** lies highest: 0.89 at 6.7 nats with β = 0.05, 0.53 at
#   4.5 with 0.1, 0.14 at 1.0 with 0.2. Here the paper differs: there DPO's frontier lay
#   above PPO's even when PPO was given the true reward. On the toy task, PPO optimises the
#   very number on the y-axis, on fresh samples of its own, while DPO learns from 2,000
#   noisy comparisons of corpus responses drawn before training.
#
# PPO's coefficient orders its runs: the larger β, the sooner the KL stops growing.
# DPO's β does not, much: 0.05 went furthest (11.5 nats), but 0.2 and 0.5 ended at about
# the same KL. $\beta$ fixes where the optimum of the DPO loss lies, but 125 steps of
# Adam are far from any optimum, and how far the policy has moved depends as much on the
# step size and the number of steps. With near-deterministic preferences the optimum
# itself is far away, whatever β is (the argument for IPO on the lesson page). One seed
# per point and 128 to 256 samples per estimate: differences of 0.1 in reward or a nat or
# two in KL are within the noise.

# %%
pd.Series(seconds).round(1).to_frame("seconds")

# %% [markdown]
# ## 8. The functions you will write
#
# In the student release these bodies are empty and the tests grade them:
#
# - `rlcourse.rlhf.model.sequence_logprobs(model, input_ids, attention_mask, response_mask)`:
#   section 2's masked sum. The padding check of section 2 is a good first test.
# - `rlcourse.rlhf.sft.sft_loss(model, input_ids, attention_mask, response_mask)`: the
#   mean cross-entropy over response tokens (a mean over tokens, not over sequences).
# - `rlcourse.rlhf.reward.reward_loss(r_chosen, r_rejected)`: the Bradley–Terry loss, with
#   its accuracy and margin; use `logsigmoid`.
# - `rlcourse.rlhf.dpo.dpo_loss(...)`: DPO, cDPO (`label_smoothing`) and IPO.
# - `rlcourse.rlhf.ppo.per_token_rewards`, `token_advantages` (GAE on the token grid,
#   through lesson 5's `gae`) and `ppo_rlhf_loss` (lesson 6's clipped objective, a value
#   loss, and the PPO-ptx term).
#
# **Exercises.**
#
# 1. *Reading the instruction.* Train SFT with `INIT_SCALE = 1` (GPT-2's own
#    initialisation) and 8 epochs, with seeds 0 to 4 (`make_policy(s)`), and plot the
#    reward curves by instruction. After how many steps does each model read the
#    instruction? Then do the same with `INIT_SCALE = 5`, and with a 1-layer model.
# 2. *Label noise.* Redo section 4 with `NOISE_TEMPERATURE` 0.03, 0.3 and 1. Plot the
#    ceiling and the held-out accuracy against $T$, and the slope of the right-hand panel
#    against $1/T$. Then train the reward model from untrained bodies
#    (`RewardModel.from_lm(make_policy(s))`) with a few seeds, and compare.
# 3. *Scale of a learned reward.* The reward model's scores grow about 6 times as fast as
#    the ground truth, so $\beta = 0.05$ against the reward model is, in the truth's units,
#    a penalty six times weaker than against the truth. Rerun section 6 with the reward
#    model and $\beta = 0.3$. Does the hack of the empty response survive? What happens to
#    the ground truth?
# 4. *Fix the reward model.* Add pairs with empty or very short responses, labelled by the
#    ground truth, to its training data, retrain it, and run PPO against it again. Which
#    hack does PPO find next?
# 5. *DPO's β, properly.* Run DPO with $\beta \in \{0.05, 0.5\}$ at `lr=1e-3` for 4
#    epochs, with probes, and compare the paths in the frontier plot with those at
#    `lr=3e-3`. Then try `loss_type="ipo"` and `label_smoothing=0.1` (cDPO, the label
#    noise is known here: what $\varepsilon$ does $T = 0.1$ correspond to on a typical
#    pair?).
# 6. *The KL estimators.* For the DPO policy, draw 20 batches of 32 samples and compare
#    the spread of `sequence_kl` (k1) and `k3_kl` over the batches. Which one would you log?
# 7. *Mismatched temperature.* Sample from the DPO policy at temperature 0.7
#    (`sample(..., temperature=0.7)`) and estimate its KL to the SFT model twice: scored at
#    the same temperature (`sequence_kl(..., temperature=0.7)`) and at 1, the default.
#    The lesson page shows that the second is $\mathrm{KL}(q \,\|\, \pi_\text{ref}) -
#    \mathrm{KL}(q \,\|\, \pi_\theta)$, not a KL at all. Can it be negative? Why would PPO
#    exploit that?
