r"""GRPO, RLOO, Dr. GRPO: the policy gradient with a group of answers as its baseline.

RL with verifiable rewards (Shao et al. 2024, *DeepSeekMath*, GRPO; Ahmadian et al. 2024,
*Back to Basics*, RLOO; Liu et al. 2025, *Understanding R1-Zero-Like Training*, Dr. GRPO).
Each iteration samples G answers :math:`y_1, …, y_G \sim \pi_{\theta_\text{old}}(\cdot \mid x)`
to each of P prompts and scores each with a program, :math:`r_i = R(x, y_i)` (1 if the
answer is right). There is no critic: the answer's Ψ is its reward against the others in
its group (:mod:`rlcourse.pg.psi`), the same for each of its tokens:

==================  =================================================  ======================
method              :math:`\Psi_i` (every token of answer i)           aggregation
==================  =================================================  ======================
``reinforce``       :math:`r_i`                                        constant
``rloo``            :math:`r_i - \frac{1}{G-1}\sum_{j\ne i} r_j`       constant
``dr_grpo``         :math:`r_i - \bar r`                               constant
``grpo``            :math:`(r_i - \bar r) / (\sigma + \epsilon)`       sequence-mean
==================  =================================================  ======================

**The loss** is lesson 6's clipped surrogate (:func:`rlcourse.pg.objective.clipped_surrogate_loss`),
with :math:`\rho_{i,t} = \pi_\theta(y_{i,t} \mid x, y_{i,<t}) / \pi_{\theta_\text{old}}(\cdot)`
and the token weights :math:`w_{i,t}` of the aggregation (:func:`rlcourse.pg.psi.token_weights`):

.. math::

    L(\theta) = -\sum_{i,t} w_{i,t}\,\min\big(\rho_{i,t}\Psi_i,\ \operatorname{clip}(\rho_{i,t}, 1-\epsilon, 1+\epsilon)\Psi_i\big)
                + \beta \sum_{i,t} w_{i,t}\, k_3(i, t),

    k_3 = \frac{\pi_\text{ref}}{\pi_\theta} - \log\frac{\pi_\text{ref}}{\pi_\theta} - 1 \;\ge 0,

GRPO's per-token estimate of KL[π_θ ‖ π_ref] (Schulman's k3; unbiased, never negative) in
the loss (``kl_in="loss"``). With ``kl_in="reward"`` the KL goes into the reward instead,
as in lesson 7: :math:`r_i \leftarrow r_i - \beta\, k_1(x, y_i)`,
:math:`k_1 = \sum_t \log \pi_{\theta_\text{old}} - \log \pi_\text{ref}`, before the group baseline.
Since min(ρΨw, clip(ρ)Ψw) = w·min(ρΨ, clip(ρ)Ψ) for w > 0, the weights ride inside Ψ and
the one clipped surrogate of the package computes the first term.

**Data-parallel** (under ``torchrun``, :mod:`rlcourse.rlhf.distributed`): the P prompts of
an iteration are the same on every rank (one shared prompt generator), and rank k samples,
scores and trains on its contiguous slice of them, :math:`P_k` whole groups. A group never
straddles two ranks: its baseline (mean, std, leave-one-out) needs all G of its rewards.
Every rank draws the same permutation of the P groups for the minibatches and trains on the
groups of each minibatch that it holds. The aggregation's normaliser is global: the weights
above average over the *minibatch's* B answers (or its tokens, for ``"token-mean"``), so rank
k's share of the loss is its own weighted sum times :math:`n_k / N`, with n_k its answers
(tokens) and N their all-reduced sum; the ranks' gradients add up to the one-process gradient.
Whose generator draws an answer is ``config.sampling``: ``"per-rank"`` (each process draws
all its groups in one batch from its own stream; fast, but the answers depend on the number
of processes) or ``"per-group"`` (group j of iteration k from a generator seeded by
(seed, k, j), one batch per group: the same answers on one process or on K).

Pseudocode::

    for iteration k = 1, …, K:
        x_1..x_P ← prompts;  y_{p,1..G} ∼ π_θold(·|x_p) at temperature τ     (batching.sample, KV cache)
        r_{p,i} ← R(x_p, y_{p,i});  log π_θold, log π_ref on the answer tokens
        Ψ_{p,i} ← advantage(r_{p,·})                                        (pg.psi)
        for epoch = 1, …, μ:  for each minibatch of groups:
            L ← grpo_loss(...);  clip ‖∇L‖;  Adam step
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcourse.config import check_choice, check_range
from rlcourse.pg.objective import clipped_surrogate_loss, ratio_diagnostics
from rlcourse.pg.psi import (
    AGGREGATIONS,
    group_mean_baseline,
    grpo_advantages,
    no_baseline,
    rloo_advantages,
    token_weights,
)
from rlcourse.rlhf import distributed
from rlcourse.rlhf.batching import TokenBatch, response_text, sample
from rlcourse.rlhf.model import autocast, token_logprobs
from rlcourse.rlhf.ppo import action_mask, sequence_kl
from rlcourse.rlhf.sft import optimizer_step
from rlcourse.run import torch_threads

#: Ψ of a group: rewards [P, G] -> Ψ [P, G].
ADVANTAGES: dict[str, Callable[[Tensor], Tensor]] = {
    "reinforce": no_baseline,
    "rloo": rloo_advantages,
    "group_mean": group_mean_baseline,
    "grpo": grpo_advantages,
}
#: method -> (advantage, aggregation), as each paper has it.
METHODS = {
    "grpo": ("grpo", "sequence-mean"),
    "dr_grpo": ("group_mean", "constant"),
    "rloo": ("rloo", "constant"),
    "reinforce": ("reinforce", "constant"),
}
KL_IN = ("loss", "reward")
SAMPLING = ("per-rank", "per-group")
MINIBATCH_OF = ("groups", "answers")
LOG_COLUMNS = [
    "iteration",
    "reward",
    "accuracy",
    "no_signal",
    "kl",
    "response_length",
    "policy_loss",
    "approx_kl",
    "clipfrac",
]

#: score(prompts, responses) -> Tensor[B]: the verifier's reward of each answer.
Score = Callable[[Sequence[str], Sequence[str]], Tensor]


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    iterations: int = 300  # K: sample-then-update rounds
    prompts_per_iteration: int = 32  # P
    group_size: int = 8  # G: answers sampled per prompt
    max_new_tokens: int = 4  # the longest answer (with <eos>); also the constant C of "constant"
    temperature: float = 1.0  # τ of sampling and of every log-probability
    sampling: str = "per-rank"  # whose generator draws: each process's (fast) or each group's (any process count)
    advantage: str = "grpo"  # Ψ of a group: reinforce, rloo, group_mean, grpo
    aggregation: str = "sequence-mean"  # sequence-mean (GRPO), token-mean (DAPO), constant (Dr. GRPO)
    epochs: int = 2  # μ: passes over each batch (the ratio is 1 on the first step only)
    minibatches: int = 4  # gradient steps per epoch (the groups, or the answers, are split evenly)
    minibatch_of: str = "groups"  # what a minibatch draws: whole groups, or answers of every group (TRL's way)
    clip_range: float = 0.2  # ε
    kl_coef: float = 0.0  # β (0: no reference model is needed)
    kl_in: str = "loss"  # "loss" (GRPO's k3) or "reward" (lesson 7's k1)
    lr: float = 3e-4  # Adam's step size (1e-3 undoes the SFT model in a few steps)
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        check_range(self, "iterations", 1, integer=True)
        check_range(self, "prompts_per_iteration", 1, integer=True)
        check_range(self, "group_size", 2, integer=True)
        check_range(self, "max_new_tokens", 1, integer=True)
        check_range(self, "temperature", 0, None, low_open=True)
        check_choice(self, "sampling", SAMPLING)
        check_choice(self, "minibatch_of", MINIBATCH_OF)
        check_choice(self, "advantage", tuple(ADVANTAGES))
        check_choice(self, "aggregation", AGGREGATIONS)
        check_range(self, "epochs", 1, integer=True)
        check_range(self, "minibatches", 1, self.prompts_per_iteration, integer=True)
        check_range(self, "clip_range", 0, None, low_open=True)
        check_range(self, "kl_coef", 0, None)
        check_choice(self, "kl_in", KL_IN)
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "max_grad_norm", 0, None, low_open=True)
        check_range(self, "seed", 0, integer=True)


def config_for(method: str, **fields) -> GRPOConfig:
    """The :class:`GRPOConfig` of ``method`` (a key of :data:`METHODS`), with ``fields`` overridden."""
    if method not in METHODS:
        raise ValueError(f"method = {method!r} is not allowed: it must be one of {', '.join(METHODS)}")
    advantage, aggregation = METHODS[method]
    return GRPOConfig(**{"advantage": advantage, "aggregation": aggregation, **fields})


def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    r"""Per-token :math:`k_3 = e^{\log\pi_\text{ref} - \log\pi} - (\log\pi_\text{ref} - \log\pi) - 1 \ge 0`."""
    ### BEGIN SOLUTION
    log_ratio = ref_logp - logp
    return log_ratio.exp() - log_ratio - 1
    ### END SOLUTION


def grpo_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    weights: Tensor,
    clip_range: float,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    r"""The module docstring's L: logp, logp_old, weights (and ref_logp) are [B, T], advantages [B].

    The tokens with weight 0 (prompt, padding) are left out. The policy term is
    :func:`rlcourse.pg.objective.clipped_surrogate_loss` with Ψ_{i,t} = Ψ_i · w_{i,t} · n
    (n the number of weighted tokens, which its mean divides by again).
    """
    # Hint: mask = weights > 0; psi = advantages[:, None] * weights * mask.sum(); reuse the clipped
    # Hint: surrogate of lesson 6 with that mask; add kl_coef * Σ w·k3 when ref_logp is given.
    ### BEGIN SOLUTION
    mask = weights > 0
    psi = advantages[:, None] * weights * mask.sum()
    loss = clipped_surrogate_loss(logp, logp_old, psi, clip_range, mask)
    if ref_logp is not None and kl_coef > 0:
        loss = loss + kl_coef * (weights * torch.where(mask, k3(logp, ref_logp), 0.0)).sum()
    return loss
    ### END SOLUTION


@dataclasses.dataclass
class Groups:
    """One iteration's answers, P groups of G rows each (tensors [B, L − 1] unless noted, B = P·G)."""

    batch: TokenBatch
    mask: Tensor  # the answer tokens
    logp_old: Tensor
    ref_logp: Tensor | None
    advantages: Tensor  # [B]
    scores: Tensor  # [B] the verifier's rewards
    kl: Tensor  # [B] k1(x, y), 0 without a reference

    def rows(self, index: Tensor) -> Groups:
        return Groups(
            TokenBatch(*(t[index] for t in self.batch)),
            self.mask[index],
            self.logp_old[index],
            None if self.ref_logp is None else self.ref_logp[index],
            self.advantages[index],
            self.scores[index],
            self.kl[index],
        )


