"""Dynamical systems: the ``System`` model, equations and files, and the benchmark registry."""

from lyapcert.systems.box import Box
from lyapcert.systems.registry import (
    RegistryEntry,
    get_system,
    registry_entry,
    registry_rows,
    resolve_system,
    system_names,
)
from lyapcert.systems.spec import load_system_file, system_from_spec
from lyapcert.systems.system import SymbolicModel, System

__all__ = [
    "Box",
    "RegistryEntry",
    "SymbolicModel",
    "System",
    "get_system",
    "load_system_file",
    "registry_entry",
    "registry_rows",
    "resolve_system",
    "system_from_spec",
    "system_names",
]
