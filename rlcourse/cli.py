"""The command line: ``rlcourse train``, ``evaluate``, ``tour``, ``assignment release``, ``grade``, ``rlhf``, ``rlvr``.

A user's mistake (unknown algorithm or environment, a bad ``--set`` value or seed, a
folder that holds no run or a damaged one, an ``--out`` that holds something else) ends
with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import shutil
import sys
from pathlib import Path

from rlcourse import __version__
from rlcourse.algorithms import ALGORITHMS, load
from rlcourse.config import ConfigError, UsageError, apply_overrides, parse_overrides
from rlcourse.play import RENDER_MODES, VIDEO_FORMATS
from rlcourse.rlhf.cli import add_parser as add_rlhf_parser
from rlcourse.rlvr.cli import add_parser as add_rlvr_parser

USAGE_ERROR, TRAINING_FAILED, INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _check_env(env_id: str) -> None:
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise UsageError(f"unknown environment {env_id!r}: {err}") from None


def _check_at_least(flag: str, value, low) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} = {value} is out of range: it must be >= {low}")


def _algorithm(name: str):
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown algorithm {name!r}{hint} (the algorithms: {', '.join(ALGORITHMS)})")
    return ALGORITHMS[name]


def _run_config(directory: Path) -> dict:
    """The config.json of the run of `rlcourse train` in ``directory``, or a UsageError saying why there is none."""
    path = directory / "config.json"
    if not path.is_file():
        raise UsageError(
            f"{directory} is not a run directory (no config.json); make one with `rlcourse train ... --out DIR`"
        )
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path} is damaged: it is not JSON ({err})") from None
    if isinstance(meta, dict) and ("model_type" in meta or "sft" in meta):  # a stage's model, or the pipeline's folder
        raise UsageError(
            f"{directory} holds lesson 7's RLHF output, not a run of `rlcourse train`: "
            "evaluate a tuned model with `rlcourse rlhf evaluate MODEL_DIR --reference SFT_DIR`"
        )
    if not isinstance(meta, dict) or "algo" not in meta:
        raise UsageError(f"{path} is not the config.json of a run: it names no algorithm")
    if meta["algo"] not in ALGORITHMS:
        raise UsageError(f"{path} names the algorithm {meta['algo']!r}, which is not one of: {', '.join(ALGORITHMS)}")
    return meta


def _load_run(directory: Path):
    _run_config(directory)
    try:
        return load(directory)
    except FileNotFoundError as err:
        raise UsageError(f"{directory} is missing {Path(err.filename).name}: train the run again") from None
    except Exception as err:  # whatever else reading the files raises, they are damaged (or edited by hand)
        first_line = str(err).partition("\n")[0]
        raise UsageError(f"{directory} holds a damaged run: {type(err).__name__}: {first_line}") from None


def _prepare_out(out: Path, algo: str, force: bool) -> None:
    """Remove what ``out`` holds before a new run of ``algo`` is written there, so that no file of
    an old run stays; refuse unless it is a run of the same algorithm or ``force`` is given."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    try:
        held = _run_config(out)["algo"]
    except UsageError:
        held = None
    if held != algo and not force:
        what = f"a run of {held}" if held else "files that are not a run"
        raise UsageError(f"--out {out} holds {what}: give another --out, or --force to replace it")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise UsageError(f"--out {out} holds the current directory: it cannot be replaced")
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink()


def cmd_train(args) -> int:
    from rlcourse.run import CHECKPOINT, NonFiniteError, UnsupportedSpaceError

    spec = _algorithm(args.algo)
    _check_at_least("--steps", args.steps, 1)
    _check_env(args.env)
    try:
        config = apply_overrides(spec.defaults_for(args.env), parse_overrides(args.set))
    except ConfigError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out or f"runs/{args.algo}_{args.env.split('/')[-1]}_seed{args.seed}")
    options = _train_options(args, spec, out)
    if args.resume and args.force:
        raise UsageError("--resume keeps the run in OUT and --force replaces it: give one of them")
    if not args.resume:
        _prepare_out(out, args.algo, args.force)
    try:
        result = spec.train(
            args.env, config, steps=args.steps, seed=args.seed, out=out, progress=not args.quiet, **options
        )
    except (UnsupportedSpaceError, ConfigError) as err:
        raise UsageError(str(err)) from None
    except NonFiniteError as err:
        print(f"rlcourse: {err}", file=sys.stderr)
        return TRAINING_FAILED
    result.save(out)
    print(json.dumps(_summary(result, out)))
    if result.status == "interrupted":
        print(f"rlcourse: interrupted at env step {result.steps}; what was learned is saved in {out}", file=sys.stderr)
        if "resume" in inspect.signature(spec.train).parameters and (out / CHECKPOINT).is_file():
            print(
                f"rlcourse: the same command with --resume goes on from the last checkpoint in {out}", file=sys.stderr
            )
        return INTERRUPTED
    return 0


