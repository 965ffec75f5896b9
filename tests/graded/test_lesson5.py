"""Graded tests, lesson 5: A2C's advantages and loss, A3C's shared Adam.

The expected values come from the brute-force loops of ``brute_force.py`` (written from
the definitions), from losses assembled here term by term, or from Adam's update written
out by hand. The only rlcourse objects used besides the functions under test are the
policy and value classes and the config, as inputs.
"""

import math

import numpy as np
import pytest
import torch

from brute_force import brute_gae, brute_n_step, random_batch
from rlcourse.assignments.sandbox import student_module
from rlcourse.pg.policies import CategoricalPolicy, GaussianPolicy, ValueFunction
from rlcourse.pg.rollout import Batch
from rlcourse.pg.td_lambda_ac import TDLambdaACConfig

a2c = student_module("rlcourse.pg.a2c")
a3c = student_module("rlcourse.pg.a3c")
td_lambda_ac = student_module("rlcourse.pg.td_lambda_ac")


def make_batch(seed: int, T: int = 6, N: int = 2, obs_dim: int = 3, continuous: bool = False) -> Batch:
    """A small batch with random observations, actions, rewards and done flags."""
    b = random_batch(seed, T=T, N=N)
    g = torch.Generator().manual_seed(seed + 100)
    obs = torch.randn(T, N, obs_dim, generator=g)
    next_obs = torch.randn(T, N, obs_dim, generator=g)
    actions = torch.randn(T, N, 2, generator=g) if continuous else torch.randint(0, 2, (T, N), generator=g)
    return Batch(obs=obs, actions=actions, logp=torch.zeros(T, N), rewards=b["rewards"].float(),
                 terminated=b["terminated"], truncated=b["truncated"], next_obs=next_obs,
                 starts=torch.zeros(T, N, dtype=torch.bool), timesteps=torch.zeros(T, N, dtype=torch.long))


def flags_and_values(batch: Batch, values: torch.Tensor, next_values: torch.Tensor) -> dict:
    return dict(rewards=batch.rewards.double(), values=values.double(), next_values=next_values.double(),
                terminated=batch.terminated, truncated=batch.truncated)


def networks(seed: int, continuous: bool = False):
    torch.manual_seed(seed)
    policy = GaussianPolicy(3, 2, (8,)) if continuous else CategoricalPolicy(3, 2, (8,))
    return policy, ValueFunction(3, (8,))


def expected_loss(policy, critic, batch: Batch, config: a2c.A2CConfig, adv: torch.Tensor) -> torch.Tensor:
    """L = −mean(log π(a|s) Â) + c_V mean((V(s) − y)²) − c_H mean(H[π(·|s)]), y = Â + V(s) fixed."""
    obs, actions = batch.obs.flatten(0, 1), batch.actions.flatten(0, 1)
    values = critic(obs)
    psi = adv.flatten().float()
    if config.normalize_advantages:
        psi = psi / (psi.pow(2).mean().sqrt() + 1e-8)
    dist = policy.distribution(obs)
    logp = policy.log_prob(dist, actions)
    entropies = dist.entropy()
    if entropies.dim() > logp.dim():
        entropies = entropies.sum(-1)
    targets = (adv.flatten().float() + values).detach()
    return (-(logp * psi).mean() + config.vf_coef * ((values - targets) ** 2).mean()
            - config.ent_coef * entropies.mean())


