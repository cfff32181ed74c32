"""Quadratic forms ``e' P e`` found in a captured graph, with a rule that keeps them tight near 0.

Plain interval arithmetic on ``sum((e @ P) * e)`` loses the form's sign: on a box where some
``e_i`` straddles 0 the cross terms give a negative lower bound, however positive definite ``P``
is. A Lyapunov network ``V = |phi(x) - phi(x*)|^2 + e' P e`` (read from a file, so opaque) is then
not proven positive near ``x*``, where the hole must be closed. The graph is searched for the
pattern (either operand order; ``matmul``, ``@``, ``mm`` or ``linear`` without bias)::

    sum(mul(matmul(e, P), e), dim=-1)        P a constant [n, n] of the graph, e [b, n]

and at that node the interval result is intersected with two proven bounds. With ``S`` the
enclosure of ``(P + P')/2`` (``e'Pe = e'Se`` exactly):

* ``lam_lo |e|^2 <= e'Se <= lam_hi |e|^2`` with ``lam_lo <= lambda_min(S)`` and
  ``lam_hi >= lambda_max(S)`` proven (``bounds.psd``);
* when ``S`` is positive definite, ``e'Se >= sum_i D_i e_i^2`` with ``D = t diag(S)`` (rounded
  down) and ``S - t diag(S)`` proven positive definite (the Jacobi scaling: better than
  ``lam_lo`` when ``P`` is badly scaled).

Each right-hand side is evaluated in interval arithmetic on the box of ``e`` (``e_i^2`` exact
squares, outward rounding), so the bounds hold for every real point of the box. The nodes are
found once at capture; the rule applies to ``Interval`` values and to the value part of a
``Dual`` (the forward mode's derivative is left to the plain rules).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.interval import Interval
from lyapcert.bounds.psd import (
    lower_eigenvalue_bound,
    proven_multiple,
    symmetric_part,
    upper_eigenvalue_bound,
)

_MUL = {operator.mul, torch.mul, torch.multiply}
_MATMUL = {operator.matmul, torch.matmul, torch.mm}


@dataclass
class _Proof:
    """The proven scalars of one ``P`` (float64 on the CPU, exactly the graph's constant)."""

    P: torch.Tensor
    S_lo: np.ndarray  # the enclosure of S = (P + P')/2
    S_hi: np.ndarray
    lam_lo: float | None
    lam_hi: float | None
    diagonal: torch.Tensor | None  # D [n] with S - diag(D) positive definite, or None


@dataclass
class QuadraticForm:
    """The node ``sum((e @ P) * e, -1)`` of a graph: ``e`` and ``p`` the operands' nodes
    (``transpose``: the graph uses ``linear(e, W)``, ``P = W'``). The proof of the rule is made
    for the constant the graph evaluates, and made again if that constant changes (a trained
    ``P``)."""

    e: torch.fx.Node
    p: torch.fx.Node
    transpose: bool = False
    _proof: _Proof | None = None

    def proof(self, p_value) -> _Proof | None:
        if not isinstance(p_value, torch.Tensor) or p_value.dim() != 2:
            return None
        P = p_value.detach().to(device="cpu", dtype=torch.float64)
        if self.transpose:
            P = P.transpose(0, 1)
        if P.shape[0] != P.shape[1]:
            return None
        if self._proof is None or not torch.equal(self._proof.P, P):
            self._proof = _prove(P.clone())
        return self._proof

    def tighten(self, value, e_value, p_value):
        """``value`` (the node's result) intersected with the form's bounds on ``e_value``
        (``p_value``: the matrix operand as the graph evaluated it)."""
        if isinstance(value, Dual) and isinstance(e_value, Dual):
            inner = self.tighten(value.value, e_value.value, p_value)
            return value if inner is value.value else Dual(inner, value.tangent)
        if type(value) is not Interval or type(e_value) is not Interval:
            return value
        proof = self.proof(p_value)
        if proof is None or proof.lam_lo is None:
            return value
        if e_value.lo.dim() != 2 or e_value.lo.shape[-1] != proof.P.shape[0]:
            return value
        if tuple(value.lo.shape) not in (tuple(e_value.lo.shape[:1]), (e_value.lo.shape[0], 1)):
            return value
        sq = e_value.square()  # [b, n], exact squares rounded outward
        norm = sq.sum(-1)
        lo = (norm * proof.lam_lo).lo
        hi = (norm * proof.lam_hi).hi
        if proof.diagonal is not None:
            d = proof.diagonal.to(device=sq.lo.device)
            lo = torch.maximum(lo, (sq * d).sum(-1).lo)
        lo = torch.maximum(value.lo, lo.reshape(value.lo.shape))
        hi = torch.minimum(value.hi, hi.reshape(value.hi.shape))
        return Interval(lo, hi)


def _is(node, functions: set, method: str | None = None) -> bool:
    """Whether ``node`` calls one of ``functions`` or the tensor method ``method``."""
    if not isinstance(node, torch.fx.Node):
        return False
    if node.op == "call_function":
        return node.target in functions
    return method is not None and node.op == "call_method" and node.target == method


def _matrix_operand(node, e) -> tuple[torch.fx.Node, bool] | None:
    """``(p, transpose)`` when ``node`` computes ``e @ P`` with ``P`` the constant at node ``p``
    (``linear(e, W)`` without bias: ``P = W'``), else ``None``."""
    if _is(node, _MATMUL, "matmul") and len(node.args) == 2 and not node.kwargs:
        a, b = node.args
        return (b, False) if a is e and _constant(b) else None
    if _is(node, {F.linear}) and len(node.args) >= 2:
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        if node.args[0] is e and bias is None and _constant(node.args[1]):
            return node.args[1], True
    return None


def _constant(node) -> bool:
    """A node the graph evaluates to a plain tensor whatever its inputs (a stored constant)."""
    return isinstance(node, torch.fx.Node) and node.op == "get_attr"


def _sums_last_dim(node) -> bool:
    if _is(node, {torch.sum}, "sum"):
        dims = [a for a in node.args[1:2]] + [node.kwargs[k] for k in ("dim",) if k in node.kwargs]
        if len(dims) != 1:
            return False
        dim = dims[0]
        if isinstance(dim, (list, tuple)):
            if len(dim) != 1:
                return False
            dim = dim[0]
        return dim in (-1, 1)
    return False


def _prove(P: torch.Tensor) -> _Proof:
    """The rule's scalars for ``P`` (``lam_lo`` None: no proof, the rule does nothing)."""
    p = P.numpy()
    lo, hi = symmetric_part(p)
    if not np.all(np.isfinite(p)):
        return _Proof(P, lo, hi, None, None, None)
    lam_lo = lower_eigenvalue_bound(lo, hi)
    lam_hi = upper_eigenvalue_bound(lo, hi)
    if not (np.isfinite(lam_lo) and np.isfinite(lam_hi)):
        return _Proof(P, lo, hi, None, None, None)
    diagonal = None
    if lam_lo > 0:
        M = np.diag(np.diag((lo + hi) / 2))
        inv = np.diag(1.0 / np.sqrt(np.diag(M)))
        try:
            guess = float(np.linalg.eigvalsh(inv @ ((lo + hi) / 2) @ inv).min())
        except np.linalg.LinAlgError:
            guess = 0.0
        t = proven_multiple(lo, hi, M, guess) if guess > 0 else None
        if t is not None:
            diagonal = torch.as_tensor(np.nextafter(t * np.diag(M), -np.inf), dtype=torch.float64)
    return _Proof(P, lo, hi, float(lam_lo), float(lam_hi), diagonal)


def find_quadratic_forms(graph: torch.fx.Graph) -> dict[torch.fx.Node, QuadraticForm]:
    """The nodes of ``graph`` that compute ``sum((e @ P) * e, -1)``, with their rules."""
    found: dict[torch.fx.Node, QuadraticForm] = {}
    for node in graph.nodes:
        if not _sums_last_dim(node):
            continue
        prod = node.args[0] if node.args else None
        if not (_is(prod, _MUL, "mul") and len(prod.args) == 2 and not prod.kwargs):
            continue
        a, b = prod.args
        for left, right in ((a, b), (b, a)):
            operand = _matrix_operand(left, right)
            if operand is not None:
                found[node] = QuadraticForm(right, *operand)
                break
    return found


# ------------------------------------------------------------------ the floor of a whole graph

_ADD = {operator.add, torch.add}
_SAME_VALUE = {"reshape", "view", "squeeze", "flatten"}
_POSITIVE_FUNCTIONS = {torch.exp, torch.sigmoid, F.sigmoid, torch.abs, torch.relu, F.relu}


def _plain_add(node) -> bool:
    if not _is(node, _ADD, "add") or len(node.args) != 2:
        return False
    alpha = node.kwargs.get("alpha", 1)
    return alpha == 1 and set(node.kwargs) <= {"alpha"}


def _nonnegative_constant(module, arg) -> bool:
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return arg >= 0
    if _constant(arg):
        value = _fetch(module, arg.target)
        return isinstance(value, torch.Tensor) and bool((value >= 0).all())
    return False


def _fetch(module, target: str):
    from lyapcert.bounds.graph import _fetch_attr  # (graph imports this module)

    return _fetch_attr(module, target)


def _nonnegative(module, node, depth: int = 0) -> bool:
    """Whether ``node``'s value is ``>= 0`` for every input, by its form: a value times itself,
    an even power, ``exp``/``sigmoid``/``abs``/``relu``, and sums and products of such values and
    nonnegative constants."""
    if depth > 50:
        return False
    if _nonnegative_constant(module, node):
        return True
    if not isinstance(node, torch.fx.Node):
        return False
    args = node.args
    if _is(node, _MUL, "mul") and len(args) == 2 and not node.kwargs:
        if args[0] is args[1] and isinstance(args[0], torch.fx.Node):
            return True
        return all(_nonnegative(module, a, depth + 1) for a in args)
    if _is(node, {torch.square}, "square"):
        return True
    if _is(node, {torch.pow, operator.pow}, "pow") and len(args) == 2:
        p = args[1]
        return isinstance(p, int) and not isinstance(p, bool) and p >= 0 and p % 2 == 0
    if _is(node, _POSITIVE_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("exp", "sigmoid", "abs", "relu")
    ):
        return True
    if _is(node, {torch.sum}, "sum") or _plain_add(node):
        operands = args[:1] if not _plain_add(node) else args
        return all(_nonnegative(module, a, depth + 1) for a in operands)
    if node.op == "call_method" and node.target in _SAME_VALUE:
        return _nonnegative(module, args[0], depth + 1)
    return False


def _terms(node) -> list:
    """The summands of ``node`` through plain additions."""
    if _plain_add(node):
        return _terms(node.args[0]) + _terms(node.args[1])
    return [node]


def _centre(module, e, x: torch.fx.Node, n: int) -> torch.Tensor | None:
    """``c`` when ``e`` computes ``x - c`` (``c`` a constant) or is ``x`` itself (``c = 0``)."""
    if e is x:
        return torch.zeros(n, dtype=torch.float64)
    if not (_is(e, {operator.sub, torch.sub}, "sub") and len(e.args) == 2 and e.args[0] is x):
        return None
    if e.kwargs.get("alpha", 1) != 1 or set(e.kwargs) - {"alpha"}:
        return None
    c = e.args[1]
    if not _constant(c):
        return None
    value = _fetch(module, c.target)
    if (
        not isinstance(value, torch.Tensor)
        or value.dim() > 2
        or (value.dim() == 2 and value.shape[0] != 1)
    ):
        return None
    return value.detach().to(device="cpu", dtype=torch.float64).reshape(-1).clone()


def graph_quadratic_floor(
    module: torch.fx.GraphModule, forms: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(c, lo, hi)`` with ``V(x) >= (x - c)' F (x - c)`` for every ``F`` in ``[lo, hi]``, read
    from the graph of ``V`` (one input ``x``; ``forms`` its quadratic forms): the output is a sum
    of quadratic forms ``(x - c)' P_k (x - c)`` with the same constant ``c`` and of terms that are
    nonnegative by their form (``_nonnegative``), so ``V >= (x-c)' (sum_k S_k) (x-c)`` with
    ``S_k = (P_k + P_k')/2`` enclosed outward. ``None`` when the graph has another shape."""
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
    outputs = [n for n in module.graph.nodes if n.op == "output"]
    if len(placeholders) != 1 or len(outputs) != 1:
        return None
    x = placeholders[0]
    out = outputs[0].args[0]
    while isinstance(out, torch.fx.Node) and out.op == "call_method" and out.target in _SAME_VALUE:
        out = out.args[0]
    centre, lo, hi = None, None, None
    for term in _terms(out):
        form = forms.get(term)
        if form is None:
            if not _nonnegative(module, term):
                return None
            continue
        proof = form.proof(_fetch(module, form.p.target))
        if proof is None or proof.lam_lo is None:
            return None
        c = _centre(module, form.e, x, proof.P.shape[0])
        if c is None or c.numel() != proof.P.shape[0]:
            return None
        if centre is None:
            centre = c
        elif not torch.equal(centre, c):
            return None
        lo = proof.S_lo if lo is None else np.nextafter(lo + proof.S_lo, -np.inf)
        hi = proof.S_hi if hi is None else np.nextafter(hi + proof.S_hi, np.inf)
    if centre is None:
        return None
    return centre.numpy(), lo, hi
