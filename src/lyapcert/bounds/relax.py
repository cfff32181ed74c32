"""Linear relaxations of single operations (the rules a CROWN-style backward pass uses).

For a batch of input intervals ``[l, u]`` (float64 tensors of one shape, finite, ``l <= u``) each
rule returns ``LinearBounds(a_lo, b_lo, a_hi, b_hi)`` (tensors of the same shape) such that for
EVERY REAL ``x`` in ``[l, u]``::

    a_lo * x + b_lo  <=  f(x)  <=  a_hi * x + b_hi

in exact real arithmetic, for the stored float64 coefficients and the real function ``f`` (not its
float evaluation). A coefficient is never NaN; ``b`` may be ``-inf`` (lower) or ``+inf`` (upper),
with ``a = 0``, only where the range of ``f`` over ``[l, u]`` leaves float64 (``exp(800)``).

How each line is made sound (the rule of this module):

1. A *candidate* line is computed in plain float64, with no care for rounding: the usual CROWN
   choice (chord, tangent at the midpoint; for S-shaped functions the tangent through the far
   endpoint, its touching point found by bisection; for piecewise-linear functions the exact
   lines). Its quality matters for tightness only.
2. The gap ``G(x) = f(x) - (a x + b)`` (lower line; ``a x + b - f(x)`` for the upper one) is
   bounded below over ``[l, u]`` in outward-rounded interval arithmetic (``Interval``: its values
   of ``f`` and ``f'`` at float points contain the real ones), with the stored float ``a, b``:

   - ``[l, u]`` is cut at the inflection points of ``f`` into pieces of known curvature. At an
     inflection point that is not a float (``k pi`` for ``sin``) the cut is a *sliver*
     ``[c_lo, c_hi]`` of a few ulps that provably contains it (``pi`` enclosed by two floats);
   - a piece where ``G`` is convex: for any float ``t`` in the piece ``[p, q]``,
     ``G(x) >= G(t) + G'(t) (x - t)`` (tangent inequality), so
     ``min G >= inf( G([t]) + G'([t]) * ([p, q] - t) )``; taken at ``t`` in ``{p, q, touching
     point}``, the best (largest) of the three bounds is used;
   - a piece where ``G`` is concave: ``min G = min(G(p), G(q))`` (both enclosed);
   - a sliver (unknown curvature): the mean-value form ``G(m) + G'([p, q]) * ([p, q] - m)``;
   - piecewise-linear ``f`` (relu, leaky_relu, clamp): ``G`` is piecewise linear with kinks at
     the (float) kinks of ``f``, so ``min G`` is its minimum over the endpoints and the kinks
     inside, each enclosed.

   The minimum of the pieces' bounds, ``m``, is a proven lower bound of ``G`` over ``[l, u]``.
3. When ``m < 0`` the line is shifted by it: ``b_lo := down(b_lo + m)`` (upper:
   ``b_hi := up(b_hi - m)``, ``down``/``up`` = the next float below/above, so the shift in float
   covers the real one).
4. A line with a non-finite coefficient (an overflow anywhere, a gap bound of ``-inf``) is replaced
   by the constant line ``a = 0, b = inf / sup of f([l, u])`` (``Interval`` bounds), which is always
   sound; so is a line that lies below that constant (lower; upper: above) on all of ``[l, u]``.

Sine and cosine get the fancy line only for ``|x| <= 2**20``, widths below 6 and at most one
inflection point inside; elsewhere the constant line. Integer powers ``x ** k`` take ``k >= 0``;
softplus takes ``beta = 1`` only (torch's ``threshold`` is handled: the piecewise function is ``x``
where ``x > threshold``, below the smooth softplus, so the upper line carries over and the lower one
is also checked against ``x`` there).

``mccormick(xl, xu, yl, yu)`` gives the four McCormick planes of ``x * y`` over a box; the
coefficients ``a = yl`` etc. are exact and only the constant ``-xl * yl`` is rounded (outward), so
``(x - xl)(y - yl) >= 0`` and its three companions make each plane sound for real ``x, y``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from lyapcert.bounds.interval import (
    Interval,
    bell_from_q,
    bell_q,
    down,
    down_lib,
    softplus_smooth,
    up,
    up_lib,
)

__all__ = [
    "LinearBounds",
    "McCormickPlanes",
    "Plane",
    "clamp",
    "cos",
    "cos_fast",
    "exp",
    "exp_fast",
    "leaky_relu",
    "mccormick",
    "power",
    "power_fast",
    "relu",
    "sigmoid",
    "sigmoid_derivative_fast",
    "sigmoid_fast",
    "sigmoid_pair_fast",
    "sin",
    "sin_fast",
    "softplus",
    "softplus_fast",
    "tanh",
    "tanh_derivative_fast",
    "tanh_fast",
    "tanh_pair_fast",
]

_INF = math.inf
BISECTION_STEPS = 40
"""Steps of the bisection for the touching point of an S-shaped function's tangent (candidate
only: the soundness step makes any touching point sound)."""
PERIODIC_MAX_ABS = 2.0**20
"""Beyond this magnitude sine and cosine get the constant line."""
PERIODIC_MAX_WIDTH = 6.0
"""Intervals at least this wide (close to 2 pi) get the constant line for sine and cosine; so do
those with two inflection points inside."""


class LinearBounds(NamedTuple):
    """``a_lo x + b_lo <= f(x) <= a_hi x + b_hi`` for every real ``x`` in the input interval."""

    a_lo: torch.Tensor
    b_lo: torch.Tensor
    a_hi: torch.Tensor
    b_hi: torch.Tensor


class Plane(NamedTuple):
    """The plane ``a x + b y + c``."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor


class McCormickPlanes(NamedTuple):
    """``max(lower) <= x * y <= min(upper)`` for every real ``(x, y)`` in the box."""

    lower: tuple[Plane, Plane]
    upper: tuple[Plane, Plane]


# ------------------------------------------------------------------------------------ the checks


def _check(l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(l, torch.Tensor) and isinstance(u, torch.Tensor)):
        raise TypeError("relax: the interval endpoints must be tensors")
    if l.shape != u.shape:
        raise ValueError(f"relax: endpoints of different shapes {tuple(l.shape)}, {tuple(u.shape)}")
    if l.dtype != torch.float64 or u.dtype != torch.float64:
        raise ValueError(f"relax: expected float64 endpoints, got {l.dtype} and {u.dtype}")
    if not finite_ordered(l, u):
        raise ValueError("relax: expected finite endpoints with l <= u")
    return l, u


_MAX = torch.finfo(torch.float64).max


def finite_ordered(l: torch.Tensor, u: torch.Tensor) -> bool:
    """Every ``l``, ``u`` finite and ``l <= u`` (three reductions: the largest magnitude is at
    most the largest float, NaN failing the test, and ``u - l`` is nowhere negative: for finite
    floats ``u - l < 0`` exactly when ``u < l``, an overflow giving ``+inf`` when ``u > l``)."""
    if l.numel() == 0:
        return True
    big = torch.maximum(l.abs().amax(), u.abs().amax())
    return bool(big <= _MAX) and bool((u - l).amin() >= 0)


def _mid(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(0.5 * l + 0.5 * u, l), u)


FIv = Callable[[Interval], Interval]


class _Fn:
    """A smooth function: float evaluations for the candidate line, interval ones for the proof.
    ``point(x)``: ``(f(x), [f(x)], f'(x), [f'(x)])`` at float points (a function may compute all
    four from one library call)."""

    def __init__(self, f: Callable, df: Callable, f_iv: FIv, df_iv: FIv, point=None):
        self.f, self.df, self.f_iv, self.df_iv = f, df, f_iv, df_iv
        self._point = point

    def point(self, x: torch.Tensor):
        if self._point is not None:
            return self._point(x)
        xp = Interval.point(x)
        return self.f(x), self.f_iv(xp), self.df(x), self.df_iv(xp)


