"""Animations of a certificate: trajectories from inside the certified region settling at x*.

``animate_certificate(cert, path)`` starts ``n_trajectories`` trajectories inside ``{V <= level}``
(drawn from the box with ``cert.contains``), integrates the closed loop, and draws them in the
state plane (the first two states; above 2 states the region's outline is the slice through
``x*`` and the trajectories are projected) together with ``V(x(t))`` falling in a side panel. For
pendulum-like systems a third panel draws the rod (two for a double pendulum) swinging to rest.
GIF through matplotlib's ``PillowWriter``; MP4 when the suffix is ``.mp4`` and an ffmpeg writer
is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from lyapcert.certificates.store import Certificate
from lyapcert.errors import PlotError
from lyapcert.fileio import atomic_target
from lyapcert.simulate.integrate import simulate
from lyapcert.simulate.roa import ConvergenceCriterion, slice_grid
from lyapcert.systems.system import System
from lyapcert.viz.certificate_plot import (
    REGION_COLOUR,
    _check_int,
    as_certificate,
    certificate_title,
    check_output,
)

ANIMATION_SUFFIXES = (".gif", ".mp4")
ANGLE_NAMES = ("th", "theta", "θ", "phi", "angle")


@dataclass(frozen=True)
class Pendulum:
    """Which state is the rod's angle, and whether angle 0 points up (inverted) or down."""

    angle: int
    upright: bool


def pendulum_of(system: System) -> Pendulum | None:
    """The rod of a pendulum-like system (``pendulum``, ``inverted_pendulum``, ``cartpole``, ...):
    the state named ``th``/``theta`` (else the first state); angle 0 is up when the open loop's
    gravity term pushes away from it (2 states: ``d(angle'')/d(angle) > 0``) or for inverted
    pendulums and cart-poles by name. ``None`` for other systems."""
    name = system.name.lower()
    if "pendulum" not in name and "cartpole" not in name:
        return None
    names = [s.lower() for s in system.state_names]
    angle = next((k for k, s in enumerate(names) if s in ANGLE_NAMES), 0)
    upright = "inverted" in name or "cartpole" in name
    if system.n_states == 2 and not system.is_discrete:
        a, _ = system.linearize()
        upright = bool(a[1 - angle, angle] > 0)
    return Pendulum(angle, upright)


@dataclass(frozen=True)
class DoublePendulum:
    """The two angles of a double pendulum (``first``, ``second``: state indices), measured from
    the downward vertical, and the rod lengths ``l1``, ``l2``."""

    first: int
    second: int
    l1: float = 1.0
    l2: float = 1.0

    def points(self, th1, th2) -> tuple[np.ndarray, np.ndarray]:
        """``(joint, tip)`` positions ``[..., 2]``: the joint at ``l1 (sin th1, -cos th1)``, the tip
        ``l2 (sin th2, -cos th2)`` beyond it (both angles absolute, 0 hanging down)."""
        th1, th2 = np.asarray(th1, dtype=np.float64), np.asarray(th2, dtype=np.float64)
        joint = np.stack([self.l1 * np.sin(th1), -self.l1 * np.cos(th1)], axis=-1)
        tip = joint + np.stack([self.l2 * np.sin(th2), -self.l2 * np.cos(th2)], axis=-1)
        return joint, tip


def double_pendulum_of(system: System) -> DoublePendulum | None:
    """The double pendulum of a system with states named ``th1`` and ``th2`` (or, by name,
    ``double_pendulum``: its first two states); the lengths from the parameters ``l1``, ``l2``
    when the definition has them, else 1. ``None`` for other systems."""
    names = [s.lower() for s in system.state_names]
    if "th1" in names and "th2" in names:
        first, second = names.index("th1"), names.index("th2")
    elif "double_pendulum" in system.name.lower() and system.n_states >= 2:
        first, second = 0, 1
    else:
        return None
    symbolic = system.open_loop.symbolic
    params = dict(symbolic.params) if symbolic is not None else {}
    lengths = [float(params.get(key, 1.0)) for key in ("l1", "l2")]
    lengths = [v if np.isfinite(v) and v > 0 else 1.0 for v in lengths]
    return DoublePendulum(first, second, *lengths)


def start_points(cert: Certificate, count: int, seed: int = 0) -> torch.Tensor:
    """Up to ``count`` points inside the certified region ``[k, n]``, preferring its outer part
    (``V >= level / 2``) so that the trajectories have some way to go."""
    system = cert.system
    gen = torch.Generator().manual_seed(seed)
    lo, hi = system.domain.as_tensors()
    lo, hi = lo.to(torch.float64), hi.to(torch.float64)
    x_star = system.equilibrium_tensor().to(torch.float64).reshape(1, -1)
    draws = lo + torch.rand(4096, system.n_states, generator=gen, dtype=torch.float64) * (hi - lo)
    with torch.no_grad():
        inside = cert.contains(draws)
        chosen = draws[inside]
        if chosen.shape[0] < count:  # a small region: pull random points towards x*
            for scale in 0.5 ** torch.arange(1, 30, dtype=torch.float64):
                pulled = x_star + scale * (draws[: count * 8] - x_star)
                chosen = torch.cat([chosen, pulled[cert.contains(pulled)]])
                if chosen.shape[0] >= count:
                    break
        if chosen.shape[0] == 0:
            raise PlotError(
                f"the certified region {{V <= {cert.level:.4g}}} holds no sampled point; "
                "nothing to animate"
            )
        values = cert.value(chosen)
    outer = values >= cert.level / 2
    order = torch.cat([torch.nonzero(outer).reshape(-1), torch.nonzero(~outer).reshape(-1)])
    return chosen[order[:count]]