def critic_values(critic, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return critic(batch.obs), critic(batch.next_obs)


# --------------------------------------------------------------------------- advantages


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_n_step_advantage_matches_its_definition(seed):
    # A2C's n is the rollout length T: step t sums rewards to the end of its episode or of
    # the batch, then bootstraps from V(s_{t+m}) unless the episode terminated.
    batch = make_batch(seed)
    values, next_values = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    config = a2c.A2CConfig(advantage="n-step", gamma=0.9)
    got = a2c.advantages(config, batch, values, next_values)
    expected = brute_n_step(flags_and_values(batch, values, next_values), 0.9, n=6)
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.points(2)
@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_gae_advantage_matches_its_definition(lam):
    batch = make_batch(7)
    values, next_values = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    config = a2c.A2CConfig(advantage="gae", gamma=0.95, gae_lambda=lam)
    got = a2c.advantages(config, batch, values, next_values)
    expected = brute_gae(flags_and_values(batch, values, next_values), 0.95, lam)
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- a2c_loss


@pytest.mark.points(2)
@pytest.mark.parametrize("advantage", ["n-step", "gae"])
def test_a2c_loss_value_and_terms(advantage):
    batch = make_batch(3)
    policy, critic = networks(3)
    config = a2c.A2CConfig(advantage=advantage, gamma=0.9, gae_lambda=0.8, vf_coef=0.5, ent_coef=0.01)
    values, next_values = critic_values(critic, batch)
    b = flags_and_values(batch, values, next_values)
    adv = torch.as_tensor(brute_n_step(b, 0.9, 6) if advantage == "n-step" else brute_gae(b, 0.9, 0.8))
    terms = a2c.a2c_loss(policy, critic, batch, config)
    assert terms.loss.item() == pytest.approx(expected_loss(policy, critic, batch, config, adv).item(), abs=1e-5)
    # the critic's regression error is the advantage itself: V(s) − y = −Â
    assert terms.value_loss.item() == pytest.approx(float((adv ** 2).mean()), abs=1e-5)
    np.testing.assert_allclose(terms.advantages.detach().double().numpy(), adv.numpy(), atol=1e-5)


@pytest.mark.points(2)
def test_a2c_loss_gradient_reaches_actor_and_critic_as_claimed():
    # the gradient of the loss equals the gradient of the loss assembled term by term:
    # Â and y carry no gradient, V(s_t) does (through the critic's term only)
    batch = make_batch(4)
    policy, critic = networks(4)
    config = a2c.A2CConfig(advantage="gae", gamma=0.99, gae_lambda=0.95, vf_coef=0.25, ent_coef=0.05)
    values, next_values = critic_values(critic, batch)
    adv = torch.as_tensor(brute_gae(flags_and_values(batch, values, next_values), 0.99, 0.95))
    params = list(policy.parameters()) + list(critic.parameters())
    got = torch.autograd.grad(a2c.a2c_loss(policy, critic, batch, config).loss, params, allow_unused=True)
    expected = torch.autograd.grad(expected_loss(policy, critic, batch, config, adv), params, allow_unused=True)
    for g, e in zip(got, expected):
        assert g is not None, "a parameter of the actor or the critic gets no gradient"
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


@pytest.mark.points(1)
def test_normalised_advantages_scale_the_actor_term_only():
    batch = make_batch(5)
    policy, critic = networks(5)
    config = a2c.A2CConfig(advantage="n-step", gamma=0.9, normalize_advantages=True)
    values, next_values = critic_values(critic, batch)
    adv = torch.as_tensor(brute_n_step(flags_and_values(batch, values, next_values), 0.9, 6))
    terms = a2c.a2c_loss(policy, critic, batch, config)
    assert terms.loss.item() == pytest.approx(expected_loss(policy, critic, batch, config, adv).item(), abs=1e-5)
    assert terms.value_loss.item() == pytest.approx(float((adv ** 2).mean()), abs=1e-5)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_gaussian_policy_entropy_is_summed_over_action_dimensions():
    batch = make_batch(6, continuous=True)
    policy, critic = networks(6, continuous=True)
    config = a2c.A2CConfig(advantage="gae", gamma=0.9, gae_lambda=0.9, ent_coef=0.1)
    values, next_values = critic_values(critic, batch)
    adv = torch.as_tensor(brute_gae(flags_and_values(batch, values, next_values), 0.9, 0.9))
    terms = a2c.a2c_loss(policy, critic, batch, config)
    # a diagonal Gaussian's entropy: Σ_d (½ log(2πe) + log σ_d), the same for every state
    expected_entropy = (0.5 * math.log(2 * math.pi * math.e) + policy.log_std).sum().item()
    assert terms.entropy.item() == pytest.approx(expected_entropy, abs=1e-5)
    assert terms.loss.item() == pytest.approx(expected_loss(policy, critic, batch, config, adv).item(), abs=1e-5)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- SharedAdam


def hand_adam(theta, grads, lr, beta1, beta2, eps):
    """Adam (Kingma & Ba 2015), written out: m, v, bias corrections, step."""
    theta = np.array(theta, dtype=np.float64)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@pytest.mark.points(2)
def test_shared_adam_takes_adams_steps():
    grads = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([-1.0, 0.0, 4.0])]
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64))
    optimizer = a3c.SharedAdam([p], lr=0.1, betas=(0.8, 0.9), eps=1e-3)
    for g in grads:
        p.grad = torch.as_tensor(g)
        optimizer.step()
    np.testing.assert_allclose(p.detach().numpy(), hand_adam([1.0, 2.0, -3.0], grads, 0.1, 0.8, 0.9, 1e-3),
                               rtol=1e-7, atol=1e-9)


