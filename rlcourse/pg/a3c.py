r"""A3C: asynchronous advantage actor-critic, W worker processes and one shared model (lesson 5).

Mnih et al. (2016), *Asynchronous Methods for Deep Reinforcement Learning*, ICML,
Algorithm S3. The loss is A2C's, term for term: each worker computes
:func:`rlcourse.pg.a2c.a2c_loss` on the T steps it just collected,

.. math::

    L = L_\pi + c_V\, L_V - c_H\, H, \qquad
    L_\pi = -\frac{1}{|B|}\sum_{t} \log\pi_\theta(a_t \mid s_t)\,\hat A_t, \quad
    L_V = \frac{1}{|B|}\sum_t \big(V_\phi(s_t) - y_t\big)^2,

with the n-step target :math:`y_t = \sum_{k=0}^{m-1}\gamma^k r_{t+k} + \gamma^m V_\phi(s_{t+m})`
(the paper's "forward view": the first step of a segment gets T rewards, the last one 1)
and :math:`\hat A_t = y_t - V_\phi(s_t)`, or GAE(γ, λ) (``advantage="gae"``); both come from
:mod:`rlcourse.pg.psi` through :func:`rlcourse.pg.a2c.advantages`. What differs from A2C is
only *how the step is taken*: no batch over environments waits for the slowest one;
every worker applies its own gradient to the shared parameters as soon as it has it.

Worker i (of W), pseudocode::

    seed torch with seed + 1000·i; its own Rollout(env, num_envs, seed + 1000·i)
    repeat:
        claim T·N steps of the global budget (stop when it is spent)   (shared counter)
        θ', φ' ← θ, φ                                   sync the local copy with the shared model
        collect T steps with π_θ'                        (Rollout.collect; env state kept)
        g ← ∇ a2c_loss(π_θ', V_φ', batch), its norm clipped to max_grad_norm
        shared Adam step on (θ, φ) with g                (no lock: Hogwild, as the paper)
        every log_interval updates: send episode returns and loss means to the parent

The parent, pseudocode::

    build π_θ, V_φ with seed; put (θ, φ) and Adam's statistics into shared memory
    start W workers (spawn), wait until all are ready, then let them go
    loop: read the workers' messages → log rows; at each multiple of callback_every
          (and checkpoint_every) env steps the workers pause, and the parent calls
          callback(env_steps, π_θ) and/or writes a checkpoint, then lets them go on
    stop at the budget, on Ctrl-C ("interrupted") or when a worker fails (WorkerError)

**Shared Adam.** The paper found that sharing the optimiser's statistics between workers
works better than keeping one per worker (its "shared RMSProp"). :class:`SharedAdam` is
Adam (Kingma & Ba, 2015) whose state, the step count t and the moment estimates
:math:`m` and :math:`v`, is allocated when it is built and moved into shared memory, so
every worker's step updates the same numbers:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
    \theta \leftarrow \theta - \frac{\alpha}{1-\beta_1^t}\,\frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}

The updates are lock-free, as in the paper (Hogwild!, Recht et al. 2011): two workers can
write to θ, m or v at the same moment, and one's write can be lost. With ``lock=True`` a
lock around the step makes each step whole.

The shared model is *one* flat vector (:func:`rlcourse.networks.flatten_parameters` on
the policy and the critic together) in shared memory: syncing a local copy is one
``copy_`` and a worker's gradient is one tensor.

**What is deterministic.** With ``workers=1`` a run is reproducible bit for bit: same
seed, same log, same evaluations, same final policy (on the same machine, CPU). With
W ≥ 2 it is not: which worker claims which steps, and whose gradient lands on which
version of θ, is decided by the operating system's scheduler, so the log, the
evaluations and the policy differ from run to run. What stays fixed: each worker's
environment seeds (seed + 1000·i) and sampling seed, the initial model, the number of
environment steps (exactly ``steps``), one ``callback`` per multiple of
``callback_every``, within one update's steps after it (the workers are paused then, so an
evaluation sees one consistent model), and the evaluation of a saved policy.

Defaults for CartPole-v1, where they come from: the paper's γ 0.99, entropy weight
β = 0.01 and shared optimiser statistics; 20 steps per update (t_max) and the whole
gradient's norm clipped at 40, as in OpenAI's universe-starter-agent (``a3c.py``:
``num_local_steps = 20``, ``tf.clip_by_global_norm(grads, 40.0)``) and ikostrikov's
pytorch-a3c (``--num-steps 20``); vf_coef 0.5 and separate [64, 64] tanh networks as
Stable-Baselines3's A2C. Adam's step size is raised from those repositories' 1e-4 (Atari,
16 workers) to 1e-3, the top of the 7e-4 to 1e-3 range usual for CartPole: measured, with
two workers this reaches 475 within 50,000 steps, where t_max 5 and a clip at 0.5 (A2C's
settings) left the policy swinging between 105 and 500 for 300,000 steps
(``benchmarks/README.md``).

Gaussian policies take A2C's options (:mod:`rlcourse.pg.policies`): ``squash_output`` sends
c + h tanh(u) to the environment instead of clip(u), and ``use_sde`` uses gSDE, each worker
drawing its own noise matrices from its own seed at the start of every T-step batch
(``Rollout.collect``, after the local copy is synced, so σ is the shared model's) and every
``sde_sample_freq`` steps within it.

Running it: :func:`train`'s ``callback(env_steps, policy)`` is called with the shared
policy while the workers are paused, once the first update that reaches each multiple of
``callback_every`` env steps is applied (and at the end); with ``out`` set, a checkpoint
is written the same way every ``checkpoint_every`` steps, and ``resume=True`` goes on
from the last one: the shared networks, Adam's statistics, the log and the step count
come back, while each worker starts fresh episodes (seeded anew), so a resumed run is
not the same, bit for bit, as one never stopped (the workers' interleaving never is).
The time the workers spend paused and their start-up are left out of
``timing["steps_per_second"]``. Ctrl-C (or a KeyboardInterrupt in the callback) stops the
workers and returns what was learned with ``status="interrupted"``. A worker that raises
stops the run: the other workers are stopped and :class:`WorkerError` names the worker
and its error. Workers left running ``join_timeout`` seconds after being told to stop
are killed.
"""

