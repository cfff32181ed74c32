"""Certificate directories: ``certificate.json`` with everything needed to re-run the proof.

Layout::

    DIR/certificate.json
        format, version
        system:     {"registry": NAME} or {"spec": {...the system file's fields...}}
        candidate:  {"family": "expression", "expression": TEXT}
                  | {"family": "quadratic", "P": [[...]]}
                  | {"family": "network", "architecture": {...}, "weights": "weights.pt", ...}
                  | {"family": "onnx" | "torchscript", "file": "candidate.onnx", "sha256": ...}
        level, verdict, condition, hole, inner_level, local  (the proof's numbers)
        settings    (verifier options), provenance (versions, content hashes)
        proof:      {"file": "proof.npz", "sha256": ..., "leaves": ..., "search_seconds": ...}
    DIR/proof.npz   (VERIFIED results) the decided boxes of the proof (``verify.proof``)
    DIR/candidate.onnx, DIR/controller.pt, ...   copies of the user's model files (hash-checked)

``load(DIR)`` returns a ``Certificate`` with ``value(x)``, ``level`` and ``contains(x)``;
``lyapcert.verify.recheck(DIR)`` re-checks the stored proof (no search), or re-runs the proof
from the saved system, candidate and level when the folder has none.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lyapcert.certificates.candidates import Candidate, ExpressionCandidate, QuadraticCandidate
from lyapcert.certificates.imported import FILE_FAMILIES
from lyapcert.errors import CertificateFileError
from lyapcert.fileio import atomic_target, write_text_atomic
from lyapcert.systems.registry import _ENTRIES, get_system
from lyapcert.systems.spec import system_from_spec
from lyapcert.systems.system import System

FORMAT = "lyapcert-certificate"
VERSION = 1
FILENAME = "certificate.json"
PROOF_FILENAME = "proof.npz"


def system_to_dict(system: System) -> dict:
    """A registry reference when ``system`` is the registry's own, else its full definition (of
    the open loop: a closed loop's controller is saved beside it, ``control.store``)."""
    system = system.open_loop
    if system.name in _ENTRIES and get_system(system.name).fingerprint() == system.fingerprint():
        return {"registry": system.name}
    if system.symbolic is None:
        raise CertificateFileError(
            f"system {system.name!r} was defined in Python; only registry systems and systems "
            "built from equations or files can be saved in a certificate"
        )
    return {"spec": json.loads(json.dumps(dict(system.symbolic.spec)))}


def system_from_dict(data: dict) -> System:
    """The system of a certificate's ``system`` entry (the inverse of ``system_to_dict``)."""
    if not isinstance(data, dict) or len(data) != 1 or not ({"registry", "spec"} & set(data)):
        raise CertificateFileError(
            f"system: expected {{'registry': NAME}} or {{'spec': {{...}}}}, got {data!r}"
        )
    if "registry" in data:
        return get_system(data["registry"])
    return system_from_spec(data["spec"])


def candidate_from_dict(data: dict, system: System, directory: Path | None = None) -> Candidate:
    """The candidate of a certificate's ``candidate`` entry (files read from ``directory``)."""
    family = data.get("family") if isinstance(data, dict) else None
    if family == "expression":
        return ExpressionCandidate(data["expression"], system)
    if family == "quadratic":
        return QuadraticCandidate(data["P"], system)
    if family == "network" and "architecture" in data and directory is not None:
        from lyapcert.certificates.candidates import NetworkCandidate
        from lyapcert.certificates.network import LyapunovNetwork, weights_digest

        path = Path(directory) / data.get("weights", "weights.pt")
        try:
            net = LyapunovNetwork.from_spec(data["architecture"])
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
            raise CertificateFileError(f"{path}: cannot rebuild the network: {exc}") from None
        if weights_digest(net) != data.get("weights_sha256"):
            raise CertificateFileError(f"{path}: the weights do not match the certificate's hash")
        return NetworkCandidate(net)
    if family in FILE_FAMILIES and directory is not None:
        from lyapcert.certificates.imported import load_candidate
        from lyapcert.errors import ModelFileError
        from lyapcert.models.store import read_source

        path = read_source(data, Path(directory), "candidate")
        try:
            candidate = load_candidate(path, system)
        except ModelFileError as exc:
            raise CertificateFileError(f"candidate: cannot rebuild it: {exc}") from None
        if candidate.sha256 != data.get("sha256"):  # the bytes converted are the ones hashed
            raise CertificateFileError(f"{path}: the candidate file does not match the hash")
        return candidate
    raise CertificateFileError(
        f"candidate: unknown family {family!r}; expected 'expression', 'quadratic', 'network', "
        "'onnx' or 'torchscript'"
    )


