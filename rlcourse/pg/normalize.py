r"""Observation normalisation and reward scaling, as SB3's ``VecNormalize`` and Gymnasium's
``NormalizeObservation`` / ``NormalizeReward`` do them (lesson 6, on real tasks).

MuJoCo's observations mix joint angles (about ±1) with velocities (tens), and its rewards
per step are a few units, summing to thousands: a network initialised for inputs and
targets of order 1 learns slowly on them. Both fixes keep running statistics of what the
environments send and divide by them.

* :class:`RunningMeanStd` — the mean and variance of every vector seen so far, merged one
  batch at a time by Chan, Golub and LeVeque's parallel update (Welford's, for a batch):
  with n, μ, σ² so far and a batch of m vectors with mean μ_B and variance σ²_B,

  .. math::

      δ = μ_B - μ,\quad n' = n + m,\quad μ' = μ + δ\,\frac{m}{n'},\quad
      σ'^2 = \frac{n σ^2 + m σ_B^2 + δ^2\, n m / n'}{n'}

  (population variances, NumPy's ``var``). It starts at n = 10⁻⁴, μ = 0, σ² = 1, as SB3's and
  Gymnasium's ``RunningMeanStd`` do: a prior worth a ten-thousandth of one vector, so that it
  holds the mean and variance of everything seen and of that prior, the data's own to a relative
  10⁻⁴/n. Starting from n = 0 instead, the first observation would be divided by a zero spread and
  the first rewards multiplied by √(1/ε) = 10⁴ before the clip.
* :class:`ObsNormalizer` — :math:`\tilde s = \operatorname{clip}((s - μ) / \sqrt{σ^2 + ε}, -c, c)`,
  the statistics updated with every observation the environments return (the first of each
  episode included; the final observation of an episode is normalised but not counted, as
  in SB3).
* :class:`RewardScaler` — :math:`\tilde r_t = \operatorname{clip}(r_t / \sqrt{\operatorname{Var}[R] + ε}, -c, c)`
  where R is a running discounted return per environment, :math:`R \leftarrow γR + r_t`, set to 0 when
  an episode ends. Dividing by the spread of the *return*, not of the reward, keeps the
  critic's targets of order 1; the mean is not subtracted, so the sign of every reward
  (and so what the task asks) stays as it was.

The training loop normalises (:class:`rlcourse.pg.rollout.Rollout`); the policy keeps the
same :class:`ObsNormalizer` and applies it, frozen, when it acts on a raw observation
(``Policy.act``); ``Policy.save`` writes its statistics beside the weights
(``obs_normalizer.json``) and a checkpoint holds both, so that ``rlcourse evaluate`` and a
resumed run see exactly the statistics training ended with. The reward scaler is needed
only while training and is saved in checkpoints alone.

Defaults as SB3's ``VecNormalize``: c = 10 for both clips, ε = 1e-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlcourse.config import check_choice, check_range
from rlcourse.run import atomic_write

EPSILON = 1e-8  # ε under the square roots
PRIOR_COUNT = 1e-4  # the statistics start as if this many vectors of mean 0 and variance 1 had been seen
VECTORIZATION = ("sync", "async")  # what every policy-gradient config accepts
# Gymnasium's own vectorised environment (rlcourse.pg.rollout): for trainers whose Ψ drops its reset steps
VECTOR_ENTRY_POINT = "vector_entry_point"
STATS_FILE = "obs_normalizer.json"  # beside policy.pt and policy.json


class RunningMeanStd:
    """Mean and (population) variance of every vector passed to :meth:`update` and of the prior
    (``PRIOR_COUNT`` vectors of mean 0, variance 1), in float64."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.count = PRIOR_COUNT

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of vectors (rows of ``batch``) in with Chan et al.'s parallel update."""
        batch = np.asarray(batch, dtype=np.float64)
        m = batch.shape[0]
        if m == 0:
            return
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        n, total = self.count, self.count + m
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (m / total)
        self.var = (n * self.var + m * batch_var + delta**2 * (n * m / total)) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class ObsNormalizer:
    """s ↦ clip((s − μ) / √(σ² + ε), −clip, clip), with μ and σ² of the observations seen."""

    def __init__(self, obs_dim: int, clip: float = 10.0, epsilon: float = EPSILON) -> None:
        self.rms = RunningMeanStd((obs_dim,))
        self.clip, self.epsilon = clip, epsilon

    def update(self, obs: np.ndarray) -> None:
        """Count a batch of observations [N, obs_dim] into the statistics."""
        self.rms.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The normalised observation(s), float32 (the network's input), with the statistics as they are."""
        scaled = (np.asarray(obs, dtype=np.float64) - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {**self.rms.state_dict(), "clip": self.clip, "epsilon": self.epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])

    def save(self, directory: str | Path) -> None:
        """Write the statistics to ``directory/obs_normalizer.json`` (JSON floats round-trip exactly)."""
        text = json.dumps(self.state_dict()) + "\n"
        atomic_write(Path(directory) / STATS_FILE, lambda f: f.write(text), mode="w")

    @classmethod
    def load(cls, directory: str | Path) -> ObsNormalizer | None:
        """The statistics :meth:`save` wrote to ``directory``, or None if it wrote none."""
        path = Path(directory) / STATS_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        normalizer = cls(len(state["mean"]))
        normalizer.load_state_dict(state)
        return normalizer


class RewardScaler:
    """r_t ↦ clip(r_t / √(Var[R] + ε), −clip, clip), R ← γR + r_t the discounted return of each environment."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = EPSILON) -> None:
        self.rms = RunningMeanStd()
        self.returns = np.zeros(num_envs)
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon

    def __call__(self, rewards: np.ndarray, done: np.ndarray, real: np.ndarray | None = None) -> np.ndarray:
        """The scaled rewards of one step of the N environments; ``done``: which episodes ended with it;
        ``real``: which returns to count (None: all; a NEXT_STEP reset step's reward belongs to no episode)."""
        self.returns = self.returns * self.gamma + rewards
        self.rms.update(self.returns if real is None else self.returns[real])
        scaled = np.clip(rewards / np.sqrt(self.rms.var + self.epsilon), -self.clip, self.clip)
        self.returns[done] = 0.0
        return scaled

    def state_dict(self) -> dict[str, Any]:
        return {**self.rms.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.returns = np.array(state["returns"], dtype=np.float64)


def check_env_options(config: Any, native: bool = False) -> None:
    """The range checks of the fields every policy-gradient config shares for its environments:
    ``vectorization`` (with ``native``, also ``"vector_entry_point"``: for trainers that drop the rows
    ``Batch.valid`` marks), ``normalize_obs``, ``normalize_reward``, ``clip_obs``, ``clip_reward``."""
    check_choice(config, "vectorization", (*VECTORIZATION, VECTOR_ENTRY_POINT) if native else VECTORIZATION)
    check_choice(config, "normalize_obs", (True, False))
    check_choice(config, "normalize_reward", (True, False))
    check_range(config, "clip_obs", 0, None, low_open=True)
    check_range(config, "clip_reward", 0, None, low_open=True)
