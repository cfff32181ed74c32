"""Soundness of the bound engine, checked against an arbitrary-precision oracle (python-flint arb).

Every ``Interval`` operation must enclose the exact real result for all real inputs in its input
intervals (a float64 constant is the real number it represents). The oracle evaluates the exact
function in arb at the interval endpoints, at random interior floats and at the critical points
that lie inside (``0`` for even powers and ``abs``, ``pi/2 + 2 k pi`` for ``sin``, ...), so for the
piecewise monotone operations tested here it checks the whole exact range, not just samples.
A check passes only when the whole arb ball lies in ``[lo, hi]`` (``ball.lower() >= lo`` and
``ball.upper() <= hi``, exact comparisons), so an imprecise oracle can only make a check stricter.

``Dual`` tangents are checked against exact directional derivatives (forward mode over arb);
``forms.best_bounds`` / ``forms.mean_value_bounds`` / ``forms.taylor2_bounds`` against arb values on
dense samples of each box.

Tiers: the default part runs a few thousand random cases; the ``slow`` part runs the same checks
on well over 100,000 random cases. Soundness bugs found here are kept as regression tests
at the end of the file (they fail today and will XPASS, i.e. fail loudly, once fixed).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import flint
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lyapcert.bounds import forms
from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from lyapcert.errors import UnsupportedOperationError
from lyapcert.systems import get_system

flint.ctx.prec = 200
A = flint.arb
INF = math.inf
HIGH_PREC = 1400  # enough for any float64 argument (|x| < 2**1024) to be reduced exactly

FAST_N = 120  # random intervals per operation in the default tier
SLOW_N = 8000  # ... in the slow tier (x 47 operations: > 370,000 cases)
slow = pytest.mark.slow


def _rng(label: str, tier: str) -> np.random.Generator:
    """A fixed seed per test (``hash`` is salted per process; crc32 is not)."""
    return np.random.default_rng(zlib.crc32(f"{label}/{tier}".encode()))


def _t(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64)


# ------------------------------------------------------------------------------------ the oracle


PRECISIONS = (200, HIGH_PREC, 4400)
"""Working precisions of the oracle: a check that fails at 200 bits because the ball is loose
(huge arguments) or overlaps an endpoint (``cos(1e-300)`` is ``1 - 5e-601``) is redone higher."""


def encloses(v, lo: float, hi: float) -> bool:
    """Whether ``[lo, hi]`` contains the whole arb ball ``v`` (or the exact infinity ``v``)."""
    if math.isnan(lo) or math.isnan(hi):
        return False
    if isinstance(v, float):
        return lo <= v <= hi
    if not v.is_finite():
        return False  # the oracle could not decide: report it rather than pass it
    ok_lo = lo == -INF or (math.isfinite(lo) and v.lower() >= A(lo))
    ok_hi = hi == INF or (math.isfinite(hi) and v.upper() <= A(hi))
    return bool(ok_lo and ok_hi)


def _surely_outside(v, lo: float, hi: float) -> bool:
    if isinstance(v, float) or math.isnan(lo) or math.isnan(hi) or not v.is_finite():
        return True
    return bool(
        (math.isfinite(lo) and v.upper() < A(lo))
        or (math.isfinite(hi) and v.lower() > A(hi))
        or lo == INF
        or hi == -INF
    )


def oracle_encloses(fn: Callable, args: tuple, lo: float, hi: float):
    """``(True, v)`` when ``[lo, hi]`` contains ``fn(*args)`` evaluated in arb (``None``: undefined
    there; ``+-inf``: an infinite limit); ``(False, v)`` with the sharpest ball otherwise."""
    v = None
    for prec in PRECISIONS:
        with flint.ctx.workprec(prec):
            v = fn(*args)
        if v is None or encloses(v, lo, hi):
            return True, v
        if _surely_outside(v, lo, hi):
            break
    return False, v


def memo(fn: Callable) -> Callable:
    """``fn`` evaluated once per (working precision, arguments): several bounds are checked
    against one exact value."""
    cache: dict = {}

    def wrapped(*args):
        key = (flint.ctx.prec, args)
        if key not in cache:
            cache[key] = fn(*args)
        return cache[key]

    return wrapped


@dataclass
class Report:
    """Collects failures of one test; ``done()`` asserts there are none."""

    label: str
    cases: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, fn: Callable, args: tuple, lo: float, hi: float, where: str) -> None:
        ok, v = oracle_encloses(fn, args, lo, hi)
        if not ok:
            self.failures.append(f"{where}: exact {v} not in [{lo!r}, {hi!r}]")

    def expect(self, v, lo: float, hi: float, where: str) -> None:
        """An exactly known value (``A(1)``, an exact sum of floats, ...)."""
        self.check(lambda: v, (), lo, hi, where)

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)

    def done(self, min_cases: int = 1) -> None:
        assert self.cases >= min_cases, f"{self.label}: only {self.cases} cases ran"
        assert not self.failures, (
            f"{self.label}: {len(self.failures)} failure(s) in {self.cases} cases:\n"
            + "\n".join(self.failures[:10])
        )


def _no_nan(rep: Report, out: Interval, what: str) -> None:
    nan = torch.isnan(out.lo) | torch.isnan(out.hi)
    rep.require(not bool(nan.any()), f"{what}: NaN endpoints at {torch.nonzero(nan)[:5].tolist()}")


def _interior(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``k`` random floats inside each ``[a_i, b_i]`` (shape ``[n, k]``)."""
    t = rng.random((a.shape[0], k))
    x = a[:, None] * (1.0 - t) + b[:, None] * t
    return np.clip(x, a[:, None], b[:, None])


# ------------------------------------------------------------------------------- random intervals


def _mags(rng, n, emin, emax, signed=True):
    m = 10.0 ** rng.uniform(emin, emax, n)
    return m * rng.choice([-1.0, 1.0], n) if signed else m


