"""Calling the student's functions from a graded test without running them in the test's process.

A graded test reads as if it called the student's code directly::

    td_control = student_module("rlcourse.tabular.td_control")

    def test_td_target():
        got = td_control.td_target(TDControlConfig(gamma=0.9), [1.0, 3.0], -1, 0.5, False, 0.1)
        assert got == pytest.approx(3.2)

When a student runs the public tests on their own machine, ``student_module`` is plain
``importlib.import_module``. When ``rlcourse grade`` runs them, the test runs in the trusted
*harness*, which never imports the student's package: ``td_control.td_target`` is a proxy
that sends the arguments to a *sandbox* process (``sandbox_worker.py``, isolated as
``isolation.py`` describes) and gets back plain data (``plain.py``). So:

* arguments go in by value (a pickle: harness to sandbox only), the student's function
  runs there, and what it returns comes back as exact built-in and NumPy/torch types;
* arguments it changes in place (a network after an optimiser step, a tensor, an array, a
  random generator, ``self`` of a method) are written back into the test's own objects;
* a returned tensor that carries a gradient stays differentiable: the test's ``backward``
  asks the sandbox for the vector–Jacobian product, so ``loss.backward()`` then
  ``logp.grad`` works as in-process;
* a function the test passes (``lambda v: H @ v``) runs in the harness when the student's
  code calls it, and a function the student's code returns (a closure) runs in the sandbox
  when the test calls it;
* classes whose methods the student writes (``ReplayBuffer``, ``TileCoder``, ``SharedAdam``)
  are built in the harness from the trusted code, and each such method runs in the sandbox
  on a copy of the object, whose state then comes back.

Each graded test gets a fresh sandbox process, forked from a *zygote* that imported the
student's package once, and a deadline; when the test ends, every process of the sandbox
but the zygote is killed.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import inspect
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Protocol

from rlcourse.assignments import isolation
from rlcourse.assignments.plain import Decoder, WireError, kind_of, restore
from rlcourse.assignments.sandbox_worker import rng_changed, rng_snapshot, rng_to_send

WORKER = Path(__file__).with_name("sandbox_worker.py")


class _Harness(Protocol):
    """What this module asks of :class:`rlcourse.assignments.harness.Harness` (which imports it)."""

    def session_for_test(self) -> Session: ...


HARNESS: _Harness | None = None  # the Harness when this process runs graded tests for `rlcourse grade`
LOCAL_MODULES: set[str] = set()  # the test files' modules: what they define stays in the harness
DECLARED: list[str] = []  # every module a test asked for, in order (the zygote imports them)


class SandboxError(RuntimeError):
    """The sandbox did not answer: it timed out, died, or sent something unreadable."""


class TimeLimit(SandboxError):
    pass


class StudentError(Exception):
    """Base of the exceptions raised when the student's code raised one (see :func:`_raise`)."""

    student_type = "Exception"
    student_traceback = ""


# --------------------------------------------------------------------------- what tests use


def student_module(name: str):
    """The student's module ``name``: the real one in-process, a proxy when grading."""
    if name not in DECLARED:
        DECLARED.append(name)
    if HARNESS is None:
        return importlib.import_module(name)
    return StudentModule(name)


def is_stub(function) -> bool:
    """True for a function whose body a release cut out (it raises "lesson N: write …")."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code is not None and any(
        isinstance(c, str) and c.startswith("lesson ") and ": write " in c for c in code.co_consts
    )


def _has_stubs(cls: type) -> bool:
    return any(
        is_stub(v) for klass in cls.__mro__ if klass.__module__.startswith("rlcourse.") for v in vars(klass).values()
    )


class StudentModule:
    """Functions of the student's module run in the sandbox; its other names are the trusted ones."""

    def __init__(self, name: str):
        self._name = name
        self._trusted = importlib.import_module(name)

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if not hasattr(self._trusted, attr):  # a name only the student's module has
            return StudentFunction(self._name, attr)
        value = getattr(self._trusted, attr)
        if isinstance(value, type):
            return StudentClass(self._name, value) if _has_stubs(value) else value
        module = getattr(value, "__module__", None) or ""
        if callable(value) and module.startswith("rlcourse.") and hasattr(value, "__qualname__"):
            return StudentFunction(module, value.__qualname__)
        return value

    def __repr__(self) -> str:
        return f"<the student's {self._name}, run in the sandbox>"


