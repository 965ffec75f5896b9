r"""DQN's pieces as pure functions: the Q-network, the TD target, the loss, the target
network's update and the ε schedule (lesson 3).

DQN (Mnih et al. 2015) fits :math:`Q_\theta(s, a)` to the one-step target, computed with a
slowly moving copy :math:`Q_{\bar\theta}` (the target network) so the regression target
does not shift with every gradient step:

.. math::

    y = r + \gamma\, (1 - \text{terminated})\, \max_{a'} Q_{\bar\theta}(s', a')

Only ``terminated`` zeroes the bootstrap; a transition cut by a time limit (``truncated``)
keeps it. Double DQN (van Hasselt et al. 2016) lets the online network choose the action
and the target network value it, which removes most of the max's overestimation:

.. math::

    y = r + \gamma\, (1 - \text{terminated})\,
        Q_{\bar\theta}\big(s', \arg\max_{a'} Q_\theta(s', a')\big)

The loss is the Huber (smooth L1, δ = 1) or squared error between
:math:`Q_\theta(s, a)` and :math:`y`. The target network follows the online one by Polyak
averaging, :math:`\bar\theta \leftarrow \tau\theta + (1 - \tau)\bar\theta`; τ = 1 every C
steps is the original hard update.

The dueling head (Wang et al. 2016) splits the last layer into a state value and
advantages, made identifiable by subtracting their mean:

.. math::

    Q(s, a) = V(s) + A(s, a) - \frac{1}{|\mathcal{A}|} \sum_{a'} A(s, a')
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcourse.config import ConfigError
from rlcourse.networks import mlp


class DuelingQNetwork(nn.Module):
    """A shared trunk, then V(s) and A(s, ·) heads combined as V + A − mean_a A."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.spec = {"kind": "q", "obs_dim": obs_dim, "n_actions": n_actions, "hidden": list(hidden), "dueling": True}
        self.trunk = nn.Sequential(mlp([obs_dim, *hidden], activation=nn.ReLU), nn.ReLU() if hidden else nn.Identity())
        width = hidden[-1] if hidden else obs_dim
        self.value = mlp([width, 1])
        self.advantage = mlp([width, n_actions])

    def forward(self, obs: Tensor) -> Tensor:
        features = self.trunk(obs)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(-1, keepdim=True)


def q_network(obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64), dueling: bool = False) -> nn.Module:
    """An MLP with ReLUs mapping ``[B, obs_dim]`` observations to ``[B, n_actions]`` Q-values."""
    if dueling:
        return DuelingQNetwork(obs_dim, n_actions, hidden)
    net = mlp([obs_dim, *hidden, n_actions], activation=nn.ReLU)
    # torch types Module.__setattr__'s value as Tensor | Module, though any attribute may be set
    net.spec = {  # type: ignore[assignment]
        "kind": "q",
        "obs_dim": obs_dim,
        "n_actions": n_actions,
        "hidden": list(hidden),
        "dueling": False,
    }
    return net


@torch.no_grad()
def dqn_target(
    rewards: Tensor,
    next_obs: Tensor,
    terminated: Tensor,
    target_net: nn.Module,
    gamma: float,
    double: bool = False,
    online_net: nn.Module | None = None,
) -> Tensor:
    """The TD target y for each transition of a batch (no gradient flows through it).

    ``double=True`` is double DQN and needs ``online_net`` to pick the next action.
    """
    if double and online_net is None:
        raise ValueError("dqn_target(double=True) needs online_net to choose the next action")
    ### BEGIN SOLUTION
    next_q = target_net(next_obs)
    if double and online_net is not None:
        next_actions = online_net(next_obs).argmax(-1, keepdim=True)
        next_value = next_q.gather(-1, next_actions).squeeze(-1)
    else:
        next_value = next_q.max(-1).values
    return rewards + gamma * (1.0 - terminated.to(next_value.dtype)) * next_value
    ### END SOLUTION


def td_loss(q_taken: Tensor, y: Tensor, kind: str = "huber") -> Tensor:
    """Mean Huber (δ = 1) or squared error between Q(s, a) and the target y."""
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, y)
    if kind == "mse":
        return F.mse_loss(q_taken, y)
    raise ConfigError(f"td_loss kind = {kind!r} is not allowed: it must be one of 'huber', 'mse'")


@torch.no_grad()
def polyak_update(target: nn.Module | Tensor, online: nn.Module | Tensor, tau: float) -> None:
    """θ̄ ← τθ + (1 − τ)θ̄ in place; τ = 1 copies the online network exactly.

    ``target`` and ``online`` are networks, or their flat parameter vectors
    (:func:`~rlcourse.networks.flatten_parameters`), which is one operation instead of
    one per tensor.
    """
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"polyak_update tau = {tau!r} is out of range: it must be in [0, 1]")
    pairs: Iterable[tuple[Tensor, Tensor]]
    if isinstance(target, nn.Module) and isinstance(online, nn.Module):
        for target_buffer, buffer in zip(target.buffers(), online.buffers()):
            target_buffer.copy_(buffer)
        pairs = zip(target.parameters(), online.parameters())
    elif isinstance(target, Tensor) and isinstance(online, Tensor):
        pairs = [(target, online)]
    else:
        raise TypeError("polyak_update: target and online must be two networks or two flat parameter vectors")
    for target_param, param in pairs:
        ### BEGIN SOLUTION
        if tau == 1.0:
            target_param.copy_(param)
        else:
            target_param.mul_(1.0 - tau).add_(param, alpha=tau)
        ### END SOLUTION


def linear_epsilon(step: int, start: float, end: float, fraction: float, total_steps: int) -> float:
    """ε falls linearly from ``start`` to ``end`` over the first ``fraction`` of
    ``total_steps``, then stays at ``end``."""
    ### BEGIN SOLUTION
    duration = fraction * total_steps
    if step >= duration:
        return end
    return start + (end - start) * step / duration
    ### END SOLUTION