@torch.no_grad()
def draw(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    config: GRPOConfig,
    generator: torch.Generator,
    iteration: int,
    first: int,
) -> TokenBatch:
    """G answers to each of ``prompts``, the iteration's groups ``first``, ``first + 1``, …, right-padded.

    ``config.sampling == "per-rank"``: all of them in one batch from ``generator``, this
    process's stream. ``"per-group"``: group j from a generator of its own, seeded by
    (seed, iteration, j), one batch per group: the answers do not depend on which process
    draws them, nor on how many there are.
    """
    G = config.group_size
    if config.sampling == "per-rank":
        repeated = [p for p in prompts for _ in range(G)]
        return sample(model, tokenizer, repeated, config.max_new_tokens, config.temperature, generator)
    batches = []
    for j, prompt in enumerate(prompts, first):
        seed = int(np.random.SeedSequence((config.seed, iteration, j)).generate_state(1)[0])
        own = torch.Generator(device=generator.device).manual_seed(seed)
        batches.append(sample(model, tokenizer, [prompt] * G, config.max_new_tokens, config.temperature, own))
    width = max(b.input_ids.shape[1] for b in batches)

    def padded(column: Sequence[Tensor], value: int) -> Tensor:
        return torch.cat([F.pad(t, (0, width - t.shape[1]), value=value) for t in column])

    ids, attention, response = zip(*batches)
    return TokenBatch(padded(ids, tokenizer.pad_token_id), padded(attention, 0), padded(response, 0))