def repeat_call(n: int, function, *args, **kwargs) -> list:
    """``[function(*args, **kwargs) for _ in range(n)]``, in one trip to the sandbox when grading
    (for the tests that draw thousands of samples from one generator)."""
    if isinstance(function, StudentFunction):
        return function.repeat(n, *args, **kwargs)
    return [function(*args, **kwargs) for _ in range(n)]


class StudentFunction:
    def __init__(self, module: str, qualname: str, self_obj=None):
        self.module, self.qualname, self.self_obj = module, qualname, self_obj

    def __call__(self, *args, **kwargs):
        return current().call([self.module, self.qualname], args, kwargs, self_obj=self.self_obj)

    def repeat(self, n: int, *args, **kwargs) -> list:
        values = current().call([self.module, self.qualname], args, kwargs, self_obj=self.self_obj, repeat=n)
        if not isinstance(values, list) or len(values) != n:
            raise WireError(f"the sandbox sent back something other than {n} values")
        return values

    def __repr__(self) -> str:
        return f"<the student's {self.module}.{self.qualname}, run in the sandbox>"


class StudentClass:
    """Builds the object with the trusted constructor; its student-written methods run in the sandbox."""

    def __init__(self, module: str, cls: type):
        self._module, self._cls = module, cls

    def __call__(self, *args, **kwargs):
        if is_stub(getattr(self._cls.__init__, "__func__", self._cls.__init__)):
            raise TypeError(f"{self._cls.__name__}'s constructor is the student's: build it in the sandbox")
        return StudentObject(self._module, self._cls(*args, **kwargs))

    def __getattr__(self, attr: str):
        return getattr(self._cls, attr)


class StudentObject:
    """A trusted object whose methods defined in rlcourse run in the sandbox, on a copy."""

    __slots__ = ("_module", "_obj")

    def __init__(self, module: str, obj):
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str):
        obj = object.__getattribute__(self, "_obj")
        for klass in type(obj).__mro__:
            if name in vars(klass) and klass.__module__.startswith("rlcourse.") and not name.startswith("__"):
                if callable(vars(klass)[name]):
                    return StudentFunction(klass.__module__, f"{klass.__qualname__}.{name}", self_obj=self)
                break
        return getattr(obj, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(object.__getattribute__(self, "_obj"), name, value)

    def __len__(self) -> int:
        return len(object.__getattribute__(self, "_obj"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_obj"))


def current() -> Session:
    if HARNESS is None:
        raise RuntimeError("the student's code can only be called from inside a graded test")
    return HARNESS.session_for_test()


# --------------------------------------------------------------------------- sending arguments


_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), tuple, list, dict})


class _Pickler(pickle.Pickler):
    """Pickles the test's arguments for the sandbox: one copy of each tensor storage (so views
    and shared parameters stay shared), references to what stays in the harness (what the
    test files define), and Hugging Face models as their class, config and parameters."""

    def __init__(self, file, callbacks: dict):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.callbacks = callbacks
        self.storages: dict[int, int] = {}

    def persistent_id(self, obj):
        if type(obj) in _PLAIN_TYPES:
            return None
        if id(obj) in self.callbacks or stays_in_harness(obj):
            return ("harness", self.callbacks.setdefault(id(obj), (len(self.callbacks), obj))[0])
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        transformers = sys.modules.get("transformers")
        if transformers is not None and isinstance(obj, transformers.PreTrainedModel):
            # a Hugging Face model: rebuilt there from its class and config (it keeps state outside
            # its own attributes), then given these very parameters, so gradients match them
            return (
                "hf_model",
                type(obj).__module__,
                type(obj).__qualname__,
                obj.config.to_dict(),
                dict(obj.named_parameters(remove_duplicate=False)),
                dict(obj.named_buffers()),
                obj.training,
            )
        if isinstance(obj, torch.storage.TypedStorage):
            untyped = obj._untyped_storage
            key = self.storages.get(untyped._cdata)
            raw = None
            if key is None:
                key = self.storages[untyped._cdata] = len(self.storages)
                size = untyped.nbytes()
                raw = torch.empty(0, dtype=torch.uint8).set_(untyped, 0, (size,), (1,)).numpy().tobytes()
            return ("storage", key, str(obj.dtype).removeprefix("torch."), raw)
        return None


