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

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.interval import Interval, down, up

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
