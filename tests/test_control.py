"""Controllers: LQR, neural, imported (ONNX checked against onnxruntime, TorchScript), and the
checks that refuse unusable ones."""

import numpy as np
import pytest
import torch

import lyapcert
from lyapcert.control import LinearController, NeuralController, check_controller, lqr
from lyapcert.control.imported import load_controller
from lyapcert.errors import ControllerError
from lyapcert.methods import get_method
from lyapcert.verify import verify_candidate
from model_files import export_model


def _quadratic_closed_loop(system, controller):
    method = get_method("quadratic")
    closed = system.closed_loop(controller)
    fit = method.fit(closed, method.Options())
    return fit.candidate, verify_candidate(closed, fit.candidate)


@pytest.mark.parametrize("name", ["inverted_pendulum", "double_integrator", "inverted_pendulum-dt"])
def test_lqr_and_quadratic_certificate_verify(name):
    system = lyapcert.get_system(name)
    k = lqr(system)
    check_controller(k, system)
    _, result = _quadratic_closed_loop(system, k)
    assert result.verified and result.hole is None and result.level > 0
    # saturation: the controller never leaves the input bounds
    lo, hi = system.domain.as_tensors()
    x = lo + torch.rand(2000, system.n_states, dtype=torch.float64) * (hi - lo)
    u = k(x)
    assert bool((u >= torch.tensor(system.input_bounds.lower)).all())
    assert bool((u <= torch.tensor(system.input_bounds.upper)).all())


def test_lqr_gain_of_the_double_integrator_is_known():
    # Q = I, R = 1: K = [1, sqrt(3)] (the Riccati equation in closed form)
    k = lqr(lyapcert.get_system("double_integrator"))
    np.testing.assert_allclose(k.K.numpy(), [[1.0, np.sqrt(3.0)]], rtol=1e-9)


def test_neural_controller_gives_u_star_at_x_star_exactly():
    system = lyapcert.get_system("path_tracking")  # u* = 0.1, not zero
    ib = system.input_bounds
    k = NeuralController(2, 1, system.equilibrium, system.equilibrium_input, ib.lower, ib.upper)
    with torch.no_grad():
        for p in k.parameters():
            p.normal_()
        assert k(system.equilibrium_tensor()).item() == system.equilibrium_input[0]
    check_controller(k, system)


def test_bad_controllers_are_refused_with_the_reason():
    system = lyapcert.get_system("inverted_pendulum")
    wrong_shape = LinearController(np.ones((2, 2)), [0, 0], [0, 0])
    with pytest.raises(ControllerError, match=r"shape \[batch, 1\]"):
        check_controller(wrong_shape, system)
    offset = LinearController(np.ones((1, 2)), [0, 0], [0.5])
    with pytest.raises(ControllerError, match="expected u\\*"):
        check_controller(offset, system)
    with pytest.raises(ControllerError, match="no inputs"):
        check_controller(offset, lyapcert.get_system("vanderpol"))


def _export_onnx(module, n, path):
    export_model(module, path, n, outputs=("u",))


