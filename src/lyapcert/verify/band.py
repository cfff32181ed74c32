"""Checking a peer's band claim exactly as stated, and what lyapcert proves beside it.

Published neural certificates (for example the 2025 two-stage method) claim a band: ``dV/dt < 0``
on ``{x in B : c1 <= V(x) <= c2}``. That leaves the hole ``{V < c1}`` unverified and does not
check that ``{V <= c2}`` stays in the box. ``check_band`` reports, separately:

* ``decrease``: the band's decrease holds (proven on every box of the band), is violated (a point
  of the band where it fails, replayed in interval arithmetic), or is unknown (budget);
* ``box``: whether ``{x in B : V <= c2}`` stays off the box's faces (the proven range of the
  minimum of ``V`` on the faces against ``c2``);
* ``hole``: whether ``{x in B : V < c1}`` lies in a proven region of attraction (the local
  certificate's region, or a chain's auxiliary region, ``verify.chain``), and if not, the volume
  of the part of it outside (a sample estimate with its standard error);
* ``certified``: the region lyapcert certifies with no hole (``verify_candidate``, the largest
  level).

If the decrease holds, the set is inside the box and the hole is closed, ``{V <= c2}`` is a
certified region of attraction; the ``certified`` result finds that (or a larger) level itself.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from lyapcert.errors import VerificationError
from lyapcert.verify.result import Result


@dataclass
class BandReport:
    """The four answers of ``check_band`` (plain dicts, with a ``status`` each) and the no-hole
    ``Result``; ``seconds`` for the band's three searches."""

    c1: float
    c2: float
    decrease: dict
    box: dict
    hole: dict
    certified: Result | None
    seconds: float = 0.0
    equilibrium: dict | None = field(default=None)

    def to_dict(self) -> dict:
        return {
            "c1": self.c1,
            "c2": self.c2,
            "decrease": self.decrease,
            "box": self.box,
            "hole": self.hole,
            "certified": None if self.certified is None else self.certified.to_dict(),
            "band_seconds": self.seconds,
        }

    def lines(self) -> list[str]:
        """One line per part, for the text output."""
        d, b, h = self.decrease, self.box, self.hole
        out = [f"band {self.c1:.6g} <= V <= {self.c2:.6g}"]
        line = f"  decrease on the band: {d['status']}"
        if d["status"] == "violated":
            line += f" at {d['point']} (V = {d['V']:.6g}, {d['quantity']} in {d['value']})"
        elif d["status"] == "unknown":
            line += f" (proven on {self.c1:.6g} <= V <= {d['proven_up_to']:.6g})"
        out.append(line)
        line = f"  {{V <= {self.c2:.6g}}} in the box: {b['status']}"
        if b.get("min_v_on_faces") is not None:
            lo, hi = b["min_v_on_faces"]
            line += f" (min V on the faces in [{lo:.6g}, {hi:.6g}])"
        out.append(line)
        line = f"  hole {{V < {self.c1:.6g}}}: {h['status']}"
        if h["status"] == "closed":
            line += f" by {h['by']}"
        elif h.get("volume") is not None:
            line += (
                f" (volume outside a proven region of attraction {h['volume']:.4g} +- "
                f"{h['stderr']:.2g}, sample of {h['points']:,} points)"
            )
        out.append(line)
        if self.certified is not None:
            r = self.certified
            lvl = "-" if r.level is None else f"{r.level:.6g}"
            out.append(
                f"  certified with no hole: {r.verdict.value}, level {lvl}"
                + (f", volume {r.certified_volume:.6g}" if r.certified_volume is not None else "")
            )
        return out


