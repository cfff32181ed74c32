"""Model files beside a certificate: written from the bytes that were converted, read back only
when their sha256 matches the certificate's record (controllers and candidates alike)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from lyapcert.errors import CertificateFileError
from lyapcert.fileio import atomic_target


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_digest(model) -> str | None:
    """The sha256 of the file a model was read from (the bytes converted, ``source_bytes``, when
    the importer kept them), or ``None`` for a model not read from a file."""
    data = getattr(model, "source_bytes", None)
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    source = getattr(model, "source_file", None)
    return None if source is None else _file_digest(source)


def write_source(model, directory: Path, stem: str) -> dict:
    """Write the file ``model`` was read from into ``directory`` as ``STEM.SUFFIX`` (the bytes
    that were converted); returns ``{"family": "onnx" | "torchscript", "file", "sha256"}``."""
    source = Path(model.source_file)
    suffix = source.suffix.lower()
    family = "onnx" if suffix == ".onnx" else "torchscript"
    name = f"{stem}{suffix}"
    data = getattr(model, "source_bytes", None)
    with atomic_target(directory / name) as tmp:
        if data is None:
            shutil.copyfile(source, tmp)
        else:
            tmp.write_bytes(data)
    return {"family": family, "file": name, "sha256": _file_digest(directory / name)}


def read_source(data: dict, directory: Path, what: str) -> Path:
    """The path of a saved model file (``{"file", "sha256"}``), refused with a
    ``CertificateFileError`` when missing or when its bytes do not match the hash."""
    name = data.get("file") if isinstance(data, dict) else None
    if not isinstance(name, str) or Path(name).name != name or not name:
        raise CertificateFileError(
            f"{what}: expected a file name beside the certificate, got {name!r}"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise CertificateFileError(f"{path}: the {what} file is missing")
    if _file_digest(path) != data.get("sha256"):
        raise CertificateFileError(f"{path}: the {what} file does not match the certificate's hash")
    return path
