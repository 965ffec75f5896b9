"""The one program that runs inside the grading sandbox: it imports the student's package and
calls the student's functions for the trusted harness (see ``sandbox.py``).

It is a file on its own, importing nothing of rlcourse, because the grader copies it into
the sandbox beside the student's package and runs it there as the sandbox user. Nothing
here is trusted once the student's code is imported: the student can change any of it.
What keeps grading honest is on the other side: the harness reads only *plain data* from
this process (JSON plus raw numeric buffers, never a pickle) and checks every value itself.

Two modes:

* ``zygote``: import numpy, torch and the student's modules once, then fork one fresh
  child per graded test on request (the harness passes the child its socket);
* ``serve``: the child's loop — ``call`` a student function with the arguments the harness
  pickled, send back the result and the new state of every argument it may have changed;
  ``vjp``: the vector–Jacobian product of a returned tensor, for the harness's ``backward``.

The wire format (both ways): a 12-byte prefix (header length, 4 bytes; blob length, 8
bytes, big-endian), a JSON header, then a blob. Harness to sandbox, the blob is a pickle;
sandbox to harness, it holds the bytes of every array, which the JSON names by
``{"__nd__": [dtype, shape, offset, nbytes]}``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import socket
import struct
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREFIX = struct.Struct(">IQ")
MAX_DEPTH = 40


# --------------------------------------------------------------------------- framing


def send(sock, header: dict, blob: bytes = b"") -> None:
    data = json.dumps(header).encode()
    sock.sendall(PREFIX.pack(len(data), len(blob)) + data + blob)


def recv_exactly(sock, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 22))
        if not chunk:
            raise EOFError("the harness closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(sock) -> tuple:
    size, blob_size = PREFIX.unpack(recv_exactly(sock, PREFIX.size))
    return json.loads(recv_exactly(sock, size)), recv_exactly(sock, blob_size)


# --------------------------------------------------------------------------- harness → sandbox


class HarnessObject:
    """An object of the test's own (a function, or an instance of a class a test file defines,
    which the sandbox cannot import): it stays in the harness, and using it here asks there."""

    def __init__(self, channel, index: int):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_index", index)

    def __call__(self, *args, **kwargs):
        return self._channel.callback(self._index, "call", None, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._channel.callback(self._index, "getattr", name, (), {})

    def __setattr__(self, name, value):
        self._channel.callback(self._index, "setattr", name, (value,), {})


class Unpickler(pickle.Unpickler):
    """Rebuilds the harness's pickle: tensor storages shared by reference, callbacks."""

    def __init__(self, data: bytes, channel):
        super().__init__(io.BytesIO(data))
        self.channel = channel
        self.storages: dict[int, torch.UntypedStorage] = {}

    def persistent_load(self, pid):
        kind = pid[0]
        if kind == "storage":
            import torch

            _, key, dtype, raw = pid
            if key not in self.storages:
                self.storages[key] = (
                    torch.frombuffer(bytearray(raw), dtype=torch.uint8).untyped_storage()
                    if raw
                    else torch.UntypedStorage(0)
                )
            return torch.storage.TypedStorage(
                wrap_storage=self.storages[key], dtype=getattr(torch, dtype), _internal=True
            )
        if kind == "harness":
            return HarnessObject(self.channel, pid[1])
        if kind == "hf_model":
            return hf_model(*pid[1:])
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def hf_model(module: str, qualname: str, config: dict, params: dict, buffers: dict, training: bool):
    """A Hugging Face model built from its class and config, holding the harness's parameters."""
    __import__(module)
    cls: Any = sys.modules[module]  # the module, then the class it names
    for part in qualname.split("."):
        cls = getattr(cls, part)
    model = cls(cls.config_class.from_dict(config))
    for table, values in (("_parameters", params), ("_buffers", buffers)):
        for name, value in values.items():
            owner, _, leaf = name.rpartition(".")
            getattr(model.get_submodule(owner), table)[leaf] = value
    return model.train(training)


# --------------------------------------------------------------------------- sandbox → harness


