"""Certified volumes without a simulation (``metric.certified_volume``): exact for an ellipsoid
inside the box, else a seeded sample of the box with its standard error; the true ROA's share
only when it is cached or asked for (``roa=True`` / ``--roa``)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates.candidates import ExpressionCandidate, QuadraticCandidate
from lyapcert.cli import app
from lyapcert.errors import VerificationError
from lyapcert.metric import (
    certified_volume,
    ellipsoid_volume,
    quadratic_form,
    region_share,
    unit_ball_volume,
)
from lyapcert.systems import Box, System


def _system(lower, upper, centre=None):
    n = len(lower)
    names = tuple(f"x{i + 1}" for i in range(n))
    c = torch.tensor(centre if centre is not None else [0.0] * n, dtype=torch.float64)
    return System(
        "box", lambda x, u: c - x, names, Box(tuple(lower), tuple(upper)), equilibrium=centre
    )


class Opaque:
    """The same ``V`` without the quadratic family (so only the sample applies)."""

    def __init__(self, candidate):
        self.candidate = candidate

    def value(self, x):
        return self.candidate.value(x)


def _roa_files() -> list[Path]:
    folder = Path(os.environ["LYAPCERT_CACHE_DIR"]) / "roa"
    return sorted(folder.glob("*")) if folder.exists() else []


def test_unit_ball_volumes():
    assert unit_ball_volume(1) == pytest.approx(2.0, rel=1e-15)
    assert unit_ball_volume(2) == pytest.approx(math.pi, rel=1e-15)
    assert unit_ball_volume(3) == pytest.approx(4 * math.pi / 3, rel=1e-15)
    assert unit_ball_volume(4) == pytest.approx(math.pi**2 / 2, rel=1e-15)


@pytest.mark.parametrize(
    "P, level, expected",
    [
        ([[4.0]], 1.0, 1.0),  # 4 x^2 <= 1: |x| <= 1/2, length 1
        ([[2.0, 0.0], [0.0, 0.5]], 2.0, math.pi * 1.0 * 2.0),  # semi-axes 1 and 2
        ([[2.0, 0.5], [0.5, 1.0]], 1.0, math.pi / math.sqrt(1.75)),  # pi c / sqrt(det P)
        ([[1.0, 0, 0], [0, 4.0, 0], [0, 0, 9.0]], 1.0, 4 * math.pi / 3 / 6),  # axes 1, 1/2, 1/3
        ([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], 0.5, None),
    ],
)
def test_exact_ellipsoid_volume_matches_the_closed_form_and_the_sample(P, level, expected):
    P = np.array(P)
    n = len(P)
    s = _system([-3.0] * n, [3.0] * n)
    cand = QuadraticCandidate(P, s)
    if expected is None:
        expected = unit_ball_volume(n) * level ** (n / 2) / math.sqrt(np.linalg.det(P))
    exact = certified_volume(s, cand, level)
    assert exact.method == "exact ellipsoid" and exact.stderr == 0 and exact.points == 0
    assert exact.volume == pytest.approx(expected, rel=1e-12)
    sampled = certified_volume(s, Opaque(cand), level, samples=2**14, seed=3)
    assert sampled.method == "sample" and sampled.points == 2**14 and sampled.stderr > 0
    assert abs(sampled.volume - exact.volume) <= 4 * sampled.stderr


def test_an_off_centre_ellipsoid_uses_its_own_centre():
    s = _system([0.0, 0.0], [4.0, 4.0], centre=(1.0, 1.0))
    cand = QuadraticCandidate(np.eye(2), s)
    assert certified_volume(s, cand, 0.81).volume == pytest.approx(math.pi * 0.81, rel=1e-12)
    # radius 1.1 reaches past the faces x = 0 and y = 0: the sample, and a quarter cut off
    wide = certified_volume(s, cand, 1.21, samples=2**14)
    assert wide.method == "sample"
    disc = math.pi * 1.21
    assert wide.volume < disc - 0.05
    # exact area of a disc of radius r centred at (1, 1) clipped to x >= 0, y >= 0
    x = np.linspace(0.0, 2.1, 400_001)
    half = np.sqrt(np.clip(1.21 - (x - 1) ** 2, 0, None))
    clipped = np.trapezoid(np.clip(1 + half, 0, None) - np.clip(1 - half, 0, None), x)
    assert abs(wide.volume - clipped) <= 4 * wide.stderr


def test_an_ellipsoid_past_the_box_falls_back_to_the_sample():
    s = _system([-1.0, -1.0], [1.0, 1.0])
    cand = QuadraticCandidate(np.eye(2), s)
    assert ellipsoid_volume(s, cand, 0.99) is not None
    assert ellipsoid_volume(s, cand, 1.01) is None  # radius 1.005 > 1
    inside = certified_volume(s, cand, 1.01)
    assert inside.method == "sample" and inside.points == 2**16
    assert inside.volume < math.pi * 1.01  # the corners of the disc are cut off
    everything = certified_volume(s, cand, 2.5)  # covers the whole box
    assert everything.volume == pytest.approx(4.0) and everything.stderr == 0.0


def test_not_positive_definite_or_empty():
    s = _system([-1.0, -1.0], [1.0, 1.0])
    indefinite = QuadraticCandidate(np.diag([1.0, -1.0]), s)
    assert ellipsoid_volume(s, indefinite, 0.5) is None
    assert certified_volume(s, indefinite, 0.5).method == "sample"
    cand = QuadraticCandidate(np.eye(2), s)
    assert certified_volume(s, cand, 0.0).volume == 0.0
    with pytest.raises(VerificationError, match="samples"):
        certified_volume(s, cand, 0.5, samples=0)
    with pytest.raises(VerificationError, match="level"):
        certified_volume(s, cand, float("nan"))


def test_the_sample_standard_error_formula():
    s = _system([0.0, 0.0], [2.0, 3.0])  # box volume 6

    class HalfPlane:  # V = x1: {V <= 1} is half the box
        def value(self, x):
            return x[:, 0]

    est = certified_volume(s, HalfPlane(), 1.0, samples=4096, seed=1)
    p = est.volume / 6.0
    assert est.stderr == pytest.approx(6.0 * math.sqrt(p * (1 - p) / 4096), rel=1e-12)
    assert est.volume == pytest.approx(3.0, abs=4 * est.stderr)
    assert est.describe() == "sample of 4,096 points"
    assert est.to_dict()["description"] == "sample of 4,096 points"
    again = certified_volume(s, HalfPlane(), 1.0, samples=4096, seed=1)
    assert again == est  # seeded: the same points

    class NotANumber:  # NaN is never counted inside
        def value(self, x):
            return torch.full((x.shape[0],), float("nan"), dtype=x.dtype)

    assert certified_volume(s, NotANumber(), 1.0, samples=64).volume == 0.0


def test_certify_without_a_cached_true_roa_does_not_simulate(tmp_path):
    s = lyapcert.get_system("inverted_pendulum")
    res = lyapcert.certify(s, "quadratic", controller="lqr", out=tmp_path / "a")
    assert _roa_files() == []  # nothing simulated, nothing cached
    assert res.verified and res.roa_fraction is None and res.true_roa_volume is None
    assert res.volume_method == "exact ellipsoid" and res.certified_volume_stderr == 0
    assert res.result.simulation_check is None
    cert = lyapcert.load(tmp_path / "a")
    P = cert.candidate.P
    n = len(P)
    closed_form = unit_ball_volume(n) * res.result.level ** (n / 2) / math.sqrt(np.linalg.det(P))
    assert res.certified_volume == pytest.approx(closed_form, rel=1e-12)
    d = res.to_dict()
    assert d["volume_method"] == "exact ellipsoid" and d["certified_volume_stderr"] == 0
    saved = json.loads((tmp_path / "a" / "certificate.json").read_text())
    assert saved["certified_volume"] == res.certified_volume and saved["roa_fraction"] is None
    assert saved["volume_method"] == "exact ellipsoid"
    none = lyapcert.certify(s, "quadratic", controller="lqr", roa=False)
    assert none.roa_fraction is None and none.true_roa_volume is None
    assert none.certified_volume == res.certified_volume and _roa_files() == []


def test_certify_with_roa_keeps_the_numbers_counted_on_the_true_roa_sample(tmp_path):
    """A verified ellipsoid inside the box: its exact volume over the true ROA's sampled volume
    (a small set holds few sample points); any other V: both counted on the sample."""
    s = lyapcert.get_system("cubic_1d")
    res = lyapcert.certify(s, "quadratic", roa=True, out=tmp_path / "c")
    assert len(_roa_files()) == 1
    cert = lyapcert.load(tmp_path / "c")
    exact = ellipsoid_volume(s, cert.candidate, res.result.level)
    volume, share = exact, exact / res.true_roa_volume
    assert res.certified_volume == volume and res.roa_fraction == share
    assert res.volume_method == "exact ellipsoid, over the true ROA's sampled volume"
    assert res.certified_volume_stderr is None
    assert res.true_roa_volume == pytest.approx(2.0, abs=0.01)
    assert share == pytest.approx(region_share(s, cert.candidate, res.result.level)[1], abs=1e-3)
    saved = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert saved["roa_fraction"] == share and saved["volume_method"] == res.volume_method
    from lyapcert.verify import verify_candidate

    quartic = ExpressionCandidate("x**2 + x**4", s)
    counted = verify_candidate(s, quartic)
    estimate = lyapcert.metric.true_roa_of(s)
    lyapcert.metric.measure_region(s, quartic, counted, estimate)
    assert counted.verified and counted.volume_method == "true-ROA sample"
    assert (counted.certified_volume, counted.roa_fraction) == region_share(
        s, quartic, counted.level
    )
    cached = lyapcert.certify(s, "quadratic")  # roa=None: the cache, nothing simulated again
    assert len(_roa_files()) == 1
    assert (cached.certified_volume, cached.roa_fraction) == (volume, share)
    assert cached.result.simulation_check == res.result.simulation_check
    assert res.result.simulation_check["not_converged"] == 0


@pytest.mark.slow
def test_certify_a_closed_loop_with_and_without_its_true_roa(tmp_path):
    s = lyapcert.get_system("inverted_pendulum")
    res = lyapcert.certify(s, "quadratic", controller="lqr", out=tmp_path / "a")
    assert _roa_files() == [] and res.volume_method == "exact ellipsoid"
    cert = lyapcert.load(tmp_path / "a")

    # roa=True: the true ROA simulated now (then cached); the verified ellipsoid keeps its exact
    # volume, its share is that over the ROA's sampled volume
    full = lyapcert.certify(s, "quadratic", controller="lqr", roa=True)
    assert len(_roa_files()) == 1
    volume, share = region_share(cert.system, cert.candidate, full.result.level)
    assert full.result.level == res.result.level
    assert full.certified_volume == res.certified_volume
    assert full.roa_fraction == full.certified_volume / full.true_roa_volume
    assert full.volume_method == "exact ellipsoid, over the true ROA's sampled volume"
    assert full.certified_volume_stderr is None
    assert full.true_roa_volume > full.certified_volume > 0
    assert full.result.simulation_check["not_converged"] == 0
    # the grid's count and the exact volume describe the same set
    assert volume == pytest.approx(full.certified_volume, rel=0.01)
    assert share == pytest.approx(full.roa_fraction, rel=0.01)

    # roa=None now finds the cache: the same numbers, nothing simulated again
    cached = lyapcert.certify(s, "quadratic", controller="lqr")
    assert len(_roa_files()) == 1
    assert (cached.certified_volume, cached.roa_fraction, cached.true_roa_volume) == (
        full.certified_volume,
        full.roa_fraction,
        full.true_roa_volume,
    )
    assert cached.volume_method == full.volume_method
    assert cached.result.simulation_check == full.result.simulation_check

    # roa=False: no true ROA even though it is cached
    none = lyapcert.certify(s, "quadratic", controller="lqr", roa=False)
    assert none.roa_fraction is None and none.true_roa_volume is None
    assert none.volume_method == "exact ellipsoid"
    assert none.certified_volume == res.certified_volume
    assert none.result.simulation_check is None


def test_verify_command_reports_a_sampled_volume_without_simulating():
    runner = CliRunner()
    args = ["verify", "cubic_1d", "-c", "x**2 + x**4"]  # not an ellipsoid: the sample
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert _roa_files() == []
    assert data["verdict"] == "verified" and data["roa_fraction"] is None
    assert data["volume_method"] == "sample of 65,536 points"
    assert data["simulation_check"] is None
    # x^2 + x^4 <= c  <=>  |x| <= sqrt((sqrt(1 + 4c) - 1) / 2)
    exact = 2 * math.sqrt((math.sqrt(1 + 4 * data["level"]) - 1) / 2)
    assert 0 < data["certified_volume_stderr"] < 0.01
    assert abs(data["certified_volume"] - exact) <= 4 * data["certified_volume_stderr"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    line = next(x for x in text.output.splitlines() if x.startswith("certified volume:"))
    assert "+-" in line and "(sample of 65,536 points)" in line and "--roa" in line
    # --roa: the share of the true ROA (simulated now), as before
    r = runner.invoke(app, [*args, "--json", "--roa"])
    assert r.exit_code == 0, r.output
    shared = json.loads(r.stdout)
    assert len(_roa_files()) == 1
    assert shared["volume_method"] == "true-ROA sample" and 0.99 < shared["roa_fraction"] <= 1
    assert shared["certified_volume"] == pytest.approx(exact, rel=0.01)
    assert shared["certified_volume_stderr"] is None
    assert shared["simulation_check"]["not_converged"] == 0
    # the cache is used by default from now on; --no-roa ignores it
    r = runner.invoke(app, [*args, "--json"])
    assert json.loads(r.stdout)["roa_fraction"] == shared["roa_fraction"]
    r = runner.invoke(app, [*args, "--json", "--no-roa"])
    assert json.loads(r.stdout)["roa_fraction"] is None
    text = runner.invoke(app, args)
    assert f"= {100 * shared['roa_fraction']:.2f} % of the true ROA" in text.output
    # --no-volume: nothing measured; with --roa a contradiction
    r = runner.invoke(app, [*args, "--json", "--no-volume"])
    data = json.loads(r.stdout)
    assert data["certified_volume"] is None and data["volume_method"] is None
    r = runner.invoke(app, [*args, "--no-volume", "--roa"])
    assert r.exit_code == 2 and "--no-volume" in r.output


def test_a_quadratic_expression_is_measured_exactly():
    s = lyapcert.get_system("vanderpol")
    r = CliRunner().invoke(
        app, ["verify", "vanderpol", "-c", "1.5*x1**2 - x1*x2 + x2**2", "--json"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["volume_method"] == "exact ellipsoid" and data["certified_volume_stderr"] == 0
    expected = math.pi * data["level"] / math.sqrt(1.5 - 0.25)
    assert data["certified_volume"] == pytest.approx(expected, rel=1e-12)
    assert _roa_files() == []
    # an off-centre quadratic expression with a constant: its own centre and offset
    cand = ExpressionCandidate("2*(x1 - 0.5)**2 + (x2 + 0.25)**2 + 3", s)
    P, centre, offset = quadratic_form(cand)
    assert np.allclose(P, np.diag([2.0, 1.0])) and np.allclose(centre, [0.5, -0.25])
    assert offset == pytest.approx(3.0)
    est = certified_volume(s, cand, 4.0)
    assert est.method == "exact ellipsoid"
    assert est.volume == pytest.approx(math.pi / math.sqrt(2.0), rel=1e-12)
    sampled = certified_volume(s, Opaque(cand), 4.0)
    assert abs(sampled.volume - est.volume) <= 4 * sampled.stderr
    for text in ("x1**2 - x2**2", "x1**4 + x2**2", "abs(x1) + x2**2", "x1**2"):
        assert quadratic_form(ExpressionCandidate(text, s)) is None, text


def test_certify_command_json_without_and_with_roa():
    runner = CliRunner()
    args = ["certify", "cubic_1d", "--method", "quadratic", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert _roa_files() == []
    assert data["volume_method"] == "exact ellipsoid" and data["certified_volume_stderr"] == 0
    half_width = math.sqrt(data["level"] / 0.5)  # V = x^2 / 2
    assert data["certified_volume"] == pytest.approx(2 * half_width, rel=1e-12)
    assert data["roa_fraction"] is None and data["true_roa_volume"] is None
    r = runner.invoke(app, [*args, "--roa"])
    data = json.loads(r.stdout)
    assert data["volume_method"] == "exact ellipsoid, over the true ROA's sampled volume"
    assert data["certified_volume"] == pytest.approx(2 * half_width, rel=1e-12)
    assert data["roa_fraction"] == data["certified_volume"] / data["true_roa_volume"]
    assert data["roa_fraction"] == pytest.approx(half_width, abs=0.01)
    assert data["true_roa_volume"] == pytest.approx(2.0, abs=0.01)


def test_report_of_a_certificate_measured_without_a_true_roa(tmp_path):
    lyapcert.certify(lyapcert.get_system("cubic_1d"), "quadratic", out=tmp_path / "c")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "c"), "--no-animations"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "c" / "report.html").read_text()
    assert "(exact ellipsoid); no true ROA to compare with" in page
    assert _roa_files() == []
