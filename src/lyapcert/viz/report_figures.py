"""The report's pictures: the bench bar chart and each certificate's figures (level sets, training
curves, animation), drawn with matplotlib into a work folder and kept as bytes in ``Figure``s for
embedding. A picture that cannot be drawn becomes a note, never a failed report. No HTML here.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FRAMES = 24
DEFAULT_TRAJECTORIES = 4
DEFAULT_RESOLUTION = 100
SURFACE_RESOLUTION = 40


def bench_plot_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Table rows (``roa_percent_mean/_std`` in %) as ``plot_bench`` rows (shares in 0..1)."""

    def share(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return min(1.0, max(0.0, value / 100)) if math.isfinite(value) else None

    return [
        {
            "system": r["system"],
            "method": r["method"],
            "controller": r.get("controller"),
            "verdict": r.get("verdict"),
            "roa_fraction_mean": share(r.get("roa_percent_mean")),
            "roa_fraction_std": share(r.get("roa_percent_std")),
        }
        for r in rows
    ]


@dataclass
class Figure:
    """A picture for the page: ``data`` (bytes) with its MIME type, or the error that stopped
    it (``note``)."""

    caption: str
    mime: str = "image/png"
    data: bytes | None = None
    note: str | None = None

    def uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data or b"").decode("ascii")


def _figure(caption: str, mime: str, make) -> Figure | None:
    """Run ``make()`` (returns the written path or ``None`` for nothing to draw); a failure is a
    note on the page, not a failed report."""
    try:
        path = make()
    except Exception as exc:  # a picture that cannot be drawn must not cost the whole report
        return Figure(caption, mime, note=f"not drawn: {type(exc).__name__}: {exc}")
    if path is None:
        return None
    return Figure(caption, mime, data=Path(path).read_bytes())


def certificate_figures(
    cert,
    workdir: Path,
    *,
    animations: bool = True,
    frames: int = DEFAULT_FRAMES,
    trajectories: int = DEFAULT_TRAJECTORIES,
    resolution: int = DEFAULT_RESOLUTION,
) -> list[Figure]:
    """The certificate's picture (true ROA only when cached), its training curves when it has a
    history, and an animation (and, for pendulum-like systems, the surface animation of V);
    the files go to ``workdir`` and their bytes into the figures."""
    from lyapcert.viz.certificate_plot import plot_certificate
    from lyapcert.viz.training_plot import plot_training

    workdir.mkdir(parents=True, exist_ok=True)
    figures = [
        _figure(
            "V's level sets with the certified region {V <= level} in bold (inner level dashed), "
            "the true ROA in blue when it is cached, the phase portrait; right: the decrease of V "
            "(blue where V decreases).",
            "image/png",
            lambda: plot_certificate(
                cert, workdir / "certificate.png", roa=None, resolution=resolution
            ),
        ),
        _figure(
            "Training history of the method (losses, level, ROA share per step).",
            "image/png",
            lambda: plot_training(cert.record, workdir / "training.png"),
        ),
    ]
    if animations:
        from lyapcert.viz.animate import animate_certificate

        figures.append(
            _figure(
                f"{trajectories} trajectories started inside the certified region settle at x*; "
                "V(x(t)) falls.",
                "image/gif",
                lambda: animate_certificate(
                    cert, workdir / "animation.gif", trajectories, frames=frames, fps=8
                ),
            )
        )
        if _is_pendulum(cert) and cert.system.n_states >= 2:
            from lyapcert.viz.surface import animate_surface

            figures.append(
                _figure(
                    "V as a surface over the first two states (others at x*), the certified level "
                    "as a line on it, and a trajectory from inside the region sliding down it "
                    "while the pendulum swings to rest.",
                    "image/gif",
                    lambda: animate_surface(
                        cert,
                        workdir / "surface.gif",
                        max(frames, 2),
                        fps=8,
                        turns=1.0,
                        resolution=SURFACE_RESOLUTION,
                    ),
                )
            )
    return [f for f in figures if f is not None]


def _is_pendulum(cert) -> bool:
    """Whether the report adds the surface animation: a pendulum-like system (one rod or two)."""
    from lyapcert.viz.animate import double_pendulum_of, pendulum_of

    try:
        system = cert.system
        return double_pendulum_of(system) is not None or pendulum_of(system) is not None
    except Exception:  # no system to ask: no surface, never a failed report
        return False


def bench_chart(rows: Sequence[Mapping], workdir: Path) -> Figure | None:
    """The comparison's bar chart of table ``rows``, drawn into ``workdir``."""
    from lyapcert.viz.bench_plot import plot_bench

    return _figure(
        "Certified share of the true ROA per system (groups) and method (bars), mean and "
        "spread over seeds; hatched: failed or not verified.",
        "image/png",
        lambda: plot_bench(bench_plot_rows(rows), workdir / "bench.png"),
    )
