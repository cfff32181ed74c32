"""Imported controllers are the functions their files compute (issue 12).

TorchScript files are read op by op from their graph (never rebuilt from layer names) and
checked against the file on 10^4 points; ONNX operations follow the ONNX semantics (Softplus has
no threshold; every numeric form of Constant), checked against onnxruntime in float64 where it
implements the op and against ``onnx.reference.ReferenceEvaluator`` (the spec in numpy) where
it does not. torch's thresholded softplus (a jump at the switch) is enclosed by the bound engine,
checked against arb on dense samples across the switch.
"""

from __future__ import annotations

import json
import math
import warnings

import flint
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lyapcert
from lyapcert.bounds import forms
from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from lyapcert.control import lqr
from lyapcert.control.imported import OnnxController, load_controller
from lyapcert.errors import ControllerError
from lyapcert.methods import get_method
from lyapcert.verify import verify_candidate

flint.ctx.prec = 200
A = flint.arb
EPS = 2.0**-52


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _t(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _box_points(system, n=10_000, seed=0):
    lo, hi = system.domain.as_tensors()
    g = torch.Generator().manual_seed(seed)
    x = lo + torch.rand(n, system.n_states, generator=g, dtype=torch.float64) * (hi - lo)
    return torch.cat([system.equilibrium_tensor().reshape(1, -1), lo.reshape(1, -1), x])


# ------------------------------------------------------------------ softplus with a threshold


def _arb_softplus_branches(x: float, beta: float, threshold: float) -> list:
    """The exact values the thresholded softplus may take at ``x`` (both near the switch)."""
    z = A(x) * A(beta)
    smooth = (z.exp() + 1).log() / A(beta) if z < 700 else None
    out = [] if smooth is None else [smooth]
    if not (z < threshold):  # identity branch possible (z > threshold, or z within arb error)
        out.append(A(x))
    return out


def _contains(ball, lo: float, hi: float) -> bool:
    return bool(ball.lower() >= lo) and bool(ball.upper() <= hi)


@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, -5.0), (1.0, -5.0), (0.37, 3.0)])
def test_thresholded_softplus_interval_encloses_both_branches_across_the_switch(beta, threshold):
    rng = np.random.default_rng(int(beta * 100) + int(threshold) + 50)
    switch = threshold / beta
    widths = 10.0 ** rng.uniform(-15, 1, 300)
    centres = switch + rng.normal(size=300) * widths
    lo, hi = centres - widths * rng.uniform(0, 1, 300), centres + widths * rng.uniform(0, 1, 300)
    out = Interval(_t(lo), _t(hi)).softplus(beta, threshold)
    for i in range(lo.size):
        xs = np.concatenate([[lo[i], hi[i]], np.linspace(lo[i], hi[i], 30)])
        if lo[i] <= switch <= hi[i]:  # the floats on both sides of the switch
            xs = np.concatenate([xs, [np.nextafter(switch, -np.inf), switch]])
            xs = np.concatenate([xs, [np.nextafter(switch, np.inf)]])
        xs = xs[(xs >= lo[i]) & (xs <= hi[i])]
        torch_values = F.softplus(_t(xs), beta, threshold)
        olo, ohi = out.lo[i].item(), out.hi[i].item()
        assert bool(((torch_values >= olo) & (torch_values <= ohi)).all()), (lo[i], hi[i])
        for x in xs:
            for ball in _arb_softplus_branches(float(x), beta, threshold):
                assert _contains(ball, olo, ohi), (x, ball, olo, ohi)


def test_negative_threshold_softplus_can_be_negative():
    """threshold = -5: softplus(x) = x on (-5, 0), negative (the old bound clamped at 0)."""
    out = Interval(_t([-4.0]), _t([-1.0])).softplus(1.0, -5.0)
    assert out.lo.item() <= -4.0 and out.hi.item() >= -1.0
    assert F.softplus(_t([-3.0]), 1.0, -5.0).item() == -3.0


def test_smooth_softplus_encloses_log1p_exp_everywhere():
    """threshold = inf (ONNX's Softplus): log(1 + exp(x)) itself, also far above 20."""
    xs = np.concatenate([np.linspace(-50, 50, 401), [30.0, 36.9, 37.1, 100.0, 700.0, 750.0]])
    out = Interval(_t(xs), _t(xs)).softplus(1.0, math.inf)
    for i, x in enumerate(xs):
        exact = (A(x).exp() + 1).log()
        assert _contains(exact, out.lo[i].item(), out.hi[i].item()), x
    assert bool((out.lo[_t(xs) == 30.0] > 30.0).all())  # not the identity