def test_onnx_round_trip_matches_onnxruntime_and_certifies_the_same(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    system = lyapcert.get_system("inverted_pendulum")
    k = lqr(system)
    # a neural controller close to LQR (so that the closed loop is certifiable)
    ib = system.input_bounds
    torch.manual_seed(0)
    nc = NeuralController(2, 1, system.equilibrium, system.equilibrium_input, ib.lower, ib.upper)
    with torch.no_grad():
        nc.g[-1].weight.mul_(0.01)
        extra = torch.nn.Linear(2, 1).double()
        extra.weight.copy_(-k.K)
        extra.bias.zero_()
    model = torch.nn.Sequential()  # u = clamp(-Kx + small network)

    class Combined(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nc, self.lin = nc, extra

        def forward(self, x):
            return torch.clamp(self.nc.g(x) - self.nc.g(self.nc.x_star) + self.lin(x), -6.0, 6.0)

    model = Combined().double()
    path = tmp_path / "controller.onnx"
    _export_onnx(model, 2, path)
    imported = load_controller(path, system)

    x = (torch.rand(4096, 2, dtype=torch.float64) - 0.5) * 24
    reference = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ours = imported(x).numpy()
        original = model(x).numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, original, rtol=0, atol=1e-12)

    _, res_a = _quadratic_closed_loop(system, model)
    _, res_b = _quadratic_closed_loop(system, imported)
    assert res_a.verified and res_b.verified
    assert res_b.level == pytest.approx(res_a.level, rel=1e-6)


def test_onnx_with_an_unsupported_operation_is_refused(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2])
    u = helper.make_tensor_value_info("u", TensorProto.DOUBLE, [None, 2])
    graph = helper.make_graph([helper.make_node("Cos", ["x"], ["u"])], "g", [x], [u])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "cos.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ControllerError, match=r"unsupported ONNX operation.*Cos"):
        load_controller(path, lyapcert.get_system("inverted_pendulum"))


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".txt"])
def test_a_file_that_is_not_a_model_is_refused(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_text("not a model")
    with pytest.raises(ControllerError, match=r"not a|unknown controller file type"):
        load_controller(path, lyapcert.get_system("inverted_pendulum"))
    with pytest.raises(ControllerError, match="no such"):
        load_controller(tmp_path / "missing.onnx", lyapcert.get_system("inverted_pendulum"))


def test_torchscript_is_read_op_by_op_and_unsupported_code_refused(tmp_path):
    system = lyapcert.get_system("double_integrator")
    k = lqr(system)
    seq = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    seq = seq.double()
    with torch.no_grad():
        seq[0].bias.zero_()
        seq[2].bias.zero_()
    torch.jit.script(seq).save(str(tmp_path / "k.pt"))
    imported = load_controller(tmp_path / "k.pt", system)
    x = torch.randn(100, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), torch.clamp(seq(x), -1.0, 1.0))
    # a module of our own code is read op by op (its graph), not by its class name
    torch.jit.script(k).save(str(tmp_path / "lqr.pt"))
    with torch.no_grad():
        torch.testing.assert_close(
            load_controller(tmp_path / "lqr.pt", system)(x), k(x), rtol=0, atol=0
        )

    class Floor(torch.nn.Module):
        def forward(self, x):
            return torch.floor(x[:, :1])

    torch.jit.script(Floor()).save(str(tmp_path / "custom.pt"))
    with pytest.raises(ControllerError, match="cannot be imported exactly: aten::floor"):
        load_controller(tmp_path / "custom.pt", system)


def test_certify_with_lqr_saves_the_controller_and_rechecks_the_closed_loop(tmp_path):
    from lyapcert.verify import recheck

    system = lyapcert.get_system("double_integrator")
    res = lyapcert.certify(system, "quadratic", controller="lqr", out=tmp_path / "c", roa=True)
    assert res.verified and res.roa_fraction is not None and 0 < res.roa_fraction <= 1
    cert, again = recheck(tmp_path / "c")
    assert isinstance(cert.controller, LinearController)
    assert again.verified and again.level == res.result.level


def test_certify_an_onnx_controller_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from lyapcert.cli import app

    system = lyapcert.get_system("inverted_pendulum")
    k = lqr(system)
    path = tmp_path / "k.onnx"
    _export_onnx(k, 2, path)
    runner = CliRunner()
    out = tmp_path / "cert"
    r = runner.invoke(
        app,
        ["certify", "inverted_pendulum", "--controller", str(path), "--out", str(out), "--json"],
    )
    assert r.exit_code == 0, r.output
    direct = lyapcert.certify(system, "quadratic", controller=k, roa=False)
    import json

    assert json.loads(r.stdout)["level"] == pytest.approx(direct.result.level, rel=1e-9)
    assert (out / "controller.onnx").exists()
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code == 0, r.output
    # a changed controller file no longer matches the certificate
    (out / "controller.onnx").write_bytes(b"tampered")
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code == 2 and "hash" in r.output