def _train_options(args, spec, out: Path) -> dict:
    """The optional arguments of ``train`` the command line sets, refused where the algorithm has none."""
    if args.tensorboard is not None:
        args.tensorboard = args.tensorboard or str(out / "tensorboard")
    options = {}
    for flag, name in (
        ("--resume", "resume"),
        ("--threads", "threads"),
        ("--tensorboard", "tensorboard"),
        ("--device", "device"),
    ):
        value = getattr(args, name)
        if value in (None, False):
            continue
        if name not in inspect.signature(spec.train).parameters:
            raise UsageError(f"{flag}: {args.algo} does not support it")
        if name == "threads":
            _check_at_least(flag, value, 1)
        options[name] = value
    return options


def _summary(result, out: Path) -> dict:
    """The one JSON line ``train`` prints."""
    log = result.log
    returns = log["return"].dropna()
    return {
        "out": str(out),
        "status": result.status,
        "env_steps": result.steps,
        "episodes": int(log["episodes"].sum()) if "episodes" in log else len(log),
        "last_return": float(returns.iloc[-1]) if len(returns) else None,
        "steps_per_second": round(result.timing["steps_per_second"], 1),
    }


def cmd_evaluate(args) -> int:
    import gymnasium as gym

    from rlcourse.play import evaluate

    _check_at_least("--episodes", args.episodes, 1)
    directory = Path(args.run_dir)
    result = _load_run(directory)
    _check_env(result.env_id)
    video = args.video or directory / f"episode.{args.render}"
    try:
        summary = evaluate(result, episodes=args.episodes, seed=args.seed, render=args.render, video_path=video)
    except (ValueError, gym.error.DependencyNotInstalled) as err:
        raise UsageError(str(err)) from None
    if args.render in VIDEO_FORMATS:
        print(f"wrote {video}")
    print(json.dumps(summary))
    return 0


def cmd_tour(args) -> int:
    from rlcourse.tour import run_tour

    report = run_tour(Path(args.out), quick=args.quick, progress=not args.quiet)
    print(f"report: {report}")
    return 0


def _lessons(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise UsageError(f"--lessons expects numbers separated by commas, got {text!r}") from None


def cmd_release(args) -> int:
    from rlcourse.assignments.release import ReleaseError, release

    try:
        summary = release(args.out, _lessons(args.lessons))
    except ReleaseError as err:
        raise UsageError(str(err)) from None
    print("to write:")
    for path, functions in summary["functions"].items():
        print(f"  {path}: {', '.join(functions)}")
    print(f"released lessons {', '.join(map(str, summary['lessons']))} to {summary['out']}")
    return 0


def cmd_autograder(args) -> int:
    from rlcourse.assignments.autograder import build_bundle
    from rlcourse.assignments.release import ReleaseError

    lessons = _lessons(args.lessons)
    if not lessons:
        raise UsageError("--lessons is required: the lessons this assignment grades, e.g. --lessons 4")
    try:
        summary = build_bundle(args.out, lessons)
    except ReleaseError as err:
        raise UsageError(str(err)) from None
    print(
        f"wrote {summary['out']}: lessons {', '.join(map(str, lessons))}, {len(summary['files'])} files, "
        f"torch {summary['torch']}; upload it as a Gradescope autograder"
    )
    return 0


def cmd_timings(args) -> int:
    from rlcourse.assignments.autograder import reference_timings
    from rlcourse.assignments.release import ReleaseError

    try:
        timings = reference_timings(args.out)
    except ReleaseError as err:
        raise UsageError(str(err)) from None
    total = sum(timings["tests"].values())
    print(f"{len(timings['tests'])} graded tests, {total:.1f} s in all on the reference ({timings['machine']})")
    return 0


def cmd_grade(args) -> int:
    from rlcourse.assignments.grade import grade
    from rlcourse.run import atomic_write

    if not Path(args.submission).is_dir():
        raise UsageError(
            f"{args.submission} is not a directory: give the folder that holds the student's rlcourse/ package"
        )
    for name in ("timeout", "deadline"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name} = {value:g} is out of range: it must be > 0 seconds")
    _check_at_least("--memory-mb", args.memory_mb, 256)
    _check_at_least("--jobs", args.jobs, 1)
    try:
        report = grade(
            args.submission,
            tests=args.tests,
            tests_dir=args.tests_dir,
            timeout=args.timeout,
            memory_mb=args.memory_mb,
            jobs=args.jobs,
            lessons=_lessons(args.lessons),
            isolation_level=args.isolation,
            deadline=args.deadline,
        )
    except (FileNotFoundError, PermissionError) as err:
        raise UsageError(str(err)) from None
    print(report.isolation)
    print(report.table())
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(report.gradescope(), indent=2) + "\n"), mode="w")
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlcourse", description="Reinforcement learning, taught by building it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_train, _add_evaluate, _add_tour, _add_assignment, _add_grade):
        add(sub)
    add_rlhf_parser(sub, _Parser)
    add_rlvr_parser(sub, _Parser)
    return parser


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train an algorithm and save the run")
    train.add_argument("algo", metavar="ALGO", help=f"one of: {', '.join(ALGORITHMS)}")
    train.add_argument("--env", required=True, help="a Gymnasium id, e.g. rlcourse/Corridor-v0")
    train.add_argument(
        "--seed", type=int, default=0, help="seeds Python, NumPy, torch and the environments (default: %(default)s)"
    )
    train.add_argument("--steps", type=int, default=10_000, help="environment steps (default: %(default)s)")
    train.add_argument(
        "--out", help="run directory (default: runs/ALGO_ENV_seedN); an old run of the same algorithm there is replaced"
    )
    train.add_argument(
        "--force", action="store_true", help="replace whatever OUT holds: a run of another algorithm, or other files"
    )
    train.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. --set alpha=0.5 gamma=1",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run from OUT/checkpoint.pkl (same env, seed, steps and --set)",
    )
    train.add_argument("--threads", type=int, help="CPU threads for the updates (default 1; dqn, a2c, ppo, trpo)")
    train.add_argument(
        "--device",
        help="where the networks train: cpu (the default; fastest for networks this "
        "small), cuda, cuda:1, mps (reinforce, a2c, ppo, trpo)",
    )
    train.add_argument(
        "--tensorboard",
        nargs="?",
        const="",
        metavar="DIR",
        help="write the log's numbers to TensorBoard as they come (default DIR: OUT/tensorboard; "
        "the tensorboard extra)",
    )
    train.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="replay a saved run's greedy policy")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10, help="(default: %(default)s)")
    evaluate.add_argument("--seed", type=int, default=0, help="episode i is seeded seed + i (default: %(default)s)")
    evaluate.add_argument(
        "--render",
        choices=RENDER_MODES,
        default="none",
        help="ansi: print the frames as text; gif, mp4: record the first episode "
        "(mp4 needs the video extra) (default: %(default)s)",
    )
    evaluate.add_argument("--video", help="where --render gif or mp4 writes (default: RUN_DIR/episode.gif or .mp4)")
    evaluate.set_defaults(func=cmd_evaluate)


