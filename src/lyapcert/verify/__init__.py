"""Lyapunov conditions, the local certificate near x*, branch and bound, and ``Result``."""

from lyapcert.verify.lyapunov import VerifyOptions, verify_candidate
from lyapcert.verify.recheck import RecheckReport, recheck, recheck_report
from lyapcert.verify.result import Condition, Result, Verdict

__all__ = [
    "Condition",
    "RecheckReport",
    "Result",
    "Verdict",
    "VerifyOptions",
    "recheck",
    "recheck_report",
    "verify_candidate",
]