def test_dt_flag_certifies_the_euler_map_like_the_registry_dt_variant(tmp_path):
    import json

    from typer.testing import CliRunner

    from lyapcert.cli import app

    runner = CliRunner()
    args = ["certify", "inverted_pendulum", "--controller", "lqr", "--json"]
    r = runner.invoke(app, [*args, "--dt", "0.05"])
    assert r.exit_code == 0, r.output
    registry = lyapcert.certify(
        lyapcert.get_system("inverted_pendulum-dt"), "quadratic", controller="lqr", roa=False
    )
    assert json.loads(r.stdout)["level"] == pytest.approx(registry.result.level, rel=1e-9)
    r = runner.invoke(app, ["certify", "inverted_pendulum-dt", "--dt", "0.05"])
    assert r.exit_code == 2 and "already discrete" in r.output


def test_neural_controller_from_lqr_starts_as_the_lqr_controller(tmp_path):
    system = lyapcert.get_system("path_tracking")
    k = NeuralController.from_lqr(system)
    x = torch.rand(500, 2, dtype=torch.float64) * 6 - 3
    with torch.no_grad():
        torch.testing.assert_close(k(x), lqr(system)(x), rtol=0, atol=1e-15)
        assert k(system.equilibrium_tensor()).item() == system.equilibrium_input[0]
    from lyapcert.control.store import controller_from_dict, controller_to_dict

    record = controller_to_dict(k, tmp_path)  # saved and rebuilt from its spec and weights
    again = controller_from_dict(record, system, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(x), k(x), rtol=0, atol=0)


def test_a_certificate_never_verifies_a_destabilising_controller(tmp_path):
    """Soundness: the LQR loop's certificate, re-checked with the controller edited to zero gain
    (the upright pendulum left open loop, unstable), must not be verified."""
    import json

    from lyapcert.verify import recheck

    system = lyapcert.get_system("inverted_pendulum")
    res = lyapcert.certify(system, "quadratic", controller="lqr", roa=False, out=tmp_path / "c")
    assert res.verified
    record = json.loads((tmp_path / "c" / "certificate.json").read_text())
    record["controller"]["K"] = [[0.0, 0.0]]
    (tmp_path / "c" / "certificate.json").write_text(json.dumps(record))
    _, again = recheck(tmp_path / "c")
    assert not again.verified
    zero = LinearController([[0.0, 0.0]], [0, 0], [0], [-6.0], [6.0])
    candidate, _ = _quadratic_closed_loop(system, lqr(system))
    assert not verify_candidate(system.closed_loop(zero), candidate).verified


def test_a_closed_loop_counterexample_is_replayed_on_the_closed_loop():
    """The float64 replay of a counterexample uses the controller too (it once used u*)."""
    system = lyapcert.get_system("inverted_pendulum-wide")  # the decrease limits the level
    k = lqr(system)
    candidate, _ = _quadratic_closed_loop(system, k)
    closed = system.closed_loop(k)
    largest = verify_candidate(closed, candidate).level
    res = verify_candidate(closed, candidate, level=2 * largest)
    assert not res.verified and res.counterexample is not None
    replay = res.counterexample["replay"]
    lo, hi = replay["interval"]
    assert lo - 1e-9 * abs(lo) <= replay["float64"] <= hi + 1e-9 * abs(hi)


