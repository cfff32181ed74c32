"""Second-order forward mode over intervals: ``Jet2(value, grad, hess)``.

For a batch of boxes ``X`` (``[b, n]``) a ``Jet2`` of shape ``[b, ...]`` encloses, for every point
``x`` of its box, a function ``g(x)``, its gradient and its Hessian's upper triangle::

    value [b, ...]      g(x)
    grad  [n, b, ...]   dg/dx_j                      (the derivative axis first, as in ``Affine``)
    hess  [p, b, ...]   d2g/dx_j dx_k for the pairs (j, k) of the space, p = n (n + 1) / 2

all three ``Interval`` (``grad`` / ``hess`` may be ``None``: exactly zero, for constants and
affine functions of the input). One evaluation gives every second derivative at once, where
nested forward mode (``Dual(Dual(X, e_k), Dual(e_j, 0))``) evaluates the quantity once per pair
and recomputes the value and first derivatives each time.

Rules:

* sums and constant scalings: componentwise;
* a product ``x y``: value ``x y``, gradient ``x g_y + y g_x``, Hessian
  ``x h_y + y h_x + g_x[J] g_y[K] + g_x[K] g_y[J]`` (``J``, ``K`` the pairs' index lists);
* every unary ``f`` (the elementary functions, ``step``, ``relu``, ``clamp``, powers, the
  reciprocal, ``tanh'``, ...): ``f(X)``, ``f'(X)`` and ``f''(X)`` are enclosed by the *existing*
  rule of ``f`` on the nested dual ``Dual(Dual(X, 1), Dual(1, 0))`` of the value alone (one nested
  evaluation per element, not per pair; the same Clarke hulls and the same unbounded second
  derivative where a kink may lie inside), then ``grad = f' g`` and
  ``hess = f' h + f'' g[J] g[K]`` (the chain rule; ``g[j] g[j]`` as a square);
* division is multiplication by the reciprocal; ``maximum`` / ``minimum`` are
  ``b + relu(a - b)`` / ``a - relu(a - b)`` as for ``Dual``.

Every interval operation is the outward-rounded one of ``Interval``, so each component encloses
the exact real derivative over the box wherever the quantity is twice differentiable there (and is
unbounded where a kink may lie inside, as with nested duals).

``Jet2`` goes through captured graphs and ``Dual`` rules as a bound value of its own kind: it
sets the ``is_affine`` flag that ``graph.is_bound``, ``dual.lift_like`` / ``_hull_const`` /
``_unbounded_where`` and ``Interval``'s reflected operators use to recognise a bound value that is
neither ``Interval`` nor ``Dual`` (it has ``constant(value, space)``, ``hull_const``, ``.lo``,
``.hi``). Anything it does not support raises ``UnsupportedOperationError``;
``forms.hessian_enclosure`` then falls back to nested duals.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.interval import Interval
from lyapcert.errors import UnsupportedOperationError

_INF = float("inf")


class JetSpace:
    """The boxes' dimension ``n`` and the Hessian pairs ``(j, k)``, ``j <= k``, as index lists."""

    __slots__ = ("J", "K", "device", "diag_pos", "diag_var", "dtype", "n", "pairs")

    def __init__(self, n: int, pairs: Sequence[tuple[int, int]], dtype, device):
        self.n = n
        self.dtype, self.device = dtype, device
        self.pairs = list(pairs)
        self.J = torch.tensor([j for j, _ in self.pairs], dtype=torch.long, device=device)
        self.K = torch.tensor([k for _, k in self.pairs], dtype=torch.long, device=device)
        diag = [(i, j) for i, (j, k) in enumerate(self.pairs) if j == k]
        self.diag_pos = torch.tensor([i for i, _ in diag], dtype=torch.long, device=device)
        self.diag_var = torch.tensor([j for _, j in diag], dtype=torch.long, device=device)

    @property
    def p(self) -> int:
        return len(self.pairs)


# ------------------------------------------------------------------------------ helpers


