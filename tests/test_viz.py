"""Plots and animations of certificates (viz/): files written, known values, errors, the CLI."""

import json
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates import QuadraticCandidate
from lyapcert.certificates.store import Certificate
from lyapcert.cli import app
from lyapcert.errors import CertificateFileError, PlotError
from lyapcert.viz.animate import animate_certificate, pendulum_of, start_points
from lyapcert.viz.bench_plot import bench_cells, plot_bench
from lyapcert.viz.certificate_plot import (
    certificate_roa,
    decrease_values,
    plane_values,
    plot_certificate,
    roa_share,
)
from lyapcert.viz.training_plot import history_curves, plot_training, training_figure


def _certify(tmp_path_factory, name, **kwargs):
    out = tmp_path_factory.mktemp(name.replace("-", "_")) / "cert"
    res = lyapcert.certify(lyapcert.get_system(name), "quadratic", out=out, roa=False, **kwargs)
    assert res.verified
    return out


@pytest.fixture(scope="module")
def vdp_dir(tmp_path_factory):
    return _certify(tmp_path_factory, "vanderpol")


@pytest.fixture(scope="module")
def slices_dir(tmp_path_factory):
    return _certify(tmp_path_factory, "nonpoly2_3d")


@pytest.fixture(scope="module")
def pendulum_dir(tmp_path_factory):
    return _certify(tmp_path_factory, "inverted_pendulum", controller="lqr")


def _png(path):
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def _gif_frames(path):
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames


def _linear_certificate():
    """x' = y, y' = -x - y; P solves A'P + PA = -I, so dV/dt = -|x|^2 exactly."""
    system = lyapcert.System.from_equations(
        "linear_2d", states=["x", "y"], dynamics=["y", "-x - y"], domain=[[-2, 2], [-2, 2]]
    )
    P = [[1.5, 0.5], [0.5, 1.0]]
    cand = QuadraticCandidate(P, system)
    return Certificate(system, cand, 1.0, "verified", "asymptotic", {"method": "quadratic"})


# --------------------------------------------------------------------------- plot_certificate


def test_plot_certificate_2d(vdp_dir, tmp_path):
    path = plot_certificate(vdp_dir, tmp_path / "v.png", roa=False, resolution=24)
    width, height = _png(path)
    assert width > height  # the V panel and the dV/dt panel side by side


def test_plot_certificate_slices_above_2d(slices_dir, tmp_path):
    path = plot_certificate(slices_dir, tmp_path / "s.png", roa=False, resolution=16, max_slices=3)
    width, height = _png(path)
    assert height > width  # three rows of slices (x-y, x-z, y-z), two panels each


def test_plot_certificate_controlled_and_1d(pendulum_dir, tmp_path_factory, tmp_path):
    _png(plot_certificate(pendulum_dir, tmp_path / "ip.png", roa=False, resolution=20))
    _png(plot_certificate(_certify(tmp_path_factory, "cubic_1d"), tmp_path / "c.png", roa=False))


def test_true_roa_share_matches_certify(tmp_path):
    res = lyapcert.certify(
        lyapcert.get_system("vanderpol"), "quadratic", out=tmp_path / "c", roa=True
    )
    cert = lyapcert.load(tmp_path / "c")
    est = certificate_roa(cert, roa=None)  # certify cached it; nothing simulated here
    assert est is not None and est.from_cache
    assert roa_share(cert, est) == pytest.approx(res.roa_fraction)
    _png(plot_certificate(cert, tmp_path / "r.png", resolution=20))


def test_true_roa_is_not_simulated_unless_asked(vdp_dir):
    cert = lyapcert.load(vdp_dir)  # the test's cache folder is empty
    assert certificate_roa(cert, roa=None) is None
    assert certificate_roa(cert, roa=False) is None


def test_heat_map_is_the_lie_derivative_of_a_linear_system():
    cert = _linear_certificate()
    x = torch.tensor([[1.0, 0.0], [0.3, -1.2], [-1.5, 0.7]], dtype=torch.float64)
    assert decrease_values(cert, x).numpy() == pytest.approx(-(x**2).sum(1).numpy(), abs=1e-12)
    ai, aj, v, dv = plane_values(cert, (0, 1), 9)
    gx, gy = np.meshgrid(ai, aj)  # rows along the vertical axis
    assert dv == pytest.approx(-(gx**2 + gy**2), abs=1e-12)
    assert v == pytest.approx(1.5 * gx**2 + gx * gy + gy**2, abs=1e-12)


