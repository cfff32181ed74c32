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
sets the ``own_rules`` flag that ``graph.is_bound``, ``dual.lift_like`` / ``_hull_const`` /
``_unbounded_where`` and ``Interval``'s reflected operators use to recognise a bound value that is
neither ``Interval`` nor ``Dual`` (it has ``constant(value, space)``, ``hull_const``, ``.lo``,
``.hi``). Anything it does not support raises ``UnsupportedOperationError``;
``forms.hessian_enclosure`` then falls back to nested duals.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lyapcert.bounds.dual import Dual, _hull_const
from lyapcert.bounds.interval import Interval
from lyapcert.errors import UnsupportedOperationError

_INF = float("inf")


class JetSpace:
    """The boxes' dimension ``n`` and the Hessian pairs ``(j, k)``, ``j <= k``; caches the index
    plans of sparse sums and pair products."""

    __slots__ = ("device", "dtype", "n", "pair_index", "pairs", "plans")

    def __init__(self, n: int, pairs: Sequence[tuple[int, int]], dtype, device):
        self.n = n
        self.dtype, self.device = dtype, device
        self.pairs = [(int(j), int(k)) for j, k in pairs]
        self.pair_index = {pair: i for i, pair in enumerate(self.pairs)}
        self.plans: dict = {}

    @property
    def p(self) -> int:
        return len(self.pairs)

    def index(self, items) -> torch.Tensor:
        return torch.tensor(list(items), dtype=torch.long, device=self.device)


class Der:
    """A derivative component with structural zeros: the rows ``rows`` (of ``n`` gradient rows or
    ``p`` Hessian pairs, increasing) as ``iv [len(rows), b, ...]``; every other row is exactly 0.
    ``None`` stands for a component that is 0 everywhere."""

    __slots__ = ("iv", "rows")

    def __init__(self, rows: tuple, iv: Interval):
        self.rows = rows
        self.iv = iv

    def map(self, fn) -> Der:
        return Der(self.rows, fn(self.iv))

    def dense(self, total: int) -> Interval:
        if len(self.rows) == total:
            return self.iv
        shape = (total, *tuple(self.iv.lo.shape[1:]))
        lo = torch.zeros(shape, dtype=self.iv.lo.dtype, device=self.iv.lo.device)
        hi = torch.zeros_like(lo)
        idx = torch.tensor(self.rows, dtype=torch.long, device=lo.device)
        lo[idx] = self.iv.lo
        hi[idx] = self.iv.hi
        return _iv(lo, hi)


# ------------------------------------------------------------------------------ helpers


