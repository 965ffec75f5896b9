"""Where student code runs: an unprivileged user, a private view of the file system, no way out.

Three levels, the best the machine allows (``mode()`` picks it; ``--isolation`` overrides):

* ``namespaces`` (the grader runs as root and the kernel lets it make namespaces: CI,
  a lecturer's server, most containers run with ``--privileged`` or ``CAP_SYS_ADMIN``):
  the sandbox gets its own mount, PID, network, IPC and UTS namespaces. Its root is an
  empty tmpfs into which only the system (``/usr``, ``/etc``, Python and its packages)
  is bound read-only, plus the student's package (read-only) and a scratch folder; the
  tests, the hidden tests, the grader's files and any rlcourse checkout are simply not
  there. It runs as a dedicated uid with no groups, no network, and resource limits; it
  is PID 1 of its namespace, so when it dies every process it started dies with it.
* ``user`` (root, but no namespaces, as in a default Docker container): the same uid,
  limits and scratch folder; the tests live in folders only root can read. Anything
  else on the machine that every user may read, the sandbox may read too.
* ``none`` (not root: a lecturer's laptop): the sandbox is a child process of yours, in
  its own session, with the same limits; student code can read what you can read.
  :func:`notice` says so in one line.

Run as a script (``python -I isolation.py CONFIG``) this file is the root-owned launcher of
the ``namespaces`` level: it makes the namespaces, builds the file-system view, drops to the
sandbox uid and execs the sandbox worker. It imports nothing but the standard library.
"""

import ctypes
import json
import os
import resource
import signal
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
FIRST_UID = 61_200  # sandbox uids from here on (or from $RLCOURSE_SANDBOX_FIRST_UID), each checked to be nobody's
MODES = ("namespaces", "user", "none")
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/sys")
DEVICES = ("null", "zero", "full", "random", "urandom")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def prctl(option: int, value: int) -> None:
    _check(_libc().prctl(option, value, 0, 0, 0), "prctl")


def harden_trusted_process(subreaper: bool) -> None:
    """For the grader and each harness: no core dumps, and not readable through /proc by the
    sandbox when it runs as the same user (``none``); for a harness, also a subreaper, so the
    processes the student's code double-forks away stay its descendants until it kills them."""
    try:
        prctl(PR_SET_DUMPABLE, 0)
        if subreaper:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):
        pass


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies."""
    try:
        prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------- which level


def mode(requested: str = "auto") -> str:
    """The isolation level to use: ``requested``, or the best this machine allows."""
    if requested != "auto":
        if requested not in MODES:
            raise ValueError(f"isolation = {requested!r} is not allowed: it must be auto or one of {', '.join(MODES)}")
        if requested != "none" and os.geteuid() != 0:
            raise PermissionError(f"isolation {requested!r} needs the grader to run as root")
        return requested
    if os.geteuid() != 0:
        return "none"
    probe = subprocess.run([sys.executable, "-I", __file__, "--probe"], capture_output=True, timeout=60)
    return "namespaces" if probe.returncode == 0 else "user"


def notice(level: str) -> str:
    """One line for the grader to print about the isolation it has."""
    if level == "namespaces":
        return "isolation: student code runs as its own user in private namespaces (no tests, no network)"
    if level == "user":
        return (
            "isolation: student code runs as its own user, but without namespaces it can read whatever "
            "every user may read on this machine"
        )
    return (
        "isolation: none — the grader is not root, so student code runs as you and is not isolated "
        "(grade as root, or in the autograder bundle, for grades that count)"
    )


def first_uid() -> int:
    """Where the sandbox uids start: ``$RLCOURSE_SANDBOX_FIRST_UID``, else FIRST_UID."""
    return int(os.environ.get("RLCOURSE_SANDBOX_FIRST_UID", FIRST_UID))


def claim_uid() -> tuple[int, int]:
    """A sandbox uid that no account, no running process and no other grading uses.

    Returns the uid and a file descriptor holding its lock: keep it open while the uid is in
    use (two gradings on one machine then never share a uid, nor kill each other's sandbox).
    """
    import fcntl
    import pwd

    locks = Path("/tmp/rlcourse-sandbox-uids")
    locks.mkdir(mode=0o700, exist_ok=True)
    first = first_uid()
    for uid in range(first, first + 1000):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        fd = os.open(locks / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not processes_of(uid):
            return uid, fd
        os.close(fd)
    raise RuntimeError("no free sandbox uid")


def check_python_for(uid: int) -> None:
    """Fail in one line if the sandbox uid cannot run this Python (``user`` level: no private
    file-system view, so Python must lie where every user may run it)."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", "import numpy, torch"],
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=120,
        )
        ok = done.returncode == 0
    except OSError:
        ok = False
    if not ok:
        raise PermissionError(
            f"the sandbox user (uid {uid}) cannot run {sys.executable} with numpy and torch "
            f"(a folder on its path is closed to other users?): grade with --isolation "
            f"namespaces or none, or install Python where every user may run it"
        )


# --------------------------------------------------------------------------- killing


