import pytest
import torch
from torch import nn

from rlcourse.networks import clip_grad_norm, flatten_parameters, mlp


def test_flatten_parameters_keeps_the_function_and_shares_storage():
    torch.manual_seed(0)
    net = mlp([3, 8, 2], activation=nn.ReLU)
    x = torch.randn(5, 3)
    before = net(x).detach()
    flat = flatten_parameters(net)
    assert flat.numel() == sum(p.numel() for p in net.parameters())
    torch.testing.assert_close(net(x), before, rtol=0, atol=0)
    with torch.no_grad():
        flat.mul_(0.0)                      # writing the vector writes the network
    assert all((p == 0).all() for p in net.parameters())


def test_backward_writes_the_flat_gradient_and_adam_moves_the_network():
    torch.manual_seed(0)
    reference, net = mlp([3, 8, 2], activation=nn.ReLU), mlp([3, 8, 2], activation=nn.ReLU)
    net.load_state_dict(reference.state_dict())
    flat = flatten_parameters(net)
    x = torch.randn(5, 3)
    for _ in range(2):                      # the second pass checks zero_grad keeps the views
        optimizer = torch.optim.SGD([flat], lr=0.1)
        optimizer.zero_grad(set_to_none=False)
        net(x).square().sum().backward()
        expected = torch.optim.SGD(reference.parameters(), lr=0.1)
        expected.zero_grad()
        reference(x).square().sum().backward()
        torch.testing.assert_close(flat.grad, torch.cat([p.grad.reshape(-1) for p in reference.parameters()]))
        optimizer.step()
        expected.step()
        for a, b in zip(net.parameters(), reference.parameters()):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e6])
def test_clip_grad_norm_agrees_with_torch(max_norm):
    torch.manual_seed(1)
    reference, net = mlp([4, 16, 3], activation=nn.ReLU), mlp([4, 16, 3], activation=nn.ReLU)
    net.load_state_dict(reference.state_dict())
    flat = flatten_parameters(net)
    x = torch.randn(7, 4)
    net(x).pow(3).sum().backward()
    reference(x).pow(3).sum().backward()
    norm = clip_grad_norm(flat, max_norm)
    expected_norm = nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
    torch.testing.assert_close(norm, expected_norm)
    torch.testing.assert_close(flat.grad, torch.cat([p.grad.reshape(-1) for p in reference.parameters()]))
    assert float(flat.grad.norm()) <= max_norm * (1 + 1e-5)


# ---------------------------------------------------------------- the squashed Gaussian and gSDE

import math  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from rlcourse.config import ConfigError  # noqa: E402
from rlcourse.pg import ppo  # noqa: E402
from rlcourse.pg.policies import GaussianPolicy, GSDEPolicy, load_policy, make_policy  # noqa: E402
from rlcourse.pg.rollout import Rollout  # noqa: E402
from rlcourse.run import UnsupportedSpaceError, torch_threads  # noqa: E402

LOW, HIGH = np.array([-1.0, 0.0]), np.array([3.0, 0.5])  # centres 1 and 0.25, half-widths 2 and 0.25


def squashed(log_std_init=0.0, obs_dim=3):
    torch.manual_seed(0)
    return GaussianPolicy(obs_dim, 2, (8,), log_std_init, LOW, HIGH, squash=True).double()


def normal_logpdf(x, mu, var):
    return -((x - mu) ** 2) / (2 * var) - 0.5 * np.log(2 * np.pi * var)


@pytest.mark.parametrize("log_std_init", [-1.0, 0.0, 1.5])
def test_squashed_log_prob_is_the_change_of_variables(log_std_init):
    """π(a | s) = N(u; μ, σ²) / Π_j h_j (1 − tanh² u_j), a = c + h tanh u: against the density written out in
    NumPy; and that density, integrated over intervals of a by the trapezoid rule, gives the probability
    the Gaussian puts on their preimages (its CDF), each dimension apart."""
    policy = squashed(log_std_init)
    obs = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    with torch.no_grad():
        dist = policy.distribution(obs)
        mu, sigma = dist.loc[0].numpy(), dist.scale[0].numpy()
        u = torch.tensor([[-0.7, 2.5], [0.0, -4.0], [3.0, 0.1]], dtype=torch.float64)
        logp = policy.log_prob(policy.distribution(obs.expand(3, 3)), u).numpy()
    c, h = (HIGH + LOW) / 2, (HIGH - LOW) / 2
    a = c + h * np.tanh(u.numpy())
    y = (a - c) / h
    brute = (normal_logpdf(np.arctanh(y), mu, sigma**2) - np.log(h * (1 - y**2))).sum(-1)
    np.testing.assert_allclose(logp, brute, rtol=1e-9, atol=1e-9)
    for j in range(2):  # ∫ π(a_j) da_j over [a1, a2] is P(u_j between the tanh-preimages of a1 and a2)
        for y1, y2 in [(-0.99, 0.99), (-0.5, 0.2), (0.9, 0.999)]:
            grid = c[j] + h[j] * np.linspace(y1, y2, 100_001)
            y = (grid - c[j]) / h[j]
            density = np.exp(normal_logpdf(np.arctanh(y), mu[j], sigma[j] ** 2)) / (h[j] * (1 - y**2))
            cdf = [0.5 * (1 + math.erf((math.atanh(v) - mu[j]) / (sigma[j] * math.sqrt(2)))) for v in (y1, y2)]
            assert np.trapezoid(density, grid) == pytest.approx(cdf[1] - cdf[0], rel=1e-6, abs=1e-9)


