"""Sum-of-squares (SOS) Lyapunov functions by semidefinite programming (cvxpy; Clarabel, then SCS).

Coordinates: ``z = (x - x*) / h``, ``h`` the per-coordinate extent of the target points (below), so
that the monomial coefficients are well scaled; the dynamics ``g(z)`` are the polynomial ``f``
(exact when ``f`` is polynomial, else its Taylor polynomial of degree ``taylor_degree``, for the
SDP only). With ``l(z) = eps |z|^2``, ``V(0) = 0`` and no linear terms, the certificate is

    V - l SOS,    -(s3 grad V . g + l) - s2 (1 - V) SOS    (s2, s3 SOS, s2(0) = 0, s3(0) = 1),

so that ``{V <= 1}`` is a region of decrease (of the polynomial dynamics). The algorithm:

0. ``V`` = the quadratic of the linearisation, scaled by the largest feasible level (bisection);
1. each round: (A) ``V`` fixed: find ``s2, s3`` (a feasibility SDP; if none, ``V <- V / BACK_OFF``
   and retry); (B) ``s2, s3`` fixed: the ``V`` that minimises the mean of ``V`` over the target
   points (a volume surrogate: small ``V`` there = a large ``{V <= 1}``), an SDP linear in ``V``;
2. stop after ``iterations`` rounds or when a round improves the mean by less than ``tolerance``;
3. divide ``V`` by its mean on the target points (a positive multiple: the same sublevel sets and
   verdict, and a ``V`` of size O(1) rather than the 1e-7 the SDP may return).

Target points: the converged points of the cached true-ROA sample (``target = "roa"``, the same
sample the comparison uses; simulated once if missing) or a uniform sample of the box (``"box"``).
The SDP only proposes: the polynomial ``V`` is then verified on the true dynamics by our verifier.
Solver statuses (all of them, "optimal" included) are collected in ``Fit.info["solver_statuses"]``.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
import sympy

from lyapcert.certificates.candidates import ExpressionCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.systems.system import System


@dataclass
class SOSOptions:
    """Options of the SOS method.

    degree: even degree of V (2 to 8)
    multiplier_degree: even degree of the SOS multiplier s2 on (1 - V) (2 to 6)
    lie_multiplier_degree: even degree of the SOS multiplier s3 on grad V . f (0 to 4)
    taylor_degree: degree of the Taylor polynomial of non-polynomial dynamics (SDP step only)
    iterations: rounds of the alternation (multipliers, then V)
    tolerance: stop when a round lowers the mean of V on the target points by less than this (relative)
    epsilon: margin eps in V - eps |z|^2 and in the decrease condition
    solver: "clarabel" or "scs" (the other one is the fallback when the first fails)
    bisection_steps: steps of the bisection for the level of the initial quadratic
    target: points whose mean V is minimised: "roa" (the simulated true-ROA sample) or "box"
    samples: number of target points used
    seed: seed of the choice of target points
    """

    degree: int = 6
    multiplier_degree: int = 4
    lie_multiplier_degree: int = 2
    taylor_degree: int = 5
    iterations: int = 30
    tolerance: float = 1e-4
    epsilon: float = 1e-6
    solver: str = "clarabel"
    bisection_steps: int = 12
    target: str = "roa"
    samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.degree not in (2, 4, 6, 8):
            raise ValueError(f"degree: expected 2, 4, 6 or 8, got {self.degree}")
        if self.multiplier_degree not in (2, 4, 6):
            raise ValueError(f"multiplier_degree: expected 2, 4 or 6, got {self.multiplier_degree}")
        if self.lie_multiplier_degree not in (0, 2, 4):
            raise ValueError(
                f"lie_multiplier_degree: expected 0, 2 or 4, got {self.lie_multiplier_degree}"
            )
        if self.solver not in ("clarabel", "scs"):
            raise ValueError(f"solver: expected 'clarabel' or 'scs', got {self.solver!r}")
        if self.target not in ("roa", "box"):
            raise ValueError(f"target: expected 'roa' or 'box', got {self.target!r}")
        if not (1 <= self.taylor_degree <= 9):
            raise ValueError(f"taylor_degree: expected 1 to 9, got {self.taylor_degree}")
        if self.iterations < 0 or self.samples < 1 or self.bisection_steps < 0:
            raise ValueError("iterations, bisection_steps must be >= 0 and samples >= 1")
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ValueError(f"tolerance: expected a number >= 0, got {self.tolerance}")


BACK_OFF = 0.995  # V <- V / BACK_OFF when no multipliers are found at level 1
GROWTH_CAP = 1e4  # levels are searched up to this factor (beyond it: "unbounded", kept at the cap)
RETRIES = 8  # back-offs tried in a round before the alternation stops
SCS_MAX_ITERS = 20_000  # the fallback's iteration cap (SCS is slow to reach high accuracy)

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
    """Product of two polynomials."""
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


def lie_derivative(V: dict, f: list[dict]) -> dict:
    """``grad V . f``."""
    return poly_add(*[poly_mul(poly_diff(V, i), fi) for i, fi in enumerate(f)])


class _Space:
    """Coefficient vectors over the monomials of degree ``<= top``; linear maps as sparse matrices
    (so that each SOS constraint is one vector equality for cvxpy, fast to compile)."""

    def __init__(self, n: int, top: int):
        self.n = n
        self.mons = monomials(n, 0, top)
        self.index = {m: i for i, m in enumerate(self.mons)}

    def vector(self, poly: dict) -> np.ndarray:
        v = np.zeros(len(self.mons))
        for m, c in poly.items():
            v[self.index[m]] += c
        return v

    def matrix(self, linear, inputs) -> sparse.csr_matrix:
        """The matrix of the linear map ``poly -> linear(poly)`` on polynomials over ``inputs``."""
        rows, cols, vals = [], [], []
        for j, m in enumerate(inputs):
            for k, c in linear({m: 1.0}).items():
                if c != 0:
                    rows.append(self.index[k])
                    cols.append(j)
                    vals.append(c)
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(self.mons), len(inputs)))

    def gram(self, basis) -> sparse.csr_matrix:
        """The matrix of ``vec(Q) -> coefficients of b(z)' Q b(z)``."""
        m = len(basis)
        rows = [self.index[_add(a, b)] for a in basis for b in basis]
        return sparse.csr_matrix(
            (np.ones(m * m), (rows, np.arange(m * m))), shape=(len(self.mons), m * m)
        )


