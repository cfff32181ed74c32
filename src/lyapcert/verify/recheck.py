"""Re-run the proof of a saved certificate directory (design rule 6)."""

from __future__ import annotations

from pathlib import Path

from lyapcert.certificates.store import load
from lyapcert.verify.lyapunov import VerifyOptions, verify_candidate


def recheck(directory: str | Path, options=None):
    """Re-run the proof of a saved certificate at its saved level; returns ``(certificate, result)``."""
    cert = load(directory)
    if options is None:
        settings = cert.record.get("settings", {})
        known = {
            k: settings[k]
            for k in (
                "time_limit",
                "max_boxes",
                "batch_size",
                "level_tolerance",
                "inner_tolerance",
                "mean_value",
            )
            if k in settings
        }
        options = VerifyOptions(**known)
    result = verify_candidate(
        cert.system, cert.candidate, level=cert.level, controller=cert.controller, options=options
    )
    return cert, result
