"""Play a trained policy greedily and summarise its episodes (`rlcourse evaluate`).

``render`` is ``"none"``, ``"ansi"`` (each frame printed as text: the corridor, FrozenLake),
``"gif"`` or ``"mp4"`` (the first episode's frames from ``render_mode="rgb_array"``, written
to a GIF with Pillow or to an MP4 with imageio's ffmpeg, the ``video`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np

RENDER_MODES = ("none", "ansi", "gif", "mp4")
VIDEO_FORMATS = ("gif", "mp4")


def evaluate(
    result,
    episodes: int = 10,
    seed: int = 0,
    render: str = "none",
    video_path: str | Path | None = None,
    print_fn=print,
    max_steps: int = 10_000,
) -> dict:
    """Play ``episodes`` greedy episodes of a trained ``Result`` on its own environment."""
    return evaluate_policy(
        result.policy,
        result.env_id,
        episodes,
        seed,
        render,
        video_path,
        print_fn,
        env_kwargs=result.env_kwargs,
        max_steps=max_steps,
    )


def evaluate_policy(
    policy,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    render: str = "none",
    video_path: str | Path | None = None,
    print_fn=print,
    env_kwargs=None,
    max_steps: int = 10_000,
) -> dict:
    """Play ``episodes`` episodes with ``policy.act``; return mean/std return and length.

    Episodes are seeded ``seed, seed + 1, …`` so an evaluation repeats exactly. An episode
    still running after ``max_steps`` steps is cut there (CliffWalking has no step limit of
    its own, and a greedy policy can walk in circles). With ``render="gif"`` or ``"mp4"`` only
    the first episode is recorded, to ``video_path`` (default ``episode.gif`` or ``episode.mp4``).
    """
    env = _environment(env_id, env_kwargs or {}, render, episodes)
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    lengths: list[int] = []
    frames: list[np.ndarray] = []  # the first episode's pictures, for a video
    for episode in range(episodes):
        show = print_fn if render == "ansi" else None
        record = frames if render in VIDEO_FORMATS and episode == 0 else None
        total, length = _episode(env, policy, rng, seed + episode, max_steps, show, record)
        if show is not None:
            show(f"episode {episode}: return {total:g}, length {length}")
        returns.append(total)
        lengths.append(length)
    env.close()
    if render in VIDEO_FORMATS:
        write = _write_gif if render == "gif" else _write_mp4
        write(frames, video_path or f"episode.{render}", env.metadata.get("render_fps", 30))
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "episodes": episodes,
    }


def _environment(env_id: str, env_kwargs: dict, render: str, episodes) -> gym.Env:
    """The environment to play on, rendering as asked (or an error naming what it can render)."""
    if render not in RENDER_MODES:
        raise ValueError(f"render = {render!r} is not allowed: it must be one of {', '.join(RENDER_MODES)}")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes = {episodes!r} is out of range: it must be an integer >= 1")
    if render == "mp4":
        _check_mp4_writer()
    render_mode = "rgb_array" if render in VIDEO_FORMATS else {"none": None, "ansi": "ansi"}[render]
    if render in VIDEO_FORMATS:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen
    env = gym.make(env_id, **env_kwargs)
    if render_mode is None:
        return env
    modes = env.metadata.get("render_modes", [])
    env.close()
    if render_mode not in modes:
        raise ValueError(f"{env_id} cannot render {render!r}: its render modes are {modes}")
    return gym.make(env_id, render_mode=render_mode, **env_kwargs)


def _episode(env, policy, rng, seed: int, max_steps: int, show, frames) -> tuple[float, int]:
    """One greedy episode: its return and length. ``show`` prints each text frame, ``frames``
    collects each picture (either may be None)."""
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while True:
        if show is not None:
            show(env.render())
        elif frames is not None:
            frames.append(env.render())
        if done:
            return total, length
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs, rng))
        total += float(reward)
        length += 1
        done = terminated or truncated or length >= max_steps


def _write_gif(frames, path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(np.asarray(frame)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / max(fps, 1)), loop=0)


def _check_mp4_writer() -> None:
    """Fail before any episode is played unless imageio and its ffmpeg binary are installed."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise gym.error.DependencyNotInstalled(
            'render="mp4" needs imageio and imageio-ffmpeg, the video extra: '
            'pip install torch==2.13.0 "rlcourse[video]" (in a checkout: -e ".[video]")'
        ) from None


def _write_mp4(frames, path, fps: int) -> None:
    import imageio.v2 as imageio

    # H.264 in yuv420p needs even sides; imageio pads to a multiple of macro_block_size
    imageio.mimwrite(path, [np.asarray(frame) for frame in frames], format="FFMPEG", fps=fps, macro_block_size=2)