from __future__ import annotations

import dataclasses
import math
import queue as queue_module
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from rlcourse.config import ConfigError, check_choice, check_range
from rlcourse.networks import clip_grad_norm, flat_grad, flatten_parameters
from rlcourse.pg.a2c import A2CConfig, a2c_loss, make_critic
from rlcourse.pg.objective import explained_variance
from rlcourse.pg.policies import check_gaussian_options, gaussian_options, make_policy
from rlcourse.pg.rollout import Rollout, load_training_state, training_state
from rlcourse.run import IterationRecord, NonFiniteError, Result, check_count, seed_everything, torch_threads

LOG_COLUMNS = [
    "worker",
    "update",
    "env_steps",
    "return",
    "episodes",
    "length",
    "policy_loss",
    "value_loss",
    "entropy",
    "explained_variance",
    "grad_norm",
]
SEED_STRIDE = 1000  # worker i seeds its environments and sampling with seed + 1000·i


@dataclasses.dataclass(frozen=True)
class A3CConfig:
    workers: int = 2  # W worker processes
    num_envs: int = 1  # environments per worker (the paper: 1)
    n_steps: int = 20  # T steps per update, the paper's t_max
    advantage: str = "n-step"  # Ψ: "n-step" return − V (the paper), or "gae"
    gamma: float = 0.99  # discount γ
    gae_lambda: float = 1.0  # λ of GAE (advantage="gae")
    lr: float = 1e-3  # Adam step size α
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam's β1, β2
    adam_eps: float = 1e-5  # Adam's ε
    vf_coef: float = 0.5  # c_V, weight of the critic's loss
    ent_coef: float = 0.01  # c_H, weight of the entropy bonus (the paper's β)
    max_grad_norm: float = 40.0  # clip each worker's gradient to this norm
    normalize_advantages: bool = False
    shared: bool = False  # one trunk with two heads instead of two networks
    hidden: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0  # Gaussian policies: initial log σ
    squash_output: bool = False  # Gaussian policies: the environment gets c + h tanh(u), not clip(u) (policies.py)
    use_sde: bool = False  # Gaussian policies: gSDE's state-dependent noise z(s) θ_ε (rlcourse.pg.policies.GSDEPolicy)
    sde_sample_freq: int = -1  # gSDE: steps between draws of θ_ε (-1: once per rollout)
    lock: bool = False  # a lock around each shared Adam step (the paper: none)
    log_interval: int = 100  # updates of one worker per log row

    def __post_init__(self):
        check_range(self, "workers", 1, integer=True)
        if (
            not isinstance(self.adam_betas, tuple)
            or len(self.adam_betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.adam_betas)
        ):
            raise ConfigError(
                f"A3CConfig.adam_betas = {self.adam_betas!r} must be two numbers in [0, 1), e.g. (0.9, 0.999)"
            )
        check_range(self, "adam_eps", 0, None, low_open=True)
        check_choice(self, "lock", (True, False))
        check_range(self, "log_interval", 1, integer=True)
        check_gaussian_options(self)
        try:  # the fields A2C shares are checked by A2CConfig, under this class's name
            self.a2c()
        except ConfigError as err:
            raise ConfigError(str(err).replace("A2CConfig.", "A3CConfig.")) from None

    def a2c(self) -> A2CConfig:
        """The A2C config with this run's loss and network settings: what ``a2c_loss`` and
        ``make_critic`` read."""
        return A2CConfig(
            advantage=self.advantage,
            num_envs=self.num_envs,
            n_steps=self.n_steps,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            lr=self.lr,
            vf_coef=self.vf_coef,
            ent_coef=self.ent_coef,
            max_grad_norm=self.max_grad_norm,
            normalize_advantages=self.normalize_advantages,
            shared=self.shared,
            hidden=self.hidden,
            log_std_init=self.log_std_init,
        )


