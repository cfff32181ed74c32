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
