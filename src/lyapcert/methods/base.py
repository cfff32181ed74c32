"""What every method provides: ``fit(system, options) -> Fit``; the verifier decides afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from lyapcert.certificates.candidates import Candidate
from lyapcert.systems.system import System


@dataclass
class Fit:
    """A method's proposal: the candidate, training time, and method details. A method that
    trains a closed loop's controller leaves the trained weights in ``system.controller``."""

    candidate: Candidate
    train_seconds: float
    info: dict = field(default_factory=dict)


class Method(ABC):
    """A way to find a Lyapunov function candidate. ``Options`` is its options dataclass;
    ``checkpoints`` says whether ``fit`` takes a ``checkpoint=`` (``methods.checkpoint``)."""

    name: str = ""
    Options: type = object
    checkpoints: bool = False

    @abstractmethod
    def fit(self, system: System, options, progress: bool = False) -> Fit:
        """Propose a candidate for ``system`` (a closed loop is one system: ``f(x, k(x))``);
        never claims it is valid (the verifier does)."""