class _SOSProgram:
    """SOS constraints ``coefficients(expr) = coefficients(b' Q b), Q PSD`` on a ``_Space``."""

    def __init__(self, space: _Space):
        import cvxpy as cp

        self.cp = cp
        self.space = space
        self.constraints = []

    def sos_polynomial(self, basis):
        """A new SOS polynomial ``b' Q b`` (coefficient expression over the space, ``Q``)."""
        cp = self.cp
        Q = cp.Variable((len(basis), len(basis)), PSD=True)
        return self.space.gram(basis) @ cp.vec(Q, order="C"), Q

    def require_sos(self, expr, basis):
        coeffs, Q = self.sos_polynomial(basis)
        self.constraints.append(coeffs == expr)
        return Q

    def solve(self, objective, solver: str, statuses: list, accept_inaccurate: bool):
        """Solve with ``solver``; the other one only when the first fails (an error, or an
        inaccurate answer that is not accepted). Returns ``(ok, status)``."""
        cp = self.cp
        problem = cp.Problem(objective, self.constraints)
        order = ["CLARABEL", "SCS"] if solver == "clarabel" else ["SCS", "CLARABEL"]
        status = "not solved"
        for name in order:
            kwargs = {"max_iters": SCS_MAX_ITERS} if name == "SCS" else {}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the status says it; it is recorded
                    problem.solve(solver=name, **kwargs)
                status = str(problem.status)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a solver failure (Clarabel may panic): the fallback
                status = f"error ({type(exc).__name__})"
            statuses.append(status)
            if status == "optimal" or (accept_inaccurate and status == "optimal_inaccurate"):
                return True, status
            if status in ("infeasible", "unbounded"):
                return False, status
        return False, status


