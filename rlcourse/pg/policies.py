r"""Policies and value functions: small MLPs in plain PyTorch.

* :class:`CategoricalPolicy` — Discrete actions: logits :math:`f_\theta(s)`,
  :math:`\pi_\theta(a \mid s) = \operatorname{softmax}(f_\theta(s))_a`.
* :class:`GaussianPolicy` — Box actions: a diagonal Gaussian with mean
  :math:`\mu_\theta(s)` and a state-independent log standard deviation, one learned
  number per action dimension:

  .. math::

      \log \pi_\theta(a \mid s) = -\sum_j \Big[ \frac{(a_j - \mu_j)^2}{2\sigma_j^2}
          + \log \sigma_j + \tfrac12 \log 2\pi \Big]

* :class:`ValueFunction` — :math:`V_\phi(s)`, a scalar per state.

Acting greedily for evaluation (``act``) takes the most likely action: the arg-max of the
logits, or the Gaussian's mean clipped to the action bounds.

Inputs. ``distribution`` and ``sample`` take what the networks read; ``act`` takes an
observation as the environment sends it. They differ only when the run normalised its
observations (``normalize_obs``): then the policy holds the run's
:class:`~rlcourse.pg.normalize.ObsNormalizer` as ``obs_normalizer``, ``act`` applies it
(frozen: acting never changes the statistics), and ``save`` writes its statistics beside
the weights, where :func:`load_policy` finds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal, kl_divergence

from rlcourse.networks import mlp, read_module, save_module
from rlcourse.pg.normalize import STATS_FILE, ObsNormalizer
from rlcourse.run import UnsupportedSpaceError

#: The hidden layers' nonlinearity, by the name a config gives (SB3's activation_fn).
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class Policy(nn.Module):
    """What every policy-gradient trainer asks of a policy; :class:`CategoricalPolicy` and
    :class:`GaussianPolicy` fill it in. Each takes back only the kind of distribution it
    makes (hence ``dist: Any`` here)."""

    spec: dict[str, Any]  # what module_from_spec needs to build it again
    obs_normalizer: ObsNormalizer | None = None  # the run's observation statistics (normalize_obs)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """π(· | s) for a batch of observations."""
        raise NotImplementedError

    def log_prob(self, dist: Any, actions: torch.Tensor) -> torch.Tensor:
        """log π(a | s) per state."""
        raise NotImplementedError

    def entropy(self, dist: Any) -> torch.Tensor:
        """H(π(· | s)) per state."""
        raise NotImplementedError

    def kl(self, old: Any, new: Any) -> torch.Tensor:
        """KL(old(· | s) ‖ new(· | s)) per state, in nats."""
        raise NotImplementedError

    def rows(self, dist: Any, index: torch.Tensor) -> Distribution:
        """The distributions of the states ``index`` picks out of a batch."""
        raise NotImplementedError

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for a batch of observations and their log-probabilities (for acting)."""
        raise NotImplementedError

    def act(self, obs: Any, rng: np.random.Generator | None = None) -> Any:
        """The most likely action for one observation (greedy evaluation)."""
        raise NotImplementedError

    def network_input(self, obs: Any) -> torch.Tensor:
        """One observation as the environment sent it, as the networks read it (normalised, if the run did)."""
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer(obs)
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32)

    def save(self, directory: str | Path) -> None:
        """The weights and spec, and the observation statistics if there are any (an old file of
        them is removed, so that a policy trained without them never loads another's)."""
        save_module(self, directory)
        if self.obs_normalizer is not None:
            self.obs_normalizer.save(directory)
        else:
            (Path(directory) / STATS_FILE).unlink(missing_ok=True)