def boxes(
    rng: np.random.Generator,
    n: int,
    emin: float = -8.0,
    emax: float = 8.0,
    *,
    tiny: tuple[float, float] | None = (-320.0, -100.0),
    huge: tuple[float, float] | None = (100.0, 300.0),
    positive: bool = False,
    extra: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random intervals mixing many regimes: relative widths from 1e-16 to 10, point
    intervals, a few ulps wide, straddling 0, an endpoint exactly 0, exactly ``[0, 0]``,
    absolute widths, tiny (subnormal included) and huge magnitudes, and ``extra(rng, m)``."""
    kind = rng.integers(0, 11, n)
    c = _mags(rng, n, emin, emax)
    w = np.abs(c) * 10.0 ** rng.uniform(-16.0, 1.0, n)
    lo = c - w * rng.random(n)
    hi = c + w * rng.random(n)
    # point intervals
    m = kind == 1
    lo[m] = hi[m] = c[m]
    # a few ulps wide
    m = kind == 2
    lo[m] = c[m]
    hi[m] = c[m]
    for _ in range(int(rng.integers(1, 4))):
        hi[m] = np.nextafter(hi[m], INF)
    # straddling zero
    m = kind == 3
    lo[m] = -_mags(rng, int(m.sum()), emin, emax, signed=False)
    hi[m] = _mags(rng, int(m.sum()), emin, emax, signed=False)
    # an endpoint exactly zero
    m = kind == 4
    side = rng.random(n) < 0.5
    lo[m & side], hi[m & side] = 0.0, np.abs(c[m & side])
    lo[m & ~side], hi[m & ~side] = -np.abs(c[m & ~side]), 0.0
    # exactly zero
    m = kind == 5
    lo[m] = hi[m] = 0.0
    # absolute widths
    m = kind == 6
    aw = 10.0 ** rng.uniform(-15.0, 1.0, n)
    lo[m] = c[m] - aw[m] * rng.random(int(m.sum()))
    hi[m] = c[m] + aw[m]
    # tiny magnitudes (subnormals included) and huge magnitudes
    for k, rng_e in ((7, tiny), (8, huge)):
        m = kind == k
        if rng_e is None:
            continue
        cc = _mags(rng, int(m.sum()), *rng_e)
        lo[m] = cc * (1.0 - 10.0 ** rng.uniform(-16.0, 0.0, int(m.sum())))
        hi[m] = cc
    if extra is not None:
        m = kind == 9
        lo[m], hi[m] = extra(rng, int(m.sum()))
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    if positive:
        # mostly non-negative (kind 10 keeps negative parts: the undefined region)
        keep = kind == 10
        a, b = np.abs(lo), np.abs(hi)
        straddle = (lo < 0) & (hi > 0)
        nlo = np.where(straddle, 0.0, np.minimum(a, b))
        lo, hi = np.where(keep, lo, nlo), np.where(keep, hi, np.maximum(a, b))
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)
    return lo, hi


def _near_half_pi_multiples(rng, m, kmax=640_000):
    """Tiny intervals around the float nearest ``k pi / 2`` (|x| up to ~1e6)."""
    lo = np.empty(m)
    hi = np.empty(m)
    half_pi = A.pi() / 2
    for i, k in enumerate(rng.integers(-kmax, kmax, m).tolist()):
        x = float(A(k) * half_pi)
        a, b = x, x
        for _ in range(int(rng.integers(0, 3))):
            a = math.nextafter(a, -INF)
        for _ in range(int(rng.integers(0, 3))):
            b = math.nextafter(b, INF)
        lo[i], hi[i] = a, b
    return lo, hi


def _around(value):
    def extra(rng, m):
        c = value + rng.normal(0.0, 1.0, m) * 10.0 ** rng.uniform(-12.0, 0.5, m)
        w = np.abs(rng.normal(0.0, 1.0, m)) * 10.0 ** rng.uniform(-12.0, 0.5, m)
        return c - w, c + w

    return extra


# ------------------------------------------------------------------------------- unary operations


def _phase_inside(a: float, b: float, q: float) -> bool:
    """Whether ``[a, b]`` contains a point ``2 pi (k + q)`` for an integer ``k`` (exact)."""
    if b - a >= 7.0:
        return True
    exponent = math.frexp(max(abs(a), abs(b), 1.0))[1]
    with flint.ctx.workprec(200 + exponent):
        two_pi = 2 * A.pi()
        k = (A(a) / two_pi - A(q)).ceil().unique_fmpz()
        assert k is not None, f"cannot locate the critical points near {a!r}"
        point = (A(k) + A(q)) * two_pi
        if point <= A(b):
            return True
        assert point > A(b), f"cannot decide a critical point of [{a!r}, {b!r}]"
        return False


def _crit_periodic(q_max: float, q_min: float):
    def crit(a, b):
        out = []
        if _phase_inside(a, b, q_max):
            out.append(A(1))
        if _phase_inside(a, b, q_min):
            out.append(A(-1))
        return out

    return crit


def _crit_zero(value: A):
    def crit(a, b):
        return [value] if a < 0.0 < b else []

    return crit


# Beyond |x| ~ 1000, exp, tanh, sigmoid and softplus differ from 0, +-1 or x by less than any
# precision arb can carry (1 - tanh(1e300) = 2 e^(-2e300)). There the oracle returns a *proxy*
# ball that decides exactly the same float comparisons as the true value: the true value is
# ``base + d`` with ``0 < d < 2**-1400`` (or above the largest float), and ``base + [2**-1401,
# 2**-1399]`` lies above a float ``lo`` iff ``lo <= base`` and below a float ``hi`` iff
# ``hi > base``, exactly as ``base + d`` does (for |base| >= 1 or base = 0).
FAR = 1000.0


def _far_gap() -> A:
    return A(2) ** -1400 * A(1, 2.0**-20)  # in (2**-1401, 2**-1399)


def _above(base: A) -> A:
    return base + _far_gap()


def _below(base: A) -> A:
    return base - _far_gap()


def _exp(x: float) -> object:
    if x > FAR:
        return INF  # above every float: the bound must be +inf
    return _above(A(0)) if x < -FAR else A(x).exp()


def _tanh(x: float) -> A:
    if abs(x) > FAR:
        return _below(A(1)) if x > 0 else -_below(A(1))
    return A(x).tanh()


def _sigmoid(x: float) -> A:
    if x > FAR:
        return _below(A(1))
    if x < -FAR:
        return _above(A(0))
    v = A(x)
    return 1 / (1 + (-v).exp())


def _tanh_d(x: float) -> A:
    """``tanh'(x) = 1 / cosh(x)^2`` (beyond ``FAR`` a positive value below ``2**-1400``)."""
    if abs(x) > FAR:
        return _above(A(0))
    return 1 / A(x).cosh() ** 2


def _sigmoid_d(x: float) -> A:
    """``sigmoid'(x) = s (1 - s) = 1 / (4 cosh(x / 2)^2)``."""
    if abs(x) > FAR:
        return _above(A(0))
    return 1 / (4 * (A(x) / 2).cosh() ** 2)


def _softplus(x: float, beta: float = 1.0) -> A:
    z = A(x) * A(beta)
    if z > FAR:
        return _above(A(x))
    if z < -FAR:
        return _above(A(0))
    return z.exp().log1p() / A(beta)


def _pow_exact(n: int):
    def ex(x):
        if x == 0.0 and n < 0:
            return None  # a pole: see _pole_infinities
        return A(x) ** n if n != 0 else A(1)

    return ex


def _pow_op(n: int):
    return lambda x: x.pow_int(n)


def _pole_infinities(n: int):
    """Which infinite limits ``x ** n`` (n < 0) takes as x -> 0 inside ``[a, b]``."""

    def req(a, b):
        need_lo = need_hi = False
        if a <= 0.0 < b:  # x -> 0+
            need_hi = True
        if a < 0.0 <= b:  # x -> 0-
            if n % 2:
                need_lo = True
            else:
                need_hi = True
        return need_lo, need_hi

    return req


def _ex_log(x):
    if x < 0.0:
        return None
    return -INF if x == 0.0 else A(x).log()


def _ex_sqrt(x):
    return None if x < 0.0 else A(x).sqrt()


def _ex_pow15(x):
    if x < 0.0:
        return None
    return A(0) if x == 0.0 else A(x) ** A(1.5)


@dataclass
class Unary:
    iv: Callable[[Interval], Interval]
    exact: Callable[[float], object]
    gen: dict = field(default_factory=dict)
    crit: Callable | None = None
    poles: Callable | None = None  # (a, b) -> (need lo == -inf, need hi == +inf)


_TINY_OK = (-320.0, -100.0)  # tiny magnitudes, subnormals and underflowing squares included
_POS = {"positive": True}

UNARY: dict[str, Unary] = {
    "neg": Unary(lambda x: -x, lambda x: -A(x)),
    "square": Unary(
        lambda x: x.square(), lambda x: A(x) * A(x), {"tiny": _TINY_OK}, _crit_zero(A(0))
    ),
    **{
        f"pow_int({n})": Unary(
            _pow_op(n),
            _pow_exact(n),
            {"tiny": _TINY_OK} if n == 2 else {},
            _crit_zero(A(0)) if n > 0 and n % 2 == 0 else None,
            _pole_infinities(n) if n < 0 else None,
        )
        for n in range(-3, 8)
    },
    "**0.5": Unary(lambda x: x**0.5, _ex_sqrt, _POS),
    "**1.5": Unary(lambda x: x**1.5, _ex_pow15, _POS),
    "**-1.5": Unary(lambda x: x**-1.5, lambda x: None if x <= 0.0 else A(x) ** A(-1.5), _POS),
    "exp": Unary(lambda x: x.exp(), _exp, {"emax": 2.9}),
    "log": Unary(lambda x: x.log(), _ex_log, _POS),
    "sqrt": Unary(lambda x: x.sqrt(), _ex_sqrt, _POS),
    "sin": Unary(
        lambda x: x.sin(),
        lambda x: A(x).sin(),
        {"emax": 6.0, "extra": _near_half_pi_multiples},
        _crit_periodic(0.25, -0.25),
    ),
    "cos": Unary(
        lambda x: x.cos(),
        lambda x: A(x).cos(),
        {"emax": 6.0, "extra": _near_half_pi_multiples},
        _crit_periodic(0.0, 0.5),
    ),
    "tanh": Unary(lambda x: x.tanh(), _tanh, {"emax": 3.0}),
    "sigmoid": Unary(lambda x: x.sigmoid(), _sigmoid, {"emax": 3.0}),
    "atan": Unary(lambda x: x.atan(), lambda x: A(x).atan()),
    # bells: the largest value at 0 must be inside when 0 is
    "tanh_derivative": Unary(
        lambda x: x.tanh_derivative(), _tanh_d, {"emax": 3.0}, _crit_zero(A(1))
    ),
    "sigmoid_derivative": Unary(
        lambda x: x.sigmoid_derivative(), _sigmoid_d, {"emax": 3.0}, _crit_zero(A(1) / 4)
    ),
    # the same from the enclosure of tanh / sigmoid (Dual.tanh / Dual.sigmoid on intervals)
    "tanh_with_derivative[1]": Unary(
        lambda x: x.tanh_with_derivative()[1], _tanh_d, {"emax": 3.0}, _crit_zero(A(1))
    ),
    "sigmoid_with_derivative[1]": Unary(
        lambda x: x.sigmoid_with_derivative()[1],
        _sigmoid_d,
        {"emax": 3.0},
        _crit_zero(A(1) / 4),
    ),
    # exact-real softplus; intervals around and across torch's threshold 20 included
    "softplus": Unary(
        lambda x: x.softplus(),
        _softplus,
        {"emax": 3.0, "extra": _around(20.0)},
    ),
    # beta a power of two: beta * x and the division by beta are exact in float64
    "softplus(beta=2,threshold=5)": Unary(
        lambda x: x.softplus(2.0, 5.0),
        lambda x: _softplus(x, 2.0),
        {"emax": 3.0, "extra": _around(2.5)},
    ),
    "abs": Unary(lambda x: x.abs(), lambda x: abs(A(x)), {}, _crit_zero(A(0))),
    "relu": Unary(lambda x: x.relu(), lambda x: A(x) if x > 0 else A(0)),
    "leaky_relu(0.01)": Unary(
        lambda x: x.leaky_relu(0.01),
        lambda x: A(x) if x >= 0 else A(x) * A(0.01),
        {"tiny": (-300.0, -100.0)},
    ),
    "leaky_relu(0.3)": Unary(
        lambda x: x.leaky_relu(0.3),
        lambda x: A(x) if x >= 0 else A(x) * A(0.3),
        {"tiny": (-300.0, -100.0)},
    ),
    "clamp(-1.5,2.25)": Unary(
        lambda x: x.clamp(-1.5, 2.25),
        lambda x: A(min(max(x, -1.5), 2.25)),
        {"emax": 1.0},
    ),
    "clamp(min=0.1)": Unary(lambda x: x.clamp(min=0.1), lambda x: A(max(x, 0.1))),
    "clamp(max=-0.1)": Unary(lambda x: x.clamp(max=-0.1), lambda x: A(min(x, -0.1))),
    "reciprocal": Unary(
        lambda x: x.reciprocal(),
        lambda x: None if x == 0.0 else 1 / A(x),
        {},
        None,
        _pole_infinities(-1),
    ),
}


def check_unary(
    name: str, n: int, tier: str, n_interior: int = 2, op: Unary | None = None
) -> Report:
    op = UNARY[name] if op is None else op
    rng = _rng(name, tier)
    lo, hi = boxes(rng, n, **op.gen)
    out = op.iv(Interval(_t(lo), _t(hi)))
    rep = Report(name)
    _no_nan(rep, out, name)
    olo, ohi = out.lo.tolist(), out.hi.tolist()
    inner = _interior(rng, lo, hi, n_interior).tolist()
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
        rep.cases += 1
        ol, oh = olo[i], ohi[i]
        for x in (a, b, *inner[i]):
            rep.check(op.exact, (x,), ol, oh, f"{name}: x={x!r} in [{a!r}, {b!r}]")
        if op.crit is not None:
            for v in op.crit(a, b):
                rep.expect(v, ol, oh, f"{name}: critical value of [{a!r}, {b!r}]")
        if op.poles is not None:
            need_lo, need_hi = op.poles(a, b)
            rep.require(
                (not need_lo or ol == -INF) and (not need_hi or oh == INF),
                f"{name}: [{a!r}, {b!r}] contains a pole but the bound [{ol!r}, {oh!r}] is finite",
            )
    return rep


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_enclosure(name):
    check_unary(name, FAST_N, "fast").done(FAST_N)


@slow
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_enclosure_many(name):
    check_unary(name, SLOW_N, "slow").done(SLOW_N)


# ------------------------------------------------------------------------------ binary operations


def _quotient_infinities(a, b, c, d):
    """Infinite limits of ``x / y`` for x in [a, b] and y -> 0 inside [c, d]."""
    need_lo = need_hi = False
    pos_num, neg_num = b > 0.0, a < 0.0
    for y_side, present in ((1, c <= 0.0 < d), (-1, c < 0.0 <= d)):
        if not present:
            continue
        for x_side, has in ((1, pos_num), (-1, neg_num)):
            if has:
                if x_side * y_side > 0:
                    need_hi = True
                else:
                    need_lo = True
    return need_lo, need_hi


@dataclass
class Binary:
    iv: Callable[[Interval, object], Interval]
    exact: Callable[[float, float], object]
    gen_x: dict = field(default_factory=dict)
    gen_y: dict = field(default_factory=dict)
    constant: bool = False  # y is a per-row constant tensor (its lo is used; y is a point)
    poles: Callable | None = None


BINARY: dict[str, Binary] = {
    "x+y": Binary(lambda x, y: x + y, lambda x, y: A(x) + A(y)),
    "x-y": Binary(lambda x, y: x - y, lambda x, y: A(x) - A(y)),
    "x*y": Binary(lambda x, y: x * y, lambda x, y: A(x) * A(y)),
    "x*y (both straddle 0)": Binary(
        lambda x, y: x * y,
        lambda x, y: A(x) * A(y),
        {"extra": _around(0.0)},
        {"extra": _around(0.0)},
    ),
    "x/y": Binary(
        lambda x, y: x / y,
        lambda x, y: None if y == 0.0 else A(x) / A(y),
        poles=_quotient_infinities,
    ),
    "min(x,y)": Binary(Interval.minimum, lambda x, y: A(min(x, y))),
    "max(x,y)": Binary(Interval.maximum, lambda x, y: A(max(x, y))),
    "x+c": Binary(lambda x, c: x + c, lambda x, c: A(x) + A(c), constant=True),
    "c-x": Binary(lambda x, c: c - x, lambda x, c: A(c) - A(x), constant=True),
    "x*c": Binary(lambda x, c: x * c, lambda x, c: A(x) * A(c), constant=True),
    # quotients that do not underflow to 0 (that regime has its own regression test below)
    "x/c": Binary(
        lambda x, c: x / c,
        lambda x, c: A(x) / A(c),
        {"tiny": _TINY_OK, "emin": -6.0, "emax": 6.0},
        {"emin": -6.0, "emax": 6.0, "tiny": None, "huge": None},
        constant=True,
    ),
    "c/x": Binary(
        lambda x, c: c / x,
        lambda x, c: None if x == 0.0 else A(c) / A(x),
        constant=True,
        poles=lambda a, b, c, d: _quotient_infinities(c, c, a, b),
    ),
}


def check_binary(name: str, n: int, tier: str) -> Report:
    op = BINARY[name]
    rng = _rng(name, tier)
    a, b = boxes(rng, n, **op.gen_x)
    c, d = boxes(rng, n, **op.gen_y)
    if op.constant:
        d = c
        if name == "x/c":
            zero = c == 0.0
            c[zero] = d[zero] = 1.5  # division by an exact 0 is tested on its own
        y = _t(c)
    else:
        y = Interval(_t(c), _t(d))
    out = op.iv(Interval(_t(a), _t(b)), y)
    rep = Report(name)
    _no_nan(rep, out, name)
    olo, ohi = out.lo.tolist(), out.hi.tolist()
    xs_in = _interior(rng, a, b, 2).tolist()
    ys_in = _interior(rng, c, d, 2).tolist()
    for i, (xa, xb, ya, yb) in enumerate(zip(a.tolist(), b.tolist(), c.tolist(), d.tolist())):
        rep.cases += 1
        ol, oh = olo[i], ohi[i]
        points = [(x, y) for x in (xa, xb) for y in (ya, yb)]
        points += list(zip(xs_in[i], ys_in[i]))
        for x, yv in points:
            where = f"{name}: x={x!r} in [{xa!r}, {xb!r}], y={yv!r} in [{ya!r}, {yb!r}]"
            rep.check(op.exact, (x, yv), ol, oh, where)
        if op.poles is not None:
            need_lo, need_hi = op.poles(xa, xb, ya, yb)
            rep.require(
                (not need_lo or ol == -INF) and (not need_hi or oh == INF),
                f"{name}: x in [{xa!r}, {xb!r}], y in [{ya!r}, {yb!r}]: pole but [{ol!r}, {oh!r}]",
            )
    return rep


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_enclosure(name):
    check_binary(name, FAST_N, "fast").done(FAST_N)


@slow
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_enclosure_many(name):
    check_binary(name, SLOW_N, "slow").done(SLOW_N)


def test_python_scalar_constants():
    """Scalars (not tensors) on either side, through ``__radd__``, ``__rsub__``, ``__rmul__``,
    ``__rtruediv__``, including constants that are not exact in decimal (0.1)."""
    rng = _rng("scalars", "fast")
    lo, hi = boxes(rng, 200, tiny=_TINY_OK, emin=-4.0, emax=4.0)
    x = Interval(_t(lo), _t(hi))
    rep = Report("scalars")
    ops = {
        "c+x": (lambda x, c: c + x, lambda x, c: A(c) + A(x)),
        "x-c": (lambda x, c: x - c, lambda x, c: A(x) - A(c)),
        "c-x": (lambda x, c: c - x, lambda x, c: A(c) - A(x)),
        "c*x": (lambda x, c: c * x, lambda x, c: A(c) * A(x)),
        "x/c": (lambda x, c: x / c, lambda x, c: A(x) / A(c)),
        "c/x": (lambda x, c: c / x, lambda x, c: None if x == 0.0 else A(c) / A(x)),
    }
    for c in (0.1, -3.7, 1e-7, 2.0**60, -1e100, 7):
        for name, (iv, ex) in ops.items():
            out = iv(x, c)
            _no_nan(rep, out, name)
            for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
                rep.cases += 1
                for p in (a, b):
                    where = f"{name} c={c} x={p!r}"
                    rep.check(ex, (p, float(c)), out.lo[i].item(), out.hi[i].item(), where)
                if name == "c/x" and a <= 0.0 <= b and not (a == b == 0.0):
                    rep.require(
                        out.lo[i].item() == -INF or out.hi[i].item() == INF,
                        f"c/x with 0 in [{a!r}, {b!r}] is bounded",
                    )
    rep.done()


# -------------------------------------------------------------------------- sums and linear maps


def _cancelling_terms(rng, rows, n):
    """Terms of many magnitudes where about half cancel others exactly or nearly."""
    x = _mags(rng, rows * n, -20.0, 20.0).reshape(rows, n)
    half = n // 2
    perm = rng.permutation(n)
    src, dst = perm[:half], perm[half : 2 * half]
    x[:, dst] = -x[:, src] * (1.0 + rng.choice([0.0, 1e-15, 1e-9], (rows, half)))
    w = np.abs(x) * 10.0 ** rng.uniform(-17.0, -1.0, (rows, n))
    w[rng.random((rows, n)) < 0.3] = 0.0
    return x - w * rng.random((rows, n)), x + w * rng.random((rows, n))


def _arb_sum(values: tuple) -> A:
    s = A(0)
    for v in values:
        s += A(v)
    return s


def check_sum(n_rows: int, tier: str) -> Report:
    """``Interval.sum``: the exact range of a sum is ``[sum lo_i, sum hi_i]``."""
    rng = _rng("sum", tier)
    rep = Report("sum")
    for n in (2, 3, 17, 100, 1000):
        rows = max(1, n_rows // max(1, n // 20))
        lo, hi = _cancelling_terms(rng, rows, n)
        x = Interval(_t(lo), _t(hi))
        row_sum = memo(_arb_sum)
        for dim, keepdim in ((1, False), (-1, True), ((1,), False)):
            out = x.sum(dim, keepdim)
            olo, ohi = out.lo.reshape(-1).tolist(), out.hi.reshape(-1).tolist()
            for i in range(rows):
                rep.cases += 1
                for end in (tuple(lo[i].tolist()), tuple(hi[i].tolist())):
                    rep.check(row_sum, (end,), olo[i], ohi[i], f"sum n={n} row {i} dim={dim}")
        out = x.sum()
        rep.cases += 1
        for end in (tuple(lo.ravel().tolist()), tuple(hi.ravel().tolist())):
            rep.check(_arb_sum, (end,), out.lo.item(), out.hi.item(), f"sum n={n} all")
    return rep


def test_sum_with_cancellation():
    check_sum(60, "fast").done(100)


@slow
def test_sum_with_cancellation_many():
    check_sum(3000, "slow").done(10_000)


def _weights(rng, m, k):
    """Rows of mixed scales: plain, huge, tiny, mixed magnitudes, and cancelling pairs."""
    w = rng.normal(0.0, 1.0, (m, k))
    row_kind = rng.integers(0, 5, m)
    w[row_kind == 1] *= 1e150
    w[row_kind == 2] *= 1e-150
    mixed = row_kind == 3
    w[mixed] *= 10.0 ** rng.uniform(-30.0, 30.0, (int(mixed.sum()), k))
    canc = np.nonzero(row_kind == 4)[0]
    for r in canc:
        half = k // 2
        w[r, half : 2 * half] = -w[r, :half] * (1.0 + rng.choice([0.0, 1e-14]))
    w[rng.random((m, k)) < 0.1] = 0.0
    return w


def _linear_row(w_row: tuple, bias: float | None, lo: tuple, hi: tuple) -> tuple[A, A]:
    """Exact range ``[min, max]`` of ``w_row . x + bias`` over the box ``[lo, hi]``."""
    s_lo = A(0) if bias is None else A(bias)
    s_hi = s_lo
    for wj, a, b in zip(w_row, lo, hi):
        if wj != 0.0:
            p, q = A(wj) * A(a), A(wj) * A(b)
            s_lo, s_hi = s_lo + p.min(q), s_hi + p.max(q)
    return s_lo, s_hi


def _check_rows(rep, row, w, bias, lo, hi, olo, ohi, where):
    """Each output ``r`` of one box against the exact range of row ``r``."""
    for r in range(len(w)):
        args = (tuple(w[r]), None if bias is None else bias[r], tuple(lo), tuple(hi))
        for end in (0, 1):
            rep.check(lambda a=args, e=end: row(*a)[e], (), olo[r], ohi[r], f"{where} row {r}")


def check_linear(n_boxes: int, tier: str) -> Report:
    rng = _rng("linear", tier)
    rep = Report("linear")
    row = memo(_linear_row)
    for k, m in ((1, 3), (2, 8), (7, 5), (64, 6), (500, 2)):
        w = _weights(rng, m, k)
        bias = None if k == 7 else _mags(rng, m, -3.0, 3.0)
        lo, hi = boxes(rng, n_boxes * k, -3.0, 3.0, tiny=(-150.0, -20.0), huge=(20.0, 120.0))
        lo, hi = lo.reshape(n_boxes, k), hi.reshape(n_boxes, k)
        if k == 2:  # inputs that make cancelling rows nearly cancel
            lo[:, 1], hi[:, 1] = lo[:, 0], hi[:, 0]
        out = Interval(_t(lo), _t(hi)).linear(_t(w), None if bias is None else _t(bias))
        _no_nan(rep, out, f"linear k={k}")
        olo, ohi = out.lo.tolist(), out.hi.tolist()
        wl, bl = w.tolist(), None if bias is None else bias.tolist()
        for i in range(n_boxes):
            rep.cases += 1
            where = f"linear k={k} box {i}"
            _check_rows(rep, row, wl, bl, lo[i].tolist(), hi[i].tolist(), olo[i], ohi[i], where)
    return rep


def test_linear_enclosure():
    check_linear(60, "fast").done(200)


@slow
def test_linear_enclosure_many():
    check_linear(2500, "slow").done(10_000)


def test_matmul_and_linear_through_graph():
    """``x @ W.T``, ``x @ v`` and ``F.linear`` captured by torch.fx agree with the arb range."""
    rng = _rng("matmul", "fast")
    w = _t(_weights(rng, 4, 3))
    v = _t(rng.normal(size=3))
    b = _t(rng.normal(size=4))

    def fn(x):
        return torch.cat([x @ w.T + F.linear(x, w, b), (x @ v).unsqueeze(-1)], dim=1)

    g = capture(fn, 1)
    lo, hi = boxes(rng, 60 * 3, -2.0, 2.0, tiny=None, huge=None)
    lo, hi = lo.reshape(60, 3), hi.reshape(60, 3)
    out = g.evaluate(Interval(_t(lo), _t(hi)))
    rep = Report("matmul graph")
    # rows: w x + w x + b (= 2 w x + b, 2 w exact), then v . x
    rows = [*(2 * w).tolist(), v.tolist()]
    bias = [*b.tolist(), 0.0]
    olo, ohi = out.lo.tolist(), out.hi.tolist()
    row = memo(_linear_row)
    for i in range(60):
        rep.cases += 1
        _check_rows(
            rep, row, rows, bias, lo[i].tolist(), hi[i].tolist(), olo[i], ohi[i], f"box {i}"
        )
    rep.done(60)


# --------------------------------------------------------------- unbounded and undefined results


def _full(out: Interval) -> bool:
    return bool(torch.all(out.lo == -INF) and torch.all(out.hi == INF))


def _iv(lo, hi) -> Interval:
    return Interval(_t([lo]), _t([hi]))


def test_undefined_results_are_unbounded_not_nan():
    """log / sqrt / ** of intervals reaching negatives, 0 * inf, inf - inf and NaN inputs give
    +-inf endpoints, never NaN."""
    cases = {
        "log([-1, 2])": (_iv(-1.0, 2.0).log(), True),
        "log([-3, -1])": (_iv(-3.0, -1.0).log(), True),
        "sqrt([-1, 4])": (_iv(-1.0, 4.0).sqrt(), True),
        "[-1, 4] ** 0.5": (_iv(-1.0, 4.0) ** 0.5, True),
        "[0, 1] * [1, inf]": (_iv(0.0, 1.0) * _iv(1.0, INF), False),
        "[0, 0] * [-inf, inf]": (_iv(0.0, 0.0) * _iv(-INF, INF), False),
        "[-inf, inf] * 0": (_iv(-INF, INF) * 0.0, False),
        "[-inf, 1] + [1, inf]": (_iv(-INF, 1.0) + _iv(1.0, INF), True),
        "[-inf, inf] - [-inf, inf]": (_iv(-INF, INF) - _iv(-INF, INF), True),
        "[1, inf] / [1, inf]": (_iv(1.0, INF) / _iv(1.0, INF), False),
        "Interval(nan, nan)": (_iv(math.nan, math.nan), True),
        "exp([-inf, inf])": (_iv(-INF, INF).exp(), False),
        "[0, 1e300] ** 7": (_iv(0.0, 1e300).pow_int(7), False),
        "[-1e200, 1e200] ** 3": (_iv(-1e200, 1e200).pow_int(3), True),
    }
    for name, (out, must_be_full) in cases.items():
        assert not bool(torch.isnan(out.lo).any() or torch.isnan(out.hi).any()), name
        if must_be_full:
            assert _full(out), f"{name}: {out}"
    assert _iv(-1.0, 4.0).pow_int(7).lo.item() <= -1.0
    out = _iv(-1.0, 4.0) ** 1.5  # x ** 1.5 on x >= 0: [0, 8]; no NaN from the negative part
    assert out.lo.item() <= 0.0 and out.hi.item() >= 8.0
    full = _iv(-INF, INF)
    for fn, lo, hi in (
        (Interval.sin, -1.0, 1.0),
        (Interval.cos, -1.0, 1.0),
        (Interval.tanh, -1.0, 1.0),
        (Interval.sigmoid, 0.0, 1.0),
    ):
        out = fn(full)
        assert (out.lo.item(), out.hi.item()) == (lo, hi), fn.__name__
    out = full.atan()  # the range (-pi/2, pi/2); float(pi/2) is below pi/2
    assert encloses(A.pi() / 2, out.lo.item(), out.hi.item())
    assert encloses(-A.pi() / 2, out.lo.item(), out.hi.item())


def test_division_by_interval_containing_zero_is_unbounded():
    for num in ((1.0, 2.0), (-2.0, -1.0), (-1.0, 1.0), (0.0, 3.0)):
        for den in ((-1.0, 1.0), (0.0, 1.0), (-1.0, 0.0), (-0.0, 0.0), (-1e-300, 5e-324)):
            assert _full(_iv(*num) / _iv(*den)), (num, den)
        assert _full(_iv(*num) / 0.0)
        assert _full(_iv(*num) / torch.zeros(1))
    for den in ((-1.0, 1.0), (0.0, 1.0), (-1.0, 0.0)):
        assert _full(_iv(*den).reciprocal())
        assert _full(3.0 / _iv(*den))
        assert _full(_iv(*den).pow_int(-1)) and _full(_iv(*den).pow_int(-3))
        assert _iv(*den).pow_int(-2).hi.item() == INF
    # an exactly zero numerator over a zero-free interval stays bounded
    out = _iv(0.0, 0.0) / _iv(1.0, 2.0)
    assert out.lo.item() <= 0.0 <= out.hi.item() and math.isfinite(out.hi.item())


def test_huge_and_exact_zero_values():
    big = _iv(1e300, 1e300)
    assert (big * big).hi.item() == INF and (big * big).lo.item() >= 1.7e308
    assert (big * -big).lo.item() == -INF
    assert big.exp().hi.item() == INF and (-big).exp().lo.item() == 0.0
    assert (-big).exp().hi.item() > 0.0
    assert (_iv(1e308, 1e308) + _iv(1e308, 1e308)).hi.item() == INF
    sq = _iv(1e150, 1e150).square()
    assert encloses(A(1e150) * A(1e150), sq.lo.item(), sq.hi.item())
    zero = _iv(0.0, 0.0)
    for out in (
        zero + zero,
        zero - zero,
        zero * _iv(-3.0, 5.0),
        zero * 7.0,
        zero.square(),
        zero.relu(),
        zero.abs(),
        zero.leaky_relu(0.1),
        zero.clamp(-1.0, 1.0),
    ):
        assert out.lo.item() == 0.0 and out.hi.item() == 0.0, out
    x = _iv(0.1, 0.1)
    assert (x - x).lo.item() <= 0.0 <= (x - x).hi.item()
    one = _iv(1.0, 1.0)
    assert (one.sqrt().lo.item(), one.sqrt().hi.item()) == (
        math.nextafter(1.0, 0.0),
        math.nextafter(1.0, 2.0),
    )


# --------------------------------------------------------------------- forward mode (Dual) oracle


class AD:
    """Exact forward-mode value ``v`` and directional derivative ``d`` in arb."""

    __slots__ = ("d", "v")

    def __init__(self, v: A, d: A | None = None):
        self.v = v
        self.d = A(0) if d is None else d

    @staticmethod
    def lift(o) -> AD:
        return o if isinstance(o, AD) else AD(A(o))

    def __add__(self, o):
        o = AD.lift(o)
        return AD(self.v + o.v, self.d + o.d)

    __radd__ = __add__

    def __neg__(self):
        return AD(-self.v, -self.d)

    def __sub__(self, o):
        return self + (-AD.lift(o))

    def __rsub__(self, o):
        return AD.lift(o) - self

    def __mul__(self, o):
        o = AD.lift(o)
        return AD(self.v * o.v, self.v * o.d + self.d * o.v)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = AD.lift(o)
        return AD(self.v / o.v, (self.d * o.v - self.v * o.d) / (o.v * o.v))

    def __rtruediv__(self, o):
        return AD.lift(o) / self

    def __pow__(self, p):
        if isinstance(p, int):
            return AD(self.v**p, p * self.v ** (p - 1) * self.d)
        return AD(self.v ** A(p), A(p) * self.v ** A(p - 1) * self.d)

    # method forms, as on tensors (x.sin(), ...)
    def sin(self):
        return ArbOps.sin(self)

    def tanh(self):
        return ArbOps.tanh(self)

    def sqrt(self):
        return ArbOps.sqrt(self)

    def sigmoid(self):
        return ArbOps.sigmoid(self)

    def atan(self):
        return ArbOps.atan(self)

    def abs(self):
        return ArbOps.abs(self)

    def log(self):
        return ArbOps.log(self)

    def exp(self):
        return ArbOps.exp(self)


class ArbOps:
    """The functions of the compositions below, on ``AD``."""

    @staticmethod
    def sin(x):
        return AD(x.v.sin(), x.d * x.v.cos())

    @staticmethod
    def cos(x):
        return AD(x.v.cos(), -x.d * x.v.sin())

    @staticmethod
    def exp(x):
        e = x.v.exp()
        return AD(e, x.d * e)

    @staticmethod
    def log(x):
        return AD(x.v.log(), x.d / x.v)

    @staticmethod
    def sqrt(x):
        s = x.v.sqrt()
        return AD(s, x.d / (2 * s))

    @staticmethod
    def tanh(x):
        t = x.v.tanh()
        return AD(t, x.d * (1 - t * t))

    @staticmethod
    def sigmoid(x):
        s = 1 / (1 + (-x.v).exp())
        return AD(s, x.d * s * (1 - s))

    @staticmethod
    def atan(x):
        return AD(x.v.atan(), x.d / (1 + x.v * x.v))

    @staticmethod
    def softplus(x):
        return AD(x.v.exp().log1p(), x.d / (1 + (-x.v).exp()))

    @staticmethod
    def _kinked(x, slope_neg):
        if x.v > 0:
            return x
        if x.v < 0:
            return AD(x.v * slope_neg, x.d * slope_neg)
        # on the kink: the value is still exact; no classical derivative (NaN: not checked)
        return AD(x.v.union(x.v * slope_neg), A.nan())

    @staticmethod
    def relu(x):
        return ArbOps._kinked(x, A(0))

    @staticmethod
    def leaky(x):
        return ArbOps._kinked(x, A(0.1))

    @staticmethod
    def abs(x):
        return ArbOps._kinked(x, A(-1))

    @staticmethod
    def maximum(a, b):
        return b + ArbOps.relu(a - b)

    @staticmethod
    def minimum(a, b):
        return a - ArbOps.relu(a - b)

    @staticmethod
    def clamp(x, lo, hi):
        return ArbOps.minimum(ArbOps.maximum(x, AD(A(lo))), AD(A(hi)))


TorchOps = type(
    "TorchOps",
    (),
    {
        name: staticmethod(fn)
        for name, fn in {
            "sin": torch.sin,
            "cos": torch.cos,
            "exp": torch.exp,
            "log": torch.log,
            "sqrt": torch.sqrt,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "atan": torch.atan,
            "softplus": F.softplus,
            "relu": torch.relu,
            "leaky": lambda x: F.leaky_relu(x, 0.1),
            "abs": torch.abs,
            "maximum": torch.maximum,
            "minimum": torch.minimum,
            "clamp": lambda x, lo, hi: torch.clamp(x, lo, hi),
        }.items()
    },
)


def _f_trig(ns, x, y):
    return ns.sin(x) * ns.exp(y) + ns.tanh(x * y)


def _f_poly(ns, x, y):
    return x**3 - 2 * x * y


def _f_mixed(ns, x, y):
    return ns.sigmoid(x) / (1 + y**2) + ns.atan(x - y) * ns.cos(y)


def _f_roots(ns, x, y):
    return ns.sqrt(x * x + y * y + 1.0) - ns.log(2.0 + ns.sin(x * y)) + 1.0 / (1.5 + ns.cos(x))


def _f_powers(ns, x, y):
    return (x * x + 0.5) ** 1.5 - ns.softplus(x - y) * y + (y * y + 1.0) ** -2 + x / (3.0 - y)


def _f_kinks(ns, x, y):
    return ns.relu(x - y) * y + ns.abs(x) - ns.leaky(y * 2.0)


def _f_minmax(ns, x, y):
    return ns.clamp(x * y, -0.5, 0.7) + ns.maximum(x, y) * 2.0 - ns.minimum(x, 0.3 * y)


def _f_methods(ns, x, y):
    return (
        (x.sin() * y).tanh()
        + (x * x + 1.0).sqrt()
        - y.sigmoid() * x.atan()
        + (y.abs() + 1.0).log()
        + (0.2 * x - 0.1 * y).exp()
    )


COMPOSITIONS = {
    "sin(x)*exp(y)+tanh(x*y)": _f_trig,
    "x**3-2*x*y": _f_poly,
    "sigmoid/atan/cos": _f_mixed,
    "sqrt/log/reciprocal": _f_roots,
    "pow/softplus/quotient": _f_powers,
    "relu/abs/leaky_relu": _f_kinks,
    "clamp/maximum/minimum": _f_minmax,
    "tensor methods": _f_methods,
}


def _seeded(value: Interval, tangent: torch.Tensor) -> Dual:
    return Dual(value, Interval(tangent, tangent))


def check_composition(name: str, n: int, tier: str) -> Report:
    """Value and tangent of ``Dual`` evaluation (through graph.capture) against the exact value and
    directional derivative at corners and random interior points of each box."""
    f = COMPOSITIONS[name]
    g = capture(lambda x, y: f(TorchOps, x, y), 2)
    rng = _rng(name, tier)
    centre = rng.uniform(-2.5, 2.5, (2, n))
    width = 10.0 ** rng.uniform(-14.0, 0.0, (2, n)) * (rng.random((2, n)) < 0.95)
    lo, hi = centre - width * rng.random((2, n)), centre + width * rng.random((2, n))
    lo[1], hi[1] = np.clip(lo[1], -2.9, 2.9), np.clip(hi[1], -2.9, 2.9)  # keep 3 - y away from 0
    tx, ty = rng.normal(size=(2, n)) * (rng.random((2, n)) < 0.9)
    out = g.evaluate(
        _seeded(Interval(_t(lo[0]), _t(hi[0])), _t(tx)),
        _seeded(Interval(_t(lo[1]), _t(hi[1])), _t(ty)),
    )
    rep = Report(name)
    _no_nan(rep, out.value, name)
    _no_nan(rep, out.tangent, name)
    vlo, vhi = out.value.lo.tolist(), out.value.hi.tolist()
    dlo, dhi = out.tangent.lo.tolist(), out.tangent.hi.tolist()
    xin = _interior(rng, lo[0], hi[0], 3).tolist()
    yin = _interior(rng, lo[1], hi[1], 3).tolist()
    for i in range(n):
        rep.cases += 1
        pts = [(x, y) for x in (lo[0, i], hi[0, i]) for y in (lo[1, i], hi[1, i])]
        pts += list(zip(xin[i], yin[i]))
        for x, y in pts:
            x, y = float(x), float(y)

            def at(x=x, y=y, i=i):
                return f(ArbOps, AD(A(x), A(float(tx[i]))), AD(A(y), A(float(ty[i]))))

            where = f"{name} at ({x!r}, {y!r}) in box {i}, t=({tx[i]!r}, {ty[i]!r})"
            rep.check(lambda at=at: _part(at(), "v"), (), vlo[i], vhi[i], where + " value")
            rep.check(lambda at=at: _part(at(), "d"), (), dlo[i], dhi[i], where + " tangent")
    return rep


def _part(r: AD, which: str):
    v = getattr(r, which)
    return None if v.is_nan() else v


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_dual_compositions(name):
    check_composition(name, FAST_N, "fast").done(FAST_N)


@slow
@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_dual_compositions_many(name):
    check_composition(name, SLOW_N // 2, "slow").done(SLOW_N // 2)


# ------------------------------------------------------------------ networks and mean-value forms

ACTIVATIONS = {
    "tanh": (nn.Tanh, ArbOps.tanh),
    "sigmoid": (nn.Sigmoid, ArbOps.sigmoid),
    "softplus": (nn.Softplus, ArbOps.softplus),
    "relu": (nn.ReLU, ArbOps.relu),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), ArbOps.leaky),
}


def make_net(act: str, widths: tuple[int, ...], seed: int, scale: float = 1.5):
    """A float64 ``nn.Sequential`` (Linear, act, ..., Linear) and its weights as Python floats."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        lin = nn.Linear(a, b).to(torch.float64)
        with torch.no_grad():
            lin.weight.mul_(scale)
        layers += [lin, ACTIVATIONS[act][0]()]
    net = nn.Sequential(*layers[:-1])
    params = [(m.weight.tolist(), m.bias.tolist()) for m in net if isinstance(m, nn.Linear)]
    return net, params


def net_arb(params, act: Callable, xs: list[AD]) -> list[AD]:
    h = xs
    for k, (w, b) in enumerate(params):
        h = [sum((hj * wij for hj, wij in zip(h, row)), AD(A(bi))) for row, bi in zip(w, b)]
        if k < len(params) - 1:
            h = [act(v) for v in h]
    return h


def _random_boxes2(rng, n, radius=2.0, wmin=-5.0, wmax=0.0):
    c = rng.uniform(-radius, radius, (n, 2))
    w = 10.0 ** rng.uniform(wmin, wmax, (n, 2))
    return c - w * rng.random((n, 2)), c + w * rng.random((n, 2))


def check_mlp_dual(n: int, tier: str) -> Report:
    """The tanh MLP of the brief through ``graph.capture`` on an ``nn.Sequential``: Dual value
    and tangent, and ``forms.gradient_enclosure``, against exact arb derivatives."""
    rng = _rng("mlp", tier)
    net, params = make_net("tanh", (2, 8, 1), seed=7)
    g = capture(net, 1)
    lo, hi = _random_boxes2(rng, n, 2.5, -14.0, 0.0)
    t = rng.normal(size=(n, 2))
    box = Interval(_t(lo), _t(hi))
    out = g.evaluate(_seeded(box, _t(t)))
    grad = forms.gradient_enclosure(lambda z: g.evaluate(z), box)  # [2, n]
    rep = Report("tanh MLP")
    _no_nan(rep, out.tangent, "tangent")
    inner = (
        _interior(rng, lo[:, 0], hi[:, 0], 3).tolist(),
        _interior(rng, lo[:, 1], hi[:, 1], 3).tolist(),
    )
    for i in range(n):
        rep.cases += 1
        pts = [(x, y) for x in (lo[i, 0], hi[i, 0]) for y in (lo[i, 1], hi[i, 1])]
        pts += list(zip(inner[0][i], inner[1][i]))
        for x, y in pts:
            x, y = float(x), float(y)
            where = f"MLP at ({x!r}, {y!r}) box {i}"

            @memo
            def at(tx, ty, x=x, y=y):
                return net_arb(params, ArbOps.tanh, [AD(A(x), A(tx)), AD(A(y), A(ty))])[0]

            ti = (float(t[i, 0]), float(t[i, 1]))
            vlo, vhi = out.value.lo[i, 0].item(), out.value.hi[i, 0].item()
            rep.check(lambda ti=ti, at=at: at(*ti).v, (), vlo, vhi, where)
            tlo, thi = out.tangent.lo[i, 0].item(), out.tangent.hi[i, 0].item()
            rep.check(lambda ti=ti, at=at: at(*ti).d, (), tlo, thi, where + " Dt")
            for j, seed in enumerate(((1.0, 0.0), (0.0, 1.0))):
                glo, ghi = grad.lo[j, i].item(), grad.hi[j, i].item()
                rep.check(lambda seed=seed, at=at: at(*seed).d, (), glo, ghi, where + f" d/dx{j}")
    return rep


def test_mlp_dual_and_gradient():
    check_mlp_dual(FAST_N, "fast").done(FAST_N)


@slow
def test_mlp_dual_and_gradient_many():
    check_mlp_dual(SLOW_N // 2, "slow").done(SLOW_N // 2)


def _grid_points(rng, lo, hi, k=5, n_random=4):
    gx, gy = np.linspace(lo[0], hi[0], k), np.linspace(lo[1], hi[1], k)
    pts = [(float(x), float(y)) for x in gx for y in gy]
    pts += [
        (float(x), float(y))
        for x, y in zip(rng.uniform(lo[0], hi[0], n_random), rng.uniform(lo[1], hi[1], n_random))
    ]
    return [(min(max(x, lo[0]), hi[0]), min(max(y, lo[1]), hi[1])) for x, y in pts]


def check_forms(quantity: Callable, exact: Callable, lo, hi, label: str, rng) -> Report:
    """``interval_bounds``, ``mean_value_bounds``, ``best_bounds`` and ``taylor2_bounds`` of
    ``quantity`` on each box enclose the exact values (``exact(x, y) -> A``) on a dense grid of the box."""
    box = Interval(_t(lo), _t(hi))
    results = {
        "interval": forms.interval_bounds(quantity, box),
        "mean value": forms.mean_value_bounds(quantity, box),
        "best": forms.best_bounds(quantity, box),
        "taylor2": forms.taylor2_bounds(quantity, box),
    }
    rep = Report(label)
    for kind, b in results.items():
        rep.require(not bool(torch.isnan(b.lo).any() or torch.isnan(b.hi).any()), f"{kind}: NaN")
        rep.require(bool(torch.all(b.lo <= b.hi)), f"{kind}: an empty bound")
    bounds = {k: (b.lo.tolist(), b.hi.tolist()) for k, b in results.items()}
    exact = memo(exact)
    for i in range(lo.shape[0]):
        rep.cases += 1
        for x, y in _grid_points(rng, lo[i], hi[i]):
            for kind, (blo, bhi) in bounds.items():
                rep.check(
                    exact, (x, y), blo[i], bhi[i], f"{label} {kind} at ({x!r}, {y!r}) box {i}"
                )
    # the mean-value form must be finite (and so actually tested) on most small boxes
    mv = results["mean value"]
    small = torch.as_tensor((hi - lo).max(axis=1) < 0.1)
    finite = torch.isfinite(mv.lo) & torch.isfinite(mv.hi)
    rep.require(
        bool(finite[small].float().mean() > 0.5) if bool(small.any()) else True,
        f"{label}: mean-value form unbounded on most small boxes",
    )
    return rep


def check_networks(act: str, n: int, tier: str) -> Report:
    rng = _rng(f"forms-{act}", tier)
    net, params = make_net(act, (2, 10, 10, 1), seed=zlib.crc32(act.encode()) % 1000)
    g = capture(net, 1)
    lo, hi = _random_boxes2(rng, n)

    def exact(x, y):
        return net_arb(params, ACTIVATIONS[act][1], [AD(A(x)), AD(A(y))])[0].v

    return check_forms(lambda z: g.evaluate(z), exact, lo, hi, f"{act} network", rng)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_forms_enclose_random_networks(act):
    check_networks(act, 16, "fast").done(16)


@slow
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_forms_enclose_random_networks_many(act):
    check_networks(act, 300, "slow").done(300)


def _vanderpol_quantities():
    system = get_system("vanderpol")
    g = capture(system.dynamics, 2)

    def f(z):
        base = z
        while isinstance(base, Dual):
            base = base.value
        b = base.lo.shape[0]
        u = Interval(torch.zeros(b, 0), torch.zeros(b, 0))
        return g.evaluate(z, u)

    mu = A(1.0)

    def exact_f(x, y):
        x, y = A(x), A(y)
        return -y, x - mu * (1 - x * x) * y

    return system, {
        "f1": (lambda z: f(z)[:, 0], lambda x, y: exact_f(x, y)[0]),
        "f2": (lambda z: f(z)[:, 1], lambda x, y: exact_f(x, y)[1]),
        "x.f": (
            lambda z: (f(z) * z).sum(1),
            lambda x, y: A(x) * exact_f(x, y)[0] + A(y) * exact_f(x, y)[1],
        ),
    }


def check_vanderpol(n: int, tier: str) -> Report:
    system, quantities = _vanderpol_quantities()
    x = torch.tensor([[0.3, -1.25]])
    expected = torch.tensor([[1.25, 0.3 - (1 - 0.3**2) * -1.25]])
    assert torch.allclose(system.dynamics(x, torch.zeros(1, 0)), expected, rtol=1e-15, atol=0)
    rng = _rng("vanderpol", tier)
    rep = Report("vanderpol")
    for name, (q, exact) in quantities.items():
        c = rng.uniform(-1.0, 1.0, (n, 2)) * np.array([2.5, 3.5])
        w = 10.0 ** rng.uniform(-6.0, 0.3, (n, 2))
        sub = check_forms(
            q,
            exact,
            c - w * rng.random((n, 2)),
            c + w * rng.random((n, 2)),
            f"vanderpol {name}",
            rng,
        )
        rep.cases += sub.cases
        rep.failures += sub.failures
    return rep


def test_forms_enclose_vanderpol():
    check_vanderpol(40, "fast").done(120)


@slow
def test_forms_enclose_vanderpol_many():
    check_vanderpol(1500, "slow").done(4500)


def check_vanderpol_hessian(n: int, tier: str) -> Report:
    """``forms.hessian_enclosure`` of ``q = x.f(x) = -mu (1 - x^2) y^2`` (van der Pol, mu = 1)
    against its exact second derivatives ``2 mu y^2``, ``4 mu x y``, ``-2 mu (1 - x^2)`` at grid
    points of each box, and finite on every box (``q`` is a polynomial)."""
    _, quantities = _vanderpol_quantities()
    q = quantities["x.f"][0]
    exact = {
        (0, 0): lambda x, y: 2 * A(y) * A(y),
        (0, 1): lambda x, y: 4 * A(x) * A(y),
        (1, 1): lambda x, y: -2 * (1 - A(x) * A(x)),
    }
    rng = _rng("vanderpol-hessian", tier)
    lo, hi = _random_boxes2(rng, n, 3.0, -8.0, 0.3)
    return _check_hessian("vanderpol Hessian", q, exact, rng, lo, hi)


def _check_hessian(name: str, q, exact: dict, rng, lo, hi) -> Report:
    """``forms.hessian_enclosure`` of ``q`` on the boxes ``[lo, hi]``: finite, and containing the
    arb values of ``exact[(j, k)]`` at grid and random points of each box."""
    hess = forms.hessian_enclosure(q, Interval(_t(lo), _t(hi)))
    rep = Report(name)
    for pair, h in hess.items():
        rep.require(bool(torch.isfinite(h.lo).all() and torch.isfinite(h.hi).all()), f"{pair}")
    for i in range(lo.shape[0]):
        rep.cases += 1
        for x, y in _grid_points(rng, lo[i], hi[i], k=3, n_random=2):
            for pair, fn in exact.items():
                h = hess[pair]
                rep.check(fn, (x, y), h.lo[i].item(), h.hi[i].item(), f"H{pair} at ({x}, {y})")
    return rep


def test_hessian_enclosure_vanderpol():
    check_vanderpol_hessian(60, "fast").done(60)


@slow
def test_hessian_enclosure_vanderpol_many():
    check_vanderpol_hessian(2000, "slow").done(2000)


def check_bell_hessian(n: int, tier: str) -> Report:
    """``forms.hessian_enclosure`` of ``tanh(x y) + sigmoid(x - y)`` (nested duals: the second
    derivatives go through the rules of ``tanh'`` and ``sigmoid'``) against arb."""

    def q(z):
        return (z[:, 0] * z[:, 1]).tanh() + (z[:, 0] - z[:, 1]).sigmoid()

    def parts(x, y):
        p = A(x) * A(y)
        t = p.tanh()
        d1 = 1 - t * t
        d2 = -2 * t * d1
        s = 1 / (1 + (A(y) - A(x)).exp())
        s2 = s * (1 - s) * (1 - 2 * s)
        return A(x), A(y), d1, d2, s2

    def h00(x, y):
        _, Y, _, d2, s2 = parts(x, y)
        return d2 * Y * Y + s2

    def h01(x, y):
        X, Y, d1, d2, s2 = parts(x, y)
        return d2 * X * Y + d1 - s2

    def h11(x, y):
        X, _, _, d2, s2 = parts(x, y)
        return d2 * X * X + s2

    exact = {(0, 0): h00, (0, 1): h01, (1, 1): h11}
    rng = _rng("bell-hessian", tier)
    lo, hi = _random_boxes2(rng, n, 2.0, -8.0, 0.0)
    return _check_hessian("tanh/sigmoid Hessian", q, exact, rng, lo, hi)


def test_hessian_enclosure_tanh_sigmoid():
    check_bell_hessian(60, "fast").done(60)


def test_taylor2_is_unbounded_across_a_kink_and_exact_on_smooth_pieces():
    """relu(x) - x^2: across the kink (0 in the box) the second-order form has no Hessian and is
    unbounded; on a box without the kink it is the form's own value, finite."""
    q = lambda z: z[:, 0].relu() - z[:, 1].square()  # noqa: E731
    kink = forms.taylor2_bounds(q, Interval(_t([[-0.5, 0.0]]), _t([[0.5, 1.0]])))
    assert kink.lo.item() == -INF and kink.hi.item() == INF
    smooth = forms.taylor2_bounds(q, Interval(_t([[0.5, 0.0]]), _t([[1.5, 1.0]])))
    # x - y^2 on [0.5, 1.5] x [0, 1], centre (1, 0.5): 0.75 + [-0.5, 0.5] (dx) + [-0.5, 0.5] (-dy)
    # + [-0.25, 0] (-dy^2) = [-0.5, 1.75] (the exact range is [-0.5, 1.5])
    assert -0.5 - 1e-12 <= smooth.lo.item() <= -0.5 and 1.75 <= smooth.hi.item() <= 1.75 + 1e-12


def test_taylor2_proves_the_decrease_near_an_equilibrium_where_mean_value_cannot():
    """``dV/dt = 2 (P x).(A x) = -|x|^2`` for ``A'P + PA = -I`` with an ill-conditioned ``P``:
    on boxes at distance r of width r/4 the exact maximum is negative; the mean-value form (its
    gradient evaluated in intervals does not see the cancellation) cannot show it, the second-order
    form shows it on every box."""
    import scipy.linalg

    a = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-8.0, -14.0, -7.0]])  # poles -1, -2, -4
    p = scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(3))
    assert np.linalg.cond(p) > 30
    x = np.random.default_rng(0).normal(size=3)
    assert abs(2 * (p @ x) @ (a @ x) + x @ x) < 1e-12 * (x @ x)
    P, A_ = _t(p), _t(a)  # z.linear(W) is z @ W.T: rows P x and A x
    q = lambda z: ((z.linear(P) * z.linear(A_)).sum(dim=1)) * 2.0  # noqa: E731
    rng = np.random.default_rng(3)
    d = rng.normal(size=(200, 3))
    c = d / np.linalg.norm(d, axis=1, keepdims=True) * 0.01
    box = Interval(_t(c - 0.00125), _t(c + 0.00125))
    t2 = forms.taylor2_bounds(q, box)
    mv = forms.mean_value_bounds(q, box)
    assert bool((t2.hi < 0).all())
    assert float((mv.hi < 0).float().mean()) < 0.5