@dataclasses.dataclass
class Prepared:
    args: list
    kwargs: dict
    mutable: list  # (kind, harness object)
    grad_inputs: list  # harness tensors whose gradient the sandbox may be asked for
    callbacks: dict  # id → (index, harness callable)


class _Arguments:
    """The walk over a call's arguments: what may change (written back after the call), what
    carries a gradient (for ``vjp``), and the copies sent for tensors inside the test's graph."""

    def __init__(self):
        self.mutable, self.grads, self.grad_inputs, self.seen, self.leaves = [], [], [], set(), {}

    def tensor(self, t):
        if id(t) not in self.seen:
            self.seen.add(id(t))
            if t.grad_fn is None:
                self.mutable.append(("tensor", t))
                if t.grad is not None:
                    self.grads.append((t, t.grad))
            else:  # inside the test's graph: sent as a fresh leaf
                self.leaves[id(t)] = t.detach().clone().requires_grad_()
            if t.requires_grad:
                self.grad_inputs.append(t)
        return self.leaves.get(id(t), t)

    def stateful(self, kind: str, x):
        if id(x) not in self.seen:
            self.seen.add(id(x))
            self.mutable.append((kind, x))
            params = x.parameters() if kind == "module" else ()
            if kind == "optimizer":
                params = [p for group in x.param_groups for p in group["params"]]
            for p in params:
                self.tensor(p)
        return x

    def walk(self, x, depth: int = 0):
        """``x`` as it is sent: containers rebuilt around what they hold, the rest as it is."""
        import torch

        if depth > 20 or stays_in_harness(x):
            return x
        if isinstance(x, StudentObject):
            x = object.__getattribute__(x, "_obj")
            kind = kind_of(x)
            return self.stateful(kind if kind in ("module", "optimizer") else "object", x)
        if isinstance(x, torch.Tensor):
            return self.tensor(x)
        kind = kind_of(x)
        if kind is not None:
            return self.stateful(kind, x)
        return self.container(x, depth)

    def container(self, x, depth: int):
        if isinstance(x, list):
            return [self.walk(v, depth + 1) for v in x]
        if isinstance(x, tuple):
            items = [self.walk(v, depth + 1) for v in x]
            return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
        if isinstance(x, dict):
            return {k: self.walk(v, depth + 1) for k, v in x.items()}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            for field in dataclasses.fields(x):
                self.walk(getattr(x, field.name), depth + 1)
        return x


def _prepare(args, kwargs, self_obj, rng: dict | None) -> tuple[Prepared, bytes]:
    """Walk the arguments: note what may change and what carries a gradient; pickle them."""
    walk = _Arguments()
    payload = {
        "self": walk.walk(self_obj) if self_obj is not None else None,
        "args": [walk.walk(a) for a in args],
        "kwargs": {k: walk.walk(v) for k, v in kwargs.items()},
    }
    payload.update(
        mutable=walk.mutable,
        grads=walk.grads,
        rng=rng,
        grad_inputs=[walk.leaves.get(id(t), t) for t in walk.grad_inputs],
    )
    buffer = io.BytesIO()
    callbacks: dict[int, tuple[int, object]] = {}  # id(x) → (its handle, x): what stays in the harness
    try:
        _Pickler(buffer, callbacks).dump(payload)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise SandboxError(f"the test's arguments cannot be sent to the sandbox: {error}") from None
    return Prepared(args, kwargs, walk.mutable, walk.grad_inputs, callbacks), buffer.getvalue()


def stays_in_harness(x) -> bool:
    """True for what a test file defines (a function, a lambda, an object of its own class):
    the sandbox cannot import it, so it stays here and the sandbox calls back to use it."""
    if isinstance(x, (types.FunctionType, types.MethodType)):
        return getattr(x, "__module__", None) in LOCAL_MODULES
    return type(x).__module__ in LOCAL_MODULES


