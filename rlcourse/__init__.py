"""rlcourse: reinforcement learning, taught by building it.

``import rlcourse`` registers the package's environments with Gymnasium
(``gymnasium.make("rlcourse/Corridor-v0")``).
"""

import rlcourse.envs  # noqa: F401  (registers rlcourse/Corridor-v0)
from rlcourse.config import ConfigError
from rlcourse.play import evaluate, evaluate_policy
from rlcourse.run import NonFiniteError, Result, UnsupportedSpaceError

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "NonFiniteError",
    "Result",
    "UnsupportedSpaceError",
    "evaluate",
    "evaluate_policy",
    "load",
    "train",
]


def load(directory) -> Result:
    """Bring back a run written by :meth:`Result.save` (:func:`rlcourse.algorithms.load`)."""
    from rlcourse.algorithms import load as load_run

    return load_run(directory)


def train(
    algo: str,
    env_id: str,
    *,
    steps: int,
    seed: int = 0,
    config=None,
    out=None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    **overrides,
) -> Result:
    """Train ``algo`` (a name ``rlcourse train`` knows) on ``env_id``.

    Keyword ``overrides`` replace fields of the algorithm's default config, e.g.
    ``rlcourse.train("sarsa", "CliffWalking-v1", steps=20_000, alpha=0.5)``.
    """
    import dataclasses

    from rlcourse.algorithms import ALGORITHMS

    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of: {', '.join(ALGORITHMS)}")
    spec = ALGORITHMS[algo]
    config = dataclasses.replace(config or spec.defaults_for(env_id), **overrides)
    return spec.train(env_id, config, steps=steps, seed=seed, out=out, progress=progress, env_kwargs=env_kwargs)
