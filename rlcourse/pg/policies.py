r"""Policies and value functions: small MLPs in plain PyTorch.

* :class:`CategoricalPolicy` — Discrete actions: logits :math:`f_\theta(s)`,
  :math:`\pi_\theta(a \mid s) = \operatorname{softmax}(f_\theta(s))_a`.
* :class:`GaussianPolicy` — Box actions: a diagonal Gaussian with mean
  :math:`\mu_\theta(s)` and a state-independent log standard deviation, one learned
  number per action dimension:

  .. math::

      \log \pi_\theta(a \mid s) = -\sum_j \Big[ \frac{(a_j - \mu_j)^2}{2\sigma_j^2}
          + \log \sigma_j + \tfrac12 \log 2\pi \Big]

  With ``squash=True`` (``squash_output`` in the configs) the Gaussian's sample u reaches
  the environment as :math:`a = c + h \tanh(u)`, c and h the centre and half-width of the
  action bounds, so every action lies inside them. The batch keeps u; the density of a is
  the change of variables

  .. math::

      \log \pi_\theta(a \mid s) = \log \mathcal N(u; \mu, \sigma^2)
          - \sum_j \Big[\log h_j + \log\big(1 - \tanh^2 u_j\big)\Big],
      \qquad \log(1 - \tanh^2 u) = 2\big(\log 2 - u - \operatorname{softplus}(-2u)\big)

  (the right-hand form stays finite where tanh² u rounds to 1). The entropy,
  :math:`H[\pi] = H[\mathcal N(\mu, \sigma^2)] + \mathbb E_u[\sum_j \log h_j(1 - \tanh^2 u_j)]`,
  has no closed form; ``entropy`` estimates the expectation with one reparameterised draw
  :math:`u = \mu + \sigma\xi` per state (unbiased, and differentiable in μ and σ, as SAC's).
  The KL between two squashed Gaussians is that of the Gaussians (a bijection keeps KL).
* :class:`GSDEPolicy` — generalised state-dependent exploration (gSDE; Raffin, Kober and
  Stulp 2022, *Smooth Exploration for Robotic Reinforcement Learning*, CoRL): the noise is
  :math:`\epsilon = z(s)\,\theta_\epsilon`, z(s) the mean network's last hidden layer and
  :math:`\theta_\epsilon \sim \mathcal N(0, \sigma^2)` a [latent, act] matrix drawn for each
  environment at the start of every rollout and again every ``sde_sample_freq`` steps (−1:
  never within a rollout). Given s, :math:`a_j = \mu_j(s) + \sum_i z_i(s)\,\theta_{ij}` is
  Gaussian with :math:`\operatorname{Var}[a_j \mid s] = \sum_i z_i(s)^2 \sigma_{ij}^2`, a
  learned log σ per (i, j); as in SB3, z is detached there (σ learns the scale, the mean
  network the features) and 10⁻⁶ is added to the variance.
* :class:`ValueFunction` — :math:`V_\phi(s)`, a scalar per state.

Acting greedily for evaluation (``act``) takes the most likely action: the arg-max of the
logits, or the Gaussian's mean clipped to the action bounds (squashed: c + h tanh(μ)).

Inputs. ``distribution`` and ``sample`` take what the networks read; ``act`` takes an
observation as the environment sends it. They differ only when the run normalised its
observations (``normalize_obs``): then the policy holds the run's
:class:`~rlcourse.pg.normalize.ObsNormalizer` as ``obs_normalizer``, ``act`` applies it
(frozen: acting never changes the statistics), and ``save`` writes its statistics beside
the weights, where :func:`load_policy` finds them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal, kl_divergence
from torch.nn import functional as F

from rlcourse.config import ConfigError, check_choice, check_range
from rlcourse.networks import mlp, read_module, save_module
from rlcourse.pg.normalize import STATS_FILE, ObsNormalizer
from rlcourse.run import UnsupportedSpaceError

#: The hidden layers' nonlinearity, by the name a config gives (SB3's activation_fn).
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
SDE_EPSILON = 1e-6  # added to gSDE's variance (SB3's value): σ > 0 where the features vanish


def log_tanh_slope(u: torch.Tensor) -> torch.Tensor:
    """log(1 − tanh² u) = log d tanh(u)/du, finite for every u: 2 (log 2 − u − softplus(−2u))."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


