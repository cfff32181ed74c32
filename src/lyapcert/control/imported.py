"""Controllers a user brings: ONNX files (read with the ``onnx`` package and converted by our own
code, below) and TorchScript files (``torch.jit.load``; rebuilt from their layers).

The result is a plain ``torch.nn.Module`` made of operations the bound engine knows, wrapped so
that its output is clamped to the system's input bounds, and checked (``check_controller``) before
use. Anything else is refused with the list of what is not supported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lyapcert.control.checks import check_controller
from lyapcert.control.saturation import register_bounds
from lyapcert.errors import ControllerError
from lyapcert.systems.system import System

ONNX_OPERATIONS = (
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Clip",
    "Min",
    "Max",
    "Identity",
    "Flatten",
    "Constant",
)
TORCHSCRIPT_LAYERS = ("Sequential", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus")


class OnnxController(torch.nn.Module):
    """An ONNX graph (one input ``[batch, n]``, one output ``[batch, m]``) as torch operations.

    Constant tensors (initializers, ``Constant`` nodes) become float64 buffers; ``Gemm`` folds
    ``alpha``, ``beta`` and the transposes into a weight and a bias for ``F.linear``.
    """

    def __init__(self, model, source: str = "ONNX model"):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        consts: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        unsupported = sorted(
            {node.op_type for node in graph.node if node.op_type not in ONNX_OPERATIONS}
        )
        if unsupported:
            raise ControllerError(
                f"{source}: unsupported ONNX operation(s) {', '.join(unsupported)}; supported: "
                f"{', '.join(ONNX_OPERATIONS)}"
            )
        inputs = [i.name for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ControllerError(
                f"{source}: expected one input (the state) and one output (the input u), got "
                f"{len(inputs)} inputs and {len(graph.output)} outputs"
            )
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        self._names: dict[str, str] = {}
        self.steps: list[tuple[str, list[str], str, dict]] = []
        for node in graph.node:
            attrs = {a.name: _attribute(a) for a in node.attribute}
            if node.op_type == "Constant":
                consts[node.output[0]] = np.asarray(attrs["value"])
                continue
            args = [name for name in node.input if name]
            if node.op_type == "Gemm":
                args, attrs = self._fold_gemm(node, args, attrs, consts, source)
            self.steps.append((node.op_type, args, node.output[0], attrs))
        for name, value in consts.items():
            self._constant(name, value)

    def _constant(self, name: str, value) -> str:
        attr = f"c{len(self._names)}"
        self.register_buffer(attr, torch.tensor(np.array(value, dtype=np.float64)))
        self._names[name] = attr
        return attr

    def _fold_gemm(self, node, args, attrs, consts, source):
        if attrs.get("transA", 0) or args[1] not in consts:
            raise ControllerError(
                f"{source}: Gemm node {node.name!r} needs a constant weight and transA = 0"
            )
        w = float(attrs.get("alpha", 1.0)) * np.asarray(consts[args[1]], dtype=np.float64)
        w = w if attrs.get("transB", 0) else w.T  # F.linear wants [out, in]
        folded = [args[0], f"{node.output[0]}::weight"]
        consts[folded[1]] = w
        if len(args) > 2:
            if args[2] not in consts:
                raise ControllerError(f"{source}: Gemm node {node.name!r} needs a constant bias")
            consts[f"{node.output[0]}::bias"] = float(attrs.get("beta", 1.0)) * np.asarray(
                consts[args[2]], dtype=np.float64
            )
            folded.append(f"{node.output[0]}::bias")
        return folded, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}

        def value(name):
            return env[name] if name in env else getattr(self, self._names[name])

        for op, args, out, attrs in self.steps:
            a = [value(name) for name in args]
            env[out] = _apply(op, a, attrs)
        return env[self.output_name]


def _attribute(attr):
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if hasattr(value, "dims"):  # a TensorProto
        return numpy_helper.to_array(value)
    return value


def _apply(op: str, a: list, attrs: dict):
    if op == "Gemm":
        return F.linear(a[0], a[1], a[2] if len(a) > 2 else None)
    if op == "MatMul":
        return torch.matmul(a[0], a[1])
    if op == "Add":
        return a[0] + a[1]
    if op == "Sub":
        return a[0] - a[1]
    if op == "Mul":
        return a[0] * a[1]
    if op == "Div":
        return a[0] / a[1]
    if op == "Neg":
        return -a[0]
    if op == "Relu":
        return torch.relu(a[0])
    if op == "LeakyRelu":
        return F.leaky_relu(a[0], float(attrs.get("alpha", 0.01)))
    if op == "Tanh":
        return torch.tanh(a[0])
    if op == "Sigmoid":
        return torch.sigmoid(a[0])
    if op == "Softplus":
        return F.softplus(a[0])
    if op == "Clip":
        low = a[1] if len(a) > 1 else attrs.get("min")
        high = a[2] if len(a) > 2 else attrs.get("max")
        out = a[0]
        if low is not None:
            out = torch.maximum(out, torch.as_tensor(low, dtype=torch.float64))
        if high is not None:
            out = torch.minimum(out, torch.as_tensor(high, dtype=torch.float64))
        return out
    if op in ("Min", "Max"):
        fn = torch.minimum if op == "Min" else torch.maximum
        out = a[0]
        for other in a[1:]:
            out = fn(out, other)
        return out
    if op == "Identity":
        return a[0]
    if op == "Flatten":
        return torch.flatten(a[0], int(attrs.get("axis", 1)))
    raise ControllerError(f"unsupported ONNX operation {op}")  # pragma: no cover - checked above


class Saturated(torch.nn.Module):
    """``clamp(inner(x), lower, upper)``: an imported controller held to the input bounds."""

    def __init__(self, inner: torch.nn.Module, lower, upper):
        super().__init__()
        self.inner = inner
        register_bounds(self, lower, upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.inner(x), self.lower, self.upper)


def rebuild_torchscript(module, source: str = "TorchScript model") -> torch.nn.Module:
    """A plain module from a loaded TorchScript ``Sequential`` of supported layers."""
    kind = getattr(module, "original_name", type(module).__name__)
    if kind == "Sequential":
        return torch.nn.Sequential(*[rebuild_torchscript(c, source) for c in module.children()])
    if kind == "Linear":
        w = module.weight.detach().double()
        bias = getattr(module, "bias", None)
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None).double()
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias is not None:
                layer.bias.copy_(bias.detach().double())
        return layer
    simple = {"ReLU": torch.nn.ReLU, "Tanh": torch.nn.Tanh, "Sigmoid": torch.nn.Sigmoid}
    if kind in simple:
        return simple[kind]()
    if kind == "LeakyReLU":
        return torch.nn.LeakyReLU(float(getattr(module, "negative_slope", 0.01)))
    if kind == "Softplus":
        return torch.nn.Softplus(float(getattr(module, "beta", 1.0)))
    raise ControllerError(
        f"{source}: the TorchScript layer {kind!r} is not supported (its code cannot be bounded); "
        f"supported: {', '.join(TORCHSCRIPT_LAYERS)}. Export the controller to ONNX instead, or "
        "save a Sequential of those layers"
    )


def load_controller(path: str | Path, system: System) -> torch.nn.Module:
    """The controller in ``path`` (``.onnx``, or TorchScript ``.pt``/``.pth``/``.ts``), clamped to
    the system's input bounds and checked (shape, ``u*`` at ``x*``)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ControllerError(f"{source}: no such controller file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
        except Exception as exc:
            raise ControllerError(f"{source}: not a valid ONNX model ({exc})") from None
        module: torch.nn.Module = OnnxController(model, source)
    elif suffix in (".pt", ".pth", ".ts", ".torchscript"):
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ControllerError(
                f"{source}: not a TorchScript model ({type(exc).__name__}); save the controller "
                "with torch.jit.script(model).save(path) or export it to ONNX"
            ) from None
        module = rebuild_torchscript(scripted, source)
    else:
        raise ControllerError(
            f"{source}: unknown controller file type {suffix or '(none)'}; expected .onnx or a "
            "TorchScript file (.pt, .pth, .ts)"
        )
    module = module.double().eval()
    if system.input_bounds is not None:
        module = Saturated(module, system.input_bounds.lower, system.input_bounds.upper)
    check_controller(module, system, source)
    module.source_file = path  # saved beside a certificate, by content hash
    return module