@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, -5.0)])
def test_softplus_derivative_is_unbounded_where_the_switch_may_lie_inside(beta, threshold):
    switch = threshold / beta
    boxes = [
        (switch - 1.0, switch + 1.0),  # straddles: unbounded
        (switch - 1e-12, switch),  # touches: unbounded
        (switch - 3.0, switch - 1.0),  # below: sigmoid(beta x)
        (switch + 1.0, switch + 4.0),  # above: 1 (and the smooth branch's slope)
    ]
    lo, hi = _t([b[0] for b in boxes]), _t([b[1] for b in boxes])
    one = torch.ones(len(boxes), dtype=torch.float64)
    d = Dual(Interval(lo, hi), Interval(one, one)).softplus(beta, threshold)
    assert bool(torch.isinf(d.tangent.lo[:2]).all() and torch.isinf(d.tangent.hi[:2]).all())
    for i in (2, 3):
        for x in np.linspace(boxes[i][0], boxes[i][1], 50):
            z = A(x) * A(beta)
            slope = 1 / (1 + (-z).exp())
            assert _contains(slope, d.tangent.lo[i].item(), d.tangent.hi[i].item())
        if i == 3:  # the identity branch's slope 1
            assert d.tangent.lo[i].item() <= 1.0 <= d.tangent.hi[i].item()
    # second derivative above the switch: the identity branch's 0 is inside
    inner = Dual(Interval(lo, hi), Interval(one, one))
    zero = torch.zeros_like(one)
    outer = Dual(Interval(one, one), Interval(zero, zero))
    dd = Dual(inner, outer).softplus(beta, threshold).tangent.tangent
    assert dd.lo[3].item() <= 0.0 <= dd.hi[3].item()
    assert bool(torch.isinf(dd.lo[:2]).all())


def test_mean_value_bounds_through_a_thresholded_softplus_contain_torch_values():
    g = capture(nn.Softplus(beta=2.0, threshold=-5.0), 1)
    lo = _t([[-3.0], [-2.6], [-2.5], [-10.0], [0.0]])
    hi = _t([[-2.0], [-2.4], [-2.5 + 1e-9], [-3.0], [4.0]])
    box = Interval(lo, hi)
    for bounds in (forms.best_bounds(g.evaluate, box), forms.mean_value_bounds(g.evaluate, box)):
        for i in range(lo.shape[0]):
            xs = torch.linspace(lo[i, 0].item(), hi[i, 0].item(), 2001, dtype=torch.float64)
            v = F.softplus(xs, 2.0, -5.0)
            assert bool((v >= bounds.lo[i]).all() and (v <= bounds.hi[i]).all()), i


# ------------------------------------------------------------------ TorchScript


class Tanh(nn.Module):
    """A user's own class that happens to be called Tanh."""

    def forward(self, x):
        return torch.tanh(x) - 0.6 * x


class Centered(nn.Module):
    """``net(x) - net(x*)``: gives u* = 0 at x* = 0 whatever the layers."""

    def __init__(self, net: nn.Module, n: int):
        super().__init__()
        self.net = net
        self.register_buffer("x0", torch.zeros(1, n, dtype=torch.float64))

    def forward(self, x):
        return self.net(x) - self.net(self.x0)


def _layers_with_attributes():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(2, 6),
        nn.Softplus(beta=2.0, threshold=-5.0),
        nn.Linear(6, 6),
        nn.LeakyReLU(0.3),
        nn.Linear(6, 6),
        nn.Hardtanh(-0.4, 0.7),
        nn.Linear(6, 6),
        nn.ELU(alpha=0.25),
        nn.Linear(6, 6),
        nn.Softplus(beta=0.5, threshold=1.0),
        nn.Linear(6, 1),
    ).double()


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_with_non_default_attributes_is_exactly_the_file(tmp_path, how):
    system = lyapcert.get_system("inverted_pendulum")
    model = Centered(_layers_with_attributes(), 2).eval()
    x = _box_points(system)
    if how == "script":
        saved = torch.jit.script(model)
    else:
        saved = torch.jit.trace(model, (x[:4],))
    saved.save(str(tmp_path / "k.pt"))
    imported = load_controller(tmp_path / "k.pt", system)
    file = torch.jit.load(str(tmp_path / "k.pt")).double()
    with torch.no_grad():
        ours = imported.inner(x)
        theirs = file(x)
        assert torch.equal(ours, theirs)  # the same kernels in the same order
        torch.testing.assert_close(imported(x), torch.clamp(model(x), -6.0, 6.0), rtol=0, atol=0)
    # the bound engine captures the imported function and encloses it
    g = capture(imported, 1)
    boxes = Interval(x[:200] - 0.05, x[:200] + 0.05)
    b = forms.best_bounds(g.evaluate, boxes)
    with torch.no_grad():
        for shift in (-0.05, 0.0, 0.05):
            u = imported(x[:200] + shift).reshape(-1)
            assert bool((u >= b.lo).all() and (u <= b.hi).all())


