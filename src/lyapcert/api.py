"""The one input-normalising function at the boundary of the public API: ``as_system``.

Every public function that takes a system calls it first, so each accepts the same three forms:
a ``System`` (a closed loop, ``system.closed_loop(k)``, is one), the name of a registry system
(``"vanderpol"``; ``lyapcert systems`` lists them) or the path of a TOML system file (a ``str``
or a ``pathlib.Path``). Nothing else is guessed (torchdiffeq's ``_check_inputs`` is the model).
"""

from __future__ import annotations

import os
from pathlib import Path

from lyapcert.errors import SystemTypeError, UnknownSystemError
from lyapcert.systems.registry import resolve_system
from lyapcert.systems.spec import load_system_file
from lyapcert.systems.system import System

__all__ = ["SystemLike", "as_system"]

SystemLike = System | str | os.PathLike
"""What a public function's ``system`` argument takes (``as_system`` turns it into a System)."""

_EXPECTED = (
    "a System, a registry name (e.g. 'vanderpol'; `lyapcert systems` lists them) or the path of "
    "a .toml system file"
)


def as_system(system: SystemLike, field: str = "system") -> System:
    """``system`` as a ``System``.

    * a ``System`` (a closed loop included): itself, unchanged;
    * a ``str``: the registry system of that name, else the TOML system file at that path
      (``lyapcert.resolve_system``; ``UnknownSystemError`` when it is neither, with the closest
      names);
    * a ``pathlib.Path`` (any ``os.PathLike``): the TOML system file there (``ConfigFileError``
      when it cannot be read).

    Anything else (``None``, a number, a certificate, bytes) is a ``SystemTypeError`` naming
    ``field``, the value and what was expected.
    """
    if isinstance(system, System):
        return system
    if isinstance(system, str):
        if not system.strip():
            raise UnknownSystemError(f"{field}: got an empty name; expected {_EXPECTED}")
        return resolve_system(system)
    if isinstance(system, os.PathLike):
        path = os.fspath(system)
        if isinstance(path, str):
            return load_system_file(Path(path))
    shown = repr(system)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    hint = ""
    if hasattr(system, "system") and isinstance(getattr(system, "system", None), System):
        hint = f" (pass its .system: {type(system).__name__}.system is the System)"
    raise SystemTypeError(
        f"{field}: expected {_EXPECTED}, got {type(system).__name__} {shown}{hint}"
    )
