"""Method configs from text and JSON: ``--set key=value`` typed by the Config dataclass.

The Config dataclass of a method is the one source of keys, types and defaults; the
CLI, the job file and the model registry all go through :func:`make_config`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def field_types(config_cls: type) -> dict[str, Any]:
    """Resolved type of each field of a Config dataclass (annotations may be strings)."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolvable forward refs: fall back to the raw annotations
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(config_cls)}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_value(tp: Any, text: str) -> Any:
    """Parse ``text`` (from ``--set``) as a value of type ``tp``."""
    tp, optional = _strip_optional(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(tp)
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if tp in (int, float, str):
        return tp(text)
    if origin in (tuple, list) or tp in (tuple, list):
        args = typing.get_args(tp)
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        if args and args[-1] is Ellipsis:
            vals = [parse_value(args[0], p) for p in parts]
        elif args:
            if len(args) != len(parts):
                raise ValueError(f"expected {len(args)} comma-separated values, got {text!r}")
            vals = [parse_value(a, p) for a, p in zip(args, parts)]
        else:
            vals = parts
        return tuple(vals) if (origin or tp) is tuple else list(vals)
    return text


def coerce(tp: Any, value: Any) -> Any:
    """Bring a JSON value back to the field's type (lists to tuples, ints to floats)."""
    if isinstance(value, str) and _strip_optional(tp)[0] is not str:
        return parse_value(tp, value)
    tp, _ = _strip_optional(tp)
    if value is None:
        return None
    origin = typing.get_origin(tp) or tp
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(tp)
        if args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(coerce(a, v) for a, v in zip(args, value))
        inner = args[0] if args else Any
        return tuple(coerce(inner, v) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def make_config(config_cls: type, overrides: dict[str, Any] | None = None) -> Any:
    """A Config instance from defaults plus ``overrides`` (JSON values or ``--set`` text)."""
    types_ = field_types(config_cls)
    kwargs = {}
    for key, value in (overrides or {}).items():
        if key not in types_:
            raise KeyError(
                f"{config_cls.__qualname__} has no key {key!r}; keys: {', '.join(sorted(types_))}"
            )
        try:
            kwargs[key] = coerce(types_[key], value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad value for {key!r}: {value!r} ({err})") from None
    return config_cls(**kwargs)


def parse_sets(config_cls: type, pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "sizes=64,64"]`` -> typed overrides; errors name the bad pair."""
    types_ = field_types(config_cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, text = pair.split("=", 1)
        key = key.strip()
        if key not in types_:
            raise KeyError(
                f"--set {key}: unknown key; {config_cls.__qualname__} keys: "
                f"{', '.join(sorted(types_))}"
            )
        try:
            out[key] = parse_value(types_[key], text)
        except ValueError as err:
            raise ValueError(f"--set {pair}: {err}") from None
    return out


def config_to_json(config: Any) -> dict[str, Any]:
    """A Config instance as plain JSON values (tuples become lists)."""
    return {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()
    }
