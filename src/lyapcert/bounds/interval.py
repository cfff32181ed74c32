"""Interval arithmetic on batched tensors with outward rounding (the engine's ground floor).

An ``Interval`` holds ``lo`` and ``hi`` tensors of one shape; every operation returns an interval
that contains the exact real result for every choice of real inputs in the input intervals
(constants are exact: a float64 constant is the real number it represents).

Rounding. Each computed endpoint is moved outward: by one ulp for operations IEEE 754 rounds
correctly (``+ - * /`` and ``sqrt``), by ``TRANSCENDENTAL_ULPS`` ulps plus a tiny absolute term for
library functions (``exp, log, sin, cos, tanh, ...``), and by the standard ``gamma_n`` error bound
for sums and matrix products. A zero that an operation produces exactly (``x + (-x)``,
``0 * y``) is not moved. NaN endpoints become ``-inf`` / ``+inf``: an undefined value is an unknown
value, and an unknown value never proves anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

EPS = 2.0**-52  # float64 unit roundoff x 2
TINY = 2.0**-1000  # absolute widening near zero (covers underflow in library functions)
TRANSCENDENTAL_ULPS = 8
"""Relative widening (in ulps) of library functions; their documented errors are at most 1 to 4
ulps (SLEEF u10 on CPU, CUDA's double-precision functions). Checked against arb in the tests."""
_INF = math.inf


_SCALARS: dict = {}


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-dim tensor ``value`` of ``like``'s dtype and device (a broadcast operand: no
    full-size tensor is filled for it)."""
    key = (value, like.dtype, like.device)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return t


def down(x: torch.Tensor) -> torch.Tensor:
    """The next float64 below ``x`` (exact zeros included)."""
    return torch.nextafter(x, _scalar(-_INF, x))


def up(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, _scalar(_INF, x))


def _toward(t: torch.Tensor) -> torch.Tensor:
    """``t`` with NaN replaced by 0 (infinities kept): a ``nextafter`` target that is ``-inf`` /
    ``+inf`` where a result moves and 0 where it stays (``nextafter(0, 0) = 0``)."""
    return torch.nan_to_num(t, nan=0.0, posinf=_INF, neginf=-_INF)


def down0(x: torch.Tensor) -> torch.Tensor:
    """``down`` except exact zeros, for results whose zeros are exact (sums, products by 0).

    One ``nextafter`` toward ``-|x| inf``: ``-inf`` for ``x != 0``; for ``x = 0`` the product
    ``0 * inf`` is NaN, made 0, and ``nextafter(0, 0) = 0`` (a NaN ``x`` stays NaN). Equal to
    ``where(x == 0, x, down(x))`` up to the sign of a zero (``-0.0`` comes back as ``0.0``)."""
    return torch.nextafter(x, _toward(x.abs() * _scalar(-_INF, x)))


def up0(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, _toward(x.abs() * _scalar(_INF, x)))


def down_lib(x: torch.Tensor, ulps: int = TRANSCENDENTAL_ULPS) -> torch.Tensor:
    """Widen a library function's result downward by ``ulps`` ulps and ``TINY``."""
    return down(x - (ulps * EPS) * x.abs() - TINY)


def up_lib(x: torch.Tensor, ulps: int = TRANSCENDENTAL_ULPS) -> torch.Tensor:
    return up(x + (ulps * EPS) * x.abs() + TINY)


def gamma(n: int) -> float:
    """A safe over-estimate of the error factor of an ``n``-term float64 sum: (n + 2) eps."""
    return 2.0 * (n + 2) * EPS


