"""The 3-D surface animation (viz/surface.py, `lyapcert animate --surface`): frames written, the
camera's schedule, the curve's heights, the double pendulum's geometry, bad input."""

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates import QuadraticCandidate
from lyapcert.certificates.store import Certificate
from lyapcert.cli import app
from lyapcert.errors import PlotError
from lyapcert.viz.animate import DoublePendulum, animate_certificate, double_pendulum_of
from lyapcert.viz.report_figures import _is_pendulum, certificate_figures
from lyapcert.viz.surface import (
    START_AZIMUTH,
    animate_surface,
    camera_azimuths,
    surface_figure,
    surface_scene,
)


@pytest.fixture(scope="module")
def pendulum_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("surface") / "cert"
    res = lyapcert.certify(lyapcert.get_system("pendulum"), "quadratic", out=out, roa=False)
    assert res.verified
    return out


def _double_pendulum_certificate():
    """A linear stand-in with the double pendulum's states and lengths (th_i' = w_i,
    w_i' = -th_i - w_i); V = sum_i [th_i, w_i] P [th_i, w_i] with A'P + PA = -I per pair, so
    dV/dt = -|x|^2. Drawn, not verified here."""
    system = lyapcert.System.from_equations(
        "linear_double",
        states=["th1", "th2", "w1", "w2"],
        dynamics=["w1", "w2", "-th1 - w1", "-th2 - w2"],
        domain=[[-2, 2]] * 4,
        params={"l1": 1.0, "l2": 0.5},
    )
    P = [[1.5, 0, 0.5, 0], [0, 1.5, 0, 0.5], [0.5, 0, 1.0, 0], [0, 0.5, 0, 1.0]]
    cand = QuadraticCandidate(P, system)
    return Certificate(system, cand, 1.0, "verified", "asymptotic", {"method": "quadratic"})


def _gif(path):
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames, im.size


def test_surface_gif_of_a_pendulum(pendulum_dir, tmp_path):
    path = animate_surface(pendulum_dir, tmp_path / "s.gif", frames=6, resolution=20)
    assert path == tmp_path / "s.gif"
    frames, size = _gif(path)
    assert frames == 6 and size == (640, 320)  # 8 x 4 inches at 80 dpi: surface and pendulum
    assert [p.name for p in tmp_path.iterdir()] == ["s.gif"]


def test_camera_schedule():
    np.testing.assert_allclose(camera_azimuths(4, 2.0, start=10.0), [10, 190, 370, 550])
    azimuths = camera_azimuths(120, 2.0)
    assert azimuths[0] == START_AZIMUTH
    assert azimuths[-1] == pytest.approx(START_AZIMUTH + 720.0 * 119 / 120)
    np.testing.assert_allclose(camera_azimuths(5, 0.0), [START_AZIMUTH] * 5)


