"""The safe expression parser (text -> sympy) and the sympy -> torch compiler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from lyapcert.errors import ExpressionError, SystemDefinitionError
from lyapcert.systems.equations import (
    CONSTANTS,
    FUNCTIONS,
    RESERVED,
    compile_expression,
    compile_vector,
    evaluate_constant,
    parse_expression,
)

X, Y, Z = sympy.symbols("x y z", real=True)
SYMBOLS = {"x": X, "y": Y, "z": Z}
BATCH = 64
ATOL = 1e-12

# numpy reference and a sampling interval inside the function's real domain
NUMPY_REFERENCE = {
    "sin": (np.sin, (-3.0, 3.0)),
    "cos": (np.cos, (-3.0, 3.0)),
    "tan": (np.tan, (-1.2, 1.2)),
    "asin": (np.arcsin, (-0.99, 0.99)),
    "acos": (np.arccos, (-0.99, 0.99)),
    "atan": (np.arctan, (-5.0, 5.0)),
    "sinh": (np.sinh, (-3.0, 3.0)),
    "cosh": (np.cosh, (-3.0, 3.0)),
    "tanh": (np.tanh, (-3.0, 3.0)),
    "exp": (np.exp, (-3.0, 3.0)),
    "log": (np.log, (0.05, 5.0)),
    "sqrt": (np.sqrt, (0.0, 5.0)),
    "abs": (np.abs, (-3.0, 3.0)),
}


def _points(lo: float, hi: float, cols: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=(BATCH, cols))


def _run(text: str, pts: np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Parse ``text`` over x, y, z, compile it and evaluate it at the rows of ``pts``."""
    expr = parse_expression(text, SYMBOLS, "test")
    fn = compile_vector([expr], [[X, Y, Z]])
    out = fn(torch.tensor(pts, dtype=dtype))
    assert out.shape == (pts.shape[0], 1)
    assert out.dtype == dtype
    return out[:, 0].numpy()


def _error(text, field="dynamics.x2", symbols=None) -> str:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, SYMBOLS if symbols is None else symbols, field)
    exc = info.value
    assert isinstance(exc, SystemDefinitionError)
    assert isinstance(exc, ValueError)
    assert exc.field == field
    message = str(exc)
    assert message.startswith(f"{field}: "), message
    return message


# --------------------------------------------------------------------------- parsing


def test_reference_table_covers_every_function():
    assert set(NUMPY_REFERENCE) | {"min", "max"} == set(FUNCTIONS)
    assert set(CONSTANTS) == {"pi", "e"}
    assert frozenset(FUNCTIONS) | frozenset(CONSTANTS) == RESERVED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + y", X + Y),
        ("x - y", X - Y),
        ("x * y", X * Y),
        ("x / y", X / Y),
        ("x ** 3", X**3),
        ("x ^ 3", X**3),
        ("x^2", X**2),
        ("-x", -X),
        ("+x", X),
        ("--x", X),
        ("-x**2", -(X**2)),
        ("2*x + 3", 2 * X + 3),
        ("(x + y)*z", (X + Y) * Z),
        ("pi", sympy.pi),
        ("e", sympy.E),
        ("e**x", sympy.exp(X)),
        ("2*pi*x", 2 * sympy.pi * X),
        ("1.5", sympy.Float(1.5)),
        ("  x  ", X),
    ],
)
def test_parse_builds_the_expected_sympy_expression(text, expected):
    got = parse_expression(text, SYMBOLS, "f")
    assert sympy.simplify(got - expected) == 0


def test_parse_accepts_plain_numbers():
    assert parse_expression(3, {}, "f") == sympy.Integer(3)
    assert isinstance(parse_expression(3, {}, "f"), sympy.Integer)
    assert float(parse_expression(0.25, {}, "f")) == 0.25
    assert parse_expression("7", {}, "f") == 7


