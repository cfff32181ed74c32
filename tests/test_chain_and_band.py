"""A V that does not vanish at x* (or has its minimum elsewhere) certified through a chain of
certificates, and a peer's band claim checked exactly as stated (issue 14)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lyapcert
from lyapcert.certificates import ExpressionCandidate, NetworkCandidate, QuadraticCandidate
from lyapcert.simulate import simulate
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.band import check_band

OPTS = VerifyOptions(time_limit=3600, max_boxes=400_000)
VDP_P = np.array([[1.5, -0.5], [-0.5, 1.0]])  # vanderpol's quadratic (A'P + PA = -I)


class OffCentreSigmoid(torch.nn.Module):
    """``V(x) = sigmoid(s (x - p)' P (x - p) - b)``: a sigmoid network's shape with its minimum at
    ``p`` (not ``x*``) and ``V(x*) > min V``."""

    def __init__(self, p, P, s=1.0, b=3.0):
        super().__init__()
        self.register_buffer("p", torch.tensor([p], dtype=torch.float64))
        self.register_buffer("P", torch.as_tensor(P, dtype=torch.float64))
        self.s, self.b = s, b

    def forward(self, x):
        e = x - self.p
        return torch.sigmoid(self.s * ((e @ self.P) * e).sum(1) - self.b)


def _converges(system, candidate, level, count=400, seed=0):
    """Sample points of ``{x in box : V <= level}`` and check that they converge to x*."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = system.domain.as_tensors()
    x = lo + (hi - lo) * torch.rand(40_000, system.n_states, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        x = x[candidate.value(x) <= level][:count]
    assert x.shape[0] > 10
    final = simulate(system, x, horizon=40.0, step=0.01, record_every=10**9).final
    return bool((final.abs().max(dim=1).values < 1e-3).all())


def test_an_off_centre_sigmoid_v_is_certified_only_through_the_chain():
    s = lyapcert.get_system("vanderpol")
    V = NetworkCandidate(OffCentreSigmoid([0.35, 0.0], VDP_P))
    with torch.no_grad():
        v_star = float(V.value(torch.zeros(1, 2, dtype=torch.float64)))
        v_min = float(V.value(torch.tensor([[0.35, 0.0]], dtype=torch.float64)))
    assert v_min < v_star  # V - V(x*) is negative next to x*
    alone = verify_candidate(s, V, options=VerifyOptions(**{**vars(OPTS), "chain": False}))
    assert not alone.verified and alone.hole is not None
    chained = verify_candidate(s, V, options=OPTS)
    assert chained.verified and chained.hole is None, chained.message
    assert chained.chain is not None and chained.level > v_star
    assert "chain" in chained.message and "{W <=" in chained.proof
    assert _converges(s, V, chained.level)


def test_the_chain_never_certifies_a_set_without_x_star_or_a_false_decrease():
    s = lyapcert.get_system("vanderpol")
    # centred on x = 1.2: the quadratic's region does not reach its minimum, where dV/dt = 0
    far = NetworkCandidate(OffCentreSigmoid([1.2, 0.0], VDP_P))
    res = verify_candidate(s, far, options=OPTS)
    assert not res.verified
    # a level below V(x*): the set does not contain x*
    V = ExpressionCandidate("1.5*(x1-0.35)**2 - (x1-0.35)*x2 + x2**2 + 0.02", s)
    below = verify_candidate(s, V, level=0.1, options=OPTS)  # V(x*) = 0.20375
    assert not below.verified
    # a constant is never certified, with or without a chain
    assert not verify_candidate(s, ExpressionCandidate("5", s), options=OPTS).verified


def test_a_negative_v_inside_the_auxiliary_region_is_certified_up_to_what_holds():
    s = lyapcert.get_system("vanderpol")
    V = ExpressionCandidate("1.5*(x1-0.35)**2 - (x1-0.35)*x2 + x2**2 - 1", s)
    res = verify_candidate(s, V, level=0.1, options=OPTS)
    assert res.verified and res.chain is not None
    assert _converges(s, V, 0.1)


def test_a_band_with_a_planted_violation_is_reported_violated():
    """cubic_1d: x' = x^3 - x, V = x^2: dV/dt = -2x^2 (1 - x^2) > 0 for |x| > 1 (V > 1)."""
    s = lyapcert.get_system("cubic_1d")
    V = QuadraticCandidate(np.eye(1), s)
    bad = check_band(s, V, 0.25, 2.25, options=OPTS, certify=False)
    assert bad.decrease["status"] == "violated"
    x = bad.decrease["point"][0]
    assert 1.0 <= abs(x) <= 1.5 and bad.decrease["value"][0] > 0
    assert bad.box["status"] == "inside"  # V = 4 on the faces x = +-2
    good = check_band(s, V, 0.25, 0.81, options=OPTS)
    assert good.decrease["status"] == "holds" and good.box["status"] == "inside"
    assert good.hole["status"] == "closed"
    assert good.certified.verified and good.certified.level >= 0.81 * (1 - 1e-3)


def test_a_set_that_reaches_the_faces_is_never_reported_inside_the_box():
    s = lyapcert.get_system("cubic_1d")
    V = QuadraticCandidate(np.eye(1), s)
    rep = check_band(s, V, 0.25, 4.5, options=OPTS, certify=False)  # V = 4 on the faces
    assert rep.box["status"] == "reaches the faces"
    lo, hi = rep.box["min_v_on_faces"]
    assert lo <= 4.0 <= hi
    edge = check_band(s, V, 0.25, 4.0, options=OPTS, certify=False)  # touches at V = 4
    assert edge.box["status"] != "inside"
    vdp = lyapcert.get_system("vanderpol")
    W = QuadraticCandidate(VDP_P, vdp)
    # min of W on the faces: 7.8125 at (2.5, 1.25) (and its mirror)
    wide = check_band(vdp, W, 0.5, 8.0, options=OPTS, certify=False)
    assert wide.box["status"] == "reaches the faces"
    lo, hi = wide.box["min_v_on_faces"]
    assert lo <= 7.8125 <= hi
    assert check_band(vdp, W, 0.5, 7.8, options=OPTS, certify=False).box["status"] == "inside"


def test_an_open_hole_is_reported_with_its_volume():
    """A hole the chain cannot close: V's minimum far from x* (outside every proven region)."""
    s = lyapcert.get_system("vanderpol")
    V = NetworkCandidate(OffCentreSigmoid([1.2, 0.0], VDP_P))
    with torch.no_grad():
        c1 = float(V.value(torch.zeros(1, 2, dtype=torch.float64))) + 1e-3
    rep = check_band(s, V, c1, 0.9, options=OPTS, certify=False)
    assert rep.hole["status"] == "open"
    assert rep.hole["volume"] > 0 and rep.hole["stderr"] >= 0
    assert math.isfinite(rep.hole["volume"])
    assert len(rep.lines()) == 4 and "hole" in rep.lines()[3]


def test_verify_band_on_the_command_line(tmp_path):
    import json

    from typer.testing import CliRunner

    from lyapcert.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["verify", "cubic_1d", "-c", "x**2", "--band", "0.25", "2.25", "--json"])
    assert r.exit_code == 0, r.output  # the no-hole certificate (level ~1) verifies
    d = json.loads(r.stdout)
    assert d["band"]["decrease"]["status"] == "violated"
    assert d["band"]["box"]["status"] == "inside"
    assert d["band"]["hole"]["status"] == "closed"
    assert d["verdict"] == "verified" and d["level"] < 1.0
    out = tmp_path / "cert"
    r = runner.invoke(
        app, ["verify", "cubic_1d", "-c", "x**2", "--band", "0.25", "0.81", "--out", str(out)]
    )
    assert r.exit_code == 0 and "decrease on the band: holds" in r.output
    assert "in the box: inside" in r.output and "hole {V < 0.25}: closed" in r.output
    assert json.loads((out / "certificate.json").read_text())["band"]["decrease"]["status"] == (
        "holds"
    )
    from lyapcert.viz.report import make_report

    html = Path(make_report(out, out=tmp_path / "r.html", animations=False)).read_text()
    assert "band claim" in html and "holds" in html
    bad = runner.invoke(app, ["verify", "cubic_1d", "-c", "x**2", "--band", "2", "1"])
    assert bad.exit_code == 2 and "C1 < C2" in bad.output


def test_a_chain_certificate_with_its_auxiliary_is_saved_and_rechecked(tmp_path):
    import json

    from typer.testing import CliRunner

    from lyapcert.cli import app

    runner = CliRunner()
    out = tmp_path / "cert"
    r = runner.invoke(
        app,
        [
            "verify",
            "vanderpol",
            "-c",
            "1.5*(x1-0.35)**2 - (x1-0.35)*x2 + x2**2 + 0.02",
            "--auxiliary",
            "1.5*x1**2 - x1*x2 + x2**2",
            "--level",
            "1.0",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "chain of certificates" in r.output
    record = json.loads((out / "certificate.json").read_text())
    assert record["auxiliary"]["family"] == "expression"
    assert record["chain"] and record["chain"][-1]["auxiliary_level"] > 1.0
    again = runner.invoke(app, ["verify", str(out)])
    assert again.exit_code == 0 and "reproduced" in again.output
    from lyapcert.viz.report import make_report

    html = Path(make_report(out, out=tmp_path / "r.html", animations=False)).read_text()
    assert "chain of certificates" in html


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pendulum_bigtorque_seed0", "path_tracking_bigtorque_seed0"])
def test_the_published_certificates_band_holds_and_lyapcert_certifies_their_set(name):
    """The two shared two-stage certificates (tests/data/twostage): the band with c1 = V(x*) +
    0.001 holds, the hole is closed by a chain, and the level certified with no hole reaches
    95 % of min(c2, min V on the faces) (box budgets, no time pressure)."""
    import json

    from lyapcert.certificates import load_candidate

    data = Path(__file__).parent / "data" / "twostage"
    entry = next(e for e in json.loads((data / "index.json").read_text()) if e["name"] == name)
    loop = lyapcert.get_system(entry["lyapcert_system"]).closed_loop(
        data / f"{name}_controller.onnx"
    )
    V = load_candidate(str(data / f"{name}_V.onnx"), loop)
    c1, c2 = entry["V_at_x_star"] + 0.001, entry["c2"]
    opts = VerifyOptions(time_limit=3600, max_boxes=3_000_000)
    rep = check_band(loop, V, c1, c2, options=opts)
    assert rep.decrease["status"] == "holds"
    assert rep.hole["status"] == "closed"
    faces = rep.box["min_v_on_faces"][0]
    assert rep.box["status"] == ("inside" if faces > c2 else "reaches the faces")
    assert rep.certified.verified and rep.certified.chain is not None
    assert rep.certified.level >= 0.95 * min(c2, faces)


def test_a_published_v_with_the_wrong_loop_is_never_certified():
    """Mutations of the shared pendulum certificate: the open loop (u = u*, unstable upright) and
    a controller with half the LQR gain. Neither the band nor a no-hole region may come back
    proven for a loop it was not trained for, unless it truly holds (the half-gain loop: then
    every certified sample point must converge)."""
    import json

    from lyapcert.certificates import load_candidate
    from lyapcert.control import LinearController, lqr

    data = Path(__file__).parent / "data" / "twostage"
    name = "pendulum_bigtorque_seed0"
    entry = next(e for e in json.loads((data / "index.json").read_text()) if e["name"] == name)
    s = lyapcert.get_system(entry["lyapcert_system"])
    V = load_candidate(str(data / f"{name}_V.onnx"), s)
    c1, c2 = entry["V_at_x_star"] + 0.001, entry["c2"]
    opts = VerifyOptions(time_limit=3600, max_boxes=200_000)
    open_loop = check_band(s, V, c1, c2, options=opts)
    assert open_loop.decrease["status"] == "violated"
    assert not open_loop.certified.verified
    k = lqr(s)
    half = LinearController(0.5 * k.K, s.equilibrium, s.equilibrium_input, [-6.0], [6.0])
    weak = s.closed_loop(half)
    res = verify_candidate(weak, V, options=opts)
    if res.verified:
        assert _converges(weak, V, res.level)


def test_the_chain_in_discrete_time():
    """The Euler map of vanderpol (dt = 0.05) with an off-centre V: verified through a chain (the
    successors stay in the box outside {W < d}, V(x+) < V(x) there), and the set's points
    converge under the map."""
    d = lyapcert.get_system("vanderpol").discretize(0.05)
    V = ExpressionCandidate("1.5*(x1-0.35)**2 - (x1-0.35)*x2 + x2**2 + 0.02", d)
    alone = verify_candidate(d, V, options=VerifyOptions(**{**vars(OPTS), "chain": False}))
    assert not alone.verified
    res = verify_candidate(d, V, options=OPTS)
    assert res.verified and res.chain is not None, res.message
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50_000, 2, generator=gen, dtype=torch.float64)
    x = x * torch.tensor([5.0, 7.0]) - torch.tensor([2.5, 3.5])
    with torch.no_grad():
        x = x[V.value(x) <= res.level]
    assert x.shape[0] > 100
    final = simulate(d, x, horizon=60.0, record_every=10**9).final
    assert float(final.abs().max()) < 1e-6