# ------------------------------------------------------------------------------- graph capture


def test_capture_reports_every_unsupported_operation_at_once():
    def fn(x):
        return torch.floor(x) + torch.erf(x) * x.frac() + torch.sin(x)

    with pytest.raises(UnsupportedOperationError) as info:
        capture(fn, 1)
    err = info.value
    assert isinstance(err, TypeError)
    ops = err.operations
    assert len(ops) == 3, ops
    for name in ("floor", "erf", "frac"):
        assert sum(name in op for op in ops) == 1, (name, ops)
        assert name in str(err)
    assert not any("sin" in op for op in ops)

    def fn2(x, y):
        return torch.floor(x) * torch.erf(y) + torch.floor(y)  # floor twice: listed once

    with pytest.raises(UnsupportedOperationError) as info:
        capture(fn2, 2)
    assert len(info.value.operations) == 2

    with pytest.raises(UnsupportedOperationError) as info:
        capture(nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1), nn.Mish()), 1)
    assert len(info.value.operations) == 2
    assert any("gelu" in op for op in info.value.operations)
    assert any("mish" in op for op in info.value.operations)


def test_capture_rejects_data_dependent_control_flow():
    def fn(x):
        return x if bool(x.sum() > 0) else -x

    with pytest.raises(UnsupportedOperationError):
        capture(fn, 1)


