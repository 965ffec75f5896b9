"""Graded tests, lesson 3: linear value-function approximation and DQN's pieces.

The expected values are worked out by hand in the comments, or come from brute-force
loops written below straight from the definitions (a ring buffer simulated one
transition at a time, a target computed one transition at a time, tiles found by
walking along each grid) or in ``brute_force.py`` (the online λ-return algorithm, every
horizon redone from the start, which true online TD(λ) must equal). None comes from calling rlcourse's own solutions: the only
rlcourse objects used besides the functions under test are inputs (``DQNConfig``,
``TileCoder``'s constructor) and the helper ``flatten_parameters`` that builds the
optimiser ``dqn_update`` expects.

Only ``terminated`` stops a bootstrap; a step cut by the time limit (``truncated``)
still bootstraps from the real next observation.
"""

import copy
import math

import numpy as np
import pytest
import torch
from brute_force import online_lambda_return
from torch import nn

from rlcourse.assignments.sandbox import student_module
from rlcourse.networks import flatten_parameters
from rlcourse.value.dqn import DQNConfig

dqn_targets = student_module("rlcourse.value.dqn_targets")
linear = student_module("rlcourse.value.linear")
dqn_update = student_module("rlcourse.value.dqn").dqn_update
ReplayBuffer = student_module("rlcourse.value.replay").ReplayBuffer
true_online = student_module("rlcourse.value.true_online")


def assert_close(got, expected, tol: float = 1e-6):
    """``got`` (a tensor or an array) has ``expected``'s shape and values, within ``tol``."""
    if isinstance(got, torch.Tensor):
        got = got.detach().double().numpy()
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- replay buffer


def transitions(ids) -> dict:
    """Transitions whose every field is a function of an id, so a stored row can be checked."""
    x = np.asarray(ids, dtype=np.float32)
    return dict(obs=np.stack([x, -x], axis=-1), action=x.astype(np.int64) % 3, reward=10 * x,
                next_obs=np.stack([x + 0.5, -x], axis=-1), terminated=x % 2 == 0, truncated=x % 3 == 0)


