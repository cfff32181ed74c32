"""Bound methods over batches of boxes: plain interval evaluation and the mean-value form.

A *quantity* is a Python function ``q(x) -> [batch]`` built from captured graphs that accepts an
``Interval`` or a ``Dual`` for ``x`` (``[batch, n]``). Given boxes ``X`` (an ``Interval``):

* interval:   ``q(X)``;
* mean value: ``q(c) + sum_j dq/dx_j(X) * (X_j - c_j)`` with ``c`` the box centre and the partial
  derivatives enclosed by forward-mode differentiation over ``X`` (valid for Lipschitz ``q`` by
  Lebourg's mean-value theorem; non-smooth operations give unbounded derivatives where a jump
  may lie inside, which makes the form fall back to the interval bound there). It converges
  quadratically as boxes shrink, where interval bounds converge only linearly.

``best`` intersects both (each encloses the true range, so their intersection does too).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.interval import Interval, down, up
from lyapcert.bounds.jet import Jet2
from lyapcert.errors import UnsupportedOperationError

Quantity = Callable[[object], object]


@dataclass
class Bounds:
    """Enclosure ``[lo, hi]`` of a quantity on each box (``[batch]`` each) and, when the
    mean-value form was used, ``sensitivity [batch, n]``: how much each coordinate's width
    contributes to the width of the bound (a guide for splitting)."""

    lo: torch.Tensor
    hi: torch.Tensor
    sensitivity: torch.Tensor | None = None


def _flat(v) -> Interval:
    """A quantity's output as ``[batch]``."""
    return v.apply(torch.reshape, (v.shape[0],)) if v.lo.ndim != 1 else v


def interval_bounds(q: Quantity, boxes: Interval) -> Bounds:
    out = _flat(q(boxes))
    return Bounds(out.lo, out.hi)


def centre_offsets(boxes: Interval) -> tuple[torch.Tensor, Interval]:
    """Box centres ``c`` and the enclosure of ``X - c`` (outward rounded)."""
    c = boxes.mid
    return c, Interval(down(boxes.lo - c), up(boxes.hi - c))


def gradient_enclosure(q: Quantity, boxes: Interval) -> Interval:
    """``dq/dx_j`` over each box, ``[n, batch]``, by forward mode with seeds ``e_j``."""
    b, n = boxes.shape
    lo = boxes.lo.repeat(n, 1)
    hi = boxes.hi.repeat(n, 1)
    eye = torch.eye(n, dtype=lo.dtype, device=lo.device).repeat_interleave(b, dim=0)
    x = Dual(Interval(lo, hi), Interval(eye, eye))
    out = q(x).tangent
    out = out.apply(torch.reshape, (n, b))
    return out


def mean_value_bounds(q: Quantity, boxes: Interval) -> Bounds:
    c, offset = centre_offsets(boxes)
    at_centre = _flat(q(Interval(c, c)))
    grad = gradient_enclosure(q, boxes)  # [n, batch]
    total = at_centre
    widths = []
    for j in range(boxes.shape[1]):
        term = grad[j] * offset[:, j]
        widths.append(term.hi - term.lo)
        total = total + term
    sens = torch.stack(widths, dim=1)
    sens = torch.where(torch.isnan(sens), torch.full_like(sens, torch.inf), sens)
    return Bounds(total.lo, total.hi, sens)


def best_bounds(q: Quantity, boxes: Interval, mean_value: bool = True) -> Bounds:
    """The intersection of the interval and mean-value enclosures."""
    ia = interval_bounds(q, boxes)
    if not mean_value:
        return ia
    mv = mean_value_bounds(q, boxes)
    return Bounds(torch.maximum(ia.lo, mv.lo), torch.minimum(ia.hi, mv.hi), mv.sensitivity)


