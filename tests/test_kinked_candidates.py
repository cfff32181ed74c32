"""Kinked candidates (abs, min, max): Clarke-sound forward mode, and honest verdicts.

A kinked ``V`` has no symbolic Lie derivative; the verifier bounds ``grad V . f`` in forward mode
(``Dual``), whose rules must enclose the whole Clarke generalised gradient wherever a kink may lie
in the box. Then ``max over the Clarke gradient of grad V . f < 0`` is what is proven, the
decrease condition of the nonsmooth Lyapunov theorem for a locally Lipschitz ``V``.

Oracle. The one-sided directional derivatives ``f'(x; t)`` and ``-f'(x; -t)`` are the largest and
smallest values of ``zeta . t`` over ... at least two points of the Clarke gradient (Clarke:
``f'(x; t) <= f°(x; t) = max zeta . t``), so both must lie in the tangent enclosure. They are
computed exactly in arb by the one-sided chain rule over the sympy expression (``abs'(0; d) = |d|``,
``max'(a = b; d) = max(a', b')``) at the corners, random interior points and points planted
exactly on the kinks (``x = 0``, ``|x| = |y|``, ``x = y / 2``) of random boxes.
"""

from __future__ import annotations

import math
import zlib

import flint
import numpy as np
import pytest
import sympy
import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from lyapcert.certificates import ExpressionCandidate
from lyapcert.errors import ExpressionError
from lyapcert.simulate.integrate import simulate
from lyapcert.systems import System, get_system
from lyapcert.verify import Verdict, VerifyOptions, verify_candidate

flint.ctx.prec = 200
A = flint.arb
slow = pytest.mark.slow

PLANE = System.from_equations("plane", ["x", "y"], ["-x", "-y"], [[-3, 3], [-3, 3]])

KINKED = [
    "abs(x) + abs(y)",
    "max(x**2, y**2)",
    "min(x**2 + 2*y**2, 2*x**2 + y**2)",
    "max(abs(x), abs(y))",
    "abs(abs(x) - abs(y)) + 0.25*x**2",
    "abs(x - 0.5*y)*(1 + y**2) - min(x, y, 0.375)",
    "max(x, -2*y, 0.5*x*y)**2 + sqrt(1 + max(x, y)**2)",
]


# ------------------------------------------------------------------- one-sided forward mode in arb


class DD:
    """Value and one-sided directional derivative ``f'(x; t)`` in arb; ``d`` None: undecided."""

    __slots__ = ("d", "v")

    def __init__(self, v, d):
        self.v, self.d = v, d


def _sign(ball) -> int | None:
    """-1, 0, 1 when decided exactly (0 only for an exact zero), else None."""
    if ball.is_exact() and ball == 0:
        return 0
    if ball > 0:
        return 1
    if ball < 0:
        return -1
    return None


def _lin(d, fn):
    return None if d is None else fn(d)


def _max_ball(a, b):
    """``max(a, b)`` of two balls: the larger one when decided, else the union (stricter)."""
    if a >= b:
        return a
    if b >= a:
        return b
    return a.union(b)


def _min_ball(a, b):
    if a <= b:
        return a
    if b <= a:
        return b
    return a.union(b)


def one_sided(expr, point: dict, tangent: dict) -> DD:
    """``(f(x), f'(x; t))`` exactly (arb) for the sympy ``expr`` at the floats ``point``."""
    if expr.is_Symbol:
        return DD(A(point[expr.name]), A(tangent[expr.name]))
    if expr.is_number:
        return DD(A(float(expr)), A(0))
    args = [one_sided(a, point, tangent) for a in expr.args]
    if isinstance(expr, sympy.Add):
        v, d = args[0].v, args[0].d
        for a in args[1:]:
            v, d = v + a.v, (None if d is None or a.d is None else d + a.d)
        return DD(v, d)
    if isinstance(expr, sympy.Mul):
        v, d = args[0].v, args[0].d
        for a in args[1:]:
            d = None if d is None or a.d is None else d * a.v + v * a.d
            v = v * a.v
        return DD(v, d)
    if isinstance(expr, sympy.Pow):
        (b, _), p = args, expr.args[1]
        if p.is_Integer:
            n = int(p)
            return DD(b.v**n, _lin(b.d, lambda d: n * b.v ** (n - 1) * d))
        if p == sympy.Rational(1, 2):
            s = b.v.sqrt()
            return DD(s, _lin(b.d, lambda d: d / (2 * s)))
        raise NotImplementedError(expr)
    if isinstance(expr, sympy.Abs):
        (a,) = args
        s = _sign(a.v)
        if s is None:
            return DD(abs(a.v), None)
        if s == 0:
            return DD(A(0), _lin(a.d, abs))
        return DD(a.v * s, _lin(a.d, lambda d: d * s))
    if isinstance(expr, (sympy.Max, sympy.Min)):
        big = isinstance(expr, sympy.Max)
        out = args[0]
        for a in args[1:]:
            s = _sign(a.v - out.v)
            if s is None:
                out = DD(out.v.union(a.v), None)
            elif s == 0:
                d = (
                    None
                    if out.d is None or a.d is None
                    else (_max_ball(out.d, a.d) if big else _min_ball(out.d, a.d))
                )
                out = DD(out.v, d)
            elif (s > 0) == big:
                out = a
        return out
    raise NotImplementedError(type(expr).__name__)


