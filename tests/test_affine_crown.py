"""Linear bounds (``bounds.affine`` forward, ``bounds.crown`` backward) against the arb oracle.

For every box and every checked point ``x`` of it, the exact value ``q(x)`` (arb, 200 bits) must
lie in the enclosure, between the forward lines ``A . (x - m) + c`` and between the backward
lines ``lam . x + c``, the lines evaluated exactly in arb. Points: the corners, random interior
floats and (for compositions) the centre. Quantities: the compositions of the ``Dual`` tests
(every operation the engine knows, values and tangents), random networks of each activation, and
the Lie derivative of random network closed loops (``dV/dt = grad V(x) . f(x, k(x))``) as the
verifier forms it. A relaxation line one ulp too tight fails these tests; so does a rounding
error of the passes that is not charged to the constant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lyapcert.bounds.affine import Affine
from lyapcert.bounds.crown import backward, concretise, crown_bounds, linear_bounds
from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from test_bounds_enclosure import (
    ACTIVATIONS,
    AD,
    COMPOSITIONS,
    FAST_N,
    SLOW_N,
    A,
    ArbOps,
    Report,
    TorchOps,
    _interior,
    _rng,
    _t,
    make_net,
    memo,
    net_arb,
)

slow = pytest.mark.slow


def _exact_line(coef: list[float], c: float, x: tuple[float, ...], centre=None):
    """``sum coef_j (x_j - centre_j) + c`` in arb (``centre`` omitted: ``x`` itself)."""
    total = A(c)
    for j, a in enumerate(coef):
        xj = A(x[j]) if centre is None else A(x[j]) - A(centre[j])
        total += A(a) * xj
    return total


def _check_value(rep: Report, out: Affine, exact, points, where: str, lines: dict) -> None:
    """``exact(point) -> arb or None`` within the enclosure and every line of ``lines`` (per
    box ``i``: ``(A_lo, c_lo, A_hi, c_hi, centred)``), at each point of each box."""
    tagged = [[(x, i) for x in pts] for i, pts in enumerate(points)]
    _check_tagged(rep, out, lambda p: exact(p[0]), tagged, where, lines)


def _lines_of(out: Affine, boxes: Interval) -> dict:
    """The forward lines (centred) and the backward lines (in ``x``) of a ``[b]`` value."""
    lam_lo, c_lo = backward(out, upper=False)
    lam_up, c_up = backward(out, upper=True)
    fwd = (
        out.A_lo.T.tolist(),
        out.c_lo.tolist(),
        out.A_hi.T.tolist(),
        out.c_hi.tolist(),
        True,
    )
    bwd = (lam_lo.tolist(), c_lo.tolist(), (-lam_up).tolist(), (-c_up).tolist(), False)
    return {"forward": fwd, "backward": bwd}


def _box_points(rng, lo: np.ndarray, hi: np.ndarray, k: int = 3) -> list[list[tuple]]:
    n, d = lo.shape
    inner = np.stack([_interior(rng, lo[:, j], hi[:, j], k) for j in range(d)], axis=2)
    pts = []
    for i in range(n):
        corners = [tuple(float(c) for c in corner) for corner in _corners(lo[i], hi[i])]
        pts.append(corners + [tuple(float(v) for v in p) for p in inner[i]])
    return pts


def _corners(lo, hi):
    d = lo.shape[0]
    for mask in range(2**d):
        yield [hi[j] if mask >> j & 1 else lo[j] for j in range(d)]


# ------------------------------------------------------------------------------- compositions


def _composition_boxes(rng, n):
    centre = rng.uniform(-2.5, 2.5, (n, 2))
    width = 10.0 ** rng.uniform(-14.0, 0.0, (n, 2)) * (rng.random((n, 2)) < 0.95)
    lo, hi = centre - width * rng.random((n, 2)), centre + width * rng.random((n, 2))
    lo[:, 1], hi[:, 1] = np.clip(lo[:, 1], -2.9, 2.9), np.clip(hi[:, 1], -2.9, 2.9)
    return lo, hi


def check_composition(name: str, n: int, tier: str) -> Report:
    """Value and tangent of each composition on ``Affine`` inputs (the tangent seeds are exact
    constants), enclosure and both kinds of lines."""
    f = COMPOSITIONS[name]
    g = capture(lambda x, y: f(TorchOps, x, y), 2)
    rng = _rng("affine/" + name, tier)
    lo, hi = _composition_boxes(rng, n)
    t = rng.normal(size=(n, 2)) * (rng.random((n, 2)) < 0.9)
    boxes = Interval(_t(lo), _t(hi))
    X = Affine.from_boxes(boxes, tape=True)
    x, y = X[:, 0], X[:, 1]
    tx = Affine.constant(_t(t[:, 0]), X.space)
    ty = Affine.constant(_t(t[:, 1]), X.space)
    out = g.evaluate(Dual(x, tx), Dual(y, ty))
    rep = Report("affine " + name)
    points = _box_points(rng, lo, hi)

    @memo
    def at(x0, y0, i):
        return f(ArbOps, AD(A(x0), A(float(t[i, 0]))), AD(A(y0), A(float(t[i, 1]))))

    for part, which in ((out.value, "v"), (out.tangent, "d")):
        for_box = [[(p, i) for p in pts] for i, pts in enumerate(points)]
        lines = _lines_of(part, boxes)

        def exact(p, which=which):
            (x0, y0), i = p
            v = getattr(at(x0, y0, i), which)
            return None if v.is_nan() else v

        _check_tagged(rep, part, exact, for_box, f"{name} {which}", lines)
    return rep


def _check_tagged(rep, out, exact, tagged, where, lines):
    """Points ``(x, box index)``; ``exact`` takes such a pair (the oracle may need the box)."""
    lo, hi = out.lo.tolist(), out.hi.tolist()
    m = out.space.m.tolist()
    for i, pts in enumerate(tagged):
        rep.cases += 1
        for p in pts:
            x = p[0]
            here = f"{where} at {x!r} (box {i})"
            v = exact(p)
            if v is None:
                continue
            rep.check(lambda v=v: v, (), lo[i], hi[i], here + " enclosure")
            for kind, (a_lo, c_lo, a_hi, c_hi, centred) in lines.items():
                centre = m[i] if centred else None
                low = _exact_line(a_lo[i], c_lo[i], x, centre)
                high = _exact_line(a_hi[i], c_hi[i], x, centre)
                if not (low <= v):
                    rep.failures.append(f"{here}: {kind} lower line {low} above exact {v}")
                if not (v <= high):
                    rep.failures.append(f"{here}: {kind} upper line {high} below exact {v}")


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_linear_bounds_of_compositions(name):
    check_composition(name, FAST_N // 2, "fast").done(FAST_N // 2)


@slow
@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_linear_bounds_of_compositions_many(name):
    check_composition(name, SLOW_N // 8, "slow").done(SLOW_N // 8)


# ----------------------------------------------------------------------------------- networks


def _net_boxes(rng, n, radius=2.5):
    c = rng.uniform(-radius, radius, (n, 2))
    w = 10.0 ** rng.uniform(-8.0, 0.5, (n, 2))
    return c - w * rng.random((n, 2)), c + w * rng.random((n, 2))


def check_network(act: str, n: int, tier: str) -> Report:
    rng = _rng("affine-net/" + act, tier)
    net, params = make_net(act, (2, 12, 12, 1), seed=11)
    g = capture(net, 1)
    lo, hi = _net_boxes(rng, n)
    boxes = Interval(_t(lo), _t(hi))
    out = g.evaluate(Affine.from_boxes(boxes, tape=True))
    out = out.apply(torch.reshape, (n,))
    rep = Report(f"affine {act} network")

    @memo
    def exact(x):
        return net_arb(params, ACTIVATIONS[act][1], [AD(A(x[0])), AD(A(x[1]))])[0].v

    lines = _lines_of(out, boxes)
    lb = linear_bounds(g, boxes)  # the public entry point: its lines in x
    lines["linear_bounds"] = (
        lb.A_lo.tolist(),
        lb.c_lo.tolist(),
        lb.A_hi.tolist(),
        lb.c_hi.tolist(),
        False,
    )
    _check_value(rep, out, exact, _box_points(rng, lo, hi), act, lines)
    rep.require(bool((lb.lo <= lb.hi).all()), f"{act}: empty linear bound")
    return rep


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_linear_bounds_of_networks(act):
    check_network(act, 40, "fast").done(40)


@slow
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_linear_bounds_of_networks_many(act):
    check_network(act, 1500, "slow").done(1500)


# ------------------------------------------------------------------- closed-loop Lie derivatives


class _Loop(torch.nn.Module):
    """``f(x) = (x2, sin(x1) - 0.3 x2 + 2 tanh(k(x)))``, ``k`` a tanh network: a damped pendulum
    closed by a saturated neural controller."""

    def __init__(self, controller):
        super().__init__()
        self.k = controller

    def forward(self, x):
        u = 2.0 * torch.tanh(self.k(x))
        return torch.stack([x[:, 1], torch.sin(x[:, 0]) - 0.3 * x[:, 1] + u[:, 0]], dim=1)


def _loop_exact(k_params, x):
    u = 2 * ArbOps.tanh(net_arb(k_params, ArbOps.tanh, [AD(A(x[0])), AD(A(x[1]))])[0]).v
    return [A(x[1]), A(x[0]).sin() - A("0.3") * A(x[1]) + u]


def check_lie(act: str, n: int, tier: str) -> Report:
    """``dV/dt`` of a random network ``V`` along a random network closed loop, formed as the
    verifier forms it (forward mode through ``V`` with the field as the tangent)."""
    rng = _rng("affine-lie/" + act, tier)
    V, v_params = make_net(act, (2, 10, 10, 1), seed=5, scale=1.0)
    K, k_params = make_net("tanh", (2, 6, 1), seed=6, scale=1.0)
    loop = _Loop(K)
    assert torch.allclose(
        loop(torch.tensor([[0.1, 0.2]], dtype=torch.float64))[:, 0], torch.tensor([0.2]).double()
    )
    gv, gf = capture(V, 1), capture(loop, 1)

    def lie(x):
        out = gv.evaluate(Dual(x, gf.evaluate(x))).tangent
        return out.apply(torch.reshape, (out.shape[0],))

    lo, hi = _net_boxes(rng, n, radius=3.0)
    boxes = Interval(_t(lo), _t(hi))
    out = lie(Affine.from_boxes(boxes, tape=True))
    rep = Report(f"affine Lie derivative ({act} V)")

    @memo
    def exact(x):
        fx = _loop_exact(k_params, x)
        return net_arb(v_params, ACTIVATIONS[act][1], [AD(A(x[0]), fx[0]), AD(A(x[1]), fx[1])])[0].d

    _check_value(rep, out, exact, _box_points(rng, lo, hi), f"lie {act}", _lines_of(out, boxes))
    # the verifier's entry point (upper side only) gives the same bound
    cb = crown_bounds(lie, boxes, lower=False)
    rep.require(bool((cb.hi <= out.hi).all()), "crown_bounds: upper bound above the enclosure")
    return rep


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "relu"])
def test_linear_bounds_of_closed_loop_lie_derivatives(act):
    check_lie(act, 30, "fast").done(30)


@slow
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "relu"])
def test_linear_bounds_of_closed_loop_lie_derivatives_many(act):
    check_lie(act, 800, "slow").done(800)


# ----------------------------------------------------------------------- structure and tightness


def test_linear_bounds_are_tighter_than_intervals_on_networks():
    """On small boxes a tanh network's linear bounds are a fraction of the interval width
    (a fact of the relaxations, not of speed)."""
    net, _ = make_net("tanh", (2, 16, 16, 1), seed=3)
    g = capture(net, 1)
    gen = torch.Generator().manual_seed(0)
    c = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 4 - 2
    boxes = Interval(c - 0.01, c + 0.01)
    iv = g.evaluate(boxes)
    lb = linear_bounds(g, boxes)
    ratio = (lb.hi - lb.lo) / (iv.hi - iv.lo).reshape(-1)
    assert float(ratio.median()) < 0.25


def test_backward_needs_a_tape_and_a_batch_value():
    boxes = Interval(torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    X = Affine.from_boxes(boxes)
    with pytest.raises(ValueError, match="tape"):
        backward(X[:, 0], upper=True)
    X = Affine.from_boxes(boxes, tape=True)
    with pytest.raises(ValueError, match="shape"):
        backward(X, upper=True)


def test_infinite_enclosures_give_no_bound_not_a_wrong_one():
    """``exp`` overflowing float64 and a quotient by an interval around 0: the bounds are
    infinite (unknown), never NaN."""
    boxes = Interval(
        torch.tensor([[700.0, -1.0], [0.0, -1.0]], dtype=torch.float64),
        torch.tensor([[800.0, 1.0], [1.0, 1.0]], dtype=torch.float64),
    )

    def q(x):
        return (x[:, 0].exp() + 1.0 / x[:, 1]) * x[:, 1]

    lb = crown_bounds(q, boxes)
    for t in (lb.lo, lb.hi, lb.c_lo, lb.c_hi):
        assert not bool(torch.isnan(t).any())
    assert bool(torch.isinf(lb.hi).all()) and bool(torch.isinf(lb.lo).all())


def test_concretise_rounds_outward():
    lam = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    c = torch.tensor([0.1], dtype=torch.float64)
    boxes = Interval(
        torch.tensor([[0.1, 0.2]], dtype=torch.float64),
        torch.tensor([[0.3, 0.7]], dtype=torch.float64),
    )
    got = float(concretise(lam, c, boxes)[0])
    assert A(got) <= A(0.1) - A(0.7) + A(0.1)


def test_softplus_with_beta_and_leaky_relu_through_graphs():
    """Operations with parameters (softplus beta, leaky_relu slope, clamp) on Affine inputs."""

    def f(x):
        return (
            F.softplus(x[:, 0], beta=2.0)
            + F.leaky_relu(x[:, 1], 0.2)
            + torch.clamp(x[:, 0] * x[:, 1], -0.3, 0.4)
        )

    g = capture(f, 1)
    gen = torch.Generator().manual_seed(4)
    c = torch.rand(50, 2, generator=gen, dtype=torch.float64) * 4 - 2
    boxes = Interval(c - 0.05, c + 0.05)
    lb = crown_bounds(lambda z: g.evaluate(z), boxes)
    x = boxes.lo[:, None] + torch.rand(50, 64, 2, generator=gen, dtype=torch.float64) * 0.1
    vals = f(x.reshape(-1, 2)).reshape(50, 64)
    tol = 1e-12
    assert bool((lb.lo[:, None] <= vals + tol).all() and (vals - tol <= lb.hi[:, None]).all())