def check_band(
    system,
    candidate,
    c1: float,
    c2: float,
    options=None,
    auxiliary=None,
    certify: bool = True,
    samples: int = 2**16,
) -> BandReport:
    """Check the claim ``dV/dt < 0`` on ``{x in B : c1 <= V <= c2}`` (discrete time: ``V(x+) <
    V(x)`` and ``x+`` in ``B``), and the box and the hole beside it (module docstring). The
    band's three searches share ``options.time_limit``; the no-hole verification
    (``certify=True``) has a time limit of its own."""
    from lyapcert.verify.chain import auxiliary_region, default_auxiliaries
    from lyapcert.verify.lyapunov import (
        VerifyOptions,
        _boundary_search,
        build_problem,
        decrease_search,
        inner_level,
        prove_local,
        replay,
        verify_candidate,
    )

    if not (math.isfinite(c1) and math.isfinite(c2) and c1 < c2):
        raise VerificationError(f"--band: expected finite numbers C1 < C2, got {c1}, {c2}")
    options = options or VerifyOptions()
    # the hole's inner level is compared with c1: a tight one (the proof's default is loose)
    opts = dataclasses.replace(
        options,
        record_proof=False,
        parts=1,
        inner_tolerance=min(options.inner_tolerance, options.level_tolerance),
    )
    started = time.perf_counter()
    problem = build_problem(system, candidate, opts)
    problem.auxiliary = auxiliary
    discrete = problem.succ_q is not None
    quantity = "V(x+) - V(x)" if discrete else "dV/dt"

    problem.deadline = time.perf_counter() + float(opts.time_limit)
    # {V <= c2} in the box: the minimum of V on the faces
    face = _boundary_search(problem, None)
    box = {"min_v_on_faces": [face.lower, face.upper], "boxes": face.stats.boxes}
    if face.lower > c2:
        box["status"] = "inside"
    elif face.upper <= c2:
        box["status"] = "reaches the faces"
        box["point"] = face.witness
    else:
        box["status"] = "unknown"

    problem.deadline = time.perf_counter() + float(opts.time_limit)
    # the hole {V < c1}: inside the local certificate's region, or a chain's auxiliary region
    hole = {"status": "open"}
    eq, local = prove_local(problem)
    if not hasattr(local, "P"):
        hole = {"status": "unknown", "reason": "x* or its local certificate is not proven"}
    else:
        c0, _ = inner_level(problem, local, target=c1)
        region = None
        if c0 >= c1:
            hole = {"status": "closed", "by": "the local certificate", "c0": c0}
        else:
            tries, reasons = (
                ([auxiliary], []) if auxiliary is not None else default_auxiliaries(problem)
            )
            for w in tries:  # the first auxiliary region that holds all of {V < c1}
                region, _, why = auxiliary_region(problem, w)
                if region is None:
                    reasons.append(why)
                    continue
                c0_chain, _ = inner_level(problem, region, target=c1)
                if c0_chain >= c1:
                    hole = {
                        "status": "closed",
                        "by": f"a chain through {region.text}",
                        "c0": c0_chain,
                    }
                    break
            if hole["status"] != "closed" and reasons:
                hole["reason"] = "; ".join(reasons)
        if hole["status"] != "closed":
            hole.update(_hole_volume(problem, candidate, c1, local, region, samples))
    problem.deadline = time.perf_counter() + float(opts.time_limit)
    # the band's decrease, exactly as claimed
    dec = decrease_search(problem, c1, strict=True, target=c2)
    if dec.lower > c2:  # every point of the closed band decreases
        decrease = {"status": "holds", "proven_up_to": c2}
    elif dec.witness is not None and dec.upper <= c2:
        rep = replay(problem, dec.witness)
        decrease = {
            "status": "violated",
            "point": dec.witness,
            "V": dec.upper,
            "quantity": quantity,
            "value": rep["interval"],
            "replay": rep,
            "proven_up_to": dec.lower,
        }
    else:
        decrease = {"status": "unknown", "proven_up_to": max(c1, dec.lower)}
    decrease["boxes"] = dec.stats.boxes

    band_seconds = time.perf_counter() - started
    certified = None
    if certify:
        certified = verify_candidate(system, candidate, options=options, auxiliary=auxiliary)
    return BandReport(
        c1, c2, decrease, box, hole, certified, band_seconds, equilibrium=eq.to_dict()
    )


def _hole_volume(problem, candidate, c1: float, local, region, samples: int) -> dict:
    """The volume of ``{x in B : V(x) < c1}`` outside the proven regions (the local
    certificate's, and the chain's when there is one), counted on the metric's seeded Sobol
    sample of the box: ``{"volume", "stderr", "points"}`` (an estimate, not a proof)."""
    from lyapcert.metric import box_sample, sampled_volume

    x = torch.as_tensor(box_sample(problem.system, samples), dtype=torch.float64)
    with torch.no_grad():
        v = candidate.value(x)
        e = x - problem.x_star.cpu()
        P = torch.as_tensor(local.P, dtype=torch.float64)
        covered = ((e @ P) * e).sum(1) <= local.level
        if region is not None:
            covered |= region.candidate.value(x) <= region.level
    count = int(((v < c1) & ~covered).sum())
    volume, stderr = sampled_volume(float(problem.system.domain.volume), count, samples)
    return {"volume": volume, "stderr": stderr, "points": samples}
