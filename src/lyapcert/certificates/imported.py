"""Candidates ``V`` from files and modules; ``load_candidate`` is the one way to load one.

A file (ONNX ``.onnx``, TorchScript ``.pt``/``.pth``/``.ts``) is read by the same importer as a
controller file (``lyapcert.models``: converted op by op, TorchScript checked against the file's
own evaluation on 10^4 points of the box, unsupported operations all named in one error). Its
output ``[batch, 1]`` becomes ``[batch]``. In ``certificate.json`` such a candidate is
``{"family": "onnx" | "torchscript", "file": "candidate.onnx", "sha256": ...}``, the file copied
beside the certificate (the bytes that were converted) and checked against the hash on loading.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.certificates.candidates import Candidate, ExpressionCandidate, NetworkCandidate
from lyapcert.errors import ModelFileError, VerificationError
from lyapcert.models.imported import MODEL_SUFFIXES, ONNX_SUFFIXES, read_model
from lyapcert.systems.system import System

CANDIDATE_STEM = "candidate"
FILE_FAMILIES = ("onnx", "torchscript")


class ScalarOutput(torch.nn.Module):
    """``inner(x)[:, 0]``: a network ``V`` with output ``[batch, 1]`` as ``[batch]``."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[:, 0]


class FileCandidate(NetworkCandidate):
    """``V`` read from an ONNX or TorchScript file (``load_candidate``): a network candidate that
    remembers the bytes it was converted from, to save them beside a certificate."""

    def __init__(self, module: torch.nn.Module, source_file: str | Path, source_bytes: bytes):
        super().__init__(module)
        self.source_file = Path(source_file)
        self.source_bytes = source_bytes
        self.suffix = self.source_file.suffix.lower()
        self.family = "onnx" if self.suffix in ONNX_SUFFIXES else "torchscript"
        self.sha256 = hashlib.sha256(source_bytes).hexdigest()

    def describe(self) -> str:
        return f"V from {self.source_file.name} ({self.family}, sha256 {self.sha256[:12]})"

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "file": f"{CANDIDATE_STEM}{self.suffix}",
            "sha256": self.sha256,
        }


def is_model_file(source: str | Path) -> bool:
    """Whether ``source`` names a model file rather than an expression: an existing file, or a
    name ending in ``.onnx``, ``.pt``, ``.pth``, ``.ts`` or ``.torchscript`` (an expression
    never does)."""
    try:
        path = Path(source)
        return path.suffix.lower() in MODEL_SUFFIXES or path.is_file()
    except (OSError, ValueError):
        return False


def load_candidate(source, system: SystemLike) -> Candidate:
    """The candidate ``V`` of ``system`` given as

    * the name of one of the system's ready candidates (``system.candidates``, e.g. ``"energy"``)
      or an expression in the state names (``"0.5*x2**2 + 1 - cos(x1)"``):
      ``ExpressionCandidate``;
    * a path to an ONNX file (``.onnx``) or a TorchScript file (``.pt``, ``.pth``, ``.ts``):
      ``FileCandidate``, imported exactly (``ModelFileError`` otherwise: a missing file, an
      unknown suffix, unsupported operations, more than one output);
    * a ``torch.nn.Module`` ``[batch, n] -> [batch]`` or ``[batch, 1]``: ``NetworkCandidate``
      (``VerificationError`` for any other output shape);
    * a ``Candidate``: itself.

    A string is a file when it names an existing file or ends in one of those suffixes."""
    system = as_system(system)
    if isinstance(source, Candidate):
        return source
    if isinstance(source, torch.nn.Module):
        return NetworkCandidate(scalar_module(source, system, "candidate", VerificationError))
    if isinstance(source, Path) or (isinstance(source, str) and is_model_file(source)):
        return _file_candidate(source, system)
    if isinstance(source, str):
        named = system.candidates.get(source.strip())
        return ExpressionCandidate(named if named is not None else source, system)
    raise VerificationError(
        "candidate: expected an expression, an ONNX or TorchScript file (.onnx, .pt, .pth, .ts) "
        f"or a torch.nn.Module, got {type(source).__name__}"
    )


def _file_candidate(path: str | Path, system: System) -> FileCandidate:
    module = read_model(path, system, what="candidate", error=ModelFileError)
    scalar = scalar_module(module, system, str(path), ModelFileError)
    return FileCandidate(scalar, module.source_file, module.source_bytes)


def scalar_module(module: torch.nn.Module, system: System, source: str, error) -> torch.nn.Module:
    """``module`` (float64, eval mode) if it maps ``[batch, n]`` to ``[batch]``, wrapped in
    ``ScalarOutput`` if to ``[batch, 1]``; refused with ``error`` otherwise, or when ``V(x*)`` is
    not a finite number."""
    module = module.double().eval()
    n = system.n_states
    lo, hi = system.domain.as_tensors()
    x = torch.cat(
        [system.equilibrium_tensor().reshape(1, n), lo.reshape(1, n), hi.reshape(1, n)]
    ).to(torch.float64)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:
        raise error(
            f"{source}: cannot evaluate V on a batch of states [batch, {n}] in float64 "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise error(f"{source}: V returned a {type(out).__name__}, expected a tensor")
    shape = list(out.shape)
    if shape == [3, 1]:
        module = ScalarOutput(module)
    elif shape != [3]:
        got = ", ".join(["batch", *map(str, shape[1:])])
        raise error(
            f"{source}: V must give one number per state, [batch] or [batch, 1]; got "
            f"[{got}] for a batch of states [batch, {n}]"
        )
    if not bool(torch.isfinite(out.reshape(-1)[0])):
        raise error(f"{source}: V(x*) = {float(out.reshape(-1)[0])} is not a finite number")
    return module
