"""Linear bounds by backward propagation (CROWN) over the tape of a forward ``Affine`` evaluation.

The forward pass (``bounds.affine`` with ``tape=True``) evaluates a quantity ``q(x)`` on boxes
and records, for every intermediate value, its relation to its operands (an affine map, the
relaxation lines of a unary function, the planes of a product) and its enclosure. The backward
pass substitutes these relations from the output to the input, keeping for each box the
statement::

    sign * q(x)  >=  sum over values v of  <lam_v, v>  +  c        (every real x in the box)

starting from ``lam_q = sign`` (``+1``: a lower bound, ``-1``: an upper bound). A relation
``v >= a z + b`` (lower line where ``lam_v >= 0``, upper line where ``< 0``) moves ``lam_v a``
onto ``z`` and ``lam_v b`` into ``c``; an affine map moves its adjoint (``lam W``, or the
vector-Jacobian product of a shape operation); a value with no recorded relation (a constant, the
constant lines of an operation with no rule) is replaced by its enclosure. What is left is
``<lam_x, x> + c``, minimised over the box in outward-rounded interval arithmetic. Unlike the
forward pass, nothing is concretised on the way: the relaxations compose exactly, which is what
makes the bound tight through deep networks and the Lie derivative's products.

Floating point: every coefficient the pass computes is a float ``M`` off the exact one by at most
``e`` (one rounding: ``EPS |M|``; a ``k``-term product ``lam W``: ``gamma(k) |lam| |W|``; an
accumulation of two contributions: ``EPS |sum|``). The difference is charged to ``c`` as
``SAFETY * e * |v|max`` with ``|v|max`` from the operand's enclosure, so the statement holds for
the stored floats; ``c`` is summed with ``gamma`` of its number of terms and rounded down
(``_lower_sum``). An infinite enclosure makes ``c = -inf``: no bound, never a wrong one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lyapcert.bounds.affine import Affine
from lyapcert.bounds.graph import BoundGraph
from lyapcert.bounds.interval import EPS, TINY, Interval, down, gamma
from lyapcert.errors import UnsupportedOperationError

SAFETY = 2.0
"""Factor on every computed error bound (the bound is itself computed in rounded arithmetic)."""

LINEAR_FAILURES = (UnsupportedOperationError, RuntimeError, ValueError, TypeError, IndexError)
"""Errors after which a caller keeps its other bounds: the linear form is an extra tightening, so
an operation it cannot follow costs tightness, never a verdict."""


@dataclass
class LinearBounds:
    """``A_lo x + c_lo <= q(x) <= A_hi x + c_hi`` on each box (``A [batch, n]``, ``c
    [batch]``) and the concretised ``lo <= q <= hi`` (``[batch]``)."""

    A_lo: torch.Tensor
    c_lo: torch.Tensor
    A_hi: torch.Tensor
    c_hi: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def _lower_sum(terms: list[torch.Tensor], b: int, like: torch.Tensor) -> torch.Tensor:
    """A float at most the exact sum of all elements of ``terms`` (each ``[b, ...]``, each element
    a float within one rounding of a real product) per box: the rounded sum minus
    ``gamma(m + 2)`` times the sum of magnitudes, moved down; NaN or infinite: ``-inf``."""
    if not terms:
        return torch.zeros(b, dtype=like.dtype, device=like.device)
    flat = torch.cat([t.reshape(b, -1) for t in terms], dim=1)
    m = flat.shape[1]
    total = flat.sum(dim=1)
    bound = SAFETY * gamma(m + 2) * flat.abs().sum(dim=1)
    out = down(down(total - bound) - TINY)
    return torch.nan_to_num(out, nan=-math.inf, posinf=-math.inf, neginf=-math.inf)


def _abs_max(iv: Interval) -> torch.Tensor:
    return torch.maximum(iv.lo.abs(), iv.hi.abs())


def _times(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * c`` with ``0 * inf = 0``."""
    return torch.where(a == 0, torch.zeros_like(a * c), a * c)