def _set_global_rng_state(state) -> None:
    """Set the harness's global generators to what the sandbox's became (checked plain data)."""
    import random

    import numpy as np
    import torch

    try:
        version, internal, gauss = state["random"]
        keys, pos, has_gauss, cached = state["numpy"]
        torch_state = state["torch"]
        if not (
            isinstance(internal, np.ndarray)
            and internal.dtype == np.uint32
            and isinstance(keys, np.ndarray)
            and keys.dtype == np.uint32
            and isinstance(torch_state, np.ndarray)
            and torch_state.dtype == np.uint8
        ):
            raise TypeError("unexpected types")
        random.setstate((version, tuple(internal.tolist()), gauss))
        np.random.set_state(("MT19937", keys, pos, has_gauss, cached))
        torch.random.set_rng_state(torch.from_numpy(torch_state))
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise WireError(f"the global random state: {error}") from None


# --------------------------------------------------------------------------- one test's sandbox


def _from_sandbox_function():
    import torch

    class FromSandbox(torch.autograd.Function):
        """A tensor the student's code returned with a gradient: backward asks the sandbox."""

        @staticmethod
        def forward(ctx, value, session, handle, *inputs):
            ctx.session, ctx.handle, ctx.shapes = session, handle, [t.shape for t in inputs]
            return value.clone()

        @staticmethod
        def backward(ctx, grad_output):
            grads = ctx.session.vjp(ctx.handle, grad_output)
            if len(grads) != len(ctx.shapes):
                raise WireError("the sandbox sent gradients for other inputs than it was given")
            for g, shape in zip(grads, ctx.shapes):
                if g is not None and tuple(g.shape) != tuple(shape):
                    raise WireError("the sandbox sent a gradient of the wrong shape")
            return (None, None, None, *grads)

    return FromSandbox


