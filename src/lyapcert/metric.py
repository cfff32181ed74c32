"""The one metric every method and command uses: a certified set's volume and its share of the
true ROA, both counted on the cached sample of ``lyapcert roa`` (of the closed loop when the
system is one), and the simulation cross-check of a VERIFIED region.
"""

from __future__ import annotations

import numpy as np
import torch

from lyapcert.simulate.roa import RoaEstimate, true_roa
from lyapcert.systems.system import System


def true_roa_of(system: System, progress: bool = False) -> RoaEstimate:
    """The cached true ROA of ``system`` (a closed loop's is cached under its controller's
    content id)."""
    return true_roa(system, cache=True, progress=progress)


def sublevel_mask(estimate: RoaEstimate, candidate, level: float) -> np.ndarray:
    """``[N]`` booleans: the sample points of ``estimate`` with ``V <= level``."""
    with torch.no_grad():
        values = candidate.value(torch.as_tensor(estimate.points, dtype=torch.float64)).numpy()
    return np.asarray(values <= level)


def region_share(
    system: System, candidate, level: float, progress: bool = False
) -> tuple[float, float]:
    """``(volume, share of the true ROA)`` of ``{x in box : V(x) <= level}``, both counted on the
    cached true-ROA sample."""
    est = true_roa_of(system, progress)
    inside = sublevel_mask(est, candidate, level)
    return float(inside.mean() * est.box_volume), est.fraction_of_roa(inside)


def simulation_check(system: System, candidate, level: float) -> dict:
    """Cross-check of a VERIFIED region with the true-ROA sample: ``{"points": M,
    "not_converged": N, "example": [...] | None}`` for the ``M`` sample points of ``{V <= level}``,
    ``N`` of which did not converge to ``x*`` in simulation. ``N > 0`` contradicts the certificate
    (or the simulation's horizon): it is reported, never hidden; it does not change the verdict."""
    est = true_roa_of(system, False)
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


def attach_measurements(system: System, candidate, result, progress: bool = False) -> None:
    """Put the certified volume and share of the true ROA on ``result`` (a ``verify.Result`` with
    a level), and for a VERIFIED one the simulation cross-check (its warning joins the
    message)."""
    result.certified_volume, result.roa_fraction = region_share(
        system, candidate, result.level, progress
    )
    if result.verified:
        result.simulation_check = simulation_check(system, candidate, result.level)
        warning = contradiction_message(result.simulation_check)
        if warning:
            result.message = (result.message + " " + warning).strip()
