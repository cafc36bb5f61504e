"""Type checks of configuration dataclasses, driven by their field annotations.

:func:`check_field_types` refuses a value whose type does not match its field's annotation, with a
ValueError naming the field, the value and what to write instead: a string where a number belongs
(``lr="1e-3"``), a float where an integer belongs (``num_epochs=4.5``), a non-boolean where a
boolean belongs (``clip_actions="no"``), NaN or infinity in a float field, a string where a
sequence of names or sizes belongs (``layers="84"``). It normalizes sequences to tuples and
numpy scalars to Python ones (a YAML list or ``np.int64`` sizes are fine), and leaves range
checks (positive, in [0, 1], ...) to the dataclass. Annotations it does not know are skipped.

Used by :class:`marl_net.config.EnvConfig`, :class:`marl_net.fast.ppo.FastPPOConfig` and
:class:`marl_net.policies.synapse_policy.PolicyConfig`, so a field another module adds is
checked by writing its annotation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any


def check_field_types(obj: Any) -> None:
    """Check (and normalize, on a frozen dataclass too) every annotated field of ``obj``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in hints:
            value = getattr(obj, f.name)
            normalized = check_value(f.name, value, hints[f.name])
            if normalized is not value:
                object.__setattr__(obj, f.name, normalized)


def check_value(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against annotation ``hint`` (and normalized), or ValueError naming ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return check_value(name, value, options[0])
        return value  # a union of several types: left to the dataclass
    if hint is bool:
        if not isinstance(value, (bool, _np_bool())):
            raise ValueError(f"{name}={value!r} must be a boolean: write true or false (True/False in Python)")
        return bool(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name}={value!r} must be an integer (a whole number, unquoted), not {type(value).__name__}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}={value!r} must be a number, e.g. {name}=0.001 (unquoted)")
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number")
        return value if isinstance(value, (int, float)) else float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}={value!r} must be a string (a name)")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{name}={value!r} must be a list of {_kind(args[0])}, e.g. {name}={_example(name, args[0])}")
        return tuple(check_value(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping) or hint in (dict, Mapping):
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"{name}={value!r} must be a mapping of settings, e.g. {name}={{}}")
        return value
    return value


def _np_bool():
    try:
        import numpy as np

        return np.bool_
    except ImportError:  # pragma: no cover - numpy is a dependency
        return bool


def _kind(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "names"}.get(hint, "values")


def _example(name: str, hint: Any) -> str:
    return {int: "[8, 16, 4]", float: "[0.1, 0.2]", str: "[weight, gradient]"}.get(hint, "[...]")


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       defaults: Mapping[str, Any] | None = None, ignore: Sequence[str] = ()) -> list[str]:
    """``"key: saved -> current"`` for every key whose value differs between a saved configuration
    and the current one (lists and tuples compare equal; a key one side lacks takes its value from
    ``defaults``, e.g. a field added since the checkpoint was written). Keys in ``ignore`` are
    skipped."""
    defaults = defaults or {}
    missing = object()
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        a, b = (_plain(side.get(key, defaults.get(key, missing))) for side in (saved, current))
        if a != b:
            show = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            out.append(f"{key}: {show(a)} -> {show(b)}")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
