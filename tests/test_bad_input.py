"""Bad input never crashes: non-real or undefined expressions are typed errors (exit 2, a JSON
``error`` under ``--json``, nothing written), in system files, ``System.from_equations``,
parameters and candidates."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import sympy
import torch
from typer.testing import CliRunner

from lyapcert import errors
from lyapcert.certificates import ExpressionCandidate
from lyapcert.cli import app
from lyapcert.errors import ExpressionError, LyapcertError
from lyapcert.systems import System, get_system
from lyapcert.systems.equations import compile_expression, parse_expression

# (expression in x, words the message must hold)
BAD = [
    ("-x + (-8)**(1/3)", ["(-8)**(1/3)", "not real-valued"]),
    ("-x + (-8)^(2/3)", ["(-8)**(2/3)", "not real-valued"]),
    ("-x + 0**(-1)", ["0**(-1)", "undefined: division by zero"]),
    ("-x + 1/0", ["1/0", "undefined: division by zero"]),
    ("-x + x/0", ["x/0", "undefined: division by zero"]),
    ("-x + x/(x - x)", ["x/(x - x)", "undefined: division by zero"]),
    ("-x + 0/0", ["0/0", "undefined"]),
    ("-x + log(-1)", ["log(-1)", "not real-valued"]),
    ("-x + log(0)", ["log(0)", "undefined"]),
    ("-x + sqrt(-4)", ["sqrt(-4)", "not real-valued"]),
    ("-x*sqrt(-4)", ["sqrt(-4)", "not real-valued"]),
    ("-x + asin(2)", ["asin(2)", "not real-valued"]),
    ("-x + acos(-3)", ["acos(-3)", "not real-valued"]),
    ("-x + tan(pi/2)", ["tan(pi/2)", "undefined"]),
    ("-x + sqrt(-x**2)", ["sqrt(-x**2)", "not real-valued"]),
    ("-x*exp(1000)", ["exp(1000)", "float64 range"]),
    ("-x + 10**400", ["float64 range"]),
    ("-x + e**1000", ["float64 range"]),
]
BAD_IDS = [b[0] for b in BAD]


def _system(dynamics, **kw):
    return System.from_equations("t", ["x"], [dynamics], [[-1, 1]], **kw)


@pytest.mark.parametrize(("text", "words"), BAD, ids=BAD_IDS)
def test_bad_dynamics_are_typed_errors(text, words):
    with pytest.raises(ExpressionError) as info:
        _system(text)
    assert info.value.field == "dynamics.x"
    for w in words:
        assert w in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "params", "words"),
    [
        ("-x/a", {"a": 0}, ["'-x/a'", "'a': 0.0", "division by zero"]),
        ("-x + log(a)", {"a": -1}, ["not real-valued"]),
        ("-x + a**(1/3)", {"a": -8}, ["not real-valued"]),
        ("-x + asin(a)", {"a": 2}, ["not real-valued"]),
        ("-x*b", {"b": "log(-1)"}, ["params.b", "log(-1)", "not real-valued"]),
    ],
)
def test_parameters_that_make_an_expression_undefined_are_typed_errors(text, params, words):
    with pytest.raises(ExpressionError) as info:
        _system(text, params=params)
    for w in words:
        assert w in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("equilibrium.x", {"equilibrium": ["(-8)**(1/3)"]}),
        ("domain.x", {"domain": [["log(-1)", 1]]}),
        ("domain.x", {"domain": [[-1, "1/0"]]}),
    ],
)
def test_bad_constants_in_other_fields_are_typed_errors(field, kw):
    spec = {"name": "t", "states": ["x"], "dynamics": ["-x"], "domain": [[-1, 1]], **kw}
    with pytest.raises(ExpressionError) as info:
        System.from_equations(**spec)
    assert str(info.value).startswith(field), str(info.value)


@pytest.mark.parametrize(("text", "words"), BAD, ids=BAD_IDS)
def test_bad_candidates_are_typed_errors(text, words):
    s = _system("-x")
    with pytest.raises(ExpressionError) as info:
        ExpressionCandidate(f"x**2 + ({text})", s)
    assert info.value.field == "candidate"
    for w in words:
        assert w in str(info.value), str(info.value)


def test_candidate_undefined_through_a_parameter():
    s = get_system("damped_sho")  # zeta = 0.5
    with pytest.raises(ExpressionError, match="division by zero"):
        ExpressionCandidate("x**2/(zeta - 0.5) + v**2", s)


def test_a_real_expression_with_sqrt_of_a_state_is_still_accepted():
    """Undefined only for some states: allowed (the bound engine's enclosure is unbounded
    there); likewise real constants that sympy writes with radicals."""
    s = _system("-x + x**3 - sqrt(4)*x + 8**(1/3)*x - (-8)*x/4 - acos(-1)*0")
    assert s.f(torch.tensor([[0.5]], dtype=torch.float64)).shape == (1, 1)
    ExpressionCandidate("sqrt(x**2 + 1) - 1 + log(1 + x**2) + asin(1)*0", s)


def test_random_constant_expressions_never_crash():
    """A small property tier: constants built from awkward numbers, the operators and every
    function are either real finite constants (and compile) or an ``ExpressionError``."""
    numbers = ["-8", "-1", "0", "0.5", "2", "1e308", "pi"]
    funcs = ["sin", "tan", "asin", "acos", "atan", "sinh", "exp", "log", "sqrt", "abs", "tanh"]
    ops = ["+", "-", "*", "/", "**"]
    rng = np.random.default_rng(12)
    texts = [f"{f}({a}{op}{b})" for f, a, op, b in itertools.product(funcs, numbers, ops, numbers)]
    texts = list(rng.choice(texts, 400, replace=False))
    texts += [f"{a}{op}{b}" for a, op, b in itertools.product(numbers, ops, numbers)]
    accepted = 0
    for text in texts:
        try:
            expr = parse_expression(text, {}, "k")
            value = compile_expression(expr)({})
        except ExpressionError:
            continue
        assert isinstance(value, float) and math.isfinite(value), text
        exact = complex(sympy.N(expr, 30))
        assert exact.imag == 0 and value == pytest.approx(exact.real, rel=1e-15, abs=1e-300)
        accepted += 1
    assert 100 < accepted < len(texts)


# ------------------------------------------------------------------------------------ command line

BAD_TOML = """
name = "bad"
states = ["x", "y"]
dynamics = ["-x + (-8)**(1/3)", "-y"]
domain = [[-1, 1], [-1, 1]]
"""


@pytest.fixture
def runner():
    return CliRunner()


def _error(result):
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    data = json.loads(result.stdout)
    assert set(data) == {"error", "error_type"}
    return data


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "{file}", "-c", "x**2 + y**2", "--out", "{out}"],
        ["certify", "{file}", "--out", "{out}"],
        ["roa", "{file}", "--out", "{out}", "--cache-dir", "{cache}"],
        ["show", "{file}"],
    ],
    ids=["verify", "certify", "roa", "show"],
)
def test_cli_bad_system_file_is_exit_2_with_a_json_error(runner, tmp_path, args):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_TOML)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [a.format(file=path, out=out, cache=cache) for a in args]
    data = _error(runner.invoke(app, [*args, "--json"]))
    assert data["error_type"] == "ExpressionError"
    assert "dynamics.x" in data["error"] and "not real-valued" in data["error"]
    assert not out.exists() and not cache.exists()


@pytest.mark.parametrize(
    ("candidate", "words"),
    [
        ("(-8)**(1/3) + x**2 + v**2", "not real-valued"),
        ("x**2 + v**2 + 0**(-1)", "undefined: division by zero"),
        ("x**2 + v**2*log(-2)", "not real-valued"),
        ("x**2 + v**2 + asin(2)", "not real-valued"),
        ("x**2 + v**2 + 0/0", "undefined"),
        ("x**2*exp(1000) + v**2", "float64 range"),
        ("x**2/(zeta - 0.5) + v**2", "division by zero"),
    ],
)
def test_cli_bad_candidate_is_exit_2_with_a_json_error(runner, tmp_path, candidate, words):
    out = tmp_path / "out"
    args = ["verify", "damped_sho", "-c", candidate, "--out", str(out), "--json"]
    data = _error(runner.invoke(app, args))
    assert data["error_type"] == "ExpressionError"
    assert data["error"].startswith("candidate: ") and words in data["error"]
    assert not out.exists()
    plain = runner.invoke(app, args[:-1])
    assert plain.exit_code == 2 and "Traceback" not in plain.output


def test_cli_kinked_candidate_is_verified_saved_and_rechecked(runner, tmp_path):
    """max(x^2, y^2) on nonpoly0 (true: see test_kinked_candidates): verified, saved, and the
    saved certificate re-verifies from its folder."""
    out = tmp_path / "cert"
    args = ["verify", "nonpoly0", "-c", "max(x**2, y**2)", "--no-volume", "--out", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "verified" and 0.9 < data["level"] <= 1.0
    again = runner.invoke(app, ["verify", data["certificate_dir"], "--json"])
    assert again.exit_code == 0, again.output


def test_cli_kinked_candidate_that_fails_is_exit_1_not_a_crash(runner):
    args = ["verify", "damped_sho", "-c", "abs(x)+abs(v)", "--no-volume", "--max-boxes", "40000"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] != "verified"


def test_cli_certificate_with_a_bad_expression_is_exit_2(runner, tmp_path):
    """A hand-edited certificate folder whose candidate is undefined: a typed error on re-check."""
    out = tmp_path / "cert"
    args = ["verify", "nonpoly0", "-c", "x**2 + y**2", "--no-volume", "--out", str(out)]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    folder = tmp_path / "cert"
    files = [p for p in folder.rglob("*.json") if "x**2 + y**2" in p.read_text()]
    assert files, "the candidate expression is stored in the certificate"
    for p in files:
        p.write_text(p.read_text().replace("x**2 + y**2", "x**2 + y**2 + log(-1)"))
    data = _error(runner.invoke(app, ["verify", str(folder), "--json"]))
    assert issubclass(getattr(errors, data["error_type"]), LyapcertError)
    assert "log(-1)" in data["error"] and "not real-valued" in data["error"]