def test_heat_map_agrees_with_the_symbolic_lie_derivative(vdp_dir):
    cert = lyapcert.load(vdp_dir)
    lie = cert.candidate.lie_derivative_function(cert.system)
    x = torch.rand(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4 - 2
    assert decrease_values(cert, x).numpy() == pytest.approx(lie(x).numpy(), rel=1e-9, abs=1e-12)


def test_discrete_time_heat_map_sign(tmp_path):
    """x+ = (x/2, 3y/2), V = x^2 + y^2: V(x+) - V(x) = -3/4 at (1, 0), +5/4 at (0, 1)."""
    system = lyapcert.System.from_equations(
        "dt_map",
        states=["x", "y"],
        dynamics=["0.5*x", "1.5*y"],
        domain=[[-1, 1], [-1, 1]],
        time="discrete",
        dt=1.0,
    )
    cert = Certificate(
        system, QuadraticCandidate(np.eye(2), system), 0.5, "unknown", "none", {"method": "test"}
    )
    dv = decrease_values(cert, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert dv.tolist() == pytest.approx([-0.75, 1.25])
    _png(plot_certificate(cert, tmp_path / "dt.png", roa=False, resolution=16))


def test_plot_certificate_rejects_bad_input(vdp_dir, tmp_path):
    with pytest.raises(PlotError, match="suffix"):
        plot_certificate(vdp_dir, tmp_path / "v.txt")
    with pytest.raises(PlotError, match="resolution"):
        plot_certificate(vdp_dir, tmp_path / "v.png", resolution=0)
    with pytest.raises(CertificateFileError, match="no certificate here"):
        plot_certificate(tmp_path, tmp_path / "v.png")
    assert not (tmp_path / "v.png").exists()


def _interior_blue(norm, dv, v, level):
    import matplotlib

    typical = float(np.median(dv[(v <= level) & (dv < 0)]))
    r, _, b, _ = matplotlib.colormaps["RdBu_r"](norm(typical))
    return b - r


def test_decrease_colours_are_centred_and_the_interior_is_blue(vdp_dir):
    from lyapcert.viz.certificate_plot import _decrease_norm

    # dV vanishing fast at x* (as a Lyapunov decrease does): a linear scale over the near
    # range left the region's typical value nearly white (blue - red 0.06)
    x, y = np.meshgrid(np.linspace(-2, 2, 101), np.linspace(-2, 2, 101))
    v = x**2 + y**2
    dv = -(v**2) + 0.5 * np.maximum(v - 1.5, 0) ** 2 * 40
    norm = _decrease_norm(dv, v, 1.0)
    assert norm.vmin == -norm.vmax and float(norm(0.0)) == pytest.approx(0.5)
    assert _interior_blue(norm, dv, v, 1.0) > 0.1
    cert = lyapcert.load(vdp_dir)
    _, _, v, dv = plane_values(cert, (0, 1), 80)
    norm = _decrease_norm(dv, v, cert.level)
    assert norm.vmin == -norm.vmax and float(norm(0.0)) == pytest.approx(0.5)
    assert _interior_blue(norm, dv, v, cert.level) > 0.1


# --------------------------------------------------------------------------- training curves

NEURAL_ROA_HISTORY = [
    {"epoch": 0, "loss": 0.5, "decrease": 0.3, "coverage": 0.0},
    {"epoch": 99, "verified": False, "level": None, "roa_share": 0.0, "verify_seconds": 1.0},
    {"epoch": 100, "loss": 0.1, "decrease": 0.05, "coverage": 0.01},
    {"epoch": 199, "verified": True, "level": 0.6, "roa_share": 0.46, "verify_seconds": 1.0},
]


def test_plot_training_curves(tmp_path):
    record = {"method": "neural-roa", "options": {"epochs": 100}, "history": NEURAL_ROA_HISTORY}
    _png(plot_training(record, tmp_path / "t.png"))
    name, curves = history_curves(NEURAL_ROA_HISTORY)
    assert name == "epoch"
    assert curves["level"] == ([199.0], [0.6]) and curves["roa_share"] == ([99.0, 199.0], [0, 46])
    assert "verified" not in curves and "verify_seconds" not in curves


def test_rounds_become_global_steps(tmp_path):
    history = [
        {"round": r, "epoch": e, "loss": 1.0 / (1 + e + r)} for r in (0, 1) for e in (0, 499)
    ] + [{"round": 0, "counterexamples": 7}, {"round": 1, "counterexamples": 0}]
    _, curves = history_curves(history, epochs_per_round=500)
    assert curves["loss"][0] == [0, 499, 500, 999]
    assert curves["counterexamples"] == ([499, 999], [7, 0])
    _png(plot_training({"options": {"epochs": 500}, "history": history}, tmp_path / "r.png"))


def _lines(fig):
    return {line.get_label(): list(line.get_xdata()) for ax in fig.axes for line in ax.get_lines()}


def test_training_plot_marks_only_rounds_without_a_verified_level():
    history = [
        {"epoch": 0, "loss": 0.5},
        # not verified, though its search reached a level: no level point, one hollow marker
        {"epoch": 99, "verified": False, "level": 0.4, "roa_share": 0.0},
        {"epoch": 199, "verified": True, "level": 0.6, "roa_share": 0.46},
        # the same round twice (a resumed run): verified the second time, so no marker
        {"epoch": 299, "verified": False, "level": None, "roa_share": 0.0},
        {"epoch": 299, "verified": True, "level": 0.7, "roa_share": 0.5},
    ]
    _, curves = history_curves(history)
    assert curves["level"] == ([199.0, 299.0], [0.6, 0.7])
    fig = training_figure({"history": history})
    lines = _lines(fig)
    assert lines["level"] == [199.0, 299.0] and lines["not verified"] == [99.0]
    plt.close(fig)


def test_sos_history_draws_every_iteration():
    history = [{"iteration": 0, "gamma": 0.25, "mean_v": 2.0}]
    history += [{"iteration": i, "mean_v": 2.0 / (1 + i)} for i in range(1, 6)]
    history += [{"iteration": 6, "stopped": "the V step failed"}]
    fig = training_figure({"method": "sos", "history": history})
    assert _lines(fig) == {"mean_v": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}  # no one-point gamma panel
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title(loc="left") == "gamma = 0.25 (iteration 0)"
    plt.close(fig)


def test_no_history_writes_nothing(vdp_dir, tmp_path):
    assert plot_training(lyapcert.load(vdp_dir), tmp_path / "t.png") is None
    assert plot_training([], tmp_path / "t.png") is None
    assert not (tmp_path / "t.png").exists()


def test_certify_saves_the_training_history(tmp_path):
    lyapcert.certify(
        lyapcert.get_system("damped_sho"),
        "neural-zubov",
        out=tmp_path / "c",
        roa=False,
        epochs=60,
        samples=256,
        width=8,
    )
    record = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert record["history"] and all("loss" in r for r in record["history"])
    # roa=False: no share of the true ROA; a volume (if any) is not counted on a true-ROA sample
    assert record["roa_fraction"] is None and record["true_roa_volume"] is None
    assert record["volume_method"] != "true-ROA sample"
    _png(plot_training(record, tmp_path / "t.png"))


# --------------------------------------------------------------------------- bench chart

ROWS = [
    {
        "system": "vanderpol",
        "method": "quadratic",
        "controller": None,
        "roa_fraction_mean": 0.47,
        "roa_fraction_std": 0.0,
        "verdict": "verified",
    },
    {
        "system": "vanderpol",
        "method": "neural-roa",
        "controller": None,
        "roa_fraction_mean": 0.85,
        "roa_fraction_std": 0.03,
        "verdict": "verified",
    },
    {
        "system": "inverted_pendulum",
        "method": "neural-roa",
        "controller": "lqr",
        "roa_fraction_mean": None,
        "roa_fraction_std": None,
        "verdict": "unknown",
    },
    {
        "system": "cartpole",
        "method": "quadratic",
        "controller": "lqr",
        "roa_fraction_mean": None,
        "roa_fraction_std": None,
        "verdict": "failed",
    },
]


def test_plot_bench(tmp_path):
    _png(plot_bench(ROWS, tmp_path / "b.png"))
    groups, methods, cells = bench_cells(ROWS)
    assert groups == ["vanderpol", "inverted_pendulum\n(lqr)", "cartpole\n(lqr)"]
    assert methods == ["quadratic", "neural-roa"]
    assert cells[("vanderpol", "neural-roa")] == pytest.approx((85.0, 3.0, "ok"))
    assert cells[("inverted_pendulum\n(lqr)", "neural-roa")][2] == "not verified"
    assert cells[("cartpole\n(lqr)", "quadratic")][2] == "failed"
    assert ("inverted_pendulum\n(lqr)", "quadratic") not in cells  # drawn as "no run"


def test_plot_bench_rejects_bad_rows(tmp_path):
    with pytest.raises(PlotError, match="share in"):
        plot_bench([{**ROWS[0], "roa_fraction_mean": 47.0}], tmp_path / "b.png")
    with pytest.raises(PlotError, match="second row"):
        plot_bench([ROWS[0], ROWS[0]], tmp_path / "b.png")
    with pytest.raises(PlotError, match="system"):
        plot_bench([{"method": "quadratic"}], tmp_path / "b.png")
    with pytest.raises(PlotError, match="empty"):
        plot_bench([], tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


# --------------------------------------------------------------------------- animation


def test_animation_gif_frames(vdp_dir, tmp_path):
    cert = lyapcert.load(vdp_dir)
    starts = start_points(cert, 5)
    assert starts.shape == (5, 2) and bool(cert.contains(starts).all())
    path = animate_certificate(cert, tmp_path / "a.gif", n_trajectories=3, frames=4)
    assert _gif_frames(path) == 4


def test_animation_of_a_pendulum_and_a_3d_system(pendulum_dir, slices_dir, tmp_path):
    path = animate_certificate(pendulum_dir, tmp_path / "p.gif", n_trajectories=2, frames=3)
    assert _gif_frames(path) == 3
    path = animate_certificate(
        slices_dir, tmp_path / "s.gif", n_trajectories=2, frames=3, seconds=1
    )
    assert _gif_frames(path) == 3


def test_pendulum_detection():
    hanging = pendulum_of(lyapcert.get_system("pendulum"))
    upright = pendulum_of(lyapcert.get_system("inverted_pendulum"))
    assert hanging is not None and hanging.angle == 0 and not hanging.upright
    assert upright is not None and upright.angle == 0 and upright.upright
    assert pendulum_of(lyapcert.get_system("cartpole")).angle == 1
    assert pendulum_of(lyapcert.get_system("vanderpol")) is None
    assert pendulum_of(lyapcert.get_system("path_tracking")) is None


def test_animation_rejects_bad_input(vdp_dir, tmp_path, monkeypatch):
    with pytest.raises(PlotError, match="frames"):
        animate_certificate(vdp_dir, tmp_path / "a.gif", frames=0)
    with pytest.raises(PlotError, match="n_trajectories"):
        animate_certificate(vdp_dir, tmp_path / "a.gif", n_trajectories=0)
    with pytest.raises(PlotError, match="suffix"):
        animate_certificate(vdp_dir, tmp_path / "a.png")
    monkeypatch.setattr("matplotlib.animation.writers.is_available", lambda name: False)
    with pytest.raises(PlotError, match="GIF"):
        animate_certificate(vdp_dir, tmp_path / "a.mp4", frames=2)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def runner():
    return CliRunner()


def test_cli_plot_and_animate(vdp_dir, runner, tmp_path):
    out = tmp_path / "v.png"
    result = runner.invoke(
        app, ["plot", str(vdp_dir), "--out", str(out), "--no-roa", "--resolution", "16"]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    _png(out)
    gif = tmp_path / "a.gif"
    result = runner.invoke(
        app, ["animate", str(vdp_dir), "--out", str(gif), "--frames", "3", "--trajectories", "2"]
    )
    assert result.exit_code == 0, result.output
    assert _gif_frames(gif) == 3


def test_cli_plot_default_paths_and_training(tmp_path, runner):
    cert_dir = tmp_path / "c"
    lyapcert.certify(lyapcert.get_system("damped_sho"), "quadratic", out=cert_dir, roa=False)
    result = runner.invoke(app, ["plot", str(cert_dir), "--no-roa", "--training"])
    assert result.exit_code == 0, result.output
    assert "no history" in result.stdout
    _png(cert_dir / "certificate.png")
    assert not (cert_dir / "training.png").exists()
    record = json.loads((cert_dir / "certificate.json").read_text())
    record["history"] = NEURAL_ROA_HISTORY
    (cert_dir / "certificate.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["plot", str(cert_dir), "--no-roa", "--training"])
    assert result.exit_code == 0, result.output
    _png(cert_dir / "training.png")


def test_cli_bad_input_exits_2_and_writes_nothing(vdp_dir, runner, tmp_path):
    missing = tmp_path / "missing"
    result = runner.invoke(app, ["plot", str(missing)])
    assert result.exit_code == 2 and "not a folder" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["plot", str(empty)])
    assert result.exit_code == 2 and "no certificate here" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "certificate.json").write_text("{not json")
    result = runner.invoke(app, ["animate", str(broken)])
    assert result.exit_code == 2 and "not a readable certificate" in result.output
    (broken / "certificate.json").write_text(
        json.dumps({"format": "lyapcert-certificate", "version": 1})
    )
    result = runner.invoke(app, ["plot", str(broken)])
    assert result.exit_code == 2 and "malformed certificate" in result.output
    result = runner.invoke(
        app, ["animate", str(vdp_dir), "--out", str(tmp_path / "a.gif"), "--frames", "0"]
    )
    assert result.exit_code == 2 and "--frames" in result.output
    result = runner.invoke(app, ["plot", str(vdp_dir), "--out", str(tmp_path / "v.txt")])
    assert result.exit_code == 2 and "suffix" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "empty"]
    assert sorted(p.name for p in broken.iterdir()) == ["certificate.json"]
    assert not any(p.suffix in (".png", ".gif") for p in vdp_dir.iterdir())


def test_core_does_not_import_matplotlib():
    code = (
        "import importlib, sys\n"
        "for m in ('lyapcert', 'lyapcert.verify', 'lyapcert.certify', 'lyapcert.cli',"
        " 'lyapcert.simulate', 'lyapcert.methods', 'lyapcert.certificates.store'):\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
