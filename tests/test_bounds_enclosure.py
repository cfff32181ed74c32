"""Soundness of the bound engine, checked against an arbitrary-precision oracle (python-flint arb).

Every ``Interval`` operation must enclose the exact real result for all real inputs in its input
intervals (a float64 constant is the real number it represents). The oracle evaluates the exact
function in arb at the interval endpoints, at random interior floats and at the critical points
that lie inside (``0`` for even powers and ``abs``, ``pi/2 + 2 k pi`` for ``sin``, ...), so for the
piecewise monotone operations tested here it checks the whole exact range, not just samples.
A check passes only when the whole arb ball lies in ``[lo, hi]`` (``ball.lower() >= lo`` and
``ball.upper() <= hi``, exact comparisons), so an imprecise oracle can only make a check stricter.

``Dual`` tangents are checked against exact directional derivatives (forward mode over arb);
``forms.best_bounds`` / ``forms.mean_value_bounds`` against arb values on dense samples of each box.

Tiers: the default part runs a few thousand random cases; the ``slow`` part runs the same checks
on well over 100,000 random cases. Known soundness bugs are pinned by ``xfail(strict=True)`` tests
at the end of the file (they fail today and will XPASS, i.e. fail loudly, once fixed).
"""

from __future__ import annotations

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
SLOW_N = 5000  # ... in the slow tier (x ~45 operations: > 200,000 cases)
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
        nhi = np.where(straddle, np.maximum(a, b), np.maximum(a, b))
        lo, hi = np.where(keep, lo, nlo), np.where(keep, hi, nhi)
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


def _sigmoid(v: A) -> A:
    return 1 / (1 + (-v).exp())


def _softplus(v: A, beta: float = 1.0) -> A:
    return (v * A(beta)).exp().log1p() / A(beta)


def _pow_exact(n: int):
    def ex(x):
        if x == 0.0 and n < 0:
            return None  # a pole: see _pole_infinities
        return A(x) ** n if n != 0 else A(1)

    return ex


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


_TINY_OK = (-150.0, -100.0)  # tiny magnitudes whose squares do not underflow (see the xfails)
_POS = {"positive": True}

UNARY: dict[str, Unary] = {
    "neg": Unary(lambda x: -x, lambda x: -A(x)),
    "square": Unary(
        lambda x: x.square(), lambda x: A(x) * A(x), {"tiny": _TINY_OK}, _crit_zero(A(0))
    ),
    **{
        f"pow_int({n})": Unary(
            (lambda n: lambda x: x.pow_int(n))(n),
            _pow_exact(n),
            {"tiny": _TINY_OK} if n == 2 else {},
            _crit_zero(A(0)) if n > 0 and n % 2 == 0 else None,
            _pole_infinities(n) if n < 0 else None,
        )
        for n in range(-3, 8)
    },
    "**0.5": Unary(lambda x: x**0.5, _ex_sqrt, _POS),
    "**1.5": Unary(lambda x: x**1.5, _ex_pow15, _POS),
    "**-1.5": Unary(
        lambda x: x**-1.5, lambda x: None if x <= 0.0 else A(x) ** A(-1.5), _POS
    ),
    "exp": Unary(lambda x: x.exp(), lambda x: A(x).exp(), {"emax": 2.9}),
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
    "tanh": Unary(lambda x: x.tanh(), lambda x: A(x).tanh(), {"emax": 3.0}),
    "sigmoid": Unary(lambda x: x.sigmoid(), lambda x: _sigmoid(A(x)), {"emax": 3.0}),
    "atan": Unary(lambda x: x.atan(), lambda x: A(x).atan()),
    # exact-real softplus; intervals around and across torch's threshold 20 included
    "softplus": Unary(
        lambda x: x.softplus(),
        lambda x: _softplus(A(x)),
        {"emax": 3.0, "extra": _around(20.0)},
    ),
    # beta a power of two: beta * x and the division by beta are exact in float64
    "softplus(beta=2,threshold=5)": Unary(
        lambda x: x.softplus(2.0, 5.0),
        lambda x: _softplus(A(x), 2.0),
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
        lambda x: x.reciprocal(), lambda x: None if x == 0.0 else 1 / A(x), {}, None,
        _pole_infinities(-1),
    ),
}


