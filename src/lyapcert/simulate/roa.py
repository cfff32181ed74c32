"""The true region of attraction (ROA) by simulation, on a dense sample of the domain.

Convergence criterion (documented in the README). Coordinates are scaled by the box half-widths,
``z = (x - x*) / ((hi - lo) / 2)``, and each sample point is integrated with a fixed step until
one of these happens, checked every ``check_every`` steps:

* converged: ``max_i |z_i| <= convergence_radius`` (the trajectory entered a small box around the
  equilibrium; for a locally exponentially stable ``x*`` a small enough one lies inside the ROA);
* escaped: ``max_i |z_i| >= escape_radius`` or a non-finite state;
* settled elsewhere: the state moved less than ``settle_tolerance`` (scaled) since the last check
  while outside the convergence box (it rests at another equilibrium), or, for a system whose
  dynamics are periodic in some states (``periods``: the angles of a pendulum), it entered the
  convergence box of a shifted copy ``x* + k p`` with ``k != 0`` (by periodicity it then converges
  to that copy, another equilibrium: a pendulum that went over the top);
* undecided: the horizon ended first. Past the nominal ``horizon`` the simulation goes on, in
  windows of a quarter horizon up to ``max_horizon_factor`` times the horizon, while more than
  ``extension_threshold`` of the sample converged in the last window (slowly converging systems
  get the time they need; stalled ones stop at the horizon).

Only "converged" counts as inside the ROA. The volume is (number of converged points) / (number of
points) x (box volume); on a grid each point stands for its cell.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.errors import SimulationError
from lyapcert.fileio import atomic_target
from lyapcert.simulate.integrate import make_stepper, n_steps
from lyapcert.systems.system import System

CONVERGED, ESCAPED, SETTLED_ELSEWHERE, UNDECIDED = 1, 2, 3, 0
OUTCOME_NAMES = {
    CONVERGED: "converged",
    ESCAPED: "escaped",
    SETTLED_ELSEWHERE: "settled_elsewhere",
    UNDECIDED: "undecided",
}
CACHE_VERSION = 1
DEFAULT_GRID = {1: 2001, 2: 400, 3: 64}
DEFAULT_SOBOL_POINTS = 2**16


@dataclass(frozen=True)
class ConvergenceCriterion:
    """When a simulated trajectory counts as converging to ``x*`` (see the module docstring).

    ``horizon`` is in time units (DT: ``horizon / dt`` iterations); ``step`` is the RK4 step (DT:
    ignored); radii and tolerance are in box-scaled units.
    """

    horizon: float = 50.0
    step: float = 0.02
    convergence_radius: float = 0.01
    escape_radius: float = 20.0
    settle_tolerance: float = 1e-9
    check_every: int = 20
    max_horizon_factor: float = 4.0
    extension_threshold: float = 1e-3
    periods: tuple[float, ...] = ()
    """Per state, the period of the dynamics in that state (0: not periodic); empty: none."""

    def __post_init__(self) -> None:
        for name in ("horizon", "step", "convergence_radius", "escape_radius"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not (math.isfinite(v) and v > 0)
            ):
                raise SimulationError(f"{name}: expected a finite number > 0, got {v!r}")
        if self.escape_radius <= self.convergence_radius:
            raise SimulationError(
                f"escape_radius ({self.escape_radius}) must exceed convergence_radius "
                f"({self.convergence_radius})"
            )
        if not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise SimulationError(
                f"check_every: expected an integer >= 1, got {self.check_every!r}"
            )
        if any(not (math.isfinite(p) and p >= 0) for p in self.periods):
            raise SimulationError(
                f"periods: expected finite numbers >= 0 (0: not periodic), got {self.periods!r}"
            )
        if not (self.settle_tolerance >= 0 and math.isfinite(self.settle_tolerance)):
            raise SimulationError(
                f"settle_tolerance: expected a finite number >= 0, got {self.settle_tolerance!r}"
            )

    @classmethod
    def for_system(cls, system: System, **overrides) -> ConvergenceCriterion:
        """Defaults from the registry entry of ``system`` or the ``[simulation]`` table of its
        file, then ``overrides``."""
        from lyapcert.systems.registry import _ENTRIES

        base = cls()
        entry = _ENTRIES.get(system.name)
        spec = system.open_loop.symbolic  # a closed loop: the hints of its open loop's file
        hints = dict(spec.spec.get("simulation") or {}) if spec else {}
        if entry is not None and not hints:
            base = replace(
                base,
                horizon=entry.horizon,
                step=entry.step,
                convergence_radius=entry.convergence_radius,
                periods=tuple(entry.periods),
            )
        if hints:
            base = replace(base, **hints)
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **clean) if clean else base


@dataclass(frozen=True)
class Sample:
    """Points covering the domain: a cell-centred grid (``kind="grid"``, ``resolution`` per axis)
    or a scrambled Sobol sequence (``kind="sobol"``, ``resolution`` points, ``seed``)."""

    kind: str
    resolution: int
    seed: int = 0

    def describe(self) -> str:
        if self.kind == "grid":
            return f"grid, {self.resolution} points per axis"
        return f"Sobol, {self.resolution} points, seed {self.seed}"


def default_sample(system: SystemLike, resolution: int | None = None, seed: int = 0) -> Sample:
    """A grid in up to 3 dimensions, a Sobol sample above."""
    system = as_system(system)
    n = system.n_states
    if n <= 3:
        res = resolution if resolution is not None else DEFAULT_GRID[n]
        kind = "grid"
    else:
        res = resolution if resolution is not None else DEFAULT_SOBOL_POINTS
        kind = "sobol"
    if isinstance(res, bool) or not isinstance(res, int) or res < 2:
        raise SimulationError(f"resolution: expected an integer >= 2, got {res!r}")
    if kind == "grid" and res**n > 50_000_000:
        raise SimulationError(
            f"resolution: {res} points per axis in {n} dimensions is {res**n:,} points; "
            "choose a smaller resolution"
        )
    return Sample(kind=kind, resolution=res, seed=seed)


def sample_points(system: SystemLike, sample: Sample) -> np.ndarray:
    """The points of ``sample`` in the domain of ``system``, ``[N, n]`` float64."""
    system = as_system(system)
    lo = np.asarray(system.domain.lower)
    hi = np.asarray(system.domain.upper)
    n = system.n_states
    if sample.kind == "grid":
        axes = [
            lo[i] + (np.arange(sample.resolution) + 0.5) * (hi[i] - lo[i]) / sample.resolution
            for i in range(n)
        ]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)
    engine = torch.quasirandom.SobolEngine(n, scramble=True, seed=sample.seed)
    unit = engine.draw(sample.resolution, dtype=torch.float64).numpy()
    return lo + unit * (hi - lo)


@dataclass
class RoaEstimate:
    """The labelled sample: which points converge to ``x*``, and the volume they stand for.

    ``points [N, n]``, ``outcomes [N]`` (codes in ``OUTCOME_NAMES``); ``volume`` is the ROA volume
    inside the box, ``fraction`` its share of the box volume.
    """

    system_name: str
    fingerprint: str
    sample: Sample
    criterion: ConvergenceCriterion
    points: np.ndarray
    outcomes: np.ndarray
    box_volume: float
    seconds: float
    controller_id: str | None = None  # a closed loop's controller (its content id)
    cache_path: str | None = None
    from_cache: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {
            name: int((self.outcomes == code).sum()) for code, name in OUTCOME_NAMES.items()
        }

    @property
    def inside(self) -> np.ndarray:
        """``[N]`` booleans: converged points."""
        return self.outcomes == CONVERGED

    @property
    def fraction(self) -> float:
        return float(self.inside.mean())

    @property
    def volume(self) -> float:
        return self.fraction * self.box_volume

    def fraction_of_roa(self, mask: np.ndarray) -> float:
        """Share of the true ROA covered by the points selected by ``mask [N]`` (e.g. a certified
        sublevel set), both counted on this sample: |mask & inside| / |inside|."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.inside.shape:
            raise SimulationError(f"mask: expected shape {self.inside.shape}, got {mask.shape}")
        total = int(self.inside.sum())
        return float((mask & self.inside).sum() / total) if total else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "system": self.system_name,
            "roa_volume": self.volume,
            "roa_fraction": self.fraction,
            "box_volume": self.box_volume,
            "n_points": len(self.outcomes),
            "counts": dict(self.counts),
            "sample": asdict(self.sample),
            "criterion": asdict(self.criterion),
            "controller": self.controller_id,
            "seconds": self.seconds,
            "from_cache": self.from_cache,
            "cache_path": self.cache_path,
        }


