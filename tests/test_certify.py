"""certify(): method -> verifier -> metric -> certificate; options and the certify command."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates import NetworkCandidate
from lyapcert.cli import app
from lyapcert.errors import MethodError, OptionsError
from lyapcert.methods import METHODS, Fit, Method, QuadraticOptions
from lyapcert.methods.options import build_options, read_config
from lyapcert.systems import get_system
from lyapcert.verify import recheck


def test_quadratic_on_a_linear_system_is_exact(tmp_path):
    s = get_system("damped_sho")
    res = lyapcert.certify(s, "quadratic", out=tmp_path / "c", roa=True)
    assert res.verified and res.result.hole is None
    saved = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert saved["method"] == "quadratic"
    P = np.array(saved["candidate"]["P"])
    t = np.linspace(-1, 1, 200_001)
    faces = [np.stack([np.full_like(t, 5.0), 2 * t]), np.stack([5 * t, np.full_like(t, 2.0)])]
    exact = min(float(np.einsum("in,ij,jn->n", f, P, f).min()) for f in faces)
    assert exact * (1 - 2e-3) <= res.result.level <= exact
    assert res.true_roa_volume == pytest.approx(40.0)
    _, again = recheck(tmp_path / "c")
    assert again.verified


def test_quadratic_on_cubic_1d_stays_inside_the_true_roa():
    res = lyapcert.certify(get_system("cubic_1d"), "quadratic", roa=True)
    assert res.verified
    half_width = np.sqrt(res.result.level / 0.5)  # V = x^2 / 2 for Q = 1
    assert 0.99 < half_width < 1.0
    assert res.roa_fraction == pytest.approx(half_width, abs=0.01)


def test_optimised_q_is_at_least_as_good_on_samples():
    s = get_system("power_system")
    plain = lyapcert.certify(s, "quadratic", roa=True)
    tuned = lyapcert.certify(s, "quadratic", optimize=True, iterations=100, roa=True)
    assert tuned.verified and plain.verified
    assert tuned.roa_fraction >= plain.roa_fraction - 0.005


def test_options_are_typed_and_unknown_keys_rejected(tmp_path):
    assert build_options(QuadraticOptions, {"optimize": "true", "samples": "500"}).samples == 500
    with pytest.raises(OptionsError, match="unknown option"):
        build_options(QuadraticOptions, {"optimise": True})
    with pytest.raises(OptionsError, match="integer"):
        build_options(QuadraticOptions, {"samples": "many"})
    with pytest.raises(OptionsError, match="q_scale"):
        build_options(QuadraticOptions, {"q_scale": -1})
    # optional options (``X | None``) from the command line's strings
    from lyapcert.methods.neural_roa import NeuralROAOptions

    opts = build_options(NeuralROAOptions, {"local_weight": "0.5", "finetune_rounds": "2"})
    assert opts.local_weight == 0.5 and opts.finetune_rounds == 2
    assert build_options(NeuralROAOptions, {"finetune_level": "none"}).finetune_level is None
    with pytest.raises(OptionsError, match="finetune_level"):
        build_options(NeuralROAOptions, {"finetune_level": "high"})
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("seed = 3\n[quadratic]\noptimize = true\n")
    assert read_config(cfg, "quadratic") == {"seed": 3, "optimize": True}


def test_nan_weights_end_with_a_clear_error_and_nothing_written(tmp_path, monkeypatch):
    class Broken(Method):
        name = "broken"
        Options = QuadraticOptions

        def fit(self, system, options, progress=False):
            net = torch.nn.Linear(2, 1)
            net.weight.data[:] = float("nan")
            return Fit(NetworkCandidate(net), 0.0)

    monkeypatch.setitem(METHODS, "broken", Broken)
    with pytest.raises(MethodError, match="NaN"):
        lyapcert.certify(get_system("vanderpol"), "broken", out=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    result = CliRunner().invoke(
        app, ["certify", "vanderpol", "--method", "broken", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2 and not (tmp_path / "c").exists()


def test_certify_command_json(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "certify",
            "vanderpol",
            "--method",
            "quadratic",
            "--json",
            "--roa",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "verdict",
        "condition",
        "level",
        "hole",
        "certified_volume",
        "true_roa_volume",
        "roa_fraction",
        "train_seconds",
        "verify_seconds",
        "certificate_dir",
    ):
        assert key in data
    assert data["verdict"] == "verified" and data["hole"] == "none"
    assert data["roa_fraction"] == pytest.approx(0.4715, abs=0.002)


@pytest.mark.parametrize(
    "args",
    [
        ["--method", "nope"],
        ["-o", "optimise=true"],
        ["-o", "samples=lots"],
        ["-o", "novalue"],
        ["--config", "missing.toml"],
    ],
)
def test_certify_bad_input_exits_2(args, tmp_path):
    result = CliRunner().invoke(app, ["certify", "vanderpol", *args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "c").exists()


def test_methods_command_lists_options():
    result = CliRunner().invoke(app, ["methods", "--json"])
    data = json.loads(result.stdout)["methods"]
    assert "quadratic" in data and any(o["name"] == "optimize" for o in data["quadratic"])


def test_sos_on_a_linear_system(tmp_path):
    res = lyapcert.certify(get_system("damped_sho"), "sos", degree=2, out=tmp_path / "c")
    assert res.verified and res.info["solver_statuses"]
    _, again = recheck(tmp_path / "c")
    assert again.verified


def test_sos_on_cubic_1d_stays_inside_the_true_roa():
    s = get_system("cubic_1d")
    res = lyapcert.certify(s, "sos", degree=4, iterations=2, roa=True)
    assert res.verified
    # the certified set {V <= level} lies inside (-1, 1) and covers most of it
    assert res.roa_fraction > 0.9
    assert res.certified_volume <= res.true_roa_volume + 0.005


def test_sos_options_and_requirements():
    with pytest.raises(OptionsError, match="degree"):
        lyapcert.certify(get_system("vanderpol"), "sos", degree=3)
    with pytest.raises(OptionsError, match="target"):
        lyapcert.certify(get_system("vanderpol"), "sos", target="everywhere")
    with pytest.raises(OptionsError, match="multiplier_degree"):
        lyapcert.certify(get_system("vanderpol"), "sos", multiplier_degree=0)
    from lyapcert.systems import System

    python_defined = System("py", lambda x, u: -x, ("x",), lyapcert.Box((-1.0,), (1.0,)))
    with pytest.raises(MethodError, match="equations"):
        lyapcert.certify(python_defined, "sos")


def test_sos_with_box_targets_needs_no_simulation():
    res = lyapcert.certify(
        get_system("cubic_1d"), "sos", degree=4, iterations=2, target="box", roa=True
    )
    assert res.verified and res.info["target"] == "box"
    assert res.roa_fraction > 0.9 and res.certified_volume <= res.true_roa_volume + 0.005


@pytest.mark.slow
def test_sos_degree_4_on_vanderpol_is_verified():
    res = lyapcert.certify(get_system("vanderpol"), "sos", degree=4, iterations=3, roa=True)
    assert res.verified and res.roa_fraction > 0.6


@pytest.mark.slow
def test_sos_degree_6_on_vanderpol_reaches_the_published_share():
    # published SOS degree 6: 94.2 % of the true ROA; the alternation reaches about 96 %
    res = lyapcert.certify(get_system("vanderpol"), "sos", degree=6, roa=True)
    assert res.verified and res.roa_fraction > 0.9
    history = res.info["history"]
    assert history[-1]["mean_v"] < history[0]["mean_v"]


def test_neural_lyapunov_on_damped_sho(tmp_path):
    res = lyapcert.certify(
        get_system("damped_sho"),
        "neural-lyapunov",
        epochs=300,
        rounds=1,
        samples=2048,
        out=tmp_path / "c",
    )
    assert res.verified
    _, again = recheck(tmp_path / "c")  # rebuilt from the architecture and weights.pt
    assert again.verified and again.level == res.result.level


def test_neural_lyapunov_on_cubic_1d_covers_most_of_the_true_roa():
    res = lyapcert.certify(
        get_system("cubic_1d"), "neural-lyapunov", epochs=400, rounds=1, samples=2001, roa=True
    )
    assert res.verified
    assert res.roa_fraction >= 0.9
    assert res.certified_volume <= res.true_roa_volume + 0.005


def test_tampered_network_weights_are_detected(tmp_path):
    res = lyapcert.certify(
        get_system("cubic_1d"),
        "neural-lyapunov",
        epochs=50,
        rounds=1,
        samples=500,
        out=tmp_path / "c",
    )
    assert res.certificate_dir
    from lyapcert.certificates.network import LyapunovNetwork

    data = json.loads((tmp_path / "c" / "certificate.json").read_text())
    net = LyapunovNetwork.from_spec(data["candidate"]["architecture"])
    state = torch.load(tmp_path / "c" / "weights.pt", weights_only=True)
    net.load_state_dict(state)
    with torch.no_grad():
        next(net.parameters()).add_(0.1)
    torch.save(net.state_dict(), tmp_path / "c" / "weights.pt")
    from lyapcert.errors import CertificateFileError

    with pytest.raises(CertificateFileError, match="hash"):
        lyapcert.load(tmp_path / "c")


def test_a_network_without_architecture_cannot_be_saved(tmp_path):
    from lyapcert.certificates.store import save
    from lyapcert.errors import CertificateFileError
    from lyapcert.verify import verify_candidate

    s = get_system("cubic_1d")

    class Square(torch.nn.Module):
        def forward(self, x):
            return (x * x).sum(-1)

    cand = NetworkCandidate(Square())
    r = verify_candidate(s, cand)
    with pytest.raises(CertificateFileError, match="architecture"):
        save(tmp_path / "c", s, cand, r)
    assert not (tmp_path / "c").exists()


def test_neural_zubov_on_cubic_1d_and_damped_sho(tmp_path):
    res = lyapcert.certify(
        get_system("cubic_1d"), "neural-zubov", epochs=400, samples=2001, roa=True
    )
    assert res.verified and res.roa_fraction >= 0.9
    assert res.certified_volume <= res.true_roa_volume + 0.005
    sho = lyapcert.certify(
        get_system("damped_sho"), "neural-zubov", epochs=300, samples=2048, out=tmp_path / "c"
    )
    assert sho.verified
    _, again = recheck(tmp_path / "c")
    assert again.verified


def test_describe_gives_each_option_its_whole_description():
    """``describe`` joins a field's continuation lines (not only its first line), and a
    subclass's description of a field overrides its base's."""
    from lyapcert.methods.neural_roa import NeuralROAOptions
    from lyapcert.methods.options import describe
    from lyapcert.methods.training import NetworkOptions

    base = {name: doc for name, _, _, doc in describe(NetworkOptions)}
    scale = base["scale_inputs"]
    assert scale.startswith("box units: network inputs divided by the box half-widths")
    assert "WIDE_BOX" in scale and scale.rstrip().endswith(")")  # the continuation lines
    docs = {name: doc for name, _, _, doc in describe(NeuralROAOptions)}
    assert docs["scale_inputs"].startswith("box units (auto, on, off)")  # the subclass's own
    assert all(docs.values()), [k for k, v in docs.items() if not v]