class Session:
    """One graded test's sandbox process: calls, callbacks, gradients, all before a deadline."""

    def __init__(self, sock: socket.socket, deadline: float, limit: float, slot: Slot, pid: int | None):
        self.sock, self.deadline, self.limit, self.slot, self.pid = sock, deadline, limit, slot, pid
        self.function = _from_sandbox_function()
        self.ended: SandboxError | None = None
        self.rng: tuple | None = None  # the global random state the sandbox has, as last synced

    # framing, with the deadline on every read
    def _send(self, header: dict, blob: bytes = b"") -> None:
        if self.ended is not None:
            raise self.ended
        self._wait_budget()
        try:
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            data = json.dumps(header).encode()
            self.sock.sendall(len(data).to_bytes(4, "big") + len(blob).to_bytes(8, "big") + data + blob)
        except TimeoutError:
            raise self._timed_out() from None
        except OSError:
            raise self._died() from None

    def _recv(self) -> tuple[dict, bytes]:
        prefix = self._read(12)
        size, blob_size = int.from_bytes(prefix[:4], "big"), int.from_bytes(prefix[4:], "big")
        if size > 1 << 30 or blob_size > self.slot.max_message:
            raise WireError(f"the sandbox sent a message of {size + blob_size} bytes, more than allowed")
        try:
            header = json.loads(self._read(size))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise WireError("the sandbox sent a message that is not JSON") from None
        if not isinstance(header, dict):
            raise WireError("the sandbox sent a message that is not an object")
        return header, self._read(blob_size)

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            self._wait_budget()
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            try:
                chunk = self.sock.recv(min(n, 1 << 22))
            except TimeoutError:
                raise self._timed_out() from None
            except OSError:
                chunk = b""
            if not chunk:
                raise self._died()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _wait_budget(self) -> None:
        if time.monotonic() >= self.deadline:
            raise self._timed_out()

    def _timed_out(self) -> SandboxError:
        if self.ended is None:
            self.ended = TimeLimit(f"timed out after {self.limit:g} s")
            self.slot.end_child()
        return self.ended

    def _died(self) -> SandboxError:
        if self.ended is None:
            code = self.slot.exit_code(self.pid)
            if code is None:
                how = "ended"
            elif code < 0:
                how = f"was killed by {signal.Signals(-code).name if -code in signal.valid_signals() else -code}"
            else:
                how = f"exited with status {code}"
            self.ended = SandboxError(f"the process running the student's code {how} before the call returned")
            self.slot.end_child()
        return self.ended

    # calls
    def call(self, target, args, kwargs, self_obj=None, repeat: int | None = None):
        rng = rng_snapshot()
        unchanged = self.rng is not None and not rng_changed(self.rng, rng)
        prepared, blob = _prepare(args, kwargs, self_obj, None if unchanged else rng_to_send(rng))
        self.rng = rng
        self._send({"op": "call", "target": target, "repeat": repeat}, blob)
        while True:
            header, blob = self._recv()
            op = header.get("op")
            if op == "callback":
                self._serve_callback(header, blob, prepared)
            elif op == "error":
                _raise(header)
            elif op == "result":
                return self._result(header, blob, prepared)
            else:
                raise WireError(f"the sandbox sent an unexpected message {str(op)[:40]!r}")

    def _decoder(self, blob: bytes, prepared: Prepared | None) -> Decoder:
        inputs = prepared.grad_inputs if prepared else []
        return Decoder(
            blob,
            make_tensor=lambda t, requires_grad, handle: self._tensor(t, requires_grad, handle, inputs),
            make_callable=lambda handle: RemoteFunction(self, handle),
            make_module=_module_from_sandbox,
        )

    def _tensor(self, values, requires_grad: bool, handle, inputs):
        if not requires_grad:
            return values
        if handle is not None and any(t.requires_grad for t in inputs):
            return self.function.apply(values, self, handle, *inputs)
        return values.requires_grad_() if values.is_floating_point() else values

    def _result(self, header: dict, blob: bytes, prepared: Prepared):
        decoder = self._decoder(blob, prepared)
        value = decoder.decode(header.get("value"))
        states = header.get("mutable")
        if not isinstance(states, list) or len(states) != len(prepared.mutable):
            raise WireError("the sandbox did not send back the state of every argument")
        plain = Decoder(blob)
        for (kind, x), state in zip(prepared.mutable, states):
            restore(kind, x, plain.decode(state))
        if header.get("rng") is not None:
            _set_global_rng_state(plain.decode(header["rng"]))
            self.rng = rng_snapshot()
        return value

    def _serve_callback(self, header: dict, blob: bytes, prepared: Prepared) -> None:
        """The student's code used an object of the test's: call it, or get or set an attribute."""
        objects = {i: x for i, x in prepared.callbacks.values()}
        index, action = header.get("id"), header.get("action")
        if index not in objects or action not in ("call", "getattr", "setattr"):
            raise WireError("the sandbox asked for an object it was not given")
        decoder = Decoder(blob)
        args, kwargs = decoder.decode(header.get("args")), decoder.decode(header.get("kwargs"))
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise WireError("a callback's arguments")
        name = header.get("name") if action != "call" else ""  # a call names no attribute
        if not isinstance(name, str) or name.startswith("_"):
            raise WireError("a callback's attribute name")
        target = objects[index]
        try:
            if action == "call":
                value = target(*args, **kwargs)
            elif action == "getattr":
                value = getattr(target, name)
            else:
                setattr(target, name, args[0] if args else None)
                value = None
        except Exception as error:
            self._send({"op": "raise", "message": f"{type(error).__name__}: {error}"[:500]})
            return
        buffer = io.BytesIO()
        if isinstance(value, types.MethodType) and value.__self__ is target:
            prepared.callbacks.setdefault(id(value), (len(prepared.callbacks), value))
        try:
            _Pickler(buffer, prepared.callbacks).dump(value.detach() if hasattr(value, "detach") else value)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            self._send({"op": "raise", "message": f"the test's value cannot be sent: {error}"[:500]})
            return
        self._send({"op": "reply"}, buffer.getvalue())

    def call_handle(self, handle: int, args, kwargs):
        return self.call(handle, args, kwargs)

    def vjp(self, handle: int, grad_output):
        buffer = io.BytesIO()
        _Pickler(buffer, {}).dump(grad_output.detach())
        self._send({"op": "vjp", "handle": handle}, buffer.getvalue())
        header, blob = self._recv()
        if header.get("op") == "error":
            _raise(header)
        grads = Decoder(blob).decode(header.get("value"))
        if header.get("op") != "grads" or not isinstance(grads, list):
            raise WireError("the sandbox's gradients")
        return [None if g is None else g.detach() for g in grads]