class Encoder:
    """Turns what the student's code returned into JSON and raw buffers.

    Tensors that carry a gradient are kept in ``handles`` so the harness can ask for
    vector–Jacobian products later; so are returned functions, which the harness can call.
    """

    def __init__(self, handles: dict, grad_inputs: list):
        self.blob = bytearray()
        self.handles, self.grad_inputs = handles, grad_inputs

    def array(self, a) -> list:

        a = a if a.flags.c_contiguous else a.copy(order="C")
        offset = len(self.blob)
        self.blob += a.tobytes()
        return [a.dtype.str, list(a.shape), offset, a.nbytes]

    def handle(self, value) -> int:
        index = len(self.handles) + 1
        self.handles[index] = (value, self.grad_inputs)
        return index

    def encode(self, x, depth: int = 0):
        """``x`` as JSON-ready data: plain values as they are, the rest tagged (see the harness's plain.py)."""
        if depth > MAX_DEPTH:
            return {"__unsendable__": "a structure nested too deeply"}
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, float)):
            return int(x) if isinstance(x, int) else float(x)
        for encoder in (self.numpy_value, self.torch_value, self.container, self.frame):
            encoded = encoder(x, depth)
            if encoded is not None:
                return encoded
        return self.other(x, depth)

    def numpy_value(self, x, depth: int):
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        if isinstance(x, numpy.ndarray):
            if x.dtype.kind not in "biufc":
                return {"__list__": [self.encode(v, depth + 1) for v in x.tolist()]}
            return {"__nd__": self.array(x)}
        if isinstance(x, numpy.generic):
            if x.dtype.kind not in "biufc":
                return {"__unsendable__": f"numpy {x.dtype}"}
            return {"__np__": [x.dtype.str, x.item() if x.dtype.kind != "c" else [x.real, x.imag]]}
        if isinstance(x, numpy.random.Generator):
            return {"__rng__": self.encode(x.bit_generator.state, depth + 1)}
        return None

    def torch_value(self, x, depth: int):
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        if isinstance(x, torch.Tensor):
            return self.tensor(x)
        if isinstance(x, torch.nn.Module):
            state = {name: self.tensor(t.detach()) for name, t in x.state_dict().items()}
            spec = getattr(x, "spec", None)
            spec = self.encode(spec, depth + 1) if isinstance(spec, dict) else None
            return {"__module__": [type(x).__name__, spec, state]}
        return None

    def container(self, x, depth: int):
        if isinstance(x, (list, tuple)):
            items = [self.encode(v, depth + 1) for v in x]
            if isinstance(x, tuple) and hasattr(x, "_fields"):
                return {"__record__": [type(x).__name__, [[f, v] for f, v in zip(x._fields, items)], True]}
            return {"__tuple__": items} if isinstance(x, tuple) else items
        if isinstance(x, dict):
            return {"__dict__": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in x.items()]}
        return None

    def frame(self, x, depth: int):
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(x, (pandas.DataFrame, pandas.Series)):
            return None
        frame = x.to_frame() if isinstance(x, pandas.Series) else x
        columns = [
            [self.encode(name, depth + 1), self.encode(frame[name].to_numpy(), depth + 1)] for name in frame.columns
        ]
        return {"__frame__": [columns, self.encode(frame.index.to_numpy(), depth + 1), isinstance(x, pandas.Series)]}

    def other(self, x, depth: int):
        """A function becomes a handle the harness can call; an object, a record of its attributes."""
        if callable(x) and not isinstance(x, type):
            return {"__callable__": self.handle(x)}
        fields = getattr(x, "__dict__", None)
        if not isinstance(fields, dict):
            return {"__unsendable__": type(x).__name__}
        pairs = [
            [k, self.encode(v, depth + 1)] for k, v in fields.items() if isinstance(k, str) and not k.startswith("__")
        ]
        return {"__record__": [type(x).__name__, pairs, False]}

    def tensor(self, t) -> dict:
        import torch

        if t.layout != torch.strided or t.is_quantized or t.dtype not in TORCH_DTYPES:
            return {"__unsendable__": f"a {t.dtype} tensor with layout {t.layout}"}
        values = t.detach().cpu()
        bf16 = values.dtype == torch.bfloat16
        if bf16:
            values = values.view(torch.int16)
        handle = self.handle(t) if t.requires_grad else None
        return {
            "__tensor__": [
                self.array(values.contiguous().numpy()),
                str(t.dtype).removeprefix("torch."),
                bool(t.requires_grad),
                handle,
            ]
        }


TORCH_DTYPES: set[torch.dtype] = set()


