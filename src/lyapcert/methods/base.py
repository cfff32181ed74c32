"""What every method provides: ``fit(system, options) -> Fit``; the verifier decides afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from lyapcert.certificates.candidates import Candidate
from lyapcert.systems.system import System


@dataclass
class Fit:
    """A method's proposal: the candidate (and controller), training time, and method details."""

    candidate: Candidate
    train_seconds: float
    controller: object = None
    info: dict = field(default_factory=dict)


class Method(ABC):
    """A way to find a Lyapunov function candidate. ``Options`` is its options dataclass;
    ``checkpoints`` says whether ``fit`` takes a ``checkpoint=`` (``methods.checkpoint``)."""

    name: str = ""
    Options: type = object
    checkpoints: bool = False

    @abstractmethod
    def fit(self, system: System, options, progress: bool = False, controller=None) -> Fit:
        """Propose a candidate for ``system`` (closed by ``controller`` if given); never claims it
        is valid (the verifier does)."""