def save(
    directory: str | Path,
    system: System,
    candidate: Candidate,
    result,
    extra: dict | None = None,
    proof=None,
    auxiliary: Candidate | None = None,
) -> Path:
    """Write ``DIR/certificate.json`` for ``result`` (atomically), with the controller of a closed
    loop (``system.controller``, written by ``control.store``), the stored proof if given
    (``proof``: a ``verify.proof.StoredProof``, written to ``DIR/proof.npz``) and the auxiliary
    certificate of a chain if one was given (``auxiliary``, re-used by the re-check); returns
    the file's path."""
    directory = Path(directory)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "system": system_to_dict(system),
        "candidate": candidate.to_dict(),
        "level": result.level,
        "verdict": result.verdict.value,
        "condition": result.condition.name.lower(),
        "hole": result.hole,
        "inner_level": result.inner_level,
        "local": result.local,
        "chain": getattr(result, "chain", None),
        "settings": result.provenance.get("settings", {}),
        "provenance": {k: v for k, v in result.provenance.items() if k != "settings"},
        "verify_seconds": result.seconds,
        **(extra or {}),
    }
    module = getattr(candidate, "module", None)
    if (
        payload["candidate"].get("family") == "network"
        and "architecture" not in payload["candidate"]
    ):
        raise CertificateFileError(
            "this network has no rebuildable architecture (use certificates.network."
            "LyapunovNetwork); it cannot be saved as a re-checkable certificate"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if system.is_closed_loop:
        from lyapcert.control.store import controller_to_dict

        payload["controller"] = controller_to_dict(system.controller, directory)
    if payload["candidate"].get("family") in FILE_FAMILIES:
        from lyapcert.models.store import write_source

        payload["candidate"] = write_source(candidate, directory, "candidate")
    if auxiliary is not None:
        payload["auxiliary"] = auxiliary.to_dict()
        if payload["auxiliary"].get("family") in FILE_FAMILIES:
            from lyapcert.models.store import write_source

            payload["auxiliary"] = write_source(auxiliary, directory, "auxiliary")
        elif payload["auxiliary"].get("family") not in ("expression", "quadratic"):
            raise CertificateFileError(
                "the auxiliary certificate can be saved as an expression, a quadratic or an "
                "ONNX / TorchScript file only"
            )
    if module is not None and "weights" in payload["candidate"]:
        torch.save(module.state_dict(), directory / payload["candidate"]["weights"])
    proof_path = directory / PROOF_FILENAME
    if proof is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **proof.arrays)
        data = buf.getvalue()
        with atomic_target(proof_path) as tmp:
            tmp.write_bytes(data)
        payload["proof"] = {
            "file": PROOF_FILENAME,
            "sha256": hashlib.sha256(data).hexdigest(),
            **proof.summary,
        }
    elif proof_path.exists():
        proof_path.unlink()  # a proof of an earlier certificate in this folder
    return write_text_atomic(directory / FILENAME, json.dumps(payload, indent=2, default=float))


def read(directory: str | Path) -> dict:
    """The parsed ``certificate.json`` of ``directory`` (format and version checked)."""
    path = Path(directory) / FILENAME
    if not path.exists():
        raise CertificateFileError(
            f"{path}: no certificate here (expected {FILENAME} in the folder)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CertificateFileError(f"{path}: not a readable certificate: {exc}") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CertificateFileError(f"{path}: not a {FORMAT} version {VERSION} file")
    return data


@dataclass
class Certificate:
    """A loaded certificate: the region ``{x in box : V(x) <= level}`` of ``system`` (the closed
    loop when the certificate has a controller) and its proof record."""

    system: System
    candidate: Candidate
    level: float
    verdict: str
    condition: str
    record: dict
    proof: dict | None = None  # the stored proof's arrays (``proof.npz``), None without one
    auxiliary: Candidate | None = None  # a chain's auxiliary certificate, when one was given

    @property
    def controller(self):
        """The controller closing the loop (``None`` without one): ``system.controller``."""
        return self.system.controller

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``V(x)``, ``[batch, n] -> [batch]``."""
        return self.candidate.value(x)

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch]`` booleans: inside the box and ``V(x) <= level``."""
        return self.system.domain.contains(x) & (self.value(x) <= self.level)


def load(directory: str | Path) -> Certificate:
    """The certificate saved in ``directory`` (by ``certify(..., out=DIR)`` or ``lyapcert certify
    / verify --out DIR``) as a ``Certificate``: its system (the closed loop when a controller was
    saved), candidate ``V``, level, verdict and condition as recorded, the whole
    ``certificate.json`` as ``record``, and the stored proof's arrays (``proof``).

    Loading re-checks nothing but the files' hashes (``CertificateFileError`` for a missing,
    malformed or tampered folder); ``lyapcert.verify.recheck(DIR)`` re-checks the proof."""
    data = read(directory)
    system = system_from_dict(data["system"])
    candidate = candidate_from_dict(data["candidate"], system, Path(directory))
    level = data.get("level")
    if not isinstance(level, (int, float)):
        raise CertificateFileError(f"level: expected a number, got {level!r}")
    if data.get("controller") is not None:
        from lyapcert.control.store import controller_from_dict

        k = controller_from_dict(data["controller"], system, Path(directory))
        system = system.closed_loop(k)
    proof = _read_proof(Path(directory), data.get("proof"))
    auxiliary = None
    if data.get("auxiliary") is not None:
        auxiliary = candidate_from_dict(data["auxiliary"], system, Path(directory))
    return Certificate(
        system, candidate, float(level), data["verdict"], data["condition"], data, proof, auxiliary
    )


def _read_proof(directory: Path, entry) -> dict | None:
    """The arrays of the stored proof named in the manifest (checked against its hash)."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise CertificateFileError(f"proof: expected {{'file': ..., 'sha256': ...}}, got {entry!r}")
    path = directory / Path(entry["file"]).name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateFileError(f"{path}: cannot read the stored proof: {exc}") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise CertificateFileError(
            f"{path}: the stored proof does not match the certificate's hash"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise CertificateFileError(f"{path}: not a readable proof: {exc}") from None
