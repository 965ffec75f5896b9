r"""Imitation learning by behaviour cloning, and why it compounds its errors (lesson 4).

**Behaviour cloning** treats the expert's (state, action) pairs
:math:`\mathcal D = \{(s_i, a_i)\}_{i=1}^n` as a supervised data set and fits the policy by
maximum likelihood:

.. math::

    \theta^\star = \arg\max_\theta \sum_{i=1}^n \log \pi_\theta(a_i \mid s_i)
    \quad\Longleftrightarrow\quad
    \min_\theta\; L(\theta) = -\frac{1}{n} \sum_{i=1}^n \log \pi_\theta(a_i \mid s_i).

For Discrete actions this is the cross-entropy of a classifier. For the Gaussian policy,
:math:`-\log \pi_\theta(a \mid s) = \sum_j \frac{(a_j - \mu_j(s))^2}{2\sigma_j^2} + \log\sigma_j
+ \text{const}`: least-squares regression of the mean on the expert's actions, with σ
learning how far off that regression still is. (It is the policy-gradient loss of
:mod:`rlcourse.pg.objective` with :math:`\Psi = 1` on the expert's samples: every
demonstrated action is made more likely, none less.)

**Compounding errors** (Ross & Bagnell, *Efficient Reductions for Imitation Learning*,
AISTATS 2010, Theorem 2.1). The fit is only good where the data are: on the expert's
state distribution :math:`d_{\pi^\star}`. Suppose the clone errs with probability at most ε
there, :math:`\Pr_{s \sim d_{\pi^\star}}[\hat\pi(s) \ne \pi^\star(s)] \le \epsilon`. While it has
made no mistake it is in states the expert visits; after its first mistake it may be in
states no demonstration showed, where nothing bounds its error. The chance of a first
mistake within t steps is at most :math:`1 - (1 - \epsilon)^t \le \epsilon t`, so at step t
the learner's state distribution differs from the expert's by at most
:math:`\lVert d^t_{\hat\pi} - d^t_{\pi^\star} \rVert_1 \le 2\epsilon t`. Counting a cost
:math:`c_t = 1` for each step where the learner's action differs from the expert's, the
expected number of mistakes over a horizon T is then

.. math::

    \mathbb{E}_{\hat\pi}\Big[\sum_{t=1}^{T} c_t\Big] \le \sum_{t=1}^{T} (\epsilon + 2\epsilon t)
        = O(\epsilon T^2),

and for any per-step cost in [0, 1] the theorem gives
:math:`J(\hat\pi) \le J(\pi^\star) + T^2 \epsilon`, against :math:`T\epsilon` for a learner
tested on the distribution it was trained on; Ross & Bagnell show by an example that the
T² can be attained. DAgger (Ross, Gordon & Bagnell, AISTATS 2011) closes the gap by asking
the expert to label the states the *learner* visits and training on those too.

:func:`compounding_error_study` measures the two error rates of the argument: ε on
held-out expert states, and the error on the states the clone reaches when it drives
(labelled by asking the expert what it would have done there), together with the
clone's return, for a growing number of expert samples.

Pseudocode::

    D ← expert's (s, a) pairs                                   (collect_demonstrations)
    for epoch = 1, …, E:                                        (behaviour_cloning)
        for each minibatch B of D, in a fresh random order:
            θ ← θ − α ∇θ [ −mean_{(s,a) ∈ B} log π_θ(a | s) ]   (Adam)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from rlcourse.config import ConfigError, check_range
from rlcourse.pg.policies import make_policy
from rlcourse.play import evaluate_policy
from rlcourse.run import progress_bar, seed_everything


@dataclasses.dataclass(frozen=True)
class Demonstrations:
    """An expert's (state, action) pairs, in the order they were played."""

    observations: np.ndarray  # [n, obs_dim] float32
    actions: np.ndarray  # [n] int64 (Discrete) or [n, act_dim] float32 (Box)
    episode_returns: list  # the expert's return in each episode played

    def __len__(self) -> int:
        return len(self.observations)

    def subset(self, indices) -> Demonstrations:
        """The pairs at ``indices`` (``episode_returns`` still describes the whole set)."""
        return dataclasses.replace(self, observations=self.observations[indices], actions=self.actions[indices])