class Policy(nn.Module):
    """What every policy-gradient trainer asks of a policy; :class:`CategoricalPolicy` and
    :class:`GaussianPolicy` fill it in. Each takes back only the kind of distribution it
    makes (hence ``dist: Any`` here)."""

    spec: dict[str, Any]  # what module_from_spec needs to build it again
    obs_normalizer: ObsNormalizer | None = None  # the run's observation statistics (normalize_obs)
    squash: bool = False  # sample() gives u, and the environment gets squash_action(u) (GaussianPolicy)

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

    def squash_action(self, u: torch.Tensor) -> torch.Tensor:
        """The action the environment gets for a sample u of a squashed policy (``squash``)."""
        raise NotImplementedError

    def reset_noise(self, num_envs: int) -> None:
        """Called by the collector at the start of every rollout: gSDE draws its noise matrices
        here (:class:`GSDEPolicy`); every other policy has nothing to do."""

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
    center: torch.Tensor  # squash: c and h, the bounds' centre and half-width
    half_range: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        log_std_init: float = 0.0,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
        activation: str = "tanh",
        squash: bool = False,
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
            "squash": squash,
        }
        self.mean = mlp([obs_dim, *hidden, act_dim], ACTIVATIONS[activation], output_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))
        self.squash = squash
        if squash:  # a = c + h tanh(u); constants, not parameters (buffers follow .to(device))
            if low is None or high is None or not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"a squashed Gaussian needs finite action bounds, got low={low}, high={high}")
            bounds = torch.tensor(np.stack([low, high]), dtype=torch.float32)
            self.register_buffer("center", bounds.mean(0), persistent=False)
            self.register_buffer("half_range", (bounds[1] - bounds[0]) / 2, persistent=False)

    def distribution(self, obs: torch.Tensor) -> Normal:
        return Normal(self.mean(obs), self.log_std.exp(), validate_args=False)

    def log_prob(self, dist: Normal, actions: torch.Tensor) -> torch.Tensor:
        """log π(a | s) per state; squashed, ``actions`` are the samples u (see the module's docstring)."""
        logp = dist.log_prob(actions).sum(-1)
        return logp - self.log_slope(actions).sum(-1) if self.squash else logp

    def entropy(self, dist: Normal) -> torch.Tensor:
        """H(π(· | s)) per state: the action dimensions are independent, so their entropies add
        (squashed: plus log |da/du| at one sample u, an unbiased estimate of E[log |da/du|])."""
        entropy = dist.entropy().sum(-1)
        if self.squash:  # no closed form: one reparameterised draw u = μ + σξ per state, unbiased
            entropy = entropy + self.log_slope(dist.rsample()).sum(-1)
        return entropy

    def log_slope(self, u: torch.Tensor) -> torch.Tensor:
        """log |da_j/du_j| = log h_j + log(1 − tanh² u_j) of the squashing a = c + h tanh(u), per dimension."""
        return self.half_range.log() + log_tanh_slope(u)

    def squash_action(self, u: torch.Tensor) -> torch.Tensor:
        """a = c + h tanh(u): the environment's action for a sample u, inside the bounds."""
        return self.center + self.half_range * torch.tanh(u)

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
        """The Gaussian's mean for one observation, clipped to the action bounds (squashed: c + h tanh(μ))."""
        mean = self.mean(self.network_input(obs))
        if self.squash:
            return self.squash_action(mean).numpy()
        action = mean.numpy()
        if self.spec["low"] is not None:
            action = np.clip(action, self.spec["low"], self.spec["high"])
        return action


