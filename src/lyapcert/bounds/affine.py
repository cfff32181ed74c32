"""Linear bounds by forward propagation (the forward mode of CROWN): an ``Affine`` bound value.

Over a batch of boxes ``X`` (``[b, n]``) write ``x = m + d`` with ``m`` the box centre (a float)
and ``d`` the offset, a real vector in ``D = [lo - m, hi - m]`` (``D`` enclosed outward). Each
``Affine`` value ``q`` of shape ``[b, ...]`` holds, for every element::

    A_lo . d + c_lo  <=  q(x)  <=  A_hi . d + c_hi      for every real x in the box,

(``A [n, b, ...]``: the coefficient of ``d_j`` first; ``c [b, ...]``) and an interval enclosure
``iv`` of ``q`` that is the intersection of plain interval arithmetic with the two lines'
concretisations. The input is the identity (``A = e_j``, ``c = m``: exact). Every operation maps
lines to lines with one relaxation rule and passes the enclosures on, so any quantity the engine
evaluates on ``Interval`` or ``Dual`` (``V``, ``dV/dt`` by forward mode, ``V(x+) - V(x)``) is
evaluated on ``Affine`` with the same code: ``quantity(Affine.from_boxes(X))``.

Rules (the lines of ``bounds.relax`` where one exists):

* affine maps and constants: exact arithmetic on the lines (a positive weight takes the lower
  line, a negative one the upper line);
* a unary function ``s`` with relaxation ``a_l z + b_l <= s(z) <= a_h z + b_h`` on the interval of
  ``z``: ``s(z) >= a_l * (line of z) + b_l``, the lower line of ``z`` where ``a_l >= 0``;
* a product ``x y`` of two bound values (the Lie derivative's ``dV/dx_i * f_i``): the planes
  ``y_m x + x_m y + k`` with ``y_m, x_m`` the interval midpoints (the average of the two
  McCormick planes) and ``k`` the minimum (upper: maximum) over the four corners of
  ``x y - y_m x - x_m y``, a bilinear function, enclosed in interval arithmetic;
* anything else (``log``, ``sqrt``, ``atan``, ``1/x``, the Clarke ``step``): the constant lines
  of the interval result, which are always sound.

Floating point (the rule, as in ``bounds.crown``): a coefficient ``A`` computed in float differs
from the exact one by at most ``e`` (``EPS |A|`` for one rounding, ``gamma(k) |a| |A|`` for a
``k``-term product); the difference is charged to the constant as ``e . |d|max`` (times
``SAFETY``), and every constant is a sum rounded with its own ``gamma`` bound, moved outward by
one ulp and ``TINY``. An infinite or NaN term makes the line ``-inf`` (upper ``+inf``), that is:
no information, never a wrong one. Concretisation is an outward-rounded sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lyapcert.bounds import relax
from lyapcert.bounds.interval import EPS, TINY, Interval, down, gamma, up
from lyapcert.errors import UnsupportedOperationError

SAFETY = 2.0
"""Factor on every computed error bound (the bound is itself computed in rounded arithmetic)."""

_INF = math.inf


# ------------------------------------------------------------------------------ rounded sums


def _lower(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """A float at most the exact sum of the broadcastable ``terms`` (each a float within one
    rounding of a real product or a stored value): the rounded sum minus ``gamma`` times the sum
    of magnitudes, one ulp and ``TINY`` down. Infinite or NaN terms give ``-inf``."""
    total = terms[0]
    mag = terms[0].abs()
    for t in terms[1:]:
        total = total + t
        mag = mag + t.abs()
    bound = (SAFETY * gamma(len(terms) + 2)) * mag
    out = down(down(total - bound) - TINY)
    return torch.nan_to_num(out, nan=-_INF, posinf=-_INF, neginf=-_INF)


def _upper(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    return -_lower([-t for t in terms])


def _down_minus(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """A float at most ``c - s`` (``s >= 0``); NaN (``inf - inf``) gives ``-inf``."""
    out = down(c - s)
    return torch.nan_to_num(out, nan=-_INF, posinf=_INF, neginf=-_INF)


def _all_finite(t: torch.Tensor) -> bool:
    """True only if every element is finite (their sum is: an infinity or NaN would make it
    infinite or NaN; a finite sum that overflows answers False, which is only slower)."""
    return bool(torch.isfinite(t.sum()))


def _any_nan(t: torch.Tensor) -> bool:
    """True if some element may be NaN (the sum is NaN; also for ``inf + -inf``)."""
    return bool(torch.isnan(t.sum()))


def _times(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * c`` with ``0 * inf = 0`` (a zero coefficient on an unbounded line adds nothing)."""
    return torch.where(a == 0, torch.zeros_like(a * c), a * c)


