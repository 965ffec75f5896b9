r"""The TD(λ) actor-critic: eligibility traces on the actor and on the critic (lesson 5).

The policy-gradient template weights each :math:`\nabla_\theta \log \pi_\theta(a_t \mid s_t)`
by a :math:`\Psi_t`. With :math:`\Psi_t = \hat A^{\text{GAE}(\gamma, \lambda)}_t =
\sum_{k \ge t} (\gamma\lambda)^{k-t} \delta_k` (lesson 5's GAE) the whole episode must be
seen before the first update: that is the *forward view*. The *backward view* updates after
every step, with a trace per parameter vector (Sutton & Barto, 2nd ed., §13.5, "Actor–Critic
with Eligibility Traces"; Sutton, McAllester, Singh & Mansour 2000's table lists it as the
TD(λ) actor-critic):

.. math::

    \delta_t = r_{t+1} + \gamma\,(1 - \text{terminated})\,V_w(s_{t+1}) - V_w(s_t),

    \mathbf z_w \leftarrow \gamma\lambda_w\, \mathbf z_w + \nabla_w V_w(s_t), \qquad
    w \leftarrow w + \alpha_w\, \delta_t\, \mathbf z_w,

    \mathbf z_\theta \leftarrow \gamma\lambda_\theta\, \mathbf z_\theta + \nabla_\theta \log\pi_\theta(a_t \mid s_t),
    \qquad \theta \leftarrow \theta + \alpha_\theta\, \delta_t\, \mathbf z_\theta .

Summed over an episode with θ held fixed, the actor's steps are
:math:`\sum_k \delta_k \mathbf z_{\theta,k} = \sum_t \nabla_\theta \log\pi_\theta(a_t \mid s_t)
\sum_{k \ge t} (\gamma\lambda_\theta)^{k-t}\delta_k`: exactly the policy gradient with
:math:`\Psi_t` = GAE(γ, λ_θ), reordered as lesson 2's TD(λ) reorders the λ-return (tested in
``tests/test_td_lambda_ac.py`` against :func:`rlcourse.pg.psi.gae`). Like A2C and PPO, and
unlike the book's pseudocode, the actor's step leaves out the factor :math:`\gamma^t`
of the discounted objective (Thomas 2014). A step cut by the time limit still bootstraps;
the traces restart with every episode.

Pseudocode (Sutton & Barto, 2nd ed., §13.5, without the γ^t)::

    for each episode:
        s ← reset();  z_θ ← 0;  z_w ← 0
        until terminated or truncated:
            a ~ π_θ(· | s);  take a, observe r, s'
            δ ← r + γ (1 − terminated) V_w(s') − V_w(s)
            z_w ← γλ_w z_w + ∇_w V_w(s);          w ← w + α_w δ z_w
            z_θ ← γλ_θ z_θ + ∇_θ log π_θ(a | s);  θ ← θ + α_θ δ z_θ
            s ← s'
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlcourse.config import check_layers, check_range
from rlcourse.pg.policies import ValueFunction, make_policy
from rlcourse.run import IterationRecord, NonFiniteError, Result, check_run_args, seed_everything, torch_threads


@dataclasses.dataclass(frozen=True)
class TDLambdaACConfig:
    gamma: float = 0.99  # discount γ
    lam_actor: float = 0.8  # λ_θ, the actor's trace decay
    lam_critic: float = 0.8  # λ_w, the critic's trace decay
    lr_actor: float = 0.01  # α_θ
    lr_critic: float = 0.01  # α_w
    hidden: tuple[int, ...] = (32,)

    def __post_init__(self):
        check_range(self, "gamma", 0, 1)
        check_range(self, "lam_actor", 0, 1)
        check_range(self, "lam_critic", 0, 1)
        check_range(self, "lr_actor", 0, None, low_open=True)
        check_range(self, "lr_critic", 0, None, low_open=True)
        check_layers(self)


def decay_and_add(traces: list, grads, decay: float) -> None:
    """z ← decay · z + g for each parameter's trace (in place)."""
    # Hint: one trace tensor per parameter, the same shape as its gradient; decay is γλ.
    ### BEGIN SOLUTION
    for z, g in zip(traces, grads):
        z.mul_(decay).add_(g)
    ### END SOLUTION


def trace_step(params: list, traces: list, delta: float, lr: float) -> None:
    """θ ← θ + α δ z for each parameter (in place): a step *up* the traced gradient, scaled by δ."""
    # Hint: no optimiser here: change each parameter's data directly, without recording a gradient.
    ### BEGIN SOLUTION
    with torch.no_grad():
        for p, z in zip(params, traces):
            p.add_(z, alpha=lr * delta)
    ### END SOLUTION


