"""Certificate families: expressions, quadratic forms and networks (trained here, given as modules,
or read from ONNX / TorchScript files); ``load_candidate`` loads any of them."""

from lyapcert.certificates.candidates import (
    Candidate,
    ExpressionCandidate,
    NetworkCandidate,
    QuadraticCandidate,
)
from lyapcert.certificates.imported import FileCandidate, load_candidate

__all__ = [
    "Candidate",
    "ExpressionCandidate",
    "FileCandidate",
    "NetworkCandidate",
    "QuadraticCandidate",
    "load_candidate",
]