class SharedAdam(torch.optim.Optimizer):
    """Adam whose state (t, m, v) lives in shared memory from the start, so that every
    process holding this optimiser updates the same statistics. Same numbers as
    ``torch.optim.Adam`` (no weight decay, no AMSGrad) in a single process."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32).share_memory_(),
                    "exp_avg": torch.zeros_like(p.data).share_memory_(),
                    "exp_avg_sq": torch.zeros_like(p.data).share_memory_(),
                }

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                ### BEGIN SOLUTION
                state["step"] += 1
                t = state["step"].item()
                state["exp_avg"].lerp_(p.grad, 1 - beta1)  # m
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)  # v
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**t))
                ### END SOLUTION


class WorkerError(RuntimeError):
    """A worker process failed; ``rank`` says which, the message carries its traceback."""

    def __init__(self, rank: int, summary: str, details: str = ""):
        self.rank = rank
        super().__init__(f"A3C worker {rank} failed: {summary}" + (f"\n\n{details}" if details else ""))


def _networks(observation_space, action_space, config: A3CConfig) -> tuple[nn.Module, nn.Module, nn.Parameter]:
    """Policy and critic whose parameters are views of one flat vector (returned third)."""
    policy = make_policy(
        "a3c", observation_space, action_space, config.hidden, config.log_std_init, **gaussian_options(config)
    )
    critic = make_critic(policy, observation_space.shape[0], config.a2c())
    return policy, critic, flatten_parameters(nn.ModuleDict({"policy": policy, "critic": critic}))


def worker(
    rank: int,
    env_spec,
    env_kwargs: dict,
    config: A3CConfig,
    seed: int,
    steps: int,
    flat: nn.Parameter,
    optimizer: SharedAdam,
    shared: dict,
    messages,
) -> None:
    """One A3C worker (a spawned process): collect, compute the gradient, step the shared model.

    ``shared`` holds the run's synchronisation: ``claimed`` and ``applied`` (env steps
    handed out and whose updates are done; ``claimed``'s lock guards all three counters),
    ``pause_at`` (the parent wants the workers still once ``claimed`` reaches it),
    ``go`` (set once every worker is ready), ``stop`` and ``step_lock``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    rollout = None
    try:
        if env_spec.id not in gym.registry:  # registered at run time in the parent (tests, notebooks)
            gym.registry[env_spec.id] = env_spec
        seed_everything(seed + SEED_STRIDE * rank)
        rollout = Rollout(env_spec.id, config.num_envs, seed + SEED_STRIDE * rank, env_kwargs)
        policy, critic, local = _networks(rollout.single_observation_space, rollout.single_action_space, config)
        messages.put(("ready", rank))
        shared["go"].wait()
        if _work(rank, rollout, policy, critic, local, flat, optimizer, shared, messages, config, steps):
            messages.put(("done", rank))
    except KeyboardInterrupt:
        messages.put(("interrupt", rank))
    except BaseException as exc:
        messages.put(("error", rank, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        if rollout is not None:
            rollout.close()


def _work(rank, rollout, policy, critic, local, flat, optimizer, shared, messages, config, steps) -> bool:
    """The worker's loop: claim steps, collect, step the shared model, report; False if a loss
    turned non-finite (reported to the parent)."""
    claimed, applied = shared["claimed"], shared["applied"]
    loss_config = config.a2c()
    window, returns, lengths, updates = [], [], [], 0
    while not shared["stop"].is_set():
        claim = _claim(shared, steps, config)
        if claim is None:
            break
        T, end = claim
        if T == 0:  # the parent is evaluating or checkpointing
            time.sleep(0.0005)
            continue
        local.data.copy_(flat.data)  # θ', φ' ← θ, φ
        batch = rollout.collect(policy, T)
        terms = a2c_loss(policy, critic, batch, loss_config)
        if not torch.isfinite(terms.loss):
            messages.put(("nonfinite", rank, end))
            return False
        grad_norm = _step_shared(local, flat, optimizer, terms.loss, config, shared)
        with claimed.get_lock():
            applied.value += batch.size
            everything_applied = applied.value == claimed.value >= shared["pause_at"].value
            now = applied.value
        updates += 1
        window.append(
            (
                terms.policy_loss.item(),
                terms.value_loss.item(),
                terms.entropy.item(),
                grad_norm.item(),
                terms.values,
                terms.targets,
            )
        )
        returns += batch.episode_returns
        lengths += batch.episode_lengths
        if updates % config.log_interval == 0:
            messages.put(("log", _row(rank, updates, now, window, returns, lengths)))
            window, returns, lengths = [], [], []
        if everything_applied:
            messages.put(("pause", now))
    if window:
        messages.put(("log", _row(rank, updates, applied.value, window, returns, lengths)))
    return True


def _claim(shared: dict, steps: int, config: A3CConfig) -> tuple[int, int] | None:
    """Claim the next batch's steps: (T per environment, the step count it ends at); T = 0 while
    the parent wants the workers still; None once the whole budget is handed out."""
    claimed = shared["claimed"]
    with claimed.get_lock():
        if claimed.value >= steps:
            return None
        if claimed.value >= shared["pause_at"].value:
            return 0, claimed.value
        T = min(config.n_steps, math.ceil((steps - claimed.value) / config.num_envs))
        claimed.value += T * config.num_envs
        return T, claimed.value


def _step_shared(
    local: nn.Parameter, flat: nn.Parameter, optimizer: SharedAdam, loss: Tensor, config: A3CConfig, shared: dict
) -> Tensor:
    """The gradient of the worker's copy, clipped, applied to the shared parameters by Adam; its norm."""
    flat_grad(local).zero_()
    loss.backward()
    grad_norm = clip_grad_norm(local, config.max_grad_norm)
    flat.grad = local.grad
    if config.lock:
        with shared["step_lock"]:
            optimizer.step()
    else:
        optimizer.step()
    return grad_norm


def _row(rank, updates, env_steps, window, returns, lengths) -> tuple:
    policy_loss, value_loss, entropy, grad_norm = np.mean([entry[:4] for entry in window], axis=0).tolist()
    ev = explained_variance(
        torch.cat([entry[4].flatten() for entry in window]), torch.cat([entry[5].flatten() for entry in window])
    )
    return (
        rank,
        updates,
        env_steps,
        float(np.mean(returns)) if returns else float("nan"),
        len(returns),
        float(np.mean(lengths)) if lengths else float("nan"),
        policy_loss,
        value_loss,
        entropy,
        ev,
        grad_norm,
    )


def train(
    env_id: str = "CartPole-v1",
    config: A3CConfig | None = None,
    *,
    steps: int = 500_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    env_kwargs: dict | None = None,
    checkpoint_every: int = 100_000,
    resume: bool = False,
    tensorboard: str | Path | None = None,
    callback: Callable[[int, nn.Module], None] | None = None,
    callback_every: int = 1_000,
    join_timeout: float = 10.0,
) -> Result:
    """Run A3C for exactly ``steps`` environment steps in total; return a Result with the policy.

    The log has one row per ``log_interval`` updates of one worker (and one for each
    worker's rest at the end), in the order of ``env_steps``, columns
    ``LOG_COLUMNS``: ``worker`` and ``update`` (its count of updates), ``env_steps``
    (all workers' steps whose updates were applied then), ``return``/``length`` means over
    the episodes that ended in those updates (NaN if none), ``episodes`` their number, and
    means of the loss terms and gradient norm (before clipping).

    Callbacks, checkpoints, resuming, Ctrl-C and failing workers: see the module's docstring.
    """
    config = config or A3CConfig()
    for name, value in (("steps", steps), ("callback_every", callback_every), ("checkpoint_every", checkpoint_every)):
        check_count(name, value)
    with torch_threads(1):
        seed_everything(seed)
        probe = gym.make(env_id, **(env_kwargs or {}))
        probe.close()
        policy, critic, flat = _networks(probe.observation_space, probe.action_space, config)
        flat.data.share_memory_()  # (θ, φ) in shared memory: every parameter is a view of it
        optimizer = SharedAdam([flat], lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)
        record = IterationRecord(
            "a3c",
            env_id,
            env_kwargs,
            config,
            seed,
            steps,
            columns=LOG_COLUMNS,
            make_row=dict,
            out=out,
            progress=progress,
            checkpoint_every=checkpoint_every,
            resume=resume,
            tensorboard=tensorboard,
        )
        if record.resumed:
            load_training_state(record.resumed, policy=policy, critic=critic, optimizer=optimizer)
        parent = _Parent(
            env_id,
            dict(env_kwargs or {}),
            config,
            seed,
            steps,
            policy,
            critic,
            flat,
            optimizer,
            record,
            callback,
            callback_every,
            join_timeout,
        )
        with record:
            try:
                parent.run()
            finally:
                parent.shut_down()
        record.rows.sort(key=lambda row: row["env_steps"])  # the workers' rows interleave
        record.advance(parent.shared["applied"].value)
        result = record.result(policy)
        result.timing["startup_seconds"] = parent.startup
        return result


class _Parent:
    """The parent's side of an A3C run: start the workers, serve their messages (rows, pauses
    for checkpoints and evaluations, errors), stop them."""

    def __init__(
        self,
        env_id,
        env_kwargs,
        config,
        seed,
        steps,
        policy,
        critic,
        flat,
        optimizer,
        record,
        callback,
        callback_every,
        join_timeout,
    ):
        self.config, self.steps, self.record, self.join_timeout = config, steps, record, join_timeout
        self.policy, self.critic, self.flat, self.optimizer = policy, critic, flat, optimizer
        self.callback, self.callback_every = callback, callback_every
        self.due = {}  # what the parent does at a pause → the env step it is next due
        if callback is not None:
            self.due["callback"] = callback_every
        if record.out is not None:
            self.due["checkpoint"] = record.next_checkpoint
        ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
        start = record.env_steps  # 0, or where a resumed run left off
        self.shared = {
            "claimed": ctx.Value("q", start),
            "applied": ctx.Value("q", start),
            "pause_at": ctx.Value("q", min([*self.due.values(), steps])),
            "go": ctx.Event(),
            "stop": ctx.Event(),
            "step_lock": ctx.Lock(),
        }
        self.messages = ctx.Queue()
        worker_seed = seed + start  # a resumed run's workers start fresh episodes
        self.processes = [
            ctx.Process(
                target=worker,
                name=f"a3c-worker-{rank}",
                daemon=True,
                args=(
                    rank,
                    gym.spec(env_id),
                    env_kwargs,
                    config,
                    worker_seed,
                    steps,
                    flat,
                    optimizer,
                    self.shared,
                    self.messages,
                ),
            )
            for rank in range(config.workers)
        ]
        self.done, self.ready, self.exited = set(), set(), set()
        self.last_callback, self.startup, self.started = None, 0.0, time.perf_counter()

    def run(self) -> None:
        self._start_workers()
        while len(self.done) < self.config.workers:
            try:
                message = self._next_message()
            except queue_module.Empty:
                self._check_for_silent_deaths()
                continue
            self._handle(message)
        if self.callback is not None and self.last_callback != self.shared["applied"].value:
            self.record.advance(self.shared["applied"].value)
            self.record.call(self.callback, self.policy)

    def _next_message(self) -> tuple:
        """The next message from the workers (queue.Empty after 0.1 s), with Ctrl-C held back
        until the read is over: an interrupt between a message's length and its bytes would
        leave the pipe mid-message, and the next read, at shut-down, would wait forever for
        bytes that never come. The held-back signal is raised again at once afterwards."""
        if threading.current_thread() is not threading.main_thread():
            return self.messages.get(timeout=0.1)
        held: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        try:
            return self.messages.get(timeout=0.1)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
            if held:
                signal.raise_signal(signal.SIGINT)

    def _start_workers(self) -> None:
        # the workers ignore SIGINT from their first instruction: a child inherits an ignored
        # signal, and Python then leaves it ignored while it starts up (imports torch). The
        # parent blocks it meanwhile too, so that a Ctrl-C during the start (which on a busy
        # machine takes seconds: each start waits for its child to read the pickled model) is
        # held pending, not lost, and delivered once the handler is back.
        in_main_thread = threading.current_thread() is threading.main_thread()
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        if in_main_thread:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for process in self.processes:
                process.start()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, handler)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def _check_for_silent_deaths(self) -> None:
        for rank, process in enumerate(self.processes):  # a worker that died without a word
            if rank in self.done or process.exitcode is None:
                continue
            if process.exitcode != 0 or rank in self.exited:
                raise WorkerError(rank, f"its process exited with code {process.exitcode}")
            self.exited.add(rank)

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            self.ready.add(message[1])
            if len(self.ready) == self.config.workers:
                self.startup = time.perf_counter() - self.started
                self.record.outside += self.startup  # start-up is not training time
                self.shared["go"].set()
        elif kind == "log":
            self.record.add_row(dict(zip(LOG_COLUMNS, message[1])))
            self.record.advance(message[1][2])
        elif kind == "pause":  # every worker is still: the model is consistent
            self._at_pause(message[1])
        elif kind == "done":
            self.done.add(message[1])
        elif kind == "interrupt":
            raise KeyboardInterrupt
        elif kind == "nonfinite":
            raise NonFiniteError(f"loss (worker {message[1]})", message[2], self.record.last_checkpoint)
        elif kind == "error":
            raise WorkerError(message[1], message[2], message[3])

    def _at_pause(self, env_steps: int) -> None:
        """Checkpoint and call back, as they fall due, while the workers wait."""
        self.record.advance(env_steps)
        entered = time.perf_counter()
        if "checkpoint" in self.due and env_steps >= self.due["checkpoint"]:
            self.record.save(training_state(policy=self.policy, critic=self.critic, optimizer=self.optimizer))
            self.due["checkpoint"] = self.record.next_checkpoint
        self.record.outside += time.perf_counter() - entered
        if "callback" in self.due and env_steps >= self.due["callback"]:
            self.last_callback = env_steps
            self.record.call(self.callback, self.policy)
            self.due["callback"] = (env_steps // self.callback_every + 1) * self.callback_every
        with self.shared["claimed"].get_lock():
            self.shared["pause_at"].value = min([*self.due.values(), self.steps])

    def shut_down(self) -> None:
        rows: list[tuple] = []  # what _row gives
        _shut_down(self.processes, self.shared, self.messages, rows, self.join_timeout)
        for row in rows:
            self.record.add_row(dict(zip(LOG_COLUMNS, row)))


def _shut_down(processes, shared, messages, rows, join_timeout: float) -> None:
    """Stop the workers, join them (reading the queue meanwhile, so that none blocks on
    writing to it), and kill any still alive after ``join_timeout`` seconds."""
    processes = [p for p in processes if p.pid is not None]  # the ones that were started
    shared["stop"].set()
    shared["go"].set()  # a worker still waiting to start sees the stop at once
    deadline = time.monotonic() + join_timeout
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        try:
            while True:
                message = messages.get_nowait()
                if message[0] == "log":
                    rows.append(message[1])
        except (queue_module.Empty, OSError, EOFError):
            pass
        for p in processes:
            p.join(timeout=0.02)
    for p in processes:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2)
        if p.is_alive():
            p.kill()
            p.join()
    messages.close()
    messages.join_thread()
