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