@torch.no_grad()
def collect(
    model: nn.Module,
    reference: nn.Module | None,
    tokenizer,
    prompts: Sequence[str],
    batch: TokenBatch,
    score: Score,
    config: GRPOConfig,
) -> Groups:
    """Score ``batch``, G answers to each of ``prompts`` (from :func:`draw`), and compute each answer's Ψ."""
    device = next(model.parameters()).device
    G = config.group_size
    repeated = [p for p in prompts for _ in range(G)]
    batch = TokenBatch(*(t.to(device) for t in batch))
    mask = action_mask(batch)
    logp = token_logprobs(model, batch.input_ids, batch.attention_mask, config.temperature).float()
    ref_logp = None
    kl = torch.zeros(len(repeated), device=device)
    if reference is not None and config.kl_coef > 0:
        ref_logp = token_logprobs(reference, batch.input_ids, batch.attention_mask, config.temperature).float()
        kl = sequence_kl(logp, ref_logp, mask)
    scores = torch.as_tensor(score(repeated, response_text(tokenizer, batch)), dtype=torch.float32).to(device)
    if scores.shape != (len(repeated),):
        raise ValueError(f"score returned shape {tuple(scores.shape)}: it must be ({len(repeated)},)")
    rewards = scores - config.kl_coef * kl if config.kl_in == "reward" else scores
    advantages = ADVANTAGES[config.advantage](rewards.view(-1, G)).flatten()
    return Groups(batch, mask, logp, ref_logp, advantages, scores, kl)