def _gap(fn_iv: FIv, a: torch.Tensor, b: torch.Tensor, x: Interval, lower: bool) -> Interval:
    """An enclosure of ``G = f - (a x + b)`` (lower) or ``(a x + b) - f`` (upper) over ``x``
    (exact for the float ``a, b``; the dependency of ``f`` and the line on ``x`` is not used, so
    this is tight only for point intervals)."""
    line = x * a + b
    fx = fn_iv(x)
    return fx - line if lower else line - fx


def _dgap(dfn_iv: FIv, a: torch.Tensor, x: Interval, lower: bool) -> Interval:
    d = dfn_iv(x)
    return d - a if lower else -(d - a)


def _convex_piece(fn: _Fn, a, b, p, q, ts, lower: bool) -> torch.Tensor:
    """A lower bound of the convex ``G`` over ``[p, q]``: the best tangent inequality at ``ts``."""
    piece = Interval(p, q)
    best = torch.full_like(p, -_INF)
    for t in (p, q, *ts):
        t = torch.minimum(torch.maximum(t, p), q)
        t = torch.where(torch.isnan(t), p, t)
        tp = Interval.point(t)
        bound = _gap(fn.f_iv, a, b, tp, lower) + _dgap(fn.df_iv, a, tp, lower) * (piece - t)
        best = torch.maximum(best, bound.lo)  # a NaN bound (sanitised to -inf) is never chosen
    return best


def _concave_piece(fn: _Fn, a, b, p, q, lower: bool) -> torch.Tensor:
    gp = _gap(fn.f_iv, a, b, Interval.point(p), lower).lo
    gq = _gap(fn.f_iv, a, b, Interval.point(q), lower).lo
    return torch.minimum(gp, gq)


def _sliver_piece(fn: _Fn, a, b, p, q, lower: bool) -> torch.Tensor:
    """Mean-value form: no curvature known."""
    m = _mid(p, q)
    piece = Interval(p, q)
    g = _gap(fn.f_iv, a, b, Interval.point(m), lower) + _dgap(fn.df_iv, a, piece, lower) * (
        piece - m
    )
    return g.lo


class _Piece(NamedTuple):
    p: torch.Tensor
    q: torch.Tensor
    curv: torch.Tensor  # +1: f convex on [p, q]; -1: f concave; 0: unknown (a sliver)


def _gap_min(fn: _Fn, a, b, pieces: list[_Piece], ts, lower: bool) -> torch.Tensor:
    """A proven lower bound of the gap over the union of the pieces."""
    m = None
    for pc in pieces:
        g_convex = (pc.curv > 0) if lower else (pc.curv < 0)
        g_concave = (pc.curv < 0) if lower else (pc.curv > 0)
        vals = torch.where(
            g_convex,
            _convex_piece(fn, a, b, pc.p, pc.q, ts, lower),
            torch.where(
                g_concave,
                _concave_piece(fn, a, b, pc.p, pc.q, lower),
                _sliver_piece(fn, a, b, pc.p, pc.q, lower),
            ),
        )
        m = vals if m is None else torch.minimum(m, vals)
    return torch.nan_to_num(m, nan=-_INF, posinf=_INF, neginf=-_INF)


def _shift(b: torch.Tensor, m: torch.Tensor, lower: bool) -> torch.Tensor:
    """Move ``b`` so that the gap bound ``m`` becomes non-negative (rounded outward)."""
    if lower:
        return torch.where(m >= 0, b, down(b + m))
    return torch.where(m >= 0, b, up(b - m))