_JET_FAILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Quantities whose evaluation on ``Jet2`` failed once (they go to nested duals at once)."""

_JET_ERRORS = (TypeError, AttributeError, NotImplementedError, ValueError, IndexError, RuntimeError)
"""What a quantity may raise on a ``Jet2`` it does not support (``UnsupportedOperationError`` is
a ``TypeError``); the nested-dual evaluation then decides, and raises again if it fails too."""


def hessian_enclosure(q: Quantity, boxes: Interval, pairs=None) -> dict:
    """``d2q / dx_j dx_k`` over each box for ``j <= k`` (``{(j, k): Interval [batch]}``), by one
    second-order jet evaluation (``bounds.jet``: value, gradient and every pair at once); where
    ``q`` does not support jets, by nested forward mode. Where a non-smooth operation may have
    its kink inside a box, the entry is unbounded."""
    n = boxes.shape[1]
    pairs = pairs or [(j, k) for j in range(n) for k in range(j, n)]
    if not _jet_failed(q):
        try:
            return _hessian_jet(q, boxes, pairs)
        except _JET_ERRORS:
            _mark_jet_failed(q)
    return hessian_enclosure_nested(q, boxes, pairs)


def _jet_failed(q) -> bool:
    try:
        return q in _JET_FAILED
    except TypeError:  # not weakly referable
        return False


def _mark_jet_failed(q) -> None:
    with contextlib.suppress(TypeError):  # not weakly referable
        _JET_FAILED[q] = True


def _hessian_jet(q: Quantity, boxes: Interval, pairs) -> dict:
    b = boxes.shape[0]
    out = q(Jet2.from_boxes(boxes, pairs))
    if not isinstance(out, Jet2) or out.lo.numel() != b:
        raise UnsupportedOperationError(["a quantity whose jet evaluation is not one per box"])
    h = out.hess_interval()
    p = len(pairs)
    lo, hi = h.lo.reshape(p, b), h.hi.reshape(p, b)
    return {pair: Interval(lo[i], hi[i]) for i, pair in enumerate(pairs)}


def hessian_enclosure_nested(q: Quantity, boxes: Interval, pairs=None) -> dict:
    """``hessian_enclosure`` by nested forward mode (outer seed ``e_j``, inner seed ``e_k``,
    the batch repeated for each pair): the reference, and the fallback for quantities that do
    not support ``Jet2``."""
    b, n = boxes.shape
    pairs = pairs or [(j, k) for j in range(n) for k in range(j, n)]
    p = len(pairs)
    lo = boxes.lo.repeat(p, 1)
    hi = boxes.hi.repeat(p, 1)
    eye = torch.eye(n, dtype=lo.dtype, device=lo.device)
    j_idx = torch.tensor([j for j, _ in pairs], device=lo.device).repeat_interleave(b)
    k_idx = torch.tensor([k for _, k in pairs], device=lo.device).repeat_interleave(b)
    inner = Dual(Interval(lo, hi), Interval(eye[k_idx], eye[k_idx]))
    zero = torch.zeros_like(lo)
    outer_t = Dual(Interval(eye[j_idx], eye[j_idx]), Interval(zero, zero))
    out = q(Dual(inner, outer_t)).tangent.tangent
    out = _flat(out).apply(torch.reshape, (p, b))
    return {pair: out[i] for i, pair in enumerate(pairs)}


def taylor2_bounds(q: Quantity, boxes: Interval) -> Bounds:
    """Second-order Taylor form ``q(c) + g(c).d + 1/2 d' H(X) d`` with ``d`` in ``X - c``, ``g(c)``
    the gradient at the centre (a thin enclosure) and ``H(X)`` the Hessian enclosed over the box
    (Taylor's theorem with the Lagrange remainder: valid where ``q`` is twice differentiable on
    the box; a kink inside makes ``H`` unbounded and the bound infinite). Its overestimate is
    ``O(w^2)`` with a coefficient from the variation of ``H`` only, where the mean-value form's
    carries the dependency of the gradient's interval evaluation: near a stable equilibrium, where
    ``dV/dt ~ -e'Qe``, this form proves boxes many times wider."""
    c, offset = centre_offsets(boxes)
    centre = Interval(c, c)
    at_centre = _flat(q(centre))
    grad = gradient_enclosure(q, centre)  # [n, batch], thin
    hess = hessian_enclosure(q, boxes)
    n = boxes.shape[1]
    total = at_centre
    widths = []
    for j in range(n):
        lin = grad[j] * offset[:, j]
        quad = hess[(j, j)] * offset[:, j].square() * 0.5
        total = total + lin + quad
        widths.append(lin.hi - lin.lo + quad.hi - quad.lo)
    for j in range(n):
        for k in range(j + 1, n):
            cross = hess[(j, k)] * (offset[:, j] * offset[:, k])
            total = total + cross
            half = 0.5 * (cross.hi - cross.lo)
            widths[j] = widths[j] + half
            widths[k] = widths[k] + half
    sens = torch.stack(widths, dim=1)
    sens = torch.where(torch.isnan(sens), torch.full_like(sens, torch.inf), sens)
    return Bounds(total.lo, total.hi, sens)
