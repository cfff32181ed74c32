"""Forward-mode differentiation over bound values: ``Dual(value, tangent)``.

``value`` and ``tangent`` are both of one bound type: an ``Interval`` or, nested, a ``Dual``
(for second derivatives). Each rule encloses the value and the directional derivative
``d/ds g(x + s t)`` at ``s = 0`` for every point of the input enclosure. Non-smooth operations
(relu, abs, clamp, min, max) use the Clarke generalised derivative (``step`` is [0, 1] where the
kink may lie inside), which keeps mean-value forms sound for Lipschitz functions; the derivative
of ``step`` itself is unbounded where the kink may lie inside (a jump has no mean-value form).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lyapcert.bounds.interval import Interval, down, up


def _v(x):
    return x.value if isinstance(x, Dual) else x


def _t(x):
    return x.tangent if isinstance(x, Dual) else None


class Dual:
    """``value + eps * tangent`` with ``eps**2 = 0``; ``value`` and ``tangent`` share a type."""

    __slots__ = ("tangent", "value")
    is_dual = True

    def __init__(self, value, tangent):
        self.value = value
        self.tangent = tangent

    @property
    def shape(self):
        return self.value.shape

    def __repr__(self) -> str:
        return f"Dual(value={self.value!r}, tangent={self.tangent!r})"

    # ----------------------------------------------------------------- arithmetic

    def __neg__(self) -> Dual:
        return Dual(-self.value, -self.tangent)

    def __add__(self, other) -> Dual:
        if isinstance(other, Dual):
            return Dual(self.value + other.value, self.tangent + other.tangent)
        return Dual(self.value + other, self.tangent)

    __radd__ = __add__

    def __sub__(self, other) -> Dual:
        if isinstance(other, Dual):
            return Dual(self.value - other.value, self.tangent - other.tangent)
        return Dual(self.value - other, self.tangent)

    def __rsub__(self, other) -> Dual:
        return Dual(other - self.value, -self.tangent)

    def __mul__(self, other) -> Dual:
        if isinstance(other, Dual):
            return Dual(
                self.value * other.value, self.value * other.tangent + self.tangent * other.value
            )
        return Dual(self.value * other, self.tangent * other)

    __rmul__ = __mul__

    def reciprocal(self) -> Dual:
        r = self.value.reciprocal()
        return Dual(r, -(self.tangent * r.square()))

    def __truediv__(self, other) -> Dual:
        if isinstance(other, Dual):
            r = other.reciprocal()
            return self * r
        return Dual(self.value / other, self.tangent / other)

    def __rtruediv__(self, other) -> Dual:
        return self.reciprocal() * other

    def square(self) -> Dual:
        return Dual(self.value.square(), self.tangent * self.value * 2.0)

    def pow_int(self, n: int) -> Dual:
        if n == 0:
            return Dual(self.value.pow_int(0), self.tangent * 0.0)
        if n == 1:
            return self
        if n == 2:
            return self.square()
        return Dual(self.value.pow_int(n), self.tangent * self.value.pow_int(n - 1) * float(n))

    def __pow__(self, exponent) -> Dual:
        if isinstance(exponent, (int, float)) and float(exponent).is_integer():
            return self.pow_int(int(exponent))
        if isinstance(exponent, (int, float)):
            p = float(exponent)
            return Dual(self.value**p, self.tangent * (self.value ** (p - 1.0)) * p)
        raise TypeError("dual ** non-constant exponent is not supported")

    # ----------------------------------------------------------------- elementary functions

    def exp(self) -> Dual:
        e = self.value.exp()
        return Dual(e, self.tangent * e)

    def log(self) -> Dual:
        return Dual(self.value.log(), self.tangent * self.value.reciprocal())

    def sqrt(self) -> Dual:
        s = self.value.sqrt()
        return Dual(s, self.tangent * s.reciprocal() * 0.5)

    def sin(self) -> Dual:
        return Dual(self.value.sin(), self.tangent * self.value.cos())

    def cos(self) -> Dual:
        return Dual(self.value.cos(), -(self.tangent * self.value.sin()))

    def tanh(self) -> Dual:
        # the derivative 1 - tanh^2 by its own rule (a bell in the value), not through tanh
        y, d = self.value.tanh_with_derivative()
        return Dual(y, self.tangent * d)

    def sigmoid(self) -> Dual:
        s, d = self.value.sigmoid_with_derivative()
        return Dual(s, self.tangent * d)

    def tanh_with_derivative(self) -> tuple[Dual, Dual]:
        """``tanh`` and ``tanh'`` (``tanh'' = -2 tanh tanh'``) from one evaluation of both."""
        y, d = self.value.tanh_with_derivative()
        td = self.tangent * d
        return Dual(y, td), Dual(d, td * y * -2.0)

    def sigmoid_with_derivative(self) -> tuple[Dual, Dual]:
        """``sigmoid`` and ``sigmoid'`` (``sigmoid'' = sigmoid' (1 - 2 sigmoid)``)."""
        s, d = self.value.sigmoid_with_derivative()
        td = self.tangent * d
        return Dual(s, td), Dual(d, td * (1.0 - s * 2.0))

    def tanh_derivative(self) -> Dual:
        return self.tanh_with_derivative()[1]

    def sigmoid_derivative(self) -> Dual:
        return self.sigmoid_with_derivative()[1]

    def atan(self) -> Dual:
        return Dual(self.value.atan(), self.tangent * (self.value.square() + 1.0).reciprocal())

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Dual:
        # torch's softplus is x where beta x > threshold, the smooth branch elsewhere: it jumps at
        # the switch, so the derivative is unbounded where the switch may lie inside (no
        # mean-value form across a jump). Elsewhere the slope is the hull of the smooth branch's
        # sigmoid(beta x) and, where the identity branch may hold, of its slope 1 (higher
        # derivatives 0): the value rule encloses both branches, and so does this one.
        value = self.value.softplus(beta, threshold)
        base = _base_interval(self.value)
        z_lo, z_hi = down(base.lo * beta), up(base.hi * beta)
        reach = z_hi >= threshold  # the identity branch may hold somewhere
        crossing = reach & (z_lo <= threshold)  # ... and the switch may lie inside
        slope = _hull_const((self.value * beta).sigmoid(), reach, 1.0)
        tangent = self.tangent * slope
        return Dual(value, _unbounded_where(tangent, crossing))

    def step(self) -> Dual:
        return Dual(self.value.step(), self.tangent.masked_unbounded(self.value.contains_zero()))

    def relu(self) -> Dual:
        return Dual(self.value.relu(), self.tangent * self.value.step())

    def abs(self) -> Dual:
        return Dual(self.value.abs(), self.tangent * (self.value.step() * 2.0 - 1.0))

    def leaky_relu(self, slope: float) -> Dual:
        factor = self.value.step() * (1.0 - slope) + slope
        return Dual(self.value.leaky_relu(slope), self.tangent * factor)

    def clamp(self, min=None, max=None) -> Dual:
        factor = None
        if min is not None:
            factor = (self.value - min).step()
        if max is not None:
            upper = (max - self.value).step()
            factor = upper if factor is None else factor * upper
        tangent = self.tangent if factor is None else self.tangent * factor
        return Dual(self.value.clamp(min=min, max=max), tangent)

    @staticmethod
    def maximum(a, b):
        """``b + relu(a - b)``: where ``a = b`` may hold, the tangent ``b' + (a' - b') [0, 1]``
        contains the hull of ``a'`` and ``b'`` (the Clarke generalised gradient)."""
        return b + (a - b).relu()

    @staticmethod
    def minimum(a, b):
        return a - (a - b).relu()

    def contains_zero(self) -> torch.Tensor:
        return self.value.contains_zero()

    def masked_unbounded(self, mask: torch.Tensor) -> Dual:
        return Dual(self.value.masked_unbounded(mask), self.tangent.masked_unbounded(mask))

    # ----------------------------------------------------------------- linear and structure

    def sum(self, dim=None, keepdim: bool = False) -> Dual:
        return Dual(self.value.sum(dim, keepdim), self.tangent.sum(dim, keepdim))

    def linear(self, weight, bias=None) -> Dual:
        return Dual(self.value.linear(weight, bias), self.tangent.linear(weight, None))

    def __getitem__(self, index) -> Dual:
        return Dual(self.value[index], self.tangent[index])

    def apply(self, fn, *args, **kwargs) -> Dual:
        return Dual(self.value.apply(fn, *args, **kwargs), self.tangent.apply(fn, *args, **kwargs))

    @staticmethod
    def stack(items: Sequence[Dual], dim: int = 0) -> Dual:
        base = type(items[0].value)
        return Dual(
            base.stack([i.value for i in items], dim), base.stack([i.tangent for i in items], dim)
        )

    @staticmethod
    def cat(items: Sequence[Dual], dim: int = 0) -> Dual:
        base = type(items[0].value)
        return Dual(
            base.cat([i.value for i in items], dim), base.cat([i.tangent for i in items], dim)
        )


def _unbounded_where(x, mask: torch.Tensor):
    """``x`` with its entries replaced by "unbounded" where ``mask`` holds."""
    if getattr(x, "own_rules", False):
        return _affine_unbounded(x, mask)
    if isinstance(x, Interval):
        return Interval(
            torch.where(mask, torch.full_like(x.lo, -torch.inf), x.lo),
            torch.where(mask, torch.full_like(x.hi, torch.inf), x.hi),
        )
    return Dual(_unbounded_where(x.value, mask), _unbounded_where(x.tangent, mask))


def lift_like(value, like):
    """A constant as an exact bound value of the same structure as ``like`` (zero tangents)."""
    if getattr(like, "own_rules", False):
        return type(like).constant(value, like.space)
    if isinstance(like, Dual):
        inner = lift_like(value, like.value)
        return Dual(inner, lift_like(torch.zeros_like(_base_tensor(inner)), like.tangent))
    c = torch.as_tensor(value, dtype=_base_tensor(like).dtype, device=_base_tensor(like).device)
    return Interval(c, c)


def _base_tensor(x) -> torch.Tensor:
    while isinstance(x, Dual):
        x = x.value
    return x.lo


def _base_interval(x) -> Interval:
    while isinstance(x, Dual):
        x = x.value
    return x


def _hull_const(x, mask: torch.Tensor, c: float):
    """``x`` joined with the constant ``c`` where ``mask`` holds (a nested ``Dual``: its value with
    ``c``, its tangents with 0, the derivatives of a constant)."""
    if getattr(x, "own_rules", False):
        return x.hull_const(mask, c)
    if isinstance(x, Interval):
        return Interval(
            torch.where(mask, torch.clamp(x.lo, max=c), x.lo),
            torch.where(mask, torch.clamp(x.hi, min=c), x.hi),
        )
    return Dual(_hull_const(x.value, mask, c), _hull_const(x.tangent, mask, 0.0))


def _affine_unbounded(x, mask: torch.Tensor):
    """An ``Affine`` value made unbounded where ``mask`` holds (its lines kept elsewhere)."""
    return x.hull_const(mask, -torch.inf).hull_const(mask, torch.inf)