class _Pass:
    """One backward pass: the multipliers ``lam`` by value, and the terms of ``c``."""

    def __init__(self, space):
        self.b = space.b
        self.lam: dict[int, tuple[Affine, torch.Tensor]] = {}
        self.terms: list[torch.Tensor] = []

    def _batched(self, v: Affine) -> bool:
        return v.c_lo.ndim >= 1 and v.c_lo.shape[0] == self.b

    def leaf(self, L: torch.Tensor, iv: Interval) -> None:
        """``<L, v> >= sum min(L lo, L hi)`` for a value known only by its enclosure."""
        lo = iv.lo.expand_as(L) if iv.lo.shape != L.shape else iv.lo
        hi = iv.hi.expand_as(L) if iv.hi.shape != L.shape else iv.hi
        self.terms.append(torch.where(L >= 0, _times(L, lo), _times(L, hi)))

    def charge(self, err: torch.Tensor, iv: Interval) -> None:
        """Coefficients off by at most ``err`` on a value with enclosure ``iv``."""
        vmax = _abs_max(iv)
        self.terms.append(-SAFETY * _times(err, vmax.expand_as(err)))

    def send(self, v: Affine, L: torch.Tensor) -> None:
        """Add ``L`` (of ``v``'s shape or broadcast from it) to ``v``'s multiplier."""
        is_input = v.node is not None and v.node[0] == "input"
        if not is_input and (v.node is None or not self._batched(v)):
            self.leaf(L, v.iv)
            return
        if L.shape != v.shape:
            L, err = _unbroadcast(L, v.shape)
            self.charge(err, v.iv)
        key = id(v)
        if key in self.lam:
            total = self.lam[key][1] + L
            self.charge(EPS * total.abs(), v.iv)
            self.lam[key] = (v, total)
        else:
            self.lam[key] = (v, L)

    def pop(self, v: Affine):
        entry = self.lam.pop(id(v), None)
        return None if entry is None else entry[1]


