r"""PPO-RLHF: fine-tune a language model against a reward, held near its reference by a KL penalty.

Ziegler et al. (2019), *Fine-Tuning Language Models from Human Preferences*, and Ouyang et
al. (2022, InstructGPT). The language model is the policy π_θ; the state s_t is the prompt
x plus the response tokens so far, y_{<t}; the action a_t is the next token y_t. One episode
is one response; it ends at ``<eos>`` (or after ``max_new_tokens``).

**The reward of each token.** A score R(x, y) (a trained reward model, or the toy task's
ground truth) judges the whole response, and each token pays for how far the policy has
moved from the frozen reference π_ref (the SFT model):

.. math::

    r_t = -\beta\,\big(\log \pi_\theta(a_t \mid s_t) - \log \pi_\text{ref}(a_t \mid s_t)\big)
          + [t = T_\text{last}]\; R(x, y),

so the return of an episode is R(x, y) − β·k1(x, y), where k1 = Σ_t (log π − log π_ref) is
the one-sample estimate of KL[π_θ(·∣x) ‖ π_ref(·∣x)] in nats: maximising it maximises
E[R] − β KL, the KL-regularised objective whose optimum is π_ref(y∣x) exp(R(x, y)/β) / Z(x).

**Same logit processing for sampling and scoring.** Tokens are sampled from
softmax(z/τ) (:func:`rlcourse.rlhf.batching.sample`) and the log-probabilities of π_θ,
π_θold and π_ref are all computed as log softmax(z/τ) with the same τ = ``temperature``
(:func:`rlcourse.rlhf.model.token_logprobs`). Only then are the samples drawn from the
distribution being scored, and k1 is an unbiased estimate of a true KL, E_{y∼π}[k1] =
KL[π ‖ π_ref] ≥ 0. Score samples drawn at τ = 0.7 with τ = 1 instead and log π(y) is that
of a flatter distribution than the one that produced y: the "KL" is then a biased number
with no sign guarantee (it can go negative, and PPO maximises −β·k1, so it learns to
exploit the mismatch instead of the reward). The tests measure both.

**Advantages.** A value head V_φ(s_t) (a linear map of the policy's last hidden state,
:class:`PolicyWithValue`) and GAE from :func:`rlcourse.pg.psi.gae` — the package's one GAE —
on the time-major [T, B] grid of response tokens, with ``terminated`` at each response's
last token (γ = 1 by default: an episode is a handful of tokens):

.. math::

    \delta_t = r_t + \gamma V(s_{t+1}) [t < T_\text{last}] - V(s_t), \qquad
    \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}, \qquad G_t = \hat A_t + V(s_t).

Prompt and padding positions are masked out. The advantages are whitened over the
batch's response tokens, Â ← (Â − mean) / std (masked), before the epochs; the critic
regresses on the unwhitened G_t.

**The loss** of a minibatch of sequences, with the response mask m and the package's one
clipped objective (:func:`rlcourse.pg.objective.clipped_surrogate_loss`):

.. math::

    L = L^{CLIP}(\theta; m) + c_V\, \frac{\sum_t m_t \max\big((V_t - G_t)^2,
        (V_t^{clip} - G_t)^2\big)}{\sum_t m_t}
        - \gamma_\text{ptx}\, \hat{\mathbb E}_{x \sim D_\text{SFT}}[\log \pi_\theta(x)],

V^clip = V_old + clip(V − V_old, −ε_V, ε_V) (``clip_range_vf``; None: plain squared error).
The last term is InstructGPT's PPO-ptx mix (``ptx_coef`` = γ_ptx; here on SFT rows, a
mean over their response tokens, at temperature 1).

**The KL coefficient** β is fixed (``kl_control="fixed"``), or adapted after each
iteration from the measured sequence KL d (the batch mean of k1):

* ``"proportional"`` — Ziegler et al.'s controller (their lm-human-preferences code):
  e = clip(d/d_targ − 1, −0.2, 0.2), β ← β (1 + e · B / horizon), B the iteration's
  number of samples (the paper's K_β = B / horizon);
* ``"halve-double"`` — the PPO paper's rule, :func:`rlcourse.pg.ppo.adapt_kl_coef`:
  β/2 if d < d_targ/1.5, 2β if d > 1.5 d_targ.

Pseudocode::

    for iteration k = 1, …, K:
        x ← batch_size prompts;  y ∼ π_θ(·|x) at temperature τ              (batching.sample)
        log π_θold, log π_ref, V_old on the response tokens; R ← score(x, y)
        r_t ← −β (log π_θold − log π_ref) + R at the last token              (per_token_rewards)
        Â, G ← gae on the [T, B] grid; whiten Â                              (token_advantages)
        for epoch = 1, …, ppo_epochs:
            for each minibatch of sequences, in a fresh random order:
                L ← ppo_rlhf_loss(...);  clip ‖∇L‖ to max_grad_norm;  Adam step
        adapt β from d = mean k1                                               (kl_control)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rlcourse.config import check_choice, check_range
from rlcourse.pg.objective import clipped_surrogate_loss, ratio_diagnostics, value_loss
from rlcourse.pg.ppo import adapt_kl_coef
from rlcourse.pg.psi import gae, normalize_advantages
from rlcourse.rlhf import task
from rlcourse.rlhf.batching import TokenBatch, encode, response_text, sample
from rlcourse.rlhf.model import autocast, position_ids_from_mask, token_logprobs
from rlcourse.rlhf.sft import sft_loss
from rlcourse.run import NonFiniteError, torch_threads

if TYPE_CHECKING:
    from transformers import PreTrainedModel

KL_CONTROLS = ("fixed", "proportional", "halve-double")
LOG_COLUMNS = [
    "iteration",
    "score",
    "kl",
    "kl_coef",
    "reward",
    "response_length",
    "policy_loss",
    "value_loss",
    "ptx_loss",
    "approx_kl",
    "clipfrac",
    "entropy",
]

#: score(prompts, responses) -> Tensor[B]: the reward R(x, y) of each response.
Score = Callable[[Sequence[str], Sequence[str]], Tensor]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    iterations: int = 40  # K: sample-then-update rounds
    batch_size: int = 64  # prompts (= responses) sampled per iteration
    max_new_tokens: int = 8  # the longest response (it ends earlier at <eos>)
    temperature: float = 1.0  # τ of sampling AND of every log-probability (see the docstring)
    kl_coef: float = 0.05  # β of the per-token KL penalty (the first value if adapted)
    kl_control: str = "fixed"  # "fixed", "proportional" (Ziegler et al.) or "halve-double" (PPO paper)
    kl_target: float = 1.0  # d_targ, sequence-level KL in nats, for the adaptive controls
    kl_horizon: int = 10_000  # the proportional controller's horizon (samples)
    ppo_epochs: int = 4  # passes over each batch
    minibatch_size: int = 16  # sequences per gradient step
    clip_range: float = 0.2  # ε of L^CLIP
    vf_coef: float = 0.1  # c_V, weight of the value loss
    clip_range_vf: float | None = 0.2  # clip V's move from V_old to ±this (None: do not)
    gamma: float = 1.0  # discount over the tokens of a response
    lam: float = 0.95  # λ of GAE
    lr: float = 1e-3  # Adam's step size
    max_grad_norm: float = 1.0  # clip the norm of each minibatch gradient
    whiten_advantages: bool = True  # standardise Â over the batch's response tokens
    ptx_coef: float = 0.0  # γ_ptx of the PPO-ptx term (0: off)
    seed: int = 0

    def __post_init__(self):
        check_range(self, "iterations", 1, integer=True)
        check_range(self, "batch_size", 1, integer=True)
        check_range(self, "max_new_tokens", 1, integer=True)
        check_range(self, "temperature", 0, None, low_open=True)
        check_range(self, "kl_coef", 0, None)
        check_choice(self, "kl_control", KL_CONTROLS)
        check_range(self, "kl_target", 0, None, low_open=True)
        check_range(self, "kl_horizon", 1, integer=True)
        check_range(self, "ppo_epochs", 1, integer=True)
        check_range(self, "minibatch_size", 1, integer=True)
        check_range(self, "clip_range", 0, None, low_open=True)
        check_range(self, "vf_coef", 0, None)
        if self.clip_range_vf is not None:
            check_range(self, "clip_range_vf", 0, None, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "lam", 0, 1)
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_choice(self, "whiten_advantages", (True, False))
        check_range(self, "ptx_coef", 0, None)
        check_range(self, "seed", 0, integer=True)


# ---------------------------------------------------------------- the policy and its value head


class PolicyWithValue(nn.Module):
    """A GPT-2 language model (``lm``) and a scalar value head on its last hidden states.

    V(s_t) = w·h_t + b, h_t the (final-layer-normed) hidden state at position t, the state
    that has read x_{≤t}. The body is shared: the value loss trains it too. The head starts
    at zero (V ≡ 0), so the first iteration's advantages are the rewards-to-go.
    """

    def __init__(self, lm: PreTrainedModel):
        super().__init__()
        self.lm = lm
        self.v_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)
        self.v_head.to(next(lm.parameters()).dtype)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""One forward pass: (log π(x_{t+1} ∣ x_{≤t}), V(x_{≤t}), H(π(·∣x_{≤t}))), each [B, L − 1].

        Column t scores the token at t + 1 from the state at t, the layout of
        :func:`rlcourse.rlhf.model.token_logprobs` (which these log-probs equal), with
        logits z/τ. Columns whose target is padding hold meaningless numbers: mask them.
        """
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            output_hidden_states=True,
        )
        logits = out.logits[:, :-1]
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        log_z = logits.logsumexp(-1)
        logp = logits.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) - log_z
        with torch.no_grad():
            log_probs = logits - log_z.unsqueeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
        values = self.v_head(out.hidden_states[-1][:, :-1]).squeeze(-1)
        return logp, values.float(), entropy