def test_power_caret_and_double_star_agree_on_single_powers():
    assert parse_expression("2^3", {}, "f") == 8  # a power, not Python's xor (which gives 1)
    assert parse_expression("x^-1", SYMBOLS, "f") == 1 / X


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x^2 + 1", X**2 + 1),
        ("2*x^2", 2 * X**2),
        ("-x^2", -(X**2)),
        ("x^2^3", X**8),  # right-associative, like **
        ("x^2 - y^2", X**2 - Y**2),
    ],
)
def test_caret_has_the_precedence_of_a_power(text, expected):
    assert sympy.simplify(parse_expression(text, SYMBOLS, "f") - expected) == 0


def test_power_with_double_star_is_right_associative():
    assert parse_expression("x**2**3", SYMBOLS, "f") == X**8


# --------------------------------------------------------------------------- compiling


@pytest.mark.parametrize("name", sorted(NUMPY_REFERENCE))
def test_every_function_matches_numpy(name):
    ref, (lo, hi) = NUMPY_REFERENCE[name]
    pts = _points(lo, hi)
    np.testing.assert_allclose(_run(f"{name}(x)", pts), ref(pts[:, 0]), rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(NUMPY_REFERENCE))
def test_every_function_of_a_compound_argument_matches_numpy(name):
    ref, (lo, hi) = NUMPY_REFERENCE[name]
    pts = _points(lo, hi, seed=1)
    # the argument (x + y)/2 stays in [lo, hi]
    np.testing.assert_allclose(
        _run(f"{name}((x + y)/2)", pts), ref((pts[:, 0] + pts[:, 1]) / 2), rtol=0, atol=ATOL
    )


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("min(x, y)", lambda p: np.minimum(p[:, 0], p[:, 1])),
        ("max(x, y)", lambda p: np.maximum(p[:, 0], p[:, 1])),
        ("min(x, y, z)", lambda p: np.min(p, axis=1)),
        ("max(x, y, z)", lambda p: np.max(p, axis=1)),
        ("max(x, 0)", lambda p: np.maximum(p[:, 0], 0.0)),
        ("min(0.5, x)", lambda p: np.minimum(p[:, 0], 0.5)),
        ("max(x, -1, y)", lambda p: np.maximum(np.maximum(p[:, 0], -1.0), p[:, 1])),
        ("min(x*y, sin(z))", lambda p: np.minimum(p[:, 0] * p[:, 1], np.sin(p[:, 2]))),
    ],
)
def test_min_max_match_numpy(text, reference):
    pts = _points(-2.0, 2.0, seed=2)
    np.testing.assert_allclose(_run(text, pts), reference(pts), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("x**2", lambda x: x**2),
        ("x**3", lambda x: x**3),
        ("x^4", lambda x: x**4),
        ("x**-1", lambda x: 1 / x),
        ("x**-2", lambda x: 1 / x**2),
        ("x**(-3)", lambda x: 1 / x**3),
        ("x**0.5", np.sqrt),
        ("x**(1/2)", np.sqrt),
        ("x**(-1/2)", lambda x: 1 / np.sqrt(x)),
        ("x**-0.5", lambda x: 1 / np.sqrt(x)),
        ("x**1.5", lambda x: x**1.5),
        ("x**(1/3)", np.cbrt),
        ("2**x", lambda x: 2.0**x),
        ("e**x", np.exp),
        ("x**x", lambda x: x**x),
    ],
)
def test_powers_match_numpy(text, reference):
    pts = _points(0.1, 3.0, seed=3)
    np.testing.assert_allclose(_run(text, pts), reference(pts[:, 0]), rtol=1e-13, atol=ATOL)


def test_integer_powers_of_negative_bases():
    pts = _points(-3.0, -0.1, seed=4)
    x = pts[:, 0]
    np.testing.assert_allclose(_run("x**3", pts), x**3, rtol=1e-13, atol=ATOL)
    np.testing.assert_allclose(_run("x**-3", pts), x**-3.0, rtol=1e-13, atol=ATOL)
    np.testing.assert_allclose(_run("x^2", pts), x**2, rtol=1e-13, atol=ATOL)


