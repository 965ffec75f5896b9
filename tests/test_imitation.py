import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from rlcourse.config import ConfigError
from rlcourse.pg.imitation import (BCConfig, behaviour_cloning, cartpole_controller,
                                   collect_demonstrations, compounding_error_study, disagreement)
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy
from rlcourse.play import evaluate_policy
from rlcourse.run import UnsupportedSpaceError

CARTPOLE = gym.make("CartPole-v1")
PENDULUM = gym.make("Pendulum-v1")


class PendulumPD:
    """A scripted Pendulum "expert": torque −(2 sin θ + 0.5 θ̇), clipped to [−2, 2]."""

    def act(self, obs, rng=None):
        cos, sin, velocity = obs
        return np.clip([-(2.0 * sin + 0.5 * velocity)], -2.0, 2.0).astype(np.float32)


class Always:
    def __init__(self, action):
        self.action = action

    def act(self, obs, rng=None):
        return self.action


def test_cartpole_controller_scores_500_from_every_start():
    result = evaluate_policy(cartpole_controller(), "CartPole-v1", episodes=10, seed=0)
    assert result["mean_return"] == 500.0 and result["std_return"] == 0.0     # seeds 0..9


def test_demonstrations_have_the_right_shapes():
    demos = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=2, seed=0)
    assert demos.observations.shape == (1000, 4) and demos.observations.dtype == np.float32
    assert demos.actions.shape == (1000,) and demos.actions.dtype == np.int64
    assert set(np.unique(demos.actions)) == {0, 1}
    assert demos.episode_returns == [500.0, 500.0] and len(demos) == 1000
    # the pairs are what the expert does in those states
    share_of_ones = disagreement(Always(0), cartpole_controller(), demos.observations)
    assert share_of_ones == pytest.approx(demos.actions.mean())
    # min_pairs plays on past ``episodes`` until there are enough pairs
    assert len(collect_demonstrations(cartpole_controller(), "CartPole-v1", 1, 0, min_pairs=600)) == 1000

    box = collect_demonstrations(PendulumPD(), "Pendulum-v1", episodes=1, seed=0)
    assert box.observations.shape == (200, 3) and box.actions.shape == (200, 1)
    assert box.actions.dtype == np.float32 and len(box.episode_returns) == 1
    with pytest.raises(ValueError, match="episodes = 0"):
        collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=0, seed=0)


@pytest.fixture(scope="module")
def cloned():
    demos = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=20, seed=0)
    policy, log = behaviour_cloning(demos, CARTPOLE.observation_space, CARTPOLE.action_space, BCConfig(),
                                    seed=0)
    return demos, policy, log


def test_behaviour_cloning_on_enough_data_reproduces_the_expert(cloned):
    demos, policy, log = cloned
    assert isinstance(policy, CategoricalPolicy) and len(demos) == 10_000
    held_out = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=5, seed=1000)
    assert disagreement(policy, cartpole_controller(), held_out.observations) < 0.02   # measured 0.005
    assert evaluate_policy(policy, "CartPole-v1", episodes=10, seed=2000)["mean_return"] >= 475
    assert log["accuracy"].iloc[-1] > 0.98


def test_the_negative_log_likelihood_decreases(cloned):
    _, _, log = cloned
    assert list(log.columns) == ["epoch", "updates", "loss", "accuracy"]
    assert list(log["epoch"]) == list(range(1, 51)) and log["updates"].iloc[-1] == 50 * 40
    assert log["loss"].iloc[0] < np.log(2)                 # better than the uniform policy after one epoch
    assert log["loss"].iloc[-1] < 0.2 * log["loss"].iloc[0]
    assert log["loss"].iloc[-10:].mean() < log["loss"].iloc[:10].mean()


def test_a_trained_policy_can_be_the_expert(cloned):
    _, policy, _ = cloned
    again = collect_demonstrations(policy, "CartPole-v1", episodes=1, seed=5)
    assert again.actions.dtype == np.int64 and again.observations.shape[1] == 4
    assert disagreement(policy, policy, again.observations) == 0.0


@pytest.fixture(scope="module")
def study():
    return compounding_error_study(cartpole_controller(), "CartPole-v1", sample_sizes=[50, 100, 2000],
                                   seeds=(0, 1), eval_episodes=10)


def test_study_has_one_row_per_sample_size_and_seed(study):
    assert list(study.columns) == ["samples", "seed", "return", "expert_return", "train_error",
                                   "error_expert_states", "error_own_states", "own_states"]
    assert sorted(zip(study["samples"], study["seed"])) == [(n, s) for n in (50, 100, 2000) for s in (0, 1)]
    assert (study["expert_return"] == 500.0).all()
    assert (study["own_states"] == 10 * study["return"]).all()    # CartPole: one state per reward


