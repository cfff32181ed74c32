"""``bounds.jet.Jet2``: second-order jets for ``forms.hessian_enclosure``.

The jet Hessian encloses autograd Hessians (float64) at sampled points of every box, is as tight
as the nested-dual enclosure (the reference it replaces), and a quantity the jet does not support
falls back to nested duals with the same result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lyapcert.bounds import forms
from lyapcert.bounds.interval import Interval
from lyapcert.bounds.jet import Jet2
from lyapcert.certificates import QuadraticCandidate
from lyapcert.certificates.candidates import NetworkCandidate
from lyapcert.certificates.network import LyapunovNetwork
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.systems import get_system
from lyapcert.verify.lyapunov import build_problem

WIDTH_FACTOR = 1.5  # the jet enclosure is at most this much wider than the nested one


def _boxes(lo: torch.Tensor, hi: torch.Tensor, seed: int, per_kind: int = 8) -> Interval:
    """Tiny, wide and zero-straddling boxes inside ``[lo, hi]``."""
    g = torch.Generator().manual_seed(seed)
    n = lo.shape[0]
    span = hi - lo

    def rand(b):
        return torch.rand(b, n, generator=g, dtype=torch.float64)

    centres = lo + span * (0.1 + 0.8 * rand(3 * per_kind))
    half = torch.cat(
        [
            span * 1e-7 * (0.5 + rand(per_kind)),  # tiny
            span * 0.2 * (0.5 + rand(per_kind)),  # wide
            span * 0.05 * (0.5 + rand(per_kind)),  # straddling 0 (centre moved there below)
        ]
    )
    centres[2 * per_kind :] = 0.3 * half[2 * per_kind :] * (2 * rand(per_kind) - 1)
    return Interval(torch.maximum(centres - half, lo), torch.minimum(centres + half, hi))


def _points(box_lo, box_hi, g, k: int = 6) -> torch.Tensor:
    n = box_lo.shape[0]
    t = torch.rand(k, n, generator=g, dtype=torch.float64)
    corners = torch.stack([box_lo, box_hi, 0.5 * (box_lo + box_hi)])
    return torch.cat([corners, box_lo + (box_hi - box_lo) * t])


def _lie_torch(value_fn, system):
    """``x [n] -> dV/dx . f(x)`` in float64 by autograd (the reference)."""

    def lie(x):
        xb = x.reshape(1, -1)
        v = value_fn(xb).sum()
        (grad,) = torch.autograd.grad(v, xb, create_graph=True)
        fx = system.f(xb) if not system.input_names else None
        return (grad * fx).sum()

    return lie


def _check(q, reference, boxes: Interval, seed: int) -> float:
    """The jet Hessian of ``q`` contains ``reference``'s autograd Hessian at sampled points of
    each box (where the enclosure is finite), is finite wherever the nested one is, and is at
    most ``WIDTH_FACTOR`` times as wide; returns the largest width ratio."""
    n = boxes.shape[1]
    pairs = [(j, k) for j in range(n) for k in range(j, n)]
    jet = forms._hessian_jet(q, boxes, pairs)
    nested = forms.hessian_enclosure_nested(q, boxes, pairs)
    worst = 0.0
    for pair in pairs:
        a, b = jet[pair], nested[pair]
        assert bool((a.lo <= a.hi).all()), pair
        fin_b = torch.isfinite(b.lo) & torch.isfinite(b.hi)
        fin_a = torch.isfinite(a.lo) & torch.isfinite(a.hi)
        assert bool((fin_a | ~fin_b).all()), f"{pair}: the jet is unbounded where nested is not"
        wa, wb = (a.hi - a.lo)[fin_b], (b.hi - b.lo)[fin_b]
        ratio = torch.where(wb > 0, wa / wb, torch.where(wa > 0, torch.inf, 1.0))
        ok = (wa <= WIDTH_FACTOR * wb + 1e-300) | (wa <= 1e-12 * (1 + wb.abs()))
        assert bool(ok.all()), f"{pair}: width ratio {float(ratio.max())}"
        worst = max(worst, float(ratio[wb > 1e-12].max()) if bool((wb > 1e-12).any()) else 1.0)
    g = torch.Generator().manual_seed(seed)
    for i in range(boxes.shape[0]):
        for x in _points(boxes.lo[i], boxes.hi[i], g):
            h = torch.autograd.functional.hessian(reference, x.clone())
            for j, k in pairs:
                iv = jet[(j, k)]
                lo, hi, val = float(iv.lo[i]), float(iv.hi[i]), float(h[j, k])
                slack = 1e-9 * (1.0 + abs(val))
                assert lo - slack <= val <= hi + slack, (i, (j, k), lo, val, hi)
    return worst


def test_jet_hessian_vanderpol_quadratic():
    """van der Pol with ``V = x' x``: the symbolic Lie derivative's graph on jets."""
    system = get_system("vanderpol")
    P = np.eye(2)
    problem = build_problem(system, QuadraticCandidate(P, system))
    Pt = torch.as_tensor(P)
    worst = _check(
        problem.lie_q,
        _lie_torch(lambda x: (x @ Pt * x).sum(-1), system),
        _boxes(problem.lo, problem.hi, 1),
        11,
    )
    assert worst <= WIDTH_FACTOR


def test_jet_hessian_tanh_sigmoid_composition():
    """``tanh(x y) + sigmoid(x - y)`` evaluated directly on bound values (tanh', sigmoid' rules)."""

    def q(z):
        return (z[:, 0] * z[:, 1]).tanh() + (z[:, 0] - z[:, 1]).sigmoid()

    def ref(x):
        return torch.tanh(x[0] * x[1]) + torch.sigmoid(x[0] - x[1])

    lo = torch.tensor([-3.0, -3.0], dtype=torch.float64)
    _check(q, ref, _boxes(lo, -lo, 2), 12)


def test_jet_hessian_cartpole_lqr_quadratic():
    """The cartpole LQR closed loop with its linearisation's quadratic: ``lie_q`` evaluates
    ``V``'s graph on ``Dual(jet, jet)`` (forward mode over the jets)."""
    system = get_system("cartpole").closed_loop("lqr")
    P = lyapunov_matrix(system.linearize()[0], np.eye(system.n_states), discrete=False)
    problem = build_problem(system, QuadraticCandidate(P, system))
    Pt = torch.as_tensor(P)
    x_star = problem.x_star
    worst = _check(
        problem.lie_q,
        _lie_torch(lambda x: ((x - x_star) @ Pt * (x - x_star)).sum(-1), system),
        _boxes(problem.lo, problem.hi, 3, per_kind=5),
        13,
    )
    assert worst <= WIDTH_FACTOR