class RemoteFunction:
    """A function the student's code returned; calling it runs it in the sandbox."""

    def __init__(self, session: Session, handle: int):
        self.session, self.handle = session, handle

    def __call__(self, *args, **kwargs):
        return self.session.call_handle(self.handle, args, kwargs)


def _module_from_sandbox(name: str, spec, state: dict):
    """A network the student's code returned, rebuilt from its spec with the trusted classes."""
    from rlcourse.assignments.plain import Record
    from rlcourse.pg.policies import module_from_spec

    if spec is None:
        return Record(name, {"state_dict": state})
    try:
        module = module_from_spec(dict(spec))
        module.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WireError(f"the returned {name} cannot be rebuilt: {error}") from None
    return module


_BUILTIN_ERRORS = {
    name: value for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, Exception)
}


def _raise(header: dict):
    """Raise what the student's code raised: the built-in type of that name where there is one."""
    name = str(header.get("type", "Exception"))[:80]
    message = str(header.get("message", ""))[:2000]
    base = _BUILTIN_ERRORS.get(name, Exception)
    bases = (StudentError,) if base is Exception else (base, StudentError)
    error_type = type(
        name if name.isidentifier() else "Exception", bases, {"student_type": name, "__module__": "student"}
    )
    try:
        error = error_type(message)
    except Exception:
        error = StudentError(message)
    error.student_traceback = str(header.get("traceback", ""))[-4000:]
    raise error


# --------------------------------------------------------------------------- the zygote