def label_convergence(
    system: SystemLike,
    points: torch.Tensor,
    criterion: ConvergenceCriterion,
    progress: bool = False,
    description: str = "simulating",
) -> np.ndarray:
    """Simulate every point of ``points [N, n]`` and return its outcome code ``[N]`` (int8).

    Decided points are dropped from the batch at every check, so the cost falls as the sample
    settles. Runs on the device and in the dtype of ``points``.
    """
    system = as_system(system)
    dtype, device = points.dtype, points.device
    steps, h = n_steps(system, criterion.horizon, criterion.step)
    stepper = make_stepper(system, h)
    lo, hi = system.domain.as_tensors(dtype, device)
    half = (hi - lo) / 2
    x_star = system.equilibrium_tensor(dtype, device)

    outcomes = torch.zeros(points.shape[0], dtype=torch.int8, device=device)
    active = torch.arange(points.shape[0], device=device)
    x = points.clone()
    previous = x.clone()
    period = None
    if any(criterion.periods):
        if len(criterion.periods) != system.n_states:
            raise SimulationError(
                f"periods: expected {system.n_states} entries (one per state), "
                f"got {len(criterion.periods)}"
            )
        period = torch.tensor(criterion.periods, dtype=dtype, device=device)

    window = max(criterion.check_every, steps // 4)
    max_steps = max(steps, round(steps * criterion.max_horizon_factor))
    bar = _progress_bar(progress, description, steps)
    converged_at_window_start = 0
    n_converged = 0
    k = 0
    try:
        with torch.no_grad():
            while k < max_steps:
                k += 1
                x = stepper(x)
                if k % criterion.check_every and k != steps:
                    continue
                z = ((x - x_star) / half).abs().amax(dim=1)
                finite = torch.isfinite(x).all(dim=1)
                converged = finite & (z <= criterion.convergence_radius)
                escaped = ~finite | (z >= criterion.escape_radius)
                moved = ((x - previous) / half).abs().amax(dim=1)
                settled = finite & ~converged & (moved <= criterion.settle_tolerance)
                if period is not None:
                    settled |= (
                        finite
                        & ~converged
                        & _near_shifted_copy(x - x_star, period, half, criterion.convergence_radius)
                    )
                outcomes[active[converged]] = CONVERGED
                outcomes[active[escaped & ~converged]] = ESCAPED
                outcomes[active[settled & ~escaped]] = SETTLED_ELSEWHERE
                n_converged += int(converged.sum())
                keep = ~(converged | escaped | settled)
                active, x = active[keep], x[keep]
                previous = x.clone()
                if bar is not None:
                    bar.update(min(k, steps), len(active))
                if active.numel() == 0:
                    break
                if k >= steps and k % window == 0:
                    # past the nominal horizon: go on only while points still converge to x*
                    gained = n_converged - converged_at_window_start
                    converged_at_window_start = n_converged
                    if gained <= criterion.extension_threshold * points.shape[0]:
                        break
                elif k % window == 0:
                    converged_at_window_start = n_converged
    finally:
        if bar is not None:
            bar.close()
    return outcomes.cpu().numpy()


def _criterion_key(criterion: ConvergenceCriterion) -> dict:
    """The criterion's fields for the cache key (``periods`` only when set, so that the keys of
    systems without periodic states are those of before the field existed)."""
    fields = asdict(criterion)
    if not any(criterion.periods):
        del fields["periods"]
    return fields


def _near_shifted_copy(
    e: torch.Tensor, period: torch.Tensor, half: torch.Tensor, radius: float
) -> torch.Tensor:
    """Whether ``x* + e [N, n]`` lies in the box-scaled ``radius`` box around ``x* + k p`` for
    some integer ``k != 0`` (``p = period``, 0 where a state is not periodic) ``-> [N]`` bool."""
    periodic = period > 0
    k = torch.where(periodic, torch.round(e / torch.where(periodic, period, 1)), 0)
    z = ((e - k * period) / half).abs().amax(dim=1)
    return (k != 0).any(dim=1) & (z <= radius)


def torch_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ``SimulationError`` when it names none, or asks for CUDA
    and torch sees no CUDA device."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SimulationError(
            f"--device: {device!r} is not a torch device (cpu, cuda, cuda:0, ...)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SimulationError(
            "--device: CUDA was asked for but torch sees no CUDA device; use --device cpu"
        )
    return dev


