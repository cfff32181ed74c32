"""Lyapunov conditions, the local certificate near x*, branch and bound, and ``Result``."""

from lyapcert.verify.lyapunov import VerifyOptions, verify_candidate
from lyapcert.verify.recheck import recheck
from lyapcert.verify.result import Condition, Result, Verdict

__all__ = ["Condition", "Result", "Verdict", "VerifyOptions", "recheck", "verify_candidate"]
