"""Controllers a user brings in ONNX or TorchScript files: read by the shared model importer
(``lyapcert.models``: converted op by op, never rebuilt from layer names), clamped to the system's
input bounds, and checked (``check_controller``) before use. Every refusal is a
``ControllerError``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.control.checks import check_controller
from lyapcert.control.saturation import register_bounds
from lyapcert.errors import ControllerError
from lyapcert.models import imported as _models
from lyapcert.models.imported import EXACT_CHECK_POINTS, read_model
from lyapcert.systems.system import System


class OnnxController(_models.OnnxModel):
    """``models.OnnxModel`` whose refusals are ``ControllerError``s."""

    def __init__(self, model, source: str = "ONNX model"):
        super().__init__(model, source, error=ControllerError)


class TorchScriptController(_models.TorchScriptModel):
    """``models.TorchScriptModel`` whose refusals are ``ControllerError``s."""

    def __init__(self, scripted, source: str = "TorchScript model"):
        super().__init__(scripted, source, error=ControllerError)


def check_matches_file(
    built: torch.nn.Module,
    reference,
    system: System,
    source: str,
    n_points: int = EXACT_CHECK_POINTS,
) -> None:
    """``models.check_matches_file`` refusing with a ``ControllerError``."""
    _models.check_matches_file(built, reference, system, source, n_points, error=ControllerError)


class Saturated(torch.nn.Module):
    """``clamp(inner(x), lower, upper)``: an imported controller held to the input bounds."""

    def __init__(self, inner: torch.nn.Module, lower, upper):
        super().__init__()
        self.inner = inner
        register_bounds(self, lower, upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.inner(x), self.lower, self.upper)


def load_controller(path: str | Path, system: SystemLike) -> torch.nn.Module:
    """The controller in ``path`` (``.onnx``, or TorchScript ``.pt``/``.pth``/``.ts``), clamped to
    the system's input bounds and checked (shape, ``u*`` at ``x*``)."""
    system = as_system(system)
    module = read_model(path, system, what="controller", error=ControllerError)
    source_file, source_bytes = module.source_file, module.source_bytes
    if system.input_bounds is not None:
        module = Saturated(module, system.input_bounds.lower, system.input_bounds.upper)
    check_controller(module, system, str(source_file))
    # saved beside a certificate, by content hash: the bytes that were converted
    module.source_file, module.source_bytes = source_file, source_bytes
    return module
