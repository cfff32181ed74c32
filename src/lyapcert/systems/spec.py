"""Systems from plain data: the fields of a TOML file or of ``System.from_equations``.

Fields (``*`` = required)::

    name*               text
    states*             list of state names
    inputs              list of input names (default: none)
    dynamics*           table state -> expression, or a list in state order
    domain*             table state -> [lo, hi], or a list of pairs in state order
    equilibrium         table or list (default: the origin)
    equilibrium_input   table or list (default: zero)
    input_bounds        table input -> [lo, hi], or a list of pairs
    params              table name -> number or expression in earlier params, pi and e
    time                "continuous" (default) or "discrete"
    dt                  step of a discrete-time system
    description, source text
    candidates          table name -> expression in the states and params: ready candidates
                        ``V`` (``lyapcert verify SYSTEM --candidate NAME``), e.g. an energy
    simulation          table with horizon, step, convergence_radius, escape_radius: defaults
                        for the true region of attraction (``lyapcert roa``)

Numbers in ``domain``, ``equilibrium``, ``equilibrium_input`` and ``input_bounds`` may be
constant expressions such as ``"-pi"`` or ``"m*g/2"``. Unknown keys are errors.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import sympy

from lyapcert.errors import ConfigFileError, ExpressionError, SystemDefinitionError
from lyapcert.systems.box import Box
from lyapcert.systems.equations import (
    RESERVED,
    check_real,
    compile_expression,
    compile_vector,
    evaluate_constant,
    parse_expression,
)
from lyapcert.systems.system import SymbolicModel, System

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REQUIRED = ("name", "states", "dynamics", "domain")
OPTIONAL = (
    "inputs",
    "equilibrium",
    "equilibrium_input",
    "input_bounds",
    "params",
    "time",
    "dt",
    "description",
    "source",
    "simulation",
    "candidates",
)
SIMULATION_FIELDS = ("horizon", "step", "convergence_radius", "escape_radius")
FIELDS = REQUIRED + OPTIONAL


def load_system_file(path: str | Path) -> System:
    """Read and validate a TOML system file; errors name the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigFileError(f"no such file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc}") from None
    try:
        return system_from_spec(data)
    except SystemDefinitionError as exc:
        located = type(exc)(f"{path}: {exc}")
        located.field = exc.field
        raise located from None


def system_from_spec(spec: Mapping[str, object]) -> System:
    """Build a ``System`` from the plain-data fields listed in this module's docstring."""
    if not isinstance(spec, Mapping):
        raise ConfigFileError(f"expected a table of fields, got {type(spec).__name__}")
    unknown = [k for k in spec if k not in FIELDS]
    if unknown:
        raise ConfigFileError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; expected some of: {', '.join(FIELDS)}"
        )
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise ConfigFileError(f"missing required key(s): {', '.join(missing)}")

    name = spec["name"]
    if not isinstance(name, str) or not name.strip():
        raise SystemDefinitionError(f"expected a non-empty text, got {name!r}", "name")
    states = _names(spec["states"], "states")
    inputs = _names(spec.get("inputs", []), "inputs")
    for field, names in (("states", states), ("inputs", inputs)):
        for n in names:
            if n in RESERVED:
                raise SystemDefinitionError(
                    f"{n!r} is reserved for a function or constant; rename it", field
                )
    params, param_symbols = _params(spec.get("params", {}), set(states) | set(inputs))

    state_symbols = [sympy.Symbol(s, real=True) for s in states]
    input_symbols = [sympy.Symbol(u, real=True) for u in inputs]
    symbols = {s.name: s for s in state_symbols + input_symbols}
    symbols.update(param_symbols)

    dynamics_text = _per_name(spec["dynamics"], states, "dynamics", "an expression")
    exprs = tuple(
        parse_expression(text, symbols, f"dynamics.{s}") for s, text in zip(states, dynamics_text)
    )
    for s, e in zip(states, exprs):  # compile each alone first so that errors name the state
        try:
            compile_expression(e)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), f"dynamics.{s}") from None
    values = {param_symbols[k]: sympy.Float(v, 30) for k, v in params.items()}
    numeric = [e.subs(values) if values else e for e in exprs]
    for s, e, text in zip(states, numeric, dynamics_text):
        bad = e.free_symbols - set(state_symbols) - set(input_symbols)
        if bad:  # pragma: no cover - parse_expression already rejects unknown names
            raise SystemDefinitionError(f"unresolved symbols {bad}", f"dynamics.{s}")
        if values:  # the parameters' values can make it undefined (x/a with a = 0, log(a), ...)
            check_real(e, f"dynamics.{s}", f"{str(text)!r} with the parameters {params}")
            try:
                compile_expression(e)
            except ExpressionError as exc:
                raise ExpressionError(
                    f"{exc} (with the parameters {params})", f"dynamics.{s}"
                ) from None

    consts = {k: sympy.Float(v, 30) for k, v in params.items()}
    domain = Box.from_bounds(
        _constant_pairs(spec["domain"], states, "domain", consts), states, "domain"
    )
    input_bounds = None
    if spec.get("input_bounds") is not None:
        if not inputs:
            raise SystemDefinitionError(
                "input bounds given for a system without inputs", "input_bounds"
            )
        input_bounds = Box.from_bounds(
            _constant_pairs(spec["input_bounds"], inputs, "input_bounds", consts),
            inputs,
            "input_bounds",
            allow_degenerate=True,
        )
    equilibrium = None
    if spec.get("equilibrium") is not None:
        equilibrium = _constant_vector(spec["equilibrium"], states, "equilibrium", consts)
    equilibrium_input = None
    if spec.get("equilibrium_input") is not None:
        if not inputs:
            raise SystemDefinitionError(
                "equilibrium_input given for a system without inputs", "equilibrium_input"
            )
        equilibrium_input = _constant_vector(
            spec["equilibrium_input"], inputs, "equilibrium_input", consts
        )

    time = spec.get("time", "continuous")
    dt = spec.get("dt")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float))):
        raise SystemDefinitionError(f"expected a number, got {dt!r}", "dt")
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise SystemDefinitionError(f"expected a finite step > 0, got {dt!r}", "dt")
    sim = spec.get("simulation")
    if sim is not None:
        if not isinstance(sim, Mapping):
            raise SystemDefinitionError(f"expected a table, got {sim!r}", "simulation")
        for key, value in sim.items():
            if key not in SIMULATION_FIELDS:
                raise SystemDefinitionError(
                    f"unknown key {key!r}; expected some of: {', '.join(SIMULATION_FIELDS)}",
                    "simulation",
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                raise SystemDefinitionError(
                    f"expected a finite number > 0, got {value!r}", f"simulation.{key}"
                )
    for key in ("description", "source"):
        if not isinstance(spec.get(key, ""), str):
            raise SystemDefinitionError(f"expected a text, got {spec[key]!r}", key)
    state_table = {s.name: s for s in state_symbols}
    _check_candidates(spec.get("candidates", {}), {**state_table, **param_symbols})

    # Keep a normalised copy of the definition so that the system can be saved and rebuilt.
    saved = {k: spec[k] for k in FIELDS if k in spec}
    saved["dynamics"] = dict(zip(states, (str(t) for t in dynamics_text)))
    symbolic = SymbolicModel(dynamics=exprs, params=params, spec=saved)
    return System(
        name=name,
        dynamics=compile_vector(numeric, [state_symbols, input_symbols]),
        state_names=states,
        input_names=inputs,
        domain=domain,
        equilibrium=equilibrium,
        equilibrium_input=equilibrium_input,
        input_bounds=input_bounds,
        time=time,
        dt=float(dt) if dt is not None else None,
        description=spec.get("description", ""),
        source=spec.get("source", ""),
        symbolic=symbolic,
    )


def _check_candidates(value: object, symbols: Mapping[str, sympy.Symbol]) -> None:
    """Each named candidate parses as an expression in the states and params (no inputs)."""
    if not isinstance(value, Mapping):
        raise SystemDefinitionError(
            f"expected a table name -> expression, got {value!r}", "candidates"
        )
    for key, text in value.items():
        where = f"candidates.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            raise SystemDefinitionError(
                f"expected an identifier as name, got {key!r}", "candidates"
            )
        if key in symbols:
            raise SystemDefinitionError(
                f"{key!r} is already a state or parameter name; rename the candidate", where
            )
        if not isinstance(text, str):
            raise SystemDefinitionError(f"expected an expression text, got {text!r}", where)
        expr = parse_expression(text, dict(symbols), where)
        check_real(expr, where)


