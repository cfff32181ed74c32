"""The verifier's answer: a ``Result`` with a verdict, the condition proved, the level and how."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import asdict, dataclass, field
from enum import Enum

from lyapcert.verify.search import SearchStats, SearchTree


class Verdict(str, Enum):
    """VERIFIED: proven. FALSIFIED: a replayed counterexample violates the condition. UNKNOWN:
    neither (budget, loose bounds, an engine error, or a hole that could not be closed)."""

    VERIFIED = "verified"
    FALSIFIED = "falsified"
    UNKNOWN = "unknown"


class Condition(str, Enum):
    """What was proven on the certified level set."""

    ASYMPTOTIC = "asymptotic stability (strict decrease of V away from x*, no hole)"
    NONSTRICT = "non-strict decrease only (dV/dt <= 0: Lyapunov stability, not asymptotic)"
    NONE = "none"


@dataclass
class ProofTrees:
    """The searches behind a VERIFIED level, as recorded: ``c0`` (the inner level used), the inner
    level's tree (``None`` when ``c0`` came from the candidate's quadratic floor), the decrease
    tree of each part of the box, and the boundary tree (the 2n faces; ``None`` in discrete time).
    ``lyapcert.verify.proof.stored_proof`` turns them into a certificate's stored proof."""

    c0: float
    inner: SearchTree | None
    decrease: list[SearchTree]
    boundary: SearchTree | None


@dataclass
class Result:
    """Outcome of a verification.

    ``level``: the certified (or checked) level ``c`` of the region ``{x in box : V(x) <= c}``;
    ``level_upper``: a level at which a violation is known (the largest level lies in between);
    ``hole``: None when the neighbourhood of ``x*`` is covered by the local certificate, else why
    not; ``counterexample``: a point where a condition provably fails (checked by interval
    arithmetic at that point, so the violation is real); ``inner_level``: ``c0`` of the proof;
    ``v_at_equilibrium``: an enclosure of ``V(x*)``; ``positivity``: what is proven about the sign
    of ``V`` (``V > c0 > 0`` outside the local region; the proof itself does not need more);
    ``equilibrium``: how ``x*`` was proven an equilibrium of the dynamics as computed
    (``verify.equilibrium``); ``proof``: one line stating exactly what was proven (for a
    FALSIFIED or UNKNOWN result only the parts that hold); ``proven_level``: the largest level
    proven so far when the result is not VERIFIED at the level asked (None: none);
    ``simulation_check``: sample points of the certified set that did not converge in simulation
    (``metric.simulation_check``; a contradiction is reported in ``message``);
    ``certified_volume``: the volume of ``{V <= level}`` (``lyapcert.metric``), counted as
    ``volume_method`` says (``"true-ROA sample"``, ``"exact ellipsoid"`` or ``"sample of N
    points"``) with standard error ``certified_volume_stderr`` (0 when exact, None on the
    true-ROA sample); ``roa_fraction``: its share of the true ROA (None without a true ROA);
    ``chain``: when the hole was closed by a chain of certificates (``verify.chain``), its links
    (the local certificate, the auxiliary certificate with its verified level, the inner level).
    """

    verdict: Verdict
    condition: Condition
    level: float | None
    system: str = ""
    candidate: str = ""
    hole: str | None = None
    counterexample: dict | None = None
    level_upper: float | None = None
    inner_level: float | None = None
    local: dict | None = None
    v_at_equilibrium: tuple[float, float] | None = None
    positivity: str | None = None
    message: str = ""
    seconds: float = 0.0
    stats: SearchStats = field(default_factory=SearchStats)
    provenance: dict = field(default_factory=dict)
    certified_volume: float | None = None
    roa_fraction: float | None = None
    volume_method: str | None = None
    certified_volume_stderr: float | None = None
    equilibrium: dict | None = None
    proof: str | None = None
    proven_level: float | None = None
    simulation_check: dict | None = None
    chain: list | None = None
    proof_trees: ProofTrees | None = field(default=None, repr=False, compare=False)

    @property
    def verified(self) -> bool:
        return (
            self.verdict is Verdict.VERIFIED
            and self.condition is Condition.ASYMPTOTIC
            and self.hole is None
        )

    def to_dict(self) -> dict:
        d = asdict(dataclasses.replace(self, proof_trees=None))
        d.pop("proof_trees")
        d["verdict"] = self.verdict.value
        d["condition"] = self.condition.name.lower()
        d["condition_text"] = self.condition.value
        d["verify_seconds"] = self.seconds
        d["hole"] = self.hole if self.hole is not None else "none"
        return d

    def summary_line(self) -> str:
        lvl = f"{self.level:.6g}" if self.level is not None else "-"
        return f"{self.verdict.value.upper()}: {self.condition.value}; level {lvl}; hole: {self.hole or 'none'}"


def provenance(system, candidate, options) -> dict:
    import numpy
    import scipy
    import sympy
    import torch

    from lyapcert import __version__

    return {
        "lyapcert": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "sympy": sympy.__version__,
        "python": platform.python_version(),
        "system_fingerprint": system.fingerprint(),
        "candidate_hash": candidate.content_hash(),
        "settings": {k: v for k, v in vars(options).items()},
    }
