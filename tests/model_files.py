"""Writing test models to ONNX and TorchScript files (shared by the tests that import them)."""

import warnings
from pathlib import Path

import torch


def export_model(module: torch.nn.Module, path: Path, n: int = 2, outputs=("V",)) -> Path:
    """Write ``module`` (``[batch, n]`` inputs named ``x``) to ``path``: ONNX for ``.onnx`` (the
    legacy exporter, dynamic batch, outputs named ``outputs``), else TorchScript."""
    module = module.double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Path(path).suffix == ".onnx":
            torch.onnx.export(
                module,
                (torch.zeros(1, n, dtype=torch.float64),),
                str(path),
                dynamo=False,
                input_names=["x"],
                output_names=list(outputs),
                dynamic_axes={"x": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            )
        else:
            torch.jit.script(module).save(str(path))
    return path