def test_curve_heights_are_v_and_the_camera_turns(pendulum_dir):
    cert = lyapcert.load(pendulum_dir)
    scene = surface_scene(cert, resolution=20, seconds=3.0)
    assert scene.states.shape[1:] == (1, 2) and scene.heights.shape == scene.states.shape[:2]
    with torch.no_grad():
        assert bool(cert.contains(torch.as_tensor(scene.states[0])).all())  # starts inside
        truth = cert.value(torch.as_tensor(scene.states[:, 0])).numpy()
    np.testing.assert_allclose(scene.heights[:, 0], truth, rtol=1e-12, atol=0)
    # the surface: V at its points (the slice is the whole plane here), cut at the rim height
    flat = np.stack([scene.x.ravel(), scene.y.ravel()], -1)
    with torch.no_grad():
        grid = cert.value(torch.as_tensor(flat)).numpy().reshape(scene.x.shape)
    np.testing.assert_allclose(scene.values, grid, rtol=1e-12, atol=0)
    assert scene.values.max() <= scene.top and scene.top >= 1.5 * cert.level
    assert scene.values.max() > cert.level  # the level line lies on the drawn bowl

    frames, turns = 5, 1.5
    steps = np.linspace(0, len(scene.times) - 1, frames).round().astype(int)
    azimuths = camera_azimuths(frames, turns)
    fig, update, artists = surface_figure(cert, scene, steps, azimuths, 20.0, None)
    try:
        update(frames - 1)
        xs, ys, zs = artists["curves"][0].get_data_3d()
        np.testing.assert_allclose(zs, truth, rtol=1e-12, atol=0)
        np.testing.assert_allclose(xs, scene.states[:, 0, 0])
        np.testing.assert_allclose(ys, scene.states[:, 0, 1])
        _, _, z_marker = artists["markers"][0].get_data_3d()
        assert z_marker[0] == pytest.approx(truth[-1], rel=1e-12)
        ax = artists["axes"]
        assert ax.elev == 20.0
        assert ax.azim == pytest.approx(START_AZIMUTH + 360 * turns * (frames - 1) / frames)
        assert artists["rods"] == []  # no pendulum panel asked for
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_double_pendulum_geometry():
    rods = DoublePendulum(0, 1)
    joint, tip = rods.points(0.0, 0.0)
    np.testing.assert_allclose(joint, [0, -1], atol=1e-15)
    np.testing.assert_allclose(tip, [0, -2], atol=1e-15)
    joint, tip = rods.points(np.pi / 2, 0.0)
    np.testing.assert_allclose(joint, [1, 0], atol=1e-15)
    np.testing.assert_allclose(tip, [1, -1], atol=1e-15)
    joint, tip = DoublePendulum(0, 1, 2.0, 0.5).points([np.pi, 0.0], [-np.pi / 2, np.pi])
    np.testing.assert_allclose(joint, [[0, 2], [0, -2]], atol=1e-15)
    np.testing.assert_allclose(tip, [[-0.5, 2], [0, -1.5]], atol=1e-15)


def test_double_pendulum_detection():
    found = double_pendulum_of(_double_pendulum_certificate().system)
    assert found == DoublePendulum(0, 1, 1.0, 0.5)
    named = lyapcert.System.from_equations(
        "my_double_pendulum", states=["a", "b"], dynamics=["-a", "-b"], domain=[[-1, 1]] * 2
    )
    assert double_pendulum_of(named) == DoublePendulum(0, 1)
    assert double_pendulum_of(lyapcert.get_system("pendulum")) is None
    assert double_pendulum_of(lyapcert.get_system("vanderpol")) is None


def test_double_pendulum_surface_animation(tmp_path):
    cert = _double_pendulum_certificate()
    path = animate_surface(cert, tmp_path / "d.gif", frames=4, resolution=12, turns=0.5)
    assert _gif(path) == (4, (640, 320))
    scene = surface_scene(cert, resolution=12)
    panel = double_pendulum_of(cert.system)
    steps = np.array([0, len(scene.times) - 1])
    fig, update, artists = surface_figure(cert, scene, steps, camera_azimuths(2, 1.0), -30.0, panel)
    try:
        update(0)
        th1, th2 = scene.states[0, 0, 0], scene.states[0, 0, 1]
        joint, tip = panel.points(th1, th2)
        xs, ys = artists["rods"][0].get_data()
        np.testing.assert_allclose(xs, [0, joint[0], tip[0]])
        np.testing.assert_allclose(ys, [0, joint[1], tip[1]])
        assert artists["axes"].elev == -30.0
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_flat_animation_draws_both_rods(tmp_path):
    cert = _double_pendulum_certificate()
    path = animate_certificate(cert, tmp_path / "a.gif", n_trajectories=2, frames=3, seconds=2)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size[0] > 2.5 * im.size[1]  # three panels


