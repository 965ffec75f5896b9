"""What the harness accepts from the sandbox: plain data, turned into exact types and checked.

The sandbox (``sandbox_worker.py``) sends JSON plus one buffer of raw bytes. Nothing here
executes anything from it: JSON gives exact ``None``/``bool``/``int``/``float``/``str``/
``list``; tagged objects (``{"__nd__": …}``, ``{"__tensor__": …}``, …) become NumPy arrays
read with :func:`numpy.frombuffer` from a fixed list of dtypes, tensors, tuples, dicts,
pandas frames, and read-only :class:`Record` objects for anything with attributes. A value
the student's code returned therefore cannot override ``__eq__``, patch ``pytest.approx``
or run code when the test looks at it. Anything malformed raises :class:`WireError`.

:func:`restore` writes the state of an argument the sandbox may have changed (a tensor
updated in place, a network after an optimiser step, a random generator that was drawn
from) back into the harness's own object, in place, after the same checks.
"""

from __future__ import annotations

import collections
import keyword
import math
import sys

import numpy as np

DTYPES = {
    np.dtype(t).str
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
    )
}
TORCH_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class WireError(ValueError):
    """The sandbox sent something that is not the plain data it should send."""


class Record:
    """A read-only object with the attributes the student's object had (as plain data)."""

    __slots__ = ("_fields", "_type")

    def __init__(self, type_name: str, fields: dict):
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(f"{object.__getattribute__(self, '_type')} has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("a value sent back from the sandbox is read-only")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{self._type}({inner})"


class Unsendable:
    """Stands for a value of a type that cannot cross as plain data; any use says which."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        object.__setattr__(self, "type_name", type_name)

    def __getattr__(self, name):
        raise WireError(f"the student's code returned a {self.type_name}, which cannot be sent back as plain data")

    def __repr__(self) -> str:
        return f"<unsendable {self.type_name}>"


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise WireError(what)


def array(spec, blob: bytes) -> np.ndarray:
    """An array from its ``[dtype, shape, offset, nbytes]`` in ``blob``, copied out."""
    _require(isinstance(spec, list) and len(spec) == 4, "an array needs dtype, shape, offset and size")
    dtype, shape, offset, nbytes = spec
    _require(isinstance(dtype, str) and dtype in DTYPES, f"unexpected dtype {dtype!r}")
    _require(isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape), f"bad shape {shape!r}")
    _require(
        type(offset) is int and type(nbytes) is int and offset >= 0 and offset + nbytes <= len(blob),
        "an array outside the message",
    )
    count = math.prod(shape)
    _require(count * np.dtype(dtype).itemsize == nbytes, "an array whose size does not match its shape")
    return np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape).copy()


class Decoder:
    """Turns one message of the sandbox into harness objects.

    ``make_tensor(values, requires_grad, handle)`` builds each tensor (the harness ties
    those that carry a gradient to the sandbox); ``make_callable(handle)`` and
    ``make_module(class_name, spec, state)`` build returned functions and networks.
    """

    def __init__(self, blob: bytes, make_tensor=None, make_callable=None, make_module=None):
        self.blob = blob
        self.make_tensor = make_tensor or (
            lambda t, requires_grad, handle: t.requires_grad_(requires_grad) if t.is_floating_point() else t
        )
        self.make_callable = make_callable
        self.make_module = make_module

    def decode(self, x, depth: int = 0):
        _require(depth < 60, "a structure nested too deeply")
        if x is None or type(x) in (bool, int, float, str):
            return x
        if type(x) is list:
            return [self.decode(v, depth + 1) for v in x]
        _require(type(x) is dict and len(x) == 1, f"an unexpected value {str(x)[:80]}")
        ((tag, body),) = x.items()
        handler = getattr(self, "tag" + tag.replace("__", "_"), None) if tag.startswith("__") else None
        if handler is None:
            raise WireError(f"an unknown tag {tag[:40]!r}")
        return handler(body, depth)

    def tag_nd_(self, body, depth):
        return array(body, self.blob)

    def tag_list_(self, body, depth):
        _require(type(body) is list, "a list")
        return [self.decode(v, depth + 1) for v in body]

    def tag_np_(self, body, depth):
        _require(type(body) is list and len(body) == 2 and body[0] in DTYPES, "a NumPy scalar")
        value = body[1]
        if type(value) is list:
            _require(len(value) == 2 and all(type(v) in (int, float) for v in value), "a complex scalar")
            value = complex(*value)
        _require(type(value) in (bool, int, float, complex), "a NumPy scalar's value")
        return np.dtype(body[0]).type(value)

    def tag_tensor_(self, body, depth):
        import torch

        _require(type(body) is list and len(body) == 4, "a tensor")
        spec, dtype, requires_grad, handle = body
        _require(dtype in TORCH_DTYPES and type(requires_grad) is bool, "a tensor's dtype")
        _require(handle is None or type(handle) is int, "a tensor's handle")
        values = torch.from_numpy(array(spec, self.blob))
        if dtype == "bfloat16":
            _require(values.dtype == torch.int16, "a bfloat16 tensor")
            values = values.view(torch.bfloat16)
        _require(str(values.dtype) == f"torch.{dtype}", "a tensor whose bytes do not match its dtype")
        return self.make_tensor(values, requires_grad, handle)

    def tag_tuple_(self, body, depth):
        _require(type(body) is list, "a tuple")
        return tuple(self.decode(v, depth + 1) for v in body)

    def tag_dict_(self, body, depth):
        _require(type(body) is list and all(type(p) is list and len(p) == 2 for p in body), "a dict")
        out = {}
        for key, value in body:
            key = self.decode(key, depth + 1)
            _require(key is None or type(key) in (bool, int, float, str, tuple), "a dict key")
            out[key] = self.decode(value, depth + 1)
        return out

    def tag_record_(self, body, depth):
        _require(type(body) is list and len(body) == 3 and type(body[0]) is str and type(body[2]) is bool, "a record")
        name, pairs, is_tuple = body
        _require(
            type(pairs) is list and all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in pairs),
            "a record's fields",
        )
        fields = {key: self.decode(value, depth + 1) for key, value in pairs}
        if is_tuple:
            names = [
                k if k.isidentifier() and not keyword.iskeyword(k) and not k.startswith("_") else f"f{i}"
                for i, k in enumerate(fields)
            ]
            type_name = name if name.isidentifier() and not keyword.iskeyword(name) else "Record"
            return collections.namedtuple(type_name, names)(*fields.values())
        return Record(name[:100], fields)

    def tag_frame_(self, body, depth):
        import pandas as pd

        _require(type(body) is list and len(body) == 3 and type(body[2]) is bool, "a data frame")
        columns, index, is_series = body
        _require(type(columns) is list and all(type(c) is list and len(c) == 2 for c in columns), "its columns")
        data = {}
        for name, values in columns:
            name = self.decode(name, depth + 1)
            _require(name is None or type(name) in (bool, int, float, str), "a column name")
            data[name] = self.decode(values, depth + 1)
        frame = pd.DataFrame(data, index=self.decode(index, depth + 1))
        return frame.iloc[:, 0] if is_series and len(frame.columns) == 1 else frame

    def tag_callable_(self, body, depth):
        _require(type(body) is int and self.make_callable is not None, "a function")
        return self.make_callable(body)

    def tag_module_(self, body, depth):
        _require(type(body) is list and len(body) == 3 and type(body[0]) is str, "a network")
        name, spec, state = body
        spec = self.decode(spec, depth + 1)
        _require(spec is None or type(spec) is dict, "a network's spec")
        _require(type(state) is dict, "a network's state")
        tensors = {k: self.decode(v, depth + 1) for k, v in state.items()}
        _require(all(type(k) is str for k in tensors), "a network's parameter names")
        if self.make_module is not None:
            return self.make_module(name, spec, tensors)
        return Record(name[:100], {"spec": spec, "state_dict": tensors})

    def tag_rng_(self, body, depth):
        state = self.decode(body, depth + 1)
        _require(type(state) is dict and state.get("bit_generator") in BIT_GENERATORS, "a random generator")
        generator = getattr(np.random, state["bit_generator"])()
        try:
            generator.state = state
        except (TypeError, ValueError, KeyError) as error:
            raise WireError(f"a random generator's state: {error}") from None
        return np.random.Generator(generator)

    def tag_unsendable_(self, body, depth):
        return Unsendable(str(body)[:100])

    def tag_state_(self, body, depth):
        _require(type(body) is list and len(body) == 2 and type(body[0]) is str, "an attribute's state")
        return StateOf(body[0], self.decode(body[1], depth + 1))


class StateOf:
    """The state of one attribute of an object, to be restored into the harness's attribute."""

    def __init__(self, kind: str, state):
        self.kind, self.state = kind, state


# --------------------------------------------------------------------------- restoring arguments


def kind_of(x) -> str | None:
    """Which kind of state ``x`` has, for the sandbox to send back after a call."""
    torch = sys.modules.get("torch")
    if isinstance(x, np.ndarray):
        return "array"
    if isinstance(x, np.random.Generator):
        return "rng"
    if torch is not None:
        if isinstance(x, torch.Tensor):
            return "tensor"
        if isinstance(x, torch.Generator):
            return "torch_rng"
        if isinstance(x, torch.nn.Module):
            return "module"
        if isinstance(x, torch.optim.Optimizer):
            return "optimizer"
    import random

    if isinstance(x, random.Random):
        return "random"
    return None


def restore(kind: str, x, state) -> None:
    """Write ``state`` (decoded) into the harness's ``x``, in place, only where it changed."""
    {
        "tensor": _restore_tensor,
        "array": _restore_array,
        "rng": _restore_rng,
        "torch_rng": _restore_torch_rng,
        "random": _restore_random,
        "module": _restore_module,
        "optimizer": _restore_optimizer,
        "object": _restore_object,
    }[kind](x, state)


def _same_layout(old, new, what: str) -> None:
    _require(
        tuple(new.shape) == tuple(old.shape) and new.dtype == old.dtype,
        f"{what} came back with shape {tuple(new.shape)} and dtype {new.dtype}; "
        f"it went in as {tuple(old.shape)}, {old.dtype} (the code changed it in a way the test cannot follow)",
    )


def _restore_tensor(x, state) -> None:
    import torch

    _require(type(state) is dict and set(state) == {"data", "grad"}, "a tensor's state")
    data, grad = state["data"], state["grad"]
    _require(isinstance(data, torch.Tensor) and (grad is None or isinstance(grad, torch.Tensor)), "a tensor's state")
    if x.grad_fn is not None:  # sent as a copy; a tensor inside a graph is not written back
        return
    data = data.detach()
    _same_layout(x, data, "a tensor argument")
    if not torch.equal(x.detach(), data):
        with torch.no_grad():
            x.copy_(data)
    if grad is None:
        if x.grad is not None:
            x.grad = None
        return
    grad = grad.detach()
    if x.grad is not None and tuple(x.grad.shape) == tuple(grad.shape) and x.grad.dtype == grad.dtype:
        if not torch.equal(x.grad, grad):
            x.grad.copy_(grad)
    else:
        _same_layout(x, grad, "a gradient")
        x.grad = grad


def _restore_array(x, state) -> None:
    _require(isinstance(state, np.ndarray), "an array's state")
    _same_layout(x, state, "an array argument")
    if not np.array_equal(x, state, equal_nan=x.dtype.kind in "fc"):
        x[...] = state


def _restore_rng(x, state) -> None:
    _require(
        type(state) is dict and state.get("bit_generator") == x.bit_generator.state["bit_generator"],
        "a random generator's state",
    )
    try:
        x.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as error:
        raise WireError(f"a random generator's state: {error}") from None


def _restore_torch_rng(x, state) -> None:
    import torch

    _require(isinstance(state, torch.Tensor) and state.dtype == torch.uint8, "a torch generator's state")
    x.set_state(state.detach())


def _restore_random(x, state) -> None:
    _require(type(state) is tuple and len(state) == 3 and type(state[1]) is tuple, "a random.Random state")
    x.setstate(state)


def _restore_module(x, state) -> None:
    _require(type(state) is dict and {"params", "buffers", "training"} <= set(state), "a network's state")
    params, buffers = state["params"], state["buffers"]
    _require(type(params) is dict and type(buffers) is dict and type(state["training"]) is bool, "a network's state")
    own = dict(x.named_parameters())
    _require(set(params) == set(own), "the network came back with other parameters than it went in with")
    for name, p in own.items():
        _restore_tensor(p, params[name])
    for name, b in x.named_buffers():
        if name in buffers:
            _restore_tensor(b, {"data": buffers[name], "grad": None})
    if x.training != state["training"]:
        x.train(state["training"])


def _restore_optimizer(x, state) -> None:
    import torch

    _require(
        type(state) is dict and type(state.get("groups")) is list and type(state.get("state")) is list,
        "an optimiser's state",
    )
    params = [p for group in x.param_groups for p in group["params"]]
    _require(
        len(state["state"]) == len(params) and len(state["groups"]) == len(x.param_groups),
        "the optimiser came back with other parameters than it went in with",
    )
    for group, new in zip(x.param_groups, state["groups"]):
        _require(type(new) is dict, "an optimiser's hyperparameters")
        for key, value in new.items():
            if key != "params" and type(key) is str:
                group[key] = value
    for p, new in zip(params, state["state"]):
        _require(type(new) is dict, "an optimiser's per-parameter state")
        old = x.state[p]
        for key, value in new.items():
            current = old.get(key)
            if (
                isinstance(value, torch.Tensor)
                and isinstance(current, torch.Tensor)
                and current.shape == value.shape
                and current.dtype == value.dtype
            ):
                if not torch.equal(current, value):
                    with torch.no_grad():
                        current.copy_(value)
            else:
                old[key] = value


def _restore_object(x, state) -> None:
    _require(type(state) is dict and all(type(k) is str for k in state), "an object's attributes")
    for name, value in state.items():
        current = getattr(x, name, None)
        if isinstance(value, StateOf):
            if kind_of(current) == value.kind:
                restore(value.kind, current, value.state)
                continue
            value = value.state["data"] if value.kind == "tensor" and type(value.state) is dict else value.state
        setattr(x, name, value)
