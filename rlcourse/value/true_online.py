r"""True online TD(λ): eligibility traces with linear features (lesson 3's features, lesson 2's traces).

With a linear value :math:`\hat v(s) = \mathbf w^\top \mathbf x(s)` (for instance
:class:`~rlcourse.value.linear.TileCoder` features), plain TD(λ) with accumulating traces,
:math:`\mathbf z \leftarrow \gamma\lambda\mathbf z + \mathbf x_t`,
:math:`\mathbf w \leftarrow \mathbf w + \alpha\delta_t\mathbf z`, matches the λ-return
only offline. The **online λ-return algorithm** is the forward view that learns during the
episode: at every time h it redoes the whole episode so far, from the episode's first
weights :math:`\mathbf w_0`, with targets truncated at h,

.. math::

    \mathbf w^h_{t+1} = \mathbf w^h_t + \alpha\,\big[G^{\lambda|h}_t - {\mathbf w^h_t}^\top \mathbf x_t\big]\,\mathbf x_t,
    \quad t = 0, \dots, h-1, \qquad \mathbf w_h \equiv \mathbf w^h_h,

    G^{\lambda|h}_t = (1-\lambda)\sum_{n=1}^{h-t-1} \lambda^{n-1} G_{t:t+n} + \lambda^{h-t-1} G_{t:h},
    \qquad G_{t:t+n} = \sum_{k=1}^{n} \gamma^{k-1} r_{t+k} + \gamma^n\, \mathbf w_{t+n-1}^\top \mathbf x_{t+n},

which costs :math:`O(h)` per step. **True online TD(λ)** (van Seijen & Sutton, ICML 2014;
van Seijen, Mahmood, Pilarski, Machado & Sutton, *True Online Temporal-Difference
Learning*, JMLR 17, 2016; Sutton & Barto, 2nd ed., §12.5) computes exactly the same
:math:`\mathbf w_h`, with a *dutch* trace and O(d) work per step:

.. math::

    \delta_t = r_{t+1} + \gamma\, \mathbf w_t^\top \mathbf x_{t+1} - \mathbf w_t^\top \mathbf x_t, \qquad
    \mathbf z_t = \gamma\lambda\,\mathbf z_{t-1} + (1 - \alpha\gamma\lambda\,\mathbf z_{t-1}^\top \mathbf x_t)\,\mathbf x_t,

    \mathbf w_{t+1} = \mathbf w_t + \alpha\,(\delta_t + V_t - V_{\text{old}})\,\mathbf z_t
        - \alpha\,(V_t - V_{\text{old}})\,\mathbf x_t,

with :math:`V_t = \mathbf w_t^\top\mathbf x_t` and :math:`V_{\text{old}}` the
:math:`\mathbf w_{t-1}^\top \mathbf x_t` of the step before (0 at an episode's start), and
:math:`\mathbf x_{t+1} = \mathbf 0` after a terminal step. ``tests/test_true_online.py``
checks the equivalence against the online λ-return algorithm, computed by brute force.

Pseudocode (Sutton & Barto, 2nd ed., §12.5)::

    for each episode:
        x ← x(reset());  z ← 0;  V_old ← 0
        until terminated or truncated:
            a ~ π(· | s);  take a, observe r, s';  x' ← 0 if terminated else x(s')
            V ← wᵀx;  V' ← wᵀx';  δ ← r + γ V' − V
            z ← γλ z + (1 − α γλ zᵀx) x
            w ← w + α (δ + V − V_old) z − α (V − V_old) x
            V_old ← V';  x ← x'
"""

from __future__ import annotations

import math

import numpy as np

from rlcourse.tabular.evaluation import check_count, check_gamma, check_policy, sample_action
from rlcourse.value.linear import LinearEstimate


def true_online_update(w, z, x, x_next, reward: float, v_old: float, alpha: float, gamma: float, lam: float):
    """One step of true online TD(λ) on ``w`` and the dutch trace ``z`` (both in place).

    ``x_next`` is the zero vector after a terminal step. Returns ``(delta, v_old)``: the TD
    error and the :math:`\\mathbf w_t^\\top \\mathbf x_{t+1}` the next step needs as its V_old.
    """
    # Hint: V = wᵀx and V' = wᵀx' with the weights before this step; the dutch trace decays by γλ
    # Hint: and adds x scaled by (1 − αγλ zᵀx) (zᵀx with the old z); then the weight update above.
    ### BEGIN SOLUTION
    v, v_next = float(w @ x), float(w @ x_next)
    delta = reward + gamma * v_next - v
    zx = float(z @ x)
    z *= gamma * lam
    z += (1 - alpha * gamma * lam * zx) * x
    w += alpha * (delta + v - v_old) * z - alpha * (v - v_old) * x
    return delta, v_next
    ### END SOLUTION


def true_online_td_lambda(
    env, policy, features, gamma: float, lam: float, episodes: int, *, alpha: float = 0.01, seed: int = 0
) -> LinearEstimate:
    """True online TD(λ) prediction of v_π with ``features`` (``policy``: a callable
    ``policy(obs, rng) -> action``, or for a Discrete environment a matrix π [S, A])."""
    check_gamma(gamma)
    check_count("episodes", episodes)
    for name, value, high in (("lam", lam, 1.0), ("alpha", alpha, math.inf)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise ValueError(f"{name} = {value!r} is out of range: it must be in [0, {high}]")
    if callable(policy):
        act = policy
    else:
        cdf = np.cumsum(check_policy(policy, env.observation_space.n, env.action_space.n), axis=1)
        act = lambda obs, rng: sample_action(cdf, obs, rng)  # noqa: E731
    rng = np.random.default_rng(seed)
    w = np.zeros(features.n_features)
    history = np.empty((episodes, features.n_features))
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        x, z, v_old, done = features(obs), np.zeros_like(w), 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs, rng))
            x_next = np.zeros_like(w) if terminated else features(obs)
            _, v_old = true_online_update(w, z, x, x_next, float(reward), v_old, alpha, gamma, lam)
            x, done = x_next, terminated or truncated
        history[episode] = w
    return LinearEstimate(w, history)