def _torch_dtypes():
    import torch

    TORCH_DTYPES.update(
        {
            torch.bool,
            torch.uint8,
            torch.int8,
            torch.int16,
            torch.int32,
            torch.int64,
            torch.float16,
            torch.bfloat16,
            torch.float32,
            torch.float64,
        }
    )


# --------------------------------------------------------------------------- what a call changed


def state_of(kind: str, x, enc: Encoder):
    """The state of an argument after the call, as plain data (the harness restores it in place)."""
    import numpy as np

    if kind == "tensor":
        return {
            "__dict__": [
                ["data", enc.tensor(x.detach())],
                ["grad", None if x.grad is None else enc.tensor(x.grad.detach())],
            ]
        }
    if kind == "array":
        return enc.encode(np.asarray(x))
    if kind == "rng":
        return enc.encode(x.bit_generator.state)
    if kind == "torch_rng":
        return enc.tensor(x.get_state())
    if kind == "random":
        return enc.encode(x.getstate())
    if kind == "module":
        params = [[name, state_of("tensor", p, enc)] for name, p in x.named_parameters()]
        buffers = [[name, enc.tensor(b.detach())] for name, b in x.named_buffers()]
        return {
            "__dict__": [
                ["params", {"__dict__": params}],
                ["buffers", {"__dict__": buffers}],
                ["training", bool(x.training)],
            ]
        }
    if kind == "optimizer":
        params = [p for group in x.param_groups for p in group["params"]]
        groups = [
            {"__dict__": [[k, enc.encode(v)] for k, v in group.items() if k != "params"]} for group in x.param_groups
        ]
        state = [enc.encode(dict(x.state.get(p, {}))) for p in params]
        return {"__dict__": [["groups", groups], ["state", state]]}
    if kind == "object":
        attrs = []
        for name, value in vars(x).items():
            inner = _kind_of(value)
            attrs.append([name, {"__state__": [inner, state_of(inner, value, enc)]} if inner else enc.encode(value)])
        return {"__dict__": attrs}
    return None


def _kind_of(value):
    numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return "array"
    if numpy is not None and isinstance(value, numpy.random.Generator):
        return "rng"
    if torch is not None and isinstance(value, torch.Tensor):
        return "tensor"
    return None


def rng_snapshot() -> tuple:
    """Python's, NumPy's and torch's global generator states, as they come (cheap to compare)."""
    import random

    import numpy as np
    import torch

    return random.getstate(), np.random.get_state(), torch.random.get_rng_state()


def rng_changed(before: tuple, after: tuple) -> bool:
    import numpy as np
    import torch

    return (
        before[0] != after[0]
        or before[1][2:] != after[1][2:]
        or not np.array_equal(before[1][1], after[1][1])
        or not torch.equal(before[2], after[2])
    )


def rng_to_send(snapshot: tuple) -> dict:
    """A snapshot as arrays (the harness's format)."""
    import numpy as np

    (version, internal, gauss), (_, keys, pos, has_gauss, cached), torch_state = snapshot
    return {
        "random": [version, np.asarray(internal, dtype=np.uint32), gauss],
        "numpy": [np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)],
        "torch": torch_state.numpy(),
    }


def set_global_rng_state(state: dict) -> None:
    import random

    import numpy as np
    import torch

    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.random.set_rng_state(torch.as_tensor(np.asarray(state["torch"], dtype=np.uint8)))


# --------------------------------------------------------------------------- the child's loop