class Slot:
    """One harness's sandbox: the zygote it forks tests from, and the test running now."""

    def __init__(
        self, level: str, uid: int | None, work: Path, package_dir: Path, memory_mb: int, hide: list[str], token: str
    ):
        self.level, self.uid, self.work, self.token = level, uid, work, token
        self.package_dir, self.memory_mb, self.hide = package_dir, memory_mb, hide
        self.max_message = max(memory_mb, 256) << 20
        self.process: subprocess.Popen[bytes] | None = None  # the zygote's launcher (or the zygote itself)
        self.control: socket.socket | None = None  # our end of the zygote's control socket
        self.zygote_pid: int | None = None
        self.problems: dict = {}
        self.child: socket.socket | None = None  # our end of the test's process

    def launch(self, modules: list[str]) -> None:
        """Start the zygote, which imports the student's ``modules``; :meth:`wait_ready` waits for it."""
        worker_dir = self.work / "worker"
        worker_dir.mkdir(parents=True, exist_ok=True)
        worker = worker_dir / WORKER.name
        shutil.copy(WORKER, worker)
        os.chmod(worker_dir, 0o755)
        os.chmod(worker, 0o644)
        home = self.work / "home"
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o711)
        if self.uid is not None:
            os.chown(home, self.uid, self.uid)
        os.chmod(home, 0o700)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log = open(self.work / "sandbox-output.txt", "wb")
        if self.level == "namespaces":
            assert self.uid is not None  # the namespaces level always runs as a sandbox uid
            config = isolation.launch_config(
                self.uid,
                str(self.work),
                str(self.package_dir),
                str(worker),
                theirs.fileno(),
                modules,
                self.memory_mb,
                self.hide,
                self.token,
            )
            config_path = self.work / "launch.json"
            config_path.write_text(json.dumps(config))
            os.chmod(config_path, 0o600)
            command = [sys.executable, "-I", isolation.__file__, str(config_path)]
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        else:
            command = [
                sys.executable,
                "-I",
                str(worker),
                str(theirs.fileno()),
                str(self.package_dir),
                json.dumps(modules),
            ]
            limits = [sys.executable, "-I", "-c", _LIMITED, str(self.memory_mb), str(int(self.uid is not None))]
            self.process = subprocess.Popen(
                limits + command,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
                env=isolation.sandbox_environment(str(home), self.uid, self.token),
                start_new_session=True,
                user=self.uid,  # None: as we are
                group=self.uid,
                extra_groups=[] if self.uid is not None else None,
            )
        theirs.close()
        log.close()
        self.control = ours

    def wait_ready(self, timeout: float) -> None:
        """Wait until the zygote has imported the student's modules (``timeout`` seconds at most)."""
        process, control = self._launched()
        control.settimeout(timeout)
        try:
            if self.level == "namespaces":
                assert process.stdout is not None  # the launcher's stdout is a pipe: it writes the zygote's pid
                self.zygote_pid = int(process.stdout.readline() or 0) or None
            else:
                self.zygote_pid = process.pid
            header = _read_frame(control)
        except (OSError, ValueError, EOFError) as error:
            output = (self.work / "sandbox-output.txt").read_bytes()[-600:].decode(errors="replace").strip()
            self.stop()
            last = output.splitlines()[-1] if output else ""
            raise SandboxError(f"the sandbox did not start ({error}): {last}") from None
        self.problems = header.get("problems", {}) if isinstance(header, dict) else {}
        control.settimeout(30)

    def _launched(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        if self.process is None or self.control is None:
            raise SandboxError("the sandbox was not launched")
        return self.process, self.control

    def new_child(self, deadline: float, limit: float) -> Session:
        """A fresh process for one test, forked from the zygote, to answer until ``deadline``."""
        if self.control is None or self.process is None or self.process.poll() is not None:
            raise SandboxError("the sandbox is gone (the student's code ended it)")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self.control, [b"f"], [theirs.fileno()])
            reply = _read_frame(self.control)
        except (OSError, EOFError, ValueError):
            ours.close()
            raise SandboxError("the sandbox does not answer (the student's code stopped it)") from None
        finally:
            theirs.close()
        pid = reply.get("pid") if isinstance(reply, dict) else None
        self.child = ours
        return Session(ours, deadline, limit, self, pid if isinstance(pid, int) else None)

    def exit_code(self, pid: int | None) -> int | None:
        """How the test's process ended, as the zygote saw it (for the message only)."""
        if self.control is None:
            return None
        for _ in range(20):
            try:
                self.control.sendall(b"s")
                reply = _read_frame(self.control)
            except (OSError, EOFError, ValueError, AttributeError):
                return None
            exits = {p: c for p, c in reply.get("exits", []) if isinstance(p, int) and isinstance(c, int)}
            if pid in exits:
                return exits[pid]
            time.sleep(0.025)
        return None

    def end_child(self) -> None:
        """Close the test's process and kill everything of the sandbox but the zygote."""
        if self.child is not None:
            self.child.close()
            self.child = None
        self.sweep(keep_zygote=True)

    def sweep(self, keep_zygote: bool) -> None:
        keep: frozenset[int] = frozenset({self.zygote_pid}) if keep_zygote and self.zygote_pid else frozenset()
        if self.uid is not None:
            isolation.kill_all(uid=self.uid, keep=keep)
        else:
            keep = keep | {self.process.pid} if keep_zygote and self.process else keep
            isolation.kill_all(ancestor=os.getpid(), token=self.token, keep=keep)

    def stop(self) -> None:
        if self.child is not None:
            self.child.close()
            self.child = None
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.zygote_pid and self.level != "none":
            try:
                os.kill(self.zygote_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.sweep(keep_zygote=False)
        except RuntimeError:
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.control is not None:
            self.control.close()
            self.control = None


# Sets the sandbox's limits, then execs the worker (no preexec_fn: unsafe beside threads).
_LIMITED = """import os, resource, sys
memory = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if sys.argv[2] == "1":
    resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))
os.execv(sys.argv[3], sys.argv[3:])
"""


def _read_frame(sock) -> dict:
    prefix = _read_n(sock, 12)
    size, blob = int.from_bytes(prefix[:4], "big"), int.from_bytes(prefix[4:], "big")
    header = json.loads(_read_n(sock, size))
    _read_n(sock, blob)
    return header


def _read_n(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the sandbox closed its socket")
        data += chunk
    return data
