"""Sum-of-squares (SOS) Lyapunov functions by semidefinite programming (cvxpy; Clarabel, then SCS).

In coordinates ``e = x - x*`` with the (Taylor-)polynomial dynamics ``f(e)`` (exact when ``f`` is
polynomial, else its Taylor polynomial of degree ``taylor_degree``, for the SDP step only), the
interior-expanding algorithm alternates:

A. ``V`` fixed: the largest ``gamma`` with ``-(grad V . f + eps |e|^2) - s2 (gamma - V)`` SOS
   (bisection; ``s2`` SOS), then ``V <- V / gamma``;
B. ``V`` fixed: the largest ``beta`` with ``(1 - V) - s1 (beta - p)`` SOS, ``p = |e|^2`` (bisection);
C. ``s1, s2`` fixed: maximise ``beta`` over ``V`` with ``V - eps |e|^2`` SOS and both conditions.

Each round enlarges ``{p <= beta}`` inside ``{V <= 1}``, itself inside the region of decrease.
The SDP only proposes: the polynomial ``V`` is then verified on the true dynamics by our verifier.
Solver statuses other than "optimal" are collected in ``Fit.info["solver_statuses"]``.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import sympy

from lyapcert.certificates.candidates import ExpressionCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.quadratic import closed_loop_jacobian, lyapunov_matrix
from lyapcert.systems.system import System


@dataclass
class SOSOptions:
    """Options of the SOS method.

    degree: even degree of V (2 to 8)
    multiplier_degree: even degree of the SOS multipliers s1, s2
    taylor_degree: degree of the Taylor polynomial of non-polynomial dynamics (SDP step only)
    iterations: rounds of the interior-expanding algorithm
    epsilon: margin eps in V - eps |e|^2 and in the decrease condition
    solver: "clarabel" or "scs" (the other one is the fallback)
    bisection_steps: steps of each bisection
    shape: the set grown inside the certificate: "quadratic" (of the linearisation) or "ball"
    seed: unused (the method is deterministic); kept for a uniform interface
    """

    degree: int = 6
    multiplier_degree: int = 2
    taylor_degree: int = 5
    iterations: int = 8
    epsilon: float = 1e-6
    solver: str = "clarabel"
    bisection_steps: int = 12
    shape: str = "quadratic"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.degree not in (2, 4, 6, 8):
            raise ValueError(f"degree: expected 2, 4, 6 or 8, got {self.degree}")
        if self.multiplier_degree not in (0, 2, 4):
            raise ValueError(f"multiplier_degree: expected 0, 2 or 4, got {self.multiplier_degree}")
        if self.solver not in ("clarabel", "scs"):
            raise ValueError(f"solver: expected 'clarabel' or 'scs', got {self.solver!r}")
        if self.shape not in ("quadratic", "ball"):
            raise ValueError(f"shape: expected 'quadratic' or 'ball', got {self.shape!r}")
        if not (1 <= self.taylor_degree <= 9):
            raise ValueError(f"taylor_degree: expected 1 to 9, got {self.taylor_degree}")


BACK_OFF = 0.98  # multipliers are taken slightly inside the feasible range
GROWTH_CAP = 1e4  # levels are searched up to this factor (beyond it: "unbounded", kept at the cap)

# ------------------------------------------------------------------------ polynomials as dicts


def monomials(n: int, low: int, high: int) -> list[tuple[int, ...]]:
    """Exponent tuples of total degree in ``[low, high]``, graded."""
    out = []
    for d in range(low, high + 1):
        for c in itertools.combinations_with_replacement(range(n), d):
            e = [0] * n
            for i in c:
                e[i] += 1
            out.append(tuple(e))
    return out


def _add(e1, e2):
    return tuple(a + b for a, b in zip(e1, e2))


def poly_mul(a: dict, b: dict) -> dict:
    """Product of two polynomials (at most one of them with cvxpy coefficients)."""
    out: dict = defaultdict(float)
    for ea, ca in a.items():
        for eb, cb in b.items():
            out[_add(ea, eb)] = out[_add(ea, eb)] + ca * cb
    return dict(out)


def poly_add(*polys: dict, scales=None) -> dict:
    out: dict = defaultdict(float)
    for k, p in enumerate(polys):
        s = 1.0 if scales is None else scales[k]
        for e, c in p.items():
            out[e] = out[e] + s * c
    return dict(out)


def poly_diff(p: dict, i: int) -> dict:
    out: dict = {}
    for e, c in p.items():
        if e[i] > 0:
            e2 = list(e)
            e2[i] -= 1
            out[tuple(e2)] = out.get(tuple(e2), 0.0) + e[i] * c
    return out


def from_sympy(expr: sympy.Expr, symbols) -> dict:
    poly = sympy.Poly(sympy.expand(expr), *symbols)
    return {tuple(m): float(c) for m, c in zip(poly.monoms(), poly.coeffs())}


class _SOSProgram:
    """Collects SOS constraints ``poly is a sum of squares`` as Gram-matrix equalities."""

    def __init__(self, n: int):
        import cvxpy as cp

        self.cp = cp
        self.n = n
        self.constraints = []

    def sos(self, poly: dict, max_degree: int | None = None):
        cp = self.cp
        degs = [sum(e) for e in poly]
        top = max(degs) if degs else 0
        if max_degree is not None:
            top = max(top, max_degree)
        half = (top + 1) // 2
        low = min(degs) // 2 if degs else 0
        basis = monomials(self.n, low, half)
        Q = cp.Variable((len(basis), len(basis)), PSD=True)
        entries: dict = defaultdict(list)
        for i, a in enumerate(basis):
            for j, b in enumerate(basis):
                entries[_add(a, b)].append((i, j))
        keys = set(entries) | set(poly)
        for key in keys:
            gram = sum(Q[i, j] for i, j in entries.get(key, []))
            coeff = poly.get(key, 0.0)
            if isinstance(gram, int) and gram == 0:
                if not (isinstance(coeff, float) and coeff == 0.0):
                    self.constraints.append(coeff == 0)
                continue
            self.constraints.append(gram == coeff)
        return Q

    def sos_variable(self, degree: int) -> tuple[dict, object]:
        """A new SOS polynomial of even ``degree`` (its Gram matrix is the unknown)."""
        cp = self.cp
        basis = monomials(self.n, 0, degree // 2)
        Q = cp.Variable((len(basis), len(basis)), PSD=True)
        poly: dict = defaultdict(float)
        for i, a in enumerate(basis):
            for j, b in enumerate(basis):
                poly[_add(a, b)] = poly[_add(a, b)] + Q[i, j]
        return dict(poly), Q

    def solve(self, objective, solver: str):
        cp = self.cp
        problem = cp.Problem(objective, self.constraints)
        order = ["CLARABEL", "SCS"] if solver == "clarabel" else ["SCS", "CLARABEL"]
        status = "not solved"
        for name in order:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the status says it; it is recorded
                    problem.solve(solver=name)
                status = problem.status
                if status in ("optimal", "optimal_inaccurate"):
                    return problem, status, name
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a solver failure (Clarabel may panic): the fallback
                status = f"error ({type(exc).__name__})"
        return problem, status, order[-1]


def _value(poly: dict) -> dict:
    out = {}
    for e, c in poly.items():
        v = c.value if hasattr(c, "value") else c
        out[e] = float(v) if v is not None else float("nan")
    return out


def _largest_feasible(feasible, steps: int, shrink: bool):
    """The largest level ``t`` with ``feasible(t) = (True, multiplier)``: grow from 1 by factors of
    4 up to ``GROWTH_CAP`` (or, with ``shrink``, shrink until feasible), bisect ``steps`` times,
    then back off to ``BACK_OFF * t`` so that the V step has room. Returns ``(t, multiplier)``;
    ``(0.0, None)`` when nothing is feasible."""
    lo, hi, best = 0.0, 1.0, None
    ok, s = feasible(hi)
    while ok and hi < GROWTH_CAP:
        lo, best = hi, s
        hi *= 4
        ok, s = feasible(hi)
    if lo == 0.0 and shrink:
        for _ in range(30):
            hi /= 4
            ok, s = feasible(hi)
            if ok:
                lo, best = hi, s
                hi *= 4
                break
        else:
            return 0.0, None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        ok, s = feasible(mid)
        if ok:
            lo, best = mid, s
        else:
            hi = mid
    ok, s = feasible(lo * BACK_OFF)
    return (lo * BACK_OFF, s) if ok else (lo, best)


class SOSMethod(Method):
    name = "sos"
    Options = SOSOptions

    def fit(
        self, system: System, options: SOSOptions, progress: bool = False, controller=None
    ) -> Fit:
        started = time.perf_counter()
        if system.symbolic is None or system.input_names or controller is not None:
            raise MethodError("sos: needs an autonomous system defined by equations")
        n = system.n_states
        e = sympy.symbols(f"e0:{n}", real=True)
        f_poly, exact = self._polynomial_dynamics(system, e, options.taylor_degree)
        if system.is_discrete:
            raise MethodError("sos: discrete-time systems are not supported by this method yet")
        statuses: list[str] = []
        # start: the quadratic of the linearisation, normalised later by step A
        a = closed_loop_jacobian(system)
        P = lyapunov_matrix(a, np.eye(n), False)
        V = {}
        for i in range(n):
            for j in range(n):
                ex = tuple((1 if k == i else 0) + (1 if k == j else 0) for k in range(n))
                V[ex] = V.get(ex, 0.0) + float(P[i, j])
        # the shape p grown inside {V <= 1}: the quadratic of the linearisation (or |e|^2)
        p_shape = (
            dict(V)
            if options.shape == "quadratic"
            else {tuple(2 if k == i else 0 for k in range(n)): 1.0 for i in range(n)}
        )
        history = []
        beta = 0.0
        for it in range(options.iterations):
            gamma, s2 = self._max_gamma(V, f_poly, n, options, statuses)
            if not (gamma > 0 and math.isfinite(gamma)):
                break
            if gamma >= GROWTH_CAP * BACK_OFF:
                # V decreases on every level set we tried: nothing to enlarge, the box decides
                history.append({"iteration": it, "gamma": "unbounded"})
                break
            V = {k: v / gamma for k, v in V.items()}
            # -(Vdot + eps|e|^2) - s2 (gamma - V) SOS  =>  the same s2 works for V / gamma at level 1
            beta_a, s1 = self._max_beta(V, p_shape, n, options, statuses)
            if s1 is None:
                break
            newV, beta_c = self._improve_V(V, f_poly, s1, s2, p_shape, n, options, statuses)
            history.append({"iteration": it, "gamma": gamma, "beta": max(beta_a, beta_c)})
            if newV is None or beta_c <= beta * (1 + 1e-4):
                beta = max(beta, beta_a)
                break
            V, beta = newV, beta_c
            if progress:
                from rich.console import Console

                Console(stderr=True).print(f"sos: round {it + 1}: beta = {beta:.6g}")
        expr = sum(
            c * sympy.prod([s**k for s, k in zip(e, ex)]) for ex, c in V.items() if abs(c) > 0
        )
        x_syms = [sympy.Symbol(s, real=True) for s in system.state_names]
        expr = expr.subs({ei: xi - xs for ei, xi, xs in zip(e, x_syms, system.equilibrium)})
        expr = sympy.expand(expr)
        if not all(math.isfinite(float(c)) for c in V.values()):
            raise MethodError("sos: the solver returned non-finite coefficients; no certificate")
        candidate = ExpressionCandidate(expr, system)
        return Fit(
            candidate,
            time.perf_counter() - started,
            None,
            {
                "degree": options.degree,
                "exact_dynamics": exact,
                "beta": beta,
                "history": history,
                "solver_statuses": sorted(set(statuses)),
            },
        )

    # -------------------------------------------------------------------- pieces

    @staticmethod
    def _polynomial_dynamics(system: System, e, degree: int) -> tuple[list[dict], bool]:
        sym = system.symbolic
        params = {sympy.Symbol(k, real=True): sympy.Float(v, 30) for k, v in sym.params.items()}
        xs = [sympy.Symbol(s, real=True) for s in system.state_names]
        shift = {x: x0 + ei for x, x0, ei in zip(xs, system.equilibrium, e)}
        out, exact = [], True
        for expr in sym.dynamics:
            fe = sympy.expand(expr.subs(params).subs(shift))
            if fe.is_polynomial(*e):
                out.append(from_sympy(fe, e))
                continue
            exact = False
            taylor = 0
            at0 = {ei: 0 for ei in e}
            for ex in monomials(len(e), 0, degree):
                d = fe
                for ei, k in zip(e, ex):
                    if k:
                        d = sympy.diff(d, ei, k)
                c = float(sympy.N(d.subs(at0), 30)) / math.prod(math.factorial(k) for k in ex)
                if c != 0:
                    taylor += c * sympy.prod([ei**k for ei, k in zip(e, ex)])
            out.append(from_sympy(sympy.sympify(taylor), e))
        return out, exact

    @staticmethod
    def _lie(V: dict, f: list[dict], n: int) -> dict:
        return poly_add(*[poly_mul(poly_diff(V, i), f[i]) for i in range(n)])

    def _max_gamma(self, V, f, n, options, statuses):
        """Bisection: the largest gamma with -(Vdot + eps|e|^2) - s2 (gamma - V) SOS."""
        lie = self._lie(V, f, n)
        sq = {tuple(2 if k == i else 0 for k in range(n)): options.epsilon for i in range(n)}

        def feasible(gamma):
            prog = _SOSProgram(n)
            s2, _ = prog.sos_variable(options.multiplier_degree)
            g_minus_v = poly_add({(0,) * n: gamma}, V, scales=[1.0, -1.0])
            target = poly_add(lie, sq, poly_mul(s2, g_minus_v), scales=[-1.0, -1.0, -1.0])
            prog.sos(target)
            _problem, status, _ = prog.solve(prog.cp.Minimize(0), options.solver)
            statuses.append(status)
            return status == "optimal", _value(s2)

        return _largest_feasible(feasible, options.bisection_steps, shrink=True)

    def _max_beta(self, V, p, n, options, statuses):
        """Bisection: the largest beta with (1 - V) - s1 (beta - p) SOS."""
        one_minus_v = poly_add({(0,) * n: 1.0}, V, scales=[1.0, -1.0])

        def feasible(beta):
            prog = _SOSProgram(n)
            s1, _ = prog.sos_variable(
                max(options.degree - 2, 0) if options.multiplier_degree else 0
            )
            b_minus_p = poly_add({(0,) * n: beta}, p, scales=[1.0, -1.0])
            prog.sos(poly_add(one_minus_v, poly_mul(s1, b_minus_p), scales=[1.0, -1.0]))
            _problem, status, _ = prog.solve(prog.cp.Minimize(0), options.solver)
            statuses.append(status)
            return status == "optimal", _value(s1)

        return _largest_feasible(feasible, options.bisection_steps, shrink=False)

    def _improve_V(self, V, f, s1, s2, p, n, options, statuses):
        """With s1, s2 fixed: maximise beta over V (V(0) = 0, no linear terms)."""
        prog = _SOSProgram(n)
        cp = prog.cp
        basis = monomials(n, 2, options.degree)
        coeffs = cp.Variable(len(basis))
        Vv = {ex: coeffs[k] for k, ex in enumerate(basis)}
        beta = cp.Variable()
        eps_sq = {tuple(2 if k == i else 0 for k in range(n)): options.epsilon for i in range(n)}
        prog.sos(poly_add(Vv, eps_sq, scales=[1.0, -1.0]))
        lie = self._lie(Vv, f, n)
        one_minus_v = poly_add({(0,) * n: 1.0}, Vv, scales=[1.0, -1.0])
        prog.sos(poly_add(lie, eps_sq, poly_mul(s2, one_minus_v), scales=[-1.0, -1.0, -1.0]))
        # (1 - V) - s1 (beta - p) = (1 - V) - beta s1 + s1 p
        s1p = poly_mul(s1, p)
        beta_s1 = {ex: beta * c for ex, c in s1.items()}
        prog.sos(poly_add(one_minus_v, beta_s1, s1p, scales=[1.0, -1.0, 1.0]))
        _problem, status, _ = prog.solve(cp.Maximize(beta), options.solver)
        statuses.append(status)
        if status not in ("optimal", "optimal_inaccurate") or beta.value is None:
            return None, 0.0
        return _value(Vv), float(beta.value)
