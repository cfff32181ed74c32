"""Lyapunov function candidates ``V: [batch, n] -> [batch]``.

* ``ExpressionCandidate``: ``V`` written in the state names (``"0.5*x2**2 + 1 - cos(x1)"``); its
  Lie derivative along an equation-defined system is formed symbolically (sympy), which keeps
  cancellations that interval bounds would lose. A kinked ``V`` (``abs``, ``min``, ``max``) has
  no symbolic Lie derivative: it is bounded in forward mode, whose rules enclose the Clarke
  generalised gradient (the nonsmooth Lyapunov theorem for a locally Lipschitz ``V``).
* ``QuadraticCandidate``: ``V = (x - x*)' P (x - x*)``.
* ``NetworkCandidate``: any ``torch.nn.Module``; its Lie derivative is bounded by forward-mode
  differentiation of the captured graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import sympy
import torch

from lyapcert.errors import ExpressionError, VerificationError
from lyapcert.systems.equations import (
    check_real,
    compile_expression,
    compile_vector,
    parse_expression,
)
from lyapcert.systems.system import System


class Candidate:
    """Base class: ``value(x) [batch, n] -> [batch]`` and what the verifier needs to capture it."""

    family = "candidate"

    def value(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def value_function(self):
        """A torch function or module of one input ``[batch, n] -> [batch]`` to capture."""
        return self.value

    def lie_derivative_function(self, system: System):
        """A function ``x -> dV/dt [batch]`` formed symbolically, or None (use forward mode)."""
        return None

    def describe(self) -> str:
        return self.family

    def quadratic_floor(self):
        """``(centre [n], lo [n, n], hi [n, n])`` with ``V(x) >= (x - c)' F (x - c)`` for every
        ``x`` and every symmetric ``F`` with entries in ``[lo, hi]`` (exact real arithmetic), or
        ``None`` when the family has no such floor. Used to prove the inner level at once."""
        return None

    def to_dict(self) -> dict:
        raise NotImplementedError

    def content_hash(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


KINKS = (sympy.Abs, sympy.Min, sympy.Max, sympy.Piecewise, sympy.Heaviside, sympy.sign)
"""sympy classes whose presence makes an expression non-differentiable somewhere."""


def is_kinked(expr: sympy.Expr) -> bool:
    """Whether ``expr`` contains a kink (``abs``, ``min``, ``max``, piecewise, sign, step)."""
    return any(expr.has(k) for k in KINKS)


def exact_text(expr: sympy.Expr) -> str:
    """``expr`` as text that parses back to the same function: each float64 coefficient with the
    17 significant digits of ``repr`` (``str`` prints 15, so a saved certificate was another
    ``V``, a few ulps off, whose re-check could fall just short of the saved level)."""
    from sympy.printing.str import StrPrinter

    class _Exact(StrPrinter):
        def _print_Float(self, f):
            if f._prec <= 53:
                return repr(float(f))
            return super()._print_Float(f)

    return _Exact({"full_prec": True}).doprint(expr)


class ExpressionCandidate(Candidate):
    """``V`` given as an expression in the state names (parsed safely, compiled to torch)."""

    family = "expression"

    def __init__(self, expression: str | sympy.Expr, system: System):
        self.system = system
        self.symbols = [sympy.Symbol(s, real=True) for s in system.state_names]
        table = {s.name: s for s in self.symbols}
        symbolic = system.open_loop.symbolic  # a closed loop's parameters are its open loop's
        if symbolic is not None:
            table.update({k: sympy.Float(v, 30) for k, v in symbolic.params.items()})
        if isinstance(expression, sympy.Expr):
            self.expr = expression
            self.text = exact_text(expression)
        else:
            self.text = str(expression)
            self.expr = parse_expression(expression, table, "candidate")
        unknown = self.expr.free_symbols - set(self.symbols)
        if unknown:
            raise VerificationError(
                f"candidate: unknown symbols {', '.join(sorted(map(str, unknown)))}; "
                f"use the state names {', '.join(system.state_names)}"
            )
        try:  # typed error now rather than during verification
            check_real(self.expr, "candidate")
            compile_expression(self.expr)
        except ExpressionError as exc:
            if exc.field is not None:
                raise
            raise ExpressionError(f"{exc} in {self.text!r}", "candidate") from None
        self._fn = compile_vector([self.expr], [self.symbols])

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)[:, 0]

    @property
    def kinked(self) -> bool:
        """``V`` has a kink (abs, min, max): no symbolic Lie derivative; forward mode encloses
        the Clarke generalised gradient instead."""
        return is_kinked(self.expr)

    def lie_derivative_function(self, system: System):
        # a closed loop has no symbolic dynamics (f(x, k(x)) goes through the controller's graph)
        if system.symbolic is None or system.is_discrete or system.input_names:
            return None
        if self.kinked:  # sympy would give sign / Heaviside terms, exact only off the kinks
            return None
        params = {
            sympy.Symbol(k, real=True): sympy.Float(v, 30)
            for k, v in system.symbolic.params.items()
        }
        f = [e.subs(params) for e in system.symbolic.dynamics]
        lie = sum(sympy.diff(self.expr, s) * fi for s, fi in zip(self.symbols, f))
        expanded = sympy.expand(lie)
        if sympy.count_ops(expanded) <= 4 * sympy.count_ops(lie) + 10:
            lie = expanded
        lie = rational_normal_form(lie, self.symbols, system) or lie
        fn = compile_vector([lie], [self.symbols])
        self.lie_expr = lie
        return lambda x: fn(x)[:, 0]

    def describe(self) -> str:
        return f"V = {self.text}"

    def to_dict(self) -> dict:
        return {"family": self.family, "expression": self.text}


NORMAL_FORM_MAX_OPS = 250
"""Lie derivatives larger than this (sympy operations) are not put in rational normal form."""


def rational_normal_form(
    expr: sympy.Expr, symbols: Sequence[sympy.Symbol], system: System
) -> sympy.Expr | None:
    """A shorter form of a Lie derivative with a state-dependent denominator (the dynamics of a
    mechanical system, ``M(q)^-1 r``), or None: the parameters made exact rationals (the values
    the floats stand for), one fraction (``together``, ``cancel``), trigonometric identities
    (``trigsimp``), ``factor``, and every factor that is a semidefinite quadratic form written as
    a sum of squares (``square_sum``), so that interval bounds see its sign. The energy of the
    damped double pendulum becomes ``-(3 - cos 2d) q(w) / (4 (1 + sin^2 d))`` with
    ``q = 2 (w1 - w2/2)^2 + w2^2/2``: nonpositive on every box.

    Kept only when it has fewer operations and agrees with ``expr`` at 64 random points of the
    domain (relative 1e-9): sympy's identities are exact, the check catches a misuse."""
    if sympy.count_ops(expr) > NORMAL_FORM_MAX_OPS:
        return None
    exact = expr.xreplace({f: sympy.Rational(f) for f in expr.atoms(sympy.Float)})
    fraction = sympy.together(exact)  # once: the same denominator's symbols as ``expr``'s
    if not (sympy.fraction(fraction)[1].free_symbols & set(symbols)):
        return None
    form = sympy.factor(sympy.trigsimp(sympy.cancel(fraction)))
    form = form.replace(
        lambda e: e.is_Add and e.free_symbols <= set(symbols), lambda e: square_sum(e, symbols)
    )
    if sympy.count_ops(form) >= sympy.count_ops(expr):
        return None
    lo, hi = system.domain.as_tensors(torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = lo + (hi - lo) * torch.rand(64, len(symbols), generator=gen, dtype=torch.float64)
    old, new = (compile_vector([e], [list(symbols)])(x)[:, 0] for e in (expr, form))
    if not torch.allclose(new, old, rtol=1e-9, atol=1e-9 * float(old.abs().max() + 1)):
        return None
    return form


def square_sum(poly: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """``poly`` if it is not a semidefinite quadratic form in some of ``symbols``; otherwise the
    same form as ``sum_k d_k (x_k + sum_{j>k} c_kj x_j)^2`` with every ``d_k`` of one sign
    (completing the square, exact rational arithmetic: an LDL' factorisation)."""
    gens = [s for s in symbols if s in poly.free_symbols]
    if not gens:
        return poly
    try:
        p = sympy.Poly(poly, *gens)
    except sympy.PolynomialError:
        return poly
    if p.total_degree() != 2 or not p.is_homogeneous:
        return poly
    n = len(gens)
    H = sympy.zeros(n, n)
    for monom, coeff in p.terms():
        idx = [i for i, k in enumerate(monom) for _ in range(k)]
        if not coeff.is_Rational:
            return poly
        if idx[0] == idx[1]:
            H[idx[0], idx[0]] = coeff
        else:
            H[idx[0], idx[1]] = H[idx[1], idx[0]] = coeff / 2
    terms, signs = [], set()
    for k in range(n):
        d = H[k, k]
        if d == 0:
            if any(H[k, j] != 0 for j in range(k + 1, n)):
                return poly  # indefinite, or semidefinite in an order this does not handle
            continue
        signs.add(d > 0)
        terms.append(d * (gens[k] + sum(H[k, j] / d * gens[j] for j in range(k + 1, n))) ** 2)
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                H[i, j] -= H[i, k] * H[k, j] / d
    if len(signs) != 1:
        return poly
    return sympy.Add(*terms)


class QuadraticCandidate(ExpressionCandidate):
    """``V(x) = (x - x*)' P (x - x*)`` with a symmetric ``P [n, n]``."""

    family = "quadratic"

    def __init__(self, P: np.ndarray | Sequence[Sequence[float]], system: System):
        P = np.asarray(P, dtype=np.float64)
        n = system.n_states
        if P.shape != (n, n) or not np.all(np.isfinite(P)):
            raise VerificationError(f"P: expected a finite {n}x{n} matrix, got shape {P.shape}")
        if not np.allclose(P, P.T, rtol=0, atol=0):
            P = (P + P.T) / 2
        self.P = P
        symbols = [sympy.Symbol(s, real=True) for s in system.state_names]
        e = [s - xs for s, xs in zip(symbols, system.equilibrium)]
        expr = sum(sympy.Float(P[i, j], 30) * e[i] * e[j] for i in range(n) for j in range(n))
        super().__init__(expr, system)

    def quadratic_floor(self):
        """``V`` is its own floor: ``F = P`` (the expression's coefficients are ``P``'s floats)."""
        centre = np.asarray(self.system.equilibrium, dtype=np.float64).reshape(-1)
        return centre, self.P.copy(), self.P.copy()

    def describe(self) -> str:
        rows = "; ".join(" ".join(f"{v:.6g}" for v in row) for row in self.P)
        return f"V = (x - x*)' P (x - x*), P = [{rows}]"

    def to_dict(self) -> dict:
        return {"family": self.family, "P": self.P.tolist()}


class NetworkCandidate(Candidate):
    """A network ``V``: any module mapping ``[batch, n]`` to ``[batch]`` or ``[batch, 1]``."""

    family = "network"

    def __init__(self, module: torch.nn.Module):
        self.module = module.double().eval()

    def value(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        return out.reshape(x.shape[0])

    def value_function(self):
        return self.module

    def quadratic_floor(self):
        """For ``LyapunovNetwork`` (exactly that class): ``V >= e' (sym(P) + eps S^-2) e`` (``S``
        the input scales, or ``I``), since
        ``|phi(x) - phi(x*)|^2 >= 0``; the matrix rounded outward. Any other module (a file):
        the floor its captured graph proves by its form (``bounds.quadform.graph_quadratic_floor``:
        a sum of quadratic forms around one centre and of terms nonnegative by their form)."""
        from lyapcert.bounds.psd import symmetric_part
        from lyapcert.certificates.network import LyapunovNetwork

        if type(self.module) is not LyapunovNetwork:
            return self._graph_floor()
        P = self.module.P.detach().cpu().numpy().astype(np.float64)
        lo, hi = symmetric_part(P)
        eye = np.eye(len(P), dtype=bool)
        eps = np.full(len(P), self.module.eps)  # eps |e / s|^2: eps / s_i^2 on the diagonal
        eps_lo = eps_hi = eps
        if self.module.scaled:
            inv = self.module.inverse_scale.detach().cpu().numpy().astype(np.float64).reshape(-1)
            eps_lo = np.nextafter(np.nextafter(inv * inv, -np.inf) * eps, -np.inf)
            eps_hi = np.nextafter(np.nextafter(inv * inv, np.inf) * eps, np.inf)
        lo[eye] = np.nextafter(lo[eye] + eps_lo, -np.inf)
        hi[eye] = np.nextafter(hi[eye] + eps_hi, np.inf)
        centre = self.module.x_star.detach().cpu().numpy().astype(np.float64).reshape(-1)
        return centre, lo, hi

    def _graph_floor(self):
        from lyapcert.bounds.graph import capture
        from lyapcert.bounds.quadform import graph_quadratic_floor
        from lyapcert.errors import UnsupportedOperationError

        try:
            graph = capture(self.value_function(), 1)
        except UnsupportedOperationError:
            return None
        return graph_quadratic_floor(graph.module, graph.quadratic_forms)

    def to_dict(self) -> dict:
        from lyapcert.certificates.network import weights_digest

        data = {"family": self.family, "weights_sha256": weights_digest(self.module)}
        if hasattr(self.module, "spec"):
            data.update(architecture=self.module.spec(), weights="weights.pt")
        return data