def test_surface_rejects_bad_input(pendulum_dir, tmp_path):
    target = tmp_path / "s.gif"
    for kwargs, match in (
        ({"frames": 1}, "frames"),
        ({"elevation": 91.0}, "elevation"),
        ({"elevation": math.nan}, "elevation"),
        ({"turns": -1.0}, "turns"),
        ({"turns": math.inf}, "turns"),
        ({"resolution": 2}, "resolution"),
        ({"seconds": 0.0}, "seconds"),
    ):
        with pytest.raises(PlotError, match=match):
            animate_surface(pendulum_dir, target, **kwargs)
    with pytest.raises(PlotError, match="suffix"):
        animate_surface(pendulum_dir, tmp_path / "s.png")
    cubic = lyapcert.System.from_equations(
        "cubic", states=["x"], dynamics=["-x**3 - x"], domain=[[-1, 1]]
    )
    one = Certificate(cubic, QuadraticCandidate([[1.0]], cubic), 0.5, "verified", "asymptotic", {})
    with pytest.raises(PlotError, match="2 states"):
        animate_surface(one, target, frames=2)
    assert list(tmp_path.iterdir()) == []


def test_cli_surface(pendulum_dir, tmp_path):
    runner = CliRunner()
    cert_dir = tmp_path / "cert"
    shutil.copytree(pendulum_dir, cert_dir)
    result = runner.invoke(app, ["animate", str(cert_dir), "--surface", "--frames", "3"])
    assert result.exit_code == 0, result.output
    assert _gif(cert_dir / "surface.gif")[0] == 3
    assert "(3 frames)" in result.stdout
    out = tmp_path / "s.gif"
    result = runner.invoke(
        app,
        [
            *("animate", str(cert_dir), "--surface", "--out", str(out), "--frames", "2"),
            *("--elevation", "-10", "--turns", "0.5", "--no-pendulum", "--seconds", "2"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _gif(out) == (2, (400, 320))  # no pendulum panel


@pytest.mark.parametrize(
    "args, message",
    [
        (["--surface", "--turns", "-1"], "--turns"),
        (["--surface", "--turns", "nan"], "--turns"),
        (["--surface", "--turns", "inf"], "--turns"),
        (["--surface", "--elevation", "95"], "--elevation"),
        (["--surface", "--elevation", "nan"], "--elevation"),
        (["--surface", "--frames", "1"], "--frames"),
        (["--elevation", "30"], "only with --surface"),
        (["--turns", "1"], "only with --surface"),
    ],
)
def test_cli_surface_bad_input_writes_nothing(pendulum_dir, tmp_path, args, message):
    before = sorted(p.name for p in pendulum_dir.iterdir())
    result = CliRunner().invoke(
        app, ["animate", str(pendulum_dir), "--out", str(tmp_path / "s.gif"), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in pendulum_dir.iterdir()) == before


def test_report_adds_the_surface_for_pendulums(pendulum_dir, tmp_path):
    cert = lyapcert.load(pendulum_dir)
    assert _is_pendulum(cert) and _is_pendulum(_double_pendulum_certificate())
    linear = lyapcert.System.from_equations(
        "linear_2d", states=["x", "y"], dynamics=["y", "-x - y"], domain=[[-2, 2], [-2, 2]]
    )
    other = Certificate(
        linear, QuadraticCandidate([[1.5, 0.5], [0.5, 1.0]], linear), 1.0, "verified", "", {}
    )
    assert not _is_pendulum(other)
    figures = certificate_figures(cert, tmp_path, frames=3, trajectories=1, resolution=16)
    gifs = [f for f in figures if f.mime == "image/gif"]
    assert len(gifs) == 2 and all(f.data and f.note is None for f in gifs)
    assert "surface" in gifs[1].caption
    assert _gif(tmp_path / "surface.gif")[0] == 3
    figures = certificate_figures(other, tmp_path / "other", frames=3, resolution=16)
    assert sum(f.mime == "image/gif" for f in figures) == 1