def _finish(
    a: torch.Tensor,
    b: torch.Tensor,
    const: torch.Tensor,
    l: torch.Tensor,
    u: torch.Tensor,
    lower: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fall back to the constant line where the line is not finite or is dominated by it."""
    bad = ~(torch.isfinite(a) & torch.isfinite(b))
    with torch.no_grad():
        at_l, at_u = a * l + b, a * u + b
    if lower:
        dominated = torch.maximum(at_l, at_u) <= const
    else:
        dominated = torch.minimum(at_l, at_u) >= const
    use_const = bad | dominated | torch.isnan(at_l) | torch.isnan(at_u)
    zero = torch.zeros_like(a)
    return torch.where(use_const, zero, a), torch.where(use_const, const, b)


def _sound(fn, a, b, pieces, ts, const, l, u, lower):
    a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)  # NaN / inf: constant below
    b_fin = torch.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0)
    m = _gap_min(fn, a, b_fin, pieces, ts, lower)
    b2 = _shift(b_fin, m, lower)
    b2 = torch.where(torch.isfinite(b), b2, torch.full_like(b, _INF))  # -> constant line
    return _finish(a, b2, const, l, u, lower)


# ------------------------------------------------------------------------ candidate lines (float)


def _chord(fn: _Fn, l, u):
    fl, fu = fn.f(l), fn.f(u)
    w = u - l
    k = (fu - fl) / w
    m = _mid(l, u)
    k = torch.where((w > 0) & torch.isfinite(k), k, fn.df(m))
    b = torch.where(k.abs() * torch.maximum(l.abs(), u.abs()) < _INF, fl - k * l, fn.f(m) - k * m)
    return k, b


def _tangent(fn: _Fn, t):
    a = fn.df(t)
    return a, fn.f(t) - a * t


def _bisect_touch(fn: _Fn, lo, hi, anchor, f_anchor):
    """Bisection for the point ``d`` in ``[lo, hi]`` whose tangent passes through
    ``(anchor, f_anchor)``: ``h(d) = f(d) + f'(d) (anchor - d) - f_anchor``; ``hi`` moves to ``d``
    where ``h > 0``, ``lo`` elsewhere. Returns the final ``(lo, hi)`` (a candidate only: the
    line is made sound afterwards)."""
    for _ in range(BISECTION_STEPS):
        d = _mid(lo, hi)
        above = fn.f(d) + fn.df(d) * (anchor - d) - f_anchor > 0
        hi = torch.where(above, d, hi)
        lo = torch.where(above, lo, d)
    return lo, hi


def _s_lines(fn: _Fn, l, u, c):
    """Candidate lines for ``f`` convex on ``[l, c]`` and concave on ``[c, u]`` (``l <= c <= u``).
    Returns ``(a_lo, b_lo, d_lo, a_hi, b_hi, d_hi)``, ``d`` the touching points (NaN: none)."""
    k, bk = _chord(fn, l, u)
    fl, fu = fn.f(l), fn.f(u)
    # upper: the chord if f'(u) >= its slope, else the tangent at d in [c, u] through (l, f(l))
    _, hi = _bisect_touch(fn, c.clone(), u.clone(), l, fl)
    a_t, b_t = _tangent(fn, hi)
    use_chord = fn.df(u) >= k
    a_hi = torch.where(use_chord, k, a_t)
    b_hi = torch.where(use_chord, bk, b_t)
    d_hi = torch.where(use_chord, u, hi)
    # lower: the chord if f'(l) >= its slope, else the tangent at d in [l, c] through (u, f(u))
    lo, _ = _bisect_touch(fn, l.clone(), c.clone(), u, fu)
    a_t, b_t = _tangent(fn, lo)
    use_chord = fn.df(l) >= k
    a_lo = torch.where(use_chord, k, a_t)
    b_lo = torch.where(use_chord, bk, b_t)
    d_lo = torch.where(use_chord, l, lo)
    return a_lo, b_lo, d_lo, a_hi, b_hi, d_hi


def _neg_fn(fn: _Fn) -> _Fn:
    return _Fn(
        lambda x: -fn.f(x),
        lambda x: -fn.df(x),
        lambda x: -fn.f_iv(x),
        lambda x: -fn.df_iv(x),
    )


def _candidates(fn: _Fn, l, u, c, kind: torch.Tensor):
    """Candidate lines by the curvature ``kind``: +1 convex on [l, u], -1 concave, 2 convex then
    concave at ``c``, -2 concave then convex at ``c``. Returns the lines and touching points."""
    m = _mid(l, u)
    k, bk = _chord(fn, l, u)
    a_t, b_t = _tangent(fn, m)
    cc = torch.where(torch.isnan(c), m, torch.minimum(torch.maximum(c, l), u))
    nan6 = (torch.full_like(l, math.nan),) * 6
    s = _s_lines(fn, l, u, cc) if bool((kind == 2).any()) else nan6
    # lower of f = -(upper of -f)
    ns = _s_lines(_neg_fn(fn), l, u, cc) if bool((kind == -2).any()) else nan6
    convex, s_up, s_down = kind == 1, kind == 2, kind == -2  # else concave (kind -1)

    def pick(v_convex, v_concave, v_s, v_ns):
        out = torch.where(convex, v_convex, v_concave)
        out = torch.where(s_up, v_s, out)
        return torch.where(s_down, v_ns, out)

    a_lo = pick(a_t, k, s[0], -ns[3])
    b_lo = pick(b_t, bk, s[1], -ns[4])
    d_lo = pick(m, l, s[2], ns[5])
    a_hi = pick(k, a_t, s[3], -ns[0])
    b_hi = pick(bk, b_t, s[4], -ns[1])
    d_hi = pick(u, m, s[5], ns[2])
    return a_lo, b_lo, d_lo, a_hi, b_hi, d_hi


def _smooth(fn: _Fn, l, u, pieces: list[_Piece], kind, c) -> LinearBounds:
    """The lines of a smooth function whose curvature on ``[l, u]`` is described by ``pieces``
    (proof) and ``kind`` / ``c`` (candidate choice)."""
    const = fn.f_iv(Interval(l, u))
    with torch.no_grad():
        a_lo, b_lo, d_lo, a_hi, b_hi, d_hi = _candidates(fn, l, u, c, kind)
        a_lo, b_lo = _sound(fn, a_lo, b_lo, pieces, (d_lo,), const.lo, l, u, True)
        a_hi, b_hi = _sound(fn, a_hi, b_hi, pieces, (d_hi,), const.hi, l, u, False)
    return LinearBounds(a_lo, b_lo, a_hi, b_hi)


def _pieces_at(l, u, c: float, left: int, right: int) -> list[_Piece]:
    """Pieces ``[l, min(c, u)]`` and ``[max(c, l), u]`` with curvatures ``left``, ``right`` (a piece
    on the wrong side of ``c`` degenerates to an endpoint, which any rule bounds exactly)."""
    cc = torch.full_like(l, c)
    p1 = _Piece(l, torch.minimum(torch.maximum(cc, l), u), torch.full_like(l, float(left)))
    p2 = _Piece(torch.maximum(torch.minimum(cc, u), l), u, torch.full_like(l, float(right)))
    return [p1, p2]


def _kind_at(l, u, c: float, left: int, right: int) -> tuple[torch.Tensor, torch.Tensor]:
    kind = torch.where(u <= c, float(left), torch.where(l >= c, float(right), 2.0 * left))
    return kind.to(l.dtype), torch.full_like(l, c)


# ---------------------------------------------------------------------------- smooth functions


def _sech2(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(x)
    return 1.0 - t * t


def _tanh_point(x: torch.Tensor):
    """One ``tanh`` call: the value, its enclosure (as ``Interval.tanh`` of a point) and the
    derivative ``1 - tanh^2`` in float and in intervals."""
    F = torch.tanh(x)
    Fiv = Interval(torch.clamp(down_lib(F), -1.0, 1.0), torch.clamp(up_lib(F), -1.0, 1.0))
    return F, Fiv, 1.0 - F * F, 1.0 - Fiv.square()


def _tanh_fn() -> _Fn:
    return _Fn(torch.tanh, _sech2, Interval.tanh, lambda x: 1.0 - x.tanh().square(), _tanh_point)


def _sig_d(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 - s)


def _sig_d_iv(x: Interval) -> Interval:
    s = x.sigmoid()
    return s * (1.0 - s)


def _sigmoid_point(x: torch.Tensor):
    """One ``sigmoid`` call: the value, its enclosure (as ``Interval.sigmoid`` of a point) and
    the derivative ``s (1 - s)`` in float and in intervals."""
    F = torch.sigmoid(x)
    Fiv = Interval(torch.clamp(down_lib(F), 0.0, 1.0), torch.clamp(up_lib(F), 0.0, 1.0))
    return F, Fiv, F * (1.0 - F), Fiv * (1.0 - Fiv)


def tanh(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``tanh``: convex on ``x <= 0``, concave on ``x >= 0``."""
    l, u = _check(l, u)
    kind, c = _kind_at(l, u, 0.0, 1, -1)
    return _smooth(_tanh_fn(), l, u, _pieces_at(l, u, 0.0, 1, -1), kind, c)


def sigmoid(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``sigmoid``: convex on ``x <= 0``, concave on ``x >= 0``."""
    l, u = _check(l, u)
    fn = _Fn(torch.sigmoid, _sig_d, Interval.sigmoid, _sig_d_iv)
    kind, c = _kind_at(l, u, 0.0, 1, -1)
    return _smooth(fn, l, u, _pieces_at(l, u, 0.0, 1, -1), kind, c)


def exp(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``exp``: convex (lower: tangent at the midpoint; upper: chord)."""
    l, u = _check(l, u)
    fn = _Fn(torch.exp, torch.exp, Interval.exp, Interval.exp)
    one = torch.ones_like(l)
    return _smooth(fn, l, u, [_Piece(l, u, one)], one, torch.full_like(l, math.nan))


def _softplus_iv(x: Interval) -> Interval:
    return x.softplus(1.0, _INF)  # the smooth function (no identity branch)


def softplus(
    l: torch.Tensor, u: torch.Tensor, beta: float = 1.0, threshold: float | None = None
) -> LinearBounds:
    """``log(1 + exp(x))`` (convex), or with ``threshold`` torch's piecewise softplus: ``x`` where
    ``x > threshold``. Only ``beta = 1`` is supported."""
    if beta != 1.0:
        raise ValueError(f"relax.softplus: only beta = 1 is supported, got beta={beta!r}")
    l, u = _check(l, u)
    fn = _Fn(softplus_smooth, torch.sigmoid, _softplus_iv, Interval.sigmoid)
    one = torch.ones_like(l)
    out = _smooth(fn, l, u, [_Piece(l, u, one)], one, torch.full_like(l, math.nan))
    if threshold is None or threshold == _INF:
        return out
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("relax.softplus: threshold is NaN")
    # the thresholded function is x on {x > threshold} (below the smooth one): the upper line
    # stays; the lower line must also lie below x there, i.e. on [max(l, threshold), u]
    with torch.no_grad():
        reach = u > threshold
        p = torch.maximum(l, torch.full_like(l, threshold))
        p = torch.where(reach, p, u)

        def ident_gap(x):
            xi = Interval.point(x)
            return (xi - (xi * out.a_lo + out.b_lo)).lo

        m2 = torch.minimum(ident_gap(p), ident_gap(u))
        m2 = torch.where(reach, m2, torch.zeros_like(m2))
        m2 = torch.nan_to_num(m2, nan=-_INF, posinf=_INF, neginf=-_INF)
        b_lo = _shift(out.b_lo, m2, True)
        const_lo = Interval(l, u).softplus(1.0, threshold).lo
        a_lo, b_lo = _finish(out.a_lo, b_lo, const_lo, l, u, True)
    return LinearBounds(a_lo, b_lo, out.a_hi, out.b_hi)


def power(l: torch.Tensor, u: torch.Tensor, k: int) -> LinearBounds:
    """``x ** k`` for an integer ``k >= 0``: convex for even ``k``; for odd ``k >= 3`` concave on
    ``x <= 0`` and convex on ``x >= 0``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"relax.power: expected an integer exponent k >= 0, got {k!r}")
    l, u = _check(l, u)
    if k == 0:
        one = torch.ones_like(l)
        zero = torch.zeros_like(l)
        return LinearBounds(zero, one, zero.clone(), one.clone())
    if k == 1:
        one = torch.ones_like(l)
        zero = torch.zeros_like(l)
        return LinearBounds(one, zero, one.clone(), zero.clone())
    fn = _Fn(
        lambda x: torch.pow(x, k),
        lambda x: k * torch.pow(x, k - 1),
        lambda x: x.pow_int(k),
        lambda x: x.pow_int(k - 1) * float(k),
    )
    if k % 2 == 0:
        one = torch.ones_like(l)
        return _smooth(fn, l, u, [_Piece(l, u, one)], one, torch.full_like(l, math.nan))
    kind, c = _kind_at(l, u, 0.0, -1, 1)
    return _smooth(fn, l, u, _pieces_at(l, u, 0.0, -1, 1), kind, c)


# ------------------------------------------------------------------------------ sine and cosine


_PI_LO = math.pi  # math.pi < pi < nextafter(math.pi, inf)
_PI_HI = math.nextafter(math.pi, _INF)


def _periodic(l, u, fn: _Fn, phase: float, convex_even: bool) -> LinearBounds:
    """``f`` with inflection points at ``c_k = phase * pi + k pi`` (``phase`` in {0, 1/2}) and
    ``f`` convex on ``(c_k, c_{k+1})`` iff ``k`` is even (``convex_even``) or odd."""
    const = fn.f_iv(Interval(l, u))
    ok = (torch.maximum(l.abs(), u.abs()) <= PERIODIC_MAX_ABS) & (u - l < PERIODIC_MAX_WIDTH)
    ls = torch.where(ok, l, torch.zeros_like(l))
    us = torch.where(ok, u, torch.zeros_like(u))
    # the inflection point just above l (or in a sliver around l): k = ceil((l / pi) - phase)
    k = torch.ceil(ls / math.pi - phase) - 1.0  # one below, then scan k, k + 1, k + 2
    found = torch.zeros_like(ls, dtype=torch.bool)
    twice = torch.zeros_like(ls, dtype=torch.bool)
    kc = torch.full_like(ls, math.nan)
    c_lo = torch.full_like(ls, math.nan)
    c_hi = torch.full_like(ls, math.nan)
    k_below = k - 1.0  # the index of the last inflection point surely below l
    for j in range(4):
        kk = k + float(j)
        pi = Interval(torch.full_like(ls, _PI_LO), torch.full_like(ls, _PI_HI))
        cint = pi * (kk + phase)  # kk + phase is exact (|kk| < 2**22, phase in {0, 0.5})
        below = cint.hi < ls
        k_below = torch.where(below, kk, k_below)
        inside = ~below & (cint.lo <= us)
        twice = twice | (inside & found)
        inside = inside & ~found
        kc = torch.where(inside, kk, kc)
        c_lo = torch.where(inside, cint.lo, c_lo)
        c_hi = torch.where(inside, cint.hi, c_hi)
        found = found | inside

    ok = ok & ~twice  # two inflection points inside: the constant line

    # curvature right of c_j: convex iff j even (convex_even) / odd
    def curv(j):
        even = torch.remainder(j, 2.0) == 0
        conv = even if convex_even else ~even
        return torch.where(conv, 1.0, -1.0).to(ls.dtype)

    # no inflection point inside: one curvature, that right of c_{k_below}
    k_left = torch.where(found, kc - 1.0, k_below)
    left = curv(k_left)
    right = curv(kc)
    cl = torch.where(found, torch.minimum(torch.maximum(c_lo, ls), us), us)
    ch = torch.where(found, torch.minimum(torch.maximum(c_hi, ls), us), us)
    pieces = [
        _Piece(ls, cl, left),
        _Piece(cl, ch, torch.zeros_like(ls)),
        _Piece(ch, us, torch.where(found, right, left)),
    ]
    # candidate kind: a sliver at an end counts as "no inflection point inside"
    s_kind = torch.where(left > 0, 2.0, -2.0).to(ls.dtype)
    interior = found & (c_hi < us) & (c_lo > ls)
    kind = torch.where(interior, s_kind, torch.where(found & (c_lo <= ls), right, left))
    c = torch.where(interior, _mid(c_lo, c_hi), torch.full_like(ls, math.nan))
    with torch.no_grad():
        a_lo, b_lo, d_lo, a_hi, b_hi, d_hi = _candidates(fn, ls, us, c, kind)
        a_lo, b_lo = _sound(fn, a_lo, b_lo, pieces, (d_lo,), const.lo, ls, us, True)
        a_hi, b_hi = _sound(fn, a_hi, b_hi, pieces, (d_hi,), const.hi, ls, us, False)
    zero = torch.zeros_like(l)
    return LinearBounds(
        torch.where(ok, a_lo, zero),
        torch.where(ok, b_lo, const.lo),
        torch.where(ok, a_hi, zero),
        torch.where(ok, b_hi, const.hi),
    )


def sin(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``sin``: inflection points ``k pi``; concave on ``(0, pi)``, convex on ``(pi, 2 pi)``."""
    l, u = _check(l, u)
    fn = _Fn(torch.sin, torch.cos, Interval.sin, Interval.cos)
    return _periodic(l, u, fn, 0.0, convex_even=False)


def cos(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``cos``: inflection points ``pi / 2 + k pi``; convex on ``(pi / 2, 3 pi / 2)``."""
    l, u = _check(l, u)
    fn = _Fn(torch.cos, lambda x: -torch.sin(x), Interval.cos, lambda x: -x.sin())
    return _periodic(l, u, fn, 0.5, convex_even=True)


# ------------------------------------------------------------------- piecewise-linear functions


def _pl_sound(f_iv: FIv, a, b, l, u, kinks, const, lower: bool, exact=None):
    """Make a line sound for a piecewise-linear ``f`` (kinks at floats): the gap is piecewise
    linear, so its minimum lies at an endpoint or a kink inside. Where ``exact`` is true the line
    is valid in real arithmetic by construction (``0``, ``x``, ``slope x``, a constant bound of
    ``f``) and is kept as it is."""
    a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    b_ok = torch.isfinite(b)
    b = torch.where(b_ok, b, torch.zeros_like(b))
    m = None
    for x in (l, u, *kinks):
        x = torch.minimum(torch.maximum(x, l), u)
        g = _gap(f_iv, a, b, Interval.point(x), lower).lo
        m = g if m is None else torch.minimum(m, g)
    m = torch.nan_to_num(m, nan=-_INF, posinf=_INF, neginf=-_INF)
    if exact is not None:
        m = torch.where(exact, torch.zeros_like(m), m)
    b2 = torch.where(b_ok, _shift(b, m, lower), torch.full_like(b, _INF))
    return _finish(a, b2, const, l, u, lower)


def clamp(
    l: torch.Tensor, u: torch.Tensor, lo_c: float | None = None, hi_c: float | None = None
) -> LinearBounds:
    """``min(max(x, lo_c), hi_c)`` (a missing bound is no bound); ``lo_c <= hi_c``."""
    l, u = _check(l, u)
    lo_v = -_INF if lo_c is None else float(lo_c)
    hi_v = _INF if hi_c is None else float(hi_c)
    if math.isnan(lo_v) or math.isnan(hi_v) or lo_v > hi_v:
        raise ValueError(f"relax.clamp: expected lo_c <= hi_c, got {lo_c!r}, {hi_c!r}")
    f_iv = lambda x: x.clamp(lo_c, hi_c)  # noqa: E731
    lo = torch.full_like(l, lo_v)
    hi = torch.full_like(l, hi_v)
    zero, one = torch.zeros_like(l), torch.ones_like(l)
    with torch.no_grad():
        below = u <= lo  # constant lo
        # otherwise (l >= hi): constant hi
        ident = (lo <= l) & (u <= hi)
        conv = (l < lo) & (lo < u) & (u <= hi)  # relu-like
        conc = (lo <= l) & (l < hi) & (hi < u)
        both = (l < lo) & (hi < u)
        # convex case
        k_cv = (u - lo) / (u - l)
        lo_id = (u - lo) >= (lo - l)
        # concave case
        k_cc = (hi - l) / (u - l)
        hi_id = (hi - l) >= (u - hi)
        # both kinks inside
        k_b_lo = (hi - lo) / (u - lo)
        use_b_lo = (u - lo) > (lo - l)
        k_b_hi = (hi - lo) / (hi - l)
        use_b_hi = (hi - l) > (u - hi)

        def sel(v_below, v_above, v_ident, v_conv, v_conc, v_both):
            out = torch.where(below, v_below, v_above)
            out = torch.where(ident, v_ident, out)
            out = torch.where(conv, v_conv, out)
            out = torch.where(conc, v_conc, out)
            return torch.where(both, v_both, out)

        a_lo = sel(
            zero,
            zero,
            one,
            torch.where(lo_id, one, zero),
            k_cc,
            torch.where(use_b_lo, k_b_lo, zero),
        )
        b_lo = sel(
            lo,
            hi,
            zero,
            torch.where(lo_id, zero, lo),
            hi - k_cc * u,
            torch.where(use_b_lo, lo - k_b_lo * lo, lo),
        )
        a_hi = sel(
            zero,
            zero,
            one,
            k_cv,
            torch.where(hi_id, one, zero),
            torch.where(use_b_hi, k_b_hi, zero),
        )
        b_hi = sel(
            lo,
            hi,
            zero,
            u - k_cv * u,
            torch.where(hi_id, zero, hi),
            torch.where(use_b_hi, hi - k_b_hi * hi, hi),
        )
        # the lines 0, x, lo, hi are exact wherever chosen: clamp >= lo, <= hi everywhere; x below
        # clamp when u <= hi (relu-like case), above it when l >= lo (concave case)
        chord_lo = conc | (both & use_b_lo)
        chord_hi = conv | (both & use_b_hi)
        const = f_iv(Interval(l, u))
        kinks = ([lo] if lo_c is not None else []) + ([hi] if hi_c is not None else [])
        a_lo, b_lo = _pl_sound(f_iv, a_lo, b_lo, l, u, kinks, const.lo, True, ~chord_lo)
        a_hi, b_hi = _pl_sound(f_iv, a_hi, b_hi, l, u, kinks, const.hi, False, ~chord_hi)
    return LinearBounds(a_lo, b_lo, a_hi, b_hi)


def relu(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``max(x, 0)``: lower ``0`` or ``x`` (the one closer on average), upper the chord."""
    return clamp(l, u, 0.0, None)


def leaky_relu(l: torch.Tensor, u: torch.Tensor, slope: float) -> LinearBounds:
    """``x`` for ``x >= 0``, ``slope * x`` below, ``slope >= 0``: convex for ``slope <= 1`` (lower
    ``s x`` with ``s`` in ``{slope, 1}``, upper the chord), concave above (mirrored)."""
    slope = float(slope)
    if not slope >= 0 or not math.isfinite(slope):
        raise ValueError(f"relax.leaky_relu: expected a finite slope >= 0, got {slope!r}")
    l, u = _check(l, u)
    f_iv = lambda x: x.leaky_relu(slope)  # noqa: E731
    with torch.no_grad():
        s = torch.full_like(l, slope)
        one = torch.ones_like(l)
        zero = torch.zeros_like(l)
        fl = torch.where(l < 0, s * l, l)
        fu = torch.where(u < 0, s * u, u)
        w = u - l
        k = torch.where(w > 0, (fu - fl) / w, torch.where(l < 0, s, one))
        bk = fu - k * u
        # the exact line through 0: x (when u >= -l) or slope x
        steep = u >= -l
        a_lin = torch.where(steep, one, s)
        # s x with s in [slope, 1] lies below max(x, slope x) (slope <= 1) and above
        # min(x, slope x) (slope >= 1) for every real x: exact, not checked
        yes = torch.ones_like(l, dtype=torch.bool)
        if slope <= 1:
            a_lo, b_lo, a_hi, b_hi = a_lin, zero, k, bk
            ex_lo, ex_hi = yes, ~yes
        else:
            a_lo, b_lo, a_hi, b_hi = k, bk, a_lin, zero
            ex_lo, ex_hi = ~yes, yes
        const = f_iv(Interval(l, u))
        a_lo, b_lo = _pl_sound(f_iv, a_lo, b_lo, l, u, [zero], const.lo, True, ex_lo)
        a_hi, b_hi = _pl_sound(f_iv, a_hi, b_hi, l, u, [zero], const.hi, False, ex_hi)
    return LinearBounds(a_lo, b_lo, a_hi, b_hi)


# ------------------------------------------------------------------- fast rules (forward pass)
#
# The rules above spend a bisection and several interval evaluations per line; the forward pass
# (``bounds.affine``) relaxes every neuron of every box, so it uses these cheaper lines, proven by
# the curvature the function is known to have on the interval (no pieces, no bisection):
#
# * convex ``f`` on ``[l, u]``: the chord above (the gap ``a x + b - f`` is concave: its minimum is
#   at ``l`` or ``u``, both enclosed) and the tangent at the midpoint ``t`` below (the gap
#   ``f - a x - b`` is convex: ``G(x) >= G(t) + G'(t) (x - t)`` with ``G(t)``, ``G'(t)`` enclosed);
#   concave: the same for ``-f``;
# * an S-shaped ``f`` (convex below 0, concave above, ``f'`` largest at 0 and decreasing in
#   ``|x|``: tanh, sigmoid) on an interval around 0: two parallel lines of slope ``a <= min f'``
#   (the smaller endpoint derivative, enclosed): ``f - a x`` is non-decreasing, so
#   ``f(l) - a l <= f(x) - a x <= f(u) - a u``.
#
# As above, the shift of ``b`` by a negative gap bound is rounded outward and a line that is not
# finite (or is worse than the constant) becomes the constant line of ``f([l, u])``.


def _fast_convex(fn: _Fn, l, u, const: Interval, ends=None, mid=None):
    """Lines of a function convex on every ``[l, u]`` (tangent at the midpoint below, chord above).
    ``ends``: ``fn.point`` at ``l`` and at ``u`` when the caller has them; ``mid``: the midpoint
    ``_mid(l, u)`` and ``fn.point`` there."""
    with torch.no_grad():
        if mid is None:
            t = _mid(l, u)
            Ft, Ft_iv, dFt, dFt_iv = fn.point(t)
        else:
            t, (Ft, Ft_iv, dFt, dFt_iv) = mid
        a_lo = torch.nan_to_num(dFt, nan=0.0, posinf=0.0, neginf=0.0)
        b_lo = Ft - a_lo * t
        b_lo = torch.nan_to_num(b_lo, nan=0.0, posinf=0.0, neginf=0.0)
        tp = Interval.point(t)
        # G = f - line is convex: G(x) >= G(t) + G'(t) (x - t)
        g = (Ft_iv - (tp * a_lo + b_lo)) + (dFt_iv - a_lo) * (Interval(l, u) - t)
        m = torch.nan_to_num(g.lo, nan=-_INF, posinf=_INF, neginf=-_INF)
        a_lo, b_lo = _finish(a_lo, _shift(b_lo, m, True), const.lo, l, u, True)
        (Fl, Fl_iv, _, _), (Fu, Fu_iv, _, _) = (
            ends
            if ends is not None
            else (
                fn.point(l),
                fn.point(u),
            )
        )
        # the chord (through the midpoint's tangent slope where the width is 0)
        w = u - l
        k = (Fu - Fl) / w
        k = torch.where((w > 0) & torch.isfinite(k), k, dFt)
        a_hi = torch.nan_to_num(k, nan=0.0, posinf=0.0, neginf=0.0)
        b_hi = torch.where(
            a_hi.abs() * torch.maximum(l.abs(), u.abs()) < _INF, Fl - a_hi * l, Ft - a_hi * t
        )
        b_fin = torch.nan_to_num(b_hi, nan=0.0, posinf=0.0, neginf=0.0)
        # line - f is concave: its minimum is at l or u
        gl = (Interval.point(l) * a_hi + b_fin) - Fl_iv
        gu = (Interval.point(u) * a_hi + b_fin) - Fu_iv
        m = torch.minimum(gl.lo, gu.lo)
        m = torch.nan_to_num(m, nan=-_INF, posinf=_INF, neginf=-_INF)
        b_hi = torch.where(torch.isfinite(b_hi), _shift(b_fin, m, False), b_hi)
        a_hi, b_hi = _finish(a_hi, b_hi, const.hi, l, u, False)
    return a_lo, b_lo, a_hi, b_hi


def _fast_s_shaped(fn: _Fn, l, u, s0: float, points: bool = False):
    """Lines of an increasing S-shaped function (see above) with ``f(-x) = s0 - f(x)`` (tanh: 0,
    sigmoid: 1): the convex rule below 0; above 0 the convex rule on the mirrored interval
    ``[-u, -l]``, mirrored back (``f(y) >= a_hi y + (s0 - b_hi)`` from ``f(-y) <= a_hi (-y) +
    b_hi``, the constant rounded outward); two parallel lines of the smaller endpoint slope across
    0. One ``fn.point`` evaluation at each end serves every rule. With ``points``: also
    ``(ml, mu, point(ml), point(mu), t, point(t))``, the interval the rules used (``[-u, -l]``
    where ``l >= 0``, else ``[l, u]``) with the evaluations at its ends and midpoint ``t``."""
    with torch.no_grad():
        above = l >= 0
        straddle = (l < 0) & (u > 0)
        ml = torch.where(above, -u, l)  # across 0: l and u themselves (their lines unused)
        mu = torch.where(above, -l, u)
        end_l, end_u = fn.point(ml), fn.point(mu)
        t = _mid(ml, mu)
        end_t = fn.point(t)
        const = Interval(end_l[1].lo, end_u[1].hi)  # f increasing
        c_lo, d_lo, c_hi, d_hi = _fast_convex(
            fn, ml, mu, const, ends=(end_l, end_u), mid=(t, end_t)
        )
        if s0 == 0.0:
            r_lo, r_hi = -d_hi, -d_lo
        else:
            r_lo, r_hi = down(s0 - d_hi), up(s0 - d_lo)
        a_lo = torch.where(above, c_hi, c_lo)
        b_lo = torch.where(above, r_lo, d_lo)
        a_hi = torch.where(above, c_lo, c_hi)
        b_hi = torch.where(above, r_hi, d_hi)
        if bool(straddle.any()):
            # here (ml, mu) = (l, u): f - slope x is non-decreasing for slope <= min f'
            lp, up_ = Interval.point(l), Interval.point(u)
            slope = torch.minimum(end_l[3].lo, end_u[3].lo).clamp(min=0.0)
            slope = torch.nan_to_num(slope, nan=0.0, posinf=_INF, neginf=-_INF)
            p_lo = (end_l[1] - lp * slope).lo
            p_hi = (end_u[1] - up_ * slope).hi
            p_lo = torch.nan_to_num(p_lo, nan=-_INF, posinf=-_INF, neginf=-_INF)
            p_hi = torch.nan_to_num(p_hi, nan=_INF, posinf=_INF, neginf=_INF)
            a_lo = torch.where(straddle, slope, a_lo)
            a_hi = torch.where(straddle, slope, a_hi)
            b_lo = torch.where(straddle, p_lo, b_lo)
            b_hi = torch.where(straddle, p_hi, b_hi)
        bad_lo = ~torch.isfinite(b_lo)
        bad_hi = ~torch.isfinite(b_hi)
        if bool(bad_lo.any() | bad_hi.any()):
            full = fn.f_iv(Interval(l, u))
            a_lo = torch.where(bad_lo, torch.zeros_like(a_lo), a_lo)
            b_lo = torch.where(bad_lo, full.lo, b_lo)
            a_hi = torch.where(bad_hi, torch.zeros_like(a_hi), a_hi)
            b_hi = torch.where(bad_hi, full.hi, b_hi)
    out = LinearBounds(a_lo, b_lo, a_hi, b_hi)
    if points:
        return out, (ml, mu, end_l, end_u, t, end_t)
    return out


def _fast_taylor(f, df, f_iv: FIv, df_iv: FIv, d2f_iv: FIv, l, u) -> LinearBounds:
    """Two parallel lines of slope ``a ~ f'(t)`` (``t`` the midpoint) for a function with no
    known curvature: ``G(x) = f(x) - a x - b = G(t) + G'(t) (x - t) + f''(xi) (x - t)^2 / 2``
    with ``G(t)``, ``G'(t)`` and ``f''([l, u])`` enclosed bounds ``G`` on both sides."""
    with torch.no_grad():
        const = f_iv(Interval(l, u))
        t = _mid(l, u)
        a = df(t)
        a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        b = f(t) - a * t
        b = torch.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0)
        tp = Interval.point(t)
        off = Interval(l, u) - t
        g = (
            (f_iv(tp) - (tp * a + b))
            + (df_iv(tp) - a) * off
            + d2f_iv(Interval(l, u)) * (off.square() * 0.5)
        )
        m_lo = torch.nan_to_num(g.lo, nan=-_INF, posinf=_INF, neginf=-_INF)
        m_hi = torch.nan_to_num(g.hi, nan=_INF, posinf=_INF, neginf=-_INF)
        b_lo = torch.where(m_lo >= 0, b, down(b + m_lo))
        b_hi = torch.where(m_hi <= 0, b, up(b + m_hi))
        a_lo, b_lo = _finish(a, b_lo, const.lo, l, u, True)
        a_hi, b_hi = _finish(a, b_hi, const.hi, l, u, False)
    return LinearBounds(a_lo, b_lo, a_hi, b_hi)


def sin_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``sin`` by the second-order rule (parallel lines, slope ``cos`` of the midpoint)."""
    l, u = _check(l, u)
    return _fast_taylor(torch.sin, torch.cos, Interval.sin, Interval.cos, lambda x: -x.sin(), l, u)


def cos_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``cos`` by the second-order rule (parallel lines, slope ``-sin`` of the midpoint)."""
    l, u = _check(l, u)
    return _fast_taylor(
        torch.cos,
        lambda x: -torch.sin(x),
        Interval.cos,
        lambda x: -x.sin(),
        lambda x: -x.cos(),
        l,
        u,
    )


def tanh_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``tanh`` by the fast rules (S-shaped)."""
    l, u = _check(l, u)
    return _fast_s_shaped(_tanh_fn(), l, u, 0.0)


def sigmoid_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``sigmoid`` by the fast rules (S-shaped)."""
    l, u = _check(l, u)
    return _fast_s_shaped(_sigmoid_fn(), l, u, 1.0)


def _sigmoid_fn() -> _Fn:
    return _Fn(torch.sigmoid, _sig_d, Interval.sigmoid, _sig_d_iv, _sigmoid_point)


# ------------------------------------------------------------- the derivatives of tanh and sigmoid
#
# ``tanh'(x) = sech(x)^2`` and ``sigmoid'(x) = s (1 - s)`` as functions of ``x`` ("bells"):
# ``f(x) = c q (1 - q)`` with ``q = sigmoid(-k |x|)`` (tanh': k = 2, c = 4; sigmoid': k = c = 1),
# so ``f'(x) = -k sign(x) (1 - 2 q) f(x)``: one library call per point (or none, from the points
# of tanh / sigmoid themselves: ``tanh' = 1 - F^2``, ``tanh'' = -2 F tanh'``; ``sigmoid'' =
# sigmoid' (1 - 2 F)``). ``f`` is even, largest (``c / 4``) at 0, increasing on ``x <= 0``;
# concave on ``|x| <= z_i`` and convex beyond, ``z_i = atanh(1 / sqrt(3))`` (tanh') and twice
# that (sigmoid'); ``f' >= 0`` on ``x <= 0``, largest at ``-z_i`` (``4 / (3 sqrt(3))``,
# ``1 / (6 sqrt(3))``). As for tanh, an interval with ``l >= 0`` is mirrored to ``[-u, -l]``
# (``f(x) = f(-x)``: the slopes change sign, exactly). Then, on ``[l, u]`` with ``u <= 0`` or
# ``l < 0 < u``:
#
# * within ``[-z_i, z_i]`` (concave) or ``u <= -z_i`` (convex): the convex rule (of ``-f``, or of
#   ``f``);
# * ``l < -z_i < u <= 0``: two parallel lines of slope ``a``, either ``a <= min f'`` on ``[l, u]``
#   (the smaller endpoint derivative, enclosed, at least 0: ``f'`` increases on ``(-inf, -z_i]``
#   and decreases on ``[-z_i, 0]``, so its minimum over ``[l, u]`` is at an end) with ``f - a x``
#   non-decreasing, or ``a`` at least the global ``max f'`` with ``f - a x`` non-increasing (the
#   one nearer the chord's slope);
# * ``l < 0 < u`` beyond ``z_i``: the constant lines ``min(f(l), f(u))`` and ``c / 4``.
#
# The floats ``_BELL_*`` bracket ``z_i`` (and bound ``max f'`` above); the tests check them in arb.

_BELL_TANH = (2.0, 4.0, 0.6584789484, 0.6584789485, 0.76980035892)
_BELL_SIGMOID = (1.0, 1.0, 1.3169578969, 1.3169578970, 0.096225044865)
"""``(k, c, z_lo, z_hi, slope_max)``: ``z_lo < z_i < z_hi`` and ``slope_max >= max f'``."""


def _bell_point(x: torch.Tensor, k: float, c: float):
    """The bell at float points: ``f``, its enclosure, ``f'`` and its enclosure (one sigmoid)."""
    q, q_lo, q_hi = bell_q(x.abs(), k)
    F = c * (q * (1.0 - q))
    F_lo, F_hi = bell_from_q(q_lo, q_hi, c)
    sg = torch.sign(x)
    dF = (-k * sg) * ((1.0 - 2.0 * q) * F)
    # g = k (1 - 2 q) f >= 0 with 1 - 2 q in [1 - 2 q_hi, 1 - 2 q_lo] within [0, 1] (2 q exact);
    # the scaling by k in {1, 2} is exact
    r_lo = torch.clamp(down(1.0 - 2.0 * q_hi), min=0.0)
    r_hi = torch.clamp(up(1.0 - 2.0 * q_lo), max=1.0)
    g_lo = torch.clamp(down(r_lo * F_lo), min=0.0) * k
    g_hi = up(r_hi * F_hi) * k
    zero = torch.zeros_like(x)
    d_lo = torch.where(sg > 0, -g_hi, torch.where(sg < 0, g_lo, zero))
    d_hi = torch.where(sg > 0, -g_lo, torch.where(sg < 0, g_hi, zero))
    return F, Interval._exact(F_lo, F_hi), dF, Interval._exact(d_lo, d_hi)


def _tanh_bell_point(p):
    """The bell ``tanh'`` at a point from ``_tanh_point`` there (no library call): ``tanh'' =
    -2 F f`` with ``F`` in ``[F_lo, F_hi]`` and ``f`` in ``[d_lo, d_hi]``, ``d_lo >= 0`` (clamped:
    ``f > 0``), so ``F f`` lies in ``[F_lo (d_hi if F_lo < 0 else d_lo), F_hi (d_lo if F_hi < 0
    else d_hi)]``, rounded outward; the scaling by -2 is exact."""
    F, F_iv, dF, dF_iv = p
    d_lo = torch.clamp(dF_iv.lo, min=0.0)
    d_hi = dF_iv.hi
    lo = down(F_iv.lo * torch.where(F_iv.lo < 0, d_hi, d_lo))
    hi = up(F_iv.hi * torch.where(F_iv.hi < 0, d_lo, d_hi))
    return dF, dF_iv, -2.0 * F * dF, Interval(hi * -2.0, lo * -2.0)


def _sigmoid_bell_point(p):
    """The bell ``sigmoid'`` at a point from ``_sigmoid_point`` there (no library call)."""
    F, F_iv, dF, dF_iv = p
    return dF, dF_iv, dF * (1.0 - 2.0 * F), dF_iv * (1.0 - F_iv * 2.0)


def _flip_iv(x: Interval, neg: torch.Tensor) -> Interval:
    return Interval._exact(torch.where(neg, -x.hi, x.lo), torch.where(neg, -x.lo, x.hi))


def _bell_lines(l, u, ml, mu, ends, t, pt, d_ends, bell) -> LinearBounds:
    """The bell's lines on ``[l, u]`` from its values at the ends of ``[ml, mu] = [-u, -l]``
    where ``l >= 0``, else ``[l, u]`` (``ends``: ``(f, [f])`` at ``ml`` and at ``mu``), its point
    (``f, [f], f', [f']``) at the midpoint ``t``, and ``d_ends()``: ``[f']`` at ``ml`` and ``mu``
    (called only when an interval needs it)."""
    _, c, z_lo, z_hi, slope_max = bell
    (Fl, Fl_iv), (Fu, Fu_iv) = ends
    with torch.no_grad():
        across = mu > 0
        conc = (ml >= -z_lo) & (mu <= z_lo)
        conv = mu <= -z_hi
        top = torch.full_like(ml, c / 4.0)
        r_lo = torch.minimum(Fl_iv.lo, Fu_iv.lo)  # the range of f over [ml, mu]
        r_hi = torch.where(across, top, torch.maximum(Fl_iv.hi, Fu_iv.hi))

        # the convex rule for g = f (convex) or g = -f (concave); unused elsewhere
        def neg(x):
            return torch.where(conc, -x, x)

        g_ends = ((neg(Fl), _flip_iv(Fl_iv, conc)), (neg(Fu), _flip_iv(Fu_iv, conc)))
        g_ends = tuple((*e, None, None) for e in g_ends)  # the convex rule's ends: f only
        g_t = (neg(pt[0]), _flip_iv(pt[1], conc), neg(pt[2]), _flip_iv(pt[3], conc))
        const = _flip_iv(Interval._exact(r_lo, r_hi), conc)
        ga_lo, gb_lo, ga_hi, gb_hi = _fast_convex(None, ml, mu, const, ends=g_ends, mid=(t, g_t))
        a_lo = torch.where(conc, -ga_hi, ga_lo)
        b_lo = torch.where(conc, -gb_hi, gb_lo)
        a_hi = torch.where(conc, -ga_lo, ga_hi)
        b_hi = torch.where(conc, -gb_lo, gb_hi)
        side = ~(conc | conv | across)
        if bool(side.any()):
            dl_iv, du_iv = d_ends()
            # a1 <= min f' on [ml, mu]: f - a1 x non-decreasing; a2 >= max f': non-increasing
            a1 = torch.clamp(torch.minimum(dl_iv.lo, du_iv.lo), min=0.0)
            a2 = torch.full_like(ml, slope_max)
            w = mu - ml
            kc = (Fu - Fl) / w
            use2 = (w > 0) & (a2 - kc < kc - a1)
            a = torch.where(use2, a2, a1)
            p = torch.where(use2, mu, ml)  # where the lower line is taken
            q = torch.where(use2, ml, mu)
            Fp = torch.where(use2, Fu_iv.lo, Fl_iv.lo)
            Fq = torch.where(use2, Fl_iv.hi, Fu_iv.hi)
            s_lo = (Interval.point(Fp) - Interval.point(p) * a).lo
            s_hi = (Interval.point(Fq) - Interval.point(q) * a).hi
            s_a_lo, s_lo = _finish(a, s_lo, r_lo, ml, mu, True)
            s_a_hi, s_hi = _finish(a, s_hi, r_hi, ml, mu, False)
            a_lo = torch.where(side, s_a_lo, a_lo)
            b_lo = torch.where(side, s_lo, b_lo)
            a_hi = torch.where(side, s_a_hi, a_hi)
            b_hi = torch.where(side, s_hi, b_hi)
        wide = across & ~conc  # the constant lines
        zero = torch.zeros_like(ml)
        above = l >= 0
        # back from [-u, -l]: f(x) = f(-x) >= a (-x) + b
        a_lo = torch.where(wide, zero, torch.where(above, -a_lo, a_lo))
        b_lo = torch.where(wide, r_lo, b_lo)
        a_hi = torch.where(wide, zero, torch.where(above, -a_hi, a_hi))
        b_hi = torch.where(wide, top, b_hi)
    return LinearBounds(a_lo, b_lo, a_hi, b_hi)


def _bell_fast(l, u, bell) -> LinearBounds:
    k, c = bell[0], bell[1]
    with torch.no_grad():
        above = l >= 0
        ml = torch.where(above, -u, l)
        mu = torch.where(above, -l, u)
        t = _mid(ml, mu)
        pl, pu, pt = (_bell_point(x, k, c) for x in (ml, mu, t))
    ends = (pl[:2], pu[:2])
    return _bell_lines(l, u, ml, mu, ends, t, pt, lambda: (pl[3], pu[3]), bell)


def tanh_derivative_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``tanh'(x) = 1 - tanh(x)^2`` by the fast rules of a bell (see above)."""
    l, u = _check(l, u)
    return _bell_fast(l, u, _BELL_TANH)


def sigmoid_derivative_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``sigmoid'(x) = s (1 - s)`` by the fast rules of a bell (see above)."""
    l, u = _check(l, u)
    return _bell_fast(l, u, _BELL_SIGMOID)


def tanh_pair_fast(l: torch.Tensor, u: torch.Tensor) -> tuple[LinearBounds, LinearBounds]:
    """The lines of ``tanh`` and of ``tanh'`` on ``[l, u]`` (as ``tanh_fast`` and
    ``tanh_derivative_fast``), from one set of ``tanh`` evaluations."""
    l, u = _check(l, u)
    lines, (ml, mu, pl, pu, t, pt) = _fast_s_shaped(_tanh_fn(), l, u, 0.0, points=True)
    ends = ((pl[2], pl[3]), (pu[2], pu[3]))  # tanh' = 1 - tanh^2 at the ends

    def d_ends():
        return _tanh_bell_point(pl)[3], _tanh_bell_point(pu)[3]

    bell = _bell_lines(l, u, ml, mu, ends, t, _tanh_bell_point(pt), d_ends, _BELL_TANH)
    return lines, bell


def sigmoid_pair_fast(l: torch.Tensor, u: torch.Tensor) -> tuple[LinearBounds, LinearBounds]:
    """The lines of ``sigmoid`` and of ``sigmoid'`` on ``[l, u]`` from one set of ``sigmoid``
    evaluations."""
    l, u = _check(l, u)
    lines, (ml, mu, pl, pu, t, pt) = _fast_s_shaped(_sigmoid_fn(), l, u, 1.0, points=True)
    ends = ((pl[2], pl[3]), (pu[2], pu[3]))  # sigmoid' = s (1 - s) at the ends

    def d_ends():
        return _sigmoid_bell_point(pl)[3], _sigmoid_bell_point(pu)[3]

    bell = _bell_lines(l, u, ml, mu, ends, t, _sigmoid_bell_point(pt), d_ends, _BELL_SIGMOID)
    return lines, bell


def exp_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """``exp`` by the fast rules (convex)."""
    l, u = _check(l, u)
    fn = _Fn(torch.exp, torch.exp, Interval.exp, Interval.exp)
    return LinearBounds(*_fast_convex(fn, l, u, Interval(l, u).exp()))


def softplus_fast(l: torch.Tensor, u: torch.Tensor) -> LinearBounds:
    """The smooth ``log(1 + exp(x))`` (no threshold) by the fast rules (convex)."""
    l, u = _check(l, u)
    fn = _Fn(softplus_smooth, torch.sigmoid, _softplus_iv, Interval.sigmoid)
    return LinearBounds(*_fast_convex(fn, l, u, _softplus_iv(Interval(l, u))))


def power_fast(l: torch.Tensor, u: torch.Tensor, k: int) -> LinearBounds:
    """``x ** k`` for an even ``k >= 2`` by the fast rules (convex); other ``k``: ``power``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2:
        return power(l, u, k)
    l, u = _check(l, u)
    fn = _Fn(
        lambda x: torch.pow(x, k),
        lambda x: k * torch.pow(x, k - 1),
        lambda x: x.pow_int(k),
        lambda x: x.pow_int(k - 1) * float(k),
        _square_point if k == 2 else None,
    )
    return LinearBounds(*_fast_convex(fn, l, u, Interval(l, u).pow_int(k)))


def _square_point(x: torch.Tensor):
    """``x^2`` at float points: value, enclosure, derivative ``2 x`` (exact in float) and its
    enclosure."""
    xp = Interval.point(x)
    two_x = 2.0 * x
    return x * x, xp.square(), two_x, Interval.point(two_x)


# ------------------------------------------------------------------------------------- products


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Veltkamp's split ``x = hi + lo`` into two halves of at most 26 bits each (exact)."""
    c = 134217729.0 * x  # 2**27 + 1
    hi = c - (c - x)
    return hi, x - hi


def _product_is_exact(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Where the float product ``p * q`` is the exact real product: Dekker's error-free product
    (exact for ``2**-450 <= |p|, |q| <= 2**450``: no overflow, no underflow) has error zero."""
    ok = (p.abs() >= 2.0**-450) & (p.abs() <= 2.0**450) & (q.abs() >= 2.0**-450)
    ok = ok & (q.abs() <= 2.0**450)
    ph, pl = _split(p)
    qh, ql = _split(q)
    r = p * q
    err = (((ph * qh - r) + ph * ql) + pl * qh) + pl * ql
    return ok & (err == 0)


def mccormick(
    xl: torch.Tensor, xu: torch.Tensor, yl: torch.Tensor, yu: torch.Tensor
) -> McCormickPlanes:
    """The McCormick envelope of ``z = x y`` over ``[xl, xu] x [yl, yu]``::

        z >= yl x + xl y - xl yl      z <= yu x + xl y - xl yu
        z >= yu x + xu y - xu yu      z <= yl x + xu y - xu yl

    (from ``(x - xl)(y - yl) >= 0`` etc.). The slopes are the exact endpoints; each constant is
    the product rounded outward (``-inf`` / ``+inf`` where it overflows)."""
    xl, xu = _check(xl, xu)
    yl, yu = _check(yl, yu)
    if xl.shape != yl.shape:
        raise ValueError(f"relax.mccormick: boxes of shapes {tuple(xl.shape)}, {tuple(yl.shape)}")

    def prod(p, q) -> Interval:
        out = Interval.point(p) * Interval.point(q)
        exact = _product_is_exact(p, q)
        pq = p * q
        return Interval(torch.where(exact, pq, out.lo), torch.where(exact, pq, out.hi))

    with torch.no_grad():
        lower = (
            Plane(yl, xl, -prod(xl, yl).hi),
            Plane(yu, xu, -prod(xu, yu).hi),
        )
        upper = (
            Plane(yu, xl, -prod(xl, yu).lo),
            Plane(yl, xu, -prod(xu, yl).lo),
        )
    return McCormickPlanes(lower, upper)
