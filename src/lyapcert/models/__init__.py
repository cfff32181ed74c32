"""Models read from files (ONNX, TorchScript), converted op by op into float64 torch modules the
bound engine can bound; one importer for controllers (``control.imported``) and candidates
(``certificates.imported``)."""

from lyapcert.models.imported import (
    MODEL_SUFFIXES,
    ONNX_SUFFIXES,
    TORCHSCRIPT_SUFFIXES,
    OnnxModel,
    TorchScriptModel,
    check_matches_file,
    read_model,
)

__all__ = [
    "MODEL_SUFFIXES",
    "ONNX_SUFFIXES",
    "TORCHSCRIPT_SUFFIXES",
    "OnnxModel",
    "TorchScriptModel",
    "check_matches_file",
    "read_model",
]