def _iv(lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    return Interval._exact(lo, hi)


def _align_iv(c: Interval, nd: int) -> Interval:
    have = c.lo.ndim - 1
    if have == nd:
        return c
    if have > nd:  # pragma: no cover - a value never loses dims in a broadcast
        raise UnsupportedOperationError(["jet: a derivative with more dims than its value"])
    shape = (c.lo.shape[0],) + (1,) * (nd - have) + tuple(c.lo.shape[1:])
    return _iv(c.lo.reshape(shape), c.hi.reshape(shape))


def _align(d: Der | None, nd: int) -> Der | None:
    """A derivative ``[L, *s]`` viewed as ``[L, 1, ..., 1, *s]`` with ``nd`` value dims (so that
    it broadcasts right-aligned against values of ``nd`` dims)."""
    return None if d is None else d.map(lambda c: _align_iv(c, nd))


def _fit_iv(c: Interval, shape) -> Interval:
    c = _align_iv(c, len(shape))
    full = (c.lo.shape[0], *tuple(shape))
    if tuple(c.lo.shape) == full:
        return c
    return _iv(c.lo.expand(full), c.hi.expand(full))


def _fit(d: Der | None, shape) -> Der | None:
    """``d`` expanded to ``[L, *shape]`` (after a broadcast the value may be larger)."""
    return None if d is None else d.map(lambda c: _fit_iv(c, shape))


def _take(c: Interval, idx: torch.Tensor) -> Interval:
    return _iv(c.lo.index_select(0, idx), c.hi.index_select(0, idx))


def _merge_plan(space: JetSpace, ra: tuple, rb: tuple):
    key = ("merge", ra, rb)
    plan = space.plans.get(key)
    if plan is None:
        pa = {r: i for i, r in enumerate(ra)}
        pb = {r: i for i, r in enumerate(rb)}
        rows = tuple(sorted(set(ra) | set(rb)))
        both = [r for r in rows if r in pa and r in pb]
        only_a = [r for r in rows if r not in pb]
        only_b = [r for r in rows if r not in pa]
        pos = {r: i for i, r in enumerate(rows)}
        ix = space.index
        plan = (
            rows,
            (ix(pos[r] for r in both), ix(pa[r] for r in both), ix(pb[r] for r in both)),
            (ix(pos[r] for r in only_a), ix(pa[r] for r in only_a)),
            (ix(pos[r] for r in only_b), ix(pb[r] for r in only_b)),
        )
        space.plans[key] = plan
    return plan


def _plus(a: Der | None, b: Der | None, space: JetSpace, shape) -> Der | None:
    """``a + b`` (both fitted to ``[L, *shape]``); rows in one only are copied exactly."""
    if a is None:
        return _fit(b, shape)
    if b is None:
        return _fit(a, shape)
    a, b = _fit(a, shape), _fit(b, shape)
    if a.rows == b.rows:
        return Der(a.rows, a.iv + b.iv)
    rows, (p_both, a_both, b_both), (p_a, a_only), (p_b, b_only) = _merge_plan(
        space, a.rows, b.rows
    )
    full = (len(rows), *tuple(shape))
    lo = torch.empty(full, dtype=a.iv.lo.dtype, device=a.iv.lo.device)
    hi = torch.empty_like(lo)
    if p_both.numel():
        s = _take(a.iv, a_both) + _take(b.iv, b_both)
        lo[p_both], hi[p_both] = s.lo, s.hi
    if p_a.numel():
        lo[p_a], hi[p_a] = a.iv.lo[a_only], a.iv.hi[a_only]
    if p_b.numel():
        lo[p_b], hi[p_b] = b.iv.lo[b_only], b.iv.hi[b_only]
    return Der(rows, _iv(lo, hi))


def _neg(a: Der | None) -> Der | None:
    return None if a is None else a.map(lambda c: -c)


def _times(a: Der | None, k) -> Der | None:
    """A derivative component times a value (``Interval``, tensor or number)."""
    return None if a is None else a.map(lambda c: c * k)


def _constant_interval(other, like: torch.Tensor) -> Interval:
    if isinstance(other, Interval):
        return other
    if isinstance(other, (bool,)) or not isinstance(other, (int, float, torch.Tensor)):
        raise UnsupportedOperationError([f"jet with an operand of type {type(other).__name__}"])
    c = torch.as_tensor(other, dtype=like.dtype, device=like.device)
    return _iv(c, c)


def _shift_dim(d: int) -> int:
    """A value dimension as a dimension of a derivative component (non-negative ones move by 1)."""
    return d + 1 if d >= 0 else d


def _prune(d: Der | None) -> Der | None:
    """``d`` without the rows that are exactly 0 (after indexing, most rows of ``x[:, i]``)."""
    if d is None:
        return d
    flat_lo = d.iv.lo.reshape(d.iv.lo.shape[0], -1)
    flat_hi = d.iv.hi.reshape(d.iv.hi.shape[0], -1)
    if flat_lo.shape[1] == 0:
        return d
    keep = ((flat_lo != 0) | (flat_hi != 0)).any(dim=1).tolist()
    if all(keep):
        return d
    if not any(keep):
        return None
    sel = [i for i, k in enumerate(keep) if k]
    idx = torch.tensor(sel, dtype=torch.long, device=d.iv.lo.device)
    return Der(tuple(d.rows[i] for i in sel), _take(d.iv, idx))


# ------------------------------------------------------------------------------ the value type


class Jet2:
    """Value, gradient and Hessian (upper triangle) enclosures over each box, elementwise."""

    __slots__ = ("grad", "hess", "space", "value")
    own_rules = True  # a bound value of its own kind (see the module text), not an ``Affine``
    is_jet = True

    def __init__(self, value: Interval, grad: Der | None, hess: Der | None, space: JetSpace):
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
        return cls(boxes, Der(tuple(range(n)), _iv(g, g)), None, space)

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

    def _zeros(self, lead: int) -> Interval:
        z = torch.zeros((lead, *self.shape), dtype=self.lo.dtype, device=self.lo.device)
        return _iv(z, z)

    def grad_interval(self) -> Interval:
        """The gradient ``[n, ...]`` as an ``Interval`` (its structural zeros filled in)."""
        return self._zeros(self.space.n) if self.grad is None else self.grad.dense(self.space.n)

    def hess_interval(self) -> Interval:
        """The Hessian pairs ``[p, ...]`` as an ``Interval``."""
        return self._zeros(self.space.p) if self.hess is None else self.hess.dense(self.space.p)

    def __repr__(self) -> str:
        return f"Jet2(shape={tuple(self.shape)}, value={self.value!r})"

    # ----------------------------------------------------------------- arithmetic

    def _coerce(self, other):
        if isinstance(other, Jet2):
            return other
        if getattr(other, "is_dual", False) or getattr(other, "own_rules", False):
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
            sp, shape = self.space, value.shape
            g = _plus(self.grad, o.grad, sp, shape)
            h = _plus(self.hess, o.hess, sp, shape)
            return Jet2(value, g, h, sp)
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
        return self._new(
            value,
            None if g is None else g.map(lambda c: c / o),
            None if h is None else h.map(lambda c: c / o),
        )

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

    def _seed(self) -> Dual:
        """``Dual(Dual(X, 1), Dual(1, 0))`` for the value ``X``."""
        one = torch.ones_like(self.lo)
        zero = torch.zeros_like(self.lo)
        ione, izero = _iv(one, one), _iv(zero, zero)
        return Dual(Dual(self.value, ione), Dual(ione, izero))

    def _nested(self, name: str, *args):
        """``name`` on the nested dual of the value: the rule's enclosures of ``f(X)``,
        ``f'(X)``, ``f''(X)``."""
        return getattr(self._seed(), name)(*args)

    def _compose(self, r) -> Jet2:
        """The chain rule with ``r`` a nested ``Dual`` of ``f`` at the value."""
        if not (isinstance(r, Dual) and isinstance(r.value, Dual) and isinstance(r.tangent, Dual)):
            raise UnsupportedOperationError(["jet: a rule that does not give a nested dual"])
        f0, f1, f2 = r.value.value, r.value.tangent, r.tangent.tangent
        if not all(type(c) is Interval for c in (f0, f1, f2)):
            raise UnsupportedOperationError(["jet: a rule that does not give intervals"])
        sp, shape = self.space, f0.shape
        g = _fit(self.grad, shape)
        grad = _times(g, f1)
        hess = _times(_fit(self.hess, shape), f1)
        if g is not None:
            hess = _plus(hess, _times(_pair_products(g, g, sp, symmetric=True), f2), sp, shape)
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
        return self._compose(self._seed().clamp(min=min, max=max))

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

        def filled(lead):
            z = self._zeros(lead)
            return z.masked_unbounded(mask.expand(z.shape))

        value = self.value.masked_unbounded(mask.expand(self.shape))
        return Jet2(
            value, Der(tuple(range(sp.n)), filled(sp.n)), Der(tuple(range(sp.p)), filled(sp.p)), sp
        )

    def hull_const(self, mask: torch.Tensor, c: float) -> Jet2:
        """The value joined with the constant ``c`` where ``mask`` holds (the derivatives with 0,
        those of a constant); an infinite ``c`` makes every component unbounded there."""
        value = _hull_const(self.value, mask, c)
        sp = self.space
        if c in (_INF, -_INF):
            grad = Der(tuple(range(sp.n)), _hull_const(self.grad_interval(), mask, c))
            hess = Der(tuple(range(sp.p)), _hull_const(self.hess_interval(), mask, c))
        else:  # rows that are 0 stay 0
            grad = None if self.grad is None else self.grad.map(lambda t: _hull_const(t, mask, 0.0))
            hess = None if self.hess is None else self.hess.map(lambda t: _hull_const(t, mask, 0.0))
        return Jet2(value, grad, hess, sp)

    # ----------------------------------------------------------------- linear maps, structure

    def sum(self, dim=None, keepdim: bool = False) -> Jet2:
        value = self.value.sum(dim, keepdim)
        if dim is None:
            dims = tuple(range(1, self.lo.ndim + 1))
            if keepdim:
                raise UnsupportedOperationError(["jet: sum over every dimension with keepdim"])
        else:
            dims = tuple(_shift_dim(d) for d in ((dim,) if isinstance(dim, int) else tuple(dim)))

        def f(c):
            return c.sum(dims, keepdim)

        return self._new(value, _map(self.grad, f), _map(self.hess, f))

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Jet2:
        value = self.value.linear(weight, bias)

        def f(c):
            return c.linear(weight, None)

        return self._new(value, _map(self.grad, f), _map(self.hess, f))

    def __getitem__(self, index) -> Jet2:
        value = self.value[index]
        lead = (slice(None),) + (index if isinstance(index, tuple) else (index,))

        def f(c):
            return c[lead]

        return self._new(value, _prune(_map(self.grad, f)), _prune(_map(self.hess, f)))

    def apply(self, fn, *args, **kwargs) -> Jet2:
        """A shape operation applied to the value and to each derivative slice."""
        value = self.value.apply(fn, *args, **kwargs)
        shape = value.shape

        def each(c):
            if fn is torch.reshape and not kwargs and len(args) == 1:
                full = (c.lo.shape[0], *tuple(shape))
                return _iv(c.lo.reshape(full), c.hi.reshape(full))
            return _iv(
                torch.stack([fn(t, *args, **kwargs) for t in c.lo.unbind(0)]),
                torch.stack([fn(t, *args, **kwargs) for t in c.hi.unbind(0)]),
            )

        return self._new(value, _map(self.grad, each), _map(self.hess, each))

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
        sp = items[0].space

        def comp(ders, total):
            if all(d is None for d in ders):
                return None
            full = [
                i._zeros(total) if d is None else d.dense(total)
                for i, d in zip(items, ders, strict=True)
            ]
            return Der(
                tuple(range(total)), _iv(op([c.lo for c in full], ld), op([c.hi for c in full], ld))
            )

        grad = comp([i.grad for i in items], sp.n)
        hess = comp([i.hess for i in items], sp.p)
        return items[0]._new(value, grad, hess)


# ------------------------------------------------------------------------------ rules


def _map(d: Der | None, fn) -> Der | None:
    return None if d is None else d.map(fn)


def _pair_plan(space: JetSpace, ra: tuple, rb: tuple, symmetric: bool):
    """Index lists for ``a[J] b[K] + a[K] b[J]`` over the pairs whose terms are not 0: the pair
    rows, and for each term (the first; the second unless ``symmetric``) the positions in the
    output and the rows of ``a`` and ``b``; the diagonal pairs (squares) when ``symmetric``."""
    key = ("pairs", ra, rb, symmetric)
    plan = space.plans.get(key)
    if plan is not None:
        return plan
    pa = {r: i for i, r in enumerate(ra)}
    pb = {r: i for i, r in enumerate(rb)}
    rows = []
    t1, t2 = [], []  # (pair, a row, b row)
    sq = []  # (pair, a row)
    for idx, (j, k) in enumerate(space.pairs):
        if symmetric:
            if j in pa and k in pa:
                rows.append(idx)
                (sq if j == k else t1).append((idx, pa[j], pa[k]))
            continue
        one = j in pa and k in pb
        two = k in pa and j in pb
        if one or two:
            rows.append(idx)
        if one:
            t1.append((idx, pa[j], pb[k]))
        if two:
            t2.append((idx, pa[k], pb[j]))
    pos = {r: i for i, r in enumerate(rows)}
    ix = space.index

    def term(lst):
        return (ix(pos[t[0]] for t in lst), ix(t[1] for t in lst), ix(t[2] for t in lst), len(lst))

    plan = (tuple(rows), term(t1), term(t2), term(sq))
    space.plans[key] = plan
    return plan


def _pair_products(a: Der, b: Der, space: JetSpace, symmetric: bool) -> Der | None:
    """``a[J] b[K] + a[K] b[J]`` over the pairs (``symmetric``: ``a = b``, the sum is
    ``a[J] a[K]`` once, the diagonal pairs as squares, never negative); ``a``, ``b`` fitted to one
    shape."""
    rows, (p1, a1, b1, n1), (p2, a2, b2, n2), (ps, as_, _, ns) = _pair_plan(
        space, a.rows, b.rows, symmetric
    )
    if not rows:
        return None
    full = (len(rows), *tuple(a.iv.lo.shape[1:]))
    lo = torch.zeros(full, dtype=a.iv.lo.dtype, device=a.iv.lo.device)
    hi = torch.zeros_like(lo)
    if ns:
        s = _take(a.iv, as_).square()
        lo[ps], hi[ps] = s.lo, s.hi
    if symmetric:
        if n1:
            t = _take(a.iv, a1) * _take(a.iv, b1)
            lo[p1], hi[p1] = t.lo, t.hi
        return Der(rows, _iv(lo, hi))
    # pairs with both terms are summed (an outward-rounded sum), the others take their one term
    t1 = _take(a.iv, a1) * _take(b.iv, b1) if n1 else None
    t2 = _take(a.iv, a2) * _take(b.iv, b2) if n2 else None
    if t1 is not None and t2 is not None and n1 == n2 and torch.equal(p1, p2):
        t = t1 + t2
        return Der(rows, t)
    if t1 is not None:
        lo[p1], hi[p1] = t1.lo, t1.hi
    if t2 is not None:
        if t1 is None:
            lo[p2], hi[p2] = t2.lo, t2.hi
        else:
            out = _iv(lo, hi)
            z = torch.zeros_like(lo)
            zl, zh = z.clone(), z
            zl[p2], zh[p2] = t2.lo, t2.hi
            return Der(rows, out + _iv(zl, zh))
    return Der(rows, _iv(lo, hi))


def _product(x: Jet2, y: Jet2) -> Jet2:
    """``x y``: value, ``x g_y + y g_x``, ``x h_y + y h_x + g_x[J] g_y[K] + g_x[K] g_y[J]``."""
    value = x.value * y.value
    sp, shape = x.space, value.shape
    nd = value.lo.ndim
    xg, yg = _align(x.grad, nd), _align(y.grad, nd)
    xh, yh = _align(x.hess, nd), _align(y.hess, nd)
    grad = _plus(_times(yg, x.value), _times(xg, y.value), sp, shape)
    hess = _plus(_times(yh, x.value), _times(xh, y.value), sp, shape)
    if xg is not None and yg is not None:
        pp = _pair_products(_fit(xg, shape), _fit(yg, shape), sp, symmetric=False)
        hess = _plus(hess, pp, sp, shape)
    return Jet2(value, grad, hess, sp)


__all__ = ["Der", "Jet2", "JetSpace"]
