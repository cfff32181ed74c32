"""An optional cross-check with the Z3 SMT solver for polynomial systems and candidates.

Z3 decides, exactly over the reals, whether a point of the box violates the decrease condition on
the band ``{c0 <= V <= c}`` or lies on the boundary of the box with ``V <= c``. Used in the tests
for differential testing against the bound engine; install with ``pip install lyapcert[z3]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy

from lyapcert.errors import LyapcertError, VerificationError


@dataclass(frozen=True)
class Z3Answer:
    """``status``: "holds" (unsat: no violation), "violated" (sat, with ``model``) or "unknown"."""

    status: str
    model: dict[str, float] | None = None
    seconds: float = 0.0


def _z3():
    try:
        import z3
    except ImportError:  # pragma: no cover - depends on the environment
        raise LyapcertError(
            "the Z3 check needs the z3-solver package: pip install 'lyapcert[z3]'"
        ) from None
    return z3


def to_z3(expr: sympy.Expr, variables: dict):
    """A polynomial sympy expression with float or rational coefficients as a Z3 real term."""
    z3 = _z3()
    if expr.is_Symbol:
        return variables[expr]
    if expr.is_Integer or expr.is_Rational:
        return z3.RealVal(str(sympy.Rational(expr)))
    if expr.is_Float:
        f = Fraction(float(expr))  # the exact value of the float64 coefficient
        return z3.RealVal(f"{f.numerator}/{f.denominator}")
    if isinstance(expr, sympy.Add):
        terms = [to_z3(a, variables) for a in expr.args]
        return sum(terms[1:], terms[0])
    if isinstance(expr, sympy.Mul):
        out = to_z3(expr.args[0], variables)
        for a in expr.args[1:]:
            out = out * to_z3(a, variables)
        return out
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and int(expr.exp) >= 0:
        base = to_z3(expr.base, variables)
        out = z3.RealVal(1)
        for _ in range(int(expr.exp)):
            out = out * base
        return out
    raise VerificationError(f"the Z3 check handles polynomials only; got {expr}")


def check_band(
    system, candidate, level: float, inner_level: float, timeout_s: float = 60.0
) -> Z3Answer:
    """Is there ``x`` in the box with ``c0 <= V(x) <= c`` and ``dV/dt >= 0``, or ``x`` on the
    boundary of the box with ``V(x) <= c``? (Continuous time, autonomous, polynomial.)"""
    import time

    z3 = _z3()
    if system.is_discrete or system.input_names or system.symbolic is None:
        raise VerificationError("the Z3 check handles autonomous continuous-time equation systems")
    lie_fn = candidate.lie_derivative_function(system)
    if lie_fn is None:
        raise VerificationError("the Z3 check needs a symbolic candidate")
    symbols = candidate.symbols
    xs = {s: z3.Real(s.name) for s in symbols}
    V = to_z3(sympy.expand(candidate.expr), xs)
    L = to_z3(sympy.expand(candidate.lie_expr), xs)
    c = to_z3(sympy.Float(level), xs)
    c0 = to_z3(sympy.Float(inner_level), xs)
    in_box = [
        z3.And(xs[s] >= to_z3(sympy.Float(lo), xs), xs[s] <= to_z3(sympy.Float(hi), xs))
        for s, lo, hi in zip(symbols, system.domain.lower, system.domain.upper)
    ]
    on_face = z3.Or(
        *[
            z3.Or(xs[s] == to_z3(sympy.Float(lo), xs), xs[s] == to_z3(sympy.Float(hi), xs))
            for s, lo, hi in zip(symbols, system.domain.lower, system.domain.upper)
        ]
    )
    solver = z3.Solver()
    solver.set("timeout", int(timeout_s * 1000))
    solver.add(*in_box)
    solver.add(z3.Or(z3.And(c0 <= V, c >= V, L >= 0), z3.And(on_face, c >= V)))
    started = time.perf_counter()
    answer = solver.check()
    seconds = time.perf_counter() - started
    if answer == z3.unsat:
        return Z3Answer("holds", seconds=seconds)
    if answer == z3.sat:
        m = solver.model()
        model = {}
        for s in symbols:
            v = m.eval(xs[s], model_completion=True)
            model[s.name] = (
                float(v.as_fraction())
                if z3.is_rational_value(v)
                else float(v.approx(20).as_fraction())
            )
        return Z3Answer("violated", model, seconds)
    return Z3Answer("unknown", seconds=seconds)