def add(buffer: ReplayBuffer, ids) -> None:
    t = transitions(ids)
    buffer.add(t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"], t["truncated"])


def assert_rows_are_whole(obs, actions, rewards, next_obs, terminated, truncated):
    """Every row holds one transition: all its fields belong to the same id."""
    obs, actions, rewards = np.asarray(obs), np.asarray(actions), np.asarray(rewards)
    next_obs, terminated, truncated = np.asarray(next_obs), np.asarray(terminated), np.asarray(truncated)
    x = obs[:, 0]
    np.testing.assert_array_equal(obs[:, 1], -x)
    np.testing.assert_array_equal(actions, x.astype(np.int64) % 3)
    np.testing.assert_allclose(rewards, 10 * x)
    np.testing.assert_array_equal(next_obs, np.stack([x + 0.5, -x], axis=-1))
    np.testing.assert_array_equal(terminated, x % 2 == 0)
    np.testing.assert_array_equal(truncated, x % 3 == 0)


def stored_ids(buffer: ReplayBuffer) -> list[int]:
    n = len(buffer)
    assert_rows_are_whole(buffer.obs[:n], buffer.actions[:n], buffer.rewards[:n], buffer.next_obs[:n],
                          buffer.terminated[:n], buffer.truncated[:n])
    return sorted(int(v) for v in buffer.obs[:n, 0])


@pytest.mark.points(2)
def test_replay_add_fills_the_slots_in_order_and_wraps_around():
    buffer = ReplayBuffer(4, (2,), seed=0)
    # three environments at once: slots 0, 1, 2
    add(buffer, [1, 2, 3])
    assert len(buffer) == 3 and buffer.pos == 3
    np.testing.assert_array_equal(buffer.obs[:3, 0], [1, 2, 3])
    # one unbatched transition: slot 3, and the write position wraps to 0
    t = transitions([4])
    buffer.add(t["obs"][0], int(t["action"][0]), float(t["reward"][0]), t["next_obs"][0],
               bool(t["terminated"][0]), bool(t["truncated"][0]))
    assert len(buffer) == 4 and buffer.pos == 0
    # two more overwrite the oldest two, 1 and 2, in slots 0 and 1
    add(buffer, [5, 6])
    assert len(buffer) == 4 and buffer.pos == 2
    np.testing.assert_array_equal(buffer.obs[:, 0], [5, 6, 3, 4])
    assert_rows_are_whole(buffer.obs, buffer.actions, buffer.rewards, buffer.next_obs,
                          buffer.terminated, buffer.truncated)
    np.testing.assert_array_equal(buffer.actions, [2, 0, 0, 1])
    np.testing.assert_array_equal(buffer.terminated, [False, True, False, True])
    np.testing.assert_array_equal(buffer.truncated, [False, True, True, False])


@pytest.mark.points(1)
def test_replay_add_keeps_the_last_capacity_transitions():
    # batches of every size, some larger than the whole buffer: what is stored is always the
    # last min(added, capacity) transitions, each row whole
    buffer = ReplayBuffer(7, (2,), seed=0)
    added = []
    next_id = 1
    for n in (3, 1, 5, 9, 2, 7, 4, 15, 1, 6):
        ids = list(range(next_id, next_id + n))
        next_id += n
        add(buffer, ids)
        added += ids
        assert len(buffer) == min(len(added), 7)
        assert stored_ids(buffer) == sorted(added[-7:]), f"after adding {n}"


@pytest.mark.points(2)
def test_replay_sample_is_uniform_over_the_stored_transitions_only():
    # four transitions in a buffer of ten: the six empty slots must never come up
    buffer = ReplayBuffer(10, (2,), seed=0)
    add(buffer, [1, 2, 3, 4])
    batch = buffer.sample(4000)
    assert set(batch) == {"obs", "actions", "rewards", "next_obs", "terminated", "truncated"}
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    assert tuple(batch["obs"].shape) == (4000, 2) and tuple(batch["next_obs"].shape) == (4000, 2)
    for name in ("actions", "rewards", "terminated", "truncated"):
        assert tuple(batch[name].shape) == (4000,), name
    assert_rows_are_whole(*(batch[name].numpy() for name in
                            ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")))
    counts = np.bincount(batch["obs"][:, 0].numpy().astype(int), minlength=5)
    assert counts[0] == 0, "an empty slot was sampled"
    # each of the four a quarter of the time (a standard deviation is 0.007)
    np.testing.assert_allclose(counts[1:] / 4000, 0.25, atol=0.03)
    # with replacement: more than are stored
    assert tuple(buffer.sample(9)["obs"].shape) == (9, 2)
    # after wrapping around: ids 3 … 7 are stored, the write position is at 2; all five come up
    buffer = ReplayBuffer(5, (2,), seed=1)
    add(buffer, [1, 2, 3, 4])
    add(buffer, [5, 6, 7])
    ids = buffer.sample(5000)["obs"][:, 0].numpy().astype(int)
    counts = np.bincount(ids, minlength=8)
    assert counts[:3].sum() == 0, "an overwritten transition was sampled"
    np.testing.assert_allclose(counts[3:] / 5000, 0.2, atol=0.03)


# --------------------------------------------------------------------------- dqn_target


class TableQ(nn.Module):
    """Q(s, ·) read from a table; the state is the observation's first entry."""

    def __init__(self, rows):
        super().__init__()
        self.table = torch.tensor(rows, dtype=torch.float32)

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def f32(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# next states of four transitions (the last is the first state again)
NEXT_OBS = f32([[0.0], [1.0], [2.0], [0.0]])
REWARDS = f32([1.0, 2.0, 3.0, 0.5])
# transition 2 terminated; transition 3 was cut by the time limit, so it is not terminated
TERMINATED = torch.tensor([False, False, True, False])
TARGET_Q = [[1.0, 5.0, 2.0],
            [-1.0, -3.0, -2.0],
            [4.0, 0.0, 7.0]]
ONLINE_Q = [[9.0, 0.0, 1.0],     # argmax 0
            [0.0, 0.0, 5.0],     # argmax 2
            [0.0, 9.0, 0.0]]     # argmax 1


@pytest.mark.points(2)
def test_dqn_target_by_hand():
    # γ = 0.5, y = r + γ (1 − terminated) max_a' Q̄(s', a'):
    #   y_0 = 1 + 0.5·5 = 3.5, y_1 = 2 + 0.5·(−1) = 1.5, y_2 = 3 (terminated),
    #   y_3 = 0.5 + 0.5·5 = 3 (truncated: still bootstraps)
    y = dqn_targets.dqn_target(REWARDS, NEXT_OBS, TERMINATED, TableQ(TARGET_Q), 0.5)
    assert_close(y, [3.5, 1.5, 3.0, 3.0])
    # γ = 0: the reward alone
    y = dqn_targets.dqn_target(REWARDS, NEXT_OBS, TERMINATED, TableQ(TARGET_Q), 0.0)
    assert_close(y, [1.0, 2.0, 3.0, 0.5])


@pytest.mark.points(2)
def test_double_dqn_target_values_the_online_choice_with_the_target_network():
    # the online net chooses a' = 0, 2, 1, 0; the target net values them: 1, −2, (0), 1
    #   y_0 = 1 + 0.5·1 = 1.5, y_1 = 2 + 0.5·(−2) = 1, y_2 = 3 (terminated), y_3 = 0.5 + 0.5·1 = 1
    y = dqn_targets.dqn_target(REWARDS, NEXT_OBS, TERMINATED, TableQ(TARGET_Q), 0.5,
                               double=True, online_net=TableQ(ONLINE_Q))
    assert_close(y, [1.5, 1.0, 3.0, 1.0])


# --------------------------------------------------------------------------- polyak, ε


@pytest.mark.points(2)
def test_polyak_update_by_hand():
    # flat vectors, τ = 0.25: θ̄ ← 0.25 θ + 0.75 θ̄ = (0.25·4 + 0, 0.25·2 + 7.5, 0.25·6 − 1.5)
    target, online = f32([0.0, 10.0, -2.0]), f32([4.0, 2.0, 6.0])
    same = target
    dqn_targets.polyak_update(target, online, 0.25)
    assert same is target
    assert_close(target, [1.0, 8.0, 0.0])
    assert_close(online, [4.0, 2.0, 6.0])
    # networks, τ = 0.5: the halfway point, in the target's own parameters
    target_net, online_net = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target_net.weight.copy_(f32([[1.0, 1.0]]))
        target_net.bias.copy_(f32([0.0]))
        online_net.weight.copy_(f32([[3.0, -1.0]]))
        online_net.bias.copy_(f32([2.0]))
    weight = target_net.weight
    dqn_targets.polyak_update(target_net, online_net, 0.5)
    assert weight is target_net.weight
    assert_close(target_net.weight, [[2.0, 0.0]])
    assert_close(target_net.bias, [1.0])
    assert_close(online_net.weight, [[3.0, -1.0]])
    # τ = 1 copies exactly; τ = 0 leaves the target as it was
    torch.manual_seed(0)
    target_net, online_net = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)), nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    before = [p.detach().clone() for p in target_net.parameters()]
    dqn_targets.polyak_update(target_net, online_net, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(target_net.parameters(), before))
    dqn_targets.polyak_update(target_net, online_net, 1.0)
    assert all(torch.equal(p, q) for p, q in zip(target_net.parameters(), online_net.parameters()))


@pytest.mark.points(1)
def test_linear_epsilon_by_hand():
    # from 1 to 0.1 over the first half of 1000 steps (500 steps), then 0.1
    cases = [(0, 1.0), (250, 0.55), (499, 1.0 - 0.9 * 499 / 500), (500, 0.1), (999, 0.1), (5000, 0.1)]
    for step, expected in cases:
        assert dqn_targets.linear_epsilon(step, 1.0, 0.1, 0.5, 1000) == pytest.approx(expected, abs=1e-9), step
    # from 0.5 to 0 over the first tenth of 200 steps (20 steps)
    for step, expected in [(0, 0.5), (5, 0.375), (19, 0.025), (20, 0.0), (150, 0.0)]:
        assert dqn_targets.linear_epsilon(step, 0.5, 0.0, 0.1, 200) == pytest.approx(expected, abs=1e-9), step
    # over the whole run
    assert dqn_targets.linear_epsilon(50, 0.8, 0.2, 1.0, 100) == pytest.approx(0.5)


# --------------------------------------------------------------------------- dqn_update


def linear_q(weight, bias) -> nn.Linear:
    net = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        net.weight.copy_(f32(weight))
        net.bias.copy_(f32(bias))
    return net


def hand_batch() -> dict:
    return {"obs": f32([[1.0, 2.0], [3.0, 1.0]]), "actions": torch.tensor([0, 1]),
            "rewards": f32([0.0, 0.0]), "next_obs": f32([[0.0, 0.0], [0.0, 0.0]]),
            "terminated": torch.tensor([False, False]), "truncated": torch.tensor([False, False])}


# Q(s, a) = w_a · s + b_a with W = I, b = 0: Q(s_0, 0) = 1, Q(s_1, 1) = 1; targets y = (4, 0.5),
# so the errors Q − y are (−3, 0.5) and the mean Q(s, a) is 1.
#   MSE:   L = (9 + 0.25)/2 = 4.625;  ∂L/∂w_0 = (2/2)(−3) s_0 = (−3, −6),  ∂L/∂b_0 = −3,
#                                      ∂L/∂w_1 = (2/2)(0.5) s_1 = (1.5, 0.5), ∂L/∂b_1 = 0.5
#   Huber: L = ((3 − 0.5) + 0.5·0.25)/2 = 1.3125; the error is clipped to [−1, 1] in the gradient:
#          ∂L/∂w_0 = (1/2)(−1) s_0 = (−0.5, −1), ∂L/∂b_0 = −0.5,
#          ∂L/∂w_1 = (1/2)(0.5) s_1 = (0.75, 0.25), ∂L/∂b_1 = 0.25
HAND_Y = f32([4.0, 0.5])
HAND_GRADIENT = {"mse": ([[-3.0, -6.0], [1.5, 0.5]], [-3.0, 0.5]),
                 "huber": ([[-0.5, -1.0], [0.75, 0.25]], [-0.5, 0.25])}
HAND_LOSS = {"mse": 4.625, "huber": 1.3125}


@pytest.mark.points(2)
@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_dqn_update_is_one_gradient_step_by_hand(kind):
    online = linear_q([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    optimizer = torch.optim.SGD([flatten_parameters(online)], lr=0.1)
    # the gradient norms are 7.5 (MSE) and 1.5 (Huber): a limit of 100 does not clip
    loss, q_mean = dqn_update(online, optimizer, hand_batch(), HAND_Y, DQNConfig(loss=kind, max_grad_norm=100.0))
    assert isinstance(loss, float) and isinstance(q_mean, float)
    assert loss == pytest.approx(HAND_LOSS[kind], rel=1e-6)
    assert q_mean == pytest.approx(1.0, rel=1e-6)
    # θ ← θ − 0.1 ∇L
    grad_w, grad_b = HAND_GRADIENT[kind]
    assert_close(online.weight, np.eye(2) - 0.1 * np.array(grad_w), tol=1e-5)
    assert_close(online.bias, -0.1 * np.array(grad_b), tol=1e-5)


@pytest.mark.points(1)
def test_dqn_update_clips_the_norm_of_the_whole_gradient():
    online = linear_q([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    optimizer = torch.optim.SGD([flatten_parameters(online)], lr=0.1)
    loss, _ = dqn_update(online, optimizer, hand_batch(), HAND_Y, DQNConfig(loss="mse", max_grad_norm=1.0))
    assert loss == pytest.approx(4.625, rel=1e-6)
    # the MSE gradient above, all four weights and both biases together, has norm √56.75 ≈ 7.53;
    # clipped to norm 1 it is g / √56.75
    grad_w, grad_b = (np.array(g) for g in HAND_GRADIENT["mse"])
    norm = math.sqrt((grad_w ** 2).sum() + (grad_b ** 2).sum())
    assert norm == pytest.approx(math.sqrt(56.75))
    assert_close(online.weight, np.eye(2) - 0.1 * grad_w / norm, tol=1e-5)
    assert_close(online.bias, -0.1 * grad_b / norm, tol=1e-5)


def hand_written_loss(q_taken, y, kind):
    error = q_taken - y
    if kind == "mse":
        return (error ** 2).mean()
    return torch.where(error.abs() < 1, 0.5 * error ** 2, error.abs() - 0.5).mean()


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_dqn_update_matches_an_independent_step_on_a_copy(kind):
    # a small MLP, three steps on different minibatches with large errors and a tight clip;
    # the copy takes the same steps by hand: loss, backward, clip_grad_norm_, θ ← θ − α g
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    reference = copy.deepcopy(online)
    optimizer = torch.optim.SGD([flatten_parameters(online)], lr=0.05)
    config = DQNConfig(loss=kind, max_grad_norm=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        batch = {"obs": torch.randn(16, 3, generator=g), "actions": torch.randint(0, 2, (16,), generator=g),
                 "rewards": torch.zeros(16), "next_obs": torch.zeros(16, 3),
                 "terminated": torch.zeros(16, dtype=torch.bool), "truncated": torch.zeros(16, dtype=torch.bool)}
        y = 5 * torch.randn(16, generator=g)
        loss, q_mean = dqn_update(online, optimizer, batch, y, config)

        q_taken = reference(batch["obs"])[torch.arange(16), batch["actions"]]
        expected = hand_written_loss(q_taken, y, kind)
        for p in reference.parameters():
            p.grad = None
        expected.backward()
        norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
        assert norm > 0.1, "the test means the clip to act"
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.05 * p.grad
        assert loss == pytest.approx(float(expected.detach()), rel=1e-5), f"step {step}"
        assert q_mean == pytest.approx(float(q_taken.detach().mean()), rel=1e-5, abs=1e-6), f"step {step}"
        for p, q in zip(online.parameters(), reference.parameters()):
            assert_close(p, q.detach().double().numpy(), tol=1e-5)


@pytest.mark.points(1)
def test_dqn_update_does_not_step_on_a_non_finite_loss():
    online = linear_q([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    optimizer = torch.optim.SGD([flatten_parameters(online)], lr=0.1)
    loss, _ = dqn_update(online, optimizer, hand_batch(), f32([float("nan"), 0.5]), DQNConfig(loss="mse"))
    assert math.isnan(loss)
    assert_close(online.weight, np.eye(2))
    assert_close(online.bias, [0.0, 0.0])


# --------------------------------------------------------------------------- linear updates


@pytest.mark.points(2)
def test_semi_gradient_td0_and_gradient_mc_updates_by_hand():
    # w = (1, 2, 3), φ(s) = (1, 0, 1), φ(s') = (0, 1, 1): v(s) = 4, v(s') = 5; r = 1, γ = 0.5, α = 0.1
    phi_s, phi_next = np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])
    # not terminated (perhaps truncated): δ = 1 + 0.5·5 − 4 = −0.5, w += 0.1·(−0.5)·φ(s)
    w = np.array([1.0, 2.0, 3.0])
    same = w
    delta = linear.semi_gradient_td0_update(w, phi_s, 1.0, phi_next, False, 0.1, 0.5)
    assert delta == pytest.approx(-0.5)
    assert same is w
    assert_close(w, [0.95, 2.0, 2.95])
    # terminated: δ = 1 − 4 = −3, w += 0.1·(−3)·φ(s)
    w = np.array([1.0, 2.0, 3.0])
    delta = linear.semi_gradient_td0_update(w, phi_s, 1.0, phi_next, True, 0.1, 0.5)
    assert delta == pytest.approx(-3.0)
    assert_close(w, [0.7, 2.0, 2.7])
    # gradient MC: φ(s) = (0.5, 0, 2), v(s) = 6.5, G = 10: error 3.5, w += 0.1·3.5·φ(s)
    w = np.array([1.0, 2.0, 3.0])
    error = linear.gradient_mc_update(w, np.array([0.5, 0.0, 2.0]), 10.0, 0.1)
    assert error == pytest.approx(3.5)
    assert_close(w, [1.175, 2.0, 3.7])


@pytest.mark.points(1)
def test_linear_q_learning_update_by_hand():
    # W [features, actions]; φ(s) = (1, 1, 0): Q(s, ·) = (1, 2); φ(s') = (0, 1, 1): Q(s', ·) = (1, 3)
    W = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    same = W
    phi_s, phi_next = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])
    # a = 0, r = 0.5, γ = 0.9: δ = 0.5 + 0.9·max(1, 3) − 1 = 2.2; W[:, 0] += 0.5·2.2·φ(s)
    delta = linear.linear_q_learning_update(W, phi_s, 0, 0.5, phi_next, False, 0.5, 0.9)
    assert delta == pytest.approx(2.2)
    assert same is W
    assert_close(W, [[2.1, 0.0], [1.1, 2.0], [1.0, 1.0]])


# --------------------------------------------------------------------------- tile coding


def brute_force_tiles(obs, low, high, tiles_per_dim, tilings):
    """Walk along each grid: in tiling k, dimension d, the tiles' lower edges are at
    low_d + (j − o_kd)·w_d for j = 0 … tiles_per_dim, with tile width w_d = (high_d − low_d) /
    tiles_per_dim and offset o_kd = k·(2d + 1)/tilings mod 1 (in tile widths). The active
    tile is the last one whose lower edge is at or below the (clipped) observation; its
    index is k·(n + 1)^D + Σ_d j_d (n + 1)^d."""
    obs = np.minimum(np.maximum(np.asarray(obs, float), low), high)
    dims, n = len(low), tiles_per_dim
    active = []
    for k in range(tilings):
        index = k * (n + 1) ** dims
        for d in range(dims):
            width = (high[d] - low[d]) / n
            offset = (k * (2 * d + 1) / tilings) % 1.0
            j = 0
            while j + 1 <= n and low[d] + (j + 1 - offset) * width <= obs[d]:
                j += 1
            index += j * (n + 1) ** d
        active.append(index)
    return active


def active_list(coder, obs) -> list[int]:
    got = np.asarray(coder.active(np.asarray(obs, dtype=float)))
    assert got.shape == (coder.tilings,), f"one index per tiling, got shape {got.shape}"
    assert np.issubdtype(got.dtype, np.integer), f"integer indices, got {got.dtype}"
    return got.tolist()


@pytest.mark.points(2)
def test_tile_coder_active_by_hand():
    # 1-D, [0, 4], 4 tiles of width 1, 2 tilings, offsets 0 and 1/2 tile; 5 tiles per tiling:
    #   1.7: tiling 0 → tile ⌊1.7⌋ = 1; tiling 1 → ⌊2.2⌋ = 2, index 5 + 2 = 7
    coder = linear.TileCoder([0.0], [4.0], tiles_per_dim=4, tilings=2)
    assert active_list(coder, [1.7]) == [1, 7]
    assert active_list(coder, [0.2]) == [0, 5]
    # 2-D, [0, 2]², 2 tiles of width 1 per dimension, 2 tilings, 3 × 3 = 9 tiles per tiling;
    # offsets (0, 0) and (1/2, 3/2 mod 1 = 1/2); strides (1, 3):
    #   (0.7, 1.2): tiling 0 → (0, 1) → 0 + 3 = 3; tiling 1 → (⌊1.2⌋, ⌊1.7⌋) = (1, 1) → 9 + 1 + 3 = 13
    coder = linear.TileCoder([0.0, 0.0], [2.0, 2.0], tiles_per_dim=2, tilings=2)
    assert active_list(coder, [0.7, 1.2]) == [3, 13]
    # 2-D, [−1, 1] × [0, 8], 4 tiles per dimension (widths 0.5 and 2), 4 tilings, 25 tiles each;
    # offsets k·(1, 3)/4 mod 1 = (0, 0), (.25, .75), (.5, .5), (.75, .25); strides (1, 5).
    # (0.1, 5.2) in tile units is (2.2, 2.6):
    #   k = 0: (2, 2) → 12; k = 1: (2.45, 3.35) → (2, 3) → 25 + 17 = 42;
    #   k = 2: (2.7, 3.1) → (2, 3) → 50 + 17 = 67; k = 3: (2.95, 2.85) → (2, 2) → 75 + 12 = 87
    coder = linear.TileCoder([-1.0, 0.0], [1.0, 8.0], tiles_per_dim=4, tilings=4)
    assert active_list(coder, [0.1, 5.2]) == [12, 42, 67, 87]


@pytest.mark.points(1)
def test_tile_coder_matches_a_walk_along_the_grids():
    rng = np.random.default_rng(0)
    for low, high, n, tilings in [([0.0, -2.0], [1.0, 2.0], 5, 4),
                                  ([-1.2, -0.07], [0.6, 0.07], 8, 8),
                                  ([0.0, 0.0, -1.0], [3.0, 1.0, 1.0], 3, 5)]:
        low, high = np.array(low), np.array(high)
        coder = linear.TileCoder(low, high, tiles_per_dim=n, tilings=tilings)
        for _ in range(50):
            obs = rng.uniform(low, high)
            assert active_list(coder, obs) == brute_force_tiles(obs, low, high, n, tilings), obs


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_dqn_targets_match_a_loop_over_transitions():
    # random networks; truncated steps are left out of `terminated`, so they bootstrap
    torch.manual_seed(3)
    target_net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 4))
    online_net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(4)
    rewards, next_obs = torch.randn(32, generator=g), torch.randn(32, 3, generator=g)
    terminated = torch.rand(32, generator=g) < 0.3
    with torch.no_grad():
        q_target, q_online = target_net(next_obs).tolist(), online_net(next_obs).tolist()
    plain, double = [], []
    for i in range(32):
        future = 0.0 if terminated[i] else 1.0
        plain.append(float(rewards[i]) + 0.9 * future * max(q_target[i]))
        choice = max(range(4), key=lambda a: q_online[i][a])
        double.append(float(rewards[i]) + 0.9 * future * q_target[i][choice])
    got = dqn_targets.dqn_target(rewards, next_obs, terminated, target_net, 0.9)
    assert_close(got, plain, tol=1e-5)
    assert not got.requires_grad
    got = dqn_targets.dqn_target(rewards, next_obs, terminated, target_net, 0.9, double=True, online_net=online_net)
    assert_close(got, double, tol=1e-5)
    assert not np.allclose(plain, double), "the test needs the online choice to differ somewhere"


@pytest.mark.points(1)
def test_replay_buffer_of_several_envs_is_a_ring_one_transition_at_a_time():
    # three environments, capacity 8 (not a multiple of 3): the slots are those of eight
    # single adds in a row, the write position wrapping mid-batch
    buffer = ReplayBuffer(8, (2,), seed=2)
    slots, position = [0] * 8, 0
    for round_ in range(7):
        ids = [3 * round_ + 1, 3 * round_ + 2, 3 * round_ + 3]
        add(buffer, ids)
        for i in ids:
            slots[position] = i
            position = (position + 1) % 8
        size = min(3 * (round_ + 1), 8)
        assert len(buffer) == size and buffer.pos == position
        np.testing.assert_array_equal(buffer.obs[:size, 0], slots[:size])
    assert_rows_are_whole(buffer.obs, buffer.actions, buffer.rewards, buffer.next_obs,
                          buffer.terminated, buffer.truncated)
    drawn = set(buffer.sample(2000)["obs"][:, 0].numpy().astype(int).tolist())
    assert drawn == set(range(14, 22))


@pytest.mark.points(1)
def test_tile_coder_clips_observations_to_the_box():
    # [0, 4], 4 tiles, 2 tilings (offsets 0 and 1/2): outside the box counts as its edge
    coder = linear.TileCoder([0.0], [4.0], tiles_per_dim=4, tilings=2)
    assert active_list(coder, [4.0]) == [4, 9]           # ⌊4⌋ = 4, ⌊4.5⌋ = 4 → 5 + 4
    assert active_list(coder, [10.0]) == [4, 9]
    assert active_list(coder, [0.0]) == [0, 5]
    assert active_list(coder, [-3.0]) == [0, 5]
    rng = np.random.default_rng(5)
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 8.0])
    coder = linear.TileCoder(low, high, tiles_per_dim=4, tilings=4)
    for _ in range(50):
        obs = rng.uniform(-5.0, 12.0, size=2)
        got = active_list(coder, obs)
        assert got == brute_force_tiles(obs, low, high, 4, 4), obs
        assert all(0 <= i < coder.n_features for i in got)


@pytest.mark.points(1)
def test_linear_q_learning_update_after_a_terminal_step():
    W = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    phi_s, phi_next = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])
    # terminated: δ = 0.5 − Q(s, 0) = −0.5; W[:, 0] += 0.5·(−0.5)·φ(s)
    delta = linear.linear_q_learning_update(W, phi_s, 0, 0.5, phi_next, True, 0.5, 0.9)
    assert delta == pytest.approx(-0.5)
    assert_close(W, [[0.75, 0.0], [-0.25, 2.0], [1.0, 1.0]])
    # action 1, not terminated: Q(s, 1) = 2, Q(s', ·) = (−0.25 + 1, 2 + 1) = (0.75, 3);
    # δ = 1 + 0.5·3 − 2 = 0.5; W[:, 1] += 0.2·0.5·φ(s)
    delta = linear.linear_q_learning_update(W, phi_s, 1, 1.0, phi_next, False, 0.2, 0.5)
    assert delta == pytest.approx(0.5)
    assert_close(W, [[0.75, 0.1], [-0.25, 2.1], [1.0, 1.0]])