def test_squashed_log_prob_is_finite_far_in_the_tails():
    """Where tanh² u rounds to 1, log(1 − tanh² u) by the softplus form still equals 2 log 2 − 2|u| (+ e^{−2|u|})."""
    policy = squashed()
    u = torch.tensor([[30.0, -30.0], [80.0, -200.0]], dtype=torch.float32)
    dist = policy.float().distribution(torch.zeros(2, 3))
    logp = policy.log_prob(dist, u)
    assert torch.isfinite(logp).all()
    expected = dist.log_prob(u).sum(-1) - (torch.log(torch.tensor((HIGH - LOW) / 2)).sum() + (2 * math.log(2) - 2 * u.abs()).sum(-1))
    torch.testing.assert_close(logp, expected.float())


@pytest.mark.parametrize("log_std_init", [-2.0, 0.0, 1.5])
def test_squashed_entropy_estimate_is_unbiased(log_std_init):
    """The one-draw estimate, averaged over 200,000 draws, against H = −E[log π(a | s)] from 200,000 other
    samples (the same state); and the estimate is below the Gaussian's entropy: these bounds are narrow."""
    policy = squashed(log_std_init)
    obs = torch.tensor([[1.0, 0.5, -0.5]], dtype=torch.float64).expand(200_000, 3)
    with torch.no_grad():
        torch.manual_seed(1)
        dist = policy.distribution(obs)
        estimates = policy.entropy(dist)
        logp = policy.log_prob(dist, dist.sample())
    error = 4 * math.hypot(float(estimates.std()), float(logp.std())) / math.sqrt(len(obs))
    assert float(estimates.mean()) == pytest.approx(-float(logp.mean()), abs=error)
    assert error < 0.1 and float(estimates.mean()) < float(dist.entropy()[0].sum())


def test_squashed_actions_stay_inside_the_bounds_and_the_batch_keeps_u():
    """Pendulum's torque lies in [−2, 2]; with σ = e² the samples u mostly fall outside. The environment gets
    2 tanh(u), inside (in float32, tanh u rounds to ±1 for |u| > 9); the batch keeps u and log π at u."""
    with Rollout("Pendulum-v1", 2, seed=0) as rollout, torch_threads(1):
        sent, step = [], rollout.envs.step
        rollout.envs.step = lambda action: sent.append(np.array(action)) or step(action)
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space,
                             log_std_init=2.0, squash=True)
        batch = rollout.collect(policy, 100)
    sent = np.stack(sent)
    assert np.abs(sent).max() <= 2.0
    np.testing.assert_allclose(sent, 2.0 * np.tanh(batch.actions.numpy()), rtol=1e-6)
    assert (batch.actions.abs() > 2.0).float().mean() > 0.5
    with torch.no_grad():
        torch.testing.assert_close(batch.logp, policy.log_prob(policy.distribution(batch.obs), batch.actions))
    assert np.abs(policy.act(np.array([1.0, 0.0, 8.0]))).max() <= 2.0


def test_squash_and_gsde_need_a_bounded_box():
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(UnsupportedSpaceError, match="need flat Box action spaces, got Discrete"):
        make_policy("ppo", cartpole.observation_space, cartpole.action_space, use_sde=True)
    box = gym.spaces.Box(-np.inf, np.inf, (2,))
    with pytest.raises(UnsupportedSpaceError, match="squash_output needs finite action bounds"):
        make_policy("ppo", box, box, squash=True)
    with pytest.raises(ConfigError, match="sde_sample_freq = 0 is not allowed"):
        ppo.PPOConfig(use_sde=True, sde_sample_freq=0)
    with pytest.raises(ConfigError, match="use_sde"):
        ppo.PPOConfig(use_sde="yes")


