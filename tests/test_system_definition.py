"""Defining systems: ``System``, ``System.from_equations``, TOML files, ``Box`` and the CLI's
exit status 2 on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lyapcert.cli import app
from lyapcert.errors import (
    ConfigFileError,
    EquilibriumError,
    ExpressionError,
    LyapcertError,
    ShapeError,
    SystemDefinitionError,
)
from lyapcert.systems import Box, System, get_system, load_system_file

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
BASE = {"name": "s", "states": ["x"], "dynamics": ["-x"], "domain": [[-1, 1]]}
CONTROLLED = {**BASE, "inputs": ["u"], "dynamics": ["-x + u"], "input_bounds": [[-1, 1]]}


def _rand_in(box: Box, n: int = 32, dtype: torch.dtype = torch.float64, seed: int = 0):
    lo, hi = box.as_tensors(dtype)
    gen = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, box.dim, generator=gen, dtype=dtype)


def _toml(value) -> str:
    """A minimal TOML writer for the plain data of a system definition (nan/inf included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _write_toml(path: Path, spec: dict) -> Path:
    path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in spec.items()))
    return path


# --------------------------------------------------------------------------- bad definitions
# (id, spec, exception type, field or None, substrings the message must contain)

BAD_SPECS = [
    ("unknown-top-level-key", {**BASE, "foo": 1}, ConfigFileError, None, ["unknown key", "'foo'"]),
    (
        "missing-required-key",
        {k: v for k, v in BASE.items() if k != "domain"},
        ConfigFileError,
        None,
        ["missing required key", "domain"],
    ),
    (
        "unknown-key-in-dynamics",
        {**BASE, "dynamics": {"x": "-x", "z": "1"}},
        SystemDefinitionError,
        "dynamics",
        ["unknown name", "'z'"],
    ),
    (
        "unknown-key-in-domain",
        {**BASE, "domain": {"x": [-1, 1], "z": [0, 1]}},
        SystemDefinitionError,
        "domain",
        ["unknown name", "'z'"],
    ),
    (
        "state-without-dynamics",
        {**BASE, "states": ["x", "y"], "dynamics": {"x": "-x"}, "domain": [[-1, 1], [-1, 1]]},
        SystemDefinitionError,
        "dynamics.y",
        ["missing an expression for y"],
    ),
    (
        "unknown-symbol",
        {**BASE, "dynamics": ["-x + q"]},
        ExpressionError,
        "dynamics.x",
        ["unknown symbol 'q'", "'-x + q'", "column 6"],
    ),
    (
        "unknown-function",
        {**BASE, "dynamics": ["-sgn(x)"]},
        ExpressionError,
        "dynamics.x",
        ["unknown function 'sgn'"],
    ),
    (
        "syntax-error",
        {**BASE, "dynamics": ["-x +* 2"]},
        ExpressionError,
        "dynamics.x",
        ["syntax error", "'-x +* 2'", "column 5"],
    ),
    (
        "domain-lo-equals-hi",
        {**BASE, "domain": [[1, 1]]},
        SystemDefinitionError,
        "domain.x",
        ["lo < hi", "[1.0, 1.0]"],
    ),
    (
        "domain-lo-above-hi",
        {**BASE, "domain": [[2, -2]]},
        SystemDefinitionError,
        "domain.x",
        ["lo < hi", "[2.0, -2.0]"],
    ),
    (
        "input-bounds-lo-above-hi",
        {**CONTROLLED, "input_bounds": [[1, -1]]},
        SystemDefinitionError,
        "input_bounds.u",
        ["lo < hi", "[1.0, -1.0]"],
    ),
    (
        "domain-nan",
        {**BASE, "domain": [[math.nan, 1]]},
        ExpressionError,
        "domain.x",
        ["finite", "nan"],
    ),
    (
        "domain-inf",
        {**BASE, "domain": [[-1, math.inf]]},
        ExpressionError,
        "domain.x",
        ["finite", "inf"],
    ),
    (
        "params-nan",
        {**BASE, "dynamics": ["-a*x"], "params": {"a": math.nan}},
        ExpressionError,
        "params.a",
        ["finite", "nan"],
    ),
    (
        "params-inf",
        {**BASE, "dynamics": ["-a*x"], "params": {"a": -math.inf}},
        ExpressionError,
        "params.a",
        ["finite", "-inf"],
    ),
    (
        "params-expression-non-finite",
        {**BASE, "dynamics": ["-a*x"], "params": {"a": "log(0)"}},
        ExpressionError,
        "params.a",
        ["'log(0)'", "undefined: division by zero"],
    ),
    (
        "equilibrium-nan",
        {**BASE, "equilibrium": [math.nan]},
        ExpressionError,
        "equilibrium.x",
        ["finite", "nan"],
    ),
    (
        "equilibrium-inf",
        {**BASE, "equilibrium": [math.inf]},
        ExpressionError,
        "equilibrium.x",
        ["finite", "inf"],
    ),
    (
        "not-an-equilibrium",
        {**BASE, "dynamics": ["-x + 1"]},
        EquilibriumError,
        "equilibrium",
        ["not an equilibrium", "x* = [0.0]", "max |f(x*, u*)| = 1 "],
    ),
    (
        "not-an-equilibrium-stated",
        {**BASE, "equilibrium": [0.5]},
        EquilibriumError,
        "equilibrium",
        ["not an equilibrium", "x* = [0.5]", "max |f(x*, u*)| = 0.5 "],
    ),
    (
        "not-an-equilibrium-with-input",
        {**CONTROLLED, "equilibrium_input": [0.25]},
        EquilibriumError,
        "equilibrium",
        ["u* = [0.25]", "max |f(x*, u*)| = 0.25 "],
    ),
    (
        "discrete-not-a-fixed-point",
        {**BASE, "dynamics": ["0.5*x + 1"], "time": "discrete", "dt": 0.5},
        EquilibriumError,
        "equilibrium",
        ["not an equilibrium", "max |f(x*, u*) - x*| = 1 "],
    ),
    (
        "discrete-fixed-point-of-the-flow-only",
        {**BASE, "dynamics": ["-x + 0"], "equilibrium": [0.5], "time": "discrete", "dt": 0.5},
        EquilibriumError,
        "equilibrium",
        ["x* = [0.5]", "max |f(x*, u*) - x*| = 1 "],
    ),
    (
        "domain-too-many-pairs",
        {**BASE, "domain": [[-1, 1], [-1, 1]]},
        SystemDefinitionError,
        "domain",
        ["expected 1 entries", "got 2"],
    ),
    (
        "domain-not-a-pair",
        {**BASE, "domain": [[-1, 0, 1]]},
        SystemDefinitionError,
        "domain.x",
        ["pair", "[-1, 0, 1]"],
    ),
    (
        "equilibrium-wrong-length",
        {**BASE, "equilibrium": [0, 0]},
        SystemDefinitionError,
        "equilibrium",
        ["expected 1 entries", "got 2"],
    ),
    (
        "input-bounds-without-inputs",
        {**BASE, "input_bounds": [[-1, 1]]},
        SystemDefinitionError,
        "input_bounds",
        ["without inputs"],
    ),
    (
        "equilibrium-input-without-inputs",
        {**BASE, "equilibrium_input": [0]},
        SystemDefinitionError,
        "equilibrium_input",
        ["without inputs"],
    ),
    (
        "input-bounds-too-many-pairs",
        {**CONTROLLED, "input_bounds": [[-1, 1], [-1, 1]]},
        SystemDefinitionError,
        "input_bounds",
        ["expected 1 entries", "got 2"],
    ),
    (
        "dynamics-list-too-long",
        {**BASE, "dynamics": ["-x", "1"]},
        SystemDefinitionError,
        "dynamics",
        ["expected 1 entries", "got 2"],
    ),
    (
        "dynamics-list-too-short",
        {**BASE, "states": ["x", "y"], "domain": [[-1, 1], [-1, 1]]},
        SystemDefinitionError,
        "dynamics",
        ["expected 2 entries", "got 1"],
    ),
    (
        "discrete-without-dt",
        {**BASE, "time": "discrete"},
        SystemDefinitionError,
        "dt",
        ["discrete-time", "None"],
    ),
    (
        "dt-with-continuous-time",
        {**BASE, "dt": 0.1},
        SystemDefinitionError,
        "dt",
        ["dt = 0.1", "continuous"],
    ),
    (
        "dt-nan",
        {**BASE, "time": "discrete", "dt": math.nan},
        SystemDefinitionError,
        "dt",
        ["finite step", "nan"],
    ),
    (
        "dt-negative",
        {**BASE, "time": "discrete", "dt": -0.5},
        SystemDefinitionError,
        "dt",
        ["> 0", "-0.5"],
    ),
    (
        "time-unknown",
        {**BASE, "time": "hybrid"},
        SystemDefinitionError,
        "time",
        ["'hybrid'"],
    ),
    (
        "state-named-sin",
        {**BASE, "states": ["sin"], "dynamics": ["-sin"]},
        SystemDefinitionError,
        "states",
        ["'sin'", "reserved"],
    ),
    (
        "state-named-pi",
        {**BASE, "states": ["pi"], "dynamics": ["-pi"]},
        SystemDefinitionError,
        "states",
        ["'pi'", "reserved"],
    ),
    (
        "input-named-exp",
        {**CONTROLLED, "inputs": ["exp"], "dynamics": ["-x + exp"]},
        SystemDefinitionError,
        "inputs",
        ["'exp'", "reserved"],
    ),
    (
        "param-named-e",
        {**BASE, "params": {"e": 1.0}},
        SystemDefinitionError,
        "params.e",
        ["'e'", "reserved"],
    ),
    (
        "param-named-like-a-state",
        {**BASE, "params": {"x": 1.0}},
        SystemDefinitionError,
        "params.x",
        ["'x'", "state or input"],
    ),
    (
        "duplicate-states",
        {**BASE, "states": ["x", "x"], "dynamics": ["-x", "-x"], "domain": [[-1, 1], [-1, 1]]},
        SystemDefinitionError,
        "states",
        ["duplicate", "['x', 'x']"],
    ),
    (
        "state-and-input-with-one-name",
        {**CONTROLLED, "inputs": ["x"], "input_bounds": None, "dynamics": ["-x"]},
        SystemDefinitionError,
        "inputs",
        ["both as state and input", "x"],
    ),
    (
        "state-not-an-identifier",
        {**BASE, "states": ["1x"]},
        SystemDefinitionError,
        "states",
        ["'1x'"],
    ),
    (
        "equilibrium-outside-domain",
        {**BASE, "dynamics": ["-(x - 5)"], "equilibrium": [5]},
        SystemDefinitionError,
        "equilibrium",
        ["outside the domain", "[5.0]", "[-1, 1]"],
    ),
    (
        "equilibrium-input-outside-input-bounds",
        {**CONTROLLED, "dynamics": ["-x + u - 3"], "equilibrium_input": [3]},
        SystemDefinitionError,
        "equilibrium_input",
        ["outside the input bounds", "[3.0]", "[-1, 1]"],
    ),
    (
        "empty-name",
        {**BASE, "name": " "},
        SystemDefinitionError,
        "name",
        ["non-empty", "' '"],
    ),
    (
        "description-not-text",
        {**BASE, "description": 3},
        SystemDefinitionError,
        "description",
        ["text", "3"],
    ),
    (
        "candidates-not-table",
        {**BASE, "candidates": ["x**2"]},
        SystemDefinitionError,
        "candidates",
        ["table name -> expression", "x**2"],
    ),
    (
        "candidate-unknown-symbol",
        {**BASE, "candidates": {"energy": "x**2 + y"}},
        ExpressionError,
        "candidates.energy",
        ["'y'"],
    ),
    (
        "candidate-not-text",
        {**BASE, "candidates": {"energy": 2}},
        SystemDefinitionError,
        "candidates.energy",
        ["expression text"],
    ),
    (
        "candidate-named-like-a-state",
        {**BASE, "candidates": {"x": "x**2"}},
        SystemDefinitionError,
        "candidates.x",
        ["already a state or parameter name"],
    ),
    (
        "candidate-uses-an-input",
        {**CONTROLLED, "candidates": {"v": "x**2 + u"}},
        ExpressionError,
        "candidates.v",
        ["'u'"],
    ),
]
BAD_IDS = [case[0] for case in BAD_SPECS]