def true_roa(
    system: SystemLike,
    resolution: int | None = None,
    criterion: ConvergenceCriterion | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    batch_size: int = 1_000_000,
) -> RoaEstimate:
    """Label a dense sample of the domain as converging to ``x*`` or not (see module docstring).

    With ``cache=True`` the labelled sample is stored under ``cache_dir`` (default
    ``$LYAPCERT_CACHE_DIR`` or ``~/.cache/lyapcert``) keyed by the system's fingerprint, the sample,
    the criterion and, for a closed loop, the controller's content id, and reused. A closed loop
    whose controller is a plain function (no content id) is never cached.
    """
    system = as_system(system)
    criterion = criterion or ConvergenceCriterion.for_system(system)
    sample = default_sample(system, resolution, seed)
    fingerprint, controller_id = _identity(system)
    use_cache = cache and (not system.is_closed_loop or controller_id is not None)
    path = _cache_path(system, fingerprint, sample, criterion, controller_id, cache_dir)
    if use_cache and path.exists():
        try:
            return _load(path, system, fingerprint, sample, criterion, controller_id)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed and overwritten
    started = time.perf_counter()
    points = sample_points(system, sample)
    outcomes = np.empty(len(points), dtype=np.int8)
    chunks = range(0, len(points), batch_size)
    for i, start in enumerate(chunks):
        block = torch.as_tensor(points[start : start + batch_size], dtype=dtype, device=device)
        label = f"{system.name}: simulating" + (
            f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        )
        outcomes[start : start + batch_size] = label_convergence(
            system, block, criterion, progress=progress, description=label
        )
    estimate = RoaEstimate(
        system_name=system.name,
        fingerprint=fingerprint,
        sample=sample,
        criterion=criterion,
        points=points,
        outcomes=outcomes,
        box_volume=system.domain.volume,
        seconds=time.perf_counter() - started,
        controller_id=controller_id,
    )
    if use_cache:
        _save(path, estimate)
        estimate.cache_path = str(path)
    return estimate