def _unbroadcast(L: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """``L`` summed over the dimensions a value of ``shape`` was broadcast along, and the bound
    ``SAFETY gamma(m) sum |L|`` of that sum's rounding error."""
    extra = L.ndim - len(shape)
    dims = list(range(extra)) + [
        i + extra for i, s in enumerate(shape) if s == 1 and L.shape[i + extra] != 1
    ]
    m = math.prod(L.shape[d] for d in dims) if dims else 1
    S = L.sum(dim=dims, keepdim=True).reshape(shape) if dims else L.reshape(shape)
    A = L.abs().sum(dim=dims, keepdim=True).reshape(shape) if dims else L.abs().reshape(shape)
    return S, SAFETY * gamma(m + 2) * A


def _adjoint(fn, primals: list[torch.Tensor], L: torch.Tensor) -> list[tuple]:
    """For a linear map ``fn``: ``(fn^T L, fn^T |L|)`` per operand (vector-Jacobian products,
    by plain autograd: ``torch.func.vjp`` would import the compiler stack, about 0.7 s once per
    process)."""
    xs = [p.detach().requires_grad_(True) for p in primals]
    with torch.enable_grad():
        out = fn(*xs)
        signed = torch.autograd.grad(out, xs, L, retain_graph=True, allow_unused=True)
        magnitude = torch.autograd.grad(out, xs, L.abs(), allow_unused=True)
    zero = [torch.zeros_like(x) for x in primals]
    return [
        (z if a is None else a, z if m is None else m)
        for a, m, z in zip(signed, magnitude, zero, strict=True)
    ]


def backward(out: Affine, upper: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lam_x [b, n], c [b])`` with ``sign * out >= lam_x . x + c`` on each box (``sign = -1``
    for ``upper``), for an ``out`` of shape ``[b]`` evaluated with a tape."""
    sp = out.space
    if sp.tape is None:
        raise ValueError("backward: the forward pass was run without a tape")
    if tuple(out.shape) != (sp.b,):
        raise ValueError(f"backward: a value of shape [batch] expected, got {tuple(out.shape)}")
    P = _Pass(sp)
    sign = -1.0 if upper else 1.0
    P.send(out, torch.full_like(out.c_lo, sign))
    for v in reversed(sp.tape):
        L = P.pop(v)
        if L is None:
            continue
        kind, ops, data = v.node
        if kind == "linear":
            (x,) = ops
            W, bias = data
            M = L @ W
            P.charge(SAFETY * gamma(W.shape[0] + 2) * (L.abs() @ W.abs()), x.iv)
            if bias is not None:
                P.terms.append(L * bias)
            P.send(x, M)
        elif kind == "unary":
            (z,) = ops
            a_lo, b_lo, a_hi, b_hi = data
            pos = L >= 0
            M = L * torch.where(pos, a_lo, a_hi)
            P.terms.append(_times(L, torch.where(pos, b_lo, b_hi)))
            P.charge(EPS * M.abs(), z.iv)
            P.send(z, M)
        elif kind == "product":
            x, y = ops
            a, b, k_lo, k_hi = data
            P.terms.append(_times(L, torch.where(L >= 0, k_lo, k_hi)))
            for operand, slope in ((x, a), (y, b)):
                M = L * slope
                P.charge(EPS * M.abs(), _broadcast_iv(operand.iv, M))
                P.send(operand, M)
        elif kind == "add":
            x, y = ops
            P.send(x, L)
            P.send(y, L)
        elif kind == "addc":
            (x,) = ops
            P.terms.append(L * data)
            P.send(x, L)
        elif kind == "neg":
            (x,) = ops
            P.send(x, -L)
        elif kind in ("scale", "divc"):
            (x,) = ops
            M = L * data if kind == "scale" else L / data
            P.charge(EPS * M.abs(), _broadcast_iv(x.iv, M))
            P.send(x, M)
        elif kind in ("linmap", "join"):
            primals = [torch.zeros_like(o.c_lo) for o in ops]
            m = L[0].numel() + 2
            for o, (M, M_abs) in zip(ops, _adjoint(data, primals, L)):
                P.charge(SAFETY * gamma(m) * M_abs, o.iv)
                P.send(o, M)
        else:  # pragma: no cover - every recorded kind is handled above
            raise UnsupportedOperationError([f"backward: relation {kind!r}"])
    lam_x = torch.zeros_like(sp.m)
    for v, L in P.lam.values():
        if v.node is not None and v.node[0] == "input":
            lam_x = L
        else:  # pragma: no cover - only the input is left
            P.leaf(L, v.iv)
    return lam_x, _lower_sum(P.terms, sp.b, sp.m)


def _broadcast_iv(iv: Interval, like: torch.Tensor) -> Interval:
    if iv.lo.shape == like.shape:
        return iv
    return Interval(iv.lo.expand_as(like), iv.hi.expand_as(like))


def concretise(lam: torch.Tensor, c: torch.Tensor, boxes: Interval) -> torch.Tensor:
    """``min over the box of lam . x + c``, rounded down."""
    total = (boxes * lam).sum(dim=1)
    out = down(total.lo + c - TINY)
    return torch.nan_to_num(out, nan=-math.inf, posinf=math.inf, neginf=-math.inf)


def crown_bounds(quantity, boxes: Interval, lower: bool = True, upper: bool = True):
    """``quantity`` (a bound function of ``x [b, n]`` returning ``[b]``) on the boxes by the
    forward pass and the backward pass: ``LinearBounds`` whose ``lo``/``hi`` intersect both
    (a side not asked for keeps the forward bound, its line ``A = 0, c = -inf / +inf``)."""
    out = quantity(Affine.from_boxes(boxes, tape=True))
    if not isinstance(out, Affine):
        raise UnsupportedOperationError(["the quantity did not return a linear bound value"])
    if out.c_lo.ndim != 1:
        out = out.apply(torch.reshape, (out.shape[0],))
    zero = torch.zeros_like(boxes.lo)
    inf = torch.full_like(out.lo, math.inf)
    A_lo, c_lo, A_hi, c_hi = zero, -inf, zero, inf
    lo, hi = out.lo, out.hi
    if lower:
        A_lo, c_lo = backward(out, upper=False)
        lo = torch.maximum(lo, concretise(A_lo, c_lo, boxes))
    if upper:
        A, c = backward(out, upper=True)
        A_hi, c_hi = -A, -c
        hi = torch.minimum(hi, -concretise(A, c, boxes))
    return LinearBounds(A_lo, c_lo, A_hi, c_hi, lo, hi)


def linear_bounds(graph: BoundGraph, boxes: Interval) -> LinearBounds:
    """Lower and upper linear functions of ``x`` bounding a captured graph's output (one input
    ``[batch, n]``; output ``[batch]`` or ``[batch, 1]``) on each box."""

    def q(x):
        return graph.evaluate(x)

    return crown_bounds(q, boxes)


__all__ = [
    "LINEAR_FAILURES",
    "LinearBounds",
    "backward",
    "concretise",
    "crown_bounds",
    "linear_bounds",
]