def _drop_none(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if v is not None}


# from_equations takes the required fields as arguments, so a missing one is a TypeError there
BAD_EQUATIONS = [c for c in BAD_SPECS if set(c[1]) >= {"name", "states", "dynamics", "domain"}]


@pytest.mark.parametrize(
    ("label", "spec", "kind", "field", "parts"), BAD_EQUATIONS, ids=[c[0] for c in BAD_EQUATIONS]
)
def test_bad_definitions_from_equations(label, spec, kind, field, parts):
    with pytest.raises(LyapcertError) as info:
        System.from_equations(**spec)
    exc = info.value
    assert type(exc) is kind, f"{label}: got {type(exc).__name__}: {exc}"
    assert isinstance(exc, SystemDefinitionError)
    assert isinstance(exc, ValueError)
    assert exc.field == field
    message = str(exc)
    if field is not None:
        assert message.startswith(f"{field}: "), message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(("label", "spec", "kind", "field", "parts"), BAD_SPECS, ids=BAD_IDS)
def test_bad_definitions_from_toml_files(tmp_path, label, spec, kind, field, parts):
    path = _write_toml(tmp_path / f"{label}.toml", _drop_none(spec))
    for load in (load_system_file, System.from_file):
        with pytest.raises(LyapcertError) as info:
            load(path)
        exc = info.value
        assert type(exc) is kind, f"{label}: got {type(exc).__name__}: {exc}"
        assert isinstance(exc, ValueError)
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        if field is not None:
            assert f"{path}: {field}: " in message
        for part in parts:
            assert part in message, f"{part!r} not in {message!r}"


