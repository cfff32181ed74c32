"""The library functions behind the thin command line: the same refusals and the same numbers
through the Python API as through `lyapcert`."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from lyapcert.certificates import ExpressionCandidate
from lyapcert.certificates.store import save
from lyapcert.errors import CertificateFileError, PlotError, SimulationError, VerificationError
from lyapcert.simulate.roa import system_report, torch_device, true_roa
from lyapcert.systems import get_system, registry_rows, system_names
from lyapcert.verify import VerifyOptions, recheck_report, verify_candidate
from lyapcert.verify.options import check_device, check_limits, mapper_for
from lyapcert.verify.proof import stored_proof

# ------------------------------------------------------------------------------ verifier options


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("time_limit", 0.0, "--time-limit: expected a finite number > 0, got 0.0"),
        ("time_limit", math.nan, "--time-limit: expected a finite number > 0, got nan"),
        ("time_limit", -1.0, "--time-limit: expected a finite number > 0, got -1.0"),
        ("level_tolerance", math.inf, "--tolerance: expected a finite number > 0, got inf"),
        ("level_tolerance", 0, "--tolerance: expected a finite number > 0, got 0"),
        ("decay_rate", 1.0, "--decay-rate: expected 0 <= k < 1, got 1.0"),
        ("decay_rate", -0.1, "--decay-rate: expected 0 <= k < 1, got -0.1"),
        ("decay_rate", math.nan, "--decay-rate: expected 0 <= k < 1, got nan"),
        ("max_boxes", 0, "--max-boxes: expected a positive integer, got 0"),
        ("max_boxes", 2.5, "--max-boxes: expected a positive integer, got 2.5"),
        ("max_boxes", True, "--max-boxes: expected a positive integer, got True"),
        ("parts", 0, "--parts: expected a positive integer, got 0"),
        ("batch_size", 0, "batch_size: expected a positive integer, got 0"),
        ("falsify_samples", -1, "falsify_samples: expected an integer >= 0, got -1"),
    ],
)
def test_validate_refuses_what_the_cli_refuses(field, value, message):
    options = VerifyOptions(**{field: value})  # construction accepts anything (internal use)
    with pytest.raises(VerificationError) as exc:
        options.validate()
    assert str(exc.value) == message


def test_validate_accepts_the_defaults_and_edge_values():
    options = VerifyOptions()
    assert options.validate() is options
    VerifyOptions(decay_rate=0.0, max_boxes=1, parts=1, falsify_samples=0).validate()
    VerifyOptions(decay_rate=0.999, time_limit=1e-9, level_tolerance=1e-12).validate()


def test_the_first_bad_setting_is_named_in_the_cli_order():
    with pytest.raises(VerificationError, match=r"^--decay-rate"):
        VerifyOptions(decay_rate=2.0, time_limit=0.0, parts=0).validate()
    with pytest.raises(VerificationError, match=r"^--time-limit"):
        check_limits(VerifyOptions(time_limit=0.0, max_boxes=0))


def test_cuda_without_a_cuda_device_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = "--device: CUDA was asked for but torch sees no CUDA device; use --device cpu"
    for device in ("cuda", "cuda:1"):
        with pytest.raises(VerificationError) as exc:
            VerifyOptions(device=device).validate()
        assert str(exc.value) == message
        with pytest.raises(SimulationError) as exc:
            torch_device(device)
        assert str(exc.value) == message
    check_device("cpu")
    check_limits(VerifyOptions(device="cuda"))  # the limits alone do not look at the device


def test_mapper_for_backends():
    assert mapper_for() is None and mapper_for("local") is None
    with pytest.raises(
        VerificationError, match="--backend: expected local, process or ray, got 'dask'"
    ):
        mapper_for("dask")
    with pytest.raises(VerificationError, match="--address is for --backend ray"):
        mapper_for("local", "127.0.0.1:6379")


def test_torch_device_parses_names():
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(SimulationError, match=r"--device: 'tpu' is not a torch device"):
        torch_device("tpu")


# ------------------------------------------------------------------------------ systems


def test_system_report_of_the_van_der_pol_oscillator():
    s = get_system("vanderpol")
    info = system_report(s)
    assert info["name"] == "vanderpol" and info["states"] == ["x1", "x2"]
    assert info["A"].shape == (2, 2) and info["B"].shape == (2, 0)
    # reversed-time Van der Pol: A = [[0, -1], [1, -1]], eigenvalues -1/2 +- i sqrt(3)/2
    pairs = sorted(info["eigenvalues"], key=lambda p: p[1])
    assert pairs[0] == pytest.approx([-0.5, -math.sqrt(3) / 2], abs=1e-12)
    assert pairs[1] == pytest.approx([-0.5, math.sqrt(3) / 2], abs=1e-12)
    assert info["locally_exponentially_stable"] is True
    assert info["residual"] == 0.0


def test_registry_rows():
    rows = registry_rows()
    assert [r["name"] for r in rows] == system_names()
    controlled = registry_rows("controlled")
    assert controlled and all(r["category"] == "controlled" and r["inputs"] for r in controlled)
    row = next(r for r in rows if r["name"] == "cubic_1d")
    assert row["states"] == ["x"] and row["inputs"] == [] and row["input_bounds"] is None
    assert row["time"] == "continuous" and row["dt"] is None and len(row["domain"]) == 1


# ------------------------------------------------------------------------------ re-checks


@pytest.fixture(scope="module")
def cubic(tmp_path_factory):
    """cubic_1d (x' = -x + x^3, true ROA (-1, 1)) certified with V = x^2, saved with its proof."""
    s = get_system("cubic_1d")
    cand = ExpressionCandidate("x**2", s)
    result = verify_candidate(s, cand, options=VerifyOptions(max_boxes=100_000))
    assert result.verified and 0.99 < result.level < 1.0
    directory = tmp_path_factory.mktemp("cubic") / "c"
    save(directory, s, cand, result, proof=stored_proof(s, cand, result))
    return result, directory


def test_recheck_report_reproduces_a_saved_certificate(cubic):
    result, directory = cubic
    report = recheck_report(directory)
    assert report.reproduced and report.confirmed and report.kind == "stored proof"
    assert report.result.level == result.level
    assert report.search_seconds == result.seconds
    assert set(report.proof_leaves) == {"inner", "decrease", "boundary"}
    payload = report.to_dict()
    assert payload["saved_verdict"] == "verified" and payload["saved_condition"] == "asymptotic"
    assert payload["reproduced"] is True and payload["recheck"] == "stored proof"
    assert payload["certificate_dir"] == str(directory)
    assert payload["proof_leaves"] == report.proof_leaves
    searched = recheck_report(directory, search=True)
    assert searched.confirmed and searched.kind == "search (asked for)"


def test_recheck_report_of_a_raised_level_is_not_confirmed(cubic, tmp_path):
    _, directory = cubic
    forged = tmp_path / "forged"
    shutil.copytree(directory, forged)
    manifest = forged / "certificate.json"
    data = json.loads(manifest.read_text())
    data["level"] = 1.2  # {x^2 <= 1.2} reaches beyond x = 1, where x' = -x + x^3 >= 0
    manifest.write_text(json.dumps(data))
    report = recheck_report(forged)
    assert not report.result.verified
    assert not report.reproduced and not report.confirmed
    assert report.to_dict()["reproduced"] is False


# ------------------------------------------------------------------------------ pictures


def test_plot_certificate_dir_and_its_refusals(cubic, tmp_path):
    from lyapcert.viz.certificate_plot import load_certificate_dir, plot_certificate_dir

    _, directory = cubic
    target = tmp_path / "v.png"
    pictures = plot_certificate_dir(directory, target, roa=False, training=True, resolution=20)
    assert pictures.written == [target] and target.stat().st_size > 0
    assert "no history" in pictures.note and "no training plot written" in pictures.note
    assert not (tmp_path / "v-training.png").exists()
    with pytest.raises(PlotError, match="suffix"):
        plot_certificate_dir(directory, tmp_path / "v.txt")
    with pytest.raises(PlotError, match="resolution"):
        plot_certificate_dir(directory, tmp_path / "w.png", resolution=3)
    assert not (tmp_path / "w.png").exists()
    (tmp_path / "a.txt").write_text("x")
    for where in (tmp_path / "a.txt", tmp_path / "missing"):
        with pytest.raises(CertificateFileError, match="not a folder"):
            load_certificate_dir(where)
    assert load_certificate_dir(directory).level == cubic[0].level


def test_bench_folder_plot_refuses_an_empty_bench(tmp_path):
    from lyapcert.viz.bench_plot import is_bench_folder, plot_bench_folder

    assert not is_bench_folder(tmp_path)
    (tmp_path / "table.json").write_text("[]")
    assert is_bench_folder(tmp_path)
    with pytest.raises(PlotError, match="no finished cells"):
        plot_bench_folder(tmp_path)
    assert not (tmp_path / "bench.png").exists()


def test_save_roa_plot_names_the_file_after_the_system(tmp_path):
    from lyapcert.viz.roa_plot import save_roa_plot

    s = get_system("cubic_1d")
    estimate = true_roa(s, 51, cache=False)
    path = save_roa_plot(s, estimate, tmp_path / "out")
    assert path == tmp_path / "out" / "cubic_1d-roa.png" and path.stat().st_size > 0