### END HIDDEN TESTS


# --------------------------------------------------------------------------- true online TD(λ)


@pytest.mark.points(1)
def test_true_online_update_by_hand():
    # x = (1, 0), x' = (0, 1), w = (1, 2), z = (0.5, 0.5), V_old = 0.5; α = 0.5, γ = 1, λ = 0.5, r = 1:
    # V = wᵀx = 1, V' = wᵀx' = 2, δ = 1 + 2 − 1 = 2; zᵀx = 0.5 (the old z):
    # z = 0.5·(0.5, 0.5) + (1 − 0.5·1·0.5·0.5)·(1, 0) = (1.125, 0.25)
    # w += 0.5·(2 + 1 − 0.5)·z − 0.5·(1 − 0.5)·x = (1 + 1.40625 − 0.25, 2 + 0.3125)
    w, z = np.array([1.0, 2.0]), np.array([0.5, 0.5])
    same_w, same_z = w, z
    delta, v_old = true_online.true_online_update(w, z, np.array([1.0, 0.0]), np.array([0.0, 1.0]), 1.0, 0.5,
                                                  0.5, 1.0, 0.5)
    assert delta == pytest.approx(2.0) and v_old == pytest.approx(2.0)    # V_old for the next step: V' = 2
    assert same_w is w and same_z is z                                    # both in place
    assert_close(z, [1.125, 0.25])
    assert_close(w, [2.15625, 2.3125])


@pytest.mark.points(2)
@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("terminated", [True, False])
def test_true_online_td_lambda_is_the_online_lambda_return(lam, terminated):
    # van Seijen et al. (2016): with linear features true online TD(λ) gives, after every step h,
    # exactly the weights of the online λ-return algorithm (every horizon redone from w_0)
    rng = np.random.default_rng(7)
    xs, rewards, w0 = rng.normal(size=(8, 4)), rng.normal(size=7), rng.normal(size=4)
    alpha, gamma = 0.05, 0.9
    expected = online_lambda_return(w0, xs, rewards, terminated, alpha, gamma, lam)
    w, z, v_old = w0.copy(), np.zeros(4), 0.0
    for t, reward in enumerate(rewards):
        x_next = np.zeros(4) if terminated and t == len(rewards) - 1 else xs[t + 1]
        _, v_old = true_online.true_online_update(w, z, xs[t], x_next, float(reward), v_old, alpha, gamma, lam)
        assert_close(w, expected[t], tol=1e-9)
