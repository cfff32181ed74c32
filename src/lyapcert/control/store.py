"""Controllers in certificate directories, and their content ids (for the true-ROA cache).

``certificate.json`` holds ``"controller"``: ``{"family": "linear", K, x_star, u_star, lower,
upper}``, ``{"family": "neural", "architecture": {...}, "weights": "controller.pt",
"weights_sha256": ...}``, or ``{"family": "onnx" | "torchscript", "file": NAME, "sha256": ...}``
(the user's file copied beside the certificate). Loading checks every hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from lyapcert.errors import CertificateFileError, ControllerError
from lyapcert.models.store import read_source, source_digest, write_source
from lyapcert.systems.system import System


def controller_id(controller) -> str | None:
    """A content hash of the controller (its parameters and spec, or its source file); ``None``
    for a plain function (its content cannot be hashed)."""
    from lyapcert.certificates.network import weights_digest

    digest = source_digest(controller)
    if digest is not None:
        return "file-" + digest[:24]
    if not isinstance(controller, torch.nn.Module):
        return None
    spec = getattr(controller, "spec", None)
    head = json.dumps(spec() if callable(spec) else type(controller).__name__, sort_keys=True)
    body = weights_digest(controller)
    return hashlib.sha256((head + body).encode()).hexdigest()[:24]


def controller_to_dict(controller, directory: Path) -> dict:
    """Write what rebuilds ``controller`` into ``directory``; returns its JSON record."""
    from lyapcert.certificates.network import weights_digest
    from lyapcert.control.linear import LinearController
    from lyapcert.control.neural import NeuralController

    if getattr(controller, "source_file", None) is not None:
        return write_source(controller, directory, "controller")
    if isinstance(controller, LinearController):
        return {"family": "linear", **controller.spec()}
    if isinstance(controller, NeuralController):
        torch.save(controller.state_dict(), directory / "controller.pt")
        return {
            "family": "neural",
            "architecture": controller.spec(),
            "weights": "controller.pt",
            "weights_sha256": weights_digest(controller),
        }
    raise CertificateFileError(
        f"a {type(controller).__name__} controller cannot be saved: use a LinearController, a "
        "NeuralController, or a controller loaded from an ONNX or TorchScript file"
    )


def controller_from_dict(data: dict, system: System, directory: Path):
    """The controller of a certificate record (hashes checked)."""
    from lyapcert.certificates.network import weights_digest
    from lyapcert.control.imported import load_controller
    from lyapcert.control.linear import LinearController
    from lyapcert.control.neural import NeuralController

    family = data.get("family") if isinstance(data, dict) else None
    try:
        if family == "linear":
            return LinearController(**{k: v for k, v in data.items() if k != "family"})
        if family == "neural":
            path = Path(directory) / data.get("weights", "controller.pt")
            k = NeuralController(**data["architecture"])
            k.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            if weights_digest(k) != data.get("weights_sha256"):
                raise CertificateFileError(f"{path}: the controller weights do not match the hash")
            return k
        if family in ("onnx", "torchscript"):
            k = load_controller(read_source(data, directory, "controller"), system)
            if source_digest(k) != data.get("sha256"):  # the bytes converted are the ones hashed
                raise CertificateFileError("the controller file does not match the hash")
            return k
    except (OSError, RuntimeError, TypeError, KeyError, ControllerError) as exc:
        raise CertificateFileError(f"controller: cannot rebuild it: {exc}") from None
    raise CertificateFileError(
        f"controller: unknown family {family!r}; expected linear, neural, onnx or torchscript"
    )