def test_jet_hessian_tanh_network_vanderpol():
    """A small tanh network ``V`` on van der Pol (``tanh_with_derivative`` on jets, inside
    ``Dual``)."""
    torch.manual_seed(0)
    system = get_system("vanderpol")
    net = LyapunovNetwork(2, [0.0, 0.0], width=6, depth=2, activation="tanh", P=np.eye(2) * 0.1)
    candidate = NetworkCandidate(net)
    problem = build_problem(system, candidate)
    worst = _check(
        problem.lie_q,
        _lie_torch(lambda x: candidate.module(x).reshape(-1), system),
        _boxes(problem.lo, problem.hi, 4, per_kind=4),
        14,
    )
    assert worst <= WIDTH_FACTOR


def test_jet_kink_inside_is_unbounded():
    """``relu(x) y^2``: a box across the kink has an unbounded ``d2/dx2`` (and ``d2/dxdy``), a
    box off the kink the exact values."""

    def q(z):
        return z[:, 0].relu() * z[:, 1].square()

    boxes = Interval(
        torch.tensor([[-0.5, 1.0], [0.5, 1.0]], dtype=torch.float64),
        torch.tensor([[0.5, 2.0], [1.5, 2.0]], dtype=torch.float64),
    )
    h = forms.hessian_enclosure(q, boxes)
    assert float(h[(0, 0)].lo[0]) == -torch.inf and float(h[(0, 0)].hi[0]) == torch.inf
    assert float(h[(0, 0)].lo[1]) == 0.0 and float(h[(0, 0)].hi[1]) == 0.0
    # d2/dy2 = 2 relu(x) in [1, 3] on the second box; d2/dxdy = 2 y in [2, 4]
    assert float(h[(1, 1)].lo[1]) <= 1.0 and float(h[(1, 1)].hi[1]) >= 3.0
    assert float(h[(1, 1)].hi[1]) <= 3.0 + 1e-12
    assert float(h[(0, 1)].lo[1]) <= 2.0 and float(h[(0, 1)].hi[1]) >= 4.0


def test_unsupported_operation_falls_back_to_nested_duals():
    """``clamp`` with tensor limits works on duals, not on jets: the same enclosure as nested."""

    def q(z):
        floor = torch.full((z.shape[0],), -0.25, dtype=torch.float64)
        return z[:, 0].clamp(min=floor) * z[:, 1].square() + z[:, 0].sin()

    boxes = _boxes(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]), 5).apply(
        lambda t: t.to(torch.float64)
    )
    with pytest.raises(TypeError):
        q(Jet2.from_boxes(boxes))
    got = forms.hessian_enclosure(q, boxes)
    want = forms.hessian_enclosure_nested(q, boxes)
    assert q in forms._JET_FAILED
    for pair, w in want.items():
        assert torch.equal(got[pair].lo, w.lo) and torch.equal(got[pair].hi, w.hi)
