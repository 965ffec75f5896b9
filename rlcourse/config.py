"""Checks and overrides for the frozen configuration dataclasses.

Every algorithm has one frozen ``dataclass`` of hyperparameters. Its ``__post_init__``
calls :func:`check_range` / :func:`check_choice` on each field, so a bad value fails at
once with a message that names the field and what it may be::

    QLearningConfig.alpha = 1.5 is out of range: it must be in (0, 1]

:func:`parse_overrides` reads the command line's ``--set key=value`` pairs and
:func:`apply_overrides` turns them into a new config, converting each string to the
field's type. A mistake in what the user asked for on the command line is a
:class:`UsageError`: ``rlcourse`` reports it in one line with exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ConfigT = TypeVar("ConfigT", bound="DataclassInstance")


class ConfigError(ValueError):
    """A hyperparameter has a value it may not take."""


class UsageError(Exception):
    """A mistake in what the user asked for on the command line (a flag, a path, a ``--set``
    pair): ``rlcourse`` and ``rlcourse rlhf`` report it in one line with exit status 2."""


def check_range(
    config: object,
    field: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ConfigError unless ``config.field`` lies in the interval given.

    ``low``/``high`` of None mean unbounded; ``*_open`` excludes that end point.
    """
    value = getattr(config, field)
    name = f"{type(config).__name__}.{field}"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{name} = {value!r} must be an integer")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{name} = {value!r} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} = {value!r} must be a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{name} = {value!r} is out of range: it must be in {left}{lo}, {hi}{right}")


def check_layers(config: object, field: str = "hidden") -> None:
    """Raise ConfigError unless ``config.field`` is a tuple of hidden-layer sizes, each >= 1."""
    value = getattr(config, field)
    if not isinstance(value, tuple) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in value
    ):
        raise ConfigError(
            f"{type(config).__name__}.{field} = {value!r} must be a tuple of layer sizes, "
            f"each an integer >= 1, e.g. (64, 64)"
        )


def check_choice(config: object, field: str, choices: Collection[object]) -> None:
    """Raise ConfigError unless ``config.field`` is one of ``choices``."""
    value = getattr(config, field)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{type(config).__name__}.{field} = {value!r} is not allowed: it must be one of {allowed}")


def _parse(text: str, kind: Any, name: str) -> object:
    """``text`` converted to the type ``kind`` (a field's type hint) of the field ``name``."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        kind = options[0]
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        parts = [part for part in text.replace("(", "").replace(")", "").split(",") if part.strip()]
        return tuple(_parse(part.strip(), item, name) for part in parts)
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} = {text!r} must be true or false")
    if kind in (int, float):
        try:
            number = float(text) if kind is float else int(float(text))
        except ValueError:
            raise ConfigError(f"{name} = {text!r} must be a number") from None
        if kind is int and float(text) != number:
            raise ConfigError(f"{name} = {text!r} must be an integer")
        return number
    return text


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["alpha=0.5", "gamma=1"]`` → ``{"alpha": "0.5", "gamma": "1"}``; the values stay text
    (:func:`apply_overrides` converts them to the fields' types)."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def apply_overrides(config: ConfigT, overrides: Mapping[str, str]) -> ConfigT:
    """Return a copy of ``config`` with fields replaced by parsed ``overrides``.

    Unknown keys raise ConfigError listing the fields that exist; the new config runs
    its own checks, so an out-of-range value is reported the usual way.
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, object] = {}
    for key, text in overrides.items():
        if key not in fields:
            raise ConfigError(
                f"{type(config).__name__} has no field {key!r}; its fields are: {', '.join(sorted(fields))}"
            )
        changes[key] = _parse(text, hints[key], f"{type(config).__name__}.{key}")
    return dataclasses.replace(config, **changes)


def config_from_dict(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Rebuild a config saved with ``dataclasses.asdict`` (tuples came back as lists)."""
    hints = typing.get_type_hints(cls)
    fixed: dict[str, Any] = {}
    for key, value in values.items():
        if typing.get_origin(hints.get(key)) is tuple and isinstance(value, list):
            value = tuple(value)
        fixed[key] = value
    return cls(**fixed)
