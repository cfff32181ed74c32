"""The quadratic-form rule (``bounds.quadform``) and the square of one value (``x * x``).

Soundness against the arb oracle: on random boxes (straddling 0, tiny, wide, far from 0) and random
matrices (positive definite, badly scaled, indefinite, negative definite), ``e'Pe`` evaluated in
arb at the box's corners and at random interior floats lies in the graph's interval; the rule is
what makes a positive definite form positive near 0, where plain intervals are negative.
"""

from __future__ import annotations

import flint
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lyapcert.bounds import Dual, Interval, capture
from lyapcert.bounds.quadform import find_quadratic_forms, graph_quadratic_floor


class _Form(torch.nn.Module):
    def __init__(self, P, style: str = "matmul"):
        super().__init__()
        self.register_buffer("P", torch.as_tensor(P, dtype=torch.float64))
        self.style = style

    def forward(self, x):
        if self.style == "matmul":
            return ((x @ self.P) * x).sum(-1)
        if self.style == "torch":
            return torch.sum(torch.mul(x, torch.matmul(x, self.P)), dim=1)
        if self.style == "linear":  # x W' with W = P'
            return (F.linear(x, self.P.t().contiguous()) * x).sum(dim=-1)
        raise ValueError(self.style)


class _Centred(torch.nn.Module):
    """``|tanh(W x)|^2 + (x - c)' P (x - c)``: the shape of a Lyapunov network."""

    def __init__(self, P, c):
        super().__init__()
        self.register_buffer("P", torch.as_tensor(P, dtype=torch.float64))
        self.register_buffer("c", torch.as_tensor(c, dtype=torch.float64).reshape(1, -1))
        self.lin = torch.nn.Linear(len(c), 3).double()

    def forward(self, x):
        e = x - self.c
        d = torch.tanh(self.lin(x)) - torch.tanh(self.lin(self.c))
        return (d * d).sum(-1) + ((e @ self.P) * e).sum(-1)