def test_few_expert_samples_give_a_clearly_worse_clone(study):
    by = study.set_index(["samples", "seed"])
    # measured: 50 pairs → returns 43 and 52, 100 pairs → 137 and 120; 2000 pairs → 500
    assert (by.loc[50, "return"] < 200).all() and (by.loc[100, "return"] < 200).all()
    assert (by.loc[2000, "return"] >= 475).all()
    # not for want of fitting: the few pairs are learned almost perfectly (measured 0 and 0.04)
    assert (by.loc[50, "train_error"] < 0.1).all()
    assert (by.loc[50, "error_expert_states"] > 0.1).all()
    assert (by.loc[2000, "error_expert_states"] < 0.03).all()


def test_the_clone_errs_more_on_its_own_states_than_on_the_experts(study):
    by = study.set_index(["samples", "seed"])
    # measured at 100 pairs: 0.41 vs 0.20 (seed 0), 0.35 vs 0.20 (seed 1)
    small = by.loc[100]
    assert (small["error_own_states"] > small["error_expert_states"] + 0.1).all()
    # with enough data the two distributions (nearly) coincide: measured 0.012/0.021 and 0.009/0.011
    large = by.loc[2000]
    assert (abs(large["error_own_states"] - large["error_expert_states"]) < 0.02).all()


def test_gaussian_behaviour_cloning_fits_the_demonstrated_actions():
    demos = collect_demonstrations(PendulumPD(), "Pendulum-v1", episodes=5, seed=0)
    # Adam moves log σ by about lr per step, so σ needs a larger step size than the mean
    config = BCConfig(lr=3e-3, epochs=1, min_updates=500)
    policy, log = behaviour_cloning(demos, PENDULUM.observation_space, PENDULUM.action_space, config, seed=0)
    assert isinstance(policy, GaussianPolicy)
    assert list(log.columns) == ["epoch", "updates", "loss", "mse"]
    variance = float(demos.actions.var())
    # measured: MSE 0.31 → 0.0004 (the actions' variance is 0.43), NLL 1.06 → −0.61, σ 1 → 0.22
    assert log["mse"].iloc[-1] < 0.01 * variance < log["mse"].iloc[0]
    assert log["loss"].iloc[-1] < log["loss"].iloc[0] - 1.0
    assert policy.log_std.exp().max() < 0.5                # σ shrinks as the mean fits
    held_out = collect_demonstrations(PendulumPD(), "Pendulum-v1", episodes=2, seed=100)
    assert disagreement(policy, PendulumPD(), held_out.observations) < 0.01 * variance


def test_same_seed_same_log_and_weights():
    demos = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=1, seed=3)
    config = BCConfig(epochs=3, min_updates=0, batch_size=64)
    runs = [behaviour_cloning(demos, CARTPOLE.observation_space, CARTPOLE.action_space, config, seed)
            for seed in (7, 7, 8)]
    pd.testing.assert_frame_equal(runs[0][1], runs[1][1], check_exact=True)
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        assert torch.equal(a, b)
    assert not runs[0][1]["loss"].equals(runs[2][1]["loss"])
    assert len(runs[0][1]) == 3 and runs[0][1]["updates"].iloc[-1] == 3 * 8     # 500 pairs, 8 batches


def test_small_data_sets_get_enough_updates():
    demos = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=1, seed=0)
    demos = demos.subset(slice(0, 30))
    config = BCConfig(epochs=2, min_updates=50, batch_size=16)
    _, log = behaviour_cloning(demos, CARTPOLE.observation_space, CARTPOLE.action_space, config, seed=0)
    assert len(log) == 25 and log["updates"].iloc[-1] == 50                  # 2 batches per epoch


@pytest.mark.parametrize("field, value, message", [
    ("lr", 0.0, r"BCConfig.lr = 0.0 is out of range: it must be in \(0, inf\)"),
    ("epochs", 0, r"BCConfig.epochs = 0 is out of range: it must be in \[1, inf\)"),
    ("epochs", 2.5, r"BCConfig.epochs = 2.5 must be an integer"),
    ("batch_size", 0, r"BCConfig.batch_size = 0 is out of range: it must be in \[1, inf\)"),
    ("min_updates", -1, r"BCConfig.min_updates = -1 is out of range: it must be in \[0, inf\)"),
    ("hidden", (), r"BCConfig.hidden = \(\) is out of range"),
    ("hidden", (64, 0), r"BCConfig.hidden = \(64, 0\) is out of range: .*integers in \[1, inf\)"),
])
def test_config_errors_name_the_field_and_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        BCConfig(**{field: value})


def test_bad_inputs_fail_clearly():
    demos = collect_demonstrations(cartpole_controller(), "CartPole-v1", episodes=1, seed=0)
    with pytest.raises(UnsupportedSpaceError, match="behaviour-cloning"):
        behaviour_cloning(demos, gym.spaces.Discrete(16), CARTPOLE.action_space)
    with pytest.raises(ValueError, match="observation space"):
        behaviour_cloning(demos, PENDULUM.observation_space, CARTPOLE.action_space)
    with pytest.raises(ValueError, match="at least one"):
        behaviour_cloning(demos.subset(slice(0, 0)), CARTPOLE.observation_space, CARTPOLE.action_space)
    with pytest.raises(ValueError, match="sample_sizes"):
        compounding_error_study(cartpole_controller(), "CartPole-v1", sample_sizes=[0])
