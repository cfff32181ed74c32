"""Linear bounds by backward propagation through a captured graph (CROWN-style), sound in float64.

For a quantity ``q(x)`` (a ``BoundGraph`` of one ``[batch, n]`` input, output ``[batch]`` or
``[batch, 1]``) and a batch of boxes, ``linear_bounds`` returns ``A_lo x + c_lo <= q(x) <=
A_hi x + c_hi`` on each box and the concretised bounds. The intermediate interval bounds come from
one interval evaluation of the graph (``BoundGraph.evaluate(record=...)``); the backward pass
substitutes each node's linear relaxation from the output to the input.

Floating point: every coefficient the pass computes is a rounded float. Each step keeps the
statement "``q >= A . z + c`` for every real ``z`` in the node's interval bounds" true for the
stored floats by charging the rounding to ``c``: for ``A . (W x + w)`` computed as
``M = fl(A W)``, ``|A W - M| <= gamma(k) |A| |W|`` (``k`` the summed length), so
``A . (W x + w) >= M . x + A . w - gamma(k) (|A| |W|) . |x|max``, with ``|x|max`` from the
node's bounds and every sum of ``c`` rounded down (``gamma``, ``TINY``). An activation
``y = s(z)`` uses the relaxation lines of ``RELAXATIONS`` (the lower line where the coefficient
is >= 0, the upper one where it is < 0), charging the product's rounding the same way; an
operation without a line uses the constant lines ``[s(z)]`` of its interval bounds, which are
always sound. The upper form is the lower form of ``-q``. Concretisation over the box is an
outward-rounded interval evaluation of ``A . x + c``.

Supported nodes: ``linear``, ``add`` / ``sub`` with a constant or of two relaxed values, ``mul``
/ ``neg`` by constants, unary activations, ``getitem`` of one output column, ``reshape`` of the
final output; anything else raises ``UnsupportedOperationError`` (callers fall back to the
other forms).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lyapcert.bounds.graph import BoundGraph
from lyapcert.bounds.interval import TINY, Interval, down, gamma
from lyapcert.errors import UnsupportedOperationError

Relaxation = Callable[[torch.Tensor, torch.Tensor], tuple]
"""``(l, u) -> (a_lo, b_lo, a_hi, b_hi)`` with ``a_lo z + b_lo <= s(z) <= a_hi z + b_hi`` on
``[l, u]`` for the real function and the stored floats (``bounds.relax``)."""

RELAXATIONS: dict[str, Relaxation] = {}
"""Relaxation lines by operation name; filled from ``bounds.relax`` when it is present."""

UNARY = {"tanh", "sigmoid", "relu", "softplus", "exp", "sin", "cos", "elu", "silu"}


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


def _abs_max(iv: Interval) -> torch.Tensor:
    return torch.maximum(iv.lo.abs(), iv.hi.abs())


def _name(node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def linear_bounds(graph: BoundGraph, boxes: Interval) -> LinearBounds:
    """Lower and upper linear functions of ``x`` bounding the graph's output on each box."""
    env: dict = {}
    out = graph.evaluate(boxes, record=env)
    nodes = list(graph.module.graph.nodes)
    A_lo, c_lo = _backward(nodes, env, boxes, sign=1.0)
    A_up, c_up = _backward(nodes, env, boxes, sign=-1.0)  # lower form of -q
    lo = _concretise(A_lo, c_lo, boxes)
    hi = -_concretise(A_up, c_up, boxes)
    flat = out.apply(torch.reshape, (out.lo.shape[0],)) if out.lo.ndim > 1 else out
    return LinearBounds(
        A_lo, c_lo, -A_up, -c_up, torch.maximum(lo, flat.lo), torch.minimum(hi, flat.hi)
    )


def _concretise(A: torch.Tensor, c: torch.Tensor, boxes: Interval) -> torch.Tensor:
    """``min over the box of A . x + c``, rounded down."""
    terms = boxes * A  # elementwise, outward rounded
    total = terms.sum(dim=1)
    return down(total.lo + c - TINY)


