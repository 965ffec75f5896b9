"""Stepping the environments off the main process (AsyncVectorEnv) changes nothing but where they
run; Gaussian actions are clipped to the bounds on their way to the environment only."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from resumed import assert_resumes_bit_for_bit

from rlcourse.pg import a2c, ppo
from rlcourse.pg.policies import make_policy
from rlcourse.pg.rollout import Rollout
from rlcourse.run import torch_threads


@pytest.mark.parametrize("env_id, config", [
    ("CartPole-v1", ppo.PPOConfig(num_envs=2, n_steps=128)),
    ("Pendulum-v1", ppo.PPOConfig(num_envs=2, n_steps=128, normalize_obs=True, normalize_reward=True)),
])
def test_async_and_sync_environments_give_the_same_log(env_id, config):
    sync = ppo.train(env_id, config, steps=1_024, seed=4)
    async_ = ppo.train(env_id, dataclasses.replace(config, vectorization="async"), steps=1_024, seed=4)
    assert sync.log["episodes"].sum() > 0
    pd.testing.assert_frame_equal(async_.log, sync.log, check_exact=True)
    for a, b in zip(async_.policy.parameters(), sync.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_async_run_resumes_bit_for_bit(tmp_path):
    """The checkpoint asks each worker for its environment (SendBack.inner) and restarts the workers from them."""
    config = a2c.A2CConfig(num_envs=2, log_interval=20, vectorization="async")
    assert_resumes_bit_for_bit(a2c.train, "CartPole-v1", config, tmp_path, steps=1_000, every=400, stop=700, seed=2)


def test_gaussian_actions_are_clipped_for_the_environment_and_stored_unclipped():
    """Pendulum's torque lies in [-2, 2]; with σ = e² ≈ 7.4 most samples fall outside. The environment
    gets clip(a, -2, 2); the batch keeps a and log π(a | s) of the unclipped sample."""
    with Rollout("Pendulum-v1", 2, seed=0) as rollout, torch_threads(1):
        sent = []
        step = rollout.envs.step
        rollout.envs.step = lambda action: sent.append(np.array(action)) or step(action)
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space, log_std_init=2.0)
        batch = rollout.collect(policy, 100)
    sent = np.stack(sent)
    assert sent.min() >= -2.0 and sent.max() <= 2.0
    np.testing.assert_array_equal(sent, np.clip(batch.actions.numpy(), -2.0, 2.0))
    assert (batch.actions.abs() > 2.0).float().mean() > 0.5  # most were outside, and kept so
    with torch.no_grad():
        logp = policy.log_prob(policy.distribution(batch.obs), batch.actions)
    torch.testing.assert_close(batch.logp, logp)
