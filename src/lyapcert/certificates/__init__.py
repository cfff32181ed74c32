"""Certificate families: expressions, quadratic forms and networks."""

from lyapcert.certificates.candidates import (
    Candidate,
    ExpressionCandidate,
    NetworkCandidate,
    QuadraticCandidate,
)

__all__ = ["Candidate", "ExpressionCandidate", "NetworkCandidate", "QuadraticCandidate"]