class CategoricalPolicy(Policy):
    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh"):
        super().__init__()
        self.spec = {
            "kind": "categorical",
            "obs_dim": obs_dim,
            "n_actions": n_actions,
            "hidden": list(hidden),
            "activation": activation,
        }
        self.logits = mlp([obs_dim, *hidden, n_actions], ACTIVATIONS[activation], output_gain=0.01)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        # no argument checks (here and in GaussianPolicy): for nets this small they cost as much as
        # the forward pass, once per environment step; the training loops check their losses instead
        return Categorical(logits=self.logits(obs), validate_args=False)

    def log_prob(self, dist: Categorical, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions)

    def entropy(self, dist: Categorical) -> torch.Tensor:
        """H(π(· | s)) per state."""
        return dist.entropy()

    def kl(self, old: Categorical, new: Categorical) -> torch.Tensor:
        """KL(old(· | s) ‖ new(· | s)) per state, in nats."""
        return kl_divergence(old, new)

    def rows(self, dist: Categorical, index: torch.Tensor) -> Categorical:
        """The distributions of the states ``index`` picks out of a batch."""
        return Categorical(logits=dist.logits[index], validate_args=False)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for a batch of observations [N, obs_dim] and their log-probabilities, for
        acting: the numbers ``distribution(obs).sample()`` and ``log_prob`` give (the same
        operations, the same random draws), without the distribution object, which costs
        as much as the forward pass at this size and runs once per environment step."""
        logits = self.logits(obs)
        logits = logits - logits.logsumexp(-1, keepdim=True)
        actions = torch.multinomial(logits.softmax(-1), 1, True)
        return actions.squeeze(-1), logits.gather(-1, actions).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: Any, rng: np.random.Generator | None = None) -> int:
        """The most likely action for one observation (greedy evaluation)."""
        return int(self.logits(self.network_input(obs)).argmax())


class GaussianPolicy(Policy):
    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        log_std_init: float = 0.0,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
        activation: str = "tanh",
    ):
        super().__init__()
        self.spec = {
            "kind": "gaussian",
            "obs_dim": obs_dim,
            "act_dim": act_dim,
            "hidden": list(hidden),
            "log_std_init": log_std_init,
            "low": None if low is None else np.asarray(low, dtype=float).tolist(),
            "high": None if high is None else np.asarray(high, dtype=float).tolist(),
            "activation": activation,
        }
        self.mean = mlp([obs_dim, *hidden, act_dim], ACTIVATIONS[activation], output_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Normal:
        return Normal(self.mean(obs), self.log_std.exp(), validate_args=False)

    def log_prob(self, dist: Normal, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Normal) -> torch.Tensor:
        """H(π(· | s)) per state: the action dimensions are independent, so their entropies add."""
        return dist.entropy().sum(-1)

    def kl(self, old: Normal, new: Normal) -> torch.Tensor:
        """KL(old(· | s) ‖ new(· | s)) per state, summed over the independent action dimensions."""
        return kl_divergence(old, new).sum(-1)

    def rows(self, dist: Normal, index: torch.Tensor) -> Normal:
        """The distributions of the states ``index`` picks out of a batch."""
        return Normal(dist.loc[index], dist.scale[index], validate_args=False)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for a batch of observations and their log-probabilities (for acting)."""
        dist = self.distribution(obs)
        actions = dist.sample()
        return actions, self.log_prob(dist, actions)

    @torch.no_grad()
    def act(self, obs: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        """The Gaussian's mean for one observation, clipped to the action bounds."""
        action = self.mean(self.network_input(obs)).numpy()
        if self.spec["low"] is not None:
            action = np.clip(action, self.spec["low"], self.spec["high"])
        return action


class ValueFunction(nn.Module):
    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh"):
        super().__init__()
        self.spec = {"kind": "value", "obs_dim": obs_dim, "hidden": list(hidden), "activation": activation}
        self.v = mlp([obs_dim, *hidden, 1], ACTIVATIONS[activation], output_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)


def make_policy(
    algo: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    hidden: tuple[int, ...] = (64, 64),
    log_std_init: float = 0.0,
    activation: str = "tanh",
) -> Policy:
    """The policy for these spaces, or an error naming ``algo`` and the unsupported space."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UnsupportedSpaceError(f"{algo} needs a flat Box observation space, got {observation_space}")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        low, high = action_space.low, action_space.high
        return GaussianPolicy(obs_dim, action_space.shape[0], hidden, log_std_init, low, high, activation)
    raise UnsupportedSpaceError(f"{algo} supports Discrete and flat Box action spaces, got {action_space}")


KINDS = {"categorical": CategoricalPolicy, "gaussian": GaussianPolicy, "value": ValueFunction}


def module_from_spec(spec: dict) -> nn.Module:
    """A freshly initialised policy or value function of the kind and sizes ``spec`` names."""
    spec = dict(spec)
    cls = KINDS[spec.pop("kind")]
    if "hidden" in spec:
        spec["hidden"] = tuple(spec["hidden"])
    return cls(**spec)


def load_policy(directory: str | Path, name: str = "policy") -> nn.Module:
    """A policy (or value function) saved by ``save``, in evaluation mode, with its observation
    statistics if it was saved with them."""
    spec, weights = read_module(directory, name)
    module = module_from_spec(spec)
    module.load_state_dict(weights)
    if isinstance(module, Policy) and name == "policy":
        module.obs_normalizer = ObsNormalizer.load(directory)
    return module.eval()
