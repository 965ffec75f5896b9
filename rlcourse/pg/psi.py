r"""Ψ_t: the weight of each log-probability in the policy gradient (lessons 4–7).

Every policy-gradient method in rlcourse is one estimator with a different weight:

.. math::

    \nabla_\theta J(\theta) \approx \frac{1}{|B|} \sum_{(t, i) \in B}
        \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, \Psi_t

==========================  =====================================================
method                      :math:`\Psi_t`
==========================  =====================================================
REINFORCE                   total return :math:`R(\tau)`
rewards-to-go               :math:`G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'}`
with a baseline             :math:`G_t - b` (constant, running mean, :math:`b_t`,
                            :math:`V(s_t)`, minimum-variance)
TD actor-critic / A2C       :math:`\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)`, or
                            its n-step form
GAE(γ, λ)                   :math:`\sum_l (\gamma\lambda)^l \delta_{t+l}`
Q actor-critic              :math:`Q_w(s_t, a_t)`
==========================  =====================================================

Every function here is pure: tensors in, tensors out, no gradient (call them on
detached values). All arrays are time-major ``[T, N]``: T steps of N parallel
environments, with

* ``rewards[t]`` the reward received for the action taken at step t;
* ``terminated[t]`` — step t ended its episode in a terminal state: nothing follows it;
* ``truncated[t]`` — step t hit the time limit: the episode was cut, and its future is
  still worth :math:`V(s_{t+1})` of the real final observation;
* ``values[t]`` :math:`= V(s_t)`, and ``next_values[t]`` :math:`= V(s_{t+1})` of the real
  next state: the final observation when the episode ended at t, and at ``t = T-1`` the
  state the next batch starts from;
* ``starts[t]`` — step t is the first of its episode; ``timesteps[t]`` its index in it.

A terminated step never bootstraps; a truncated one bootstraps from ``next_values`` when
a critic is there. Without a critic, a cut episode is summed as if it ended at the cut:
:func:`complete_episodes` marks the steps whose whole episode lies in the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def complete_episodes(starts: Tensor, terminated: Tensor, truncated: Tensor) -> Tensor:
    """Mask [T, N]: the step's episode both starts and ends inside the batch."""
    done = terminated | truncated
    started = torch.zeros_like(done)
    ends = torch.zeros_like(done)
    for t in range(len(done)):
        started[t] = starts[t] | (started[t - 1] if t > 0 else False)
    for t in reversed(range(len(done))):
        ends[t] = done[t] | (ends[t + 1] if t + 1 < len(done) else False)
    return started & ends


def reward_to_go(
    rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float, next_values: Tensor | None = None
) -> Tensor:
    r"""Discounted return from step t to the end of its episode.

    .. math::

        G_t = r_t + \gamma\, G_{t+1}, \qquad G_t = r_t \text{ at a terminal step}

    With ``next_values`` (a critic), an episode cut by the time limit or by the end of the
    batch is bootstrapped there: :math:`G_t = r_t + \gamma V(s_{t+1})` at the cut.
    Without it, the cut counts as the end of the episode.
    """
    # Hint: walk backwards, G_t = r_t + γ·(what follows step t): G_{t+1} inside an episode, 0 after
    # Hint: a terminal step, next_values[t] after a cut (time limit or the batch's last step) when a
    # Hint: critic is given, else 0. torch.where handles a whole row of N environments at once.
    ### BEGIN SOLUTION
    G = torch.empty_like(rewards)
    future = torch.zeros_like(rewards[0]) if next_values is None else next_values[-1]
    for t in reversed(range(len(rewards))):
        if next_values is None:
            future = torch.where(terminated[t] | truncated[t], 0.0, future)
        else:
            future = torch.where(terminated[t], 0.0, torch.where(truncated[t], next_values[t], future))
        G[t] = rewards[t] + gamma * future
        future = G[t]
    return G
    ### END SOLUTION


