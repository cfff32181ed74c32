"""A 3-D animation of a certificate: ``V`` as a surface with a trajectory sliding down it.

``animate_surface(cert, path)`` draws ``V`` over the first two states (the others at ``x*``; for
the double pendulum the two angles at zero velocity) with the certified level as a line on the
surface at height ``level``, and trajectories started inside ``{V <= level}`` as the curves
``(x_1(t), x_2(t), V(x(t)))`` with a marker at the current point, while the camera turns around.
Above 2 states the surface is the slice through ``x*`` while the curve's height is ``V`` at the
full state, so the curve may float off the surface. Beside it, for pendulum-like systems, the
pendulum (one rod, or two for a double pendulum) swings to rest. GIF through matplotlib's
``PillowWriter``; MP4 when the suffix is ``.mp4`` and an ffmpeg writer is available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.ticker import MaxNLocator

from lyapcert.certificates.store import Certificate
from lyapcert.errors import PlotError
from lyapcert.fileio import atomic_target
from lyapcert.viz.animate import (
    ANGLE_NAMES,
    ANIMATION_SUFFIXES,
    DoublePendulum,
    Pendulum,
    _writer,
    check_seconds,
    double_pendulum_of,
    pendulum_of,
    simulate_from,
    start_points,
)
from lyapcert.viz.certificate_plot import (
    REGION_COLOUR,
    _check_int,
    as_certificate,
    certificate_title,
    check_output,
)

START_AZIMUTH = -60.0  # matplotlib's default camera azimuth
DPI = 80


@dataclass(frozen=True)
class SurfaceScene:
    """What the animation draws: ``V`` (``values``) at the points ``(x, y)`` of the first two
    states (the others at ``x*``) on a polar grid around ``x*`` (rows: directions, columns: from
    ``x*`` out to the rim), the height ``top`` of the rim, and trajectories ``states [T, k, n]``
    at ``times [T]`` with their heights ``V(x(t))`` (``heights [T, k]``)."""

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    level: float
    top: float
    times: np.ndarray
    states: np.ndarray
    heights: np.ndarray


def camera_azimuths(frames: int, turns: float, start: float = START_AZIMUTH) -> np.ndarray:
    """The camera's azimuth (degrees) per frame: ``start + 360 turns f / frames`` for frame
    ``f``, so that whole turns loop without a repeated frame."""
    return start + 360.0 * turns * np.arange(frames, dtype=np.float64) / frames


def surface_scene(
    cert: Certificate,
    resolution: int = 60,
    seconds: float | None = None,
    n_trajectories: int = 1,
    seed: int = 0,
) -> SurfaceScene:
    """The surface and the trajectories. ``V`` (float64, batched, no autograd) on
    ``resolution`` rays from ``x*`` in the plane of the first two states, each out to where
    ``V`` first reaches ``top`` (``1.5 level``, or the highest trajectory point if higher) or
    the box ends: the bowl ``{V <= top}`` as seen from ``x*``, with a level rim. The
    trajectories start at rest in that plane on ``V = 0.98 level`` (the farthest such point
    from ``x*``, then points spread around the level line); where those are not all in the
    certified region, at the highest-``V`` points of ``start_points(cert, ..., seed)``.
    Without ``seconds`` they are cut once ``V`` fell below ``level / 20``."""
    system = cert.system
    if system.n_states < 2:
        raise PlotError(
            f"a surface needs 2 states or more; {system.name!r} has {system.n_states} "
            "(animate without --surface)"
        )
    level = float(cert.level)
    centre, direction, reach = _rays(system, resolution)
    x0 = _starts_in_plane(cert, centre, direction, reach, n_trajectories)
    if x0 is None:
        starts = start_points(cert, max(16, 4 * n_trajectories), seed)
        with torch.no_grad():
            x0 = starts[torch.argsort(cert.value(starts), descending=True)[:n_trajectories]]
    times, states, heights = simulate_from(cert, x0, seconds, until=0.05)
    finite = heights[np.isfinite(heights)]
    top = max(1.5 * level, float(finite.max()) if finite.size else 0.0)
    if not top > 0:
        top = 1.0
    rim = _crossing(cert, centre, direction, reach, top)
    rho = np.linspace(0.0, 1.0, resolution // 2 + 1)
    offsets = direction[:, None, :] * (rim[:, None, None] * rho[None, :, None])
    values = _values(cert, centre, offsets)
    x, y = centre[0] + offsets[..., 0], centre[1] + offsets[..., 1]
    return SurfaceScene(x, y, values, level, top, times, states, heights)


def _rays(system, resolution: int):
    """``(x*, directions [r + 1, 2], reach [r + 1])``: ``resolution`` directions in the plane of
    the first two states, scaled by the box's widths (the last repeats the first), and the
    multiple of each that reaches the box's edge from ``x*``."""
    centre = np.asarray(system.equilibrium, dtype=np.float64)
    lo = np.asarray(system.domain.lower[:2], dtype=np.float64)
    hi = np.asarray(system.domain.upper[:2], dtype=np.float64)
    phi = np.linspace(0.0, 2.0 * np.pi, resolution + 1)
    direction = np.stack([np.cos(phi) * (hi[0] - lo[0]), np.sin(phi) * (hi[1] - lo[1])], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(direction > 0, (hi - centre[:2]) / direction, np.inf)
        reach = np.where(direction < 0, (lo - centre[:2]) / direction, reach)
    return centre, direction, np.clip(reach.min(axis=1), 0.0, None)


def _crossing(cert, centre, direction, reach, height: float, samples: int = 256, steps: int = 40):
    """Per ray, the multiple ``t <= reach`` of its direction where ``V`` first rises above
    ``height`` (``reach`` where it never does): the last of ``samples`` even steps below it,
    refined by ``steps`` bisections; ``V <= height`` at the returned points (up to the last
    bisection's width)."""
    fractions = np.linspace(0.0, 1.0, samples + 1)[1:]
    along = reach[:, None] * fractions[None, :]
    above = _values(cert, centre, direction[:, None, :] * along[..., None]) > height
    first = np.where(above.any(axis=1), above.argmax(axis=1), samples)
    low = reach * first / samples
    high = reach * np.minimum(first + 1, samples) / samples
    refine = first < samples
    for _ in range(steps if refine.any() else 0):
        middle = 0.5 * (low + high)
        up = _values(cert, centre, direction * middle[:, None]) > height
        high = np.where(refine & up, middle, high)
        low = np.where(refine & ~up, middle, low)
    return low


def _starts_in_plane(cert, centre, direction, reach, count: int) -> torch.Tensor | None:
    """``count`` points at rest in the plane of the first two states on ``V = 0.98 level``,
    the farthest from ``x*`` first; ``None`` unless all lie in the certified region."""
    t = _crossing(cert, centre, direction[:-1], reach[:-1], 0.98 * cert.level)
    offsets = direction[:-1] * t[:, None]
    rays = len(t)
    best = int(np.argmax(np.linalg.norm(offsets, axis=1)))
    chosen = [(best + round(j * rays / count)) % rays for j in range(count)]
    points = np.tile(centre, (count, 1))
    points[:, :2] += offsets[chosen]
    x0 = torch.as_tensor(points, dtype=torch.float64)
    with torch.no_grad():
        inside = bool(cert.contains(x0).all()) and bool((t[chosen] > 0).all())
    return x0 if inside else None


def _values(cert: Certificate, centre: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``V`` at ``x*`` moved by ``offsets [..., 2]`` in the first two states."""
    points = np.tile(centre, (offsets[..., 0].size, 1))
    points[:, :2] += offsets.reshape(-1, 2)
    with torch.no_grad():
        values = cert.value(torch.as_tensor(points, dtype=torch.float64)).numpy()
    return values.reshape(offsets.shape[:-1])


def animate_surface(
    cert: Certificate | str | Path,
    path: str | Path,
    frames: int = 120,
    fps: int = 15,
    elevation: float = 20.0,
    turns: float = 2.0,
    seconds: float | None = None,
    resolution: int = 60,
    seed: int = 0,
    *,
    n_trajectories: int = 1,
    pendulum: bool | None = None,
) -> Path:
    """Save the 3-D animation of ``V`` (see the module) to ``path`` (``.gif``; ``.mp4`` when an
    ffmpeg writer is available); returns the path.

    ``frames`` frames at ``fps``; the camera at ``elevation`` degrees turns ``turns`` full turns
    over the clip. ``seconds``: simulated time (default: until ``V`` has fallen to
    ``level / 20``). ``resolution``: rays from ``x*`` of the surface (``resolution // 2 + 1``
    points on each). ``pendulum``: draw the
    pendulum beside it (default: for pendulum-like systems). Nothing is written on error.
    """
    path = check_output(path, ANIMATION_SUFFIXES, "path")
    _check_int("frames", frames, 2)
    _check_int("fps", fps, 1)
    _check_int("resolution", resolution, 4)
    _check_int("n_trajectories", n_trajectories, 1)
    _check_int("seed", seed, 0)
    if not _is_real(elevation) or not -90 <= elevation <= 90:
        raise PlotError(f"elevation: expected an angle in [-90, 90] degrees, got {elevation!r}")
    if not _is_real(turns) or not turns >= 0:
        raise PlotError(f"turns: expected a finite number of turns >= 0, got {turns!r}")
    check_seconds(seconds)
    if pendulum not in (None, True, False):
        raise PlotError(f"pendulum: expected None, True or False, got {pendulum!r}")
    writer = _writer(path, fps)
    cert = as_certificate(cert)
    panel = _pendulum_panel(cert, pendulum)
    scene = surface_scene(
        cert, resolution, float(seconds) if seconds else None, n_trajectories, seed
    )
    steps = np.linspace(0, len(scene.times) - 1, frames).round().astype(int)
    azimuths = camera_azimuths(frames, float(turns))
    fig, update, _ = surface_figure(cert, scene, steps, azimuths, float(elevation), panel)
    anim = animation.FuncAnimation(fig, update, frames=frames, blit=False)
    try:
        with atomic_target(path) as tmp:
            anim.save(tmp, writer=writer, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def _limits(*arrays) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    low, high = float(finite.min()), float(finite.max())
    pad = 0.04 * (high - low) if high > low else 0.5
    return low - pad, high + pad


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _pendulum_panel(cert: Certificate, pendulum: bool | None):
    if pendulum is False:
        return None
    system = cert.system
    panel = double_pendulum_of(system) or pendulum_of(system)
    if pendulum is True and panel is None:
        names = [s.lower() for s in system.state_names]
        panel = Pendulum(next((k for k, s in enumerate(names) if s in ANGLE_NAMES), 0), False)
    return panel


def surface_figure(cert, scene: SurfaceScene, steps, azimuths, elevation: float, panel):
    """``(figure, update(frame), artists)``: the surface drawn once; ``update`` moves the
    curves, markers, camera and pendulum to ``frame``. ``artists`` names the moving parts
    (``curves``, ``markers``, ``rods``, ``axes``) for inspection."""
    system = cert.system
    k = scene.states.shape[1]
    colours = ["crimson", *[plt.get_cmap("tab10")(c % 10) for c in range(1, k)]]
    fig = plt.figure(figsize=(8.0, 4.0) if panel is not None else (5.0, 4.0), dpi=DPI)
    fig.suptitle(certificate_title(cert), fontsize=8)
    if panel is not None:
        grid = fig.add_gridspec(1, 2, width_ratios=(1.45, 1.0))
        ax = fig.add_subplot(grid[0], projection="3d", computed_zorder=False)
    else:
        ax = fig.add_subplot(1, 1, 1, projection="3d", computed_zorder=False)

    ax.plot_surface(
        scene.x, scene.y, np.minimum(scene.values, scene.top), cmap=plt.get_cmap("viridis", 10),
        vmin=0.0, vmax=scene.top, linewidth=0, antialiased=False, rcount=scene.x.shape[0],
        ccount=scene.x.shape[1], zorder=1,
    )  # fmt: skip
    if np.nanmin(scene.values) < scene.level < np.nanmax(scene.values):
        ax.contour(
            scene.x, scene.y, scene.values, levels=[scene.level], colors=REGION_COLOUR,
            linewidths=2.0, zorder=3,
        )  # fmt: skip
    xs, ys = scene.states[..., 0], scene.states[..., 1]
    ax.set_xlim(*_limits(scene.x, xs))
    ax.set_ylim(*_limits(scene.y, ys))
    ax.set_zlim(0.0, scene.top)
    ax.set_xlabel(system.state_names[0], fontsize=8, labelpad=-4)
    ax.set_ylabel(system.state_names[1], fontsize=8, labelpad=-4)
    ax.set_zlabel("V", fontsize=8, labelpad=-6)
    ax.tick_params(labelsize=6, pad=-2)
    ax.grid(False)  # no grid lines or filled panes: they cost half of a GIF's bytes
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.pane.fill = False
        axis.set_major_locator(MaxNLocator(4))
    ax.set_title(
        f"V over ({system.state_names[0]}, {system.state_names[1]})"
        + (", other states at x*" if system.n_states > 2 else "")
        + f"; line: level {scene.level:.4g}",
        fontsize=7,
    )
    curves = [ax.plot([], [], [], color=c, lw=1.8, zorder=4)[0] for c in colours]
    markers = [
        ax.plot([], [], [], "o", color=c, ms=6, mec="k", mew=0.6, zorder=5)[0] for c in colours
    ]

    rods, trails, ax_p = [], [], None
    if panel is not None:
        ax_p = fig.add_subplot(grid[1])
        reach = panel.l1 + panel.l2 if isinstance(panel, DoublePendulum) else 1.0
        ax_p.set_xlim(-1.12 * reach, 1.12 * reach)
        ax_p.set_ylim(-1.12 * reach, 1.12 * reach)
        ax_p.set_aspect("equal")
        ax_p.set_xticks([])
        ax_p.set_yticks([])
        ax_p.plot([0], [0], "ks", ms=5)
        if isinstance(panel, DoublePendulum):
            names = (system.state_names[panel.first], system.state_names[panel.second])
            ax_p.plot([0, 0], [0, -reach], color="0.8", lw=1, ls=":")
            ax_p.set_title(f"the double pendulum ({names[0]}, {names[1]})", fontsize=8)
        else:
            rest = 1.0 if panel.upright else -1.0
            ax_p.plot([0, 0], [0, rest], color="0.8", lw=1, ls=":")
            ax_p.set_title(
                f"the pendulum ({system.state_names[panel.angle]}; rest "
                f"{'upright' if panel.upright else 'hanging'})",
                fontsize=8,
            )
        for c in colours:
            trails.append(ax_p.plot([], [], color=c, lw=0.8, alpha=0.35)[0])
            rods.append(ax_p.plot([], [], "-o", color=c, lw=2.2, ms=5)[0])
    fig.subplots_adjust(left=0.0, right=0.98, bottom=0.04, top=0.86, wspace=0.05)

    tips = None
    if isinstance(panel, DoublePendulum):
        joints, tips = panel.points(scene.states[..., panel.first], scene.states[..., panel.second])
    elif panel is not None:
        angle = scene.states[..., panel.angle]
        tips = np.stack([np.sin(angle), np.cos(angle) * (1 if panel.upright else -1)], -1)
    label = "t (steps x dt)" if system.is_discrete else "t"

    def update(frame: int):
        s = steps[frame]
        for t in range(k):
            curves[t].set_data_3d(xs[: s + 1, t], ys[: s + 1, t], scene.heights[: s + 1, t])
            markers[t].set_data_3d([xs[s, t]], [ys[s, t]], [scene.heights[s, t]])
            if rods:
                trails[t].set_data(tips[: s + 1, t, 0], tips[: s + 1, t, 1])
                if isinstance(panel, DoublePendulum):
                    rods[t].set_data(
                        [0, joints[s, t, 0], tips[s, t, 0]], [0, joints[s, t, 1], tips[s, t, 1]]
                    )
                else:
                    rods[t].set_data([0, tips[s, t, 0]], [0, tips[s, t, 1]])
        ax.view_init(elev=elevation, azim=azimuths[frame])
        if ax_p is not None:
            ax_p.set_xlabel(f"{label} = {scene.times[s]:.2f}", fontsize=8)
        return [*curves, *markers, *rods, *trails]

    artists = {"axes": ax, "curves": curves, "markers": markers, "rods": rods}
    return fig, update, artists
