"""Z3 differential tests, falsification and replay, certificate files, the verify command."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates import ExpressionCandidate, QuadraticCandidate
from lyapcert.certificates.store import save
from lyapcert.cli import app
from lyapcert.errors import CertificateFileError
from lyapcert.systems import System, get_system
from lyapcert.verify import Verdict, VerifyOptions, recheck, verify_candidate

FAST = VerifyOptions(time_limit=3600.0, max_boxes=400_000)  # box budgets decide, never the clock


def quadratic(name):
    s = get_system(name)
    a, _ = s.linearize()
    return s, QuadraticCandidate(
        scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(s.n_states)), s
    )


POLY_CASES = [
    ("poly2", None),
    ("damped_sho", None),
    ("vanderpol", None),
    ("nonpoly0", None),
    ("custom", "x**2 + x*y + 2*y**2"),
]


@pytest.mark.parametrize("name, expression", POLY_CASES)
def test_bound_engine_and_z3_agree(name, expression):
    z3check = pytest.importorskip("lyapcert.verify.z3check")
    pytest.importorskip("z3")
    if name == "custom":
        s = System.from_equations(
            "cubic2d", ["x", "y"], ["-x + y**2", "-2*y + x*y"], [[-1.5, 1.5], [-1.5, 1.5]]
        )
        cand = ExpressionCandidate(expression, s)
    else:
        s, cand = quadratic(name)
    r = verify_candidate(s, cand, options=FAST)
    assert r.verified
    below = z3check.check_band(s, cand, r.level, r.inner_level, timeout_s=60)
    assert below.status in ("holds", "unknown")
    if below.status == "unknown":
        pytest.skip("z3 timed out")
    if r.level_upper is not None and np.isfinite(r.level_upper):
        above = z3check.check_band(s, cand, r.level_upper * 1.01, r.inner_level, timeout_s=60)
        assert above.status in ("violated", "unknown")
        # and our verifier, asked for that level, falsifies it
        again = verify_candidate(s, cand, level=r.level_upper * 1.01, options=FAST)
        assert again.verdict is Verdict.FALSIFIED


def test_counterexamples_are_replayed_in_arbitrary_precision():
    s, cand = quadratic("vanderpol")
    r = verify_candidate(s, cand, level=3.0, options=FAST)
    rep = r.counterexample["replay"]
    lo, hi = rep["interval"]
    assert lo >= 0  # the violation is proven at the point
    mp = float(rep["mp50"])
    assert lo <= mp <= hi and lo <= rep["float64"] <= hi


def test_falsifier_finds_violations_quickly():
    from lyapcert.verify.falsify import decrease_function, falsification_points

    s, cand = quadratic("vanderpol")
    fn = decrease_function(s, cand)
    lo, hi = s.domain.as_tensors()
    pts = falsification_points(fn, lo, hi, n_samples=1024)
    assert bool((fn(pts) > 0).any())
    assert bool(s.domain.contains(pts).all())


def test_certificate_files_round_trip(tmp_path):
    s, cand = quadratic("vanderpol")
    r = verify_candidate(s, cand, options=FAST)
    save(tmp_path / "cert", s, cand, r)
    cert = lyapcert.load(tmp_path / "cert")
    assert cert.level == r.level and cert.verdict == "verified"
    x = torch.tensor([[0.0, 0.0], [2.4, 3.4]], dtype=torch.float64)
    assert cert.contains(x).tolist() == [True, False]
    torch.testing.assert_close(cert.value(x), cand.value(x))
    _, again = recheck(tmp_path / "cert")
    assert again.verified and again.level == r.level


def test_certificate_of_a_file_system_embeds_its_definition(tmp_path):
    s = System.from_file("examples/duffing.toml")
    a, _ = s.linearize()
    cand = QuadraticCandidate(scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(2)), s)
    r = verify_candidate(s, cand, options=FAST)
    assert r.verified
    save(tmp_path / "c", s, cand, r)
    data = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert "spec" in data["system"] and data["system"]["spec"]["name"] == "duffing"
    _cert, again = recheck(tmp_path / "c")
    assert again.verdict.value == r.verdict.value


def test_damaged_certificate_is_a_typed_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "certificate.json").write_text("{not json")
    with pytest.raises(CertificateFileError):
        lyapcert.load(tmp_path / "bad")
    with pytest.raises(CertificateFileError):
        lyapcert.load(tmp_path)


def test_tampered_level_is_not_reproduced(tmp_path):
    s, cand = quadratic("vanderpol")
    r = verify_candidate(s, cand, options=FAST)
    save(tmp_path / "cert", s, cand, r)
    path = tmp_path / "cert" / "certificate.json"
    data = json.loads(path.read_text())
    data["level"] = 3.0  # a forged, too large level
    path.write_text(json.dumps(data))
    _, again = recheck(tmp_path / "cert")
    assert again.verdict is Verdict.FALSIFIED
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "cert"), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reproduced"] is False


def test_cli_verify_json_fields_and_exit_codes(tmp_path):
    runner = CliRunner()
    args = [
        "verify",
        "vanderpol",
        "-c",
        "1.5*x1**2 - x1*x2 + x2**2",
        "--json",
        "--roa",
        "--out",
        str(tmp_path / "cert"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "verdict",
        "condition",
        "level",
        "hole",
        "certified_volume",
        "verify_seconds",
        "roa_fraction",
        "certificate_dir",
    ):
        assert key in data
    assert data["verdict"] == "verified" and data["hole"] == "none"
    assert data["condition"] == "asymptotic"
    assert 0 < data["roa_fraction"] < 1 and data["certified_volume"] > 0
    again = runner.invoke(app, ["verify", str(tmp_path / "cert"), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["reproduced"] is True

    energy = runner.invoke(
        app, ["verify", "pendulum", "-c", "0.5*x2**2 + 1 - cos(x1)", "--json", "--no-volume"]
    )
    assert energy.exit_code == 1
    e = json.loads(energy.stdout)
    assert e["verdict"] == "falsified" and e["condition"] == "nonstrict"


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "vanderpol"],  # no candidate
        ["verify", "vanderpol", "-c", "x1 + unknown"],
        ["verify", "vanderpol", "-c", "x1**2", "--level", "-1"],
        ["verify", "vanderpol", "-c", "x1**2", "--time-limit", "0"],
        ["verify", "no_such_system", "-c", "x**2"],
    ],
)
def test_cli_verify_bad_input_exits_2(args, tmp_path):
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "o").exists()
