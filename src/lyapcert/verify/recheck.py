"""Re-check a saved certificate directory (design rules 6 and 9)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lyapcert.certificates.store import Certificate, load
from lyapcert.verify.lyapunov import VerifyOptions, verify_candidate
from lyapcert.verify.result import Result


def recheck(directory: str | Path, options=None, search: bool = False, **overrides):
    """Re-check a saved certificate at its saved level; returns ``(certificate, result)``.

    With a stored proof (``proof.npz``) its decided boxes are evaluated again, with no search
    (``verify.proof.check_stored_proof``); without one, or with ``search=True`` or ``options``,
    the whole proof is re-run by search, with the saved settings (budgets, tolerances) and any
    ``overrides`` of ``VerifyOptions`` fields (``linear=False``, ``device="cuda"``).
    ``result.provenance["recheck"]`` says which. ``recheck_report`` gives the same with the
    comparison against the saved verdict."""
    cert = load(directory)
    if cert.proof is not None and not search and options is None and not overrides:
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
        options = VerifyOptions(**{**known, **overrides}, record_proof=False)
    result = verify_candidate(
        cert.system, cert.candidate, level=cert.level, options=options, auxiliary=cert.auxiliary
    )
    why = "no stored proof in the folder" if cert.proof is None else "asked for"
    result.provenance["recheck"] = f"search ({why})"
    return cert, result


@dataclass
class RecheckReport:
    """A saved certificate (``certificate``, as loaded from ``directory``) and the ``result`` of
    re-checking it: ``reproduced`` when the re-check reaches the saved verdict and condition,
    ``confirmed`` when it is reproduced and verified (``lyapcert verify DIR`` exits 0)."""

    certificate: Certificate
    result: Result
    directory: Path

    @property
    def reproduced(self) -> bool:
        cert, result = self.certificate, self.result
        return (
            result.verdict.value == cert.verdict and result.condition.name.lower() == cert.condition
        )

    @property
    def confirmed(self) -> bool:
        return self.reproduced and self.result.verified

    @property
    def kind(self) -> str:
        """How it was re-checked: ``"stored proof"`` or ``"search (why)"``."""
        return self.result.provenance.get("recheck", "search")

    @property
    def search_seconds(self) -> float | None:
        """Seconds the saved search took (as recorded when the certificate was saved)."""
        record = self.certificate.record
        return (record.get("proof") or {}).get("search_seconds", record.get("verify_seconds"))

    @property
    def proof_leaves(self) -> dict | None:
        """Decided boxes of the stored proof per search (``None`` without a stored proof)."""
        return (self.certificate.record.get("proof") or {}).get("leaves")

    def to_dict(self) -> dict:
        """The re-check's ``Result.to_dict()`` plus the comparison (``lyapcert verify DIR
        --json``)."""
        cert = self.certificate
        payload = self.result.to_dict()
        payload.update(
            saved_verdict=cert.verdict,
            saved_condition=cert.condition,
            reproduced=self.reproduced,
            certificate_dir=str(self.directory),
            recheck=self.kind,
            recheck_seconds=self.result.seconds,
            search_seconds=self.search_seconds,
        )
        if self.proof_leaves is not None:
            payload["proof_leaves"] = self.proof_leaves
        return payload


def recheck_report(
    directory: str | Path, options: VerifyOptions | None = None, search: bool = False, **overrides
) -> RecheckReport:
    """``recheck(directory, options, search, **overrides)`` compared with the saved verdict."""
    cert, result = recheck(directory, options=options, search=search, **overrides)
    return RecheckReport(cert, result, Path(directory))