def gsde(sample_freq=-1, squash=False):
    torch.manual_seed(0)
    return GSDEPolicy(3, 2, (5, 4), -0.5, LOW, HIGH, squash=squash, sde_sample_freq=sample_freq)


def test_gsde_log_prob_is_the_gaussian_with_variance_from_the_features():
    """Var[a_j | s] = Σ_i z_i(s)² σ_ij² (+ 10⁻⁶), z the mean network's last hidden layer: written out
    element by element in NumPy, and the density of that Gaussian."""
    policy = gsde()
    obs = torch.randn(6, 3)
    actions = torch.randn(6, 2)
    with torch.no_grad():
        logp = policy.log_prob(policy.distribution(obs), actions).double().numpy()
        z = torch.tanh(policy.mean[2](torch.tanh(policy.mean[0](obs)))).double().numpy()
        mu = policy.mean(obs).double().numpy()
        sigma = policy.log_std.exp().double().numpy()
    brute = np.zeros(6)
    for n in range(6):
        for j in range(2):
            var = sum(z[n, i] ** 2 * sigma[i, j] ** 2 for i in range(4)) + 1e-6
            brute[n] += normal_logpdf(float(actions[n, j]), mu[n, j], var)
    np.testing.assert_allclose(logp, brute, rtol=1e-5)


def test_gsde_samples_have_the_stated_variance():
    """u = μ(s) + z(s) θ_ε with θ_ε ~ N(0, σ²) drawn anew: over 100,000 draws for one state, u's mean and
    variance are the distribution's."""
    policy = gsde()
    obs = torch.randn(1, 3).expand(100_000, 3)
    with torch.no_grad():
        torch.manual_seed(2)
        policy.reset_noise(100_000)
        u, _ = policy.sample(obs)
        dist = policy.distribution(obs[:1])
    torch.testing.assert_close(u.mean(0), dist.loc[0], atol=4 * float(dist.scale.max()) / 300, rtol=0)
    torch.testing.assert_close(u.var(0), dist.scale[0] ** 2, rtol=0.03, atol=1e-6)


@pytest.mark.parametrize("sample_freq, draws", [(4, [0, 4, 8, 10, 14, 18]), (-1, [0, 10])])
def test_gsde_noise_is_drawn_at_the_stated_frequency(sample_freq, draws):
    """Two rollouts of 10 steps: θ_ε is drawn at the start of each and, with sde_sample_freq = 4, again
    after every 4 steps within it (the steps where u − μ(s) = z(s) θ_ε changes its θ_ε)."""
    with Rollout("Pendulum-v1", 2, seed=0) as rollout, torch_threads(1):
        policy = make_policy("ppo", rollout.single_observation_space, rollout.single_action_space,
                             use_sde=True, sde_sample_freq=sample_freq)
        matrices, sample = [], policy.sample
        policy.sample = lambda obs: (out := sample(obs), matrices.append(policy.exploration.clone()))[0]
        batches = [rollout.collect(policy, 10) for _ in range(2)]
    changed = [t for t in range(20) if t == 0 or not torch.equal(matrices[t], matrices[t - 1])]
    assert changed == draws
    with torch.no_grad():  # the noise a step added is z(s) θ_ε of the matrix recorded for it
        for t, (b, row) in enumerate([(b, row) for b in batches for row in range(10)]):
            z, dist = policy.features_and_distribution(b.obs[row])
            torch.testing.assert_close(b.actions[row] - dist.loc, torch.einsum("ni,nij->nj", z, matrices[t]))


def test_gsde_and_squashed_policies_save_and_load(tmp_path):
    """The spec carries the kind (gsde), squash and sde_sample_freq; the loaded policy has the same
    log-probabilities, entropies and greedy actions."""
    for i, policy in enumerate([squashed().float(), gsde(4, squash=True)]):
        policy.save(tmp_path / str(i))
        loaded = load_policy(tmp_path / str(i))
        assert type(loaded) is type(policy) and loaded.spec == policy.spec and loaded.squash
        obs, u = torch.randn(5, 3), torch.randn(5, 2)
        with torch.no_grad():
            torch.testing.assert_close(loaded.log_prob(loaded.distribution(obs), u),
                                       policy.log_prob(policy.distribution(obs), u))
            entropies = [(torch.manual_seed(3), p.entropy(p.distribution(obs)))[1] for p in (loaded, policy)]
            torch.testing.assert_close(*entropies)  # squashed: the same one-draw estimate
        np.testing.assert_array_equal(loaded.act(obs[0].numpy()), policy.act(obs[0].numpy()))
    assert gsde(4).spec["kind"] == "gsde" and gsde(4).spec["sde_sample_freq"] == 4