class Channel:
    def __init__(self, sock):
        self.sock, self.handles = sock, {}

    def callback(self, index: int, action: str, name, args, kwargs):
        enc = Encoder(self.handles, [])
        header = {
            "op": "callback",
            "id": index,
            "action": action,
            "name": name,
            "args": enc.encode(list(args)),
            "kwargs": enc.encode(kwargs),
        }
        send(self.sock, header, bytes(enc.blob))
        reply, blob = recv(self.sock)
        if reply.get("op") == "raise":
            raise RuntimeError(f"the test's object raised: {reply.get('message')}")
        return Unpickler(blob, self).load()

    def serve(self) -> None:
        while True:
            try:
                header, blob = recv(self.sock)
            except EOFError:
                return
            try:
                if header["op"] == "call":
                    self.call(header, blob)
                elif header["op"] == "vjp":
                    self.vjp(header, blob)
                else:
                    raise ValueError(f"unknown request {header['op']!r}")
            except BaseException as error:  # everything goes back as an error reply
                if isinstance(error, (EOFError, BrokenPipeError)):
                    return
                send(
                    self.sock,
                    {
                        "op": "error",
                        "type": type(error).__name__,
                        "message": _text(error),
                        "traceback": _student_traceback(error),
                    },
                )

    def call(self, header: dict, blob: bytes) -> None:
        import torch

        payload = Unpickler(blob, self).load()
        for tensor, grad in payload["grads"]:
            tensor.grad = grad
        if payload["rng"] is not None:
            set_global_rng_state(payload["rng"])
        target = header["target"]
        if isinstance(target, int):
            function = self.handles[target][0]
        else:
            module_name, qualname = target
            __import__(module_name)
            function = sys.modules[module_name]
            for part in qualname.split("."):
                function = getattr(function, part)
        args, kwargs = payload["args"], payload["kwargs"]
        if payload.get("self") is not None:
            args = [payload["self"], *args]
        before = rng_snapshot()
        with torch.enable_grad():
            if header.get("repeat") is None:
                value = function(*args, **kwargs)
            else:
                value = [function(*args, **kwargs) for _ in range(int(header["repeat"]))]
        enc = Encoder(self.handles, payload["grad_inputs"])
        reply = {
            "op": "result",
            "value": enc.encode(value),
            "mutable": [state_of(kind, x, enc) for kind, x in payload["mutable"]],
        }
        after = rng_snapshot()
        reply["rng"] = enc.encode(rng_to_send(after)) if rng_changed(before, after) else None
        send(self.sock, reply, bytes(enc.blob))

    def vjp(self, header: dict, blob: bytes) -> None:
        import torch

        output, inputs = self.handles[header["handle"]]
        grad_output = Unpickler(blob, self).load()
        wanted = [i for i, t in enumerate(inputs) if t.requires_grad]
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if wanted and output.requires_grad:
            found = torch.autograd.grad(
                [output], [inputs[i] for i in wanted], [grad_output], retain_graph=True, allow_unused=True
            )
            for i, g in zip(wanted, found):
                grads[i] = g
        enc = Encoder(self.handles, [])
        send(
            self.sock,
            {"op": "grads", "value": [None if g is None else enc.tensor(g.detach()) for g in grads]},
            bytes(enc.blob),
        )


def _text(error: BaseException) -> str:
    try:
        return str(error)[:2000]
    except Exception:
        return "(the error's message could not be read)"


def _student_traceback(error: BaseException) -> str:
    try:
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        return "".join(lines)[-4000:]
    except Exception:
        return ""


# --------------------------------------------------------------------------- zygote


def zygote(control_fd: int, package_dir: str, modules: list) -> None:
    """Import once, then fork one child per test; each child serves one socket and exits.

    Requests on the control socket: ``f`` with a socket passed alongside (fork a child to
    serve it; reply with its pid) and ``s`` (reply with the exit codes of finished children).
    """
    sys.path.insert(0, package_dir)
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    _torch_dtypes()
    _warm_up(torch)
    control = socket.socket(fileno=control_fd)
    exits: dict[int, int] = {}  # pid → exit code of each finished child
    signal.signal(signal.SIGCHLD, lambda *_: _reap(exits))
    problems = {}
    for name in modules:
        try:
            __import__(name)
        except BaseException as error:  # a module that does not import fails the tests that call it
            problems[name] = f"{type(error).__name__}: {_text(error)}"
    send(control, {"op": "ready", "problems": problems})
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        if message == b"s":
            _reap(exits)
            send(control, {"op": "exits", "exits": [[pid, code] for pid, code in exits.items()]})
            continue
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            Channel(socket.socket(fileno=fds[0])).serve()
            os._exit(0)
        os.close(fds[0])
        send(control, {"op": "forked", "pid": pid})


def _warm_up(torch) -> None:
    """Run once what torch imports lazily on first use (autograd, optimiser steps: seconds),
    so that each forked child starts warm."""
    p = torch.nn.Parameter(torch.zeros(2))
    (p * 2.0).sum().backward()
    for optimizer in (torch.optim.SGD([p], lr=0.1), torch.optim.Adam([p], lr=0.1)):
        optimizer.step()
        optimizer.zero_grad()


def _reap(exits: dict) -> None:
    try:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                return
            exits[pid] = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        pass


if __name__ == "__main__":
    # python sandbox_worker.py CONTROL_FD PACKAGE_DIR MODULES_JSON
    zygote(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))