# ------------------------------------------------------------------ softplus: torch's identity branch


def test_softplus_above_threshold_encloses_torch_identity():
    """Entirely above ``threshold / beta`` torch's softplus is ``x`` itself: the interval bound
    (the hull of both branches) contains it, and the exact softplus."""
    rng = _rng("softplus-identity", "fast")
    lo = rng.uniform(20.0, 800.0, 500)
    hi = lo + np.abs(rng.normal(size=500)) * 10.0 ** rng.uniform(-14.0, 1.0, 500)
    out = Interval(_t(lo), _t(hi)).softplus()
    rep = Report("softplus identity branch")
    for i in range(lo.shape[0]):
        rep.cases += 1
        for x in (float(lo[i]), float(hi[i])):
            assert F.softplus(_t([x])).item() == x  # torch's identity branch
            rep.expect(A(x), out.lo[i].item(), out.hi[i].item(), f"torch softplus({x!r})")
            rep.check(_softplus, (x,), out.lo[i].item(), out.hi[i].item(), f"softplus({x!r})")
    rep.done(500)


# ------------------------------------------------------------------- regressions (bugs found and fixed)


def test_regression_division_by_constant_underflow():
    rep = Report("x / c underflow")
    for x, c in ((1e-300, 1e100), (-1e-300, 1e100), (3e-200, -7e150), (5e-324, 3.0)):
        for const in (c, torch.tensor(c)):
            out = _iv(x, x) / const
            rep.cases += 1
            rep.expect(A(x) / A(c), out.lo.item(), out.hi.item(), f"{x!r} / {c!r}")
        d = Dual(_iv(1.0, 1.0), _iv(x, x)) / c  # the tangent takes the same path
        rep.expect(A(x) / A(c), d.tangent.lo.item(), d.tangent.hi.item(), f"tangent {x!r} / {c!r}")
    rep.done()


