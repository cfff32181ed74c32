"""Re-check a saved certificate directory (design rules 6 and 9)."""

from __future__ import annotations

from pathlib import Path

from lyapcert.certificates.store import load
from lyapcert.verify.lyapunov import VerifyOptions, verify_candidate


def recheck(directory: str | Path, options=None, search: bool = False):
    """Re-check a saved certificate at its saved level; returns ``(certificate, result)``.

    With a stored proof (``proof.npz``) its decided boxes are evaluated again, with no search
    (``verify.proof.check_stored_proof``); without one, or with ``search=True`` or ``options``,
    the whole proof is re-run by search. ``result.provenance["recheck"]`` says which."""
    cert = load(directory)
    if cert.proof is not None and not search and options is None:
        from lyapcert.verify.proof import check_stored_proof

        result = check_stored_proof(cert)
        result.provenance["recheck"] = "stored proof"
        return cert, result
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
        options = VerifyOptions(**known, record_proof=False)
    result = verify_candidate(cert.system, cert.candidate, level=cert.level, options=options)
    why = "no stored proof in the folder" if cert.proof is None else "asked for"
    result.provenance["recheck"] = f"search ({why})"
    return cert, result