# ---------------------------------------------------------------- rewards and advantages


def action_mask(batch: TokenBatch) -> Tensor:
    """[B, L − 1] booleans: column t is an action when the token at t + 1 is a response token."""
    return batch.response_mask[:, 1:].bool()


def last_index(mask: Tensor) -> Tensor:
    """[B]: the column of each row's last True (0 for an all-False row)."""
    columns = torch.arange(mask.shape[1], device=mask.device)
    return (columns * mask.long()).argmax(-1)


def per_token_rewards(logp: Tensor, ref_logp: Tensor, scores: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    r"""r_t = −β (log π(a_t∣s_t) − log π_ref(a_t∣s_t)) on the masked tokens, plus R(x, y) on each row's last.

    ``logp``, ``ref_logp``, ``mask`` are [B, T]; ``scores`` is [B]. Unmasked entries are 0.
    """
    ### BEGIN SOLUTION
    mask_f = mask.to(logp.dtype)
    rewards = -kl_coef * (logp - ref_logp) * mask_f
    rows = torch.arange(len(scores), device=logp.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards
    ### END SOLUTION


def token_advantages(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    r"""GAE(γ, λ) on the token grid: (Â, G = Â + V), both [B, T] and 0 off the mask.

    The batch-major [B, T] tensors are transposed to the time-major [T, B] grid of
    :func:`rlcourse.pg.psi.gae`. V(s_{t+1}) is the next column's value; ``terminated``
    marks each row's last response token, so nothing is bootstrapped past it, and rewards
    and values off the mask are zeroed, so the prompt and padding add nothing.
    """
    ### BEGIN SOLUTION
    mask_f = mask.to(values.dtype)
    values = values * mask_f
    rewards = rewards * mask_f
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    terminated = torch.zeros_like(mask)
    terminated[torch.arange(len(mask), device=mask.device), last_index(mask)] = True
    terminated &= mask
    truncated = torch.zeros_like(mask)
    adv = gae(rewards.T, values.T, next_values.T, terminated.T, truncated.T, gamma, lam).T
    adv = adv * mask_f
    return adv, (adv + values) * mask_f
    ### END SOLUTION


def sequence_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor) -> Tensor:
    r"""k1(x, y) = Σ_t m_t (log π(a_t∣s_t) − log π_ref(a_t∣s_t)) per sequence, [B], in nats.

    On samples y ∼ π (drawn and scored at the same temperature) its mean is an unbiased
    estimate of KL[π(·∣x) ‖ π_ref(·∣x)] ≥ 0; a single sample may be negative.
    """
    return ((logp - ref_logp) * mask.to(logp.dtype)).sum(-1)


# ---------------------------------------------------------------- scores


def ground_truth_score(prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
    """The toy task's r(x, y) (:func:`rlcourse.rlhf.task.reward`) of each response: [B] float32."""
    return torch.tensor([task.reward(p, r) for p, r in zip(prompts, responses, strict=True)], dtype=torch.float32)


def reward_model_score(
    reward_model: nn.Module, tokenizer, max_length: int | None = None, shift: float = 0.0, scale: float = 1.0
) -> Score:
    """A ``score`` function that encodes (prompt, response) pairs and runs a trained RewardModel.

    It returns (r_φ(x, y) − ``shift``) / ``scale``. A Bradley–Terry reward is defined only up to
    a constant and its scale depends on training, so Ziegler et al. (2019) normalise it to mean
    0 and standard deviation 1 on the SFT model's samples (:func:`normalisation`): then the KL
    coefficient β means the same thing whatever reward model is used.
    """
    if not scale > 0:
        raise ValueError(f"reward_model_score: scale = {scale!r} is out of range: it must be in (0, inf)")

    @torch.no_grad()
    def score(prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
        batch = encode(tokenizer, prompts, responses, max_length)
        device = next(reward_model.parameters()).device
        raw = reward_model(batch.input_ids.to(device), batch.attention_mask.to(device)).float().cpu()
        return (raw - shift) / scale

    return score


def normalisation(
    reward_model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int | None = None,
    batch_size: int = 256,
) -> tuple[float, float]:
    """``(shift, scale)``: the mean and standard deviation of r_φ over (prompt, response) samples,
    for :func:`reward_model_score`."""
    raw = reward_model_score(reward_model, tokenizer, max_length)
    scores = torch.cat(
        [raw(prompts[i : i + batch_size], responses[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    )
    return scores.mean().item(), scores.std().clamp(min=1e-8).item()


# ---------------------------------------------------------------- one batch of experience


class Experience(NamedTuple):
    """One iteration's samples and everything the epochs read (tensors [B, L − 1] unless noted)."""

    batch: TokenBatch
    mask: Tensor  # the response (action) tokens
    logp_old: Tensor  # log π_θold(a_t|s_t)
    ref_logp: Tensor  # log π_ref(a_t|s_t)
    values_old: Tensor  # V_old(s_t)
    advantages: Tensor  # Â_t (whitened if the config says so)
    returns: Tensor  # G_t = Â_t + V_old(s_t), unwhitened
    scores: Tensor  # [B] R(x, y)
    kl: Tensor  # [B] k1(x, y)

    def rows(self, index: Tensor) -> Experience:
        return Experience(TokenBatch(*(t[index] for t in self.batch)), *(t[index] for t in self[1:]))


@torch.no_grad()
def collect(
    policy: PolicyWithValue,
    reference: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    score: Score,
    config: PPOConfig,
    kl_coef: float,
    generator: torch.Generator | None = None,
) -> Experience:
    """Sample one response per prompt at temperature τ and score it: rewards, Â, G (see the module docstring).

    log π_θold and log π_ref both come from :func:`token_logprobs` at the same τ as the
    sampling, so that right after initialisation (π_θ a copy of π_ref) k1 is exactly 0.
    """
    device = next(policy.parameters()).device
    batch = sample(policy.lm, tokenizer, prompts, config.max_new_tokens, config.temperature, generator)
    batch = TokenBatch(*(t.to(device) for t in batch))
    mask = action_mask(batch)
    logp = token_logprobs(policy.lm, batch.input_ids, batch.attention_mask, config.temperature).float()
    ref_logp = token_logprobs(reference, batch.input_ids, batch.attention_mask, config.temperature).float()
    _, values, _ = policy(batch.input_ids, batch.attention_mask, config.temperature)
    scores = torch.as_tensor(score(list(prompts), response_text(tokenizer, batch)), dtype=torch.float32)
    scores = scores.to(device)
    if scores.shape != (len(prompts),):
        raise ValueError(
            f"score returned shape {tuple(scores.shape)}: it must return one number per "
            f"response, shape ({len(prompts)},)"
        )
    rewards = per_token_rewards(logp, ref_logp, scores, mask, kl_coef)
    advantages, returns = token_advantages(rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = normalize_advantages(advantages, "standardize", mask)
    return Experience(
        batch, mask, logp, ref_logp, values * mask, advantages, returns, scores, sequence_kl(logp, ref_logp, mask)
    )


# ---------------------------------------------------------------- the loss


class Terms(NamedTuple):
    loss: Tensor  # L = L^CLIP + c_V L_V + γ_ptx L_ptx
    policy_loss: Tensor  # L^CLIP
    value_loss: Tensor  # L_V
    ptx_loss: Tensor  # −mean log π on the SFT rows (0 if off)
    approx_kl: Tensor  # mean (r − 1) − log r over the response tokens, detached
    clipfrac: Tensor  # share of response tokens with |r − 1| > ε, detached
    entropy: Tensor  # mean H(π(·|s_t)) over the response tokens, detached


def ppo_rlhf_loss(
    policy: PolicyWithValue, mb: Experience, config: PPOConfig, ptx_batch: TokenBatch | None = None
) -> Terms:
    """The loss of one minibatch of sequences and its terms (the module docstring's L)."""
    logp, values, entropy = policy(mb.batch.input_ids, mb.batch.attention_mask, config.temperature)
    mask = mb.mask
    # Define four tensors: policy_loss (L^CLIP over the masked tokens, pg.objective.clipped_surrogate_loss),
    # critic_loss (pg.objective.value_loss on the masked tokens, clipped when config.clip_range_vf is set),
    # ptx_loss (sft_loss of ptx_batch, or a zero tensor when there is none or ptx_coef is 0), and
    # loss = policy_loss + vf_coef * critic_loss + ptx_coef * ptx_loss.
    ### BEGIN SOLUTION
    policy_loss = clipped_surrogate_loss(logp, mb.logp_old, mb.advantages, config.clip_range, mask=mask)
    critic_loss = value_loss(values, mb.returns, mb.values_old, config.clip_range_vf, mask)
    loss = policy_loss + config.vf_coef * critic_loss
    ptx_loss = torch.zeros((), device=loss.device)
    if ptx_batch is not None and config.ptx_coef > 0:
        ptx_loss = sft_loss(policy.lm, *ptx_batch)
        loss = loss + config.ptx_coef * ptx_loss
    ### END SOLUTION
    approx_kl, clipfrac = ratio_diagnostics(logp, mb.logp_old, config.clip_range, mask)
    return Terms(loss, policy_loss, critic_loss, ptx_loss.detach(), approx_kl, clipfrac, entropy[mask].mean())


def next_kl_coef(kl_coef: float, kl: float, config: PPOConfig) -> float:
    """β for the next iteration, from this one's mean sequence KL d (see ``kl_control``)."""
    if config.kl_control == "proportional":
        error = min(max(kl / config.kl_target - 1.0, -0.2), 0.2)
        return kl_coef * (1.0 + error * config.batch_size / config.kl_horizon)
    if config.kl_control == "halve-double":
        return adapt_kl_coef(kl_coef, kl, config.kl_target)
    return kl_coef


# ---------------------------------------------------------------- training


class _Batches:
    """Endless TokenBatches for PPO-ptx: a list (or other re-iterable) restarts, an iterator must not run out."""

    def __init__(self, batches: Iterable[TokenBatch]):
        self.source = batches
        self.it = iter(batches)

    def next(self) -> TokenBatch:
        try:
            return next(self.it)
        except StopIteration:
            if iter(self.source) is self.source:
                raise ValueError(
                    "train_ppo: ptx_batches ran out; pass a list, or an endless iterator (itertools.cycle)"
                ) from None
            self.it = iter(self.source)
            return next(self.it)


def train_ppo(
    policy: PreTrainedModel | PolicyWithValue,
    reference: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    score: Score,
    config: PPOConfig | None = None,
    ptx_batches: Iterable[TokenBatch] | None = None,
    callback: Callable[[int, PolicyWithValue], None] | None = None,
) -> pd.DataFrame:
    """Run PPO-RLHF for ``config.iterations`` iterations; train ``policy`` in place and return the log.

    ``policy`` is a GPT-2 language model (a zero-initialised value head is put on it) or a
    :class:`PolicyWithValue`, to keep the head across calls. ``reference`` (π_ref, e.g.
    :func:`rlcourse.rlhf.model.frozen_copy` of the SFT model) is only read. Each iteration
    draws ``batch_size`` of ``prompts`` (without replacement when there are enough),
    samples and scores responses with ``score(prompts, responses) -> Tensor[B]``
    (:func:`ground_truth_score`, :func:`reward_model_score`), and updates. ``ptx_batches``
    yields the SFT TokenBatches of the PPO-ptx term (used when ``ptx_coef > 0``).
    ``callback(iteration, policy_with_value)`` runs after each iteration.

    The log has one row per iteration, columns :data:`LOG_COLUMNS`, measured on the
    iteration's samples before its update: ``score`` = mean R, ``kl`` = mean k1 (nats),
    ``kl_coef`` = the β they were rewarded with, ``reward`` = mean R − β k1,
    ``response_length`` in tokens (with ``<eos>``); the losses, ``approx_kl``, ``clipfrac``
    and ``entropy`` are means over the minibatches. The same seed gives the same log, bit
    for bit, on the CPU: torch runs on one thread meanwhile and the global random state is
    restored afterwards. The policy is in eval mode throughout (dropout off, so π_θold is
    well defined) and its mode is restored at the end. A non-finite loss raises
    :class:`rlcourse.run.NonFiniteError` naming the iteration.
    """
    config = config or PPOConfig()
    if not prompts:
        raise ValueError("train_ppo: prompts is empty")
    if ptx_batches is None and config.ptx_coef > 0:
        raise ValueError(f"train_ppo: ptx_coef = {config.ptx_coef} needs ptx_batches")
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = policy if isinstance(policy, PolicyWithValue) else PolicyWithValue(policy)
        was_training = model.training
        model.eval()
        try:
            return _train(model, reference, tokenizer, list(prompts), score, config, ptx_batches, callback)
        finally:
            model.train(was_training)


def _train(model, reference, tokenizer, prompts, score, config, ptx_batches, callback) -> pd.DataFrame:
    rng = np.random.default_rng(config.seed)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    ptx = _Batches(ptx_batches) if ptx_batches is not None and config.ptx_coef > 0 else None
    kl_coef = config.kl_coef
    rows = []
    for iteration in range(1, config.iterations + 1):
        chosen = rng.choice(len(prompts), config.batch_size, replace=len(prompts) < config.batch_size)
        with autocast(device):  # bf16 forward passes on CUDA; nothing on the CPU
            exp = collect(model, reference, tokenizer, [prompts[i] for i in chosen], score, config, kl_coef, generator)
        terms = []
        for _ in range(config.ppo_epochs):
            order = torch.as_tensor(rng.permutation(config.batch_size))
            for start in range(0, config.batch_size, config.minibatch_size):
                mb = exp.rows(order[start : start + config.minibatch_size].to(exp.mask.device))
                with autocast(device):
                    t = ppo_rlhf_loss(model, mb, config, ptx.next() if ptx else None)
                if not torch.isfinite(t.loss):
                    error = NonFiniteError("PPO-RLHF loss", iteration)
                    error.iteration = iteration
                    error.args = (f"non-finite PPO-RLHF loss at iteration {iteration}: training stopped",)
                    raise error
                optimizer.zero_grad()
                t.loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                terms.append(torch.stack([x.detach().float().cpu() for x in t[1:]]))
        means = torch.stack(terms).mean(0).tolist()
        kl = exp.kl.mean().item()
        score_mean = exp.scores.mean().item()
        rows.append(
            (
                iteration,
                score_mean,
                kl,
                kl_coef,
                score_mean - kl_coef * kl,
                exp.mask.sum(-1).float().mean().item(),
                *means,
            )
        )
        kl_coef = next_kl_coef(kl_coef, kl, config)
        if callback is not None:
            callback(iteration, model)
    log = pd.DataFrame(rows, columns=LOG_COLUMNS)
    return log