# ------------------------------------------------------------------------------------ the space


class Space:
    """The boxes: centres ``m [b, n]``, the offset enclosure ``D`` and ``|d|max`` as ``[n, b]``;
    ``tape``: when a list, every operation's result is appended to it with its relation to its
    operands (``Affine.node``), for the backward pass (``bounds.crown``)."""

    __slots__ = ("b", "dhi", "dlo", "dmax", "m", "n", "tape")

    def __init__(self, boxes: Interval, tape: bool = False):
        self.tape = [] if tape else None
        if boxes.lo.ndim != 2:
            raise ValueError(
                f"Affine: boxes of shape [batch, n] expected, got {tuple(boxes.shape)}"
            )
        if not bool(torch.isfinite(boxes.lo).all() & torch.isfinite(boxes.hi).all()):
            raise ValueError("Affine: the boxes must be finite")
        self.b, self.n = boxes.lo.shape
        self.m = boxes.mid
        self.dlo = down(boxes.lo - self.m).T.contiguous()
        self.dhi = up(boxes.hi - self.m).T.contiguous()
        self.dmax = torch.maximum(self.dlo.abs(), self.dhi.abs())

    def view(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """``t [n, b]`` shaped to broadcast against ``A [n, b, ...]`` of ``ndim`` value dims."""
        return t.reshape((self.n, self.b) + (1,) * (ndim - 1))

    def charge(self, err: torch.Tensor) -> torch.Tensor:
        """``SAFETY * sum_j err_j |d_j|max``: the cost of coefficients off by at most ``err``."""
        d = self.view(self.dmax, err.ndim - 1)
        return (SAFETY * (1.0 + 8 * EPS * self.n)) * (err * d).sum(dim=0)

    def spread(self, A: torch.Tensor) -> torch.Tensor:
        """A float at least ``sum_j |A_j| |d_j|max`` (``max over D of |A . d|``): the rounded sum
        times ``1 + SAFETY gamma(n + 2)``, moved up by ``TINY`` (underflow)."""
        d = self.view(self.dmax, A.ndim - 1)
        return up((A.abs() * d).sum(dim=0) * (1.0 + SAFETY * gamma(self.n + 2)) + TINY)

    def minimum(self, A: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """A float at most ``min over D of A . d + c`` (``D`` taken as ``|d| <= |d|max``)."""
        return _down_minus(c, self.spread(A))

    def maximum(self, A: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return -self.minimum(-A, -c)


# ------------------------------------------------------------------------------- the value type


class Affine:
    """Lower and upper linear functions of the box offset ``d`` and an enclosure, elementwise."""

    __slots__ = ("A_hi", "A_lo", "c_hi", "c_lo", "iv", "node", "space")
    own_rules = True  # a bound value with its own mixed-operation rules (``graph.is_bound``)

    def __init__(self, A_lo, c_lo, A_hi, c_hi, iv: Interval, space: Space):
        self.A_lo, self.c_lo, self.A_hi, self.c_hi = A_lo, c_lo, A_hi, c_hi
        self.iv = iv
        self.space = space
        self.node = None  # (kind, operands, data) when recorded; None: a leaf (value in iv)

    def _rec(self, kind: str, operands: tuple, data=None) -> Affine:
        """Record this result's relation to its operands on the space's tape (if any)."""
        tape = self.space.tape
        if tape is not None:
            self.node = (kind, operands, data)
            tape.append(self)
        return self

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_boxes(cls, boxes: Interval, tape: bool = False) -> Affine:
        """The identity ``x = m + d`` on each box (``tape``: record the operations)."""
        sp = Space(boxes, tape)
        eye = torch.eye(sp.n, dtype=boxes.lo.dtype, device=boxes.lo.device)
        A = eye[:, None, :].expand(sp.n, sp.b, sp.n).contiguous()
        out = cls(A, sp.m.clone(), A.clone(), sp.m.clone(), boxes, sp)
        if tape:
            out.node = ("input", (), None)
        return out

    @classmethod
    def constant(cls, value, space: Space, like: torch.Tensor | None = None) -> Affine:
        """An exact constant (a tensor or number broadcast like ``like``), or an ``Interval``."""
        if isinstance(value, Interval):
            lo, hi = value.lo, value.hi
        else:
            ref = like if like is not None else space.m
            t = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
            if like is not None:
                t = t.expand(like.shape)
            lo = hi = t
        lo, hi = lo.contiguous(), hi.contiguous()
        zero = torch.zeros((space.n, *tuple(lo.shape)), dtype=lo.dtype, device=lo.device)
        return cls(zero, lo, zero, hi, Interval(lo, hi), space)

    @classmethod
    def from_interval(cls, iv: Interval, space: Space) -> Affine:
        """The constant lines of an enclosure (the fallback of every operation)."""
        return cls.constant(iv, space)

    @classmethod
    def _make(
        cls, space: Space, A_lo, c_lo, A_hi, c_hi, iv: Interval | None, rounded: bool = True
    ) -> Affine:
        """A value from its lines. ``rounded``: each coefficient is one rounding off the exact
        one (``|A - fl(A)| <= EPS |fl(A)|``), which is charged here to the constant as
        ``SAFETY EPS sum |A| |d|max`` (callers with other errors charge them and pass
        ``False``). Coefficients that are not finite make the line constant and unbounded; the
        enclosure is intersected with the lines' concretisation."""
        # a finite sum of all coefficients means every one is finite, a sum of the constants
        # that is not NaN means none is NaN: then nothing is bad (the usual case, two sums)
        if not _all_finite(A_lo) or _any_nan(c_lo):
            bad_lo = ~torch.isfinite(A_lo).all(dim=0) | torch.isnan(c_lo)
            if bool(bad_lo.any()):
                A_lo = torch.where(bad_lo, torch.zeros_like(A_lo), A_lo)
                c_lo = torch.where(bad_lo, torch.full_like(c_lo, -_INF), c_lo)
        if not _all_finite(A_hi) or _any_nan(c_hi):
            bad_hi = ~torch.isfinite(A_hi).all(dim=0) | torch.isnan(c_hi)
            if bool(bad_hi.any()):
                A_hi = torch.where(bad_hi, torch.zeros_like(A_hi), A_hi)
                c_hi = torch.where(bad_hi, torch.full_like(c_hi, _INF), c_hi)
        s_lo, s_hi = space.spread(A_lo), space.spread(A_hi)
        if rounded:
            c_lo = _down_minus(c_lo, s_lo * (SAFETY * EPS))
            c_hi = -_down_minus(-c_hi, s_hi * (SAFETY * EPS))
        lo = _down_minus(c_lo, s_lo)
        hi = -_down_minus(-c_hi, s_hi)
        if iv is not None:
            lo = torch.maximum(lo, iv.lo)
            hi = torch.minimum(hi, iv.hi)
        return cls(A_lo, c_lo, A_hi, c_hi, Interval(lo, hi), space)

    def _like(self, iv: Interval) -> Affine:
        return Affine.from_interval(iv, self.space)

    # ----------------------------------------------------------------- views

    @property
    def shape(self) -> torch.Size:
        return self.c_lo.shape

    @property
    def lo(self) -> torch.Tensor:
        return self.iv.lo

    @property
    def hi(self) -> torch.Tensor:
        return self.iv.hi

    @property
    def mid(self) -> torch.Tensor:
        return self.iv.mid

    def __repr__(self) -> str:
        return f"Affine(shape={tuple(self.shape)}, lo={self.lo}, hi={self.hi})"

    # ----------------------------------------------------------------- arithmetic

    def _coerce(self, other) -> Affine | None:
        """``other`` as an ``Affine`` when it is a bound value (``None`` for exact constants)."""
        if isinstance(other, Affine):
            return other
        if isinstance(other, Interval):
            return Affine.constant(other, self.space)
        return None

    def _exact(self, other) -> torch.Tensor:
        return torch.as_tensor(other, dtype=self.c_lo.dtype, device=self.c_lo.device)

    def __neg__(self) -> Affine:
        out = Affine(-self.A_hi, -self.c_hi, -self.A_lo, -self.c_lo, -self.iv, self.space)
        return out._rec("neg", (self,))

    def __add__(self, other) -> Affine:
        if getattr(other, "is_dual", False):
            return NotImplemented
        o = self._coerce(other)
        sp = self.space
        if o is None:
            k = self._exact(other)
            shape = torch.broadcast_shapes(self.shape, k.shape)
            A_lo = self.A_lo.expand((sp.n, *shape))
            A_hi = self.A_hi.expand((sp.n, *shape))
            c_lo = _lower([self.c_lo, k])
            c_hi = _upper([self.c_hi, k])
            return Affine(A_lo, c_lo, A_hi, c_hi, self.iv + k, sp)._rec("addc", (self,), k)
        A_lo = self.A_lo + o.A_lo
        A_hi = self.A_hi + o.A_hi
        c_lo = _lower([self.c_lo, o.c_lo])
        c_hi = _upper([self.c_hi, o.c_hi])
        return Affine._make(sp, A_lo, c_lo, A_hi, c_hi, self.iv + o.iv)._rec("add", (self, o))

    __radd__ = __add__

    def __sub__(self, other) -> Affine:
        if getattr(other, "is_dual", False):
            return NotImplemented
        o = self._coerce(other)
        if o is None:
            return self + (-self._exact(other))
        return self + (-o)

    def __rsub__(self, other) -> Affine:
        return (-self) + other

    def _scale(self, k: torch.Tensor) -> Affine:
        """``k * self`` for an exact constant ``k`` (broadcast)."""
        sp = self.space
        pos = k >= 0
        A_l = torch.where(pos, self.A_lo, self.A_hi)
        A_h = torch.where(pos, self.A_hi, self.A_lo)
        c_l = torch.where(pos, self.c_lo, self.c_hi)
        c_h = torch.where(pos, self.c_hi, self.c_lo)
        A_lo, A_hi = k * A_l, k * A_h
        c_lo = _lower([_times(k, c_l)])
        c_hi = _upper([_times(k, c_h)])
        return Affine._make(sp, A_lo, c_lo, A_hi, c_hi, self.iv * k)._rec("scale", (self,), k)

    def __mul__(self, other) -> Affine:
        if getattr(other, "is_dual", False):
            return NotImplemented
        o = self._coerce(other)
        if o is None:
            return self._scale(self._exact(other))
        return _product(self, o)

    __rmul__ = __mul__

    def __truediv__(self, other) -> Affine:
        if getattr(other, "is_dual", False):
            return NotImplemented
        o = self._coerce(other)
        if o is not None:
            return self * o.reciprocal()
        k = self._exact(other)
        if bool((k == 0).any()):
            return self._like(self.iv / k)
        sp = self.space
        pos = k > 0
        A_l = torch.where(pos, self.A_lo, self.A_hi)
        A_h = torch.where(pos, self.A_hi, self.A_lo)
        c_l = torch.where(pos, self.c_lo, self.c_hi)
        c_h = torch.where(pos, self.c_hi, self.c_lo)
        A_lo, A_hi = A_l / k, A_h / k
        c_lo = _lower([c_l / k])
        c_hi = _upper([c_h / k])
        return Affine._make(sp, A_lo, c_lo, A_hi, c_hi, self.iv / k)._rec("divc", (self,), k)

    def __rtruediv__(self, other) -> Affine:
        return self.reciprocal() * other

    def reciprocal(self) -> Affine:
        return self._like(self.iv.reciprocal())

    def square(self) -> Affine:
        return self.pow_int(2)

    def pow_int(self, n: int) -> Affine:
        if n == 0:
            return Affine.constant(torch.ones_like(self.c_lo), self.space)
        if n == 1:
            return self
        if n < 0:
            return self._like(self.iv.pow_int(n))
        return self._unary(lambda l, u: relax.power_fast(l, u, n), self.iv.pow_int(n))

    def __pow__(self, exponent) -> Affine:
        if isinstance(exponent, (int, float)) and float(exponent).is_integer():
            return self.pow_int(int(exponent))
        return self._like(self.iv**exponent)

    # ----------------------------------------------------------------- elementary functions

    def _unary(self, rule, out: Interval) -> Affine:
        """Compose the relaxation lines of ``rule(l, u)`` (on ``z``'s enclosure) with ``z``'s lines;
        elements whose enclosure is not finite take the constant lines of ``out``."""
        return self._unary_many(lambda l, u: (rule(l, u),), (out,))[0]

    def _unary_many(self, rule, outs: Sequence[Interval]) -> tuple[Affine, ...]:
        """``_unary`` for a rule that gives the lines of several functions of ``z`` at once
        (``outs``: their enclosures, in the same order)."""
        l, u = self.iv.lo, self.iv.hi
        if relax.finite_ordered(l, u):  # the usual case: every element has its rule
            many = rule(l, u)
        else:
            ok = torch.isfinite(l) & torch.isfinite(u) & (l <= u)
            if not bool(ok.any()):
                return tuple(self._like(out) for out in outs)
            safe_l = torch.where(ok, l, torch.zeros_like(l))
            safe_u = torch.where(ok, u, torch.zeros_like(u))
            many = []
            for (a_lo, b_lo, a_hi, b_hi), out in zip(rule(safe_l, safe_u), outs, strict=True):
                zero = torch.zeros_like(a_lo)
                a_lo, a_hi = torch.where(ok, a_lo, zero), torch.where(ok, a_hi, zero)
                b_lo, b_hi = torch.where(ok, b_lo, out.lo), torch.where(ok, b_hi, out.hi)
                many.append((a_lo, b_lo, a_hi, b_hi))
        results = []
        for (a_lo, b_lo, a_hi, b_hi), out in zip(many, outs, strict=True):
            A_lo, c_lo = _compose(self, a_lo, b_lo, lower=True)
            A_hi, c_hi = _compose(self, a_hi, b_hi, lower=False)
            result = Affine._make(self.space, A_lo, c_lo, A_hi, c_hi, out)
            results.append(result._rec("unary", (self,), (a_lo, b_lo, a_hi, b_hi)))
        return tuple(results)

    def exp(self) -> Affine:
        return self._unary(relax.exp_fast, self.iv.exp())

    def tanh(self) -> Affine:
        return self._unary(relax.tanh_fast, self.iv.tanh())

    def sigmoid(self) -> Affine:
        return self._unary(relax.sigmoid_fast, self.iv.sigmoid())

    def tanh_with_derivative(self) -> tuple[Affine, Affine]:
        """``tanh`` and ``tanh'`` from one set of evaluations of ``tanh``."""
        return self._unary_many(relax.tanh_pair_fast, self.iv.tanh_with_derivative())

    def sigmoid_with_derivative(self) -> tuple[Affine, Affine]:
        return self._unary_many(relax.sigmoid_pair_fast, self.iv.sigmoid_with_derivative())

    def tanh_derivative(self) -> Affine:
        return self._unary(relax.tanh_derivative_fast, self.iv.tanh_derivative())

    def sigmoid_derivative(self) -> Affine:
        return self._unary(relax.sigmoid_derivative_fast, self.iv.sigmoid_derivative())

    def sin(self) -> Affine:
        return self._unary(relax.sin_fast, self.iv.sin())

    def cos(self) -> Affine:
        return self._unary(relax.cos_fast, self.iv.cos())

    def relu(self) -> Affine:
        return self._unary(relax.relu, self.iv.relu())

    def leaky_relu(self, slope: float) -> Affine:
        return self._unary(lambda l, u: relax.leaky_relu(l, u, slope), self.iv.leaky_relu(slope))

    def clamp(self, min=None, max=None) -> Affine:
        return self._unary(lambda l, u: relax.clamp(l, u, min, max), self.iv.clamp(min, max))

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Affine:
        """torch's ``softplus(x, beta, threshold) = softplus_{1, threshold}(beta x) / beta``."""
        if beta != 1.0:
            # torch switches branch on the rounded beta * x: only when the switch cannot be
            # reached is the value the smooth function of the real beta * x
            if threshold == _INF or bool((self.iv.hi * beta < threshold - 1.0).all()):
                return (self * beta).softplus(1.0, _INF) / beta
            return self._like(self.iv.softplus(beta, threshold))
        out = self.iv.softplus(1.0, threshold)
        if threshold == _INF or bool((self.iv.hi <= threshold).all()):
            return self._unary(relax.softplus_fast, out)  # the smooth branch only
        return self._unary(lambda l, u: relax.softplus(l, u, 1.0, threshold), out)

    def abs(self) -> Affine:
        return self.relu() + (-self).relu()

    def log(self) -> Affine:
        return self._like(self.iv.log())

    def sqrt(self) -> Affine:
        return self._like(self.iv.sqrt())

    def atan(self) -> Affine:
        return self._like(self.iv.atan())

    def step(self) -> Affine:
        return self._like(self.iv.step())

    def contains_zero(self) -> torch.Tensor:
        return self.iv.contains_zero()

    def masked_unbounded(self, mask: torch.Tensor) -> Affine:
        return self._like(self.iv.masked_unbounded(mask))

    def hull_const(self, mask: torch.Tensor, c: float) -> Affine:
        """The value joined with the constant ``c`` where ``mask`` holds (constant lines there)."""
        iv = Interval(
            torch.where(mask, torch.clamp(self.iv.lo, max=c), self.iv.lo),
            torch.where(mask, torch.clamp(self.iv.hi, min=c), self.iv.hi),
        )
        joined = self._like(iv)
        return Affine(
            torch.where(mask, joined.A_lo, self.A_lo),
            torch.where(mask, joined.c_lo, self.c_lo),
            torch.where(mask, joined.A_hi, self.A_hi),
            torch.where(mask, joined.c_hi, self.c_hi),
            iv,
            self.space,
        )

    @staticmethod
    def maximum(a, b) -> Affine:
        return b + (a - b).relu()

    @staticmethod
    def minimum(a, b) -> Affine:
        return a - (a - b).relu()

    # ----------------------------------------------------------------- linear maps, structure

    def sum(self, dim=None, keepdim: bool = False) -> Affine:
        if dim is None:
            raise UnsupportedOperationError(["sum over every dimension (the batch included)"])
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        nd = len(self.shape)
        dims = tuple(d % nd for d in dims)
        if 0 in dims:
            raise UnsupportedOperationError(["sum over the batch dimension"])
        k = math.prod(self.shape[d] for d in dims)
        a_dims = tuple(d + 1 for d in dims)
        sp = self.space
        g = SAFETY * gamma(k + 2)
        out = []
        for A, c, lower in ((self.A_lo, self.c_lo, True), (self.A_hi, self.c_hi, False)):
            As = A.sum(dim=a_dims, keepdim=keepdim)
            err = g * A.abs().sum(dim=a_dims, keepdim=keepdim)
            cs = c.sum(dim=dims, keepdim=keepdim)
            cerr = g * c.abs().sum(dim=dims, keepdim=keepdim)
            if lower:
                out += [As, _lower([cs, -cerr, -sp.charge(err)])]
            else:
                out += [As, _upper([cs, cerr, sp.charge(err)])]
        result = Affine._make(sp, *out, self.iv.sum(dim, keepdim), rounded=False)
        return result._rec("linmap", (self,), lambda t: t.sum(dim=dims, keepdim=keepdim))

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Affine:
        """``x @ W.T + bias`` over the last dimension."""
        sp = self.space
        Wp = weight.clamp(min=0.0)
        Wn = weight.clamp(max=0.0)
        k = weight.shape[-1]
        g = SAFETY * gamma(2 * k + 2)
        Wn_abs_T = Wn.abs().T
        absA = {True: self.A_lo.abs(), False: self.A_hi.abs()}  # |A_lo|, |A_hi| once each
        out = []
        for lower in (True, False):
            A_a, A_b = (self.A_lo, self.A_hi) if lower else (self.A_hi, self.A_lo)
            c_a, c_b = (self.c_lo, self.c_hi) if lower else (self.c_hi, self.c_lo)
            A = A_a @ Wp.T + A_b @ Wn.T
            err = g * (absA[lower] @ Wp.T + absA[not lower] @ Wn_abs_T)
            # an unbounded constant meets a non-zero weight: that output's line is unbounded
            finite = _all_finite(c_a) and _all_finite(c_b)
            if finite:
                ca0, cb0 = c_a, c_b
            else:
                fin_a, fin_b = torch.isfinite(c_a), torch.isfinite(c_b)
                ca0 = torch.where(fin_a, c_a, torch.zeros_like(c_a))
                cb0 = torch.where(fin_b, c_b, torch.zeros_like(c_b))
            c = ca0 @ Wp.T + cb0 @ Wn.T
            cerr = g * (ca0.abs() @ Wp.T + cb0.abs() @ Wn_abs_T)
            terms = [c] if bias is None else [c, bias]
            if lower:
                c = _lower([*terms, -cerr, -sp.charge(err)])
            else:
                c = _upper([*terms, cerr, sp.charge(err)])
            if not finite:
                inf = ((~fin_a).to(Wp.dtype) @ (Wp != 0).to(Wp.dtype).T) + (
                    (~fin_b).to(Wp.dtype) @ (Wn != 0).to(Wp.dtype).T
                )
                c = torch.where(inf > 0, torch.full_like(c, -_INF if lower else _INF), c)
            out += [A, c]
        iv = self.iv.linear(weight, bias)
        result = Affine._make(sp, out[0], out[1], out[2], out[3], iv, rounded=False)
        return result._rec("linear", (self,), (weight, bias))

    def _check_batch(self, out: Affine) -> Affine:
        if out.c_lo.ndim == 0 or out.c_lo.shape[0] != self.space.b:
            raise UnsupportedOperationError(
                ["a shape operation that moves the batch dimension (linear bounds need it first)"]
            )
        return out

    def __getitem__(self, index) -> Affine:
        a_index = (slice(None),) + (index if isinstance(index, tuple) else (index,))
        out = Affine(
            self.A_lo[a_index],
            self.c_lo[index],
            self.A_hi[a_index],
            self.c_hi[index],
            self.iv[index],
            self.space,
        )
        return self._check_batch(out)._rec("linmap", (self,), lambda t: t[index])

    def apply(self, fn, *args, **kwargs) -> Affine:
        """A shape operation applied to the constants, the enclosure and each coefficient slice."""

        def coef(A):
            return torch.stack([fn(A[j], *args, **kwargs) for j in range(A.shape[0])])

        out = Affine(
            coef(self.A_lo),
            fn(self.c_lo, *args, **kwargs),
            coef(self.A_hi),
            fn(self.c_hi, *args, **kwargs),
            self.iv.apply(fn, *args, **kwargs),
            self.space,
        )
        return self._check_batch(out)._rec("linmap", (self,), lambda t: fn(t, *args, **kwargs))

    @staticmethod
    def stack(items: Sequence[Affine], dim: int = 0) -> Affine:
        return Affine._join(torch.stack, items, dim)

    @staticmethod
    def cat(items: Sequence[Affine], dim: int = 0) -> Affine:
        return Affine._join(torch.cat, items, dim)

    @staticmethod
    def _join(op, items: Sequence[Affine], dim: int) -> Affine:
        items = list(items)
        sp = items[0].space
        a_dim = dim + 1 if dim >= 0 else dim
        ivs = [i.iv for i in items]
        iv = Interval.stack(ivs, dim) if op is torch.stack else Interval.cat(ivs, dim)
        out = Affine(
            op([i.A_lo for i in items], a_dim),
            op([i.c_lo for i in items], dim),
            op([i.A_hi for i in items], a_dim),
            op([i.c_hi for i in items], dim),
            iv,
            sp,
        )
        return items[0]._check_batch(out)._rec("join", tuple(items), lambda *ts: op(ts, dim))


# ------------------------------------------------------------------------------ compositions


def _compose(z: Affine, a: torch.Tensor, b: torch.Tensor, lower: bool):
    """The line of ``a * z + b`` in ``d`` bounding it from below (``lower``) or above: ``z``'s
    lower line where ``a >= 0`` (above: where ``a < 0``). The coefficient ``fl(a A_z)`` is one
    rounding off: the caller charges it (``Affine._make`` does)."""
    use_lo = (a >= 0) if lower else (a < 0)
    A_z = torch.where(use_lo, z.A_lo, z.A_hi)
    c_z = torch.where(use_lo, z.c_lo, z.c_hi)
    A = a * A_z
    if lower:
        return A, _lower([_times(a, c_z), b])
    return A, _upper([_times(a, c_z), b])


def _corner_extremes(xl, xu, yl, yu, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Floats ``k_lo <= x y - a x - b y <= k_hi`` over the box ``[xl, xu] x [yl, yu]``:
    ``x y - a x - b y = (x - b)(y - a) - a b``, enclosed in interval arithmetic (the product of
    the two shifted intervals attains the corner extremes)."""
    shifted = (Interval(xl, xu) - b) * (Interval(yl, yu) - a)
    g = shifted - Interval.point(a) * Interval.point(b)
    return g.lo, g.hi


def _product(x: Affine, y: Affine) -> Affine:
    """``x * y`` of two bound values: the planes ``y_m x + x_m y + k`` (see the module text)."""
    sp = x.space
    X, Y = x.iv, y.iv
    xl, xu, yl, yu = torch.broadcast_tensors(X.lo, X.hi, Y.lo, Y.hi)
    iv = X * Y
    ok = torch.isfinite(xl) & torch.isfinite(xu) & torch.isfinite(yl) & torch.isfinite(yu)
    fill = torch.zeros_like(xl)
    xl, xu = torch.where(ok, xl, fill), torch.where(ok, xu, fill)
    yl, yu = torch.where(ok, yl, fill), torch.where(ok, yu, fill)
    a = Interval(yl, yu).mid  # slope on x
    b = Interval(xl, xu).mid  # slope on y
    k_lo, k_hi = _corner_extremes(xl, xu, yl, yu, a, b)
    k_lo = torch.where(ok, k_lo, iv.lo)  # where a bound is infinite: a = b = 0, k = x*y's bounds
    k_hi = torch.where(ok, k_hi, iv.hi)
    out = []
    for lower, k in ((True, k_lo), (False, k_hi)):
        Ax, cx = _compose(x, a, torch.zeros_like(a), lower)
        Ay, cy = _compose(y, b, torch.zeros_like(b), lower)
        A = Ax + Ay  # its own rounding is charged by _make; those of Ax and Ay here
        charge = sp.charge(EPS * Ax.abs()) + sp.charge(EPS * Ay.abs())
        if lower:
            c = _lower([cx, cy, k, -charge])
        else:
            c = _upper([cx, cy, k, charge])
        const = iv.lo if lower else iv.hi
        c = torch.where(ok, c, const)
        A = torch.where(ok, A, torch.zeros_like(A))
        out += [A, c]
    result = Affine._make(sp, out[0], out[1], out[2], out[3], iv)
    return result._rec("product", (x, y), (a, b, k_lo, k_hi))


__all__ = ["Affine", "Space"]