def _names(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SystemDefinitionError(f"expected a list of names, got {value!r}", field)
    names = tuple(value)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier():
            raise SystemDefinitionError(
                f"expected names made of letters, digits and _, got {n!r}", field
            )
    if len(set(names)) != len(names):
        raise SystemDefinitionError(f"duplicate names in {list(names)}", field)
    return names


def _params(value: object, taken: set[str]) -> tuple[dict[str, float], dict[str, sympy.Symbol]]:
    if not isinstance(value, Mapping):
        raise SystemDefinitionError(f"expected a table name -> value, got {value!r}", "params")
    params: dict[str, float] = {}
    symbols: dict[str, sympy.Symbol] = {}
    for key, raw in value.items():
        where = f"params.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            raise SystemDefinitionError(f"expected an identifier as name, got {key!r}", "params")
        if key in taken:
            raise SystemDefinitionError(f"{key!r} is already a state or input name", where)
        if key in RESERVED:
            raise SystemDefinitionError(f"{key!r} is reserved for a function or constant", where)
        known = {k: sympy.Float(v, 30) for k, v in params.items()}
        params[key] = evaluate_constant(raw, known, where)
        symbols[key] = sympy.Symbol(key, real=True)
    return params, symbols


def _per_name(value: object, names: Sequence[str], field: str, what: str) -> list[object]:
    """A table keyed by ``names`` or a list in the order of ``names`` -> list in that order."""
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise SystemDefinitionError(
                f"unknown name(s) {', '.join(map(repr, unknown))}; expected {', '.join(names)}",
                field,
            )
        missing = [n for n in names if n not in value]
        if missing:
            raise SystemDefinitionError(
                f"missing {what} for {', '.join(missing)}", f"{field}.{missing[0]}"
            )
        return [value[n] for n in names]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise SystemDefinitionError(
            f"expected a table ({', '.join(names)}) or a list, got {value!r}", field
        )
    if len(value) != len(names):
        raise SystemDefinitionError(
            f"expected {len(names)} entries (one per {', '.join(names)}), got {len(value)}", field
        )
    return list(value)


def _constant_pairs(value, names, field, consts) -> list[list[float]]:
    pairs = _per_name(value, names, field, "[lo, hi]")
    out = []
    for n, pair in zip(names, pairs):
        where = f"{field}.{n}"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise SystemDefinitionError(f"expected a pair [lo, hi], got {pair!r}", where)
        out.append([evaluate_constant(v, consts, where) for v in pair])
    return out


def _constant_vector(value, names, field, consts) -> list[float]:
    entries = _per_name(value, names, field, "a value")
    return [evaluate_constant(v, consts, f"{field}.{n}") for n, v in zip(names, entries)]