def _iv(lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    return Interval._exact(lo, hi)


def _align(c: Interval | None, nd: int) -> Interval | None:
    """A derivative component ``[L, *s]`` viewed as ``[L, 1, ..., 1, *s]`` with ``nd`` value dims
    (so that it broadcasts right-aligned against values of ``nd`` dims)."""
    if c is None:
        return None
    have = c.lo.ndim - 1
    if have == nd:
        return c
    if have > nd:  # pragma: no cover - a value never loses dims in a broadcast
        raise UnsupportedOperationError(["jet: a derivative with more dims than its value"])
    shape = (c.lo.shape[0],) + (1,) * (nd - have) + tuple(c.lo.shape[1:])
    return _iv(c.lo.reshape(shape), c.hi.reshape(shape))


def _fit(c: Interval | None, shape) -> Interval | None:
    """``c`` expanded to ``[L, *shape]`` (after a broadcast the value may be larger)."""
    if c is None:
        return None
    c = _align(c, len(shape))
    full = (c.lo.shape[0], *tuple(shape))
    if tuple(c.lo.shape) == full:
        return c
    return _iv(c.lo.expand(full), c.hi.expand(full))


def _plus(a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _neg(a: Interval | None) -> Interval | None:
    return None if a is None else -a


def _times(a: Interval | None, k) -> Interval | None:
    """A derivative component times a value (``Interval``, tensor or number)."""
    return None if a is None else a * k


def _constant_interval(other, like: torch.Tensor) -> Interval:
    if isinstance(other, Interval):
        return other
    if isinstance(other, (bool,)) or not isinstance(other, (int, float, torch.Tensor)):
        raise UnsupportedOperationError([f"jet with an operand of type {type(other).__name__}"])
    c = torch.as_tensor(other, dtype=like.dtype, device=like.device)
    return _iv(c, c)


def _index_lead(c: Interval, idx: torch.Tensor) -> Interval:
    return _iv(c.lo.index_select(0, idx), c.hi.index_select(0, idx))


def _shift_dim(d: int) -> int:
    """A value dimension as a dimension of a derivative component (non-negative ones move by 1)."""
    return d + 1 if d >= 0 else d


# ------------------------------------------------------------------------------ the value type


class Jet2:
    """Value, gradient and Hessian (upper triangle) enclosures over each box, elementwise."""

    __slots__ = ("grad", "hess", "space", "value")
    is_affine = True  # a bound value of its own kind (see the module text), not an ``Affine``
    is_jet = True

    def __init__(self, value: Interval, grad, hess, space: JetSpace):
        self.value = value
        self.grad = grad
        self.hess = hess
        self.space = space

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_boxes(cls, boxes: Interval, pairs=None) -> Jet2:
        """The identity ``x`` on each box: gradient ``e_j``, Hessian 0."""
        b, n = boxes.shape
        pairs = pairs or [(j, k) for j in range(n) for k in range(j, n)]
        space = JetSpace(n, pairs, boxes.lo.dtype, boxes.lo.device)
        eye = torch.eye(n, dtype=boxes.lo.dtype, device=boxes.lo.device)
        g = eye[:, None, :].expand(n, b, n)
        return cls(boxes, _iv(g, g), None, space)

    @classmethod
    def constant(cls, value, space: JetSpace, like: torch.Tensor | None = None) -> Jet2:
        """An exact constant (tensor, number or ``Interval``): zero derivatives."""
        if isinstance(value, Interval):
            iv = value
        else:
            t = torch.as_tensor(value, dtype=space.dtype, device=space.device)
            if like is not None:
                t = t.expand(like.shape)
            iv = _iv(t, t)
        return cls(iv, None, None, space)

    def _new(self, value: Interval, grad, hess) -> Jet2:
        shape = value.shape
        return Jet2(value, _fit(grad, shape), _fit(hess, shape), self.space)

    # ----------------------------------------------------------------- views

    @property
    def shape(self) -> torch.Size:
        return self.value.shape

    @property
    def lo(self) -> torch.Tensor:
        return self.value.lo

    @property
    def hi(self) -> torch.Tensor:
        return self.value.hi

    @property
    def mid(self) -> torch.Tensor:
        return self.value.mid

    def grad_interval(self) -> Interval:
        """``grad`` as an ``Interval`` (zeros where it is exactly zero)."""
        if self.grad is not None:
            return self.grad
        z = torch.zeros((self.space.n, *self.shape), dtype=self.lo.dtype, device=self.lo.device)
        return _iv(z, z)

    def hess_interval(self) -> Interval:
        if self.hess is not None:
            return self.hess
        z = torch.zeros((self.space.p, *self.shape), dtype=self.lo.dtype, device=self.lo.device)
        return _iv(z, z)

    def __repr__(self) -> str:
        return f"Jet2(shape={tuple(self.shape)}, value={self.value!r})"

    # ----------------------------------------------------------------- arithmetic

    def _coerce(self, other):
        if isinstance(other, Jet2):
            return other
        if getattr(other, "is_dual", False) or getattr(other, "is_affine", False):
            return None
        return _constant_interval(other, self.lo)

    def __neg__(self) -> Jet2:
        return Jet2(-self.value, _neg(self.grad), _neg(self.hess), self.space)

    def __add__(self, other) -> Jet2:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        if isinstance(o, Jet2):
            value = self.value + o.value
            nd = value.lo.ndim
            g = _plus(_align(self.grad, nd), _align(o.grad, nd))
            h = _plus(_align(self.hess, nd), _align(o.hess, nd))
            return self._new(value, g, h)
        return self._new(self.value + o, self.grad, self.hess)

    __radd__ = __add__

    def __sub__(self, other) -> Jet2:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        if isinstance(o, Jet2):
            return self + (-o)
        return self._new(self.value - o, self.grad, self.hess)

    def __rsub__(self, other) -> Jet2:
        return (-self) + other

    def __mul__(self, other) -> Jet2:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        if not isinstance(o, Jet2):
            value = self.value * o
            nd = value.lo.ndim
            return self._new(
                value, _times(_align(self.grad, nd), o), _times(_align(self.hess, nd), o)
            )
        if o is self:
            return self.square()
        return _product(self, o)

    __rmul__ = __mul__

    def __truediv__(self, other) -> Jet2:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        if isinstance(o, Jet2):
            return self * o.reciprocal()
        value = self.value / o
        nd = value.lo.ndim
        g = _align(self.grad, nd)
        h = _align(self.hess, nd)
        return self._new(value, None if g is None else g / o, None if h is None else h / o)

    def __rtruediv__(self, other) -> Jet2:
        return self.reciprocal() * other

    def __pow__(self, exponent) -> Jet2:
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return self._chain("__pow__", exponent)
        raise UnsupportedOperationError(["jet ** a non-constant exponent"])

    def reciprocal(self) -> Jet2:
        return self._chain("reciprocal")

    def square(self) -> Jet2:
        return self._chain("square")

    def pow_int(self, n: int) -> Jet2:
        return self._chain("pow_int", n)

    # ----------------------------------------------------------------- unary functions

    def _nested(self, name: str, *args):
        """``name`` on ``Dual(Dual(X, 1), Dual(1, 0))`` for the value ``X``: the rule's enclosures
        of ``f(X)``, ``f'(X)``, ``f''(X)``."""
        one = torch.ones_like(self.lo)
        zero = torch.zeros_like(self.lo)
        ione, izero = _iv(one, one), _iv(zero, zero)
        d = Dual(Dual(self.value, ione), Dual(ione, izero))
        return getattr(d, name)(*args)

    def _compose(self, r) -> Jet2:
        """The chain rule with ``r`` a nested ``Dual`` of ``f`` at the value."""
        if not (isinstance(r, Dual) and isinstance(r.value, Dual) and isinstance(r.tangent, Dual)):
            raise UnsupportedOperationError(["jet: a rule that does not give a nested dual"])
        f0, f1, f2 = r.value.value, r.value.tangent, r.tangent.tangent
        if not all(type(c) is Interval for c in (f0, f1, f2)):
            raise UnsupportedOperationError(["jet: a rule that does not give intervals"])
        g = self.grad
        grad = None if g is None else g * f1
        hess = None if self.hess is None else self.hess * f1
        if g is not None:
            hess = _plus(hess, _pair_products(g, g, self.space, symmetric=True) * f2)
        return self._new(f0, grad, hess)

    def _chain(self, name: str, *args) -> Jet2:
        return self._compose(self._nested(name, *args))

    def exp(self) -> Jet2:
        return self._chain("exp")

    def log(self) -> Jet2:
        return self._chain("log")

    def sqrt(self) -> Jet2:
        return self._chain("sqrt")

    def sin(self) -> Jet2:
        return self._chain("sin")

    def cos(self) -> Jet2:
        return self._chain("cos")

    def tanh(self) -> Jet2:
        return self._chain("tanh")

    def sigmoid(self) -> Jet2:
        return self._chain("sigmoid")

    def atan(self) -> Jet2:
        return self._chain("atan")

    def tanh_with_derivative(self) -> tuple[Jet2, Jet2]:
        y, d = self._nested("tanh_with_derivative")
        return self._compose(y), self._compose(d)

    def sigmoid_with_derivative(self) -> tuple[Jet2, Jet2]:
        s, d = self._nested("sigmoid_with_derivative")
        return self._compose(s), self._compose(d)

    def tanh_derivative(self) -> Jet2:
        return self._chain("tanh_derivative")

    def sigmoid_derivative(self) -> Jet2:
        return self._chain("sigmoid_derivative")

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Jet2:
        return self._chain("softplus", beta, threshold)

    def step(self) -> Jet2:
        return self._chain("step")

    def relu(self) -> Jet2:
        return self._chain("relu")

    def abs(self) -> Jet2:
        return self._chain("abs")

    def leaky_relu(self, slope: float) -> Jet2:
        return self._chain("leaky_relu", slope)

    def clamp(self, min=None, max=None) -> Jet2:
        for limit in (min, max):
            if limit is not None and not isinstance(limit, (int, float)):
                raise UnsupportedOperationError(["jet: clamp with non-number limits"])
        one = torch.ones_like(self.lo)
        zero = torch.zeros_like(self.lo)
        ione, izero = _iv(one, one), _iv(zero, zero)
        d = Dual(Dual(self.value, ione), Dual(ione, izero))
        return self._compose(d.clamp(min=min, max=max))

    @staticmethod
    def maximum(a, b) -> Jet2:
        return b + (a - b).relu()

    @staticmethod
    def minimum(a, b) -> Jet2:
        return a - (a - b).relu()

    def contains_zero(self) -> torch.Tensor:
        return self.value.contains_zero()

    def masked_unbounded(self, mask: torch.Tensor) -> Jet2:
        """Zero where ``mask`` is false, unbounded where it is true (the derivative of a step, as
        a function of ``x``: constant 0 on a box without the jump, so its derivatives too)."""
        sp = self.space
        like = self.lo
        mask = mask.expand(self.shape) if tuple(mask.shape) != tuple(self.shape) else mask

        def filled(lead):
            shape = (*lead, *self.shape)
            zero = torch.zeros(shape, dtype=like.dtype, device=like.device)
            return Interval(zero, zero).masked_unbounded(mask.expand(shape))

        return Jet2(filled(()), filled((sp.n,)), filled((sp.p,)), sp)

    def hull_const(self, mask: torch.Tensor, c: float) -> Jet2:
        """The value joined with the constant ``c`` where ``mask`` holds (the derivatives with 0,
        those of a constant); an infinite ``c`` makes every component unbounded there."""
        v = self.value
        value = _iv(
            torch.where(mask, torch.clamp(v.lo, max=c), v.lo),
            torch.where(mask, torch.clamp(v.hi, min=c), v.hi),
        )
        c_der = c if c in (_INF, -_INF) else 0.0
        grad = _join_const(self.grad_interval(), mask, c_der)
        hess = _join_const(self.hess_interval(), mask, c_der)
        return Jet2(value, grad, hess, self.space)

    # ----------------------------------------------------------------- linear maps, structure

    def sum(self, dim=None, keepdim: bool = False) -> Jet2:
        value = self.value.sum(dim, keepdim)
        if dim is None:
            dims = tuple(range(1, self.lo.ndim + 1))
            if keepdim:
                raise UnsupportedOperationError(["jet: sum over every dimension with keepdim"])
        else:
            dims = tuple(_shift_dim(d) for d in ((dim,) if isinstance(dim, int) else tuple(dim)))
        g = None if self.grad is None else self.grad.sum(dims, keepdim)
        h = None if self.hess is None else self.hess.sum(dims, keepdim)
        return self._new(value, g, h)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Jet2:
        value = self.value.linear(weight, bias)
        g = None if self.grad is None else self.grad.linear(weight, None)
        h = None if self.hess is None else self.hess.linear(weight, None)
        return self._new(value, g, h)

    def __getitem__(self, index) -> Jet2:
        value = self.value[index]
        lead = (slice(None),) + (index if isinstance(index, tuple) else (index,))
        g = None if self.grad is None else self.grad[lead]
        h = None if self.hess is None else self.hess[lead]
        return self._new(value, g, h)

    def apply(self, fn, *args, **kwargs) -> Jet2:
        """A shape operation applied to the value and to each derivative slice."""
        value = self.value.apply(fn, *args, **kwargs)
        shape = value.shape

        def each(c):
            if c is None:
                return None
            if fn is torch.reshape and not kwargs and len(args) == 1:
                full = (c.lo.shape[0], *tuple(shape))
                return _iv(c.lo.reshape(full), c.hi.reshape(full))
            return _iv(
                torch.stack([fn(t, *args, **kwargs) for t in c.lo.unbind(0)]),
                torch.stack([fn(t, *args, **kwargs) for t in c.hi.unbind(0)]),
            )

        return self._new(value, each(self.grad), each(self.hess))

    @staticmethod
    def stack(items: Sequence[Jet2], dim: int = 0) -> Jet2:
        return Jet2._join(torch.stack, items, dim)

    @staticmethod
    def cat(items: Sequence[Jet2], dim: int = 0) -> Jet2:
        return Jet2._join(torch.cat, items, dim)

    @staticmethod
    def _join(op, items: Sequence[Jet2], dim: int) -> Jet2:
        items = list(items)
        if not all(isinstance(i, Jet2) for i in items):
            raise UnsupportedOperationError(["jet: stack / cat of mixed bound values"])
        ivs = [i.value for i in items]
        value = Interval.stack(ivs, dim) if op is torch.stack else Interval.cat(ivs, dim)
        ld = _shift_dim(dim)

        def comp(getter):
            cs = [getter(i) for i in items]
            if all(c is None for c in cs):
                return None
            full = [getter(i, True) for i in items]
            return _iv(op([c.lo for c in full], ld), op([c.hi for c in full], ld))

        def g(i, force=False):
            return i.grad_interval() if force else i.grad

        def h(i, force=False):
            return i.hess_interval() if force else i.hess

        return items[0]._new(value, comp(g), comp(h))


# ------------------------------------------------------------------------------ rules


def _pair_products(a: Interval, b: Interval, space: JetSpace, symmetric: bool) -> Interval:
    """``a[J] b[K] + a[K] b[J]`` over the pairs (``symmetric``: ``a = b``, the sum is
    ``a[J] a[K]`` once, with the diagonal pairs as squares, never negative)."""
    aJ, bK = _index_lead(a, space.J), _index_lead(b, space.K)
    if symmetric:
        out = aJ * bK
        if space.diag_pos.numel():
            sq = _index_lead(a, space.diag_var).square()
            lo, hi = out.lo.clone(), out.hi.clone()
            lo[space.diag_pos] = sq.lo
            hi[space.diag_pos] = sq.hi
            out = _iv(lo, hi)
        return out
    aK, bJ = _index_lead(a, space.K), _index_lead(b, space.J)
    return aJ * bK + aK * bJ


def _product(x: Jet2, y: Jet2) -> Jet2:
    """``x y``: value, ``x g_y + y g_x``, ``x h_y + y h_x + g_x[J] g_y[K] + g_x[K] g_y[J]``."""
    value = x.value * y.value
    nd = value.lo.ndim
    xg, yg = _align(x.grad, nd), _align(y.grad, nd)
    xh, yh = _align(x.hess, nd), _align(y.hess, nd)
    grad = _plus(_times(yg, x.value), _times(xg, y.value))
    hess = _plus(_times(yh, x.value), _times(xh, y.value))
    if xg is not None and yg is not None:
        xg_f, yg_f = _fit(xg, value.shape), _fit(yg, value.shape)
        hess = _plus(hess, _pair_products(xg_f, yg_f, x.space, symmetric=False))
    return x._new(value, grad, hess)


def _join_const(c: Interval, mask: torch.Tensor, k: float) -> Interval:
    return _iv(
        torch.where(mask, torch.clamp(c.lo, max=k), c.lo),
        torch.where(mask, torch.clamp(c.hi, min=k), c.hi),
    )


__all__ = ["Jet2", "JetSpace"]