def update(
    model: nn.Module, optimizer, groups: Groups, config: GRPOConfig, rng, iteration: int, first: int = 0
) -> list[Tensor]:
    """μ epochs of minibatch steps on one iteration's groups; return each step's (loss, approx_kl, clipfrac).

    Each epoch permutes the P groups and cuts them into ``minibatches`` (``minibatch_of="groups"``),
    or permutes all P·G answers, so that a minibatch mixes answers of every prompt (``"answers"``,
    as TRL's ``GRPOTrainer`` does). Both estimate the same gradient; Ψ was computed on whole
    groups before. ``groups`` holds this process's groups, the iteration's ``first``,
    ``first + 1``, … of P (all P in one process); every rank draws the same permutation, so
    they agree on each minibatch, and each trains on the minibatch's answers that it holds.
    """
    G = config.group_size
    held = len(groups.scores) // G
    units = config.prompts_per_iteration * (G if config.minibatch_of == "answers" else 1)
    stats = []
    for _ in range(config.epochs):
        for chunk in np.array_split(rng.permutation(units), config.minibatches):
            if config.minibatch_of == "groups":
                chunk = (chunk[:, None] * G + np.arange(G)).ravel()  # each group's G answers
            mine = chunk[(chunk >= first * G) & (chunk < (first + held) * G)] - first * G
            rows = torch.as_tensor(mine, device=groups.mask.device)
            stats.append(minibatch_step(model, optimizer, groups.rows(rows), config, iteration))
    return stats


def minibatch_step(model: nn.Module, optimizer, mb: Groups, config: GRPOConfig, iteration: int) -> Tensor:
    r"""One Adam step on a minibatch, of which ``mb`` holds this process's groups (maybe none);
    return the whole minibatch's (loss, approx_kl, clipfrac).

    The aggregation's weights average over this rank's n_k units (answers; tokens for
    ``"token-mean"``), so its share of the minibatch's loss is :func:`grpo_loss` times
    n_k / N, N = Σ_k n_k (exactly 1 in one process); the gradients of the shares are summed
    over the ranks (:func:`rlcourse.rlhf.sft.optimizer_step`).
    """
    device = mb.mask.device
    tokens = mb.mask.sum()
    units = tokens if config.aggregation == "token-mean" else torch.tensor(len(mb.mask), device=device)
    total = distributed.all_reduce_sum(units)
    sums = torch.zeros(3, device=device)  # approx_kl and clipfrac summed over this rank's tokens, the tokens
    if len(mb.mask):
        weights = token_weights(mb.mask, config.aggregation, config.max_new_tokens)
        with autocast(device):
            logp = token_logprobs(model, mb.batch.input_ids, mb.batch.attention_mask, config.temperature).float()
            loss = grpo_loss(logp, mb.logp_old, mb.advantages, weights, config.clip_range, mb.ref_logp, config.kl_coef)
        share = loss * (units / total)  # n_k / N; exactly 1 in one process
        approx_kl, clipfrac = ratio_diagnostics(logp.detach(), mb.logp_old, config.clip_range, mb.mask)
        sums = torch.stack([approx_kl * tokens, clipfrac * tokens, tokens.float()])
    else:  # no group of this minibatch here: a zero share, joining the all-reduces with no gradient
        share = torch.zeros((), device=device, requires_grad=True)
    optimizer_step(model, optimizer, share, config.max_grad_norm, "GRPO loss", iteration, all_reduce=True)
    loss_sum, kl_sum, clip_sum, n = distributed.all_reduce_sum(torch.cat([share.detach()[None].float(), sums])).tolist()
    return torch.tensor([loss_sum, kl_sum / n, clip_sum / n])