def test_errors_from_files_keep_their_field(tmp_path):
    path = _write_toml(tmp_path / "s.toml", {**BASE, "dynamics": ["-x + q"]})
    with pytest.raises(ExpressionError) as info:
        load_system_file(path)
    assert info.value.field == "dynamics.x"


def test_missing_entry_message_reads_correctly():
    spec = {**BASE, "states": ["x", "y"], "dynamics": {"x": "-x"}, "domain": [[-1, 1], [-1, 1]]}
    with pytest.raises(SystemDefinitionError) as info:
        System.from_equations(**spec)
    assert "no an " not in str(info.value)


# --------------------------------------------------------------------------- TOML specifics

HEADER = 'name = "s"\nstates = ["x"]\n'


@pytest.mark.parametrize(
    ("body", "kind", "parts"),
    [
        (
            'dynamics = ["-x"]\ndomain = [[-1, 1]]\nfoo = 1\n',
            ConfigFileError,
            ["unknown key(s) 'foo'", "expected some of"],
        ),
        (
            'dynamics = ["-x"]\ndomain = [[-1, 1]]\n[extra]\na = 1\n',
            ConfigFileError,
            ["unknown key(s) 'extra'"],
        ),
        (
            '[dynamics]\nx = "-x"\nz = "1"\n[domain]\nx = [-1, 1]\n',
            SystemDefinitionError,
            ["dynamics: unknown name(s) 'z'; expected x"],
        ),
        (
            'dynamics = ["-x"]\n[domain]\nx = [-1, 1]\nz = [0, 1]\n',
            SystemDefinitionError,
            ["domain: unknown name(s) 'z'; expected x"],
        ),
        ('dynamics = ["-x"]\n[domain]\nx = [nan, 1]\n', ExpressionError, ["domain.x:", "nan"]),
        ('dynamics = ["-x"]\n[domain]\nx = [-1, inf]\n', ExpressionError, ["domain.x:", "inf"]),
        (
            'dynamics = ["-x"]\ndomain = [[-1, 1]]\n[equilibrium]\nx = -nan\n',
            ExpressionError,
            ["equilibrium.x:", "nan"],
        ),
        (
            'dynamics = ["-a*x"]\ndomain = [[-1, 1]]\n[params]\na = +inf\n',
            ExpressionError,
            ["params.a:", "inf"],
        ),
        (
            'dynamics = ["-x"]\ndomain = [[-1, 1]]\ntime = "discrete"\ndt = inf\n',
            SystemDefinitionError,
            ["dt:", "inf"],
        ),
        ('dynamics = ["-x"]\ndomain = [[-1, 1]\n', ConfigFileError, ["not valid TOML"]),
    ],
    ids=[
        "top-level-key",
        "top-level-table",
        "dynamics-key",
        "domain-key",
        "domain-nan",
        "domain-inf",
        "equilibrium-nan",
        "params-inf",
        "dt-inf",
        "invalid-toml",
    ],
)
def test_toml_tables_and_special_floats(tmp_path, body, kind, parts):
    path = tmp_path / "s.toml"
    path.write_text(HEADER + body)
    with pytest.raises(LyapcertError) as info:
        System.from_file(path)
    assert type(info.value) is kind
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    for part in parts:
        assert part in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigFileError, match="no such file"):
        load_system_file(tmp_path / "missing.toml")