def _add_tour(sub) -> None:
    tour = sub.add_parser("tour", help="run every lesson on small budgets and write a report")
    tour.add_argument("--out", default="tour", help="report directory (default ./tour)")
    tour.add_argument("--quick", action="store_true", help="even smaller budgets (for tests)")
    tour.add_argument("--quiet", action="store_true", help="no progress bar")
    tour.set_defaults(func=cmd_tour)


def _add_assignment(sub) -> None:
    assignment = sub.add_parser(
        "assignment", help="instructors: the student release, the Gradescope bundle, the graded tests' timings"
    )
    assignment_sub = assignment.add_subparsers(dest="action", required=True, parser_class=_Parser)
    release = assignment_sub.add_parser("release", help="write the package with solutions cut out")
    release.add_argument("--out", required=True, help="a new, empty directory")
    release.add_argument("--lessons", help="e.g. 1,2 (default: every lesson with graded tests)")
    release.set_defaults(func=cmd_release)
    bundle = assignment_sub.add_parser("autograder", help="write the Gradescope autograder zip (no solutions in it)")
    bundle.add_argument("--lessons", required=True, help="the lessons it grades, e.g. 4")
    bundle.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")
    bundle.set_defaults(func=cmd_autograder)
    timings = assignment_sub.add_parser(
        "timings", help="measure the reference's time per graded test (the grader's time limits come from it)"
    )
    timings.add_argument("--out", help="where to write (default tests/graded/timings.json)")
    timings.set_defaults(func=cmd_timings)


def _add_grade(sub) -> None:
    grade = sub.add_parser("grade", help="grade a student's package with points per test")
    grade.add_argument("submission", help="the folder holding the student's rlcourse/ package")
    grade.add_argument(
        "--tests",
        choices=["public", "all"],
        default="public",
        help="public tests only, or hidden ones too (default public)",
    )
    grade.add_argument("--json", help="write Gradescope's results.json here")
    grade.add_argument(
        "--lessons", help="grade these lessons only, e.g. 4 or 1,2 (default: every lesson in the tests folder)"
    )
    grade.add_argument(
        "--timeout",
        type=float,
        help="seconds per test (default: 10 times the reference solution's time for it, at least 2.5)",
    )
    grade.add_argument("--deadline", type=float, default=1200, help="seconds for the whole grading (default 1200)")
    grade.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of the sandbox (MB)")
    grade.add_argument("--jobs", type=int, help="tests run at once (default: cores, at most 2)")
    grade.add_argument("--tests-dir", help="graded tests (default: tests/graded of this checkout)")
    grade.add_argument(
        "--isolation",
        choices=["auto", "namespaces", "user", "none"],
        default="auto",
        help="how student code is isolated (default: the best this machine allows)",
    )
    grade.set_defaults(func=cmd_grade)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _check_at_least("--seed", getattr(args, "seed", None), 0)  # NumPy takes no negative seed
        return args.func(args)
    except UsageError as err:
        print(f"rlcourse: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("rlcourse: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
