"""A saved certificate carries its proof (the decided boxes) and `verify DIR` re-checks it without
search (design rule 9): deterministic, and failing closed on any tampering."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from typer.testing import CliRunner

import lyapcert.verify.lyapunov as lyap
import lyapcert.verify.search as search_mod
from lyapcert.certificates import ExpressionCandidate, NetworkCandidate, QuadraticCandidate
from lyapcert.certificates.store import save
from lyapcert.cli import app
from lyapcert.errors import CertificateFileError
from lyapcert.systems import get_system
from lyapcert.verify import Verdict, VerifyOptions, recheck, verify_candidate
from lyapcert.verify.proof import stored_proof

FAST = VerifyOptions(time_limit=120.0, max_boxes=400_000)
VDP_V = "1.5*x1**2 - x1*x2 + x2**2"  # a real violation at V ~ 2.3047


def _no_search(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the re-check of a stored proof must not search")

    monkeypatch.setattr(lyap, "minimize", forbidden)
    monkeypatch.setattr(search_mod, "minimize", forbidden)


def _certify(tmp_path, system, cand, options=FAST, name="c"):
    r = verify_candidate(system, cand, options=options)
    assert r.verified, r.message
    proof = stored_proof(system, cand, r)
    assert proof is not None
    save(tmp_path / name, system, cand, r, proof=proof)
    return r, tmp_path / name


def _rewrite_proof(directory, change):
    """Apply ``change(arrays)`` to proof.npz and re-seal its hash (a forger can do that too)."""
    path = directory / "proof.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    manifest = directory / "certificate.json"
    data = json.loads(manifest.read_text())
    data["proof"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    manifest.write_text(json.dumps(data))


def _set_level(directory, level):
    manifest = directory / "certificate.json"
    data = json.loads(manifest.read_text())
    data["level"] = level
    manifest.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def vdp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vdp")
    s = get_system("vanderpol")
    cand = ExpressionCandidate(VDP_V, s)
    r, d = _certify(tmp, s, cand)
    return r, d


def test_a_saved_certificate_rechecks_from_its_proof_without_search(vdp, monkeypatch):
    r, d = vdp
    assert 2.30 < r.level < 2.3047
    data = json.loads((d / "certificate.json").read_text())
    assert data["proof"]["leaves"]["decrease"] > 0 and data["proof"]["leaves"]["boundary"] > 0
    assert data["proof"]["leaves"]["inner"] > 0  # no quadratic floor: c0 by branch and bound
    assert data["proof"]["search_seconds"] == r.seconds
    _no_search(monkeypatch)
    cert, again = recheck(d)
    assert again.verified and again.level == r.level == cert.level
    assert again.provenance["recheck"] == "stored proof"
    assert again.inner_level == r.inner_level
    _, twice = recheck(d)  # deterministic: the same boxes, the same numbers
    assert twice.verified and twice.stats.boxes == again.stats.boxes
    assert twice.message == again.message


def test_a_raised_level_is_not_reproduced(vdp, tmp_path):
    import shutil

    _, d = vdp
    forged = tmp_path / "forged"
    shutil.copytree(d, forged)
    _set_level(forged, 2.4)  # above the real violation at V ~ 2.3047
    _, again = recheck(forged)
    assert again.verdict is Verdict.UNKNOWN and not again.verified
    assert "not decided" in again.message
    result = CliRunner().invoke(app, ["verify", str(forged), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["reproduced"] is False and payload["recheck"] == "stored proof"


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda a: a.update(decrease0_codes=a["decrease0_codes"][:-1]), "truncated"),
        (lambda a: a.update(decrease0_codes=np.delete(a["decrease0_codes"], 3)), ""),
        (lambda a: a.update(boundary_codes=a["boundary_codes"][:-5]), ""),
        (lambda a: a.update(inner_codes=np.append(a["inner_codes"], -1)), "left over"),
        (lambda a: a["decrease0_codes"].__setitem__(0, 1 - a["decrease0_codes"][0]), ""),
        (lambda a: a["decrease0_lo"].__setitem__((0, 0), a["decrease0_lo"][0, 0] + 0.1), "cover"),
        (lambda a: a["boundary_hi"].__setitem__((1, 1), 0.0), "cover"),
        (lambda a: a["inner_codes"].__setitem__(0, 7), "out of range"),
        (lambda a: a.update(c0=a["c0"] * 2), ""),
        (
            lambda a: a.update(boundary_lo=a["boundary_lo"][:2], boundary_hi=a["boundary_hi"][:2]),
            "",
        ),
        (lambda a: a.pop("boundary_codes"), ""),
        (lambda a: a.update(parts=np.array(2)), ""),
    ],
)
def test_a_tampered_proof_fails_closed(vdp, tmp_path, change, why):
    import shutil

    _, d = vdp
    forged = tmp_path / "forged"
    shutil.copytree(d, forged)
    _rewrite_proof(forged, change)
    try:
        _, again = recheck(forged)
    except KeyError:
        return  # a missing array: refused before anything is claimed
    assert again.verdict is Verdict.UNKNOWN and not again.verified
    assert why in again.message


def test_a_proof_that_does_not_match_its_hash_is_refused(vdp, tmp_path):
    import shutil

    _, d = vdp
    forged = tmp_path / "forged"
    shutil.copytree(d, forged)
    raw = bytearray((forged / "proof.npz").read_bytes())
    raw[-10] ^= 1
    (forged / "proof.npz").write_bytes(bytes(raw))
    with pytest.raises(CertificateFileError, match="hash"):
        recheck(forged)


def test_a_folder_without_a_proof_falls_back_to_search(vdp, tmp_path):
    s = get_system("vanderpol")
    cand = ExpressionCandidate(VDP_V, s)
    r, d = vdp
    save(tmp_path / "old", s, cand, r)  # no proof: as saved before proofs existed
    assert not (tmp_path / "old" / "proof.npz").exists()
    _, again = recheck(tmp_path / "old")
    assert again.verified and "no stored proof" in again.provenance["recheck"]
    _, forced = recheck(d, search=True)
    assert forced.verified and forced.provenance["recheck"] == "search (asked for)"


def test_cli_verify_out_then_verify_dir_reports_both_times(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            *("verify", "damped_sho", "-c", "x**2 + x*v + 2*v**2", "--max-boxes", "200000"),
            *("--no-volume", "--out", str(tmp_path / "c")),
        ],
    )
    assert res.exit_code == 0, res.stdout
    assert (tmp_path / "c" / "proof.npz").exists()
    res = runner.invoke(app, ["verify", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.stdout
    payload = json.loads(res.stdout)
    assert payload["reproduced"] is True and payload["recheck"] == "stored proof"
    assert payload["recheck_seconds"] > 0 and payload["search_seconds"] > 0
    assert payload["proof_leaves"]["decrease"] > 0
    res = runner.invoke(app, ["verify", str(tmp_path / "c")])
    assert res.exit_code == 0 and "stored proof" in res.stdout and "search took" in res.stdout
    res = runner.invoke(app, ["verify", str(tmp_path / "c"), "--search", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["recheck"] == "search (asked for)"
    assert json.loads(res.stdout)["provenance"]["settings"]["linear"] is True  # as saved
    # the search's settings can be changed; the stored proof is re-checked as it is
    res = runner.invoke(app, ["verify", str(tmp_path / "c"), "--search", "--no-linear", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["reproduced"] is True
    assert json.loads(res.stdout)["provenance"]["settings"]["linear"] is False
    res = runner.invoke(app, ["verify", str(tmp_path / "c"), "--no-linear"])
    assert res.exit_code == 2 and "--search" in res.stdout + (res.stderr or "")
    res = runner.invoke(app, ["verify", "damped_sho", "-c", "x**2", "--search"])
    assert res.exit_code == 2


def test_discrete_time_with_a_controller(tmp_path, monkeypatch):
    from lyapcert.control.linear import lqr

    s = get_system("inverted_pendulum-dt")
    ctrl = lqr(s)
    a, b = s.linearize()
    a_cl = a - b @ ctrl.K.numpy()
    P = scipy.linalg.solve_discrete_lyapunov(a_cl.T, np.eye(2))
    cand = QuadraticCandidate(P, s)
    r, d = _certify(tmp_path, s.closed_loop(ctrl), cand)
    data = json.loads((d / "certificate.json").read_text())
    assert data["proof"]["leaves"]["boundary"] == 0  # DT: x+ in the box instead of the faces
    _no_search(monkeypatch)
    cert, again = recheck(d)
    assert cert.controller is not None
    assert again.verified and again.level == r.level
    _set_level(d, r.level * 1.5)
    _, raised = recheck(d)
    assert not raised.verified


@pytest.fixture
def one_thread():
    """Small network batches: on a loaded machine, torch's thread pool only adds waiting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_split_search_and_a_network_candidate(tmp_path, monkeypatch, one_thread):
    from lyapcert.certificates.network import LyapunovNetwork

    torch.manual_seed(0)
    s = get_system("vanderpol")
    a, _ = s.linearize()
    P = scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(2))
    net = LyapunovNetwork(2, s.equilibrium, width=16, P=P, input_scale=[2.5, 3.5])
    for p in net.phi.parameters():
        p.data *= 0.05
    cand = NetworkCandidate(net)
    opts = VerifyOptions(time_limit=120.0, max_boxes=400_000, parts=2)
    r, d = _certify(tmp_path, s, cand, options=opts)
    data = json.loads((d / "certificate.json").read_text())
    assert data["proof"]["parts"] == 2 and data["proof"]["leaves"]["inner"] == 0  # the floor
    _no_search(monkeypatch)
    _, again = recheck(d)
    assert again.verified and again.level == r.level
    # one part's tree claimed for the whole box: its root does not cover the other part
    _rewrite_proof(d, lambda arr: arr.update(parts=np.array(1)))
    _, one = recheck(d)
    assert not one.verified and "cover" in one.message


def test_certify_saves_a_proof_for_a_closed_loop(tmp_path, monkeypatch):
    import lyapcert

    system = get_system("double_integrator")
    res = lyapcert.certify(system, "quadratic", controller="lqr", out=tmp_path / "c", roa=False)
    assert res.verified
    assert (tmp_path / "c" / "proof.npz").exists()
    _no_search(monkeypatch)
    cert, again = recheck(tmp_path / "c")
    assert cert.controller is not None
    assert again.verified and again.level == res.result.level


def test_only_verified_results_get_a_proof():
    s = get_system("vanderpol")
    cand = ExpressionCandidate(VDP_V, s)
    r = verify_candidate(s, cand, level=2.4, options=FAST)
    assert r.verdict is Verdict.FALSIFIED
    assert stored_proof(s, cand, r) is None
    off = VerifyOptions(time_limit=120.0, max_boxes=400_000, record_proof=False)
    r = verify_candidate(s, cand, level=2.0, options=off)
    assert r.verified and r.proof_trees is None and stored_proof(s, cand, r) is None