def _backward(nodes, env, boxes: Interval, sign: float):
    """``(A [batch, n], c [batch])`` with ``sign * q(x) >= A . x + c`` on each box."""
    output = nodes[-1]
    (result,) = output.args
    b = boxes.lo.shape[0]
    dtype, device = boxes.lo.dtype, boxes.lo.device
    # coefficients on each node's value, and the constant: q >= sum_node A[node] . node + c
    coef: dict = {}
    c = torch.zeros(b, dtype=dtype, device=device)
    value = env[result]
    start = torch.full(value.lo.shape, sign, dtype=dtype, device=device)
    coef[result] = start
    for node in reversed(nodes):
        if node not in coef or node.op in ("placeholder", "output", "get_attr"):
            continue
        A = coef.pop(node)
        name = _name(node)
        args = node.args
        if name == "linear":
            x = args[0]
            w = env[args[1]]
            bias = env[args[2]] if len(args) > 2 and args[2] is not None else None
            k = w.shape[0]
            M = A @ w  # |A W - M| <= gamma(k) |A| |W|, charged on |x|max
            slack = SAFETY * gamma(k + 2) * (A.abs() @ w.abs()) * _abs_max(env[x])
            terms = [-slack]
            if bias is not None:
                terms.append(A * bias)
            c = _lower_sum(c, terms, b)
            _accumulate(coef, x, M)
        elif name in UNARY:
            z = args[0]
            zb = env[z]
            plain = len(args) == 1 and not node.kwargs  # no extra parameters (beta, ...)
            a_sel, b_sel = _unary_lines(name if plain else "", zb, env[node], A)
            M = A * a_sel  # one rounding each: |A a - M| <= u |M|, charged on |z|max
            slack = SAFETY * 2.0**-52 * M.abs() * _abs_max(zb)
            # a rule may give an infinite constant (the range leaves float64): a zero
            # coefficient contributes nothing, not 0 * inf = NaN
            term = torch.where(A == 0, torch.zeros_like(A), A * b_sel)
            c = _lower_sum(c, [term, -slack], b)
            _accumulate(coef, z, M)
        elif name in ("add", "sub") and node.op == "call_function":
            a0, a1 = args
            s1 = 1.0 if name == "add" else -1.0
            for arg, s in ((a0, 1.0), (a1, s1)):
                if hasattr(arg, "op") and arg.op != "get_attr":
                    _accumulate(coef, arg, A * s)
                else:
                    const = env[arg] if hasattr(arg, "op") else arg
                    const = torch.as_tensor(const, dtype=dtype, device=device)
                    c = _lower_sum(c, [A * (const * s)], b)
        elif name in ("mul", "neg") and node.op == "call_function":
            if name == "neg":
                _accumulate(coef, args[0], -A)
                continue
            a0, a1 = args
            node_arg, const = (a0, a1) if hasattr(a0, "op") and a0.op != "get_attr" else (a1, a0)
            if hasattr(const, "op") and const.op != "get_attr":
                raise UnsupportedOperationError(["crown: product of two bound values"])
            k = env[const] if hasattr(const, "op") else const
            k = torch.as_tensor(k, dtype=dtype, device=device)
            M = A * k
            slack = SAFETY * 2.0**-52 * M.abs() * _abs_max(env[node_arg])
            c = _lower_sum(c, [-slack], b)
            _accumulate(coef, node_arg, M)
        elif node.target is operator.getitem:
            src, index = args
            full = torch.zeros(env[src].lo.shape, dtype=dtype, device=device)
            full[index] = A
            _accumulate(coef, src, full)
        elif name in ("reshape", "view", "flatten", "squeeze", "unsqueeze"):
            src = args[0]
            _accumulate(coef, src, A.reshape(env[src].lo.shape))
        else:
            raise UnsupportedOperationError([f"crown: {node.op} {name}"])
    (x,) = [n for n in nodes if n.op == "placeholder"]
    A_x = coef.get(x, torch.zeros_like(boxes.lo))
    return A_x.reshape(b, -1), c


SAFETY = 2.0
"""Factor on every computed error bound (the bound is itself computed in rounded arithmetic)."""


def _lower_sum(c: torch.Tensor, terms: list, b: int) -> torch.Tensor:
    """A float at most ``c + sum of all elements of terms`` (each ``[b, ...]``) in exact
    arithmetic: the rounded sum minus ``gamma(m + 2)`` times the sum of magnitudes (``m`` the
    number of terms each product or sum rounded once), moved one ulp down."""
    flat = torch.cat([c.reshape(b, 1)] + [t.reshape(b, -1) for t in terms], dim=1)
    m = flat.shape[1]
    total = flat.sum(dim=1)
    bound = SAFETY * gamma(m + 2) * flat.abs().sum(dim=1)
    out = down(down(total - bound) - TINY)
    return torch.where(torch.isnan(out), torch.full_like(out, -torch.inf), out)


def _accumulate(coef: dict, node, A: torch.Tensor) -> None:
    coef[node] = coef[node] + A if node in coef else A


def _unary_lines(name: str, zb: Interval, out: Interval, A: torch.Tensor):
    """The selected line ``(slope, intercept)`` for each element: the lower line where the
    coefficient is >= 0, the upper line where it is < 0 (the constant lines of the node's own
    interval bounds ``out`` when no relaxation rule is known)."""
    rule = RELAXATIONS.get(name)
    if rule is None:
        zero = torch.zeros_like(zb.lo)
        a_lo, b_lo, a_hi, b_hi = zero, out.lo, zero, out.hi
    else:
        a_lo, b_lo, a_hi, b_hi = rule(zb.lo, zb.hi)
    pos = A >= 0
    return torch.where(pos, a_lo, a_hi), torch.where(pos, b_lo, b_hi)


try:  # the relaxation lines, when the module is there
    from lyapcert.bounds import relax as _relax

    for _op in ("tanh", "sigmoid", "relu", "softplus", "exp", "sin", "cos"):
        if hasattr(_relax, _op):
            RELAXATIONS[_op] = getattr(_relax, _op)
except ImportError:  # pragma: no cover
    pass

__all__ = ["RELAXATIONS", "LinearBounds", "linear_bounds"]