def test_arithmetic_with_pi_and_e_matches_math():
    pts = _points(-2.0, 2.0, seed=5)
    x, y, z = pts.T
    got = _run("-x*pi + y/e - (z - 1)**2 / (1 + x**2) + 3", pts)
    expected = -x * math.pi + y / math.e - (z - 1) ** 2 / (1 + x**2) + 3
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_a_compound_expression_matches_numpy():
    pts = _points(-1.0, 1.0, seed=6)
    x, y, z = pts.T
    got = _run("sin(x)*exp(-y) + abs(z)*sqrt(1 + x**2) - atan(x*y)/cosh(z) + log(2 + y)", pts)
    expected = (
        np.sin(x) * np.exp(-y)
        + np.abs(z) * np.sqrt(1 + x**2)
        - np.arctan(x * y) / np.cosh(z)
        + np.log(2 + y)
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3.0),
        ("pi", math.pi),
        ("e", math.e),
        ("2*pi/3", 2 * math.pi / 3),
        ("sin(1)", math.sin(1)),
    ],
)
def test_constant_expressions_broadcast_to_the_batch(text, value):
    pts = _points(-1.0, 1.0, seed=7)
    got = _run(text, pts)
    assert got.shape == (BATCH,)
    np.testing.assert_allclose(got, np.full(BATCH, value), rtol=0, atol=ATOL)


def test_compile_vector_stacks_columns_and_mixes_constants():
    u = sympy.Symbol("u", real=True)
    symbols = {**SYMBOLS, "u": u}
    exprs = [parse_expression(t, symbols, "f") for t in ("x", "1", "y*z", "pi", "x + u")]
    fn = compile_vector(exprs, [[X, Y, Z], [u]])
    xs = torch.tensor(_points(-1.0, 1.0, seed=8))
    us = torch.tensor(_points(-1.0, 1.0, cols=1, seed=9))
    out = fn(xs, us)
    assert out.shape == (BATCH, 5)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0], xs[:, 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(out[:, 1], torch.ones(BATCH, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2], xs[:, 1] * xs[:, 2], rtol=0, atol=ATOL)
    torch.testing.assert_close(
        out[:, 3], torch.full((BATCH,), math.pi, dtype=torch.float64), rtol=0, atol=ATOL
    )
    torch.testing.assert_close(out[:, 4], xs[:, 0] + us[:, 0], rtol=0, atol=ATOL)


def test_compile_vector_of_constants_only():
    fn = compile_vector([sympy.Integer(2), sympy.pi], [[X]])
    out = fn(torch.zeros(7, 1, dtype=torch.float64))
    assert out.shape == (7, 2)
    assert torch.all(out[:, 0] == 2.0)
    assert torch.allclose(out[:, 1], torch.full((7,), math.pi, dtype=torch.float64))
    # a first argument with no columns still gives one row per batch entry
    out = compile_vector([sympy.Integer(5)], [[]])(torch.zeros(4, 0, dtype=torch.float32))
    assert out.shape == (4, 1)
    assert out.dtype == torch.float32
    assert torch.all(out == 5.0)


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "3",
        "pi",
        "sin(x) + y**2",
        "x**-2 + sqrt(y)",
        "x**1.5",
        "2**x",
        "max(x, 0.5)",
        "min(x, y, 1)",
        "abs(x)*exp(y)",
        "log(y) + atan(z)",
    ],
)
def test_float32_in_float32_out(text):
    pts = _points(0.2, 2.0, seed=10)
    out32 = _run(text, pts, dtype=torch.float32)
    out64 = _run(text, pts, dtype=torch.float64)
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)


def test_compile_expression_returns_floats_for_constants_and_tensors_otherwise():
    assert compile_expression(sympy.pi)({}) == pytest.approx(math.pi, abs=1e-15)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    out = compile_expression(X**2 + 1)({X: t})
    assert isinstance(out, torch.Tensor)
    assert out.tolist() == [2.0, 5.0]


def test_compiled_closures_are_differentiable():
    expr = parse_expression("sin(x)*y**2", SYMBOLS, "f")
    fn = compile_vector([expr], [[X, Y, Z]])
    pts = torch.tensor(_points(-1.0, 1.0, seed=11), requires_grad=True)
    fn(pts).sum().backward()
    x, y = pts.detach()[:, 0], pts.detach()[:, 1]
    torch.testing.assert_close(pts.grad[:, 0], torch.cos(x) * y**2, rtol=0, atol=ATOL)
    torch.testing.assert_close(pts.grad[:, 1], 2 * torch.sin(x) * y, rtol=0, atol=ATOL)