def total_return(rewards: Tensor, terminated: Tensor, truncated: Tensor, starts: Tensor, gamma: float) -> Tensor:
    r"""The whole episode's discounted return, the same for each of its steps (REINFORCE).

    .. math::

        \Psi_t = R(\tau) = \sum_{k=0}^{|\tau|-1} \gamma^k r_k

    It is :math:`G` at the episode's first step, carried forward to its other steps. Only
    steps of complete episodes (:func:`complete_episodes`) get their true R(τ).
    """
    G = reward_to_go(rewards, terminated, truncated, gamma)
    R = torch.empty_like(G)
    for t in range(len(G)):
        R[t] = torch.where(starts[t], G[t], R[t - 1] if t > 0 else G[t])
    return R


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` over the steps where ``mask`` is True (all steps if it is None)."""
    return x.mean() if mask is None else x[mask].mean()


def normalize_advantages(
    adv: Tensor, mode: str = "standardize", mask: Tensor | None = None, eps: float = 1e-8
) -> Tensor:
    r"""Rescale Ψ over a batch (over ``mask``; 0 off it), the two ways policy-gradient code does:

    * ``"standardize"`` (PPO, TRPO, RLHF's "whitening"): :math:`(\Psi - \bar\Psi) / (\sigma_\Psi + \epsilon)`,
      zero mean and unit (unbiased) standard deviation. Subtracting the mean is a baseline
      of its own; harmless where a ratio or a trust region bounds the step.
    * ``"scale"`` (REINFORCE, A2C): :math:`\Psi / (\sqrt{\overline{\Psi^2}} + \epsilon)`,
      unit root-mean-square, the sign of every Ψ and the baseline the Ψ already has kept.

    Either way only the step size changes, by one factor per batch. A batch of one sample
    is left as it is (its spread is undefined).
    """
    values = adv.flatten() if mask is None else adv[mask]
    if len(values) <= 1:
        out = adv
    elif mode == "standardize":
        out = (adv - values.mean()) / (values.std() + eps)
    elif mode == "scale":
        out = adv / (values.pow(2).mean().sqrt() + eps)
    else:
        raise ValueError(f"mode = {mode!r} is not allowed: it must be 'standardize' or 'scale'")
    return out if mask is None else torch.where(mask, out, torch.zeros_like(out))


def constant_baseline(G: Tensor, mask: Tensor | None = None) -> Tensor:
    r""":math:`\Psi_t = G_t - \bar G`, with :math:`\bar G` the batch mean of G over ``mask``."""
    # Hint: one number, the mean of G (over the masked entries only when mask is given).
    ### BEGIN SOLUTION
    return G - masked_mean(G, mask)
    ### END SOLUTION


def running_baseline(
    G: Tensor, rho: float | None, beta: float = 0.9, mask: Tensor | None = None
) -> tuple[Tensor, float]:
    r"""Subtract a running average of past returns; return Ψ and the updated average.

    .. math::

        \Psi_t = G_t - \hat\rho, \qquad \hat\rho \leftarrow \beta\hat\rho + (1-\beta)\,\bar G

    Ψ uses the average *before* this batch is folded in, so the baseline does not depend
    on the samples it weighs and the estimate stays unbiased. The first call
    (``rho=None``) starts the average at this batch's mean.
    """
    # Hint: Ψ uses rho as it was before this batch; then fold the batch mean of G into it.
    # Hint: the first call (rho is None) uses this batch's mean for both.
    ### BEGIN SOLUTION
    batch_mean = float(masked_mean(G, mask))
    if rho is None:
        return G - batch_mean, batch_mean
    return G - rho, beta * rho + (1 - beta) * batch_mean
    ### END SOLUTION


def time_baseline(G: Tensor, timesteps: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Subtract :math:`b_t`, the mean return of all samples at the same time in their episode.

    .. math::

        \Psi_t = G_t - b_{k(t)}, \qquad b_k = \operatorname{mean}\{G_{t'} : k(t') = k\}
    """
    # Hint: b_k is the mean of the (masked) G whose timestep is k; index_add_ sums by timestep,
    # Hint: or loop over the distinct timesteps. Then subtract b at each entry's own timestep.
    ### BEGIN SOLUTION
    keep = torch.ones_like(G, dtype=torch.bool) if mask is None else mask
    size = int(timesteps.max()) + 1
    sums = torch.zeros(size, dtype=G.dtype, device=G.device).index_add_(0, timesteps[keep], G[keep])
    counts = torch.zeros(size, dtype=G.dtype, device=G.device).index_add_(0, timesteps[keep], torch.ones_like(G[keep]))
    b = sums / counts.clamp(min=1)
    return G - b[timesteps]
    ### END SOLUTION


def value_baseline(G: Tensor, values: Tensor) -> Tensor:
    r""":math:`\Psi_t = G_t - V(s_t)`: the learned state value as the baseline."""
    # Hint: a one-liner.
    ### BEGIN SOLUTION
    return G - values
    ### END SOLUTION


def min_variance_baseline(G: Tensor, grad_sq_norms: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Subtract the baseline that minimises the estimator's variance.

    .. math::

        b^* = \frac{\mathbb{E}\big[\lVert\nabla_\theta \log\pi_\theta(a \mid s)\rVert^2\, G\big]}
                   {\mathbb{E}\big[\lVert\nabla_\theta \log\pi_\theta(a \mid s)\rVert^2\big]}

    estimated on the batch; ``grad_sq_norms[t]`` is the squared norm of the score
    :math:`\nabla_\theta \log \pi_\theta(a_t \mid s_t)` of each sample.
    """
    # Hint: b* is one number: the batch mean of ‖∇ log π‖²·G divided by that of ‖∇ log π‖²
    # Hint: (over the masked entries), guarded against a zero denominator.
    ### BEGIN SOLUTION
    w, g = (grad_sq_norms, G) if mask is None else (grad_sq_norms[mask], G[mask])
    return G - (w * g).sum() / w.sum().clamp(min=1e-12)
    ### END SOLUTION


def td_residual(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    r"""One-step TD error, the advantage estimate of TD actor-critic.

    .. math::

        \delta_t = r_t + \gamma\,(1 - \text{terminated}_t)\, V(s_{t+1}) - V(s_t)
    """
    # Hint: element-wise over [T, N]; a terminated step has no V(s_{t+1}).
    ### BEGIN SOLUTION
    return rewards + gamma * torch.where(terminated, 0.0, next_values) - values
    ### END SOLUTION


def n_step_advantage(
    rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor, gamma: float, n: int
) -> Tensor:
    r"""n-step return minus V(s_t), the advantage of A2C/A3C.

    .. math::

        A^{(n)}_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k} + \gamma^m V(s_{t+m}) - V(s_t)

    with :math:`m \le n` shortened where the episode or the batch ends first; a terminal
    end contributes no :math:`V`, a truncated one or the batch end its ``next_values``.
    """
    # Hint: for each t, add γ^k r_{t+k} for k = 0, 1, … and stop after n steps, at the end
    # Hint: of the episode or at the end of the batch, whichever comes first. Add γ^m times
    # Hint: next_values of the last step summed unless that step terminated; subtract V(s_t).
    ### BEGIN SOLUTION
    T = len(rewards)
    A = torch.empty_like(rewards)
    for t in range(T):
        G = torch.zeros_like(rewards[t])
        discount = torch.ones_like(rewards[t])
        bootstrap = torch.zeros_like(rewards[t])
        open_ = torch.ones_like(terminated[t])
        steps = min(n, T - t)
        for k in range(steps):
            i = t + k
            G = G + torch.where(open_, discount * rewards[i], 0.0)
            discount = torch.where(open_, discount * gamma, discount)
            stop = open_ & (terminated[i] | truncated[i] | (k == steps - 1))
            bootstrap = torch.where(stop & ~terminated[i], next_values[i], bootstrap)
            open_ = open_ & ~stop
        A[t] = G + discount * bootstrap - values[t]
    return A
    ### END SOLUTION


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    r"""Generalised advantage estimation, GAE(γ, λ) (Schulman et al., 2016).

    .. math::

        \hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}
                 = \delta_t + \gamma\lambda\,(1 - \text{done}_t)\, \hat A_{t+1}

    The sum stops at the episode's end (terminated or truncated; the truncated step's δ
    already holds its bootstrap) and at the end of the batch. λ = 0 gives the TD residual,
    λ = 1 the discounted return minus V. The critic's regression target is
    :math:`\hat A_t + V(s_t)`.
    """
    # Hint: compute δ_t, then walk backwards: Â_t = δ_t + γλ Â_{t+1}, restarting the sum
    # Hint: (Â_{t+1} = 0) after a step that ended its episode and at the end of the batch.
    ### BEGIN SOLUTION
    delta = td_residual(rewards, values, next_values, terminated, gamma)
    done = terminated | truncated
    A = torch.empty_like(delta)
    running = torch.zeros_like(delta[0])
    for t in reversed(range(len(delta))):
        running = delta[t] + gamma * lam * torch.where(done[t], 0.0, running)
        A[t] = running
    return A
    ### END SOLUTION


def q_actor_critic(q_values: Tensor, actions: Tensor) -> Tensor:
    r""":math:`\Psi_t = Q_w(s_t, a_t)`: the critic's action value of the action taken.

    ``q_values`` is ``[T, N, n_actions]``; the critic :math:`Q_w` is trained on the TD
    target :math:`r_t + \gamma (1 - \text{terminated}_t) Q_w(s_{t+1}, a_{t+1})`.
    """
    return q_values.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------- lesson 8: a group of answers per prompt
#
# RL with verifiable rewards samples G answers y_1, …, y_G to each prompt x and scores each
# with one number r_i = R(x, y_i). There is no critic: the baseline comes from the group.
# ``rewards`` is [P, G] (P prompts, G answers each); each function returns the Ψ of every
# answer, [P, G], the same for each of that answer's tokens.


def no_baseline(rewards: Tensor) -> Tensor:
    r"""Plain REINFORCE on whole answers: :math:`\Psi_i = r_i`."""
    return rewards.clone()


def group_mean_baseline(rewards: Tensor) -> Tensor:
    r"""Subtract the group's mean (Dr. GRPO, Liu et al. 2025):

    .. math::

        \Psi_i = r_i - \bar r, \qquad \bar r = \frac{1}{G}\sum_{j=1}^{G} r_j

    :math:`\bar r` contains :math:`r_i` itself, so :math:`\mathbb E[\Psi_i \nabla\log\pi(y_i)]`
    is :math:`\frac{G-1}{G}` of the exact gradient: the right direction, shrunk by a constant.
    """
    # Hint: the mean over the last axis (the G answers of one prompt), kept as a column.
    ### BEGIN SOLUTION
    return rewards - rewards.mean(-1, keepdim=True)
    ### END SOLUTION


def grpo_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    r"""GRPO's group standardisation (Shao et al. 2024, DeepSeekMath):

    .. math::

        \Psi_i = \frac{r_i - \bar r}{\sigma + \epsilon}, \qquad
        \sigma = \sqrt{\tfrac{1}{G-1}\textstyle\sum_j (r_j - \bar r)^2}

    (the unbiased standard deviation, as TRL's ``GRPOTrainer`` computes it). A group whose
    answers all score the same has Ψ = 0. Dividing by σ re-weights the prompts: one that the
    policy almost always (or almost never) solves has a small σ and so a large weight.
    """
    # Hint: mean and std over the last axis (keepdim=True); std with its default correction (G − 1).
    ### BEGIN SOLUTION
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, keepdim=True) + eps)
    ### END SOLUTION


def rloo_advantages(rewards: Tensor) -> Tensor:
    r"""REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024):

    .. math::

        \Psi_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j = \frac{G}{G-1}\,(r_i - \bar r)

    The baseline of answer i is the mean of the *other* answers, independent of y_i, so the
    estimate is unbiased. Needs G ≥ 2.
    """
    # Hint: the sum of the others is the group's sum minus r_i; divide by G − 1.
    ### BEGIN SOLUTION
    G = rewards.shape[-1]
    if G < 2:
        raise ValueError(f"rloo_advantages: the group has {G} answer; leave-one-out needs at least 2")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (G - 1)
    return rewards - others
    ### END SOLUTION


AGGREGATIONS = ("sequence-mean", "token-mean", "constant")


def token_weights(mask: Tensor, aggregation: str, constant: float | None = None) -> Tensor:
    r"""The weight :math:`w_{i,t}` of each token's term in the loss :math:`\sum_{i,t} w_{i,t}\,\ell_{i,t}`.

    ``mask`` is [B, T] (1 on the answer tokens of B answers). The three ways GRPO-family
    code averages a batch of answers of lengths :math:`|y_i|`:

    * ``"sequence-mean"`` (GRPO as published): a mean over each answer's tokens, then over
      the answers, :math:`w_{i,t} = 1 / (B\,|y_i|)`. A short answer's tokens weigh more: a
      long wrong answer is penalised less per token than a short wrong one.
    * ``"token-mean"`` (DAPO; lesson 7's PPO): one mean over all the batch's tokens,
      :math:`w_{i,t} = 1 / \sum_j |y_j|`.
    * ``"constant"`` (Dr. GRPO): a sum over each answer's tokens divided by one constant
      for every batch, :math:`w_{i,t} = 1 / (B\,C)` (C = ``constant``, e.g. the longest
      allowed answer; C = 1 is the plain sum of sequence-level REINFORCE and RLOO).

    Off the mask the weight is 0. Only the constant weighting makes the loss's gradient
    the policy gradient of lesson 4 times a number fixed in advance.
    """
    # Hint: lengths are the row sums of the mask; broadcast a [B, 1] column of weights over the row
    # Hint: and multiply by the mask. Reject an unknown aggregation and a missing or non-positive constant.
    ### BEGIN SOLUTION
    m = mask.to(torch.get_default_dtype() if not mask.is_floating_point() else mask.dtype)
    B = m.shape[0]
    if aggregation == "sequence-mean":
        w = 1.0 / (B * m.sum(-1, keepdim=True).clamp(min=1))
    elif aggregation == "token-mean":
        w = 1.0 / m.sum().clamp(min=1)
    elif aggregation == "constant":
        if constant is None or not constant > 0:
            raise ValueError(f"token_weights: constant = {constant!r} is out of range: it must be in (0, inf)")
        w = torch.tensor(1.0 / (B * constant), dtype=m.dtype)
    else:
        raise ValueError(f"aggregation = {aggregation!r} is not allowed: it must be one of {', '.join(AGGREGATIONS)}")
    return w * m
    ### END SOLUTION