def check_unary(name: str, n: int, tier: str, n_interior: int = 2) -> Report:
    op = UNARY[name]
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
    # quotients that do not underflow to 0 (that regime is pinned by an xfail below)
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


def _arb_sum(values) -> A:
    s = A(0)
    for v in values:
        s += A(v)
    return s


def check_sum(n_rows: int, tier: str) -> Report:
    rng = _rng("sum", tier)
    rep = Report("sum")
    for n in (2, 3, 17, 100, 1000):
        rows = max(1, n_rows // max(1, n // 20))
        lo, hi = _cancelling_terms(rng, rows, n)
        x = Interval(_t(lo), _t(hi))
        for dim, keepdim in ((1, False), (-1, True), ((1,), False)):
            out = x.sum(dim, keepdim)
            olo, ohi = out.lo.reshape(-1).tolist(), out.hi.reshape(-1).tolist()
            for i in range(rows):
                rep.cases += 1
                s_lo, s_hi = _arb_sum(lo[i].tolist()), _arb_sum(hi[i].tolist())
                rep.expect(s_lo, olo[i], ohi[i], f"sum n={n} row {i} (lower)")
                rep.expect(s_hi, olo[i], ohi[i], f"sum n={n} row {i} (upper)")
        out = x.sum()
        rep.cases += 1
        rep.expect(_arb_sum(lo.ravel().tolist()), out.lo.item(), out.hi.item(), f"sum n={n} all")
        rep.expect(_arb_sum(hi.ravel().tolist()), out.lo.item(), out.hi.item(), f"sum n={n} all")
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


def _linear_range(w, bias, lo, hi):
    """Exact range of ``w @ x + bias`` over the box: corner by corner (arb)."""
    out = []
    for r in range(w.shape[0]):
        s_lo = A(0) if bias is None else A(bias[r])
        s_hi = s_lo
        for j in range(w.shape[1]):
            wj = A(w[r, j])
            p, q = wj * A(lo[j]), wj * A(hi[j])
            s_lo += p.min(q) if w[r, j] != 0 else A(0)
            s_hi += p.max(q) if w[r, j] != 0 else A(0)
        out.append((s_lo, s_hi))
    return out


def check_linear(n_boxes: int, tier: str) -> Report:
    rng = _rng("linear", tier)
    rep = Report("linear")
    for k, m in ((1, 3), (2, 8), (7, 5), (64, 6)):
        w = _weights(rng, m, k)
        bias = None if k == 7 else _mags(rng, m, -3.0, 3.0)
        lo, hi = boxes(rng, n_boxes * k, -3.0, 3.0, tiny=(-150.0, -20.0), huge=(20.0, 120.0))
        lo, hi = lo.reshape(n_boxes, k), hi.reshape(n_boxes, k)
        if k == 2:  # inputs that make cancelling rows nearly cancel
            lo[:, 1], hi[:, 1] = lo[:, 0], hi[:, 0]
        out = Interval(_t(lo), _t(hi)).linear(_t(w), None if bias is None else _t(bias))
        _no_nan(rep, out, f"linear k={k}")
        olo, ohi = out.lo.tolist(), out.hi.tolist()
        for i in range(n_boxes):
            rep.cases += 1
            for r, (s_lo, s_hi) in enumerate(_linear_range(w, bias, lo[i].tolist(), hi[i].tolist())):
                where = f"linear k={k} box {i} row {r}"
                rep.expect(s_lo, olo[i][r], ohi[i][r], where + " (min)")
                rep.expect(s_hi, olo[i][r], ohi[i][r], where + " (max)")
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
    wn, vn, bn = w.numpy(), v.numpy(), b.numpy()
    for i in range(60):
        rep.cases += 1
        ranges = _linear_range(2 * wn, bn, lo[i].tolist(), hi[i].tolist())  # w x + w x + b
        ranges += _linear_range(vn[None, :], None, lo[i].tolist(), hi[i].tolist())
        for r, (s_lo, s_hi) in enumerate(ranges):
            rep.expect(s_lo, out.lo[i, r].item(), out.hi[i, r].item(), f"box {i} out {r}")
            rep.expect(s_hi, out.lo[i, r].item(), out.hi[i, r].item(), f"box {i} out {r}")
    rep.done(60)
