"""The one metric every method and command uses: a certified set's volume and its share of the
true ROA.

Two sources, one rule for which is used:

* the true-ROA sample of ``lyapcert roa`` (of the closed loop when the system is one), when it is
  available: already cached, or asked for (``roa=True``, which simulates if needed). The volume
  and the share of the true ROA are then both counted on it (``region_share``), and a VERIFIED
  region is cross-checked against the simulation (``simulation_check``);
* otherwise ``certified_volume``: exact for a quadratic ``V`` whose ellipsoid lies inside the box,
  else a seeded scrambled Sobol sample of the box with its standard error. No simulation, and no
  share of the true ROA (``None``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lyapcert.api import as_system
from lyapcert.errors import VerificationError
from lyapcert.simulate.roa import RoaEstimate, cached_true_roa, true_roa
from lyapcert.systems.system import System

TRUE_ROA_SAMPLE = "true-ROA sample"
EXACT_ELLIPSOID = "exact ellipsoid"
EXACT_OVER_TRUE_ROA = "exact ellipsoid, over the true ROA's sampled volume"
SAMPLE = "sample"
BATCH = 8192  # points per evaluation of V (memory)


@dataclass
class VolumeEstimate:
    """The volume of ``{x in box : V(x) <= level}``: ``volume``, its standard error ``stderr``
    (0 when exact), ``method`` (``"exact ellipsoid"`` or ``"sample"``) and ``points`` (the size of
    the sample, 0 when exact)."""

    volume: float
    stderr: float
    method: str
    points: int = 0

    def describe(self) -> str:
        """``"exact ellipsoid"`` or ``"sample of 65,536 points"``."""
        return self.method if self.method != SAMPLE else f"sample of {self.points:,} points"

    def to_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


def unit_ball_volume(n: int) -> float:
    """The volume of the unit ball in ``n`` dimensions, ``pi^(n/2) / Gamma(n/2 + 1)``."""
    return math.exp(0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n + 1))


def quadratic_form(candidate) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(P, centre, offset)`` with ``V(x) = (x - centre)' P (x - centre) + offset`` for a
    ``QuadraticCandidate`` or an expression candidate that is a polynomial of degree 2 with a
    positive definite ``P``; ``None`` otherwise (float arithmetic: a measure, not a proof)."""
    from lyapcert.certificates.candidates import ExpressionCandidate, QuadraticCandidate

    if isinstance(candidate, QuadraticCandidate):
        P = np.asarray(candidate.P, dtype=np.float64)
        centre = np.asarray(candidate.quadratic_floor()[0], dtype=np.float64).reshape(-1)
        offset = 0.0
    elif isinstance(candidate, ExpressionCandidate):
        import sympy

        symbols = candidate.symbols
        expr = candidate.expr
        if not expr.is_polynomial(*symbols):
            return None
        poly = sympy.Poly(expr, *symbols)
        if poly.total_degree() > 2:
            return None
        n = len(symbols)
        P = np.zeros((n, n))
        b = np.zeros(n)
        k = 0.0
        try:
            for monomial, coeff in poly.terms():
                value = float(coeff)
                powers = [i for i, e in enumerate(monomial) for _ in range(e)]
                if len(powers) == 2:
                    i, j = powers
                    if i == j:
                        P[i, i] += value
                    else:
                        P[i, j] += value / 2
                        P[j, i] += value / 2
                elif len(powers) == 1:
                    b[powers[0]] += value
                else:
                    k += value
        except TypeError:  # a coefficient that is not a number
            return None
        try:
            np.linalg.cholesky(P)
        except np.linalg.LinAlgError:
            return None
        centre = np.linalg.solve(P, -b / 2)
        offset = k - float(centre @ P @ centre)
    else:
        return None
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(centre)) and math.isfinite(offset)):
        return None
    return P, centre, offset


def ellipsoid_volume(system: System, candidate, level: float) -> float | None:
    """The exact volume of ``{V <= level}`` for a quadratic ``V = (x-x0)'P(x-x0) + k``
    (``quadratic_form``: a ``QuadraticCandidate``, ``x0 = x*``, ``k = 0``, or a degree-2
    polynomial expression) with ``P`` positive definite whose ellipsoid lies inside the box (its
    extent along axis ``i`` is ``x0_i +- sqrt(c (P^-1)_ii)``, ``c = level - k``):
    ``unit_ball(n) c^(n/2) / sqrt(det P)``. ``None`` when that does not apply (another family,
    ``P`` not positive definite, the ellipsoid reaches past the box)."""
    system = as_system(system)
    form = quadratic_form(candidate)
    if form is None:
        return None
    P, centre, offset = form
    n = P.shape[0]
    try:
        L = np.linalg.cholesky(P)
    except np.linalg.LinAlgError:
        return None
    if np.any(np.diag(L) <= 0):
        return None
    lo = np.asarray(system.domain.lower, dtype=np.float64)
    hi = np.asarray(system.domain.upper, dtype=np.float64)
    if np.any(centre < lo) or np.any(centre > hi):
        return None
    c = level - offset
    if c <= 0:
        return 0.0  # one point or empty
    extent = np.sqrt(c * np.diag(np.linalg.inv(P)))
    if (
        not np.all(np.isfinite(extent))
        or np.any(centre - extent < lo)
        or np.any(centre + extent > hi)
    ):
        return None
    log_det = 2.0 * float(np.sum(np.log(np.diag(L))))
    return unit_ball_volume(n) * math.exp(0.5 * n * math.log(c) - 0.5 * log_det)