def test_torchscript_softplus_threshold_is_not_replaced_by_the_default(tmp_path):
    """The review's case: Softplus(threshold=-5) gives u(0) = 2.079 in the file (the identity
    branch), a rebuilt default Softplus would give another value; the file's value is refused as
    not u* = 0."""
    lin = nn.Linear(2, 1).double()
    with torch.no_grad():
        lin.weight.copy_(_t([[-1.0, -1.0]]))
        lin.bias.fill_(2.079)
    torch.jit.script(nn.Sequential(lin, nn.Softplus(threshold=-5))).save(str(tmp_path / "k.pt"))
    system = lyapcert.get_system("inverted_pendulum")
    with pytest.raises(ControllerError, match=r"2\.079.*expected u\*"):
        load_controller(tmp_path / "k.pt", system)


def test_a_custom_class_named_tanh_is_what_it_computes_never_nn_tanh(tmp_path):
    system = lyapcert.get_system("inverted_pendulum")
    model = nn.Sequential(nn.Linear(2, 3), Tanh(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].bias.zero_()
        model[2].bias.zero_()
    torch.jit.script(model).save(str(tmp_path / "k.pt"))
    imported = load_controller(tmp_path / "k.pt", system)
    x = _box_points(system)
    with torch.no_grad():
        fake = model[2](torch.tanh(model[0](x)))
        assert torch.equal(imported.inner(x), model(x))
        assert float((imported.inner(x) - fake).abs().max()) > 0.1


def _fake_and_real(tmp_path, slope: float):
    """u = act(s) with s = -K x: ``nn.Tanh`` (the fake) or a class named Tanh computing
    tanh(s) - slope * s (the real one, saved as TorchScript and imported)."""

    class Tanh(nn.Module):  # the name is the point
        def __init__(self, slope: float):
            super().__init__()
            self.slope = slope

        def forward(self, x):
            return torch.tanh(x) - self.slope * x

    system = lyapcert.get_system("inverted_pendulum")
    lin = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(-3.0 * lqr(system).K)
    fake = nn.Sequential(lin, nn.Tanh(), nn.Linear(1, 1, bias=False).double())
    real = nn.Sequential(lin, Tanh(slope), nn.Linear(1, 1, bias=False).double())
    with torch.no_grad():
        fake[2].weight.fill_(6.0)
        real[2].weight.fill_(6.0)
    torch.jit.script(real).save(str(tmp_path / "real.pt"))
    return system, fake, load_controller(tmp_path / "real.pt", system)


def test_an_unstable_loop_behind_a_class_named_tanh_is_never_verified(tmp_path):
    """tanh(s) - 2 s: positive feedback at x* (slope -1). The certificate of the loop with
    nn.Tanh in its place is VERIFIED; with the file's real function it must not be."""
    system, fake, real = _fake_and_real(tmp_path, 2.0)
    method = get_method("quadratic")
    fit = method.fit(system.closed_loop(fake), method.Options())
    assert verify_candidate(system.closed_loop(fake), fit.candidate).verified
    res = verify_candidate(system.closed_loop(real), fit.candidate)
    assert not res.verified


@pytest.mark.slow
def test_tanh_minus_0_6_x_loop_is_certified_only_where_it_converges(tmp_path):
    """tanh(s) - 0.6 s has the wrong sign for |s| > 1.2: the nn.Tanh loop's certificate does not
    carry over, and what the verifier proves for the real loop (its own quadratic candidate)
    holds: every sampled state of the certified set converges (simulated)."""
    system, fake, real = _fake_and_real(tmp_path, 0.6)
    method = get_method("quadratic")
    fit = method.fit(system.closed_loop(fake), method.Options())
    assert verify_candidate(system.closed_loop(fake), fit.candidate).verified
    assert not verify_candidate(system.closed_loop(real), fit.candidate).verified
    own = method.fit(system.closed_loop(real), method.Options())
    res = verify_candidate(system.closed_loop(real), own.candidate)
    if not res.verified:
        return
    x = _box_points(system, 4000, seed=5)
    with torch.no_grad():
        inside = x[own.candidate.value(x).reshape(-1) <= res.level]
        assert inside.shape[0] > 0
        dt = 0.01
        for _ in range(3000):  # explicit Euler; the closed loop is smooth and slow
            inside = inside + dt * system.f(inside, real(inside))
    assert float(inside.abs().max()) < 1e-2


def test_unsupported_torchscript_ops_are_all_named_at_once(tmp_path):
    class Odd(nn.Module):
        def forward(self, x):
            y = torch.floor(x) + torch.erf(x) * torch.frac(x)
            return y[:, :1]

    torch.jit.script(Odd()).save(str(tmp_path / "odd.pt"))
    with pytest.raises(ControllerError) as info:
        load_controller(tmp_path / "odd.pt", lyapcert.get_system("inverted_pendulum"))
    for op in ("aten::floor", "aten::erf", "aten::frac"):
        assert op in str(info.value)


def test_state_dependent_control_flow_is_refused(tmp_path):
    class Branchy(nn.Module):
        def forward(self, x):
            if bool(x.sum() > 0):
                return x[:, :1]
            return -x[:, :1]

    torch.jit.script(Branchy()).save(str(tmp_path / "b.pt"))
    with pytest.raises(ControllerError, match="prim::If"):
        load_controller(tmp_path / "b.pt", lyapcert.get_system("inverted_pendulum"))


def test_a_mismatch_with_the_file_is_refused():
    """The second guard: a built function that differs from the file is refused."""
    from lyapcert.control.imported import check_matches_file

    system = lyapcert.get_system("inverted_pendulum")
    seq = nn.Sequential(nn.Linear(2, 1), nn.Softplus(threshold=-5.0)).double()
    wrong = nn.Sequential(seq[0], nn.Softplus()).double()
    with pytest.raises(ControllerError, match="differs from the file"):
        check_matches_file(wrong, torch.jit.script(seq), system, "k.pt")
    check_matches_file(seq, torch.jit.script(seq), system, "k.pt")  # the same: accepted


# ------------------------------------------------------------------ ONNX


def _onnx_model(nodes, inits=(), elem=None, n_in=2, n_out=1, opset=17):
    from onnx import TensorProto, helper

    elem = TensorProto.DOUBLE if elem is None else elem
    x = helper.make_tensor_value_info("x", elem, [None, n_in])
    u = helper.make_tensor_value_info("u", elem, [None, n_out])
    graph = helper.make_graph(nodes, "g", [x], [u], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ours(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return OnnxController(model).double()(_t(x)).numpy()


def _init(name, value):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=np.float64), name)


def test_onnx_gemm_matmul_add_relu_tanh_sigmoid_clip_match_onnxruntime_in_float64():
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], alpha=0.7, beta=1.3, transB=1),
        helper.make_node("Tanh", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "W2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["h3"]),
        helper.make_node("Relu", ["h3"], ["a3"]),
        helper.make_node("Constant", [], ["k"], value=_init("k", rng.normal(size=4))),
        helper.make_node("Mul", ["a3", "k"], ["h4"]),
        helper.make_node("Sigmoid", ["h4"], ["a4"]),
        helper.make_node("LeakyRelu", ["h3"], ["a5"], alpha=0.2),
        helper.make_node("Sub", ["a4", "a5"], ["h6"]),
        helper.make_node("Clip", ["h6", "", "cmax"], ["h7"]),  # min omitted
        helper.make_node("Gemm", ["h7", "W3"], ["u"]),
    ]
    inits = [
        _init("W1", rng.normal(size=(4, 2))),
        _init("b1", rng.normal(size=4)),
        _init("W2", rng.normal(size=(4, 4))),
        _init("b2", rng.normal(size=(1, 4))),
        _init("cmax", 0.5),
        _init("W3", rng.normal(size=(4, 1))),
    ]
    model = _onnx_model(nodes, inits)
    x = rng.uniform(-5, 5, (10_000, 2))
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert ref.dtype == np.float64
    np.testing.assert_allclose(_ours(model, x), ref, rtol=8 * EPS, atol=8 * EPS * np.abs(ref).max())


