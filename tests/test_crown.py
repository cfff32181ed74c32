"""Linear bounds by backward propagation (``bounds.crown``): they enclose the network on every
box, and on linear pieces they are far tighter than intervals."""

import itertools

import pytest
import torch

from lyapcert.bounds.crown import linear_bounds
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval


def _net(act, widths=(2, 16, 16, 1), seed=0, final=None):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), act()]
    layers = layers[:-1]
    if final is not None:
        layers.append(final())
    return torch.nn.Sequential(*layers).double()


def _boxes(count, n, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    c = (torch.rand(count, n, generator=gen, dtype=torch.float64) - 0.5) * 2 * scale
    w = torch.rand(count, n, generator=gen, dtype=torch.float64) * scale
    return Interval(c - w, c + w)


@pytest.mark.parametrize("act", [torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.ReLU, torch.nn.Softplus])
@pytest.mark.parametrize("scale", [1e-6, 0.3, 3.0, 100.0])
def test_linear_bounds_enclose_the_network(act, scale):
    net = _net(act, final=torch.nn.Sigmoid if act is torch.nn.Tanh else None)
    graph = capture(net, 1)
    boxes = _boxes(64, 2, seed=1, scale=scale)
    lb = linear_bounds(graph, boxes)
    gen = torch.Generator().manual_seed(2)
    t = torch.rand(64, 200, 2, generator=gen, dtype=torch.float64)
    x = boxes.lo[:, None] + t * (boxes.hi - boxes.lo)[:, None]
    x = torch.cat([x, boxes.lo[:, None], boxes.hi[:, None]], dim=1)
    with torch.no_grad():
        f = net(x.reshape(-1, 2)).reshape(64, -1)
    tol = 1e-12 * (1 + f.abs())  # the float evaluation of f itself is rounded
    assert bool((lb.lo[:, None] <= f + tol).all() and (f - tol <= lb.hi[:, None]).all())
    lin_lo = (lb.A_lo[:, None, :] * x).sum(-1) + lb.c_lo[:, None]
    lin_hi = (lb.A_hi[:, None, :] * x).sum(-1) + lb.c_hi[:, None]
    assert bool((lin_lo <= f + tol).all() and (f - tol <= lin_hi).all())
    assert bool((lb.lo <= lb.hi).all())


def test_a_linear_network_is_bounded_almost_exactly():
    net = _net(torch.nn.Identity, widths=(2, 32, 32, 1))
    graph = capture(net, 1)
    boxes = _boxes(16, 2, seed=3, scale=1.0)
    lb = linear_bounds(graph, boxes)
    iv = graph.evaluate(boxes)
    crown_width = lb.hi - lb.lo
    interval_width = (iv.hi - iv.lo).reshape(-1)
    assert bool((crown_width <= 0.5 * interval_width).all())


def test_the_published_sigmoid_v_is_enclosed():
    """The shared pendulum V (ONNX: linear, tanh, sigmoid, a constant subtracted, a column)."""
    from pathlib import Path

    import lyapcert
    from lyapcert.certificates import load_candidate

    s = lyapcert.get_system("inverted_pendulum-wide")
    path = Path(__file__).parent / "data" / "twostage" / "pendulum_bigtorque_seed0_V.onnx"
    V = load_candidate(str(path), s)
    graph = capture(V.value_function(), 1)
    boxes = _boxes(32, 2, seed=4, scale=2.0)
    lb = linear_bounds(graph, boxes)
    gen = torch.Generator().manual_seed(5)
    x = (
        boxes.lo[:, None]
        + torch.rand(32, 100, 2, generator=gen, dtype=torch.float64)
        * (boxes.hi - boxes.lo)[:, None]
    )
    with torch.no_grad():
        f = V.value(x.reshape(-1, 2)).reshape(32, -1)
    assert bool((lb.lo[:, None] <= f + 1e-12).all() and (f - 1e-12 <= lb.hi[:, None]).all())


def test_linear_bounds_hold_for_the_real_function_against_arb():
    """The claim is about the real function (exact arithmetic) and the stored float
    coefficients: a tanh/sigmoid network evaluated in arb (200 bits) at sample points of each
    box lies within ``A_lo x + c_lo`` and ``A_hi x + c_hi`` evaluated exactly in arb."""
    flint = pytest.importorskip("flint")
    flint.ctx.prec = 200
    arb = flint.arb
    net = _net(torch.nn.Tanh, widths=(2, 8, 8, 1), seed=7, final=torch.nn.Sigmoid)
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = [(m.weight.detach().tolist(), m.bias.detach().tolist()) for m in layers]

    def f_arb(x):
        h = [arb(v) for v in x]
        for i, (W, b) in enumerate(weights):
            h = [sum((arb(w) * v for w, v in zip(row, h)), arb(bi)) for row, bi in zip(W, b)]
            if i < len(weights) - 1:
                h = [v.tanh() for v in h]
        z = h[0]
        return 1 / (1 + (-z).exp())

    graph = capture(net, 1)
    boxes = _boxes(12, 2, seed=8, scale=1.5)
    lb = linear_bounds(graph, boxes)
    gen = torch.Generator().manual_seed(9)
    for i in range(12):
        lo, hi = boxes.lo[i], boxes.hi[i]
        pts = [lo, hi] + [
            lo + torch.rand(2, generator=gen, dtype=torch.float64) * (hi - lo) for _ in range(8)
        ]
        for p in pts:
            x = [float(v) for v in p]
            fx = f_arb(x)
            low = sum(
                (arb(float(a)) * arb(v) for a, v in zip(lb.A_lo[i], x)), arb(float(lb.c_lo[i]))
            )
            up = sum(
                (arb(float(a)) * arb(v) for a, v in zip(lb.A_hi[i], x)), arb(float(lb.c_hi[i]))
            )
            assert low.upper() <= fx.lower() and fx.upper() <= up.lower()
            assert arb(float(lb.lo[i])) <= fx.lower() and fx.upper() <= arb(float(lb.hi[i]))