def test_regression_square_underflow():
    rep = Report("square underflow")
    for lo, hi in ((1e-200, 1e-200), (-1e-170, -1e-180), (-1e-170, 1e-180), (5e-324, 1e-170)):
        x = _iv(lo, hi)
        for out in (x.square(), x.pow_int(2), x**2, Dual(x, x).square().value):
            rep.cases += 1
            for v in (lo, hi):
                rep.expect(
                    A(v) * A(v), out.lo.item(), out.hi.item(), f"[{lo!r}, {hi!r}]^2 at {v!r}"
                )
    rep.done()


def test_regression_leaky_relu_underflow():
    rep = Report("leaky_relu underflow")
    for x in (-5e-324, -2e-322, -1e-322):
        for slope in (0.01, 0.001):
            out = _iv(x, x).leaky_relu(slope)
            rep.cases += 1
            rep.expect(A(x) * A(slope), out.lo.item(), out.hi.item(), f"leaky({x!r}, {slope})")
    rep.done()


def test_regression_softplus_beta_rounding():
    for beta in (3.0, 0.37):
        op = Unary(
            lambda x, beta=beta: x.softplus(beta, 20.0),
            lambda x, beta=beta: _softplus(x, beta),
            {"emin": -1.0, "emax": 2.5, "tiny": None, "huge": None},
        )
        check_unary(f"softplus(beta={beta})", 400, "bug", op=op).done()