def train_grpo(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    score: Score,
    config: GRPOConfig | None = None,
    reference: nn.Module | None = None,
    callback: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place for ``config.iterations`` iterations; return the log.

    ``score(prompts, responses) -> Tensor[B]`` is the verifier. ``reference`` (π_ref, e.g.
    :func:`rlcourse.rlhf.model.frozen_copy` of the SFT model) is needed when ``kl_coef > 0``.
    The log has one row per iteration, columns :data:`LOG_COLUMNS`, measured on the
    iteration's samples: ``reward`` (mean score), ``accuracy`` (share of answers scored ≥ 1),
    ``no_signal`` (share of groups whose answers all scored the same: Ψ = 0, nothing
    learned from them), ``kl`` (mean k1, nats), ``response_length`` (tokens with ``<eos>``),
    and the means over the steps of ``policy_loss``, ``approx_kl`` and ``clipfrac``. Same
    seed, same log, bit for bit, on the CPU (one torch thread meanwhile, the global RNG
    restored after). ``callback(iteration, model)`` runs after each iteration.

    Inside a process group (``torchrun``, :mod:`rlcourse.rlhf.distributed`) it trains
    data-parallel, as the module docstring says: ``config.prompts_per_iteration`` is the
    global P (at least one prompt per rank), rank k draws with the seed
    ``config.seed + k·2³²`` (rank 0's stream is one process's), and every logged number is
    that of all P·G answers, the same on every rank. With ``sampling="per-group"`` the run
    is, up to rounding, the one-process run. ``callback`` runs on every rank.
    """
    config = config or GRPOConfig()
    if not prompts:
        raise ValueError("train_grpo: prompts is empty")
    if config.kl_coef > 0 and reference is None:
        raise ValueError(f"train_grpo: kl_coef = {config.kl_coef} needs a reference model")
    P = config.prompts_per_iteration
    if distributed.world_size() > P:
        raise ValueError(f"train_grpo: prompts_per_iteration = {P} is fewer than the {distributed.world_size()} ranks")
    prompts = list(prompts)
    held = distributed.shard(range(P))  # this rank's groups of every iteration (all P in one process)
    for m in (model, reference):
        if m is not None:
            distributed.broadcast_parameters(m)  # every rank starts from rank 0's weights
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        was_training = model.training
        model.eval()
        rng = np.random.default_rng(config.seed)  # the same on every rank: prompts and minibatches
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(config.seed + distributed.rank() * 2**32)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
        rows = []
        try:
            for iteration in range(1, config.iterations + 1):
                chosen = rng.choice(len(prompts), P, replace=len(prompts) < P)
                mine = [prompts[chosen[j]] for j in held]
                with autocast(device):
                    batch = draw(model, tokenizer, mine, config, generator, iteration, held[0])
                    groups = collect(model, reference, tokenizer, mine, batch, score, config)
                steps = update(model, optimizer, groups, config, rng, iteration, held[0])
                rows.append(_row(iteration, groups, config, steps))
                if callback is not None:
                    callback(iteration, model)
        finally:
            model.train(was_training)
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def _row(iteration: int, groups: Groups, config: GRPOConfig, steps: list[Tensor]) -> tuple:
    """The log row: the iteration's numbers over all P·G answers (sums over the ranks), the steps' means."""
    by_group = groups.scores.view(-1, config.group_size)
    no_signal = (by_group == by_group[:, :1]).all(-1)
    sums = [groups.scores.sum(), (groups.scores >= 1).sum(), no_signal.sum(), groups.kl.sum(), groups.mask.sum()]
    reward, correct, flat, kl, length = distributed.all_reduce_sum(torch.stack(sums).double()).tolist()
    P, B = config.prompts_per_iteration, config.prompts_per_iteration * config.group_size
    return (iteration, reward / B, correct / B, flat / P, kl / B, length / B, *torch.stack(steps).mean(0).tolist())