def simulate_from(
    cert: Certificate, x0: torch.Tensor, seconds: float | None, *, until: float = 1e-3
):
    """``(times [T], states [T, k, n], V [T, k])``: the closed loop from ``x0``. Without
    ``seconds``, the system's ROA horizon cut once every ``V`` fell below ``until * level``."""
    system = cert.system
    criterion = ConvergenceCriterion.for_system(system)
    horizon = seconds if seconds is not None else criterion.horizon
    traj = simulate(system, x0, horizon, criterion.step)
    times, states = traj.times.numpy(), traj.states
    with torch.no_grad():
        values = cert.value(states.reshape(-1, system.n_states)).reshape(states.shape[:2])
    values = values.numpy()
    if seconds is None:
        small = np.all(values <= until * max(cert.level, 1e-300), axis=1)
        if small.any():
            end = min(len(times) - 1, max(10, int(np.argmax(small) * 1.15)))
            times, states, values = times[: end + 1], states[: end + 1], values[: end + 1]
    return times, states.numpy(), values


def animate_certificate(
    cert: Certificate | str | Path,
    path: str | Path,
    n_trajectories: int = 8,
    seconds: float | None = None,
    *,
    frames: int = 60,
    fps: int = 15,
    seed: int = 0,
    pendulum: bool | None = None,
    resolution: int = 120,
) -> Path:
    """Save an animation of trajectories from inside the certified region to ``path`` (``.gif``;
    ``.mp4`` when an ffmpeg writer is available); returns the path.

    ``seconds``: simulated time (default: until ``V`` has fallen to ``1e-3 level``, at most the
    system's ROA horizon; discrete time: ``seconds / dt`` steps). ``frames`` frames at ``fps``.
    ``pendulum``: draw the rod (default: for pendulum-like systems, see ``pendulum_of``; two
    rods for a double pendulum, see ``double_pendulum_of``).
    Nothing is written on error.
    """
    path = check_output(path, ANIMATION_SUFFIXES, "path")
    _check_int("n_trajectories", n_trajectories, 1)
    _check_int("frames", frames, 1)
    _check_int("fps", fps, 1)
    _check_int("resolution", resolution, 8)
    check_seconds(seconds)
    if pendulum not in (None, True, False):
        raise PlotError(f"pendulum: expected None, True or False, got {pendulum!r}")
    writer = _writer(path, fps)
    cert = as_certificate(cert)
    rod = None
    if pendulum is not False:
        rod = double_pendulum_of(cert.system) or pendulum_of(cert.system)
    if pendulum is True and rod is None:
        names = [s.lower() for s in cert.system.state_names]
        rod = Pendulum(next((k for k, s in enumerate(names) if s in ANGLE_NAMES), 0), False)
    x0 = start_points(cert, n_trajectories, seed)
    times, states, values = simulate_from(cert, x0, float(seconds) if seconds else None)
    steps = np.unique(np.linspace(0, len(times) - 1, frames).round().astype(int))
    if len(steps) < frames:  # fewer simulated steps than frames: repeat the last ones
        steps = np.linspace(0, len(times) - 1, frames).round().astype(int)
    fig, update = _figure(cert, times, states, values, steps, rod, resolution)
    anim = animation.FuncAnimation(fig, update, frames=len(steps), blit=False)
    try:
        with atomic_target(path) as tmp:
            anim.save(tmp, writer=writer)
    finally:
        plt.close(fig)
    return path


def check_seconds(seconds) -> None:
    """``PlotError`` unless ``seconds`` is ``None`` or a finite simulated time > 0."""
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not seconds > 0
        or not np.isfinite(seconds)
    ):
        raise PlotError(f"seconds: expected a finite simulated time > 0, got {seconds!r}")


def _writer(path: Path, fps: int):
    if path.suffix.lower() == ".gif":
        return animation.PillowWriter(fps=fps)
    if not animation.writers.is_available("ffmpeg"):
        raise PlotError(
            f"{path}: writing MP4 needs ffmpeg, which matplotlib cannot find; "
            f"write a GIF instead ({path.with_suffix('.gif')}) or install ffmpeg"
        )
    return animation.FFMpegWriter(fps=fps)