def _sanitize(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # one kernel each; the infinities are kept (nan_to_num's default would clip them)
    lo = torch.nan_to_num(lo, nan=-_INF, posinf=_INF, neginf=-_INF)
    hi = torch.nan_to_num(hi, nan=_INF, posinf=_INF, neginf=-_INF)
    return lo, hi


class Interval:
    """``[lo, hi]`` elementwise; ``lo`` and ``hi`` are float tensors of the same shape."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor):
        self.lo, self.hi = _sanitize(lo, hi)

    @classmethod
    def _exact(cls, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
        """An interval from endpoints that cannot be NaN (no sanitising pass)."""
        out = cls.__new__(cls)
        out.lo, out.hi = lo, hi
        return out

    # ----------------------------------------------------------------- construction

    @classmethod
    def point(cls, x: torch.Tensor) -> Interval:
        return cls(x, x)

    @classmethod
    def full(cls, shape, like: torch.Tensor) -> Interval:
        return cls(
            torch.full(shape, -_INF, dtype=like.dtype, device=like.device),
            torch.full(shape, _INF, dtype=like.dtype, device=like.device),
        )

    @property
    def shape(self) -> torch.Size:
        return self.lo.shape

    @property
    def mid(self) -> torch.Tensor:
        """A point of the interval near its centre (clamped: ``0.5 lo + 0.5 hi`` may underflow)."""
        return torch.minimum(torch.maximum(0.5 * self.lo + 0.5 * self.hi, self.lo), self.hi)

    @property
    def width(self) -> torch.Tensor:
        return self.hi - self.lo

    def __repr__(self) -> str:
        return f"Interval(lo={self.lo}, hi={self.hi})"

    # ----------------------------------------------------------------- arithmetic

    def __neg__(self) -> Interval:
        return Interval._exact(-self.hi, -self.lo)  # endpoints are never NaN

    def __add__(self, other) -> Interval:
        if getattr(other, "own_rules", False):
            return NotImplemented
        if isinstance(other, Interval):
            return Interval(down0(self.lo + other.lo), up0(self.hi + other.hi))
        c = _const(other, self.lo)
        return Interval(down0(self.lo + c), up0(self.hi + c))

    __radd__ = __add__

    def __sub__(self, other) -> Interval:
        if getattr(other, "own_rules", False):
            return NotImplemented
        if isinstance(other, Interval):
            return Interval(down0(self.lo - other.hi), up0(self.hi - other.lo))
        c = _const(other, self.lo)
        return Interval(down0(self.lo - c), up0(self.hi - c))

    def __rsub__(self, other) -> Interval:
        c = _const(other, self.lo)
        return Interval(down0(c - self.hi), up0(c - self.lo))

    def __mul__(self, other) -> Interval:
        if getattr(other, "own_rules", False):
            return NotImplemented
        if isinstance(other, Interval):
            a0, a1, b0, b1 = self.lo, self.hi, other.lo, other.hi
            p = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
            lo = torch.minimum(torch.minimum(p[0], p[1]), torch.minimum(p[2], p[3]))
            hi = torch.maximum(torch.maximum(p[0], p[1]), torch.maximum(p[2], p[3]))
            # Each rounded product is within one ulp of the exact one, so the extremes moved out
            # by one ulp enclose all four. A product is exactly 0 when a factor is 0; a zero
            # from non-zero factors underflowed and must move: an extreme 0 stays only when no
            # product underflowed. (Equal to rounding each product, then taking min / max.)
            # inf * 0 is NaN: an infinite endpoint means "unbounded" (sanitised below).
            zl, zh = lo == 0, hi == 0
            if not bool((zl | zh).any()):  # no extreme is 0 (the usual case): all move
                return Interval(down(lo), up(hi))
            za0, za1, zb0, zb1 = a0 == 0, a1 == 0, b0 == 0, b1 == 0
            underflow = (
                ((p[0] == 0) & ~(za0 | zb0))
                | ((p[1] == 0) & ~(za0 | zb1))
                | ((p[2] == 0) & ~(za1 | zb0))
                | ((p[3] == 0) & ~(za1 | zb1))
            )
            lo = torch.where(zl & ~underflow, lo, down(lo))
            hi = torch.where(zh & ~underflow, hi, up(hi))
            return Interval(lo, hi)
        c = _const(other, self.lo)
        a, b = self.lo * c, self.hi * c
        # a product is exactly 0 when a factor is 0; keep such zeros unmoved: the nextafter
        # target is -inf (+inf) where both factors are non-zero, else 0 (|v| inf is NaN at v = 0)
        C = c.abs() * _scalar(_INF, c)
        ta = _toward(self.lo.abs() * C)
        tb = _toward(self.hi.abs() * C)
        return Interval(
            torch.minimum(torch.nextafter(a, -ta), torch.nextafter(b, -tb)),
            torch.maximum(torch.nextafter(a, ta), torch.nextafter(b, tb)),
        )

    __rmul__ = __mul__

    def reciprocal(self) -> Interval:
        """``1 / x``; unbounded when ``x`` may be 0."""
        ok = (self.lo > 0) | (self.hi < 0)
        lo = torch.where(ok, down(1.0 / self.hi), torch.full_like(self.lo, -_INF))
        hi = torch.where(ok, up(1.0 / self.lo), torch.full_like(self.hi, _INF))
        return Interval(lo, hi)

    def __truediv__(self, other) -> Interval:
        if getattr(other, "own_rules", False):
            return NotImplemented
        if isinstance(other, Interval):
            ok = (other.lo > 0) | (other.hi < 0)
            qs = [a / b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
            lo = down(torch.minimum(torch.minimum(qs[0], qs[1]), torch.minimum(qs[2], qs[3])))
            hi = up(torch.maximum(torch.maximum(qs[0], qs[1]), torch.maximum(qs[2], qs[3])))
            return Interval(
                torch.where(ok, lo, torch.full_like(lo, -_INF)),
                torch.where(ok, hi, torch.full_like(hi, _INF)),
            )
        c = _const(other, self.lo)
        if torch.any(c == 0):
            return Interval.full(self.shape, self.lo)
        a, b = self.lo / c, self.hi / c
        # a quotient is exactly 0 only when its numerator is 0 (one that underflows is not)
        a_lo = torch.where(self.lo == 0, a, down(a))
        a_hi = torch.where(self.lo == 0, a, up(a))
        b_lo = torch.where(self.hi == 0, b, down(b))
        b_hi = torch.where(self.hi == 0, b, up(b))
        return Interval(torch.minimum(a_lo, b_lo), torch.maximum(a_hi, b_hi))

    def __rtruediv__(self, other) -> Interval:
        return self.reciprocal() * other

    def square(self) -> Interval:
        # the smallest |x| in the interval (0 when it holds 0) and the largest; the rounded squares
        # of these are the extremes of the rounded squares (rounding is monotone)
        near = torch.clamp(torch.maximum(self.lo, -self.hi), min=0.0)
        far = torch.maximum(-self.lo, self.hi)
        # a square that underflows to 0 is not exactly 0: widen it (the lower end stays >= 0); a
        # 0 from the point 0 stays (the target: +inf where far > 0, else 0)
        low = torch.clamp(down(near * near), min=0.0)
        high = torch.nextafter(far * far, _toward(far * _scalar(_INF, far)))
        return Interval._exact(low, high)  # squares of non-NaN endpoints: never NaN

    def pow_int(self, n: int) -> Interval:
        """``x ** n`` for an integer ``n``."""
        if n == 0:
            return Interval.point(torch.ones_like(self.lo))
        if n < 0:
            return self.pow_int(-n).reciprocal()
        if n == 1:
            return self
        if n == 2:
            return self.square()
        plo, phi = torch.pow(self.lo, n), torch.pow(self.hi, n)
        ulps = 2 * n + 2
        if n % 2:  # odd: increasing
            return Interval(down_lib(plo, ulps), up_lib(phi, ulps))
        straddle = (self.lo < 0) & (self.hi > 0)
        low = torch.where(straddle, torch.zeros_like(plo), torch.minimum(plo, phi))
        high = torch.maximum(plo, phi)
        low = torch.where(straddle, low, down_lib(low, ulps))
        return Interval(low, up_lib(high, ulps))

    def __pow__(self, exponent) -> Interval:
        if isinstance(exponent, (int, float)) and float(exponent).is_integer():
            return self.pow_int(int(exponent))
        if isinstance(exponent, (int, float)):
            if exponent == 0.5:
                return self.sqrt()
            # x ** p = exp(p log x), defined for x > 0
            return (self.log() * float(exponent)).exp()
        raise TypeError("interval ** interval is not supported")

    # ----------------------------------------------------------------- elementary functions

    def _increasing(self, fn, ulps: int = TRANSCENDENTAL_ULPS) -> Interval:
        return Interval(down_lib(fn(self.lo), ulps), up_lib(fn(self.hi), ulps))

    def exp(self) -> Interval:
        out = self._increasing(torch.exp)
        return Interval(torch.clamp(out.lo, min=0.0), out.hi)

    def log(self) -> Interval:
        lo = torch.where(self.lo > 0, down_lib(torch.log(self.lo)), torch.full_like(self.lo, -_INF))
        hi = torch.where(self.hi > 0, up_lib(torch.log(self.hi)), torch.full_like(self.hi, _INF))
        # an input that is negative somewhere leaves log undefined there: unknown
        bad = self.lo < 0
        return Interval(
            torch.where(bad, torch.full_like(lo, -_INF), lo),
            torch.where(bad, torch.full_like(hi, _INF), hi),
        )

    def sqrt(self) -> Interval:
        bad = self.lo < 0
        lo = down(torch.sqrt(torch.clamp(self.lo, min=0.0)))
        hi = up(torch.sqrt(torch.clamp(self.hi, min=0.0)))
        return Interval(
            torch.where(bad, torch.full_like(lo, -_INF), torch.clamp(lo, min=0.0)),
            torch.where(bad, torch.full_like(hi, _INF), hi),
        )

    def tanh(self) -> Interval:
        out = self._increasing(torch.tanh)
        return Interval(torch.clamp(out.lo, -1.0, 1.0), torch.clamp(out.hi, -1.0, 1.0))

    def sigmoid(self) -> Interval:
        out = self._increasing(torch.sigmoid)
        return Interval(torch.clamp(out.lo, 0.0, 1.0), torch.clamp(out.hi, 0.0, 1.0))

    def tanh_with_derivative(self) -> tuple[Interval, Interval]:
        """``tanh`` and ``tanh' = 1 - tanh^2`` (the exact image of the enclosure of ``tanh``)."""
        y = self.tanh()
        d = 1.0 - y.square()
        return y, Interval(torch.clamp(d.lo, 0.0, 1.0), torch.clamp(d.hi, 0.0, 1.0))

    def sigmoid_with_derivative(self) -> tuple[Interval, Interval]:
        """``sigmoid`` and ``sigmoid' = s (1 - s)``: the image of the enclosure ``[s_lo, s_hi]`` of
        ``s`` under ``h(s) = s (1 - s)`` (increasing below 1/2, decreasing above)."""
        s = self.sigmoid()
        a, b = s.lo, s.hi

        def h_lo(x):
            return torch.clamp(down(x * down(1.0 - x)), min=0.0)

        def h_hi(x):
            return up(x * up(1.0 - x))

        lo = torch.minimum(h_lo(a), h_lo(b))
        peak = (a <= 0.5) & (b >= 0.5)
        hi = torch.where(peak, 0.25, torch.maximum(h_hi(a), h_hi(b)))
        return s, Interval(lo, torch.clamp(hi, max=0.25))

    def tanh_derivative(self) -> Interval:
        """``tanh'(x) = sech(x)^2 = 1 - tanh(x)^2`` (even, decreasing in ``|x|``, largest 1 at 0)."""
        return self._bell(2.0, 4.0)

    def sigmoid_derivative(self) -> Interval:
        """``sigmoid'(x) = s (1 - s)`` (even, decreasing in ``|x|``, largest 1/4 at 0)."""
        return self._bell(1.0, 1.0)

    def _bell(self, k: float, c: float) -> Interval:
        """``c q (1 - q)`` with ``q = sigmoid(-k |x|)`` (``tanh'``: k = 2, c = 4; ``sigmoid'``:
        k = c = 1): decreasing in ``|x|``, so its range is its values at the points of the interval
        nearest to 0 and farthest from 0."""
        near = torch.clamp(torch.maximum(self.lo, -self.hi), min=0.0)
        far = torch.maximum(-self.lo, self.hi)
        lo, _ = bell_at(far, k, c)
        _, hi = bell_at(near, k, c)
        return Interval(lo, hi)

    def atan(self) -> Interval:
        return self._increasing(torch.atan)

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Interval:
        """Bounds of torch's softplus, a piecewise function: ``x`` where ``beta x > threshold``,
        else ``log(1 + exp(beta x)) / beta`` (discontinuous at the switch). The bound is the hull
        of the smooth branch over the whole interval and of the identity branch where it may
        occur, so it also encloses the smooth softplus without a threshold (``threshold = inf``,
        ONNX's ``Softplus``). A negative threshold makes the identity branch negative: no clamp."""
        if not beta > 0:
            raise ValueError(f"softplus: expected beta > 0, got {beta}")
        z_lo, z_hi = self.lo * beta, self.hi * beta
        if beta != 1.0:  # round beta x outward, then divide by beta outward
            z_lo, z_hi = down(z_lo), up(z_hi)
        lo = torch.clamp(down_lib(softplus_smooth(z_lo)), min=0.0)
        hi = up_lib(softplus_smooth(z_hi))
        if beta != 1.0:
            lo, hi = torch.clamp(down(lo / beta), min=0.0), up(hi / beta)
        # the identity branch holds for x with beta x > threshold (real; torch's float test
        # fl(beta x) > threshold implies it, threshold being a float): x > threshold / beta
        reach = up(self.hi * beta) >= threshold
        if bool(reach.any()):
            switch = down(torch.full_like(self.lo, threshold / beta))
            ident_lo = torch.maximum(self.lo, switch)
            lo = torch.where(reach, torch.minimum(lo, ident_lo), lo)
            hi = torch.where(reach, torch.maximum(hi, self.hi), hi)
        return Interval(lo, hi)

    def _periodic(self, fn, max_phase: float, min_phase: float) -> Interval:
        """Bounds of ``sin`` or ``cos``: the endpoint values, widened, and +-1 wherever a maximum
        (at ``max_phase + 2 pi k``) or minimum may lie inside the interval."""
        two_pi = 2.0 * math.pi
        a, b = fn(self.lo), fn(self.hi)
        lo = torch.minimum(a, b)
        hi = torch.maximum(a, b)
        slack = 1e-9 * (1.0 + torch.maximum(self.lo.abs(), self.hi.abs()))
        k_max = torch.ceil((self.lo - slack - max_phase) / two_pi)
        has_max = max_phase + two_pi * k_max <= self.hi + slack
        k_min = torch.ceil((self.lo - slack - min_phase) / two_pi)
        has_min = min_phase + two_pi * k_min <= self.hi + slack
        wide = (self.hi - self.lo >= two_pi) | ~torch.isfinite(self.lo) | ~torch.isfinite(self.hi)
        lo = torch.where(has_min | wide, torch.full_like(lo, -1.0), down_lib(lo))
        hi = torch.where(has_max | wide, torch.full_like(hi, 1.0), up_lib(hi))
        return Interval(torch.clamp(lo, min=-1.0), torch.clamp(hi, max=1.0))

    def sin(self) -> Interval:
        return self._periodic(torch.sin, math.pi / 2, -math.pi / 2)

    def cos(self) -> Interval:
        return self._periodic(torch.cos, 0.0, math.pi)

    def abs(self) -> Interval:
        straddle = (self.lo < 0) & (self.hi > 0)
        a, b = self.lo.abs(), self.hi.abs()
        lo = torch.where(straddle, torch.zeros_like(a), torch.minimum(a, b))
        return Interval(lo, torch.maximum(a, b))

    def relu(self) -> Interval:
        return Interval(torch.clamp(self.lo, min=0.0), torch.clamp(self.hi, min=0.0))

    def leaky_relu(self, slope: float) -> Interval:
        def f(x):
            neg = x * slope
            return torch.where(x < 0, neg, x), x < 0

        lo, lneg = f(self.lo)
        hi, hneg = f(self.hi)
        if slope < 0:
            raise ValueError("leaky_relu with a negative slope is not monotone")
        exact_lo = ~lneg | (slope == 0)
        exact_hi = ~hneg | (slope == 0)
        return Interval(torch.where(exact_lo, lo, down(lo)), torch.where(exact_hi, hi, up(hi)))

    def clamp(self, min=None, max=None) -> Interval:
        return Interval(
            torch.clamp(self.lo, min=min, max=max), torch.clamp(self.hi, min=min, max=max)
        )

    def step(self) -> Interval:
        """The Clarke hull of the derivative of relu: 0 below 0, 1 above, [0, 1] if 0 is inside."""
        lo = (self.lo > 0).to(self.lo.dtype)
        hi = (self.hi >= 0).to(self.hi.dtype)
        return Interval(lo, hi)

    def contains_zero(self) -> torch.Tensor:
        return (self.lo <= 0) & (self.hi >= 0)

    def masked_unbounded(self, mask: torch.Tensor) -> Interval:
        """Zero where ``mask`` is false, unbounded where it is true (the derivative of a step)."""
        zero = torch.zeros_like(self.lo)
        return Interval(
            torch.where(mask, torch.full_like(zero, -_INF), zero),
            torch.where(mask, torch.full_like(zero, _INF), zero),
        )

    # ----------------------------------------------------------------- reductions, linear maps

    def sum(self, dim=None, keepdim: bool = False) -> Interval:
        if dim is None:
            n = self.lo.numel()
            lo, hi = self.lo.sum(), self.hi.sum()
            alo, ahi = self.lo.abs().sum(), self.hi.abs().sum()
        else:
            dims = (dim,) if isinstance(dim, int) else tuple(dim)
            n = math.prod(self.lo.shape[d] for d in dims)
            lo = self.lo.sum(dim=dims, keepdim=keepdim)
            hi = self.hi.sum(dim=dims, keepdim=keepdim)
            alo = self.lo.abs().sum(dim=dims, keepdim=keepdim)
            ahi = self.hi.abs().sum(dim=dims, keepdim=keepdim)
        g = gamma(n)
        return Interval(down(lo - g * alo - TINY), up(hi + g * ahi + TINY))

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Interval:
        """``x @ weight.T + bias`` (torch.nn.functional.linear) with exact constants."""
        mid = self.mid
        rad = up(torch.maximum(self.hi - mid, mid - self.lo))
        w_abs = weight.abs()
        y_mid = torch.nn.functional.linear(mid, weight, bias)
        y_rad = torch.nn.functional.linear(rad, w_abs)
        scale = torch.nn.functional.linear(mid.abs(), w_abs) + y_rad
        if bias is not None:
            scale = scale + bias.abs()
        err = gamma(weight.shape[-1] + 2) * scale + TINY
        lo = down(y_mid - y_rad - err - gamma(4) * (y_rad + err))
        hi = up(y_mid + y_rad + err + gamma(4) * (y_rad + err))
        return Interval(lo, hi)

    # ----------------------------------------------------------------- structure

    def __getitem__(self, index) -> Interval:
        return Interval(self.lo[index], self.hi[index])

    def apply(self, fn, *args, **kwargs) -> Interval:
        """A shape operation (reshape, unsqueeze, ...) applied to both endpoints."""
        return Interval(fn(self.lo, *args, **kwargs), fn(self.hi, *args, **kwargs))

    @staticmethod
    def stack(items: Sequence[Interval], dim: int = 0) -> Interval:
        return Interval(
            torch.stack([i.lo for i in items], dim), torch.stack([i.hi for i in items], dim)
        )

    @staticmethod
    def cat(items: Sequence[Interval], dim: int = 0) -> Interval:
        return Interval(
            torch.cat([i.lo for i in items], dim), torch.cat([i.hi for i in items], dim)
        )

    @staticmethod
    def minimum(a: Interval, b: Interval) -> Interval:
        return Interval(torch.minimum(a.lo, b.lo), torch.minimum(a.hi, b.hi))

    @staticmethod
    def maximum(a: Interval, b: Interval) -> Interval:
        return Interval(torch.maximum(a.lo, b.lo), torch.maximum(a.hi, b.hi))

    def intersect(self, other: Interval) -> Interval:
        """Both enclose the same values, so their intersection does too."""
        return Interval(torch.maximum(self.lo, other.lo), torch.minimum(self.hi, other.hi))

    def hull(self, other: Interval) -> Interval:
        return Interval(torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi))


