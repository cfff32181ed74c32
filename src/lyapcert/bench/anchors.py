"""Published numbers (shared/benchmarks.md) placed beside ours where the benchmark matches.

Autonomous systems: the certified region as % of the true ROA in the box, for the neural method
(Zubov-trained, dReal) and SOS of degree 6. Controlled systems: the certified volume of the 2025
two-stage method (jointly trained neural controllers) on its own verification boxes, which are the
registry's ``-wide`` variants (``vanderpol_controlled`` and ``double_integrator`` use the same box).
"""

from __future__ import annotations

from dataclasses import dataclass

# % of the true ROA: {system: {"neural": ..., "sos": ...}}
PUBLISHED_PERCENT = {
    "vanderpol": {"neural": 95.6, "sos": 94.2},
    "vanderpol-mu3": {"neural": 85.1, "sos": 70.9},
    "power_system": {"neural": 82.5, "sos": 18.5},
}
# certified volume in state-space units, jointly trained neural controller (mean of 5 seeds)
PUBLISHED_VOLUME = {
    "vanderpol_controlled": 57.6,
    "double_integrator": 302.5,
    "inverted_pendulum-wide": 2946.5,
    "inverted_pendulum-small-wide": 1169.2,
    "path_tracking-wide": 122.0,
    "path_tracking-small-wide": 73.8,
    "cartpole-wide": 306.1,
}


@dataclass(frozen=True)
class Anchor:
    """A published number: ``kind`` is ``"percent"`` (of the true ROA) or ``"volume"``."""

    value: float
    kind: str
    source: str

    def text(self) -> str:
        return f"{self.value:g} %" if self.kind == "percent" else f"{self.value:,.1f}"


def anchor_for(system: str, method: str) -> Anchor | None:
    """The published number comparable with ``method`` on ``system``, if any: a neural method
    beside the published neural one, ``sos`` beside SOS degree 6; on controlled systems any
    method beside the published certified volume."""
    if system in PUBLISHED_PERCENT:
        family = "sos" if method == "sos" else "neural" if method.startswith("neural") else None
        value = PUBLISHED_PERCENT[system].get(family) if family else None
        if value is not None:
            source = "Zubov neural + dReal" if family == "neural" else "SOS degree 6"
            return Anchor(value, "percent", source)
        return None
    if system in PUBLISHED_VOLUME:
        return Anchor(PUBLISHED_VOLUME[system], "volume", "2025 two-stage, neural controller")
    return None