def test_a_neural_controller_trained_with_its_certificate_verifies_and_rechecks(tmp_path):
    """``--controller neural``: a small controller trained together with V (neural-roa) is
    certified; the saved certificate re-checks the trained closed loop, not the LQR it began as."""
    from typer.testing import CliRunner

    from lyapcert.cli import app
    from lyapcert.verify import recheck

    system = lyapcert.get_system("path_tracking")
    res = lyapcert.certify(
        system,
        "neural-roa",
        controller="neural",
        epochs=100,
        rounds=1,
        samples=2048,
        adversarial_points=512,
        verify_seconds=0,
        finetune_rounds=0,
        checkpoint=False,
        roa=False,
        out=tmp_path / "c",
    )
    assert res.verified and res.result.hole is None and res.options["train_controller"]
    cert, again = recheck(tmp_path / "c")
    assert isinstance(cert.controller, NeuralController)
    assert again.verified and again.level == res.result.level
    x = torch.rand(400, 2, dtype=torch.float64) * 6 - 3
    with torch.no_grad():
        trained, start = cert.controller(x), lqr(system)(x)
        assert (trained - start).abs().max() > 1e-3  # the weights were trained
        assert cert.controller(system.equilibrium_tensor()).item() == system.equilibrium_input[0]
    r = CliRunner().invoke(app, ["verify", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output


def test_controller_neural_needs_a_method_that_trains_one(tmp_path):
    from typer.testing import CliRunner

    from lyapcert.cli import app
    from lyapcert.errors import OptionsError

    system = lyapcert.get_system("double_integrator")
    with pytest.raises(OptionsError, match="neural-roa"):
        lyapcert.certify(system, "quadratic", controller="neural")
    with pytest.raises(OptionsError, match="--controller neural"):
        lyapcert.certify(system, "neural-roa", controller="lqr", train_controller=True)
    out = tmp_path / "never"
    r = CliRunner().invoke(
        app, ["certify", "double_integrator", "--controller", "neural", "--out", str(out)]
    )
    assert r.exit_code == 2 and "cannot train a controller" in r.output
    assert not out.exists()


def test_local_decrease_is_the_lyapunov_inequality_of_the_linearisation():
    """For V = e'Pe on the LQR loop with A'P + PA = -Q, the Hessian is H = 2P, so in the box's
    coordinates (D = 12 I) ``lambda_max(D(A'H + HA)D) = lambda_max(-2 D Q D) = -2 * 144``."""
    from lyapcert.methods.neural_roa import local_decrease
    from lyapcert.methods.quadratic import lyapunov_matrix

    system = lyapcert.get_system("inverted_pendulum").closed_loop("lqr")
    A = system.linearize()[0]
    Q = np.diag([1.0, 3.0])
    P = torch.as_tensor(lyapunov_matrix(A, Q, False))

    def V(x):
        return ((x @ P) * x).sum(1)

    value = local_decrease(system, V, system.equilibrium_tensor(), torch.full((2,), 12.0))
    assert float(value.detach()) == pytest.approx(-2.0 * 144, rel=1e-9)
    value = local_decrease(system, V, system.equilibrium_tensor())
    assert float(value.detach()) == pytest.approx(-2.0, rel=1e-9)


@pytest.mark.slow
def test_cartpole_lqr_quadratic_is_certified_and_holds_on_samples():
    """Issue 5's 4-D target: the LQR loop of the cart-pole with the quadratic of A'P + PA = -I
    gets a verified level (below the real violation at V ~ 0.1016); on 200,000 sampled points of
    the certified set (x* excluded) dV/dt < 0 in float64."""
    from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
    from lyapcert.verify import VerifyOptions

    s = lyapcert.get_system("cartpole")
    k = lqr(s)
    closed = s.closed_loop(k)
    cand = QuadraticMethod().fit(closed, QuadraticOptions()).candidate
    opts = VerifyOptions(time_limit=3600, level_tolerance=0.05)
    res = verify_candidate(closed, cand, options=opts)
    assert res.verified and res.hole is None, res.message
    assert 0.05 < res.level < 0.1016
    rng = np.random.default_rng(0)
    L = np.linalg.cholesky(np.linalg.inv(np.asarray(cand.P)))
    d = rng.normal(size=(200_000, 4))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    e = (d * rng.random((200_000, 1)) ** 0.25) @ L.T * np.sqrt(res.level)  # inside {e'Pe <= c}
    x = torch.as_tensor(e[np.abs(e).max(axis=1) > 1e-6])
    x.requires_grad_(True)
    v = cand.value(x)
    (grad,) = torch.autograd.grad(v.sum(), x)
    with torch.no_grad():
        inside = s.domain.contains(x) & (v <= res.level)
        lie = (grad * s.f(x, k(x))).sum(dim=1)
    assert int(inside.sum()) > 150_000
    assert bool((lie[inside] < 0).all())