def test_negative_constant_base_with_variable_exponent_is_a_typed_error():
    expr = parse_expression("x*(-2)**x", SYMBOLS, "f")
    with pytest.raises(ExpressionError, match="positive"):
        compile_expression(expr)


def test_huge_constant_powers_are_refused_quickly():
    with pytest.raises(ExpressionError, match="exponent above"):
        parse_expression("10**10**10", SYMBOLS, "f")


# --------------------------------------------------------------------------- rejection


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('echo hi')", "unknown function"),
        ("x.__class__", "unsupported construct Attribute"),
        ("().__class__.__bases__", "unsupported construct Attribute"),
        ("lambda: 1", "unsupported construct Lambda"),
        ("[1,2]", "unsupported construct List"),
        ("(1, 2)", "unsupported construct Tuple"),
        ("{1: 2}", "unsupported construct Dict"),
        ("x if x else 1", "unsupported construct IfExp"),
        ("'text'", "unsupported constant 'text'"),
        ("b'bytes'", "unsupported constant b'bytes'"),
        ("True", "unsupported constant True"),
        ("None", "unsupported constant None"),
        ("1j", "unsupported constant 1j"),
        ("x == 1", "unsupported construct Compare"),
        ("x < y", "unsupported construct Compare"),
        ("x and y", "unsupported construct BoolOp"),
        ("not x", "unsupported operator Not"),
        ("~x", "unsupported operator Invert"),
        ("x // 2", "unsupported operator FloorDiv"),
        ("x % 2", "unsupported operator Mod"),
        ("x @ y", "unsupported operator MatMult"),
        ("x << 1", "unsupported operator LShift"),
        ("x[0]", "unsupported construct Subscript"),
        ("f(x)", "unknown function 'f'"),
        ("eval('1')", "unknown function 'eval'"),
        ("x(1)", "unknown function 'x'"),
        ("sin.__call__(x)", "unknown function 'sin.__call__'"),
        ("sin(x, y)", "sin() takes 1 argument(s), got 2"),
        ("exp()", "exp() takes 1 argument(s), got 0"),
        ("min(x)", "min() takes two or more arguments, got 1"),
        ("max()", "max() takes two or more arguments, got 0"),
        ("sin(x=1)", "keyword arguments are not allowed in sin()"),
        ("sin(*[x])", "unsupported construct Starred"),
        ("sin", "function 'sin' used without arguments"),
        ("q + 1", "unknown symbol 'q'"),
        ("nan", "unknown symbol 'nan'"),
        ("inf", "unknown symbol 'inf'"),
        ("1e400", "expected a finite number"),
        ("[x for x in ()]", "unsupported construct ListComp"),
        ("(y := 2)", "unsupported construct NamedExpr"),
        ("f'{x}'", "unsupported construct JoinedStr"),
    ],
)
def test_rejected_constructs_name_the_field_and_the_problem(text, problem):
    message = _error(text)
    assert problem in message
    if text != "1e400":  # a literal overflowing to inf is refused before the tree is walked
        assert repr(text) in message  # the offending text is quoted
        assert "at column" in message


def test_the_unknown_symbol_message_lists_the_known_names():
    message = _error("-x + q", field="dynamics.x")
    assert "unknown symbol 'q'" in message
    assert "known names: x, y, z" in message
    assert "at column 6" in message
    assert _error("q", symbols={}).count("known names: none") == 1


def test_the_unknown_function_message_lists_the_allowed_functions():
    message = _error("foo(x) + 1")
    assert "unknown function 'foo'" in message
    for name in FUNCTIONS:
        assert name in message


@pytest.mark.parametrize(
    ("text", "column"),
    [("x + * 2", 5), ("x y", 3), ("x + 1)", 6), ("x ** ** 2", 6), ("x = 1", 3), ("sin(x", 4)],
)
def test_syntax_errors_give_the_column(text, column):
    message = _error(text)
    assert "syntax error" in message
    assert f"at column {column}" in message
    assert repr(text) in message