def collect_demonstrations(
    expert, env_id: str, episodes: int, seed: int, env_kwargs=None, min_pairs: int = 0
) -> Demonstrations:
    """Play ``expert.act(obs, rng)`` for whole episodes and keep every (s_t, a_t) pair.

    Episode k starts from ``reset(seed=seed + k)``, as in
    :func:`~rlcourse.play.evaluate_policy`. With ``min_pairs``, episodes continue after the
    first ``episodes`` until at least that many pairs are collected. The expert is any
    object with ``act``: a trained policy or a scripted controller.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes = {episodes!r} is out of range: it must be an integer >= 1")
    env = gym.make(env_id, **(env_kwargs or {}))
    rng = np.random.default_rng(seed)
    observations: list[np.ndarray] = []
    actions: list[Any] = []  # ints (Discrete) or arrays (Box)
    returns: list[float] = []
    while len(returns) < episodes or len(observations) < min_pairs:
        obs, _ = env.reset(seed=seed + len(returns))
        total, done = 0.0, False
        while not done:
            action = expert.act(obs, rng)
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    env.close()
    action_array = (
        np.asarray(actions, dtype=np.int64)
        if discrete
        else np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
    )
    return Demonstrations(np.asarray(observations, dtype=np.float32), action_array, returns)


@dataclasses.dataclass(frozen=True)
class BCConfig:
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3  # Adam step size
    epochs: int = 50  # passes over the demonstrations
    batch_size: int = 256
    min_updates: int = 1000  # at least this many gradient steps: small data sets get more epochs

    def __post_init__(self):
        if (
            not isinstance(self.hidden, tuple)
            or not self.hidden
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden)
        ):
            raise ConfigError(
                f"BCConfig.hidden = {self.hidden!r} is out of range: it must be a "
                f"non-empty tuple of integers in [1, inf)"
            )
        check_range(self, "lr", 0, None, low_open=True)
        check_range(self, "epochs", 1, None, integer=True)
        check_range(self, "batch_size", 1, None, integer=True)
        check_range(self, "min_updates", 0, None, integer=True)


def negative_log_likelihood(policy, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """L(θ) = −mean_i log π_θ(a_i | s_i), the behaviour-cloning loss."""
    # Hint: ``policy.distribution(obs)`` gives π_θ(· | s) for every row, and
    # Hint: ``policy.log_prob(dist, actions)`` one log-probability per pair (summed over
    # Hint: the action's dimensions for a Gaussian). Return a scalar tensor.
    ### BEGIN SOLUTION
    return -policy.log_prob(policy.distribution(observations), actions).mean()
    ### END SOLUTION


@torch.no_grad()
def _fit(policy, observations, actions, discrete: bool) -> dict:
    """The loss on every pair, and accuracy (Discrete) or the mean's squared error (Box)."""
    row = {"loss": float(negative_log_likelihood(policy, observations, actions))}
    dist = policy.distribution(observations)
    if discrete:
        row["accuracy"] = float((dist.logits.argmax(-1) == actions).float().mean())
    else:
        row["mse"] = float(((dist.mean - actions) ** 2).mean())
    return row