def test_regression_softplus_crossing_threshold_misses_torch_identity():
    x = np.array([20.0 + k * 1e-10 for k in range(1, 40)])
    out = Interval(torch.full((x.size,), 20.0), _t(x)).softplus()
    torch_values = F.softplus(_t(x))
    assert torch.equal(torch_values, _t(x))  # the identity branch
    assert bool(torch.all(out.lo <= torch_values)), (out.lo - torch_values).max()


def test_regression_softplus_mean_value_above_threshold():
    g = capture(nn.Softplus(), 1)
    box = Interval(_t([[21.0], [30.0]]), _t([[22.0], [40.0]]))
    for bounds in (forms.mean_value_bounds(g.evaluate, box), forms.best_bounds(g.evaluate, box)):
        torch_lo = F.softplus(box.lo[:, 0])
        assert bool(torch.all(bounds.lo <= torch_lo)), (bounds.lo, torch_lo)


def test_evaluation_leaves_no_cyclic_garbage():
    """An evaluation's intermediate bounds are freed when it returns, not when the cyclic garbage
    collector happens to run: a reference cycle holding them made a 4-state verification grow by
    about 0.9 GB per 100,000 boxes until the kernel killed it."""
    import gc

    net = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    graph = capture(net, 1)
    x = Interval(torch.zeros(16, 2, dtype=torch.float64), torch.ones(16, 2, dtype=torch.float64))
    t = Interval(torch.ones(16, 2, dtype=torch.float64), torch.ones(16, 2, dtype=torch.float64))
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        graph.evaluate(x)
        graph.evaluate(Dual(x, t))
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, (Interval, Dual, torch.Tensor))]
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
        gc.enable()
    assert not leaked