def td_step(
    actor_params: list,
    actor_traces: list,
    critic_params: list,
    critic_traces: list,
    reward: float,
    value: float,
    next_value: float,
    config: TDLambdaACConfig,
) -> float:
    """One update of the TD(λ) actor-critic, after the traces took this step's gradients.

    δ = r + γ V(s') − V(s) (``next_value`` is already 0 when s' is terminal, and still V(s')
    when the time limit cut the episode); then w ← w + α_w δ z_w and θ ← θ + α_θ δ z_θ.
    Returns δ.
    """
    # Hint: one TD error for both steps, from the values before either network moves.
    ### BEGIN SOLUTION
    td_error = reward + config.gamma * next_value - value
    trace_step(critic_params, critic_traces, td_error, config.lr_critic)
    trace_step(actor_params, actor_traces, td_error, config.lr_actor)
    return td_error
    ### END SOLUTION


def act_and_trace(policy, critic, obs, actor_traces: list, critic_traces: list, config: TDLambdaACConfig):
    """Sample a ~ π(· | s); add ∇ log π(a | s) and ∇ V(s) to the decayed traces. Returns ``(a, V(s))``."""
    x = torch.as_tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0)
    dist = policy.distribution(x)
    action = dist.sample()
    logp = policy.log_prob(dist, action).sum()
    value = critic(x).sum()
    actor_grads = torch.autograd.grad(logp, list(policy.parameters()))
    critic_grads = torch.autograd.grad(value, list(critic.parameters()))
    decay_and_add(actor_traces, actor_grads, config.gamma * config.lam_actor)
    decay_and_add(critic_traces, critic_grads, config.gamma * config.lam_critic)
    return action.squeeze(0).numpy(), float(value.detach())


def train(
    env_id: str = "CartPole-v1",
    config: TDLambdaACConfig | None = None,
    *,
    steps: int = 60_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    callback=None,
) -> Result:
    """Run the TD(λ) actor-critic for ``steps`` env steps, one environment, an update per step.

    The log has one row per episode: ``episode``, ``env_steps``, ``return``, ``length``,
    ``mean_abs_td_error``. ``callback(env_steps, policy)`` runs after each episode.
    """
    config = config or TDLambdaACConfig()
    check_run_args(steps)
    env = gym.make(env_id, **(env_kwargs or {}))
    seed_everything(seed)
    policy = make_policy("td-lambda-ac", env.observation_space, env.action_space, config.hidden)
    critic = ValueFunction(policy.spec["obs_dim"], config.hidden)
    actor_params, critic_params = list(policy.parameters()), list(critic.parameters())
    record = IterationRecord(
        "td-lambda-ac",
        env_id,
        env_kwargs,
        config,
        seed,
        steps,
        columns=LOG_COLUMNS,
        make_row=lambda window, returns, lengths: window[-1],
        out=out,
        progress=progress,
        checkpoint_every=10**12,
        callback=callback,
    )
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    actor_traces, critic_traces = (
        [torch.zeros_like(p) for p in actor_params],
        [torch.zeros_like(p) for p in critic_params],
    )
    episode_return, length, abs_td = 0.0, 0, 0.0
    with record, torch_threads(1):
        for step in range(1, steps + 1):
            action, value = act_and_trace(policy, critic, obs, actor_traces, critic_traces, config)
            obs, reward, terminated, truncated, _ = env.step(action)
            with torch.no_grad():
                next_value = 0.0 if terminated else float(critic(torch.as_tensor(obs, dtype=torch.float32)))
            delta = td_step(
                actor_params, actor_traces, critic_params, critic_traces, float(reward), value, next_value, config
            )
            if not math.isfinite(delta):
                raise NonFiniteError("TD error", step, None)
            episode_return, length, abs_td = episode_return + float(reward), length + 1, abs_td + abs(delta)
            if terminated or truncated:
                stats = {"episode": len(record.rows), "length": length, "mean_abs_td_error": abs_td / length}
                record.end_iteration(step, stats, [episode_return], [length], lambda: {}, policy)
                obs, _ = env.reset()
                for z in actor_traces + critic_traces:
                    z.zero_()
                episode_return, length, abs_td = 0.0, 0, 0.0
        record.advance(steps)
    env.close()
    return record.result(policy)


LOG_COLUMNS = ["episode", "env_steps", "return", "length", "mean_abs_td_error"]