def behaviour_cloning(
    demos: Demonstrations, observation_space, action_space, config: BCConfig | None = None, seed: int = 0
):
    """Fit a policy to ``demos`` by maximum likelihood; return ``(policy, log)``.

    Discrete actions give a categorical policy, Box actions a Gaussian one
    (:func:`~rlcourse.pg.policies.make_policy`). Training runs ``config.epochs`` passes of
    Adam over shuffled minibatches, more if that is fewer than ``config.min_updates``
    gradient steps. The log has one row per epoch: ``epoch``, ``updates`` (gradient steps
    so far), ``loss`` (the negative log-likelihood of all the pairs after the epoch) and
    ``accuracy`` (Discrete: how often the most likely action is the expert's) or ``mse``
    (Box: the mean squared error of the Gaussian's mean). The same seed gives the same log.
    """
    config = config or BCConfig()
    if len(demos) == 0:
        raise ValueError("behaviour cloning needs at least one demonstrated (state, action) pair")
    rng = seed_everything(seed)
    policy = make_policy("behaviour-cloning", observation_space, action_space, config.hidden)
    if demos.observations.shape[1:] != observation_space.shape:
        raise ValueError(
            f"the demonstrations' observations have shape {demos.observations.shape[1:]}, "
            f"but the observation space is {observation_space}"
        )
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    observations = torch.as_tensor(demos.observations, dtype=torch.float32)
    actions = torch.as_tensor(demos.actions, dtype=torch.int64 if discrete else torch.float32)
    n, size = len(demos), config.batch_size
    batches = math.ceil(n / size)
    epochs = max(config.epochs, math.ceil(config.min_updates / batches))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only wait on each other
    rows = []
    try:
        for epoch in range(1, epochs + 1):
            order = torch.as_tensor(rng.permutation(n))
            for start in range(0, n, size):
                idx = order[start : start + size]
                # Hint: one Adam step on the loss of the pairs ``idx``.
                ### BEGIN SOLUTION
                loss = negative_log_likelihood(policy, observations[idx], actions[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                ### END SOLUTION
            rows.append({"epoch": epoch, "updates": epoch * batches, **_fit(policy, observations, actions, discrete)})
    finally:
        torch.set_num_threads(threads)
    return policy.eval(), pd.DataFrame(rows)


def disagreement(policy, expert, states, rng=None) -> float:
    r"""How far ``policy.act`` is from ``expert.act`` on ``states``.

    Discrete actions: the fraction of states where the two actions differ. Box actions:
    the mean squared distance between them, :math:`\lVert a - a^\star \rVert^2`.
    """
    if len(states) == 0:
        raise ValueError("disagreement needs at least one state")
    rng = rng if rng is not None else np.random.default_rng(0)
    mine = np.array([policy.act(s, rng) for s in states])
    theirs = np.array([expert.act(s, rng) for s in states])
    if np.issubdtype(theirs.dtype, np.integer):
        return float(np.mean(mine != theirs))
    return float(np.mean(np.sum((mine - theirs).reshape(len(states), -1) ** 2, axis=-1)))


class StateLog:
    """Acts as ``policy`` does and keeps every observation it is asked about (for labelling later)."""

    def __init__(self, policy):
        self.policy, self.states = policy, []

    def act(self, obs, rng=None):
        self.states.append(np.asarray(obs, dtype=np.float32))
        return self.policy.act(obs, rng)


STUDY_COLUMNS = [
    "samples",
    "seed",
    "return",
    "expert_return",
    "train_error",
    "error_expert_states",
    "error_own_states",
    "own_states",
]


def compounding_error_study(
    expert,
    env_id: str,
    sample_sizes,
    seeds=(0,),
    config: BCConfig | None = None,
    eval_episodes: int = 10,
    demo_episodes: int = 20,
    holdout_episodes: int = 5,
    env_kwargs=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Behaviour cloning from n expert pairs, for each n in ``sample_sizes`` and each seed.

    For each seed the expert plays ``demo_episodes`` episodes (more if needed to reach
    ``max(sample_sizes)`` pairs) and ``holdout_episodes`` more that are never trained on.
    Each clone is trained on the first n pairs the expert played, as a data set grows
    while the expert keeps playing (the sets are nested; 500 pairs are one whole CartPole
    episode), then plays ``eval_episodes`` greedy episodes. One row per (n, seed):

    * ``return``: the clone's mean return; ``expert_return``: the expert's, on the pool
    * ``train_error``: :func:`disagreement` with the expert on the pairs trained on
    * ``error_expert_states``: on the held-out expert states, the ε of the T² bound
    * ``error_own_states``: on the states the clone visited while it drove, labelled by
      asking the expert; ``own_states`` counts them

    Environment seeds for seed s: demonstrations from 100 000·s, held-out episodes from
    100 000·s + 30 000, evaluation from 100 000·s + 60 000 (disjoint below 30 000 episodes).
    """
    if not sample_sizes or any(not isinstance(n, int) or n < 1 for n in sample_sizes):
        raise ValueError(f"sample_sizes = {sample_sizes!r}: each must be an integer >= 1")
    env = gym.make(env_id, **(env_kwargs or {}))
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    rows = []
    bar = progress_bar(len(seeds) * len(sample_sizes), "behaviour cloning", progress)
    try:
        for seed in seeds:
            base = 100_000 * seed
            pool = collect_demonstrations(expert, env_id, demo_episodes, base, env_kwargs, min_pairs=max(sample_sizes))
            holdout = collect_demonstrations(expert, env_id, holdout_episodes, base + 30_000, env_kwargs)
            for n in sorted(sample_sizes):
                train = pool.subset(slice(0, n))
                policy, _ = behaviour_cloning(train, observation_space, action_space, config, seed)
                driver = StateLog(policy)
                played = evaluate_policy(driver, env_id, eval_episodes, base + 60_000, env_kwargs=env_kwargs)
                rows.append(
                    [
                        n,
                        seed,
                        played["mean_return"],
                        float(np.mean(pool.episode_returns)),
                        disagreement(policy, expert, train.observations),
                        disagreement(policy, expert, holdout.observations),
                        disagreement(policy, expert, driver.states),
                        len(driver.states),
                    ]
                )
                bar.update(1)
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=STUDY_COLUMNS)


@dataclasses.dataclass(frozen=True)
class LinearController:
    """A scripted CartPole expert: push right (action 1) when w · s > 0, else left.

    With s = (x, ẋ, θ, θ̇), the θ and θ̇ terms move the cart under the falling pole; the
    smaller x and ẋ terms bring the cart back to the centre (a cart right of centre is
    pushed right a little, so the pole leans left and balancing then carries the cart left).
    """

    weights: tuple[float, ...] = (1.0, 1.0, 10.0, 2.0)

    def act(self, obs, rng=None) -> int:
        return int(np.dot(self.weights, obs) > 0)


def cartpole_controller() -> LinearController:
    """An expert for CartPole-v1 that needs no training: return 500 (the maximum) from
    every start we tried (reset seeds 0–199), keeping abs(x) < 0.16 and abs(θ) < 0.051 rad."""
    return LinearController()