def process_table() -> dict[int, tuple[int, list[int]]]:
    """pid → (parent pid, [real uid, effective uid]) of every live process (zombies left out)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if fields["State"].split()[0] in ("Z", "X"):  # already dead, waiting to be reaped
                continue
            table[int(entry.name)] = (int(fields["PPid"]), [int(v) for v in fields["Uid"].split()[:2]])
        except (OSError, KeyError, ValueError):
            continue
    return table


def _descends_from(pid: int, ancestor: int, table: dict) -> bool:
    parent, steps = table[pid][0], 0
    while parent and parent != ancestor and parent in table and steps < 4096:
        parent, steps = table[parent][0], steps + 1
    return parent == ancestor


def _has_token(pid: int, token: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"RLCOURSE_SANDBOX={token}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def processes_of(
    uid: int | None = None, ancestor: int | None = None, token: str | None = None, keep: frozenset = frozenset()
) -> list[int]:
    """PIDs of the processes of ``uid`` (real or effective), below ``ancestor``, or whose
    environment holds ``RLCOURSE_SANDBOX=token``; never this process or those in ``keep``."""
    table = process_table()
    found = {
        pid
        for pid, (_, uids) in table.items()
        if (uid is not None and uid in uids)
        or (ancestor is not None and _descends_from(pid, ancestor, table))
        or (token is not None and _has_token(pid, token))
    }
    return sorted(pid for pid in found if pid not in keep and pid != os.getpid())


def kill_all(
    uid: int | None = None, ancestor: int | None = None, token: str | None = None, keep: frozenset = frozenset()
) -> None:
    """Stop, then kill, every process :func:`processes_of` finds: stopped processes cannot
    fork, so the sweep ends even when the student's code forks in a loop."""
    for _ in range(200):
        found = processes_of(uid, ancestor, token, keep)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
        if set(processes_of(uid, ancestor, token, keep)) <= set(found):
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)
    raise RuntimeError(f"could not kill the sandbox's processes: {processes_of(uid, ancestor, token, keep)[:10]}")


# --------------------------------------------------------------------------- starting the sandbox


def sandbox_limits(memory_mb: int, nproc: bool) -> None:
    """Address space, file size, no core files; and, for a sandbox uid of its own, a cap on processes."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))


def python_dirs() -> list[str]:
    """The folders Python and its installed packages live in (never the current directory)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    dirs.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    dirs.update(site.getsitepackages())
    return sorted(d for d in dirs if d and os.path.isdir(d))


def launch_config(
    uid: int,
    work: str,
    package_dir: str,
    worker: str,
    control_fd: int,
    modules: list,
    memory_mb: int,
    hide: list,
    token: str,
) -> dict:
    return {
        "uid": uid,
        "token": token,
        "work": work,
        "package_dir": package_dir,
        "worker": worker,
        "control_fd": control_fd,
        "modules": modules,
        "memory_mb": memory_mb,
        "hide": hide,
        "python": os.path.realpath(sys.executable),
        "python_dirs": python_dirs(),
    }


def sandbox_environment(work: str, uid: int | None, token: str) -> dict:
    env = {
        "RLCOURSE_SANDBOX": token,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": work,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SDL_VIDEODRIVER": "dummy",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    if uid is not None:
        env.update(USER=f"sandbox{uid}", LOGNAME=f"sandbox{uid}")
    return env


def _bytes(value):
    return value.encode() if isinstance(value, str) else value


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    args = (_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data))
    _check(_libc().mount(*args), f"mount {target}")


def _bind(root: str, path: str, writable: bool = False) -> None:
    target = root + path
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    if not writable:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _build_root(config: dict) -> str:
    """An empty tmpfs holding only what the sandbox may see; returns its path."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = os.path.join(config["work"], ".root")
    os.makedirs(root, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64m")
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            _bind(root, path)
    for path in config["python_dirs"]:
        if not os.path.isdir(root + path) or not os.listdir(root + path):
            _bind(root, path)
    for path in config["hide"]:  # e.g. an installed (not editable) reference package
        if os.path.exists(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=000,size=4k")
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        _bind(root, f"/dev/{name}", writable=True)
    for path in ("/tmp", "/dev/shm"):  # before the binds below, which may lie under /tmp
        os.makedirs(root + path, exist_ok=True)
        _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=512m")
    _bind(root, config["package_dir"])
    _bind(root, os.path.dirname(config["worker"]))
    _bind(root, os.path.join(config["work"], "home"), writable=True)
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV)
    return root


def _launch(config: dict) -> None:
    """The launcher: namespaces, then a child that becomes the sandbox's PID 1."""
    die_with_parent(signal.SIGTERM)
    _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    pid = os.fork()
    if pid == 0:
        try:
            _become_sandbox(config)
        except BaseException as error:
            print(f"rlcourse sandbox launcher: {error}", file=sys.stderr, flush=True)
        os._exit(70)

    def kill_sandbox(*_: object) -> None:
        os.kill(pid, signal.SIGKILL)
        os._exit(1)

    signal.signal(signal.SIGTERM, kill_sandbox)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _become_sandbox(config: dict) -> None:
    root = _build_root(config)
    os.chroot(root)
    home = os.path.join(config["work"], "home")
    os.chdir(home)
    sandbox_limits(config["memory_mb"], nproc=True)
    os.setgroups([])
    os.setgid(config["uid"])
    os.setuid(config["uid"])
    die_with_parent(signal.SIGKILL)
    os.execve(
        config["python"],
        [
            config["python"],
            "-I",
            config["worker"],
            str(config["control_fd"]),
            config["package_dir"],
            json.dumps(config["modules"]),
        ],
        sandbox_environment(home, config["uid"], config["token"]),
    )


def _probe() -> None:
    """Exit 0 if this machine lets root make the namespaces and mounts the launcher needs."""
    _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m")


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        try:
            _probe()
        except OSError:
            sys.exit(1)
    else:
        _launch(json.loads(Path(sys.argv[1]).read_text()))
