"""A candidate V and a controller from files (ONNX, TorchScript): ``load_candidate``,
``lyapcert verify SYSTEM --candidate V.onnx --controller k.onnx --out DIR``, the re-check of DIR
(files hash-checked), and bad input refused with exit 2 and nothing written.

The two published two-stage certificates are in ``tests/data/twostage/`` (a copy of
``../shared/external/twostage/``; both are checked when the shared folder exists)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lyapcert
from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from lyapcert.certificates import FileCandidate, NetworkCandidate, load_candidate
from lyapcert.cli import app
from lyapcert.control.imported import load_controller
from lyapcert.errors import CertificateFileError, ModelFileError, VerificationError
from lyapcert.methods import get_method
from model_files import export_model

REPO_COPY = Path(__file__).parent / "data" / "twostage"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "external" / "twostage"
ENTRIES = json.loads((REPO_COPY / "index.json").read_text())


@pytest.fixture
def runner():
    return CliRunner()


def _folder(where: str) -> Path:
    if where == "shared":
        if not (SHARED / "index.json").is_file():
            pytest.skip(f"the shared test data is not here ({SHARED})")
        return SHARED
    return REPO_COPY


# ------------------------------------------------------------------ the published certificates


@pytest.mark.parametrize("where", ["repo", "shared"])
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_published_v_and_controller_load_from_onnx_and_match_onnxruntime(where, entry):
    ort = pytest.importorskip("onnxruntime")
    folder = _folder(where)
    system = lyapcert.get_system(entry["lyapcert_system"])
    lo_box, hi_box = system.domain.as_tensors()
    assert torch.stack([lo_box, hi_box], 1).tolist() == entry["box"]
    v_file = folder / f"{entry['name']}_V.onnx"
    k_file = folder / f"{entry['name']}_controller.onnx"
    cand = load_candidate(v_file, system)
    assert isinstance(cand, FileCandidate) and cand.family == "onnx"
    controller = load_controller(k_file, system)
    lo, hi = np.asarray(entry["box"], dtype=np.float64).T
    x = lo + np.random.default_rng(3).random((4000, 2)) * (hi - lo)
    x = np.vstack([x, np.zeros((1, 2)), lo, hi])
    for path, ours in ((v_file, cand.value), (k_file, controller)):
        session = ort.InferenceSession(str(path))
        reference = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert reference.shape == (len(x), 1)
        with torch.no_grad():
            mine = ours(torch.from_numpy(x)).numpy()
        assert mine.shape == ((len(x),) if path == v_file else (len(x), 1))  # V: [batch]
        np.testing.assert_allclose(mine.reshape(-1), reference.reshape(-1), rtol=0, atol=1e-12)
    x_star = system.equilibrium_tensor().reshape(1, 2)
    assert float(cand.value(x_star)) == pytest.approx(entry["V_at_x_star"], abs=1e-12)
    if where == "shared":  # the repository's copy is the shared file, byte for byte
        assert (REPO_COPY / v_file.name).read_bytes() == v_file.read_bytes()
        assert (REPO_COPY / k_file.name).read_bytes() == k_file.read_bytes()


def test_the_bound_engine_encloses_the_sigmoid_network_and_its_gradient():
    """V = sigmoid(MLP_tanh(x)) as imported: interval bounds of V and of each partial derivative
    (forward mode, the sigmoid's derivative s (1 - s)) contain sampled values on small boxes."""
    entry = ENTRIES[0]
    system = lyapcert.get_system(entry["lyapcert_system"])
    module = load_candidate(REPO_COPY / f"{entry['name']}_V.onnx", system).value_function()
    g = capture(module, 1)
    gen = torch.Generator().manual_seed(5)
    lo_box, hi_box = system.domain.as_tensors()
    centre = lo_box + torch.rand(64, 2, generator=gen, dtype=torch.float64) * (hi_box - lo_box)
    centre[0] = 0.0
    radius = torch.tensor([[0.2, 1.0]], dtype=torch.float64)
    box = Interval(centre - radius, centre + radius)
    value = g.evaluate(box)
    grads = []
    for j in range(2):
        e = torch.zeros_like(centre)
        e[:, j] = 1.0
        grads.append(g.evaluate(Dual(box, Interval(e, e))).tangent)
    for _ in range(20):
        t = torch.rand(centre.shape, generator=gen, dtype=torch.float64) * 2 - 1
        x = (centre + t * radius).requires_grad_(True)
        v = module(x)
        (grad,) = torch.autograd.grad(v.sum(), x)
        v = v.detach().reshape(-1)
        assert bool(((value.lo.reshape(-1) <= v) & (v <= value.hi.reshape(-1))).all())
        for j in range(2):
            lo, hi = grads[j].lo.reshape(-1), grads[j].hi.reshape(-1)
            assert bool(((lo <= grad[:, j]) & (grad[:, j] <= hi)).all())


def test_verify_runs_on_a_published_certificate_and_says_why_it_is_not_verified(runner, tmp_path):
    """V(x*) != 0 and V's minimum is off x*: today's verifier cannot close the hole; with a small
    budget it answers (not verified, with its reason), writes nothing, exits 1."""
    entry = ENTRIES[0]
    out = tmp_path / "cert"
    args = [
        "verify",
        entry["lyapcert_system"],
        "--candidate",
        str(REPO_COPY / f"{entry['name']}_V.onnx"),
        "--controller",
        str(REPO_COPY / f"{entry['name']}_controller.onnx"),
        "--level",
        "0.5",
        "--max-boxes",
        "300",
        "--no-volume",
        "--out",
        str(out),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] in ("unknown", "falsified")
    assert data.get("hole") not in (None, "none") or data.get("message")
    assert "pendulum_bigtorque_seed0_V.onnx" in data["candidate"]
    assert not (out / "certificate.json").exists()


# ------------------------------------------------------------------ self-made files


def _export(module: torch.nn.Module, path: Path, n: int = 2, outputs=("V",)) -> Path:
    return export_model(module, path, n, outputs)


class QuadraticPlusNetwork(torch.nn.Module):
    """``V(x) = e' P e + (phi(x) - phi(x*))^2``, ``e = x - x*``, output ``[batch, 1]``: zero at x*
    (phi a small sigmoid network). Written with ops both exporters keep (``MatMul`` for the
    sum)."""

    def __init__(self, P, x_star, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        n = len(x_star)
        self.register_buffer("P", torch.as_tensor(P, dtype=torch.float64))
        self.register_buffer("x_star", torch.as_tensor([x_star], dtype=torch.float64))
        self.register_buffer("ones", torch.ones(n, 1, dtype=torch.float64))
        self.phi = torch.nn.Sequential(
            torch.nn.Linear(n, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 1)
        ).double()
        with torch.no_grad():
            self.phi[2].weight.mul_(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x - self.x_star
        d = self.phi(x) - self.phi(self.x_star)
        return ((e @ self.P) * e) @ self.ones + d * d


def _quadratic_v(system) -> QuadraticPlusNetwork:
    method = get_method("quadratic")
    P = method.fit(system, method.Options()).candidate.P
    return QuadraticPlusNetwork(P, system.equilibrium).double().eval()


@pytest.fixture(scope="module")
def vanderpol_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vdp")
    module = _quadratic_v(lyapcert.get_system("vanderpol"))
    return module, _export(module, folder / "V.onnx"), _export(module, folder / "V.pt")


def test_load_candidate_reads_expressions_files_and_modules(vanderpol_files):
    module, onnx_file, ts_file = vanderpol_files
    system = lyapcert.get_system("vanderpol")
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4 - 2
    with torch.no_grad():
        expected = module(x).reshape(-1)
        for source in (onnx_file, str(ts_file)):
            cand = load_candidate(source, system)
            assert isinstance(cand, FileCandidate)
            assert cand.value(x).shape == (500,)
            torch.testing.assert_close(cand.value(x), expected, rtol=0, atol=1e-12)
            record = cand.to_dict()
            assert record["family"] == ("onnx" if source == onnx_file else "torchscript")
            assert record["file"] == "candidate" + Path(source).suffix
        from_module = load_candidate(module, system)
        assert isinstance(from_module, NetworkCandidate)
        assert torch.equal(from_module.value(x), expected)
    expr = load_candidate("x1**2 + x2**2", system)
    assert expr.family == "expression"
    with pytest.raises(VerificationError, match=r"\[batch, 2\]"):
        load_candidate(torch.nn.Linear(2, 2), system)


def test_verify_a_candidate_file_saves_it_and_rechecks_it(runner, vanderpol_files, tmp_path):
    _, onnx_file, _ = vanderpol_files
    out = tmp_path / "cert"
    args = ["verify", "vanderpol", "--candidate", str(onnx_file), "--level", "1.5"]
    result = runner.invoke(app, [*args, "--no-volume", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "verified" and data["level"] == 1.5 and data["hole"] in (None, "none")
    record = json.loads((out / "certificate.json").read_text())
    saved = out / "candidate.onnx"
    assert record["candidate"]["family"] == "onnx" and record["candidate"]["file"] == saved.name
    assert saved.read_bytes() == onnx_file.read_bytes()
    import hashlib

    assert record["candidate"]["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    again = runner.invoke(app, ["verify", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["reproduced"] is True
    # a tampered candidate file is refused, and so is a missing one
    saved.write_bytes(saved.read_bytes() + b"\0")
    tampered = runner.invoke(app, ["verify", str(out)])
    assert tampered.exit_code == 2 and "hash" in tampered.output
    with pytest.raises(CertificateFileError, match="hash"):
        lyapcert.certificates.store.load(out)
    saved.unlink()
    missing = runner.invoke(app, ["verify", str(out)])
    assert missing.exit_code == 2 and "missing" in missing.output


@pytest.mark.slow
def test_verify_a_torchscript_candidate(runner, vanderpol_files, tmp_path):
    _, _, ts_file = vanderpol_files
    out = tmp_path / "cert"
    args = ["verify", "vanderpol", "--candidate", str(ts_file), "--level", "1.5", "--no-volume"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "verified"
    record = json.loads((out / "certificate.json").read_text())
    assert record["candidate"]["family"] == "torchscript"
    assert (out / "candidate.pt").read_bytes() == ts_file.read_bytes()
    cert = lyapcert.certificates.store.load(out)
    assert isinstance(cert.candidate, FileCandidate) and cert.level == 1.5


@pytest.fixture(scope="module")
def pendulum_files(tmp_path_factory):
    """V: the quadratic of the LQR closed loop plus a small sigmoid network; the LQR controller
    exported to ONNX."""
    from lyapcert.control import lqr

    folder = tmp_path_factory.mktemp("pendulum")
    system = lyapcert.get_system("inverted_pendulum")
    k = lqr(system)
    v = _quadratic_v(system.closed_loop(k))
    return _export(v, folder / "V.onnx"), _export(k, folder / "k.onnx", outputs=("u",))


@pytest.mark.parametrize("controller", [pytest.param("lqr", marks=pytest.mark.slow), "file"])
def test_verify_with_a_controller_saves_both_files(runner, pendulum_files, tmp_path, controller):
    v_file, k_file = pendulum_files
    out = tmp_path / "cert"
    k = "lqr" if controller == "lqr" else str(k_file)
    args = ["verify", "inverted_pendulum", "--candidate", str(v_file), "--controller", k]
    result = runner.invoke(app, [*args, "--level", "1.0", "--no-volume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.stdout
    record = json.loads((out / "certificate.json").read_text())
    assert record["candidate"]["family"] == "onnx"
    assert (out / "candidate.onnx").read_bytes() == v_file.read_bytes()
    if controller == "lqr":
        assert record["controller"]["family"] == "linear"
    else:
        assert record["controller"]["family"] == "onnx"
        assert (out / "controller.onnx").read_bytes() == k_file.read_bytes()
    again = runner.invoke(app, ["verify", str(out), "--json"])
    assert again.exit_code == 0, again.output
    if controller == "file":
        saved = out / "controller.onnx"
        saved.write_bytes(saved.read_bytes()[:-1] + bytes([saved.read_bytes()[-1] ^ 1]))
        tampered = runner.invoke(app, ["verify", str(out)])
        assert tampered.exit_code == 2 and "hash" in tampered.output


# ------------------------------------------------------------------ bad input


def _onnx_model(nodes, outputs=("V",), out_width=1, inits=()):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2])
    outs = [
        helper.make_tensor_value_info(o, TensorProto.DOUBLE, [None, out_width]) for o in outputs
    ]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say)."""
    from onnx import helper, numpy_helper

    folder.mkdir(exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}
    wide = _onnx_model([helper.make_node("Mul", ["x", "x"], ["V"])], out_width=2)
    (folder / "wide.onnx").write_bytes(wide.SerializeToString())
    files["[batch, 2] output"] = (folder / "wide.onnx", r"\[batch, 2\]")
    w = numpy_helper.from_array(np.ones((2, 1)), "w")
    two = _onnx_model(
        [helper.make_node("MatMul", ["x", "w"], ["V"]), helper.make_node("Neg", ["V"], ["W"])],
        outputs=("V", "W"),
        inits=[w],
    )
    (folder / "two.onnx").write_bytes(two.SerializeToString())
    files["two outputs"] = (folder / "two.onnx", "one output, got 1 inputs and 2 outputs")
    cos = _onnx_model(
        [helper.make_node("Cos", ["x"], ["y"]), helper.make_node("MatMul", ["y", "w"], ["V"])],
        inits=[w],
    )
    (folder / "cos.onnx").write_bytes(cos.SerializeToString())
    files["unsupported ONNX op"] = (folder / "cos.onnx", "unsupported ONNX operation.*Cos")

    class Floor(torch.nn.Module):
        def forward(self, x):
            return torch.floor(x).sum(-1)

    files["unsupported TorchScript op"] = (
        _export(Floor(), folder / "floor.pt"),
        "cannot be imported exactly: aten::floor",
    )
    (folder / "V.txt").write_text("x1**2")
    files["unknown suffix"] = (folder / "V.txt", r"unknown candidate file type \.txt")
    files["missing file"] = (folder / "nope.onnx", "no such candidate file")
    (folder / "junk.onnx").write_bytes(b"not a model")
    files["not a model"] = (folder / "junk.onnx", "not a valid ONNX model")
    return files


def test_bad_candidate_files_are_refused_in_python(tmp_path):
    system = lyapcert.get_system("vanderpol")
    for name, (path, message) in _bad_files(tmp_path / "bad").items():
        with pytest.raises(ModelFileError, match=message):
            load_candidate(path, system)
        with pytest.raises(ModelFileError, match=message):  # a string path too
            load_candidate(str(path), system)
        assert name


def test_bad_input_exits_2_and_writes_nothing(runner, tmp_path, pendulum_files):
    out = tmp_path / "cert"
    cases = [
        (["vanderpol", "--candidate", str(path)], message)
        for path, message in _bad_files(tmp_path / "bad").values()
    ]
    v_file, _ = pendulum_files
    from onnx import helper, numpy_helper

    offset = _onnx_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["u"])],
        outputs=("u",),
        inits=[
            numpy_helper.from_array(-np.ones((2, 1)), "w"),
            numpy_helper.from_array(np.array([0.5]), "b"),
        ],
    )
    (tmp_path / "offset.onnx").write_bytes(offset.SerializeToString())
    cases += [
        (
            [
                "inverted_pendulum",
                "--candidate",
                str(v_file),
                "--controller",
                str(tmp_path / "offset.onnx"),
            ],
            r"expected u\*",
        ),
        (
            ["inverted_pendulum", "--candidate", str(v_file), "--controller", "neural"],
            "lqr or a file",
        ),
        (
            [
                "inverted_pendulum",
                "--candidate",
                str(v_file),
                "--controller",
                str(tmp_path / "k.onnx"),
            ],
            "no such controller file",
        ),
        (["vanderpol", "--candidate", "x1**2 + x2**2", "--controller", "lqr"], "no inputs"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["verify", *args, "--level", "0.1", "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        import re

        assert re.search(message, " ".join(result.output.split())), (message, result.output)
        assert not out.exists()
    # a certificate folder is re-checked as saved: no --controller
    out.mkdir()
    result = runner.invoke(app, ["verify", str(out), "--controller", "lqr"])
    assert result.exit_code == 2 and "drop --candidate" in result.output
