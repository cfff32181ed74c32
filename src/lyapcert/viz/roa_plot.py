"""Plots of the true region of attraction: 1-D intervals, 2-D phase portraits, 2-D slices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from lyapcert.simulate.integrate import vector_field
from lyapcert.simulate.roa import ConvergenceCriterion, RoaEstimate, RoaSlice, roa_slices
from lyapcert.systems.system import System

ROA_COLOUR = "#4c9be8"


def plot_roa(
    system: System,
    estimate: RoaEstimate,
    path: str | Path,
    slices: Sequence[RoaSlice] | None = None,
) -> Path:
    """Save a picture of the true ROA to ``path`` (PNG, PDF or SVG by suffix); returns the path.

    1 state: f(x) with the ROA shaded. 2 states: the ROA shaded over the phase portrait.
    3 or more: one panel per slice in ``slices`` (from ``roa_slices``).
    """
    path = Path(path)
    n = system.n_states
    if n == 1:
        fig = _plot_1d(system, estimate)
    elif n == 2:
        fig = _plot_2d(system, estimate)
    else:
        if not slices:
            raise ValueError(
                "slices: systems with 3 or more states need roa_slices(...) for a plot"
            )
        fig = _plot_slices(system, estimate, slices)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def save_roa_plot(
    system: System,
    estimate: RoaEstimate,
    folder: str | Path,
    criterion: ConvergenceCriterion | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Path:
    """``plot_roa`` to ``folder/<system name>-roa.png`` (the name made file-safe); above 2 states
    the slices through ``x*`` are simulated first (``roa_slices`` with ``criterion``)."""
    slices = (
        roa_slices(system, criterion, device=device, progress=progress)
        if system.n_states > 2
        else None
    )
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in system.name)
    return plot_roa(system, estimate, Path(folder) / f"{safe}-roa.png", slices=slices)


def _title(system: System, estimate: RoaEstimate) -> str:
    return (
        f"{system.name}: true ROA volume {estimate.volume:.4g} "
        f"({100 * estimate.fraction:.1f} % of the box)"
    )


def _field(system: System, points: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(points, dtype=torch.float64)
    with torch.no_grad():
        value = vector_field(system)(x)
        if system.is_discrete:
            value = value - x  # the step, drawn as a direction field
    return value.numpy()


def _shade(ax, inside: np.ndarray, extent) -> None:
    """The ROA (``inside``, rows along the vertical axis) shaded over ``extent``."""
    ax.imshow(
        inside,
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap=matplotlib.colors.ListedColormap(["white", ROA_COLOUR]),
        alpha=0.55,
        interpolation="nearest",
        vmin=0.0,
        vmax=1.0,
    )


def _stream(ax, system, pair, range_i, range_j, points: int, **style) -> None:
    """Streamlines of the field projected on the plane of states ``pair`` through ``x*``."""
    i, j = pair
    gi = np.linspace(*range_i, points)
    gj = np.linspace(*range_j, points)
    mi, mj = np.meshgrid(gi, gj)
    pts = np.tile(np.asarray(system.equilibrium, dtype=float), (mi.size, 1))
    pts[:, i], pts[:, j] = mi.ravel(), mj.ravel()
    vec = _field(system, pts)
    u, v = vec[:, i].reshape(mi.shape), vec[:, j].reshape(mi.shape)
    ok = np.isfinite(u) & np.isfinite(v)
    ax.streamplot(gi, gj, np.where(ok, u, 0), np.where(ok, v, 0), **style)


def _plot_1d(system, estimate):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    order = np.argsort(estimate.points[:, 0])
    xs = estimate.points[order, 0]
    fx = _field(system, estimate.points[order])[:, 0]
    inside = estimate.inside[order]
    ax.plot(xs, fx, color="black", lw=1.2, label="f(x)" if not system.is_discrete else "x+ - x")
    ax.axhline(0, color="grey", lw=0.6)
    ymin, ymax = ax.get_ylim()
    ax.fill_between(
        xs,
        ymin,
        ymax,
        where=inside,
        color=ROA_COLOUR,
        alpha=0.35,
        step="mid",
        label="converges to x*",
    )
    ax.set_ylim(ymin, ymax)
    ax.plot(system.equilibrium, [0], "k*", ms=10, label="x*")
    ax.set_xlabel(system.state_names[0])
    ax.set_title(_title(system, estimate), fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return fig


def _plot_2d(system, estimate):
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    lo, hi = system.domain.lower, system.domain.upper
    if estimate.sample.kind == "grid":
        r = estimate.sample.resolution
        inside = estimate.inside.reshape(r, r).T.astype(float)
        _shade(ax, inside, (lo[0], hi[0], lo[1], hi[1]))
    else:
        pts = estimate.points[estimate.inside]
        ax.scatter(pts[:, 0], pts[:, 1], s=1, color=ROA_COLOUR, alpha=0.5)
    _stream(
        ax,
        system,
        (0, 1),
        (lo[0], hi[0]),
        (lo[1], hi[1]),
        40,
        color="0.35",
        linewidth=0.6,
        density=1.2,
        arrowsize=0.7,
    )
    ax.plot(*system.equilibrium, "k*", ms=11)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel(system.state_names[0])
    ax.set_ylabel(system.state_names[1])
    ax.set_title(_title(system, estimate), fontsize=10)
    return fig


def _plot_slices(system, estimate, slices):
    k = len(slices)
    cols = min(3, k)
    rows = (k + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, sl in zip(axes.ravel(), slices):
        i, j = sl.pair
        _shade(
            ax,
            sl.inside.T.astype(float),
            (sl.axis_i[0], sl.axis_i[-1], sl.axis_j[0], sl.axis_j[-1]),
        )
        # the field projected on the slice plane (other states at x*)
        _stream(
            ax,
            system,
            (i, j),
            (sl.axis_i[0], sl.axis_i[-1]),
            (sl.axis_j[0], sl.axis_j[-1]),
            30,
            color="0.4",
            linewidth=0.5,
            density=0.9,
            arrowsize=0.6,
        )
        ax.plot(system.equilibrium[i], system.equilibrium[j], "k*", ms=9)
        ax.set_xlim(sl.axis_i[0], sl.axis_i[-1])
        ax.set_ylim(sl.axis_j[0], sl.axis_j[-1])
        ax.set_xlabel(system.state_names[i])
        ax.set_ylabel(system.state_names[j])
        others = [s for t, s in enumerate(system.state_names) if t not in (i, j)]
        ax.set_title(f"slice through x* ({', '.join(others)} at x*)", fontsize=8)
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    fig.suptitle(_title(system, estimate), fontsize=10)
    fig.tight_layout()
    return fig
