"""The report: one self-contained HTML page for a bench results folder or a certificate folder.

``make_report(DIR)`` reads either a comparison made by ``lyapcert bench`` (``DIR/bench.json``,
``DIR/cells/<id>.json``, ``DIR/table.json``) or a certificate made by ``lyapcert certify ... --out
DIR`` (``DIR/certificate.json``) and writes ``DIR/report.html``: a header (what was compared,
when, with which versions), a short explanation of what a certificate and "% of the true ROA"
mean, the comparison table with the published numbers beside ours (failed cells marked, with
their errors), the bar chart, and one section per certificate with its pictures, an animation and
exactly what was proved (read from ``certificate.json``).

The page works offline: CSS inline, images embedded as base64 ``data:`` URIs, no scripts, no
external references. All text is escaped. This module only puts the report together: the
numbers are read in ``report_input`` (``read_report_input``), the pictures made in
``report_figures`` (``certificate_figures``, ``bench_chart``) and the page rendered in
``report_html`` (``render_report``, ``certificate_section``).
The true ROA is drawn only when it is cached: the report never starts a long simulation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lyapcert.errors import LyapcertError, ReportError
from lyapcert.fileio import write_text_atomic
from lyapcert.viz.report_figures import (
    DEFAULT_FRAMES,
    DEFAULT_RESOLUTION,
    DEFAULT_TRAJECTORIES,
    bench_chart,
    bench_plot_rows,
    certificate_figures,
)
from lyapcert.viz.report_html import certificate_section, render_report
from lyapcert.viz.report_input import CertificateItem, read_report_input

__all__ = ["REPORT_NAME", "REPORT_SUFFIXES", "bench_plot_rows", "make_report", "read_report_input"]

REPORT_NAME = "report.html"
REPORT_SUFFIXES = (".html", ".htm")


def make_report(
    directory: str | Path,
    out: str | Path | None = None,
    *,
    animations: bool = True,
    max_certificates: int | None = None,
    frames: int = DEFAULT_FRAMES,
    trajectories: int = DEFAULT_TRAJECTORIES,
    resolution: int = DEFAULT_RESOLUTION,
    progress: bool = False,
) -> Path:
    """Write the report of ``directory`` (a bench results folder or a certificate folder) to
    ``out`` (default ``DIR/report.html``) atomically; returns the path.

    ``animations``: embed a GIF per certificate (``frames`` frames of ``trajectories``
    trajectories). ``max_certificates``: at most this many certificate sections (``None``: all).
    ``resolution``: grid points per axis of the certificate pictures. ``progress``: a bar over
    the certificate sections on a terminal, plain lines in a log (``lyapcert.logline``). Bad input
    raises ``ReportError`` (or ``CertificateFileError``) before anything is written.
    """
    for name, value, minimum in (
        ("frames", frames, 1),
        ("trajectories", trajectories, 1),
        ("resolution", resolution, 8),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ReportError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if max_certificates is not None and (
        isinstance(max_certificates, bool)
        or not isinstance(max_certificates, int)
        or max_certificates < 0
    ):
        raise ReportError(
            f"max_certificates: expected an integer >= 0 or None, got {max_certificates!r}"
        )
    report = read_report_input(directory)
    target = Path(out) if out is not None else report.root / REPORT_NAME
    if target.suffix.lower() not in REPORT_SUFFIXES:
        raise ReportError(
            f"out: {str(target)!r} has suffix {target.suffix or '(none)'!r}; expected .html"
        )
    if target.is_dir():
        raise ReportError(f"out: {str(target)!r} is a folder; give a file name")
    if report.kind == "certificate":  # a broken certificate is bad input, not a section note
        from lyapcert.viz.certificate_plot import as_certificate

        as_certificate(report.root)
    shown = report.certificates
    if max_certificates is not None:
        shown = shown[:max_certificates]
    sections = []
    chart = None
    with (
        tempfile.TemporaryDirectory(prefix="lyapcert-report-") as tmp,
        SectionProgress(len(shown), progress) as bar,
    ):
        tmp = Path(tmp)
        if report.kind == "bench" and report.rows:
            chart = bench_chart(report.rows, tmp)
        for k, item in enumerate(shown):
            bar.section(k, item.title)
            sections.append(
                _certificate_section(
                    item,
                    tmp / f"c{k}",
                    animations=animations,
                    frames=frames,
                    trajectories=trajectories,
                    resolution=resolution,
                )
            )
    text = render_report(report, chart, sections, hidden=len(report.certificates) - len(shown))
    return write_text_atomic(target, text)


class SectionProgress:
    """``with SectionProgress(total, enabled) as bar: bar.section(k, title)``: a transient bar on
    a terminal, or a plain line every 30 s in a log; nothing when not ``enabled``."""

    def __init__(self, total: int, enabled: bool):
        from lyapcert.logline import heartbeat, stderr_is_terminal

        self.total = total
        self.beat = heartbeat("report", enabled)
        self.bar = None
        if enabled and total and stderr_is_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("report: {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> SectionProgress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def section(self, k: int, title: str) -> None:
        """Section ``k`` (from 0), ``title``, is being made."""
        text = f"certificate {k + 1}/{self.total}: {title} (pictures and animation)"
        self.beat.update(text)
        if self.bar is not None:
            self.bar.update(self.task, completed=k, description=title)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        self.beat.__exit__(*exc)


def _certificate_section(item: CertificateItem, workdir: Path, **options) -> str:
    """Read, load and draw one certificate, and render its section; a certificate that cannot be
    read or loaded gets a section with the error, not a failed report."""
    from lyapcert.certificates.store import read
    from lyapcert.viz.certificate_plot import as_certificate, cached_true_roa, roa_share

    try:
        record = read(item.directory)
    except LyapcertError as exc:
        return certificate_section(item, error=str(exc))
    try:
        cert = as_certificate(item.directory)
    except Exception as exc:  # shown, not fatal: the other certificates still get their sections
        error = f"cannot load this certificate: {type(exc).__name__}: {exc}"
        return certificate_section(item, record, error=error)
    share = None
    if item.cell is None:  # a single certificate: the share only when the true ROA is cached
        try:
            estimate = cached_true_roa(cert)
            share = roa_share(cert, estimate) if estimate is not None else None
        except Exception:  # a stale or odd cache: no share, as without a cache
            share = None
    figures = certificate_figures(cert, workdir, **options)
    return certificate_section(item, record, cert, share, figures)