# ------------------------------------------------------------------------------ the enclosure test


def _planted(rng, lo, hi):
    """Points of the box on the kinks of the expressions above (exact floats), plus interior."""
    xs = [*rng.uniform(lo[0], hi[0], 2), lo[0], hi[0]]
    ys = [*rng.uniform(lo[1], hi[1], 2), lo[1], hi[1]]
    pts = [(x, y) for x in (lo[0], hi[0]) for y in (lo[1], hi[1])]
    pts += list(zip(xs, ys))
    for x in xs:
        pts += [(x, 0.0), (x, x), (x, -x), (x, 2.0 * x), (x, -0.5 * x), (x, 0.375), (x, 2 * 0.375)]
    for y in ys:
        pts += [(0.0, y), (y, y), (-y, y), (0.5 * y, y), (0.375, y), (-2.0 * y, y)]
    return [(float(x), float(y)) for x, y in pts if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1]]


def check_clarke(text: str, n: int, seed: int) -> int:
    """Boxes around the kinks with interval tangents: the value and both one-sided directional
    derivatives at every planted point and tangent corner lie in the ``Dual`` enclosure."""
    cand = ExpressionCandidate(text, PLANE)
    graph = capture(cand.value_function(), 1)
    rng = np.random.default_rng(zlib.crc32(f"{text}/{seed}".encode()))
    centre = rng.uniform(-1.0, 1.0, (n, 2)) * (rng.random((n, 2)) < 0.8)  # often on an axis
    width = 10.0 ** rng.uniform(-9.0, 0.3, (n, 2))
    lo, hi = centre - width * rng.random((n, 2)), centre + width * rng.random((n, 2))
    t_mid = rng.normal(size=(n, 2))
    t_rad = np.abs(rng.normal(size=(n, 2))) * (rng.random((n, 2)) < 0.5)
    t_lo, t_hi = t_mid - t_rad, t_mid + t_rad
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    out = graph.evaluate(Dual(Interval(as_t(lo), as_t(hi)), Interval(as_t(t_lo), as_t(t_hi))))
    vlo, vhi = out.value.lo.reshape(-1).tolist(), out.value.hi.reshape(-1).tolist()
    dlo, dhi = out.tangent.lo.reshape(-1).tolist(), out.tangent.hi.reshape(-1).tolist()
    checked = 0
    for i in range(n):
        assert not (math.isnan(vlo[i]) or math.isnan(dlo[i]) or math.isnan(dhi[i]))
        tangents = {
            (float(a), float(b)) for a in (t_lo[i, 0], t_hi[i, 0]) for b in (t_lo[i, 1], t_hi[i, 1])
        }
        for x, y in _planted(rng, lo[i], hi[i]):
            for tx, ty in tangents:
                at = {"x": x, "y": y}
                fwd = one_sided(cand.expr, at, {"x": tx, "y": ty})
                bwd = one_sided(cand.expr, at, {"x": -tx, "y": -ty})
                where = f"{text} at ({x!r}, {y!r}), t = ({tx!r}, {ty!r}), box {i}"
                assert fwd.v.lower() >= vlo[i] and fwd.v.upper() <= vhi[i], where + " value"
                for d in (fwd.d, None if bwd.d is None else -bwd.d):
                    if d is None:
                        continue
                    assert d.lower() >= dlo[i] and d.upper() <= dhi[i], (
                        f"{where}: one-sided derivative {d} outside [{dlo[i]!r}, {dhi[i]!r}]"
                    )
                    checked += 1
    return checked


@pytest.mark.parametrize("text", KINKED)
def test_dual_encloses_the_clarke_gradient(text):
    assert check_clarke(text, 60, 0) > 500