def _figure(cert, times, states, values, steps, rod, resolution):
    system = cert.system
    n = system.n_states
    k = states.shape[1]
    colours = [plt.get_cmap("tab10")(c % 10) for c in range(k)]
    panels = 3 if rod is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 4.0))
    ax_x, ax_v = axes[0], axes[1]
    fig.suptitle(certificate_title(cert), fontsize=9)

    # the state plane (1 state: x against t) with the certified region
    if n == 1:
        lo, hi = system.domain.lower[0], system.domain.upper[0]
        xs = torch.linspace(lo, hi, 400, dtype=torch.float64).reshape(-1, 1)
        inside = cert.contains(xs).numpy()
        if inside.any():
            ax_x.axhspan(
                xs[inside].min().item(), xs[inside].max().item(), color="0.85", label="V <= level"
            )
        ax_x.set_xlim(times[0], times[-1])
        ax_x.set_ylim(lo, hi)
        ax_x.set_xlabel("t" if not system.is_discrete else "t (steps x dt)")
        ax_x.set_ylabel(system.state_names[0])
    else:
        points, ai, aj = slice_grid(system, (0, 1), resolution)
        x = torch.as_tensor(points, dtype=torch.float64)
        with torch.no_grad():
            v = cert.value(x).numpy().reshape(resolution, resolution).T
        inside = (v <= cert.level).astype(float)
        ax_x.contourf(ai, aj, inside, levels=[0.5, 1.5], colors=["0.88"])
        if 0 < inside.mean() < 1:
            ax_x.contour(ai, aj, v, levels=[cert.level], colors=REGION_COLOUR, linewidths=2.2)
        ax_x.plot(system.equilibrium[0], system.equilibrium[1], "k*", ms=10, zorder=5)
        ax_x.set_xlim(ai[0], ai[-1])
        ax_x.set_ylim(aj[0], aj[-1])
        ax_x.set_xlabel(system.state_names[0])
        ax_x.set_ylabel(system.state_names[1])
        if n > 2:
            ax_x.set_title("projection; region: slice through x*", fontsize=8)
    trails = [ax_x.plot([], [], color=c, lw=1.2)[0] for c in colours]
    heads = [ax_x.plot([], [], "o", color=c, ms=5)[0] for c in colours]

    # V(x(t)) falling
    curves = [ax_v.plot([], [], color=c, lw=1.2)[0] for c in colours]
    ax_v.axhline(cert.level, color=REGION_COLOUR, ls="--", lw=1, label=f"level {cert.level:.4g}")
    ax_v.set_xlim(times[0], times[-1])
    top = float(np.nanmax(values[0])) if np.isfinite(values[0]).any() else cert.level
    ax_v.set_ylim(0, 1.08 * max(top, cert.level))
    ax_v.set_xlabel("t")
    ax_v.set_ylabel("V(x(t))")
    ax_v.legend(fontsize=7, loc="upper right")

    rods = []
    double = isinstance(rod, DoublePendulum)
    if rod is not None:
        ax_p = axes[2]
        reach = rod.l1 + rod.l2 if double else 1.0
        ax_p.set_xlim(-1.25 * reach, 1.25 * reach)
        ax_p.set_ylim(-1.25 * reach, 1.25 * reach)
        ax_p.set_aspect("equal")
        ax_p.set_xticks([])
        ax_p.set_yticks([])
        ax_p.plot([0], [0], "ks", ms=6)
        rest = -reach if double else (1.0 if rod.upright else -1.0)
        ax_p.plot([0, 0], [0, rest], color="0.8", lw=1, ls=":")
        if double:
            names = (system.state_names[rod.first], system.state_names[rod.second])
            ax_p.set_title(f"the double pendulum ({names[0]}, {names[1]})", fontsize=8)
            joints, tips = rod.points(states[..., rod.first], states[..., rod.second])
        else:
            ax_p.set_title(
                f"the pendulum ({system.state_names[rod.angle]}; rest "
                f"{'upright' if rod.upright else 'hanging'})",
                fontsize=8,
            )
        for c in colours:
            (line,) = ax_p.plot([], [], "-o", color=c, lw=2, ms=6, alpha=0.8)
            rods.append(line)
    fig.tight_layout(rect=(0, 0, 1, 0.93))

    def update(frame: int):
        s = steps[frame]
        for t in range(k):
            if n == 1:
                trails[t].set_data(times[: s + 1], states[: s + 1, t, 0])
                heads[t].set_data([times[s]], [states[s, t, 0]])
            else:
                trails[t].set_data(states[: s + 1, t, 0], states[: s + 1, t, 1])
                heads[t].set_data([states[s, t, 0]], [states[s, t, 1]])
            curves[t].set_data(times[: s + 1], values[: s + 1, t])
            if rods and double:
                rods[t].set_data(
                    [0, joints[s, t, 0], tips[s, t, 0]], [0, joints[s, t, 1], tips[s, t, 1]]
                )
            elif rods:
                angle = states[s, t, rod.angle]
                y = np.cos(angle) if rod.upright else -np.cos(angle)
                rods[t].set_data([0, np.sin(angle)], [0, y])
        ax_v.set_title(f"V(x(t)) falls; t = {times[s]:.2f}", fontsize=8)
        return [*trails, *heads, *curves, *rods]

    return fig, update