def test_onnx_softplus_has_no_threshold_and_matches_the_reference_in_float64():
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    nodes = [
        helper.make_node("Softplus", ["x"], ["s"]),
        helper.make_node("Elu", ["s"], ["e"], alpha=0.4),
        helper.make_node("Sub", ["e", "x"], ["u"]),
    ]
    model = _onnx_model(nodes, n_out=2)
    x = np.concatenate([np.random.default_rng(2).uniform(-40, 40, (10_000, 2)), [[30.0, 25.0]]])
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert ref.dtype == np.float64
    ours = _ours(model, x)
    np.testing.assert_allclose(ours, ref, rtol=8 * EPS, atol=8 * EPS)
    # at 30, log(1 + exp(30)) - 30 = 9.4e-14 (torch's default softplus returns 30 itself)
    assert ours[-1, 0] == pytest.approx(float((A(30).exp() + 1).log() - 30), rel=1e-3)
    g = capture(
        OnnxController(_onnx_model([helper.make_node("Softplus", ["x"], ["u"])], n_out=2)), 1
    )
    xs = _t([[20.5, 36.0], [100.0, -3.0]])
    out = g.evaluate(Interval(xs, xs))
    for (i, j), v in np.ndenumerate(xs.numpy()):
        assert _contains((A(float(v)).exp() + 1).log(), out.lo[i, j].item(), out.hi[i, j].item())


