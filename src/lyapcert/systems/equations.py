"""Equations as text -> sympy expressions -> plain torch functions.

The text is parsed with Python's ``ast`` module into a syntax tree that is walked node by node:
only numbers, the declared names, the four arithmetic operators, powers (``**`` or ``^``) and a
fixed list of functions are accepted. Nothing is ever passed to ``eval``. The resulting sympy
expressions are compiled into closures that call torch operations only, so one definition serves
training, simulation and bound propagation.
"""

from __future__ import annotations

import ast
import cmath
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import sympy
import torch

from lyapcert.errors import ExpressionError

# name in the text -> (sympy constructor, number of arguments or None for "two or more")
FUNCTIONS: dict[str, tuple[Callable[..., sympy.Expr], int | None]] = {
    "sin": (sympy.sin, 1),
    "cos": (sympy.cos, 1),
    "tan": (sympy.tan, 1),
    "asin": (sympy.asin, 1),
    "acos": (sympy.acos, 1),
    "atan": (sympy.atan, 1),
    "sinh": (sympy.sinh, 1),
    "cosh": (sympy.cosh, 1),
    "tanh": (sympy.tanh, 1),
    "exp": (sympy.exp, 1),
    "log": (sympy.log, 1),
    "sqrt": (sympy.sqrt, 1),
    "abs": (sympy.Abs, 1),
    "min": (sympy.Min, None),
    "max": (sympy.Max, None),
}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E}
RESERVED = frozenset(FUNCTIONS) | frozenset(CONSTANTS)

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: _power(a, b),
}
MAX_CONSTANT_EXPONENT = 1000
"""Largest exponent of a power of two constants (sympy evaluates those exactly, which for
``10**10**10`` would never finish)."""


