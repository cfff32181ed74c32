"""The HTML report: a bench folder and a certificate folder become one self-contained page."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lyapcert.bench import MethodSpec, make_cells, run_bench
from lyapcert.cli import app
from lyapcert.errors import ReportError
from lyapcert.viz.report import bench_plot_rows, make_report
from lyapcert.viz.report_html import _sig

runner = CliRunner()
FAILING = "MethodError: sos: needs an autonomous system"


class Page(HTMLParser):
    """What the tests look at: table rows of the comparison, images, every src/href, sections,
    scripts, and the page's text."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.row_classes: list[str] = []
        self.images: list[str] = []
        self.references: list[str] = []
        self.sections: dict[str, list[str]] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self._in_table = self._in_body = False
        self._cell: list[str] | None = None
        self._section: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href", "srcset", "action", "data"):
            if attrs.get(key):
                self.references.append(attrs[key])
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "table" and "comparison" in (attrs.get("class") or ""):
            self._in_table = True
        if self._in_table and tag == "tbody":
            self._in_body = True
        if self._in_body and tag == "tr":
            self.rows.append([])
            self.row_classes.append(attrs.get("class") or "")
        if self._in_body and tag == "td":
            self._cell = []
        if tag == "section" and "certificate" in (attrs.get("class") or ""):
            self._section = attrs.get("id")
            self.sections[self._section] = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tbody":
            self._in_body = False
        if tag == "table":
            self._in_table = False
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self.sections[self._section].append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def assert_self_contained(page: Page, source: str) -> None:
    assert page.images, "no pictures"
    for src in page.images:
        assert src.startswith("data:image/"), src[:60]
    for ref in page.references:
        assert ref.startswith(("data:", "#")), ref[:60]
    assert "http://" not in source and "https://" not in source
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """cubic_1d and damped_sho with quadratic, and sos on the controlled inverted pendulum (it
    fails on purpose: sos needs an autonomous system); the report with small animations."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LYAPCERT_CACHE_DIR", str(root / "cache"))
        cells = make_cells(["cubic_1d", "damped_sho"], [MethodSpec("quadratic")]) + make_cells(
            ["inverted_pendulum"], [MethodSpec("sos")]
        )
        run = run_bench(cells, root / "bench", threads=1)
        assert run.failed == 1
        make_report(root / "bench", frames=4)
    return root / "bench"


def test_bench_report_has_the_table_the_error_and_only_embedded_pictures(bench_dir):
    path = bench_dir / "report.html"
    source = path.read_text()
    page = Page(source)
    rows = json.loads((bench_dir / "table.json").read_text())
    assert len(rows) == 3
    assert len(page.rows) == len(rows)
    for row, cells in zip(rows, page.rows):
        assert cells[0] == row["system"] and cells[1] == row["method"]
    failed = [k for k, r in enumerate(rows) if r["errors"]]
    assert failed == [2]
    assert "failed" in page.row_classes[2]
    assert FAILING in page.rows[2][-1]  # the error beside the failed row
    # cubic_1d: the whole true ROA (-1, 1), its exact length over the sampled ROA's
    assert float(page.rows[0][7].rstrip(" %")) > 99.9
    assert_self_contained(page, source)
    assert sum(src.startswith("data:image/gif;base64,") for src in page.images) == 2
    assert sum(src.startswith("data:image/png;base64,") for src in page.images) == 3  # chart, 2
    text = page.all_text
    assert "What the numbers mean" in text and "% of the true ROA" in text
    assert "Failed cells" in text and "Traceback" in text
    # one section per certificate, with its level (to 6 digits, rounded down) and region
    done = [
        json.loads(p.read_text())
        for p in sorted((bench_dir / "cells").glob("*.json"))
        if json.loads(p.read_text())["status"] == "done"
    ]
    assert len(page.sections) == len(done) == 2
    for record in done:
        cert = json.loads((Path(record["certificate_dir"]) / "certificate.json").read_text())
        section = next(" ".join(t) for k, t in page.sections.items() if record["id"] in k)
        shown = _sig(cert["level"], "down")
        assert float(shown) <= cert["level"] and float(shown) == pytest.approx(cert["level"], 1e-5)
        assert "Proven" in section and "certified region of attraction" in section
        assert "V(x) ≤ " + shown in section
        assert f'title="exact: {cert["level"]!r}"' in source  # the exact value on hover
        assert cert["provenance"]["candidate_hash"] in section
    # the table links to the sections
    assert {r[1:] for r in page.references if r.startswith("#")} == set(page.sections)
    leftovers = [p.name for p in bench_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_bench_rows_become_plot_rows():
    rows = [
        {"system": "a", "method": "m", "controller": None, "verdict": "verified"}
        | {"roa_percent_mean": 46.0, "roa_percent_std": 2.0},
        {"system": "b", "method": "m", "controller": "lqr", "verdict": "failed"}
        | {"roa_percent_mean": None, "roa_percent_std": None},
    ]
    out = bench_plot_rows(rows)
    assert out[0]["roa_fraction_mean"] == pytest.approx(0.46)
    assert out[0]["roa_fraction_std"] == pytest.approx(0.02)
    assert out[1]["roa_fraction_mean"] is None and out[1]["controller"] == "lqr"


def test_cli_report_of_one_certificate(bench_dir, tmp_path):
    source = next(p for p in (bench_dir / "cells").glob("damped_sho*") if p.is_dir())
    cert_dir = tmp_path / "cert"
    shutil.copytree(source / "certificate", cert_dir)
    res = runner.invoke(app, ["report", str(cert_dir), "--no-animations"])
    assert res.exit_code == 0, res.output
    path = cert_dir / "report.html"
    assert f"wrote {path}" in " ".join(res.output.split())
    source_text = path.read_text()
    page = Page(source_text)
    assert_self_contained(page, source_text)
    assert page.rows == []  # no comparison table
    assert list(page.sections) == ["certificate"]
    record = json.loads((cert_dir / "certificate.json").read_text())
    section = " ".join(page.sections["certificate"])
    assert _sig(record["level"], "down") in section and _sig(record["inner_level"]) in section
    assert "x' = v" in section  # the equations
    assert not any(src.startswith("data:image/gif") for src in page.images)
    assert "lyapcert certificate: damped_sho, quadratic" in page.all_text
    # certify saved the comparison's numbers in the certificate: the page shows them
    assert record["roa_fraction"] is not None and record["certified_volume"] > 0
    assert f"{100 * record['roa_fraction']:.2f} % of the true ROA" in section


def test_max_certificates_caps_the_sections(bench_dir, tmp_path):
    out = make_report(bench_dir, tmp_path / "r.html", animations=False, max_certificates=1)
    page = Page(out.read_text())
    assert len(page.sections) == 1 and len(page.rows) == 3
    assert "1 more certificate(s) not shown" in page.all_text


def _fake_bench(root: Path, error: str) -> Path:
    """A bench folder with one failed cell and no certificate (no run needed)."""
    cell = {
        "id": "cubic_1d-sos-s0-00000000",
        "system": "cubic_1d",
        "method": "sos",
        "method_label": "sos",
        "controller": None,
        "seed": 0,
        "status": "failed",
        "error": error,
        "traceback": "Traceback (most recent call last):\n  " + error,
        "started": 1.7e9,
        "seconds": 1.0,
    }
    (root / "cells").mkdir(parents=True)
    (root / "cells" / f"{cell['id']}.json").write_text(json.dumps(cell))
    (root / "bench.json").write_text(
        json.dumps({"format": "lyapcert-bench", "version": 1, "cells": [cell]})
    )
    from lyapcert.bench import aggregate

    (root / "table.json").write_text(json.dumps(aggregate([cell])))
    return root


def test_text_is_escaped_and_a_failed_only_bench_still_reports(tmp_path):
    evil = 'MethodError: <script>alert("x")</script> & <img src=http://example.com/a.png>'
    root = _fake_bench(tmp_path / "b", evil)
    path = make_report(root, animations=False)
    source = path.read_text()
    page = Page(source)
    assert "script" not in page.tags
    assert html.escape(evil) in source
    assert len(page.rows) == 1 and evil in page.rows[0][-1]
    assert page.sections == {}
    assert "No cell finished with a certificate" in page.all_text
    for src in page.images:  # the chart only
        assert src.startswith("data:image/png;base64,")


def test_table_is_aggregated_when_table_json_is_missing(tmp_path):
    root = _fake_bench(tmp_path / "b", "MethodError: boom")
    (root / "table.json").unlink()
    page = Page(make_report(root, animations=False).read_text())
    assert len(page.rows) == 1 and "boom" in page.rows[0][-1]


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    cases = []
    cases.append((tmp_path / "missing", "no such folder"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, "neither a bench results folder"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases.append((a_file, "not a folder"))
    broken_table = _fake_bench(tmp_path / "t", "MethodError: x")
    (broken_table / "table.json").write_text("[{")
    cases.append((broken_table, "table.json: not a readable table"))
    broken_cell = _fake_bench(tmp_path / "c", "MethodError: x")
    next((broken_cell / "cells").glob("*.json")).write_text("{")
    cases.append((broken_cell, "not a readable cell record"))
    bad_cert = tmp_path / "cert"
    bad_cert.mkdir()
    (bad_cert / "certificate.json").write_text("{not json")
    cases.append((bad_cert, "not a readable certificate"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "certificate.json").write_text(json.dumps({"format": "something-else"}))
    cases.append((other, "not a lyapcert certificate"))
    for directory, message in cases:
        res = runner.invoke(app, ["report", str(directory)])
        assert res.exit_code == 2, (directory, res.output)
        assert message in " ".join(res.output.split()), res.output
        if directory.is_dir():
            assert not (directory / "report.html").exists()
    fake = _fake_bench(tmp_path / "s", "MethodError: x")
    res = runner.invoke(app, ["report", str(fake), "--out", str(tmp_path / "r.pdf")])
    assert res.exit_code == 2 and "expected .html" in res.output
    res = runner.invoke(app, ["report", str(fake), "--frames", "0"])
    assert res.exit_code == 2 and "frames" in res.output
    assert not (fake / "report.html").exists() and not (tmp_path / "r.pdf").exists()
    with pytest.raises(ReportError, match="max_certificates"):
        make_report(fake, max_certificates=-1)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None,
    reason="no chromium binary on PATH (install it: apt-get install -y chromium)",
)
def test_headless_browser_renders_the_report(bench_dir, tmp_path):
    browser = _chromium()
    url = (bench_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"]
    logging = ["--enable-logging=stderr", "--v=0"]
    env = {**os.environ, "HOME": str(tmp_path)}  # a private profile folder
    shot_run = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert shot.is_file(), shot_run.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # not a blank page
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom_run = subprocess.run(
        [browser, *flags, *logging, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert dom_run.returncode == 0, dom_run.stderr[-2000:]
    page = Page(dom_run.stdout)
    rows = json.loads((bench_dir / "table.json").read_text())
    assert len(page.rows) == len(rows) == 3
    assert FAILING in page.rows[2][-1]
    assert len(page.sections) == 2
    # the page has no scripts: any console message (chromium logs them as INFO:CONSOLE, an
    # exception as "Uncaught ...") is a page error
    messages = [
        line for line in dom_run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    assert messages == []


def test_cli_plot_of_a_bench_folder_draws_the_chart(bench_dir, tmp_path):
    from typer.testing import CliRunner

    from lyapcert.cli import app

    target = tmp_path / "chart.png"
    res = CliRunner().invoke(app, ["plot", str(bench_dir), "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5000
    empty = _fake_bench(tmp_path / "empty", "MethodError: boom")
    (empty / "table.json").write_text("[]")
    res = CliRunner().invoke(app, ["plot", str(empty), "--out", str(tmp_path / "no.png")])
    assert res.exit_code == 2 and not (tmp_path / "no.png").exists()


# more significant digits than any number of the page should show (floats print 16-17)
LONG_NUMBER = r"(?<![\w.])-?(?:\d[\d,]*\.\d{11,}|\d{12,}\.\d*)(?:[eE][-+]?\d+)?"


def test_numbers_are_shown_to_six_significant_digits(bench_dir, tmp_path):
    import re

    source = next(p for p in (bench_dir / "cells").glob("damped_sho*") if p.is_dir())
    cert_dir = tmp_path / "cert"
    shutil.copytree(source / "certificate", cert_dir)
    record = json.loads((cert_dir / "certificate.json").read_text())
    record["options"]["q_scale"] = -0.4999999999999999
    record["settings"]["level_tolerance"] = 0.1 + 0.2  # 0.30000000000000004
    record["level"] = 0.4999999999999999
    (cert_dir / "certificate.json").write_text(json.dumps(record))
    make_report(cert_dir, animations=False)
    source_text = (cert_dir / "report.html").read_text()
    text = Page(source_text).all_text
    assert "q_scale = -0.5" in text and "level_tolerance = 0.3" in text
    # the level is rounded down: the stated region is never larger than the proved one
    assert "V(x) ≤ 0.499999 }" in text and 'title="exact: 0.4999999999999999"' in source_text
    assert re.findall(LONG_NUMBER, text) == []
    assert re.findall(LONG_NUMBER, Page((bench_dir / "report.html").read_text()).all_text) == []


def test_report_prints_progress_lines_into_a_log(bench_dir, tmp_path, monkeypatch, capfd):
    """In a log (stderr not a terminal) a long report says which certificate it is drawing."""
    monkeypatch.setenv("LYAPCERT_LOG_EVERY", "3600")  # lines only when the test asks
    from lyapcert.logline import LogLines
    from lyapcert.viz import report as report_module

    drawn = []
    real = report_module._certificate_section

    def beating_section(item, workdir, **options):  # a beat while each section is drawn
        drawn.append(item.title)
        if LogLines._open:  # none when progress is off
            LogLines._open[-1].emit()
        return real(item, workdir, **options)

    monkeypatch.setattr(report_module, "_certificate_section", beating_section)
    make_report(bench_dir, tmp_path / "r.html", animations=False, progress=True)
    lines = [x for x in capfd.readouterr().err.splitlines() if x.startswith("[lyapcert")]
    assert len(drawn) == 2
    assert any(f"report: certificate 1/2: {drawn[0]}" in x for x in lines), lines
    assert any(f"report: certificate 2/2: {drawn[1]}" in x for x in lines), lines
    make_report(bench_dir, tmp_path / "q.html", animations=False)  # progress off: silent
    assert "[lyapcert" not in capfd.readouterr().err


def test_report_progress_bar_on_a_terminal(bench_dir, tmp_path, monkeypatch):
    """On a terminal the sections get a transient bar (no log lines), and the page is the same."""
    monkeypatch.setattr("lyapcert.logline.stderr_is_terminal", lambda: True)
    from lyapcert.viz.report import SectionProgress

    with SectionProgress(2, True) as bar:
        assert bar.bar is not None and bar.beat.log is None
        bar.section(0, "first")
        bar.section(1, "second")
    a = make_report(bench_dir, tmp_path / "a.html", animations=False, progress=True)
    b = make_report(bench_dir, tmp_path / "b.html", animations=False)
    assert Page(a.read_text()).rows == Page(b.read_text()).rows
