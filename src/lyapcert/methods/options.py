"""Typed options for methods: dataclasses with documented defaults, set from Python, a TOML file or
``--option key=value`` on the command line. Unknown keys and values of the wrong type are errors."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path

from lyapcert.errors import OptionsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def build_options(cls, values: Mapping[str, object], where: str = "options"):
    """``cls(**values)`` with each key checked against the dataclass fields and each value coerced
    to the field's type (``int``, ``float``, ``bool``, ``str``, tuples of those)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise OptionsError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"expected some of: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    clean = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**clean)
    except (TypeError, ValueError) as exc:
        raise OptionsError(f"{where}: {exc}") from None


def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] and X | None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise OptionsError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, inner, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise OptionsError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise OptionsError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise OptionsError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if hint is float:
        if isinstance(value, bool):
            raise OptionsError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise OptionsError(f"{where}: expected a text, got {value!r}")
        return value
    return value


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["width=32", "epochs=10"]`` -> ``{"width": "32", "epochs": "10"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise OptionsError(f"--option: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def read_config(path: str | Path, method: str) -> dict:
    """Options for ``method`` from a TOML file: top-level keys, or a ``[method]`` table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise OptionsError(f"--config: no such file: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptionsError(f"--config: {path} is not valid TOML: {exc}") from None
    if method in data and isinstance(data[method], Mapping):
        others = {k: v for k, v in data.items() if k != method and not isinstance(v, Mapping)}
        return {**others, **data[method]}
    return {k: v for k, v in data.items() if not isinstance(v, Mapping)}


def describe(cls) -> list[tuple[str, str, object, str]]:
    """``(name, type, default, doc)`` for each option of the options dataclass ``cls``; ``doc``
    is the field's whole description from the docstrings (``option_docs``)."""
    notes = option_docs(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(
            (
                f.name,
                getattr(hints[f.name], "__name__", str(hints[f.name])),
                default,
                notes.get(f.name, ""),
            )
        )
    return out


def option_docs(cls) -> dict[str, str]:
    """Each field's whole description in an options dataclass's docstrings (``name: text`` lines
    and the more-indented lines that continue them, joined), a subclass's overriding a base's."""
    fields = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not klass.__doc__:
            continue
        key, indent = None, 0
        for line in inspect.cleandoc(klass.__doc__).splitlines():
            depth = len(line) - len(line.lstrip())
            head, colon, text = line.strip().partition(":")
            if colon and head in fields and (key is None or depth <= indent):
                key, indent = head, depth
                docs[key] = text.strip()
            elif key is not None and line.strip() and depth > indent:
                docs[key] += " " + line.strip()
            else:
                key = None
    return docs