def parse_expression(
    text: str, symbols: Mapping[str, sympy.Expr], field: str = "expression"
) -> sympy.Expr:
    """Parse ``text`` into a sympy expression over ``symbols`` (name -> sympy expression).

    Raises ``ExpressionError`` naming ``field`` on a syntax error, an unknown name or any
    construct other than numbers, names, + - * / ** ^ and the functions in ``FUNCTIONS``.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ExpressionError(
            f"expected an expression (text or number), got {text!r} ({type(text).__name__})", field
        )
    if isinstance(text, (int, float)):
        return _number(text, field)
    source = text.strip()
    if not source:
        raise ExpressionError("expected an expression, got an empty string", field)
    # "x^2" as written in papers means a power: rewrite it before parsing so that it gets the
    # precedence and right-associativity of "**" (Python's "^" is a loose, left-grouping xor).
    python_source = source.replace("^", "**")
    try:
        tree = ast.parse(python_source, mode="eval")
    except SyntaxError as exc:
        offset = exc.offset if exc.offset else len(python_source) + 1
        col = _original_column(source, offset - 1)
        raise ExpressionError(
            f"syntax error in {source!r} at column {col + 1}: {exc.msg}", field
        ) from None
    return _Builder(symbols, field, source, python_source).visit(tree.body)


def _original_column(source: str, python_col: int) -> int:
    """Column in ``source`` of column ``python_col`` of the text with each "^" as "**"."""
    col = 0
    for i, ch in enumerate(source):
        width = 2 if ch == "^" else 1
        if col + width > python_col:
            return i
        col += width
    return len(source)


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if base.is_number and exponent.is_number:
        try:
            too_big = abs(complex(sympy.N(exponent, 15))) > MAX_CONSTANT_EXPONENT
        except (TypeError, ValueError):
            too_big = False
        if too_big:
            raise ExpressionError(
                f"the constant power {base}**({exponent}) has an exponent above "
                f"{MAX_CONSTANT_EXPONENT}; write the number directly"
            )
    return base**exponent


def non_real_reason(expr: sympy.Expr) -> str | None:
    """Why ``expr`` is not a real-valued expression, or ``None`` when nothing shows it.

    sympy evaluates constants exactly and over the complex numbers: ``1/0`` is ``zoo``, ``0/0``
    is ``nan``, ``log(-1)`` is ``I*pi``, ``(-8)**(1/3)`` is the principal (complex) cube root and
    ``asin(2)`` is a complex number left unevaluated. A constant is evaluated to 30 digits and must
    be real and finite; an expression in the states must contain none of ``zoo``, ``nan``,
    ``oo`` and ``I``. (An expression such as ``sqrt(x)`` that is undefined only for some states is
    allowed: where it is undefined, the bound engine's enclosure is unbounded.)
    """
    if expr.has(sympy.nan):
        return "undefined (0/0 or similar)"
    if expr.has(sympy.zoo):
        return "undefined: division by zero or a pole (1/0, log(0), tan(pi/2), ...)"
    if expr.has(sympy.oo) or expr.has(-sympy.oo):
        return "infinite"
    if expr.has(sympy.I):
        return "not real-valued (it contains the imaginary unit)"
    if not expr.free_symbols and expr.is_number:
        try:
            value = complex(sympy.N(expr, 30))
        except (TypeError, ValueError, OverflowError):
            return "not a real number"
        if cmath.isnan(value):
            return "undefined (not a number)"
        if value.imag != 0:
            return f"not real-valued (its value is the complex number {value:.6g})"
    return None


def check_real(expr: sympy.Expr, field: str | None = None, what: str | None = None) -> sympy.Expr:
    """``expr`` itself, or ``ExpressionError`` naming ``field``, the expression and why it is not
    a real-valued expression (see ``non_real_reason``)."""
    reason = non_real_reason(expr)
    if reason is not None:
        shown = what if what is not None else _short(expr)
        raise ExpressionError(f"{shown} is {reason}", field)
    return expr


def _short(expr: sympy.Expr, limit: int = 80) -> str:
    try:
        text = str(expr)
    except ValueError:  # a number too long to print
        return "the expression"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: float, field: str) -> sympy.Expr:
    if isinstance(value, bool):
        raise ExpressionError(f"expected a number, got {value!r}", field)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ExpressionError(f"expected a finite number, got {value!r}", field)
    return sympy.Integer(value) if isinstance(value, int) else sympy.Float(value)


class _Builder:
    """Walks a Python expression tree and builds the sympy expression, whitelisting every node."""

    def __init__(
        self, symbols: Mapping[str, sympy.Expr], field: str, source: str, python_source: str = ""
    ):
        self.symbols = symbols
        self.field = field
        self.source = source
        self.python_source = python_source

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        col = _original_column(self.source, getattr(node, "col_offset", 0)) + 1
        return ExpressionError(f"{what} in {self.source!r} at column {col}", self.field)

    def visit(self, node: ast.AST) -> sympy.Expr:
        result = self._visit(node)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
            reason = non_real_reason(result)
            if reason is not None:
                part = ast.get_source_segment(self.python_source, node) or ast.unparse(node)
                raise self.fail(node, f"{part} is {reason}")
        return result

    def _visit(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                return _number(node.value, self.field)
            raise self.fail(node, f"unsupported constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise self.fail(node, f"function {node.id!r} used without arguments")
            known = ", ".join(sorted(self.symbols)) or "none"
            raise self.fail(
                node, f"unknown symbol {node.id!r} (known names: {known}; constants: pi, e)"
            )
        if isinstance(node, ast.BinOp):
            op = _BINARY.get(type(node.op))
            if op is None:
                raise self.fail(node, f"unsupported operator {type(node.op).__name__}")
            try:
                return op(self.visit(node.left), self.visit(node.right))
            except ExpressionError as exc:
                if exc.field is None:
                    raise self.fail(node, str(exc)) from None
                raise
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.visit(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.visit(node.operand)
            raise self.fail(node, f"unsupported operator {type(node.op).__name__}")
        if isinstance(node, ast.Call):
            return self.visit_call(node)
        raise self.fail(node, f"unsupported construct {type(node).__name__}")

    def visit_call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.fail(node, f"unknown function {name!r} (allowed: {allowed})")
        if node.keywords:
            raise self.fail(node, f"keyword arguments are not allowed in {node.func.id}()")
        constructor, arity = FUNCTIONS[node.func.id]
        args = [self.visit(a) for a in node.args]
        if arity is not None and len(args) != arity:
            raise self.fail(node, f"{node.func.id}() takes {arity} argument(s), got {len(args)}")
        if arity is None and len(args) < 2:
            raise self.fail(node, f"{node.func.id}() takes two or more arguments, got {len(args)}")
        return constructor(*args)


def evaluate_constant(value: str | float, constants: Mapping[str, sympy.Expr], field: str) -> float:
    """Evaluate a number or a constant expression (in parameters, pi and e) to a finite float."""
    expr = parse_expression(value, constants, field)
    free = expr.free_symbols
    if free:
        names = ", ".join(sorted(str(s) for s in free))
        raise ExpressionError(f"expected a constant, but {value!r} depends on {names}", field)
    try:
        number = float(sympy.N(expr, 30))
    except (TypeError, ValueError):
        raise ExpressionError(f"{value!r} does not evaluate to a real number", field) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ExpressionError(f"{value!r} evaluates to {number}, expected a finite number", field)
    return number


# ---------------------------------------------------------------------------------------------
# sympy -> torch

TorchFn = Callable[[Mapping[sympy.Symbol, torch.Tensor]], "torch.Tensor | float"]

_TORCH_UNARY: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    sympy.sin: torch.sin,
    sympy.cos: torch.cos,
    sympy.tan: torch.tan,
    sympy.asin: torch.asin,
    sympy.acos: torch.acos,
    sympy.atan: torch.atan,
    sympy.sinh: torch.sinh,
    sympy.cosh: torch.cosh,
    sympy.tanh: torch.tanh,
    sympy.exp: torch.exp,
    sympy.log: torch.log,
    sympy.Abs: torch.abs,
}


def compile_expression(expr: sympy.Expr) -> TorchFn:
    """Compile a sympy expression into a closure ``env -> tensor | float``.

    ``env`` maps each free symbol to a ``[batch]`` tensor. Constants stay Python floats (they
    broadcast); only torch operations are called, so the closure can be traced by torch.fx.
    """
    if expr.is_Number or expr.is_NumberSymbol or (expr.is_number and not expr.free_symbols):
        value = constant_value(expr)
        return lambda env: value
    if expr.is_Symbol:
        return lambda env: env[expr]
    if isinstance(expr, sympy.Add):
        parts = [compile_expression(a) for a in expr.args]

        def add(env):
            total = parts[0](env)
            for p in parts[1:]:
                total = total + p(env)
            return total

        return add
    if isinstance(expr, sympy.Mul):
        parts = [compile_expression(a) for a in expr.args]

        def mul(env):
            total = parts[0](env)
            for p in parts[1:]:
                total = total * p(env)
            return total

        return mul
    if isinstance(expr, sympy.Pow):
        return _compile_pow(expr)
    if isinstance(expr, (sympy.Min, sympy.Max)):
        parts = [compile_expression(a) for a in expr.args]
        reduce = torch.minimum if isinstance(expr, sympy.Min) else torch.maximum

        def minmax(env):
            vals = [p(env) for p in parts]
            out = next(v for v in vals if not isinstance(v, (int, float)))
            for v in vals:
                if v is out:
                    continue
                if isinstance(v, (int, float)):
                    v = torch.zeros_like(out) + v
                out = reduce(out, v)
            return out

        return minmax
    for cls, torch_fn in _TORCH_UNARY.items():
        if isinstance(expr, cls):
            inner = compile_expression(expr.args[0])
            return lambda env, f=torch_fn: f(inner(env))
    if isinstance(expr, sympy.Piecewise):
        raise ExpressionError(
            f"cannot compile {_short(expr)}: Piecewise is not supported; write a continuous "
            "piecewise expression with min, max or abs"
        )
    if isinstance(expr, (sympy.sign, sympy.Heaviside)):
        raise ExpressionError(
            f"cannot compile {_short(expr)}: a jump ({type(expr).__name__}) is not supported "
            "(the bound engine needs a continuous, locally Lipschitz function)"
        )
    raise ExpressionError(f"cannot compile {_short(expr)} ({type(expr).__name__}) to torch")


def constant_value(expr: sympy.Expr) -> float:
    """A constant sympy expression as a finite float64 (nearest), or ``ExpressionError``."""
    if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo, sympy.I):
        check_real(expr)
    try:
        value = complex(sympy.N(expr, 30))  # one evaluation (it can be slow: exp(-10**1000))
    except (TypeError, ValueError, OverflowError):
        raise ExpressionError(f"{_short(expr)} is not a real number") from None
    if cmath.isnan(value) or value.imag != 0:
        raise ExpressionError(f"{_short(expr)} is not real-valued (its value is {value:.6g})")
    if not math.isfinite(value.real):
        raise ExpressionError(
            f"the constant {_short(expr)} is beyond the float64 range (about 1.8e308)"
        )
    return value.real


def _compile_pow(expr: sympy.Pow) -> TorchFn:
    base, exponent = expr.args
    base_fn = compile_expression(base)
    if exponent.is_Integer:
        k = int(exponent)
        if k == -1:
            return lambda env: 1.0 / base_fn(env)
        if k < 0:
            return lambda env: 1.0 / base_fn(env) ** (-k)
        return lambda env: base_fn(env) ** k
    if exponent == sympy.Rational(1, 2):
        return lambda env: torch.sqrt(base_fn(env))
    if exponent == sympy.Rational(-1, 2):
        return lambda env: 1.0 / torch.sqrt(base_fn(env))
    exp_fn = compile_expression(exponent)
    if base.free_symbols:
        return lambda env: base_fn(env) ** exp_fn(env)
    # constant base, variable exponent: b**e = exp(e log b), defined for b > 0 only
    if not (base.is_positive or constant_value(base) > 0):
        raise ExpressionError(
            f"{expr}: a constant base must be positive when the exponent varies, got {base}"
        )
    log_base = constant_value(sympy.log(base))
    return lambda env: torch.exp(exp_fn(env) * log_base)


def compile_vector(
    exprs: Sequence[sympy.Expr], arguments: Iterable[Sequence[sympy.Symbol]]
) -> Callable[..., torch.Tensor]:
    """Compile expressions into ``fn(*tensors) -> [batch, len(exprs)]``.

    ``arguments`` lists, per positional tensor argument ``[batch, k]``, the symbols of its columns.
    """
    arg_symbols = [tuple(a) for a in arguments]
    parts = [compile_expression(e) for e in exprs]

    def fn(*tensors: torch.Tensor) -> torch.Tensor:
        env: dict[sympy.Symbol, torch.Tensor] = {}
        for symbols, tensor in zip(arg_symbols, tensors):
            for i, s in enumerate(symbols):
                env[s] = tensor[:, i]
        reference = tensors[0]
        columns = []
        for p in parts:
            v = p(env)
            if isinstance(v, (int, float)):  # a constant right-hand side: broadcast it
                v = torch.zeros_like(reference.sum(dim=1)) + v
            columns.append(v)
        return torch.stack(columns, dim=1)

    return fn
