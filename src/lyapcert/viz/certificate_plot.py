"""Pictures of a certificate: V's level sets, the certified region, the true ROA, dV/dt.

``plot_certificate(cert, path)`` draws, for 2 states, two panels: the filled level sets of ``V``
with the certified region ``{V <= level}`` outlined boldly, the true ROA's boundary (when it is
known) and the phase portrait of the closed loop (discrete time: the step ``x+ - x`` as a
direction field); and a heat map of the decrease (continuous time ``dV/dt = grad V . f``,
discrete time ``V(x+) - V(x)``) on a diverging colour map centred at 0. Above 2 states the same
layers on 2-D slices through ``x*``; for 1 state, ``V`` and the decrease along the interval.

The numbers are computed by separate functions (``decrease_values``, ``certificate_roa``,
``roa_share``), so tests and reports can use them without a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D

from lyapcert.certificates.store import Certificate, load
from lyapcert.errors import CertificateFileError, PlotError
from lyapcert.fileio import atomic_target
from lyapcert.simulate.integrate import vector_field
from lyapcert.simulate.roa import RoaEstimate, RoaSlice, slice_grid, slice_pairs
from lyapcert.viz.roa_plot import ROA_COLOUR, _stream

REGION_COLOUR = "black"
INNER_COLOUR = "#444444"
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


# --------------------------------------------------------------------------- inputs and numbers


def as_certificate(cert: Certificate | str | Path) -> Certificate:
    """A loaded ``Certificate``, or a certificate directory to load (``CertificateFileError`` on a
    missing or malformed ``certificate.json``)."""
    if isinstance(cert, Certificate):
        return cert
    if not isinstance(cert, (str, Path)):
        raise PlotError(
            f"cert: expected a Certificate or a certificate directory, got {type(cert).__name__}"
        )
    try:
        return load(cert)
    except (KeyError, TypeError, AttributeError) as exc:  # a field missing or of the wrong kind
        raise CertificateFileError(
            f"{Path(cert) / 'certificate.json'}: malformed certificate ({type(exc).__name__}: "
            f"{exc}); re-create it with `lyapcert certify ... --out {cert}`"
        ) from None


def load_certificate_dir(directory: str | Path) -> Certificate:
    """The certificate saved in ``directory`` (``CertificateFileError`` when it is not a folder,
    and as ``as_certificate`` when it holds none)."""
    if not Path(directory).is_dir():
        raise CertificateFileError(
            f"{directory}: not a folder; expected a certificate directory "
            "(made by `lyapcert certify SYSTEM --out DIR` or `lyapcert verify ... --out DIR`)"
        )
    return as_certificate(directory)


def check_output(path: str | Path, suffixes: Sequence[str], what: str) -> Path:
    """``path`` as a ``Path`` whose suffix is one of ``suffixes`` (else ``PlotError``)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PlotError(
            f"{what}: {str(path)!r} has suffix {path.suffix or '(none)'!r}; expected one of "
            + ", ".join(suffixes)
        )
    if path.exists() and path.is_dir():
        raise PlotError(f"{what}: {str(path)!r} is a folder; give a file name")
    return path


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` to ``path`` atomically (a temporary file renamed), close it; returns ``path``."""
    try:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix[1:].lower())
    finally:
        plt.close(fig)
    return path


def decrease_values(cert: Certificate, x: torch.Tensor) -> torch.Tensor:
    """The decrease of ``V`` along the closed loop at ``x [batch, n]``, ``[batch]`` float64:
    ``dV/dt = grad V(x) . f(x, k(x))`` (continuous time, by torch autograd) or
    ``V(x+) - V(x)`` with ``x+ = F(x, k(x))`` (discrete time). Negative where ``V`` decreases."""
    x = torch.as_tensor(x, dtype=torch.float64)
    field = vector_field(cert.system)
    if cert.system.is_discrete:
        with torch.no_grad():
            return cert.value(field(x)) - cert.value(x)
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(cert.value(xg).sum(), xg)
    with torch.no_grad():
        return (grad * field(x)).sum(dim=1)


def cached_true_roa(cert: Certificate) -> RoaEstimate | None:
    """The true ROA of the certificate's (closed-loop) system if ``lyapcert roa`` / ``certify``
    already cached it with the default sample and criterion; ``None`` otherwise (no simulation)."""
    from lyapcert.simulate.roa import cached_true_roa as cached

    return cached(cert.system)


def certificate_roa(
    cert: Certificate, roa: bool | None = None, progress: bool = False
) -> RoaEstimate | None:
    """The true ROA for a certificate's pictures: ``None`` -> the cached one if any (no
    simulation); ``True`` -> cached or computed now (and cached); ``False`` -> ``None``."""
    if roa is False:
        return None
    found = cached_true_roa(cert)
    if found is not None or roa is None:
        return found
    from lyapcert.metric import true_roa_of

    return true_roa_of(cert.system, progress)


def roa_share(cert: Certificate, estimate: RoaEstimate) -> float:
    """Share of the true ROA inside ``{V <= level}`` beside ``estimate`` (the same metric as
    ``certify``: ``lyapcert.metric.region_on_true_roa``)."""
    from lyapcert.metric import region_on_true_roa

    verified = cert.verdict == "verified"
    return region_on_true_roa(cert.system, cert.candidate, cert.level, estimate, verified)[1]


def controller_label(cert: Certificate) -> str | None:
    if cert.controller is None:
        return None
    record = cert.record.get("controller") or {}
    family = record.get("family") if isinstance(record, dict) else None
    return {"linear": "linear (LQR)", "neural": "neural"}.get(family, family or "controller")


def certificate_title(cert: Certificate, share: float | None = None) -> str:
    """``system, method, controller: VERDICT (condition), level, % of the true ROA``."""
    parts = [cert.system.name]
    method = cert.record.get("method")
    if method:
        parts.append(str(method))
    label = controller_label(cert)
    if label:
        parts.append(f"controller {label}")
    head = ", ".join(parts)
    tail = f"{str(cert.verdict).upper()} ({cert.condition}), level {cert.level:.4g}"
    if share is not None:
        what = "of the true ROA" if cert.verdict == "verified" else "of the true ROA, not proven"
        tail += f", {100 * share:.1f} % {what}"
    return f"{head}: {tail}"


# --------------------------------------------------------------------------- the figure


def plot_certificate(
    cert: Certificate | str | Path,
    path: str | Path,
    *,
    roa: bool | None = None,
    resolution: int = 150,
    max_slices: int = 3,
    progress: bool = False,
) -> Path:
    """Save the picture of a certificate to ``path`` (PNG, PDF or SVG by suffix); returns the path.

    ``cert``: a ``Certificate`` or a certificate directory. ``roa``: draw the true ROA's boundary
    and report the share of it that is certified: ``None`` (default) when the true ROA is cached,
    ``True`` computing it if needed (slow on large systems; above 2 states the slices are
    simulated too), ``False`` never. ``resolution``: grid points per axis of ``V`` and of the
    decrease. ``max_slices``: panels' pairs of states above 2 states (slices through ``x*``).
    """
    path = check_output(path, FIGURE_SUFFIXES, "path")
    _check_int("resolution", resolution, 8)
    _check_int("max_slices", max_slices, 1)
    if roa not in (None, True, False):
        raise PlotError(f"roa: expected None, True or False, got {roa!r}")
    cert = as_certificate(cert)
    estimate = certificate_roa(cert, roa, progress)
    share = roa_share(cert, estimate) if estimate is not None else None
    n = cert.system.n_states
    if n == 1:
        fig = _figure_1d(cert, estimate, resolution)
    else:
        pairs = [(0, 1)] if n == 2 else slice_pairs(n, limit=max_slices)
        slices = None
        if n > 2 and roa is True:
            from lyapcert.simulate.roa import roa_slices

            slices = roa_slices(
                cert.system,
                pairs=pairs,
                resolution=min(resolution, 100),
                progress=progress,
            )
        fig = _figure_planes(cert, estimate, pairs, slices, resolution)
    fig.suptitle(certificate_title(cert, share), fontsize=10)
    return save_figure(fig, path)


@dataclass
class CertificatePictures:
    """What ``plot_certificate_dir`` wrote (``written``), and ``note``: why an asked-for
    training plot was not written (``None`` when nothing was left out)."""

    written: list[Path]
    note: str | None = None


def plot_certificate_dir(
    directory: str | Path,
    path: str | Path | None = None,
    *,
    roa: bool | None = None,
    training: bool = False,
    resolution: int = 150,
) -> CertificatePictures:
    """``plot_certificate`` of the certificate saved in ``directory`` to ``path`` (default
    ``DIR/certificate.png``), and with ``training=True`` its training curves
    (``viz.training_plot.plot_training``) to ``DIR/training.png``, or beside ``path`` as
    ``<stem>-training<suffix>``. Everything is checked before anything is written."""
    from lyapcert.viz.training_plot import plot_training, training_history

    directory = Path(directory)
    target = check_output(
        directory / "certificate.png" if path is None else path, FIGURE_SUFFIXES, "path"
    )
    curves = (
        target.with_name(f"{target.stem}-training{target.suffix}")
        if path is not None
        else directory / "training.png"
    )
    _check_int("resolution", resolution, 8)
    cert = load_certificate_dir(directory)
    history = training_history(cert.record) if training else []  # checked before any writing
    pictures = CertificatePictures(
        [plot_certificate(cert, target, roa=roa, resolution=resolution, progress=False)]
    )
    if training:
        if history and plot_training(cert.record, curves) is not None:
            pictures.written.append(curves)
        else:
            method = cert.record.get("method") or "this"
            pictures.note = (
                f"training: no history in {directory / 'certificate.json'} (the {method} method "
                "trains nothing, or the certificate was saved before histories were kept); "
                "no training plot written"
            )
    return pictures


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PlotError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def plane_values(cert: Certificate, pair: tuple[int, int], resolution: int):
    """``(axis_i, axis_j, V, dV)`` on the plane of states ``pair`` through ``x*``; ``V`` and
    ``dV`` are ``[len(axis_j), len(axis_i)]`` (rows along the vertical axis, for ``contourf``)."""
    points, ai, aj = slice_grid(cert.system, pair, resolution)
    x = torch.as_tensor(points, dtype=torch.float64)
    with torch.no_grad():
        v = cert.value(x).numpy()
    dv = decrease_values(cert, x).numpy()
    shape = (resolution, resolution)
    return ai, aj, v.reshape(shape).T, dv.reshape(shape).T


def _v_levels(v: np.ndarray, level: float) -> np.ndarray:
    finite = v[np.isfinite(v)]
    top = float(finite.max()) if finite.size else 1.0
    cap = min(top, 3 * level) if level > 0 else top
    if not cap > 0:
        cap = 1.0
    return np.linspace(0.0, cap, 16)


def _decrease_norm(dv: np.ndarray, v: np.ndarray, level: float):
    """Diverging colours for the decrease, symmetric about 0 (0 white, negative blue, positive
    red), on a symmetric-log scale: linear within +-linthresh, logarithmic beyond.

    The range is the 98th percentile of |dV| near the certified region (V <= 2 level), where it
    matters, rather than the far corners of the box (those saturate). A linear scale over that
    range left the certified interior nearly white: dV vanishes quadratically at x*, so the
    region's typical values are a small fraction of the largest ones near its edge. linthresh is
    a quarter of the median |dV| over the region's decreasing points, so a typical interior
    point lies on the logarithmic part, visibly blue.
    """
    finite = np.isfinite(dv)
    near = finite & (v <= 2 * level) if level > 0 else finite
    if near.sum() < 16:
        near = finite
    magnitudes = np.abs(dv[near])
    half = float(np.quantile(magnitudes, 0.98)) if magnitudes.size else 1.0
    if not half > 0:
        half = 1.0
    inside = finite & (dv < 0) & (v <= level) if level > 0 else np.zeros_like(finite)
    typical = -dv[inside] if inside.sum() >= 16 else magnitudes[magnitudes > 0]
    linthresh = float(np.median(typical)) / 4 if typical.size else half / 100
    linthresh = min(max(linthresh, half * 1e-6), half / 4)
    return matplotlib.colors.SymLogNorm(linthresh, linscale=1.0, vmin=-half, vmax=half, base=10)


def _roa_boundary_2d(ax, estimate: RoaEstimate | None, roa_slice: RoaSlice | None, pair, cert):
    """Draw the true ROA's boundary (2 states: from the estimate's grid; above: the slice).
    Returns ``"boundary"``, ``"all"`` (the whole plane converges), ``"none"``, or ``None`` when
    the true ROA is not known in this plane."""
    if roa_slice is not None:
        inside = roa_slice.inside.T.astype(float)
        ai, aj = roa_slice.axis_i, roa_slice.axis_j
    elif estimate is not None and cert.system.n_states == 2 and estimate.sample.kind == "grid":
        r = estimate.sample.resolution
        inside = estimate.inside.reshape(r, r).T.astype(float)
        lo, hi = cert.system.domain.lower, cert.system.domain.upper
        ai = lo[pair[0]] + (np.arange(r) + 0.5) * (hi[pair[0]] - lo[pair[0]]) / r
        aj = lo[pair[1]] + (np.arange(r) + 0.5) * (hi[pair[1]] - lo[pair[1]]) / r
    else:
        return None
    share = inside.mean()
    if 0 < share < 1:
        ax.contour(ai, aj, inside, levels=[0.5], colors=ROA_COLOUR, linewidths=1.8)
        return "boundary"
    return "all" if share == 1 else "none"


def _region_outline(ax, ai, aj, v, cert) -> None:
    if np.nanmin(v) <= cert.level:
        ax.contour(ai, aj, v, levels=[cert.level], colors=REGION_COLOUR, linewidths=2.6)
    inner = cert.record.get("inner_level")
    if isinstance(inner, (int, float)) and 0 < inner < cert.level and np.nanmin(v) <= inner:
        ax.contour(
            ai, aj, v, levels=[inner], colors=INNER_COLOUR, linewidths=0.9, linestyles="dashed"
        )


def _figure_planes(cert, estimate, pairs, slices, resolution):
    system = cert.system
    rows = len(pairs)
    fig, axes = plt.subplots(rows, 2, figsize=(11.5, 4.6 * rows), squeeze=False)
    for row, pair in enumerate(pairs):
        i, j = pair
        ai, aj, v, dv = plane_values(cert, pair, resolution)
        roa_slice = slices[row] if slices else None
        ax_v, ax_d = axes[row]
        # V: filled level sets, the certified region, the true ROA, the phase portrait
        cs = ax_v.contourf(ai, aj, v, levels=_v_levels(v, cert.level), cmap="viridis", extend="max")
        fig.colorbar(cs, ax=ax_v, label="V")
        _region_outline(ax_v, ai, aj, v, cert)
        roa_status = _roa_boundary_2d(ax_v, estimate, roa_slice, pair, cert)
        lo, hi = system.domain.lower, system.domain.upper
        _stream(
            ax_v,
            system,
            pair,
            (lo[i], hi[i]),
            (lo[j], hi[j]),
            30,
            color="white",
            linewidth=0.5,
            density=0.9,
            arrowsize=0.6,
        )
        # the decrease: diverging colours centred at 0, the region outlined again
        mesh = ax_d.pcolormesh(
            ai, aj, dv, cmap="RdBu_r", norm=_decrease_norm(dv, v, cert.level), shading="auto"
        )
        label = "V(x+) - V(x)" if system.is_discrete else "dV/dt"
        fig.colorbar(mesh, ax=ax_d, label=f"{label} (symmetric log scale)", extend="both")
        if np.nanmin(dv) < 0 < np.nanmax(dv):
            ax_d.contour(ai, aj, dv, levels=[0.0], colors="0.3", linewidths=0.7, linestyles=":")
        _region_outline(ax_d, ai, aj, v, cert)
        _roa_boundary_2d(ax_d, estimate, roa_slice, pair, cert)
        where = ""
        if system.n_states > 2:
            others = [s for t, s in enumerate(system.state_names) if t not in pair]
            where = f" (slice: {', '.join(others)} at x*)"
        ax_v.set_title("V, certified region {V <= level}" + where, fontsize=9)
        ax_d.set_title(f"{label} (blue: V decreases)" + where, fontsize=9)
        for ax in (ax_v, ax_d):
            ax.plot(system.equilibrium[i], system.equilibrium[j], "k*", ms=10)
            ax.set_xlim(ai[0], ai[-1])
            ax.set_ylim(aj[0], aj[-1])
            ax.set_xlabel(system.state_names[i])
            ax.set_ylabel(system.state_names[j])
        if row == 0:
            ax_v.legend(handles=_legend(cert, roa_status), loc="upper right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _legend(cert, roa_status: str | None):
    handles = [Line2D([], [], color=REGION_COLOUR, lw=2.6, label=f"V = {cert.level:.4g}")]
    inner = cert.record.get("inner_level")
    if isinstance(inner, (int, float)) and 0 < inner < cert.level:
        handles.append(
            Line2D([], [], color=INNER_COLOUR, lw=0.9, ls="--", label=f"inner level {inner:.3g}")
        )
    if roa_status is not None:
        label = {
            "boundary": "true ROA",
            "all": "true ROA: all of the plot",
            "none": "true ROA: not in the plot",
        }[roa_status]
        handles.append(Line2D([], [], color=ROA_COLOUR, lw=1.8, label=label))
    return handles


def _figure_1d(cert, estimate, resolution):
    system = cert.system
    lo, hi = system.domain.lower[0], system.domain.upper[0]
    xs = np.linspace(lo, hi, max(resolution, 200))
    x = torch.as_tensor(xs[:, None], dtype=torch.float64)
    with torch.no_grad():
        v = cert.value(x).numpy()
    dv = decrease_values(cert, x).numpy()
    inside = v <= cert.level
    fig, (ax_v, ax_d) = plt.subplots(1, 2, figsize=(11, 3.8))
    label = "V(x+) - V(x)" if system.is_discrete else "dV/dt"
    for ax, y, name in ((ax_v, v, "V"), (ax_d, dv, label)):
        ax.plot(xs, y, color="black", lw=1.3, label=name)
        ymin, ymax = ax.get_ylim()
        ax.fill_between(
            xs, ymin, ymax, where=inside, color="0.6", alpha=0.35, step="mid", label="V <= level"
        )
        if estimate is not None:
            order = np.argsort(estimate.points[:, 0])
            ax.fill_between(
                estimate.points[order, 0],
                ymin,
                ymax,
                where=estimate.inside[order],
                color=ROA_COLOUR,
                alpha=0.2,
                step="mid",
                label="true ROA",
            )
        ax.set_ylim(ymin, ymax)
        ax.plot(system.equilibrium, [0], "k*", ms=10)
        ax.set_xlabel(system.state_names[0])
        ax.set_xlim(lo, hi)
    ax_v.axhline(cert.level, color=REGION_COLOUR, lw=1.8, ls="--", label=f"level {cert.level:.4g}")
    ax_d.axhline(0, color="grey", lw=0.7)
    certified = xs[inside]
    if certified.size:
        ax_v.set_title(
            f"V; certified interval [{certified.min():.4g}, {certified.max():.4g}]", fontsize=9
        )
    ax_d.set_title(f"{label} (negative: V decreases)", fontsize=9)
    ax_v.legend(loc="best", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