def test_onnx_constant_in_every_numeric_form():
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    f32 = np.array([0.25, -1.5], dtype=np.float32)
    nodes = [
        helper.make_node(
            "Constant", [], ["c0"], value=helper.make_tensor("t", TensorProto.FLOAT, [2], f32)
        ),
        helper.make_node("Constant", [], ["c1"], value_float=0.1),
        helper.make_node("Constant", [], ["c2"], value_floats=[0.3, -0.7]),
        helper.make_node("Constant", [], ["c3"], value_int=3),
        helper.make_node("Constant", [], ["c4"], value_ints=[2, -5]),
        helper.make_node("Mul", ["x", "c0"], ["h0"]),
        helper.make_node("Add", ["h0", "c1"], ["h1"]),
        helper.make_node("Mul", ["h1", "c2"], ["h2"]),
        helper.make_node("Div", ["h2", "c3"], ["h3"]),
        helper.make_node("Sub", ["h3", "c4"], ["u"]),
    ]
    model = _onnx_model(nodes, elem=TensorProto.FLOAT, n_out=2)
    x = np.random.default_rng(3).uniform(-3, 3, (10_000, 2))
    # the spec in float64 by hand (the constants are the float32 / int values the file holds)
    c1, c2 = np.float64(np.float32(0.1)), np.array([0.3, -0.7], dtype=np.float32).astype(float)
    ref = (x * f32.astype(float) + c1) * c2 / 3.0 - np.array([2.0, -5.0])
    np.testing.assert_allclose(_ours(model, x), ref, rtol=4 * EPS, atol=4 * EPS)
    # and the reference evaluator of onnx on the float forms (int constants need a Cast there)
    float_only = _onnx_model(
        nodes[:3] + nodes[5:8] + [helper.make_node("Identity", ["h2"], ["u"])],
        elem=TensorProto.FLOAT,
        n_out=2,
    )
    ref32 = ReferenceEvaluator(float_only).run(None, {"x": x.astype(np.float32)})[0]
    ours = _ours(float_only, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(ours, ref32, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["value_string", "value_strings", "sparse_value"])
def test_onnx_constant_that_is_not_a_number_is_a_typed_error(form):
    from onnx import TensorProto, helper

    if form == "sparse_value":
        values = helper.make_tensor("v", TensorProto.DOUBLE, [1], [1.0])
        indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
        attr = {form: helper.make_sparse_tensor(values, indices, [2])}
    else:
        attr = {form: "a" if form == "value_string" else ["a", "b"]}
    nodes = [
        helper.make_node("Constant", [], ["c"], **attr),
        helper.make_node("Identity", ["x"], ["u"]),
    ]
    with pytest.raises(ControllerError, match="Constant"):
        OnnxController(_onnx_model(nodes, n_out=2))


def test_cli_with_an_unsupported_model_exits_2_with_a_json_error_and_writes_nothing(tmp_path):
    from onnx import helper
    from typer.testing import CliRunner

    from lyapcert.cli import app

    bad_onnx = tmp_path / "bad.onnx"
    nodes = [
        helper.make_node("Constant", [], ["c"], value_string="x"),
        helper.make_node("Identity", ["x"], ["u"]),
    ]
    bad_onnx.write_bytes(_onnx_model(nodes, n_out=1).SerializeToString())

    class Odd(nn.Module):
        def forward(self, x):
            return torch.floor(x[:, :1])

    bad_ts = tmp_path / "bad.pt"
    torch.jit.script(Odd()).save(str(bad_ts))
    runner = CliRunner()
    for path in (bad_onnx, bad_ts):
        out = tmp_path / f"cert-{path.suffix[1:]}"
        r = runner.invoke(
            app,
            [
                "certify",
                "inverted_pendulum",
                "--controller",
                str(path),
                "--out",
                str(out),
                "--json",
            ],
        )
        assert r.exit_code == 2, r.output
        record = json.loads(r.stdout)
        assert record["error_type"] == "ControllerError" and record["error"]
        assert not out.exists()