def _largest_feasible(feasible, steps: int):
    """The largest level ``t`` with ``feasible(t) = (True, multiplier)``: grow from 1 by factors of
    4 up to ``GROWTH_CAP`` or shrink until feasible, then bisect ``steps`` times. Returns
    ``(t, multiplier)``; ``(0.0, None)`` when nothing is feasible."""
    lo, hi, best = 0.0, 1.0, None
    ok, s = feasible(hi)
    while ok and hi < GROWTH_CAP:
        lo, best = hi, s
        hi *= 4
        ok, s = feasible(hi)
    if lo == 0.0:
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
    return lo, best


class SOSMethod(Method):
    """``sos``: a polynomial ``V`` by sum-of-squares programming (module docstring); options:
    ``SOSOptions``."""

    name = "sos"
    Options = SOSOptions

    def fit(self, system: System, options: SOSOptions, progress: bool = False) -> Fit:
        started = time.perf_counter()
        # a closed loop has no equations of its own (its controller is a network or a file)
        if system.symbolic is None or system.input_names:
            raise MethodError("sos: needs an autonomous system defined by equations")
        if system.is_discrete:
            raise MethodError("sos: discrete-time systems are not supported by this method yet")
        n = system.n_states
        z = sympy.symbols(f"e0:{n}", real=True)
        points, target = self._target_points(system, options, progress)
        h = np.abs(points).max(axis=0)
        h = np.where(h > 1e-9, h, 1.0)
        f_poly, exact = self._polynomial_dynamics(system, z, options.taylor_degree, h)
        problem = _Problem(n, f_poly, points / h, options)
        statuses: list[str] = []
        # start: the quadratic of the linearisation (in z), scaled to its largest decrease level
        a = system.linearize()[0]
        P = lyapunov_matrix(np.diag(1 / h) @ a @ np.diag(h), np.eye(n), False)
        V = np.array([self._quadratic_coefficient(P, m) for m in problem.v_basis])
        gamma, _ = _largest_feasible(
            lambda g: problem.multipliers(V, g, statuses), options.bisection_steps
        )
        if not (gamma > 0 and math.isfinite(gamma)):
            raise MethodError("sos: no level of the linearisation's quadratic is certified")
        V = V / gamma
        history: list[dict] = [{"iteration": 0, "gamma": gamma, "mean_v": problem.mean(V)}]
        for it in range(1, options.iterations + 1):
            multipliers = None
            for _ in range(RETRIES):
                ok, multipliers = problem.multipliers(V, 1.0, statuses)
                if ok:
                    break
                V = V / BACK_OFF
                multipliers = None
            if multipliers is None:
                history.append({"iteration": it, "stopped": "no multipliers at level 1"})
                break
            newV = problem.improve(multipliers, statuses)
            if newV is None:
                history.append({"iteration": it, "stopped": "the V step failed"})
                break
            before, after = problem.mean(V), problem.mean(newV)
            history.append({"iteration": it, "mean_v": after})
            if progress:
                from rich.console import Console

                Console(stderr=True).print(f"sos: round {it}: mean V on the targets = {after:.6g}")
            if not after < before:
                break
            V = newV
            if before - after < options.tolerance * before:
                break
        if not np.all(np.isfinite(V)):
            raise MethodError("sos: the solver returned non-finite coefficients; no certificate")
        mean_v = problem.mean(V)
        # Normalise: V / (its mean on the target points). The SDP's V can be tiny (1e-7 for a
        # linear system, where any multiple of a decreasing V decreases: the volume objective
        # shrinks it to the epsilon margin); a positive multiple has the same sublevel sets and
        # the same verdict, and a V of size O(1) on the region prints and compares readably.
        norm = mean_v if math.isfinite(mean_v) and mean_v > 0 else 1.0
        V = V / norm
        expr = sum(
            float(c) * sympy.prod([s**k for s, k in zip(z, m)])
            for m, c in zip(problem.v_basis, V)
            if c != 0
        )
        x_syms = [sympy.Symbol(s, real=True) for s in system.state_names]
        expr = expr.subs(
            {zi: (xi - xs) / float(hi) for zi, xi, xs, hi in zip(z, x_syms, system.equilibrium, h)}
        )
        candidate = ExpressionCandidate(sympy.expand(expr), system)
        return Fit(
            candidate,
            time.perf_counter() - started,
            {
                "degree": options.degree,
                "exact_dynamics": exact,
                "target": target,
                "scale": [float(v) for v in h],
                "mean_v": mean_v,
                "normalised_by": norm,
                "history": history,
                "solver_statuses": sorted(set(statuses)),
            },
        )

    # -------------------------------------------------------------------- pieces

    @staticmethod
    def _target_points(system: System, options: SOSOptions, progress: bool):
        """``(points - x* [k, n], target used)``: the converged points of the true-ROA sample, or
        uniform points of the box (also when the sample has no converged point)."""
        rng = np.random.default_rng(options.seed)
        x0 = np.asarray(system.equilibrium, dtype=float)
        if options.target == "roa":
            from lyapcert.simulate.roa import true_roa

            est = true_roa(system, cache=True, progress=progress)
            inside = est.points[est.inside]
            if len(inside):
                idx = rng.choice(len(inside), size=min(options.samples, len(inside)), replace=False)
                return inside[idx] - x0, "roa"
        lo = np.asarray(system.domain.lower, dtype=float)
        hi = np.asarray(system.domain.upper, dtype=float)
        return lo + rng.random((options.samples, len(lo))) * (hi - lo) - x0, "box"

    @staticmethod
    def _quadratic_coefficient(P: np.ndarray, m: tuple[int, ...]) -> float:
        idx = [i for i, k in enumerate(m) for _ in range(k)]
        if len(idx) != 2:
            return 0.0
        i, j = idx
        return float(P[i, i]) if i == j else float(P[i, j] + P[j, i])

    @staticmethod
    def _polynomial_dynamics(system: System, z, degree: int, h) -> tuple[list[dict], bool]:
        """``g(z) = f(x* + h z) / h`` as polynomials (Taylor at ``z = 0`` when not polynomial)."""
        sym = system.symbolic
        params = {sympy.Symbol(k, real=True): sympy.Float(v, 30) for k, v in sym.params.items()}
        xs = [sympy.Symbol(s, real=True) for s in system.state_names]
        shift = {
            x: x0 + sympy.Float(float(hi), 30) * zi
            for x, x0, zi, hi in zip(xs, system.equilibrium, z, h)
        }
        out, exact = [], True
        for expr, hi in zip(sym.dynamics, h):
            fe = sympy.expand(expr.subs(params).subs(shift) / sympy.Float(float(hi), 30))
            if fe.is_polynomial(*z):
                out.append(from_sympy(fe, z))
                continue
            exact = False
            taylor = 0
            at0 = {zi: 0 for zi in z}
            for ex in monomials(len(z), 0, degree):
                d = fe
                for zi, k in zip(z, ex):
                    if k:
                        d = sympy.diff(d, zi, k)
                c = float(sympy.N(d.subs(at0), 30)) / math.prod(math.factorial(k) for k in ex)
                if c != 0:
                    taylor += c * sympy.prod([zi**k for zi, k in zip(z, ex)])
            out.append(from_sympy(sympy.sympify(taylor), z))
        return out, exact