@pytest.mark.parametrize("text", ["import os", "x +", "(x", "2x", "x;y", "x\ny", "def f(): pass"])
def test_statements_and_broken_text_are_syntax_errors(text):
    assert "syntax error" in _error(text)


@pytest.mark.parametrize(
    ("text", "column"), [("x + foo(1)", 5), ("x + y.real", 5), ("1 + 2 + q", 9), ("sin(x, y)", 1)]
)
def test_construct_errors_give_the_column(text, column):
    assert f"at column {column}" in _error(text)


@pytest.mark.parametrize(
    "value", ["", "   ", True, None, [1], {"a": 1}, b"x", float("nan"), float("inf")]
)
def test_non_expressions_are_rejected(value):
    with pytest.raises(ExpressionError, match=r"^params\.k: "):
        parse_expression(value, SYMBOLS, "params.k")


def test_the_parser_never_evaluates_python(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    attempts = [
        f"__import__('pathlib').Path('{marker}').touch()",
        f"open('{marker}', 'w')",
        "__builtins__",
        "globals()",
        "exec('1')",
        "getattr(x, '__class__')",
    ]
    for text in attempts:
        with pytest.raises(ExpressionError):
            parse_expression(text, SYMBOLS, "f")
    assert not marker.exists()


# --------------------------------------------------------------------------- constants


def test_evaluate_constant_of_numbers_and_expressions():
    assert evaluate_constant("pi/3", {}, "domain.x") == pytest.approx(math.pi / 3, abs=1e-15)
    assert evaluate_constant(2, {}, "f") == 2.0
    assert isinstance(evaluate_constant(2, {}, "f"), float)
    assert evaluate_constant(-0.5, {}, "f") == -0.5
    assert evaluate_constant("-pi", {}, "f") == -math.pi
    assert evaluate_constant("e^2", {}, "f") == pytest.approx(math.e**2, abs=1e-14)
    assert evaluate_constant("sqrt(2)/2", {}, "f") == pytest.approx(math.sqrt(2) / 2, abs=1e-16)


def test_evaluate_constant_with_parameters():
    params = {"m": sympy.Float(0.486, 30), "g": sympy.Float(9.81, 30)}
    assert evaluate_constant("m*g/2", params, "equilibrium_input.u1") == pytest.approx(
        0.486 * 9.81 / 2, abs=1e-14
    )
    assert evaluate_constant("1.25*m*g", params, "input_bounds.u1") == pytest.approx(
        1.25 * 0.486 * 9.81, abs=1e-14
    )


def test_evaluate_constant_rejects_free_symbols():
    with pytest.raises(ExpressionError) as info:
        evaluate_constant("2*x + 1", {"x": X}, "domain.y")
    assert info.value.field == "domain.y"
    assert "expected a constant" in str(info.value)
    assert "depends on x" in str(info.value)
    assert "'2*x + 1'" in str(info.value)


def test_evaluate_constant_rejects_unknown_names():
    with pytest.raises(ExpressionError) as info:
        evaluate_constant("m*g", {"m": sympy.Integer(1)}, "params.w")
    message = str(info.value)
    assert message.startswith("params.w: ")
    assert "unknown symbol 'g'" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("log(0)", "log(0) is undefined: division by zero or a pole"),
        ("1/0", "1/0 is undefined: division by zero"),
        ("0**-1", "0**-1 is undefined: division by zero"),
        ("sqrt(-1)", "sqrt(-1) is not real-valued"),
        ("log(-1)", "log(-1) is not real-valued"),
        ("acos(2)", "acos(2) is not real-valued"),
        ("0/0", "0/0 is undefined"),
        ("exp(1000)", "evaluates to inf, expected a finite number"),
        ("1e400", "expected a finite number"),
    ],
)
def test_evaluate_constant_rejects_non_finite_and_complex_results(text, problem):
    with pytest.raises(ExpressionError) as info:
        evaluate_constant(text, {}, "params.k")
    assert info.value.field == "params.k"
    assert problem in str(info.value)
    assert str(info.value).startswith("params.k: ")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_evaluate_constant_rejects_non_finite_numbers(value):
    with pytest.raises(ExpressionError, match="expected a finite number"):
        evaluate_constant(value, {}, "params.k")