def test_unreadable_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_system_file(tmp_path)  # a directory


def test_toml_file_equals_from_equations(tmp_path):
    spec = {
        "name": "osc",
        "states": ["x", "v"],
        "dynamics": {"x": "v", "v": "-k*x - c*v"},
        "domain": {"x": ["-pi", "pi"], "v": [-2, 2]},
        "params": {"k": 2.0, "c": "k/4"},
    }
    path = tmp_path / "osc.toml"
    path.write_text(
        'name = "osc"\nstates = ["x", "v"]\n'
        '[dynamics]\nx = "v"\nv = "-k*x - c*v"\n'
        '[domain]\nx = ["-pi", "pi"]\nv = [-2, 2]\n'
        '[params]\nk = 2.0\nc = "k/4"\n'
    )
    from_file = System.from_file(path)
    from_eq = System.from_equations(**spec)
    assert from_file.fingerprint() == from_eq.fingerprint()
    assert from_file.domain.to_list() == [[-math.pi, math.pi], [-2.0, 2.0]]
    assert from_file.symbolic.params == {"k": 2.0, "c": 0.5}


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_loads(path):
    s = System.from_file(path)
    assert isinstance(s, System)
    assert s.residual() <= 1e-8
    x = _rand_in(s.domain)
    out = s.f(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    a, b = s.linearize()
    assert a.shape == (s.n_states, s.n_states)
    assert b.shape == (s.n_states, s.n_inputs)


def test_examples_are_present():
    assert {p.stem for p in EXAMPLES} >= {
        "pendulum",
        "duffing",
        "logistic_map",
        "controlled_pendulum",
    }


def test_pendulum_example():
    s = System.from_file(EXAMPLES[0].parent / "pendulum.toml")
    assert s.name == "my_pendulum"
    np.testing.assert_allclose(s.linearize()[0], [[0, 1], [-1, -0.1]], atol=1e-12)


def test_logistic_map_example():
    s = System.from_file(EXAMPLES[0].parent / "logistic_map.toml")
    assert s.is_discrete and s.dt == 0.5
    assert s.equilibrium == (1.0,)
    np.testing.assert_allclose(s.linearize()[0], [[0.5]], atol=1e-12)  # 1 + r (1 - 2 x*)


def test_duffing_example_has_the_stated_dynamics():
    s = System.from_file(EXAMPLES[0].parent / "duffing.toml")
    x = _rand_in(s.domain)
    p, q = x[:, 0], x[:, 1]
    expected = torch.stack([q, -p + 0.25 * p**3 - 0.4 * q], dim=1)
    torch.testing.assert_close(s.f(x), expected, rtol=0, atol=1e-12)


def test_controlled_pendulum_example_input_gain():
    s = System.from_file(EXAMPLES[0].parent / "controlled_pendulum.toml")
    a, b = s.linearize()
    np.testing.assert_allclose(b, [[0.0], [1 / (0.15 * 0.5**2)]], rtol=1e-12)
    np.testing.assert_allclose(a, [[0, 1], [9.81 / 0.5, -0.1 / (0.15 * 0.25)]], rtol=1e-12)


def test_controlled_pendulum_example_metadata():
    s = System.from_file(EXAMPLES[0].parent / "controlled_pendulum.toml")
    assert s.input_names == ("u",)
    assert s.domain.to_list() == [[-math.pi, math.pi], [-8.0, 8.0]]
    assert s.input_bounds.to_list() == [[-6.0, 6.0]]


# --------------------------------------------------------------------------- System (Python)


def _py_system(**kwargs) -> System:
    fields = {
        "name": "py",
        "dynamics": lambda x, u: torch.stack([x[:, 1], -x[:, 0] - x[:, 1]], dim=1),
        "state_names": ("x", "v"),
        "domain": Box.from_bounds([[-1, 1], [-2, 2]], ["x", "v"]),
    }
    fields.update(kwargs)
    return System(**fields)


def _py_controlled(**kwargs) -> System:
    fields = {
        "dynamics": lambda x, u: torch.stack([x[:, 1], -x[:, 0] + u[:, 0]], dim=1),
        "input_names": ("u",),
        "input_bounds": Box.from_bounds([[-1, 1]], ["u"]),
    }
    fields.update(kwargs)
    return _py_system(**fields)


def test_python_system_defaults():
    s = _py_system()
    assert s.equilibrium == (0.0, 0.0)
    assert s.equilibrium_input == ()
    assert s.is_autonomous and not s.is_discrete
    assert (s.n_states, s.n_inputs) == (2, 0)
    assert s.symbolic is None and s.equation_strings() is None
    assert "2 states" in str(s)


def _raises(kind, field, *parts, **kwargs):
    build = kwargs.pop("build", _py_system)
    with pytest.raises(LyapcertError) as info:
        build(**kwargs)
    exc = info.value
    assert type(exc) is kind, f"got {type(exc).__name__}: {exc}"
    assert isinstance(exc, ValueError)
    assert exc.field == field
    for part in parts:
        assert part in str(exc), f"{part!r} not in {exc}"
    return str(exc)


def test_python_system_validation():
    _raises(SystemDefinitionError, "states", "at least one state", state_names=())
    _raises(SystemDefinitionError, "dynamics", "callable", dynamics=3)
    _raises(
        SystemDefinitionError,
        "domain",
        "expected 2 intervals",
        "got 1",
        domain=Box.from_bounds([[-1, 1]], ["x"]),
    )
    _raises(SystemDefinitionError, "states", "'sin'", state_names=("sin", "v"))
    _raises(SystemDefinitionError, "states", "'pi'", state_names=("x", "pi"))
    _raises(SystemDefinitionError, "states", "duplicate name 'x'", state_names=("x", "x"))
    _raises(SystemDefinitionError, "states", "'x-1'", state_names=("x-1", "v"))
    _raises(
        SystemDefinitionError,
        "inputs",
        "both as state and input",
        build=_py_controlled,
        input_names=("x",),
    )
    _raises(SystemDefinitionError, "time", "'hybrid'", time="hybrid")
    _raises(SystemDefinitionError, "dt", "needs a step dt > 0", "None", time="discrete")
    _raises(SystemDefinitionError, "dt", "needs a step dt > 0", "0", time="discrete", dt=0)
    _raises(SystemDefinitionError, "dt", "only meaningful", "0.1", dt=0.1)
    _raises(
        SystemDefinitionError, "equilibrium", "expected 2 numbers, got 3", equilibrium=(0, 0, 0)
    )
    _raises(SystemDefinitionError, "equilibrium", "finite", "nan", equilibrium=(math.nan, 0.0))
    _raises(SystemDefinitionError, "equilibrium", "finite", "inf", equilibrium=(0.0, math.inf))
    _raises(SystemDefinitionError, "equilibrium", "list of 2 numbers", equilibrium="00")
    _raises(
        SystemDefinitionError,
        "equilibrium",
        "outside the domain",
        "[5.0, 0.0]",
        dynamics=lambda x, u: x - torch.tensor([5.0, 0.0], dtype=x.dtype),
        equilibrium=(5.0, 0.0),
    )
    _raises(
        SystemDefinitionError,
        "input_bounds",
        "without inputs",
        input_bounds=Box.from_bounds([[-1, 1]], ["u"]),
    )
    _raises(
        SystemDefinitionError,
        "input_bounds",
        "expected 1 intervals",
        "got 2",
        build=_py_controlled,
        input_bounds=Box.from_bounds([[-1, 1], [-1, 1]], ["a", "b"]),
    )
    _raises(
        SystemDefinitionError,
        "equilibrium_input",
        "expected 1 numbers, got 2",
        build=_py_controlled,
        equilibrium_input=(0.0, 0.0),
    )
    _raises(
        SystemDefinitionError,
        "equilibrium_input",
        "outside the input bounds",
        "[3.0]",
        build=_py_controlled,
        equilibrium_input=(3.0,),
        dynamics=lambda x, u: torch.stack([x[:, 1], -x[:, 0] + u[:, 0] - 3], dim=1),
    )


def test_python_system_equilibrium_checks():
    msg = _raises(
        EquilibriumError,
        "equilibrium",
        "not an equilibrium",
        "max |f(x*, u*)| = 1 ",
        dynamics=lambda x, u: torch.stack([x[:, 1] + 1, -x[:, 0]], dim=1),
    )
    assert "x* = [0.0, 0.0]" in msg
    _raises(
        EquilibriumError,
        "equilibrium",
        "not finite",
        dynamics=lambda x, u: torch.stack([x[:, 1] / x[:, 0], -x[:, 0]], dim=1),
    )
    _raises(
        EquilibriumError,
        "equilibrium",
        "max |f(x*, u*) - x*| = 0.5 ",
        dynamics=lambda x, u: 0.5 * x + 0.5,
        equilibrium=(1.0, 0.0),
        time="discrete",
        dt=0.1,
    )

    def broken(x, u):
        raise RuntimeError("boom")

    _raises(SystemDefinitionError, "dynamics", "evaluating the dynamics", "boom", dynamics=broken)
    # the check can be switched off, and the residual is still reported
    s = _py_system(dynamics=lambda x, u: x + 1, check_equilibrium=False)
    assert s.residual() == 1.0


def test_equilibrium_tolerance_is_relative_to_the_size_of_the_equilibrium():
    shift = torch.tensor([1000.0, 0.0], dtype=torch.float64)
    box = Box.from_bounds([[0, 2000], [-1, 1]], ["x", "v"])
    # residual 5e-6 <= 1e-8 * 1000: accepted
    _py_system(dynamics=lambda x, u: -(x - shift) + 5e-6, domain=box, equilibrium=(1000.0, 0.0))
    with pytest.raises(EquilibriumError, match="tolerance 1e-05"):
        _py_system(dynamics=lambda x, u: -(x - shift) + 5e-5, domain=box, equilibrium=(1000.0, 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("source", ["python", "equations"])
def test_f_keeps_the_dtype(dtype, source):
    if source == "python":
        s = _py_controlled()
    else:
        s = System.from_equations(
            "c",
            ["x", "v"],
            ["v", "-sin(x) - v + u"],
            [[-1, 1], [-2, 2]],
            inputs=["u"],
            input_bounds=[[-1, 1]],
        )
    x = _rand_in(s.domain, dtype=dtype)
    u = _rand_in(s.input_bounds, dtype=dtype, seed=1)
    for out in (s.f(x), s.f(x, u)):
        assert out.dtype == dtype
        assert out.shape == x.shape
    x64, u64 = x.double(), u.double()
    expected = torch.stack([x64[:, 1], -x64[:, 0] + u64[:, 0]], dim=1)
    if source == "equations":
        expected = torch.stack([x64[:, 1], -torch.sin(x64[:, 0]) - x64[:, 1] + u64[:, 0]], dim=1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(s.f(x, u).double(), expected, rtol=0, atol=tol)
    # the default input is u*
    torch.testing.assert_close(s.f(x), s.f(x, torch.zeros_like(u)), rtol=0, atol=0)


def test_f_of_a_registry_system_keeps_float32():
    s = get_system("inverted_pendulum")
    x = _rand_in(s.domain, dtype=torch.float32)
    assert s.f(x).dtype == torch.float32
    assert s.f(x, torch.zeros(x.shape[0], 1, dtype=torch.float32)).dtype == torch.float32


def test_wrong_shapes_raise_shape_error():
    s = _py_controlled()
    good = torch.zeros(4, 2, dtype=torch.float64)
    bad_inputs = [
        (torch.zeros(2, dtype=torch.float64), None, "x: expected shape [batch, 2]"),
        (torch.zeros(4, 3, dtype=torch.float64), None, "got [4, 3]"),
        (torch.zeros(4, 2, 1, dtype=torch.float64), None, "got [4, 2, 1]"),
        (np.zeros((4, 2)), None, "x: expected a torch.Tensor"),
        (good, torch.zeros(4, 2, dtype=torch.float64), "u: expected shape [4, 1]"),
        (good, torch.zeros(3, 1, dtype=torch.float64), "got [3, 1]"),
        (good, torch.zeros(4, dtype=torch.float64), "got [4]"),
        (good, np.zeros((4, 1)), "got ndarray"),
    ]
    for x, u, part in bad_inputs:
        with pytest.raises(ShapeError) as info:
            s.f(x, u)
        assert isinstance(info.value, ValueError)
        assert part in str(info.value)
    with pytest.raises(ShapeError, match=r"states \(x, v\)"):
        s.f(torch.zeros(4, 3))


def test_dynamics_with_the_wrong_output_shape_raise_shape_error():
    s = _py_system(dynamics=lambda x, u: x[:, :1] * 0)
    with pytest.raises(ShapeError, match=r"returned shape \[4, 1\], expected \[4, 2\]"):
        s.f(torch.zeros(4, 2))


def test_autonomous_f_accepts_an_empty_input():
    s = get_system("damped_sho")
    x = _rand_in(s.domain)
    torch.testing.assert_close(s.f(x, torch.zeros(x.shape[0], 0, dtype=x.dtype)), s.f(x))
    with pytest.raises(ShapeError, match="inputs \\(none\\)"):
        s.f(x, torch.zeros(x.shape[0], 1, dtype=x.dtype))


# --------------------------------------------------------------------------- transformations


def test_linearize_damped_sho():
    s = get_system("damped_sho")
    a, b = s.linearize()
    np.testing.assert_allclose(a, [[0.0, 1.0], [-1.0, -1.0]], rtol=0, atol=1e-14)
    assert b.shape == (2, 0)
    assert a.dtype == np.float64
    np.testing.assert_allclose(sorted(s.eigenvalues().real), [-0.5, -0.5], atol=1e-12)


def test_linearize_inverted_pendulum():
    s = get_system("inverted_pendulum")
    a, b = s.linearize()
    m, l, damping, g = 0.15, 0.5, 0.1, 9.81
    np.testing.assert_allclose(b, [[0.0], [1 / (m * l**2)]], rtol=1e-14, atol=0)
    np.testing.assert_allclose(b, [[0.0], [26.6667]], rtol=0, atol=1e-4)
    np.testing.assert_allclose(a, [[0, 1], [g / l, -damping / (m * l**2)]], rtol=1e-14, atol=0)


def test_linearize_uses_the_stated_equilibrium():
    s = System.from_equations(
        "shifted",
        ["x"],
        ["-(x - 1) - (x - 1)**3 + u"],
        [[0, 2]],
        inputs=["u"],
        equilibrium=[1],
        equilibrium_input=[0],
        input_bounds=[[-1, 1]],
    )
    a, b = s.linearize()
    np.testing.assert_allclose(a, [[-1.0]], atol=1e-14)
    np.testing.assert_allclose(b, [[1.0]], atol=1e-14)


def test_discretize_damped_sho():
    ct = get_system("damped_sho")
    dt_sys = ct.discretize(0.1)
    assert dt_sys.is_discrete and dt_sys.time == "discrete" and dt_sys.dt == 0.1
    assert dt_sys.name == "damped_sho-dt"
    assert ct.discretize(0.1, name="other").name == "other"
    assert dt_sys.equilibrium == ct.equilibrium
    assert dt_sys.domain == ct.domain
    x = _rand_in(ct.domain)
    torch.testing.assert_close(dt_sys.f(x), x + 0.1 * ct.f(x), rtol=0, atol=1e-15)
    a_ct, _ = ct.linearize()
    a_dt, b_dt = dt_sys.linearize()
    np.testing.assert_allclose(a_dt, np.eye(2) + 0.1 * a_ct, rtol=0, atol=1e-14)
    np.testing.assert_allclose(a_dt, [[1.0, 0.1], [-0.1, 0.9]], rtol=0, atol=1e-14)
    assert b_dt.shape == (2, 0)
    assert dt_sys.equation_strings()[0].startswith("x+ = ")
    assert ct.equation_strings()[0] == "x' = v"
    assert dt_sys.residual() == 0.0


def test_discretize_controlled_system_matches_the_registry_variant():
    ct = get_system("inverted_pendulum")
    dt_sys = ct.discretize(0.05, name="inverted_pendulum-dt")
    _, b_ct = ct.linearize()
    _, b_dt = dt_sys.linearize()
    np.testing.assert_allclose(b_dt, 0.05 * b_ct, rtol=1e-14)
    assert dt_sys.input_bounds == ct.input_bounds
    assert dt_sys.fingerprint() == get_system("inverted_pendulum-dt").fingerprint()


def test_discretize_validation():
    ct = get_system("damped_sho")
    for bad in (0, -0.1, math.nan, math.inf, True, "0.1"):
        with pytest.raises(SystemDefinitionError) as info:
            ct.discretize(bad)
        assert info.value.field == "dt"
    with pytest.raises(SystemDefinitionError, match="already discrete-time") as info:
        ct.discretize(0.1).discretize(0.1)
    assert info.value.field == "time"


def test_discretized_symbolic_model_is_consistent():
    dt_sys = get_system("damped_sho").discretize(0.1)
    for expr in dt_sys.symbolic.dynamics:
        names = [s.name for s in expr.free_symbols]
        assert len(names) == len(set(names)), f"two symbols share a name in {expr}"
    rebuilt = System.from_equations(**dt_sys.symbolic.spec)
    assert rebuilt.fingerprint() == dt_sys.fingerprint()


# --------------------------------------------------------------------------- fingerprint


def _osc(**overrides) -> System:
    spec = {
        "name": "osc",
        "states": ["x", "v"],
        "dynamics": ["v", "-k*x - c*v"],
        "domain": [[-1, 1], [-2, 2]],
        "params": {"k": 1.0, "c": 0.5},
    }
    spec.update(overrides)
    return System.from_equations(**spec)


def test_fingerprint_of_equation_systems():
    fp = _osc().fingerprint()
    assert isinstance(fp, str) and len(fp) == 16
    int(fp, 16)
    assert _osc().fingerprint() == fp
    assert _osc(params={"k": 1.0, "c": 0.6}).fingerprint() != fp
    assert _osc(params={"k": 2.0, "c": 0.5}).fingerprint() != fp
    assert _osc(domain=[[-1, 1], [-3, 3]]).fingerprint() != fp
    assert _osc(dynamics=["v", "-k*x - c*v**3"]).fingerprint() != fp
    assert (
        _osc(time="discrete", dt=0.1, dynamics=["x + 0.1*v", "v - 0.1*(k*x + c*v)"]).fingerprint()
        != fp
    )
    # the same equations through a table give the same hash
    assert _osc(dynamics={"v": "-k*x - c*v", "x": "v"}).fingerprint() == fp


def test_fingerprint_of_python_systems():
    fp = _py_system().fingerprint()
    assert _py_system().fingerprint() == fp
    assert (
        _py_system(
            dynamics=lambda x, u: torch.stack([x[:, 1], -2 * x[:, 0] - x[:, 1]], dim=1)
        ).fingerprint()
        != fp
    )
    assert _py_system(domain=Box.from_bounds([[-1, 1], [-3, 3]], ["x", "v"])).fingerprint() != fp


# --------------------------------------------------------------------------- Box


def test_box_from_bounds_and_properties():
    box = Box.from_bounds([[-1, 3], [0, 2.5]], ["x", "y"])
    assert box.lower == (-1.0, 0.0) and box.upper == (3.0, 2.5)
    assert all(isinstance(v, float) for v in box.lower + box.upper)
    assert box.dim == 2
    assert box.width == (4.0, 2.5)
    assert box.center == (1.0, 1.25)
    assert box.volume == 10.0
    assert box.to_list() == [[-1.0, 3.0], [0.0, 2.5]]
    assert str(box) == "[-1, 3] x [0, 2.5]"
    lo, hi = box.as_tensors(torch.float32)
    assert lo.dtype == torch.float32 and lo.tolist() == [-1.0, 0.0] and hi.tolist() == [3.0, 2.5]
    pts = torch.tensor([[0.0, 0.0], [3.0, 2.5], [3.1, 1.0], [0.0, -1e-9]], dtype=torch.float64)
    assert box.contains(pts).tolist() == [True, True, False, False]
    assert box.contains_point((-1, 2.5)) and not box.contains_point((-1.5, 0))
    assert Box.from_bounds([[0, 0]], ["u"], "input_bounds", allow_degenerate=True).width == (0.0,)


@pytest.mark.parametrize(
    ("bounds", "parts"),
    [
        ([[-1, 1]], ["domain:", "expected one [lo, hi] pair per name (2: x, y)", "got 1"]),
        ([[-1, 1], [1, 1]], ["domain.y:", "lo < hi", "[1.0, 1.0]"]),
        ([[2, 1], [0, 1]], ["domain.x:", "lo < hi", "[2.0, 1.0]"]),
        ([[-1, 1], [0]], ["domain.y:", "pair", "[0]"]),
        ([[-1, 1], "01"], ["domain.y:", "pair", "'01'"]),
        ([[-1, 1], [0, "1"]], ["domain.y:", "expected a number", "'1'"]),
        ([[True, 1], [0, 1]], ["domain.x:", "expected a number", "True"]),
        ([[math.nan, 1], [0, 1]], ["domain.x:", "finite", "nan"]),
        ([[-1, 1], [0, math.inf]], ["domain.y:", "finite", "inf"]),
    ],
)
def test_box_from_bounds_validation(bounds, parts):
    with pytest.raises(SystemDefinitionError) as info:
        Box.from_bounds(bounds, ["x", "y"])
    assert isinstance(info.value, ValueError)
    for part in parts:
        assert part in str(info.value)


def test_input_box_may_be_degenerate_but_not_inverted():
    with pytest.raises(SystemDefinitionError, match=r"input_bounds\.u: expected lo < hi"):
        Box.from_bounds([[1, 0]], ["u"], "input_bounds", allow_degenerate=True)
    s = System.from_equations(
        "s", ["x"], ["-x + u"], [[-1, 1]], inputs=["u"], input_bounds=[[0, 0]]
    )
    assert s.input_bounds.to_list() == [[0.0, 0.0]]


def test_system_rejects_an_infinite_domain():
    with pytest.raises(SystemDefinitionError, match="expected finite bounds"):
        _py_system(domain=Box((-math.inf, -1.0), (math.inf, 1.0)))


# --------------------------------------------------------------------------- CLI


def _combined_output(result) -> str:
    """stdout and stderr together, whichever way this click/typer version captures them."""
    text = result.output
    try:
        err = result.stderr
    except (ValueError, AttributeError):  # stderr mixed into output
        err = ""
    return text if err and err in text else text + err


def _json_object(text: str) -> dict:
    """The first JSON object printed on a line of its own in ``text``."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            obj, _ = json.JSONDecoder().raw_decode(text[offset:])
            assert isinstance(obj, dict)
            return obj
        offset += len(line)
    raise AssertionError(f"no JSON object in {text!r}")


CLI_CASES = [
    ("unknown-symbol", {**BASE, "dynamics": ["-x + q"]}, "ExpressionError", ["dynamics.x", "'q'"]),
    ("unknown-key", {**BASE, "foo": 1}, "ConfigFileError", ["'foo'"]),
    (
        "not-an-equilibrium",
        {**BASE, "dynamics": ["-x + 1"]},
        "EquilibriumError",
        ["equilibrium", "= 1 "],
    ),
    ("domain-nan", {**BASE, "domain": [[math.nan, 1]]}, "ExpressionError", ["domain.x", "nan"]),
    ("dt-with-continuous-time", {**BASE, "dt": 0.1}, "SystemDefinitionError", ["dt", "0.1"]),
    (
        "reserved-name",
        {**BASE, "states": ["sin"], "dynamics": ["-sin"]},
        "SystemDefinitionError",
        ["states", "'sin'"],
    ),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    ("label", "spec", "kind", "parts"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_cli_roa_exits_2_on_a_bad_file_and_writes_nothing(
    tmp_path, monkeypatch, label, spec, kind, parts, as_json
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LYAPCERT_CACHE_DIR", str(tmp_path / "env-cache"))
    path = _write_toml(tmp_path / "bad.toml", spec)
    args = ["roa", str(path), "--out", str(tmp_path / "out")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, args + (["--json"] if as_json else []))
    assert result.exit_code == 2, _combined_output(result)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    combined = _combined_output(result)
    assert "error" in combined
    assert str(path) in combined
    for part in parts:
        assert part in combined
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
    if as_json:
        payload = _json_object(result.stdout)
        assert set(payload) >= {"error", "error_type"}
        assert payload["error_type"] == kind
        assert str(path) in payload["error"]
        for part in parts:
            assert part in payload["error"]


@pytest.mark.parametrize(
    ("target", "part"),
    [("missing.toml", "no such file"), ("no_such_system", "neither a registry name")],
)
def test_cli_exits_2_on_an_unknown_system(tmp_path, monkeypatch, target, part):
    monkeypatch.chdir(tmp_path)
    args = ["roa", target, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2
    assert part in _json_object(result.stdout)["error"]
    assert list(tmp_path.iterdir()) == []


def test_cli_show_exits_2_on_a_bad_file(tmp_path):
    path = _write_toml(tmp_path / "bad.toml", {**BASE, "domain": [[1, -1]]})
    result = CliRunner().invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert "domain.x" in _combined_output(result)


def test_cli_show_accepts_a_good_file():
    path = EXAMPLES[0].parent / "pendulum.toml"
    result = CliRunner().invoke(app, ["show", str(path), "--json"])
    assert result.exit_code == 0, _combined_output(result)
    info = _json_object(result.stdout)
    assert info["name"] == "my_pendulum"
    np.testing.assert_allclose(info["A"], [[0, 1], [-1, -0.1]], atol=1e-12)
    assert info["locally_exponentially_stable"] is True


def test_ready_candidates_from_a_file_are_named_on_the_command_line(tmp_path):
    """A definition's ``candidates`` table: ``--candidate NAME`` verifies that expression (with
    the file's parameters), ``show`` lists it, and a discrete-time variant keeps it."""
    path = tmp_path / "sys.toml"
    path.write_text(
        'name = "decay"\nstates = ["x", "y"]\ndynamics = ["-x", "-k*y"]\n'
        "domain = [[-1, 1], [-1, 1]]\n[params]\nk = 2.0\n"
        '[candidates]\nbowl = "x**2 + y**2/k"\n'
    )
    s = load_system_file(path)
    assert s.candidates == {"bowl": "x**2 + y**2/k"}
    assert s.discretize(0.1).candidates == s.candidates
    runner = CliRunner()
    shown = runner.invoke(app, ["show", str(path)])
    assert shown.exit_code == 0 and "bowl: V = x**2 + y**2/k" in shown.output
    res = runner.invoke(app, ["verify", str(path), "--candidate", "bowl", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["verdict"] == "verified"
    assert "x**2" in data["candidate"] and "bowl" not in data["candidate"]