def bell_q(a: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For floats ``a >= 0``: ``q = sigmoid(-k a)`` in float and an enclosure ``[q_lo, q_hi]``
    within ``[0, 1/2]`` (``k`` in {1, 2}: ``-k a`` is exact or overflows to ``-inf``, where the
    real ``q < e^(-1e308)`` is covered by the ``TINY`` widening of ``up_lib``)."""
    q = torch.sigmoid(a * -k)
    return q, torch.clamp(down_lib(q), 0.0, 0.5), torch.clamp(up_lib(q), 0.0, 0.5)


def bell_from_q(q_lo: torch.Tensor, q_hi: torch.Tensor, c: float):
    """An enclosure of ``c q (1 - q)`` for the real ``q`` in ``[q_lo, q_hi]`` within ``[0, 1/2]``
    (increasing in ``q`` there; ``c`` in {1, 4}: the scaling is exact), clamped to the real
    range ``[0, c / 4]``."""
    lo = torch.clamp(down(q_lo * down(1.0 - q_lo)), min=0.0) * c
    hi = torch.clamp(up(q_hi * up(1.0 - q_hi)) * c, max=c / 4.0)
    return lo, hi


def bell_at(a: torch.Tensor, k: float, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """An enclosure of ``c q (1 - q)``, ``q = sigmoid(-k a)``, at floats ``a >= 0``."""
    _, q_lo, q_hi = bell_q(a, k)
    return bell_from_q(q_lo, q_hi, c)


def softplus_smooth(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(z))`` in float64 without overflow (``max(z, 0) + log1p(exp(-|z|))``; both
    terms are non-negative, so the result is within a few ulps)."""
    return torch.clamp(z, min=0.0) + torch.log1p(torch.exp(-z.abs()))


def _const(value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    raise TypeError(f"cannot combine an interval with {type(value).__name__}")


def lift(value, like: torch.Tensor) -> Interval:
    """A constant (tensor or number) as an exact point interval broadcast like ``like``."""
    if isinstance(value, Interval):
        return value
    c = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return Interval(c, c)
