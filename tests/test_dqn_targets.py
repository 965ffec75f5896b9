"""Lesson 3: DQN's targets, losses and updates against hand computations.

The tiny networks are single nn.Linear layers with weights set by hand, so every Q-value
in a test can be read off and the target worked out on paper.
"""

import copy

import pytest
import torch
from torch import nn

from rlcourse.config import ConfigError
from rlcourse.value.dqn_targets import dqn_target, linear_epsilon, polyak_update, q_network, td_loss


def linear_q(weight) -> nn.Linear:
    """Q(s, ·) = W s, no bias: with one-hot s the Q-values are W's columns."""
    weight = torch.tensor(weight, dtype=torch.float32)
    net = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        net.weight.copy_(weight)
    return net


# Two next states (one-hot), two actions.
# target net: Q̄(s'0) = [1, 5], Q̄(s'1) = [4, 2];  online net: Q(s'0) = [3, 0], Q(s'1) = [0, 1]
TARGET = linear_q([[1.0, 4.0], [5.0, 2.0]])
ONLINE = linear_q([[3.0, 0.0], [0.0, 1.0]])
NEXT_OBS = torch.eye(2)
REWARDS = torch.tensor([1.0, -1.0])
GAMMA = 0.5


def test_dqn_target_takes_the_max_of_the_target_network():
    y = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, False]), TARGET, GAMMA)
    assert torch.allclose(y, torch.tensor([1 + 0.5 * 5, -1 + 0.5 * 4]))


def test_double_dqn_lets_the_online_network_choose_and_differs_from_dqn():
    y = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, False]), TARGET, GAMMA,
                   double=True, online_net=ONLINE)
    # online arg-max: action 0 in s'0, action 1 in s'1; valued by the target net: 1 and 2
    assert torch.allclose(y, torch.tensor([1 + 0.5 * 1, -1 + 0.5 * 2]))
    plain = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, False]), TARGET, GAMMA)
    assert not torch.allclose(y, plain)


def test_double_dqn_equals_dqn_when_both_networks_are_the_same():
    y = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, True]), TARGET, GAMMA,
                   double=True, online_net=TARGET)
    plain = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, True]), TARGET, GAMMA)
    assert torch.equal(y, plain)


@pytest.mark.parametrize("double", [False, True])
def test_terminated_stops_the_bootstrap_and_truncated_does_not(double):
    # Transition 0 terminated; transition 1 was truncated, which the target never sees:
    # a cut episode's next state still has a future, so it bootstraps like any other.
    terminated = torch.tensor([True, False])
    y = dqn_target(REWARDS, NEXT_OBS, terminated, TARGET, GAMMA, double=double, online_net=ONLINE)
    bootstrap_1 = 2.0 if double else 4.0
    assert torch.allclose(y, torch.tensor([1.0, -1 + 0.5 * bootstrap_1]))
    y_float = dqn_target(REWARDS, NEXT_OBS, terminated.float(), TARGET, GAMMA, double=double,
                         online_net=ONLINE)
    assert torch.equal(y, y_float)


def test_double_dqn_without_online_net_is_an_error():
    with pytest.raises(ValueError, match="online_net"):
        dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, False]), TARGET, GAMMA, double=True)


def test_dqn_target_carries_no_gradient():
    net = q_network(2, 2, (4,))
    y = dqn_target(REWARDS, NEXT_OBS, torch.tensor([False, False]), net, GAMMA)
    assert not y.requires_grad


@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_shape(dueling):
    torch.manual_seed(0)
    net = q_network(4, 3, (16, 16), dueling=dueling)
    assert net(torch.randn(7, 4)).shape == (7, 3)
    assert net(torch.randn(4)).shape == (3,)


def test_dueling_head_is_value_plus_centred_advantage():
    torch.manual_seed(0)
    net = q_network(4, 3, (16,), dueling=True)
    obs = torch.randn(5, 4)
    q = net(obs)
    features = net.trunk(obs)
    advantage = net.advantage(features)
    value = net.value(features)
    assert torch.allclose(q - q.mean(-1, keepdim=True), advantage - advantage.mean(-1, keepdim=True),
                          atol=1e-6)
    assert torch.allclose(q.mean(-1, keepdim=True), value, atol=1e-6)


def test_polyak_with_half_averages_and_with_one_copies():
    torch.manual_seed(0)
    online, target = q_network(3, 2, (5,)), q_network(3, 2, (5,))
    before = copy.deepcopy(target)
    polyak_update(target, online, tau=0.5)
    for t, b, o in zip(target.parameters(), before.parameters(), online.parameters()):
        assert torch.allclose(t, (b + o) / 2)
    polyak_update(target, online, tau=1.0)
    for t, o in zip(target.parameters(), online.parameters()):
        assert torch.equal(t, o)
    polyak_update(target, before, tau=0.0)
    for t, o in zip(target.parameters(), online.parameters()):
        assert torch.equal(t, o)
    with pytest.raises(ConfigError, match="tau"):
        polyak_update(target, online, tau=1.5)


def test_huber_and_mse_by_hand():
    q = torch.tensor([0.0, 0.0, 0.0])
    y = torch.tensor([0.5, -2.0, 3.0])
    # Huber, δ = 1: ½e² for |e| ≤ 1, |e| − ½ beyond
    assert torch.isclose(td_loss(q, y, "huber"), torch.tensor((0.125 + 1.5 + 2.5) / 3))
    assert torch.isclose(td_loss(q, y, "mse"), torch.tensor((0.25 + 4.0 + 9.0) / 3))
    assert torch.isclose(td_loss(q, y), td_loss(q, y, "huber"))
    with pytest.raises(ConfigError, match="kind"):
        td_loss(q, y, "l1")


def test_linear_epsilon():
    assert linear_epsilon(0, 1.0, 0.05, 0.1, 10_000) == 1.0
    assert linear_epsilon(500, 1.0, 0.05, 0.1, 10_000) == pytest.approx(0.525)
    assert linear_epsilon(1_000, 1.0, 0.05, 0.1, 10_000) == 0.05
    assert linear_epsilon(9_999, 1.0, 0.05, 0.1, 10_000) == 0.05
    assert linear_epsilon(0, 1.0, 0.05, 0.0, 10_000) == 0.05