class GSDEPolicy(GaussianPolicy):
    """A Gaussian policy with gSDE's state-dependent noise (see the module's docstring): log σ is a
    [latent, act] matrix, and ``sample`` adds z(s) θ_ε with θ_ε held for ``sde_sample_freq`` steps."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64), log_std_init: float = 0.0,
                 low: np.ndarray | None = None, high: np.ndarray | None = None, activation: str = "tanh",
                 squash: bool = False, sde_sample_freq: int = -1):  # fmt: skip
        super().__init__(obs_dim, act_dim, hidden, log_std_init, low, high, activation, squash)
        self.spec.update(kind="gsde", sde_sample_freq=sde_sample_freq)
        latent_dim = hidden[-1] if hidden else obs_dim
        self.log_std = nn.Parameter(torch.full((latent_dim, act_dim), float(log_std_init)))  # log σ_ij
        self.sde_sample_freq = sde_sample_freq
        self.exploration: torch.Tensor | None = None  # θ_ε, [N, latent, act]: one matrix per environment
        self.noise_age = 0  # samples drawn with the current θ_ε

    def features_and_distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, Normal]:
        """z(s), the mean network's last hidden layer, and π(· | s) = N(μ(s), Σ_i z_i² σ_ij² + 10⁻⁶)."""
        z = self.mean[:-1](obs)
        variance = z.detach().square() @ self.log_std.exp().square()
        return z, Normal(self.mean[-1](z), (variance + SDE_EPSILON).sqrt(), validate_args=False)

    def distribution(self, obs: torch.Tensor) -> Normal:
        return self.features_and_distribution(obs)[1]

    @torch.no_grad()
    def reset_noise(self, num_envs: int) -> None:
        """Draw θ_ε ~ N(0, σ²) anew for each of ``num_envs`` environments."""
        sigma = self.log_std.exp()
        self.exploration = sigma * torch.randn(num_envs, *sigma.shape, device=sigma.device)
        self.noise_age = 0

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u = μ(s) + z(s) θ_ε for a batch of observations [N, obs_dim], one per environment, and
        log π(u | s); θ_ε is drawn again once it has served ``sde_sample_freq`` steps."""
        if self.exploration is None or len(self.exploration) != len(obs) or self.noise_age == self.sde_sample_freq:
            self.reset_noise(len(obs))
        self.noise_age += 1
        z, dist = self.features_and_distribution(obs)
        u = dist.loc + torch.einsum("ni,nij->nj", z, self.exploration)
        return u, self.log_prob(dist, u)


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
    *,
    squash: bool = False,
    use_sde: bool = False,
    sde_sample_freq: int = -1,
) -> Policy:
    """The policy for these spaces, or an error naming ``algo`` and the unsupported space. For Box
    actions, ``squash`` and ``use_sde`` pick the squashed Gaussian and gSDE (see the module's docstring)."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UnsupportedSpaceError(f"{algo} needs a flat Box observation space, got {observation_space}")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete) and not (squash or use_sde):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation)
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        needs = "squash_output and use_sde need" if squash or use_sde else f"{algo} supports Discrete and"
        raise UnsupportedSpaceError(f"{needs} flat Box action spaces, got {action_space}")
    if squash and not action_space.is_bounded():
        raise UnsupportedSpaceError(f"squash_output needs finite action bounds, got {action_space}")
    low, high = action_space.low, action_space.high
    act_dim = action_space.shape[0]
    if use_sde:
        return GSDEPolicy(obs_dim, act_dim, hidden, log_std_init, low, high, activation, squash, sde_sample_freq)
    return GaussianPolicy(obs_dim, act_dim, hidden, log_std_init, low, high, activation, squash)


def check_gaussian_options(config: Any) -> None:
    """The range checks of a config's ``squash_output``, ``use_sde`` and ``sde_sample_freq`` (−1 or ≥ 1)."""
    check_choice(config, "squash_output", (True, False))
    check_choice(config, "use_sde", (True, False))
    check_range(config, "sde_sample_freq", -1, integer=True)
    if config.sde_sample_freq == 0:
        raise ConfigError(
            f"{type(config).__name__}.sde_sample_freq = 0 is not allowed: -1 (once per rollout) or an integer >= 1"
        )


def gaussian_options(config: Any) -> dict[str, Any]:
    """make_policy's ``squash``, ``use_sde`` and ``sde_sample_freq`` from a config's fields of those names."""
    return dict(squash=config.squash_output, use_sde=config.use_sde, sde_sample_freq=config.sde_sample_freq)


KINDS = {"categorical": CategoricalPolicy, "gaussian": GaussianPolicy, "gsde": GSDEPolicy, "value": ValueFunction}


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