@slow
@pytest.mark.parametrize("text", KINKED)
def test_dual_encloses_the_clarke_gradient_many(text):
    assert check_clarke(text, 2000, 1) > 20_000


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("abs(x) + abs(y)", -1.0, 1.0),  # the Clarke gradient at 0 is [-1, 1] x [-1, 1]
        ("max(x**2, y**2)", -0.5, 0.5),
    ],
)
def test_dual_at_the_kink_is_the_whole_clarke_hull(text, lo, hi):
    """On a point of the kink the tangent enclosure spans the hull of the one-sided derivatives
    (a rule that picked one side, like autograd's ``sign(0) = 0``, would fail this)."""
    cand = ExpressionCandidate(text, PLANE)
    graph = capture(cand.value_function(), 1)
    x = torch.tensor([[0.0, 0.0], [0.25, 0.25], [0.25, -0.25]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = graph.evaluate(Dual(Interval(x, x), Interval(t, t)))
    if text.startswith("abs"):
        assert out.tangent.lo[0] <= -1.0 and out.tangent.hi[0] >= 1.0
    else:  # at (1/4, 1/4) along x: hull of 2x = 1/2 and 0; at (1/4, -1/4) along y: -1/2 and 0
        assert out.tangent.lo.reshape(-1)[1] <= 0.0 and out.tangent.hi.reshape(-1)[1] >= 0.5
        assert out.tangent.lo.reshape(-1)[2] <= -0.5 and out.tangent.hi.reshape(-1)[2] >= 0.0


# --------------------------------------------------------------------------- the verifier, end to end

OPTIONS = VerifyOptions(time_limit=120.0, max_boxes=400_000)
SHORT = VerifyOptions(time_limit=120.0, max_boxes=40_000)  # any verdict but VERIFIED will do


def converges(system, candidate, level, n=2000, seed=0):
    """Simulate points of ``{V <= level}`` (rejection sampling in the box): each converges to x*
    and ``V`` never increases along the (RK4) trajectory beyond rounding."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(system.domain.lower), np.asarray(system.domain.upper)
    x = torch.as_tensor(lo + (hi - lo) * rng.random((20 * n, system.n_states)))
    x = x[candidate.value(x) <= level][:n]
    assert x.shape[0] > n // 4
    traj = simulate(system, x, horizon=40.0, step=0.01)
    v = torch.stack([candidate.value(s) for s in traj.states])
    rises = (v[1:] - v[:-1]).max()
    final = traj.states[-1].norm(dim=1).max()
    return bool(final < 1e-6 and rises <= 1e-9 * max(1.0, level))


@pytest.mark.parametrize(
    "text", ["abs(x)+abs(y)", "max(x**2, y**2)", "min(x**2 + 2*y**2, 2*x**2 + y**2)"]
)
def test_kinked_candidates_verified_where_true(text):
    """nonpoly0: x' = -x + x y, y' = -y on [-1, 1]^2; each V decreases strictly off x*
    (Clarke sense on the kinks), so VERIFIED; its set checked by simulation."""
    s = get_system("nonpoly0")
    cand = ExpressionCandidate(text, s)
    assert cand.kinked and cand.lie_derivative_function(s) is None
    r = verify_candidate(s, cand, options=OPTIONS)
    assert r.verdict is Verdict.VERIFIED, r.message
    assert 0.9 < r.level < 1.0 + 1e-9
    assert converges(s, cand, r.level)


@pytest.mark.parametrize("text", ["abs(x)+abs(v)", "max(x**2, v**2)", "min(abs(x), abs(v))"])
def test_kinked_candidates_not_lyapunov_are_never_verified(text):
    """damped_sho rotates: neither |x| + |v| nor max(x^2, v^2) decreases everywhere, and
    min(|x|, |v|) is not even positive definite."""
    s = get_system("damped_sho")
    r = verify_candidate(s, ExpressionCandidate(text, s), options=SHORT)
    assert r.verdict is not Verdict.VERIFIED


def test_falsifier_and_replay_handle_kinked_candidates():
    """The float64 falsifier (autograd through abs / max) runs; a replay on a kink has no mp50
    number (the derivative there is a set)."""
    from lyapcert.verify.falsify import decrease_function, falsification_points
    from lyapcert.verify.lyapunov import build_problem, replay

    s = get_system("damped_sho")
    cand = ExpressionCandidate("max(x**2, v**2) + abs(x)", s)
    fn = decrease_function(s, cand)
    lo, hi = s.domain.as_tensors(torch.float64, torch.device("cpu"))
    pts = falsification_points(fn, lo, hi, n_samples=256, n_starts=16, steps=5)
    assert pts.shape[1] == 2 and torch.isfinite(pts).all()
    problem = build_problem(s, cand)
    on = replay(problem, [0.5, 0.5])
    assert "mp50" not in on and on["interval"][0] <= on["interval"][1]
    off = replay(problem, [0.5, 0.25])
    exact = 2 * 0.5 * 0.25 + 0.25  # d/dt (x^2 + |x|) = (2x + 1) v at x = 1/2, v = 1/4
    assert float(off["mp50"]) == pytest.approx(exact, rel=1e-12)
    assert off["interval"][0] <= exact <= off["interval"][1]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda x, y: sympy.Piecewise((x**2, x > 0), (2 * x**2, True)) + y**2, "Piecewise"),
        (lambda x, y: sympy.sign(x) * x + y**2, "jump"),
        (lambda x, y: sympy.Heaviside(x) + x**2 + y**2, "jump"),
    ],
)
def test_piecewise_and_jumps_are_refused_with_the_reason(make, reason):
    x, y = (sympy.Symbol(n, real=True) for n in ("x", "y"))
    with pytest.raises(ExpressionError, match=reason) as info:
        ExpressionCandidate(make(x, y), PLANE)
    assert info.value.field == "candidate"
