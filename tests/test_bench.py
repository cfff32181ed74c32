"""The comparison runner: cells, the results store, aggregation, resume, failures, CLI, Ray."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lyapcert.bench import (
    Cell,
    MethodSpec,
    ResultStore,
    aggregate,
    anchor_for,
    make_cells,
    run_bench,
)
from lyapcert.cli import app
from lyapcert.errors import CertificateFileError, OptionsError, UnknownSystemError

QUAD = MethodSpec.parse("quadratic")


def test_method_spec_parses_options_and_refuses_bad_syntax():
    spec = MethodSpec.parse("sos:degree=4,target=box,scale=0.5")
    assert spec.name == "sos"
    assert dict(spec.options) == {"degree": 4, "target": "box", "scale": 0.5}
    assert spec.label == 'sos:degree=4,target="box",scale=0.5'
    with pytest.raises(OptionsError, match="key=value"):
        MethodSpec.parse("sos:degree")
    with pytest.raises(OptionsError, match="empty method"):
        MethodSpec.parse(":x=1")


def test_grid_gives_controllers_to_controlled_systems_and_seeds_to_seeded_methods():
    cells = make_cells(
        ["cubic_1d", "inverted_pendulum"], [QUAD, MethodSpec("sos")], ["lqr", "neural"], seeds=2
    )
    auto = [c for c in cells if c.system == "cubic_1d"]
    ctrl = [c for c in cells if c.system == "inverted_pendulum"]
    assert {c.controller for c in auto} == {None}
    assert {c.controller for c in ctrl} == {"lqr", "neural"}
    assert sorted({c.seed for c in cells}) == [0, 1]  # both methods have a seed option
    assert len(cells) == 2 * 2 + 2 * 2 * 2
    assert len({c.id for c in cells}) == len(cells)  # ids are unique and file-safe
    assert all("/" not in c.id and " " not in c.id for c in cells)
    assert Cell("cubic_1d", QUAD, None, 0).id == Cell("cubic_1d", QUAD, None, 0).id


def test_unknown_system_or_method_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(UnknownSystemError):
        make_cells(["no_such_system"], [QUAD])
    with pytest.raises(OptionsError, match="unknown method"):
        make_cells(["cubic_1d"], [MethodSpec("no-such-method")])
    with pytest.raises(OptionsError, match="seeds"):
        make_cells(["cubic_1d"], [QUAD], seeds=0)
    with pytest.raises(OptionsError, match="backend"):
        run_bench([], tmp_path / "x", backend="slurm")
    assert not (tmp_path / "x").exists()


def _record(system, method, seed, verdict="verified", volume=1.0, fraction=0.5, **kw):
    return {
        "id": f"{system}-{method}-{seed}",
        "system": system,
        "method": method,
        "method_label": method,
        "controller": kw.pop("controller", None),
        "seed": seed,
        "status": kw.pop("status", "done"),
        "verdict": verdict,
        "hole": None,
        "certified_volume": volume,
        "roa_fraction": fraction,
        "train_seconds": 1.0,
        "verify_seconds": 2.0,
        "boxes": 100,
        "certificate_dir": f"/c/{seed}",
        **kw,
    }


def test_aggregate_means_spreads_and_anchors():
    rows = aggregate(
        [
            _record("vanderpol", "neural-roa", 0, volume=1.0, fraction=0.80),
            _record("vanderpol", "neural-roa", 1, volume=3.0, fraction=0.90),
            _record("vanderpol", "neural-roa", 2, verdict="falsified", volume=None, fraction=None),
            _record("vanderpol", "quadratic", 0, status="failed", error="boom"),
            _record("path_tracking-wide", "quadratic", 0, controller="lqr", volume=5.0),
        ]
    )
    nn, quad, ctrl = rows
    assert nn["runs"] == 3 and nn["verdict"] == "verified 2/3, falsified 1/3"
    # a seed that did not verify certified nothing: it counts as 0 in the mean
    assert nn["certified_volume_mean"] == pytest.approx(4.0 / 3)
    assert nn["roa_percent_mean"] == pytest.approx(170.0 / 3)
    assert nn["roa_percent_std"] == pytest.approx(
        math.sqrt(((80 - 170 / 3) ** 2 + (90 - 170 / 3) ** 2 + (170 / 3) ** 2) / 2)
    )
    assert nn["published"] == 95.6 and nn["published_kind"] == "percent"
    assert quad["verdict"] == "failed" and quad["errors"] == ["boom"]
    assert quad["published"] is None  # no published quadratic percentage
    assert ctrl["published"] == 122.0 and ctrl["published_kind"] == "volume"
    assert anchor_for("vanderpol", "sos").value == 94.2
    assert anchor_for("cubic_1d", "sos") is None


def test_store_writes_atomically_and_names_a_corrupt_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write({"id": "a", "x": 1})
    assert store.has("a") and not list(tmp_path.rglob(".*.tmp*"))
    assert store.records() == [{"id": "a", "x": 1}]
    store.record_path("b").write_text('{"id": "b", "trunc')
    with pytest.raises(CertificateFileError, match=r"b\.json"):
        store.records()


def test_local_run_stores_records_skips_them_on_rerun_and_records_a_failure(tmp_path):
    cells = make_cells(["cubic_1d", "inverted_pendulum"], [QUAD, MethodSpec("sos")])
    run = run_bench(cells, tmp_path / "b")
    assert run.ran == 4 and run.skipped == 0
    by_key = {(r["system"], r["method"]): r for r in run.records}
    ok = by_key[("cubic_1d", "quadratic")]
    assert ok["status"] == "done" and ok["verdict"] == "verified" and ok["hole"] is None
    assert ok["roa_fraction"] > 0.9  # the quadratic certifies (almost) all of (-1, 1)
    assert (Path(ok["certificate_dir"]) / "certificate.json").exists()
    # sos needs an autonomous system: that cell fails with its reason, the others ran
    bad = by_key[("inverted_pendulum", "sos")]
    assert bad["status"] == "failed" and "autonomous" in bad["error"]
    assert run.failed == 1
    assert by_key[("inverted_pendulum", "quadratic")]["verdict"] == "verified"
    table = (tmp_path / "b" / "table.md").read_text()
    assert table.count("\n| `") == 4
    assert f"`cells/{ok['id']}/certificate`" in table  # relative to the results folder
    before = {p.name: p.read_text() for p in (tmp_path / "b" / "cells").glob("*.json")}
    again = run_bench(cells, tmp_path / "b")
    assert again.ran == 0 and again.skipped == 4
    after = {p.name: p.read_text() for p in (tmp_path / "b" / "cells").glob("*.json")}
    assert after == before
    assert [r["verdict"] for r in again.rows] == [r["verdict"] for r in run.rows]


def test_cli_bench_json_and_bad_input(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "bench",
            "--systems",
            "cubic_1d",
            "--methods",
            "quadratic",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["ran"] == 1 and payload["rows"][0]["verdict"] == "verified"
    assert Path(payload["tables"]["csv"]).read_text().startswith("system,method,controller")
    res = runner.invoke(
        app, ["bench", "--systems", "cubic_1d", "--backend", "nope", "--out", str(tmp_path / "p")]
    )
    assert res.exit_code == 2 and "backend" in res.output
    assert not (tmp_path / "p").exists()
    res = runner.invoke(app, ["bench", "--methods", "sos:degree", "--out", str(tmp_path / "q")])
    assert res.exit_code == 2 and not (tmp_path / "q").exists()


@pytest.mark.slow
def test_kill_9_loses_no_finished_cell_and_the_rerun_completes(tmp_path):
    """A bench killed with SIGKILL after its first record: the rerun skips the stored cells,
    keeps them byte for byte, and finishes the rest."""
    out = tmp_path / "k"
    cmd = [
        sys.executable,
        "-m",
        "lyapcert.cli",
        "bench",
        "--systems",
        "cubic_1d,damped_sho,vanderpol",
        "--methods",
        "quadratic",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    deadline = time.time() + 900  # a safety bound, not a budget: the loop ends at the first record
    while time.time() < deadline and not list((out / "cells").glob("*.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    assert 1 <= len(first) < 3
    res = subprocess.run(
        [*cmd, "--json"], capture_output=True, text=True, env=os.environ.copy(), timeout=1800
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["skipped"] == len(first) and payload["ran"] == 3 - len(first)
    for name, text in first.items():
        assert (out / "cells" / name).read_text() == text
    assert all(r["verdict"] == "verified" for r in payload["rows"])


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_runs_cells_and_brings_the_certificates_home(tmp_path, local_ray):
    cells = make_cells(["cubic_1d", "damped_sho"], [QUAD])
    run = run_bench(cells, tmp_path / "r", backend="ray")
    assert run.ran == 2 and run.failed == 0
    local = run_bench(make_cells(["cubic_1d", "damped_sho"], [QUAD]), tmp_path / "l")
    for r, l in zip(run.rows, local.rows):
        assert r["verdict"] == l["verdict"] == "verified"
        assert r["certified_volume_mean"] == l["certified_volume_mean"]
    for rec in run.records:
        cert = Path(rec["certificate_dir"])
        assert cert.is_relative_to(tmp_path / "r")
        res = CliRunner().invoke(app, ["verify", str(cert)])
        assert res.exit_code == 0, res.output


def test_methods_option_keeps_several_key_values_with_their_method():
    """``NAME:key=value,key=value`` (as documented) in one comma-separated ``--methods`` list."""
    from lyapcert.cli import _split_methods

    assert _split_methods(["quadratic,sos:degree=4,taylor_degree=3,neural-roa"]) == [
        "quadratic",
        "sos:degree=4,taylor_degree=3",
        "neural-roa",
    ]
    assert _split_methods(["sos:degree=4", "neural-roa:epochs=5,width=8"]) == [
        "sos:degree=4",
        "neural-roa:epochs=5,width=8",
    ]
    spec = MethodSpec.parse(_split_methods(["sos:degree=4,taylor_degree=3"])[0])
    assert dict(spec.options) == {"degree": 4, "taylor_degree": 3}
    assert _split_methods(["degree=4"]) == ["degree=4"]  # no method before it: refused later


def test_table_numbers_too_small_for_two_decimals_keep_three_significant_digits():
    from lyapcert.bench.aggregate import _pm

    assert _pm(0.050328, None) == "0.05"
    assert _pm(0.0012949, None) == "0.00129"
    assert _pm(1234.5678, 12.345) == "1,234.57 ± 12.35"
    assert _pm(0.0, None) == "0.00"
    assert _pm(0.0012, 0.0004) == "0.0012 ± 0.0004"


def _screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: just the controls rich's Live uses."""
    import re

    rows, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", text):
        if token == "\n":
            row, col = row + 1, 0
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            if token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
            elif token == "\x1b[2K":
                rows[row] = ""
            continue
        else:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
        rows.extend([""] * (row + 1 - len(rows)))
    return rows


def test_bench_progress_is_erased_before_the_results_table():
    import io

    from rich.console import Console

    from lyapcert.bench.progress import BenchProgress

    screen = io.StringIO()  # stderr and stdout on one terminal
    console = Console(file=screen, force_terminal=True, width=80, color_system=None)
    cell = Cell("cubic_1d", MethodSpec.parse("quadratic"))
    with BenchProgress(1, console=console) as display:
        display.started(cell)
        display.finished(cell, {"status": "done", "verdict": "verified", "level": 0.5})
    screen.write("| system | method |\n")  # the command's markdown table, on stdout
    shown = [line for line in _screen(screen.getvalue()) if line.strip()]
    assert shown == ["| system | method |"]
    # in a log the final view is written once and kept
    log = io.StringIO()
    with BenchProgress(1, console=Console(file=log, width=80)) as display:
        display.finished(cell, {"status": "done", "verdict": "verified"})
    assert "1 done" in log.getvalue()