def cached_true_roa(
    system: SystemLike,
    resolution: int | None = None,
    criterion: ConvergenceCriterion | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> RoaEstimate | None:
    """The estimate ``true_roa`` would return from its cache for these arguments, or ``None``
    when it is not cached (or the file is damaged): never simulates."""
    system = as_system(system)
    criterion = criterion or ConvergenceCriterion.for_system(system)
    sample = default_sample(system, resolution, seed)
    fingerprint, controller_id = _identity(system)
    if system.is_closed_loop and controller_id is None:
        return None
    path = _cache_path(system, fingerprint, sample, criterion, controller_id, cache_dir)
    if not path.exists():
        return None
    try:
        return _load(path, system, fingerprint, sample, criterion, controller_id)
    except (OSError, ValueError, KeyError):
        return None


def default_cache_dir() -> Path:
    env = os.environ.get("LYAPCERT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lyapcert"


def _identity(system: System) -> tuple[str, str | None]:
    """``(fingerprint, controller id)`` of the cache key: for a closed loop the open loop's
    fingerprint and the controller's content id, kept apart (the key of the files written before
    closed loops were systems of their own); ``(fingerprint, None)`` otherwise."""
    if system.is_closed_loop:
        return system.open_loop.fingerprint(), system.controller_id
    return system.fingerprint(), None


def _cache_key(fingerprint, sample, criterion, controller_id) -> str:
    payload = json.dumps(
        {
            "version": CACHE_VERSION,
            "system": fingerprint,
            "sample": asdict(sample),
            "criterion": _criterion_key(criterion),
            "controller": controller_id,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _cache_path(system, fingerprint, sample, criterion, controller_id, cache_dir) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in system.name)
    return root / "roa" / f"{safe}-{_cache_key(fingerprint, sample, criterion, controller_id)}.npz"


def _save(path: Path, estimate: RoaEstimate) -> None:
    meta = {
        "version": CACHE_VERSION,
        "system": estimate.system_name,
        "fingerprint": estimate.fingerprint,
        "seconds": estimate.seconds,
    }
    with atomic_target(path) as tmp:  # a reader never sees half a file (the suffix stays .npz)
        np.savez_compressed(
            tmp, points=estimate.points, outcomes=estimate.outcomes, meta=np.array(json.dumps(meta))
        )


def _load(path, system, fingerprint, sample, criterion, controller_id) -> RoaEstimate:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("fingerprint") != fingerprint or meta.get("version") != CACHE_VERSION:
            raise ValueError("stale cache entry")
        points, outcomes = data["points"], data["outcomes"]
    if points.ndim != 2 or points.shape[1] != system.n_states or len(outcomes) != len(points):
        raise ValueError("malformed cache entry")
    return RoaEstimate(
        system_name=system.name,
        fingerprint=fingerprint,
        sample=sample,
        criterion=criterion,
        points=points,
        outcomes=outcomes,
        box_volume=system.domain.volume,
        seconds=float(meta.get("seconds", 0.0)),
        controller_id=controller_id,
        cache_path=str(path),
        from_cache=True,
    )


def slice_grid(
    system: SystemLike, pair: Sequence[int], resolution: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``resolution x resolution`` grid on the plane of states ``pair`` through ``x*``.

    Returns ``(points [r*r, n], axis_i [r], axis_j [r])``; the other states sit at ``x*``.
    """
    system = as_system(system)
    i, j = pair
    lo, hi = system.domain.lower, system.domain.upper
    ai = lo[i] + (np.arange(resolution) + 0.5) * (hi[i] - lo[i]) / resolution
    aj = lo[j] + (np.arange(resolution) + 0.5) * (hi[j] - lo[j]) / resolution
    gi, gj = np.meshgrid(ai, aj, indexing="ij")
    points = np.tile(np.asarray(system.equilibrium, dtype=np.float64), (resolution * resolution, 1))
    points[:, i] = gi.reshape(-1)
    points[:, j] = gj.reshape(-1)
    return points, ai, aj


class _progress_bar:
    """A rich progress bar on stderr over simulation steps (a no-op object when disabled)."""

    def __new__(cls, enabled: bool, description: str, total: int):
        if not enabled:
            return None
        return super().__new__(cls)

    def __init__(self, enabled: bool, description: str, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from lyapcert.logline import LogLines, stderr_is_terminal

        self.total = total
        self._log = None
        if not stderr_is_terminal():  # a log: plain lines every 30 s instead of a live bar
            self._log = LogLines(description)
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps, {task.fields[active]:,} undecided"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, active=0)

    def update(self, step: int, active: int) -> None:
        if self._log is not None:
            self._log.update(f"step {step:,}/{self.total:,}, {active:,} undecided")
            return
        self._progress.update(self._task, completed=step, active=active)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            return
        self._progress.stop()


def slice_pairs(n: int, limit: int = 6) -> list[tuple[int, int]]:
    """State pairs for 2-D slices: all pairs up to 4 states, consecutive pairs above."""
    if n <= 4:
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        pairs = [(i, i + 1) for i in range(0, n - 1, 2)]
    return pairs[:limit]


@dataclass(frozen=True)
class RoaSlice:
    """Converging points on a grid in the plane of states ``pair`` through ``x*``.

    ``inside [len(axis_i), len(axis_j)]`` (index ``[a, b]`` is the point ``(axis_i[a], axis_j[b])``).
    """

    pair: tuple[int, int]
    axis_i: np.ndarray
    axis_j: np.ndarray
    inside: np.ndarray


def roa_slices(
    system: SystemLike,
    criterion: ConvergenceCriterion | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    resolution: int = 120,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> list[RoaSlice]:
    """The true ROA on 2-D slices through ``x*`` (for plots of systems with 3 or more states)."""
    system = as_system(system)
    criterion = criterion or ConvergenceCriterion.for_system(system)
    pairs = list(pairs) if pairs is not None else slice_pairs(system.n_states)
    out = []
    for pair in pairs:
        points, ai, aj = slice_grid(system, pair, resolution)
        names = f"{system.state_names[pair[0]]}-{system.state_names[pair[1]]}"
        outcomes = label_convergence(
            system,
            torch.as_tensor(points, dtype=dtype, device=device),
            criterion,
            progress=progress,
            description=f"{system.name}: slice {names}",
        )
        out.append(
            RoaSlice(tuple(pair), ai, aj, (outcomes == CONVERGED).reshape(resolution, resolution))
        )
    return out


def is_locally_exponentially_stable(system: SystemLike) -> bool:
    """Whether the linearisation at ``x*`` (with ``u = u*``) is Hurwitz (CT) or Schur (DT)."""
    system = as_system(system)
    eig = system.eigenvalues()
    if system.is_discrete:
        return bool(np.all(np.abs(eig) < 1))
    return bool(np.all(eig.real < 0))


def system_report(system: SystemLike) -> dict[str, object]:
    """``system.summary()`` plus its linearisation at ``x*`` (``lyapcert show``): ``A``, ``B``
    (``System.linearize()``), ``eigenvalues`` of ``A`` as ``[real, imag]`` pairs,
    ``locally_exponentially_stable`` and ``residual`` (``System.residual()``)."""
    system = as_system(system)
    a, b = system.linearize()
    eig = np.linalg.eigvals(a)
    info = system.summary()
    info.update(
        A=a,
        B=b,
        eigenvalues=[[float(e.real), float(e.imag)] for e in eig],
        locally_exponentially_stable=is_locally_exponentially_stable(system),
        residual=system.residual(),
    )
    return info
