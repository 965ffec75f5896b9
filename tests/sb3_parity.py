"""Helpers of the tests that run SB3's own code beside ours on the same steps (test_a2c, test_trpo):
a hand-made batch and an environment that replays it whatever the actions, the weights of an SB3
actor-critic copied into ours, and one stream of Gaussian noise for both libraries' action draws."""

import gymnasium as gym
import numpy as np
import torch

from rlcourse.pg.rollout import Batch


def make_batch(continuous: bool = False, T: int = 5, N: int = 3, seed: int = 0) -> Batch:
    """A hand-made batch with a terminated step, a truncated one, and an episode cut by the batch."""
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = torch.randn(T, N, 4, generator=g), torch.randn(T, N, 4, generator=g)
    actions = torch.randn(T, N, 2, generator=g) if continuous else torch.randint(0, 2, (T, N), generator=g)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[1, 0] = True        # env 0: an episode ends in a terminal state at t = 1
    truncated[2, 1] = True         # env 1: the time limit cuts an episode at t = 2
    terminated[3, 1] = True        # ... and the next one terminates right after
    # env 2 has no boundary: its episode is cut only by the end of the batch
    starts = torch.zeros(T, N, dtype=torch.bool)
    for t in range(T - 1):   # inside an episode, s_{t+1} is the next step's s_t; after its end a new one starts
        done = terminated[t] | truncated[t]
        obs[t + 1] = torch.where(done[:, None], obs[t + 1], next_obs[t])
        starts[t + 1] = done
    return Batch(obs, actions, torch.zeros(T, N), torch.rand(T, N, generator=g) * 2 - 0.5,
                 terminated, truncated, next_obs, starts, torch.zeros(T, N, dtype=torch.long))


class ScriptedEnv(gym.Env):
    """Replays a batch's steps whatever the actions: reset gives obs[t] at the current step t, step
    gives next_obs[t], the reward and the flags of step t. Actions are bounded at ±0.5, so SB3 clips."""

    def __init__(self, batch: Batch, i: int):
        self.batch, self.i, self.t = batch, i, 0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (batch.obs.shape[-1],), np.float32)
        self.action_space = gym.spaces.Box(-0.5, 0.5, (batch.actions.shape[-1],), np.float32)

    def reset(self, *, seed=None, options=None):
        return self.batch.obs[self.t, self.i].numpy(), {}

    def step(self, action):
        b, t, i = self.batch, self.t, self.i
        self.t += 1
        return (b.next_obs[t, i].numpy(), float(b.rewards[t, i]), bool(b.terminated[t, i]),
                bool(b.truncated[t, i]), {})


def layer_pairs(policy, critic, theirs) -> list:
    """(our layer, SB3's layer) for every linear layer of a two-hidden-layer Gaussian actor and critic."""
    extractor = theirs.mlp_extractor
    return [(policy.mean[0], extractor.policy_net[0]), (policy.mean[2], extractor.policy_net[2]),
            (policy.mean[4], theirs.action_net), (critic.v[0], extractor.value_net[0]),
            (critic.v[2], extractor.value_net[2]), (critic.v[4], theirs.value_net)]


def copy_weights(policy, critic, theirs) -> list:
    """SB3's weights and log σ into our networks; returns the layer pairs."""
    pairs = layer_pairs(policy, critic, theirs)
    with torch.no_grad():
        for ours, their in pairs:
            ours.weight.copy_(their.weight)
            ours.bias.copy_(their.bias)
        policy.log_std.copy_(theirs.log_std)
    return pairs


def assert_same_weights(pairs, policy, theirs, rtol=1e-5, atol=1e-6) -> None:
    for ours, their in pairs:
        torch.testing.assert_close(ours.weight, their.weight, rtol=rtol, atol=atol)
        torch.testing.assert_close(ours.bias, their.bias, rtol=rtol, atol=atol)
    torch.testing.assert_close(policy.log_std, theirs.log_std, rtol=rtol, atol=atol)


class SharedNoise:
    """Gaussian draws (``Normal.sample`` and ``rsample``: SB3 uses the one, we the other) taken from
    one of two generators seeded alike, chosen by ``use(library)``: each library sees the same stream
    of ε, whatever else draws from torch's global generator."""

    def __init__(self, seed: int):
        self.generators = {name: torch.Generator().manual_seed(seed) for name in ("sb3", "ours")}
        self.active = "sb3"

    def use(self, library: str) -> None:
        self.active = library

    def draw(self, dist, sample_shape=torch.Size()):
        eps = torch.randn(dist._extended_shape(sample_shape), generator=self.generators[self.active])
        return dist.loc + eps * dist.scale


def shared_noise(monkeypatch, seed: int = 0) -> SharedNoise:
    """Patch torch's Normal (for the test, through ``monkeypatch``) to draw from a new SharedNoise."""
    noise = SharedNoise(seed)
    normal = torch.distributions.Normal
    monkeypatch.setattr(normal, "rsample", lambda self, shape=torch.Size(): noise.draw(self, shape))
    monkeypatch.setattr(normal, "sample", lambda self, shape=torch.Size(): noise.draw(self, shape).detach())
    return noise