def _matrix(kind: str, n: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = {
        "pd": rng.uniform(0.5, 2.0, n),
        "badly scaled": 10.0 ** rng.uniform(-4, 1, n),
        "indefinite": rng.uniform(-1, 1, n),
        "nd": -rng.uniform(0.1, 3.0, n),
    }[kind]
    P = q @ np.diag(eig) @ q.T
    if kind != "badly scaled":
        P = P + rng.normal(scale=0.3, size=(n, n)) * (kind == "indefinite")  # not symmetric
    return P


def _boxes(n: int, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.normal(size=(count, n)) * 10.0 ** rng.uniform(-6, 1, (count, 1))
    half = np.abs(rng.normal(size=(count, n))) * 10.0 ** rng.uniform(-8, 1, (count, 1))
    straddle = rng.random(count) < 0.4
    centre[straddle] *= 1e-3
    return centre - half, centre + half


def _arb_form(P: np.ndarray, x: np.ndarray):
    xs = [flint.arb(float(v)) for v in x]
    return sum(
        (flint.arb(float(P[i, j])) * xs[i] * xs[j] for i in range(len(x)) for j in range(len(x))),
        flint.arb(0),
    )


@pytest.mark.parametrize("kind", ["pd", "badly scaled", "indefinite", "nd"])
@pytest.mark.parametrize("style", ["matmul", "torch", "linear"])
def test_quadratic_form_encloses_the_arb_values(kind, style):
    rng = np.random.default_rng(abs(hash((kind, style))) % 2**32)
    n = 4
    P = _matrix(kind, n, rng)
    graph = capture(_Form(P, style), 1)
    assert len(graph.quadratic_forms) == 1
    lo, hi = _boxes(n, 300, rng)
    out = graph.evaluate(Interval(torch.as_tensor(lo), torch.as_tensor(hi)))
    flint.ctx.prec = 200
    for b in range(lo.shape[0]):
        corners = [np.where([(k >> i) & 1 for i in range(n)], hi[b], lo[b]) for k in range(2**n)]
        inner = [lo[b] + rng.random(n) * (hi[b] - lo[b]) for _ in range(8)]
        for x in corners + inner + [np.clip(np.zeros(n), lo[b], hi[b])]:
            v = _arb_form(P, x)
            assert float(out.lo[b]) <= v.lower(), (kind, b, x)
            assert v.upper() <= float(out.hi[b]), (kind, b, x)


def test_positive_definite_form_is_positive_near_zero():
    """On a box off 0 where a coordinate straddles 0, plain intervals give a negative lower
    bound for a positive definite form; the rule gives a positive one."""
    P = np.array([[1.0, 0.9], [0.9, 1.0]])  # eigenvalues 0.1 and 1.9
    graph = capture(_Form(P), 1)
    box = Interval(torch.tensor([[0.9, -0.5]]), torch.tensor([[1.1, 0.5]]))
    assert float(graph.evaluate(box).lo[0]) > 0.05  # >= 0.1 * 0.81 * (1 - rounding)
    graph.quadratic_forms.clear()
    assert float(graph.evaluate(box).lo[0]) < 0


def test_badly_scaled_form_uses_the_diagonal_scaling():
    P = np.diag([1e-4, 1.0])
    P[0, 1] = P[1, 0] = 5e-3  # S - t diag(S) positive definite for t up to 0.5
    graph = capture(_Form(P), 1)
    box = Interval(torch.tensor([[0.0, 0.9]]), torch.tensor([[0.1, 1.1]]))
    lo = float(graph.evaluate(box).lo[0])
    exact_min = min(
        P[1, 1] * y * y + 2 * P[0, 1] * x * y + P[0, 0] * x * x
        for x in np.linspace(0, 0.1, 101)
        for y in np.linspace(0.9, 1.1, 101)
    )
    assert 0.4 < lo <= exact_min  # lambda_min |e|^2 alone would give about 8e-5


def test_a_changed_matrix_is_proven_again():
    """The rule is proven for the constant the graph evaluates: a matrix changed after capture
    (a trained ``P``) is not bounded with the old proof."""
    graph = capture(_Form(np.eye(2)), 1)
    box = Interval(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
    assert float(graph.evaluate(box).lo[0]) == pytest.approx(2.0)
    with torch.no_grad():
        graph.module.P.copy_(torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    out = graph.evaluate(box)
    assert float(out.lo[0]) <= -2.0 <= float(out.hi[0])


def test_dual_value_is_tightened_and_tangent_kept():
    P = np.array([[2.0, 1.0], [1.0, 2.0]])
    graph = capture(_Form(P), 1)
    x = Interval(torch.tensor([[0.5, -0.5]]), torch.tensor([[1.0, 0.5]]))
    t = Interval(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    out = graph.evaluate(Dual(x, t))
    plain = capture(_Form(P), 1)
    plain.quadratic_forms.clear()
    ref = plain.evaluate(Dual(x, t))
    assert float(out.value.lo[0]) > float(ref.value.lo[0])
    assert float(out.value.lo[0]) > 0
    assert torch.equal(out.tangent.lo, ref.tangent.lo) and torch.equal(
        out.tangent.hi, ref.tangent.hi
    )


def test_no_pattern_without_a_constant_matrix_or_the_same_operand():
    class Other(torch.nn.Module):
        def forward(self, x):
            y = x * 2.0
            return ((x @ x.t()) * x).sum(-1) + ((y @ torch.eye(2, dtype=x.dtype)) * x).sum(-1)

    assert find_quadratic_forms(torch.fx.symbolic_trace(Other()).graph) == {}


def test_square_of_one_value_is_never_negative():
    graph = capture(lambda x: x * x, 1)
    out = graph.evaluate(Interval(torch.tensor([[-1.0, -2.0]]), torch.tensor([[2.0, -1.0]])))
    assert out.lo[0, 0] == 0.0 and 1.0 - 1e-15 <= float(out.lo[0, 1]) <= 1.0
    assert out.hi[0, 0] >= 4.0 and out.hi[0, 1] >= 4.0


def test_network_shaped_v_is_proven_positive_off_its_centre():
    """``V = |tanh(Wx) - tanh(Wc)|^2 + (x-c)'P(x-c)`` on boxes near ``c``: the lower bound is
    positive on every box that keeps its distance from ``c``, and below ``V`` at sampled points."""
    torch.manual_seed(0)
    c = [0.3, -0.2]
    P = np.array([[1.0, 0.4], [0.4, 0.5]])
    module = _Centred(P, c)
    graph = capture(module, 1)
    rng = np.random.default_rng(1)
    ct = np.array(c)
    for _ in range(200):
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        r = 10.0 ** rng.uniform(-5, 0)
        mid = ct + 2 * r * direction
        half = np.full(2, r * 0.5)
        box = Interval(torch.as_tensor(mid - half)[None], torch.as_tensor(mid + half)[None])
        out = graph.evaluate(box)
        assert float(out.lo[0]) > 0
        pts = torch.as_tensor(mid - half + rng.random((16, 2)) * 2 * half)
        with torch.no_grad():
            assert bool((module(pts) >= out.lo[0]).all())


def _floor_of(fn):
    graph = capture(fn, 1)
    return graph_quadratic_floor(graph.module, graph.quadratic_forms)


def test_graph_floor_of_a_network_shaped_v():
    """``V = |tanh(Wx) - tanh(Wc)|^2 + (x-c)'P(x-c)``: floor ``(x-c)' sym(P) (x-c)``, below ``V``
    at sampled points (exactly: their difference is the square)."""
    torch.manual_seed(0)
    c = [0.3, -0.2]
    P = np.array([[1.0, 0.4], [0.2, 0.5]])
    module = _Centred(P, c)
    centre, lo, hi = _floor_of(module)
    assert np.array_equal(centre, np.array(c))
    S = (P + P.T) / 2
    assert bool((lo <= S).all() and (hi >= S).all() and (lo < hi).all())
    x = torch.randn(2000, 2, dtype=torch.float64)
    e = x - torch.tensor(c)
    with torch.no_grad():
        assert bool((module(x) >= ((e @ torch.as_tensor(hi)) * e).sum(1) - 1e-12).all())


class _FormPlus(torch.nn.Module):
    """``x'x + extra(x)``."""

    def __init__(self, extra):
        super().__init__()
        self.register_buffer("P", torch.eye(2, dtype=torch.float64))
        self.extra = extra

    def forward(self, x):
        return ((x @ self.P) * x).sum(-1) + self.extra(x)


@pytest.mark.parametrize(
    "extra",
    [
        lambda x: torch.tanh(x[:, 0]),
        lambda x: -(x * x).sum(-1),
        lambda x: (x * (x + 1.0)).sum(-1),
    ],
    ids=["tanh term", "negative square", "product of two values"],
)
def test_no_graph_floor_when_a_term_may_be_negative(extra):
    assert _floor_of(_FormPlus(extra)) is None
    assert _floor_of(_FormPlus(lambda x: (x * x).sum(-1) * 0.5 + torch.exp(x[:, 1]))) is not None


def test_no_graph_floor_without_a_quadratic_form():
    assert _floor_of(lambda x: (x * x).sum(-1)) is None  # nonnegative, but no floor matrix


def test_no_graph_floor_for_two_centres():
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("P", torch.eye(2, dtype=torch.float64))
            self.register_buffer("a", torch.tensor([[0.0, 1.0]], dtype=torch.float64))
            self.register_buffer("b", torch.tensor([[1.0, 0.0]], dtype=torch.float64))

        def forward(self, x):
            e, d = x - self.a, x - self.b
            return ((e @ self.P) * e).sum(-1) + ((d @ self.P) * d).sum(-1)

    assert _floor_of(Two()) is None