@pytest.mark.points(1)
def test_shared_adam_keeps_its_statistics_in_shared_memory_and_skips_params_without_grad():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.ones(2))
    optimizer = a3c.SharedAdam([a, b], lr=0.01)
    for state in optimizer.state.values():
        assert all(tensor.is_shared() for tensor in state.values())
    a.grad = torch.tensor([1.0, -1.0])
    optimizer.step()
    torch.testing.assert_close(a.detach(), torch.tensor([-0.01, 0.01]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.detach(), torch.ones(2))          # no gradient, no step


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_shared_adam_statistics_continue_across_optimiser_objects_sharing_them():
    # two processes hold two optimiser objects over the same shared state; here, two
    # objects in one process stand for them: the second continues the first's count
    grads = [np.array([1.0, 2.0]), np.array([-0.5, 0.25])]
    p = torch.nn.Parameter(torch.tensor([0.0, 1.0], dtype=torch.float64))
    first = a3c.SharedAdam([p], lr=0.05)
    p.grad = torch.as_tensor(grads[0])
    first.step()
    second = a3c.SharedAdam([p], lr=0.05)
    second.state[p] = first.state[p]
    p.grad = torch.as_tensor(grads[1])
    second.step()
    np.testing.assert_allclose(p.detach().numpy(), hand_adam([0.0, 1.0], grads, 0.05, 0.9, 0.999, 1e-8),
                               rtol=1e-7, atol=1e-9)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- the TD(λ) actor-critic


@pytest.mark.points(1)
def test_td_lambda_traces_decay_and_add():
    # z ← γλ z + g with γλ = 0.5, per parameter
    traces = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5, -1.0]])]
    td_lambda_ac.decay_and_add(traces, [torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 1.0]])], 0.5)
    torch.testing.assert_close(traces[0], torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(traces[1], torch.tensor([[1.25, 0.5]]))


@pytest.mark.points(1)
def test_td_lambda_trace_step_moves_the_parameters_along_delta_times_the_trace():
    # θ ← θ + α δ z with α = 0.1, δ = −2: a step against the trace (the TD error was negative)
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.ones(1, 2))]
    td_lambda_ac.trace_step(params, [torch.tensor([1.0, 0.5]), torch.tensor([[2.0, 0.0]])], -2.0, 0.1)
    torch.testing.assert_close(params[0].data, torch.tensor([-0.2, -0.1]))
    torch.testing.assert_close(params[1].data, torch.tensor([[0.6, 1.0]]))
    assert params[0].grad is None


@pytest.mark.points(2)
def test_td_lambda_step_moves_the_critic_and_the_actor_along_one_td_error():
    # δ = r + γ V(s') − V(s) = 1 + 0.9 · 2 − 0.5 = 2.3; then the critic moves by α_w δ z_w = 0.1 · 2.3 · z_w
    # and the actor by α_θ δ z_θ = 0.01 · 2.3 · z_θ; the traces stay as they were
    config = TDLambdaACConfig(gamma=0.9, lr_actor=0.01, lr_critic=0.1)
    actor = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.ones(1, 2))]
    critic = [torch.nn.Parameter(torch.zeros(3))]
    actor_traces, critic_traces = [torch.tensor([1.0, -1.0]), torch.tensor([[0.0, 2.0]])], [torch.tensor([1.0, 0.5, -2.0])]
    got = td_lambda_ac.td_step(actor, actor_traces, critic, critic_traces, 1.0, 0.5, 2.0, config)
    assert got == pytest.approx(2.3)
    torch.testing.assert_close(critic[0].data, torch.tensor([0.23, 0.115, -0.46]))
    torch.testing.assert_close(actor[0].data, torch.tensor([0.023, -0.023]))
    torch.testing.assert_close(actor[1].data, torch.tensor([[1.0, 1.046]]))
    torch.testing.assert_close(critic_traces[0], torch.tensor([1.0, 0.5, -2.0]))
    assert actor[0].grad is None and critic[0].grad is None


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_td_lambda_step_after_a_terminal_state_steps_against_the_traces():
    # s' terminal, so V(s') is passed as 0 and δ = 0 − 1.5 = −1.5 (γ plays no part): both networks
    # step against their traces, each with its own step size
    config = TDLambdaACConfig(gamma=0.99, lr_actor=0.2, lr_critic=0.4)
    actor, critic = [torch.nn.Parameter(torch.ones(2))], [torch.nn.Parameter(torch.ones(2))]
    got = td_lambda_ac.td_step(actor, [torch.tensor([1.0, 0.0])], critic, [torch.tensor([0.0, 1.0])], 0.0, 1.5, 0.0,
                               config)
    assert got == pytest.approx(-1.5)
    torch.testing.assert_close(actor[0].data, torch.tensor([0.7, 1.0]))
    torch.testing.assert_close(critic[0].data, torch.tensor([1.0, 0.4]))


@pytest.mark.points(1)
def test_td_lambda_traces_over_three_steps_are_the_discounted_sum_of_gradients():
    # after steps with gradients g_0, g_1, g_2 from z = 0: z = (γλ)² g_0 + γλ g_1 + g_2
    traces = [torch.zeros(3)]
    grads = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])]
    for g in grads:
        td_lambda_ac.decay_and_add(traces, [g], 0.9 * 0.5)
    torch.testing.assert_close(traces[0], torch.tensor([0.45**2, 0.45, 1.0]))
### END HIDDEN TESTS