def box_sample(system: System, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` points of a seeded scrambled Sobol sequence in the box, ``[samples, n]``."""
    system = as_system(system)
    lo = np.asarray(system.domain.lower, dtype=np.float64)
    hi = np.asarray(system.domain.upper, dtype=np.float64)
    engine = torch.quasirandom.SobolEngine(system.n_states, scramble=True, seed=seed)
    unit = engine.draw(samples, dtype=torch.float64).numpy()
    return lo + unit * (hi - lo)


def sampled_volume(box_volume: float, count: int, samples: int) -> tuple[float, float]:
    """``(volume, standard error)`` of a set holding ``count`` of ``samples`` points of a sample
    of the box: ``box_volume * p`` and ``box_volume * sqrt(p (1 - p) / samples)`` (the plain
    Monte-Carlo figure; for a scrambled Sobol sample, conservative)."""
    p = count / samples
    return box_volume * p, box_volume * math.sqrt(p * (1.0 - p) / samples)


def _count_below(candidate, points: np.ndarray, level: float) -> int:
    """How many of ``points`` have ``V <= level`` (NaN counts as outside), in batches."""
    count = 0
    with torch.no_grad():
        for start in range(0, len(points), BATCH):
            x = torch.as_tensor(points[start : start + BATCH], dtype=torch.float64)
            values = candidate.value(x).detach().cpu().numpy()
            count += int(np.count_nonzero(values <= level))
    return count


def certified_volume(
    system: System, candidate, level: float, samples: int = 2**16, seed: int = 0
) -> VolumeEstimate:
    """The volume of ``{x in box : V(x) <= level}`` without simulating anything.

    Exact (``stderr = 0``) for a quadratic ``V`` (a ``QuadraticCandidate`` or a degree-2
    polynomial expression) whose ellipsoid lies inside the box (``ellipsoid_volume``). Otherwise counted on ``samples`` points of a seeded scrambled Sobol
    sequence of the box: ``volume = box_volume * p`` with ``p`` the share of points where
    ``V <= level``, and ``stderr = box_volume * sqrt(p (1 - p) / samples)``, the plain Monte-Carlo
    figure (for a scrambled Sobol sample, whose error is usually smaller, it is conservative).
    A volume, not a proof: the verifier decides the region; this only measures it.
    """
    system = as_system(system)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise VerificationError(f"samples: expected an integer >= 1, got {samples!r}")
    if level is None or not math.isfinite(level):
        raise VerificationError(f"level: expected a finite number, got {level!r}")
    exact = ellipsoid_volume(system, candidate, level)
    if exact is not None:
        return VolumeEstimate(volume=exact, stderr=0.0, method=EXACT_ELLIPSOID, points=0)
    inside = _count_below(candidate, box_sample(system, samples, seed), level)
    volume, stderr = sampled_volume(float(system.domain.volume), inside, samples)
    return VolumeEstimate(volume=volume, stderr=stderr, method=SAMPLE, points=samples)


def true_roa_of(system: System, progress: bool = False) -> RoaEstimate:
    """The cached true ROA of ``system`` (a closed loop's is cached under its controller's
    content id); simulated now, and cached, when it is not cached yet."""
    system = as_system(system)
    return true_roa(system, cache=True, progress=progress)


def available_true_roa(
    system: System, roa: bool | None = None, progress: bool = False
) -> RoaEstimate | None:
    """The true-ROA sample to measure against: ``roa=None`` -> the cached one if any (never
    simulates); ``True`` -> cached or simulated now (and cached); ``False`` -> ``None``."""
    system = as_system(system)
    if roa is False:
        return None
    found = cached_true_roa(system)
    if found is not None or roa is None:
        return found
    return true_roa_of(system, progress)


def sublevel_mask(estimate: RoaEstimate, candidate, level: float) -> np.ndarray:
    """``[N]`` booleans: the sample points of ``estimate`` with ``V <= level``."""
    with torch.no_grad():
        values = candidate.value(torch.as_tensor(estimate.points, dtype=torch.float64)).numpy()
    return np.asarray(values <= level)


def region_share(
    system: System,
    candidate,
    level: float,
    progress: bool = False,
    estimate: RoaEstimate | None = None,
) -> tuple[float, float]:
    """``(volume, share of the true ROA)`` of ``{x in box : V(x) <= level}``, both counted on the
    true-ROA sample (``estimate``, or the cached one, simulated if needed)."""
    system = as_system(system)
    est = estimate if estimate is not None else true_roa_of(system, progress)
    inside = sublevel_mask(est, candidate, level)
    return float(inside.mean() * est.box_volume), est.fraction_of_roa(inside)


def region_on_true_roa(
    system: System, candidate, level: float, estimate: RoaEstimate, verified: bool = True
) -> tuple[float, float, str]:
    """``(volume, share of the true ROA, volume_method)`` of ``{V <= level}`` beside the true-ROA
    sample ``estimate``: both counted on the sample (``TRUE_ROA_SAMPLE``), except for a
    ``verified`` ellipsoid inside the box, which lies in the ROA: its exact volume over the ROA's
    (``EXACT_OVER_TRUE_ROA``; a small set holds few or no sample points, so the count says
    little or 0). The one rule for ``certify``, the tables and the plots."""
    system = as_system(system)
    exact = ellipsoid_volume(system, candidate, level) if verified else None
    if exact is not None and estimate.volume > 0:
        return exact, min(1.0, exact / estimate.volume), EXACT_OVER_TRUE_ROA
    volume, share = region_share(system, candidate, level, estimate=estimate)
    return volume, share, TRUE_ROA_SAMPLE


def simulation_check(
    system: System, candidate, level: float, estimate: RoaEstimate | None = None
) -> dict:
    """Cross-check of a VERIFIED region with the true-ROA sample: ``{"points": M,
    "not_converged": N, "example": [...] | None}`` for the ``M`` sample points of ``{V <= level}``,
    ``N`` of which did not converge to ``x*`` in simulation. ``N > 0`` contradicts the certificate
    (or the simulation's horizon): it is reported, never hidden; it does not change the verdict."""
    system = as_system(system)
    est = estimate if estimate is not None else true_roa_of(system, False)
    inside = sublevel_mask(est, candidate, level)
    bad = inside & ~est.inside
    example = est.points[np.argmax(bad)].tolist() if bad.any() else None
    return {"points": int(inside.sum()), "not_converged": int(bad.sum()), "example": example}


def contradiction_message(check: dict) -> str:
    """The warning for a failed ``simulation_check`` ('' when there is none)."""
    if not check.get("not_converged"):
        return ""
    return (
        f"WARNING: {check['not_converged']} of the {check['points']} sample points of the "
        f"certified set did not converge to x* in simulation (e.g. {check['example']}): the "
        "certificate and the simulation contradict each other; please report this"
    )


def attach_measurements(
    system: System,
    candidate,
    result,
    progress: bool = False,
    roa: bool | None = True,
    samples: int = 2**16,
) -> RoaEstimate | None:
    """``measure_region`` with the true-ROA sample ``available_true_roa(system, roa)`` (``True``
    simulates if needed, ``None`` only uses the cache, ``False`` none); returns that sample (or
    ``None``)."""
    system = as_system(system)
    estimate = available_true_roa(system, roa, progress)
    measure_region(system, candidate, result, estimate, samples=samples)
    return estimate


def measure_region(
    system: System,
    candidate,
    result,
    estimate: RoaEstimate | None,
    samples: int = 2**16,
) -> None:
    """Put the certified volume on ``result`` (a ``verify.Result`` with a level) and say how it
    was counted (``volume_method``, ``certified_volume_stderr``).

    With a true-ROA sample ``estimate`` the volume and ``roa_fraction`` are counted on it (the
    comparison's one metric), except for a VERIFIED ellipsoid inside the box, whose exact volume
    is divided by the true ROA's volume (``EXACT_OVER_TRUE_ROA``); a VERIFIED result gets the
    simulation cross-check (its warning joins the message). Without one (``None``), the volume is ``certified_volume`` (exact
    ellipsoid or a sample of the box) and ``roa_fraction`` stays ``None``."""
    system = as_system(system)
    if estimate is None:
        measured = certified_volume(system, candidate, result.level, samples=samples)
        result.certified_volume = measured.volume
        result.certified_volume_stderr = measured.stderr
        result.volume_method = measured.describe()
        result.roa_fraction = None
        return
    result.certified_volume, result.roa_fraction, result.volume_method = region_on_true_roa(
        system, candidate, result.level, estimate, verified=result.verified
    )
    result.certified_volume_stderr = None
    if result.verified:
        result.simulation_check = simulation_check(
            system, candidate, result.level, estimate=estimate
        )
        warning = contradiction_message(result.simulation_check)
        if warning:
            result.message = (result.message + " " + warning).strip()
