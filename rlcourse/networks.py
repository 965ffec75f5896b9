"""Networks and their parameters: the ground floor every deep lesson stands on.

* :func:`mlp` — linear layers with an activation between them, orthogonally initialised;
* :func:`flatten_parameters` — one contiguous parameter vector (and gradient) for a
  network, so that an optimiser step or a gradient clip is one operation, not one per tensor;
* :func:`flat_grad` — that vector's gradient;
* :func:`clip_grad_norm` — scale the flat gradient to a maximum norm;
* :func:`save_module` / :func:`read_module` — a network's weights and the ``spec`` that says
  how to rebuild it, written atomically; each lesson rebuilds its own kinds from them;
* :func:`owned` — a state dict whose tensors own their memory (for checkpoints).

It imports nothing of rlcourse above ``run``'s file helpers.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlcourse.run import atomic_write


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, output_gain: float = 1.0) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them.

    Orthogonal initialisation (gain √2 for hidden layers, ``output_gain`` for the last),
    zero biases: the usual choice for policy-gradient networks.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=output_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear] if last else [linear, activation()]
    return nn.Sequential(*layers)


def flatten_parameters(module: nn.Module) -> nn.Parameter:
    """Move ``module``'s parameters and their gradients into one contiguous vector each;
    return the vector as a single Parameter whose ``.grad`` is the flat gradient.

    The module's own parameters become views of it, so the module works as before, and
    backward writes into the flat gradient. Zero it with ``zero_grad(set_to_none=False)``
    (setting it to None would cut the views loose). For networks as small as ours the cost
    of an optimiser step or a gradient clip is per tensor, not per number, so one tensor
    instead of six makes both several times cheaper.
    """
    params = list(module.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    start = 0
    for p in params:
        p.data = flat.data[start : start + p.numel()].view_as(p)
        p.grad = flat.grad[start : start + p.numel()].view_as(p)
        start += p.numel()
    return flat


def flat_grad(flat: nn.Parameter) -> torch.Tensor:
    """The flat gradient :func:`flatten_parameters` gave ``flat``: backward writes into it."""
    if flat.grad is None:
        raise ValueError("this parameter has no gradient vector: flatten_parameters gives it one")
    return flat.grad


def clip_grad_norm(flat: nn.Parameter, max_norm: float) -> torch.Tensor:
    """Scale the gradient g of a flat parameter to g · min(1, max_norm / ‖g‖); return ‖g‖."""
    grad = flat_grad(flat)
    norm = torch.linalg.vector_norm(grad)
    grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def save_module(module: nn.Module, directory: str | Path, name: str = "policy") -> None:
    """Write ``name.pt`` (weights) and ``name.json`` (``module.spec``: what to rebuild) atomically."""
    directory = Path(directory)
    atomic_write(directory / f"{name}.pt", lambda f: torch.save(module.state_dict(), f))
    atomic_write(directory / f"{name}.json", lambda f: f.write(json.dumps(module.spec) + "\n"), mode="w")


def read_module(directory: str | Path, name: str = "policy") -> tuple[dict, dict]:
    """The ``spec`` and the weights :func:`save_module` wrote (``hidden`` back as a tuple)."""
    directory = Path(directory)
    spec = dict(json.loads((directory / f"{name}.json").read_text()))
    if "hidden" in spec:
        spec["hidden"] = tuple(spec["hidden"])
    return spec, torch.load(directory / f"{name}.pt", weights_only=True)


def owned(state: dict) -> dict:
    """A state dict that owns its tensors (ours are often views of one flat parameter vector)."""
    return {name: tensor.clone() for name, tensor in state.items()}