class _Problem:
    """The two SDPs of a round, on fixed monomial bases (``V`` as coefficients on ``v_basis``)."""

    def __init__(self, n: int, f: list[dict], points: np.ndarray, options: SOSOptions):
        self.n, self.f, self.options = n, f, options
        d, k2, k3 = options.degree, options.multiplier_degree, options.lie_multiplier_degree
        f_degree = max([sum(m) for fi in f for m in fi] + [1])
        lie_degree = d - 1 + f_degree
        top = max(lie_degree + k3, d + k2)
        top += top % 2
        self.space = _Space(n, top)
        self.v_basis = monomials(n, 2, d)
        self.v_mons = monomials(n, 0, d)
        self.lie_mons = monomials(n, 0, lie_degree)
        self.s2_mons, self.s3_mons = monomials(n, 0, k2), monomials(n, 0, k3)
        self.s2_half = monomials(n, 1, k2 // 2)  # s2(0) = 0: no constant term to cancel
        self.s3_half = monomials(n, 0, k3 // 2)
        self.decrease_half = monomials(n, 1, top // 2)
        self.v_half = monomials(n, 1, d // 2)
        sq = {tuple(2 if k == i else 0 for k in range(n)): options.epsilon for i in range(n)}
        self.margin = self.space.vector(sq)
        self.weights = np.stack(
            [np.prod(points ** np.asarray(m), axis=1) for m in self.v_basis], axis=1
        ).mean(axis=0)
        sub_v = _Space(n, d)
        sub_lie = _Space(n, lie_degree)
        self.v_matrix = self.space.matrix(lambda p: p, self.v_basis)
        self.v_sub = sub_v.matrix(lambda p: p, self.v_basis)
        self.one_sub = sub_v.vector({(0,) * n: 1.0})
        self.lie_sub = sub_lie.matrix(lambda p: lie_derivative(p, f), self.v_basis)

    def poly(self, coeffs, mons) -> dict:
        return {m: float(c) for m, c in zip(mons, coeffs) if c != 0}

    def mean(self, V: np.ndarray) -> float:
        return float(self.weights @ V)

    def multipliers(self, V: np.ndarray, level: float, statuses):
        """``V`` fixed: SOS ``s2, s3`` with ``-(s3 grad V . f + l) - s2 (level - V)`` SOS.
        Returns ``(feasible, (s2, s3))``."""
        import cvxpy as cp

        prog = _SOSProgram(self.space)
        s2, _ = prog.sos_polynomial(self.s2_half)
        s3, _ = prog.sos_polynomial(self.s3_half)
        Vp = self.poly(V, self.v_basis)
        gap = poly_add({(0,) * self.n: level}, Vp, scales=[1.0, -1.0])
        m2 = self.space.matrix(lambda p: poly_mul(p, gap), self.s2_mons)
        m3 = self.space.matrix(lambda p: poly_mul(p, lie_derivative(Vp, self.f)), self.s3_mons)
        k2, k3 = len(self.s2_mons), len(self.s3_mons)
        prog.require_sos(-(m2 @ s2[:k2]) - (m3 @ s3[:k3]) - self.margin, self.decrease_half)
        prog.constraints.append(s3[0] == 1.0)  # the scale of (s2, s3)
        ok, _ = prog.solve(cp.Minimize(0), self.options.solver, statuses, False)
        if not ok:
            return False, None
        return True, (
            self.poly(np.asarray(s2.value)[:k2], self.s2_mons),
            self.poly(np.asarray(s3.value)[:k3], self.s3_mons),
        )

    def improve(self, multipliers, statuses):
        """``s2, s3`` fixed: the ``V`` with the smallest mean on the target points such that
        ``V - l`` and ``-(s3 grad V . f + l) - s2 (1 - V)`` are SOS."""
        import cvxpy as cp

        s2, s3 = multipliers
        prog = _SOSProgram(self.space)
        c = cp.Variable(len(self.v_basis))
        prog.require_sos(self.v_matrix @ c - self.margin, self.v_half)
        m2 = self.space.matrix(lambda p: poly_mul(p, s2), self.v_mons)
        m3 = self.space.matrix(lambda p: poly_mul(p, s3), self.lie_mons)
        decrease = -(m2 @ (self.one_sub - self.v_sub @ c)) - (m3 @ (self.lie_sub @ c))
        prog.require_sos(decrease - self.margin, self.decrease_half)
        ok, _ = prog.solve(cp.Minimize(self.weights @ c), self.options.solver, statuses, True)
        if not ok or c.value is None or not np.all(np.isfinite(c.value)):
            return None
        return np.asarray(c.value, dtype=float)
