"""Models a user brings in files, for controllers and candidates alike: ONNX files (read with the
``onnx`` package and converted by our own code, below) and TorchScript files (``torch.jit.load``;
their inlined graph interpreted op by op, never rebuilt from layer names).

``read_model`` turns a file into a plain float64 ``torch.nn.Module`` made of operations the bound
engine knows (a TorchScript file is also checked against its own evaluation on 10^4 points of the
box); anything else is refused with the list of what is not supported, all at once. What the model
is for (a controller clamped to the input bounds: ``control.imported``; a candidate ``V``:
``certificates.imported``) is its caller's business. Errors are raised as ``error`` (a
``ModelFileError`` unless the caller names its own class).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lyapcert.bounds.graph import softplus_exact
from lyapcert.errors import ModelFileError
from lyapcert.systems.system import System

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
MODEL_SUFFIXES = ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES

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
    "Elu",
    "Clip",
    "Min",
    "Max",
    "Identity",
    "Flatten",
    "Constant",
)


class OnnxModel(torch.nn.Module):
    """An ONNX graph (one input ``[batch, n]``, one output ``[batch, m]``) as torch operations.

    Constant tensors (initializers, ``Constant`` nodes) become float64 buffers; ``Gemm`` folds
    ``alpha``, ``beta`` and the transposes into a weight and a bias for ``F.linear``. Whatever
    cannot be converted exactly is refused with ``error``.
    """

    def __init__(self, model, source: str = "ONNX model", error: type[Exception] = ModelFileError):
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
            raise error(
                f"{source}: unsupported ONNX operation(s) {', '.join(unsupported)}; supported: "
                f"{', '.join(ONNX_OPERATIONS)}"
            )
        inputs = [i.name for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise error(
                f"{source}: expected one input (the state) and one output, got "
                f"{len(inputs)} inputs and {len(graph.output)} outputs"
            )
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        self._names: dict[str, str] = {}
        self.steps: list[tuple[str, list[str], str, dict]] = []
        for node in graph.node:
            attrs = {a.name: _attribute(a) for a in node.attribute}
            if node.op_type == "Constant":
                consts[node.output[0]] = _constant_value(node, attrs, source, error)
                continue
            _check_attributes(node, attrs, source, error)
            args = list(node.input)  # "" marks an omitted optional input (Clip's min, ...)
            if node.op_type == "Gemm":
                args, attrs = self._fold_gemm(node, args, attrs, consts, source, error)
            self.steps.append((node.op_type, args, node.output[0], attrs))
        for name, value in consts.items():
            self._constant(name, value)

    def _constant(self, name: str, value) -> str:
        attr = f"c{len(self._names)}"
        self.register_buffer(attr, torch.tensor(np.array(value, dtype=np.float64)))
        self._names[name] = attr
        return attr

    def _fold_gemm(self, node, args, attrs, consts, source, error):
        if attrs.get("transA", 0) or args[1] not in consts:
            raise error(f"{source}: Gemm node {node.name!r} needs a constant weight and transA = 0")
        w = float(attrs.get("alpha", 1.0)) * np.asarray(consts[args[1]], dtype=np.float64)
        w = w if attrs.get("transB", 0) else w.T  # F.linear wants [out, in]
        folded = [args[0], f"{node.output[0]}::weight"]
        consts[folded[1]] = w
        if len(args) > 2 and args[2]:
            if args[2] not in consts:
                raise error(f"{source}: Gemm node {node.name!r} needs a constant bias")
            c = np.asarray(consts[args[2]], dtype=np.float64)
            n_out = w.shape[0]
            if c.size == 1:
                c = np.full(n_out, c.reshape(-1)[0])
            elif c.shape in ((n_out,), (1, n_out)):
                c = c.reshape(n_out)
            else:
                raise error(
                    f"{source}: Gemm node {node.name!r}: bias of shape {c.shape} for {n_out} outputs"
                )
            consts[f"{node.output[0]}::bias"] = float(attrs.get("beta", 1.0)) * c
            folded.append(f"{node.output[0]}::bias")
        return folded, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}

        def value(name):
            if not name:
                return None
            return env[name] if name in env else getattr(self, self._names[name])

        for op, args, out, attrs in self.steps:
            a = [value(name) for name in args]
            env[out] = _apply(op, a, attrs)
        return env[self.output_name]


CONSTANT_FORMS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def _constant_value(node, attrs: dict, source: str, error=ModelFileError) -> np.ndarray:
    """The tensor of a ``Constant`` node, in each of its numeric attribute forms."""
    forms = [name for name in attrs if name in CONSTANT_FORMS]
    others = sorted(set(attrs) - set(CONSTANT_FORMS))
    if others or len(forms) != 1:
        raise error(
            f"{source}: Constant node {node.name!r} with attribute(s) "
            f"{', '.join(sorted(attrs)) or '(none)'}; supported: exactly one of "
            f"{', '.join(CONSTANT_FORMS)} (strings and sparse tensors are not numbers we can bound)"
        )
    value = attrs[forms[0]]
    if forms[0] in ("value_floats", "value_ints"):
        return np.asarray(list(value), dtype=np.float64)
    if forms[0] == "value" and not np.issubdtype(np.asarray(value).dtype, np.number):
        raise error(f"{source}: Constant node {node.name!r} holds a non-numeric tensor")
    return np.asarray(value, dtype=np.float64)


def _check_attributes(node, attrs: dict, source: str, error=ModelFileError) -> None:
    """Refuse attribute values whose semantics our torch operations do not reproduce."""
    op = node.op_type
    bad = None
    if op == "LeakyRelu" and not float(attrs.get("alpha", 0.01)) >= 0:
        bad = f"alpha = {attrs['alpha']} (expected >= 0)"
    elif op == "Flatten" and int(attrs.get("axis", 1)) != 1:
        bad = f"axis = {attrs['axis']} (only axis = 1, [batch, features], is supported)"
    elif op == "Elu" and not float(attrs.get("alpha", 1.0)) >= 0:
        bad = f"alpha = {attrs['alpha']} (expected >= 0)"
    if bad:
        raise error(f"{source}: {op} node {node.name!r} with {bad}")


def _attribute(attr):
    from onnx import TensorProto, helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, TensorProto):  # (a sparse tensor stays as it is: refused where used)
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
    if op == "Softplus":  # ONNX: log(exp(x) + 1), no threshold (unlike torch's softplus)
        return softplus_exact(a[0])
    if op == "Elu":
        return F.elu(a[0], float(attrs.get("alpha", 1.0)))
    if op == "Clip":
        low = a[1] if len(a) > 1 else attrs.get("min")  # None: an omitted input
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
    raise ModelFileError(f"unsupported ONNX operation {op}")  # pragma: no cover - checked above


# ------------------------------------------------------------------------------ TorchScript
# The inlined TorchScript graph is interpreted op by op: each ``aten::`` op becomes the torch
# function our bound engine captures, with the constant arguments the file holds (Softplus'
# beta and threshold, LeakyReLU's slope, ...), and the parameters are read from the module's
# attributes. Nothing is rebuilt from layer names.

_STATE = object()  # marks an argument that depends on the state (unknown when importing)


def _scalar(v) -> bool:
    return isinstance(v, (bool, int, float)) or v is None


def _need(cond: bool, reason: str):
    return None if cond else reason


def _pos(args, i, default=None):
    return args[i] if len(args) > i else default


def _check_const(*idx):
    def check(args):
        for i in idx:
            if i < len(args) and args[i] is _STATE:
                return f"a state-dependent argument {i} (only constants are supported there)"
        return None

    return check


def _ts_add(a, b, alpha=1):
    return torch.add(a, b, alpha=alpha) if alpha != 1 else a + b


def _ts_sub(a, b, alpha=1):
    return torch.sub(a, b, alpha=alpha) if alpha != 1 else a - b


def _ts_rsub(a, b, alpha=1):
    return _ts_sub(b, a, alpha)


def _ts_div(a, b, rounding_mode=None):
    return a / b


def _ts_addmm(bias, m1, m2, beta=1, alpha=1):
    out = torch.matmul(m1, m2)
    if alpha != 1:
        out = out * alpha
    return out + (bias if beta == 1 else bias * beta)


def _ts_clamp(x, lo=None, hi=None):
    return torch.clamp(x, lo, hi)


def _ts_dropout(x, p, train):
    return x


def _ts_elu(x, alpha=1.0, scale=1, input_scale=1):
    return F.elu(x, float(alpha))


def _ts_sum(x, dim=None, keepdim=False, dtype=None):
    return torch.sum(x) if dim is None else torch.sum(x, dim, keepdim)


def _ts_slice(x, dim=0, start=None, end=None, step=1):
    return x[(slice(None),) * dim + (slice(start, end, step),)]


def _ts_select(x, dim, index):
    return x[(slice(None),) * dim + (index,)]


def _like_check(args):
    dtype = _pos(args, 1)
    if dtype is not None and dtype != 7:  # 7: torch.float64 as a ScalarType number
        return f"dtype {dtype!r} (only float64 or the input's)"
    return None


def _number_check(i, name, ok, expected):
    def check(args):
        v = _pos(args, i)
        if v is _STATE or not _scalar(v) or v is None or not ok(float(v)):
            return f"{name} = {v!r} (expected {expected})"
        return None

    return check


def _all(*checks):
    def check(args):
        for c in checks:
            reason = c(args)
            if reason:
                return reason
        return None

    return check


def _elu_check(args):
    if any(_pos(args, i, 1) is _STATE or float(_pos(args, i, 1)) != 1.0 for i in (2, 3)):
        return "elu with scale or input_scale other than 1"
    return _number_check(1, "alpha", lambda a: a >= 0, ">= 0")(args)


def _hardtanh_check(args):
    lo, hi = _pos(args, 1, -1.0), _pos(args, 2, 1.0)
    if lo is _STATE or hi is _STATE or not float(lo) <= float(hi):
        return f"hardtanh with bounds ({lo!r}, {hi!r})"
    return None


def _dropout_check(args):
    if _pos(args, 2) is not False:
        return "dropout in training mode (call .eval() before saving the model)"
    return None


def _div_check(args):
    mode = _pos(args, 2)
    return None if mode is None else f"div with rounding_mode={mode!r}"


# aten op -> (function of the op's positional arguments, check of its constant arguments)
TORCHSCRIPT_OPS: dict[str, tuple] = {
    "aten::linear": (lambda x, w, b=None: F.linear(x, w, b), _check_const(1, 2)),
    "aten::addmm": (_ts_addmm, _check_const(0, 2, 3, 4)),
    "aten::matmul": (torch.matmul, _check_const(1)),
    "aten::mm": (torch.matmul, _check_const(1)),
    "aten::add": (_ts_add, _check_const(2)),
    "aten::sub": (_ts_sub, _check_const(2)),
    "aten::rsub": (_ts_rsub, _check_const(2)),
    "aten::mul": (lambda a, b: a * b, None),
    "aten::div": (_ts_div, _div_check),
    "aten::neg": (lambda a: -a, None),
    "aten::tanh": (torch.tanh, None),
    "aten::sigmoid": (torch.sigmoid, None),
    "aten::relu": (torch.relu, None),
    "aten::exp": (torch.exp, None),
    "aten::sin": (torch.sin, None),
    "aten::cos": (torch.cos, None),
    "aten::atan": (torch.atan, None),
    "aten::abs": (torch.abs, None),
    "aten::square": (torch.square, None),
    "aten::pow": (lambda a, e: a**e, _number_check(1, "exponent", lambda e: True, "a number")),
    "aten::leaky_relu": (
        lambda x, slope=0.01: F.leaky_relu(x, float(slope)),
        _number_check(1, "negative_slope", lambda a: a >= 0, ">= 0"),
    ),
    "aten::softplus": (
        lambda x, beta=1.0, threshold=20.0: F.softplus(x, float(beta), float(threshold)),
        _all(
            _number_check(1, "beta", lambda b: b > 0, "> 0"),
            _number_check(2, "threshold", lambda t: t == t, "a number"),
        ),
    ),
    "aten::hardtanh": (
        lambda x, lo=-1.0, hi=1.0: F.hardtanh(x, float(lo), float(hi)),
        _hardtanh_check,
    ),
    "aten::relu6": (F.relu6, None),
    "aten::elu": (_ts_elu, _elu_check),
    "aten::silu": (F.silu, None),
    "aten::clamp": (_ts_clamp, _check_const(1, 2)),
    "aten::minimum": (torch.minimum, None),
    "aten::maximum": (torch.maximum, None),
    "aten::dropout": (_ts_dropout, _dropout_check),
    "aten::flatten": (lambda x, start=0, end=-1: torch.flatten(x, start, end), _check_const(1, 2)),
    "aten::sum": (_ts_sum, _check_const(1, 2, 3)),
    "aten::slice": (_ts_slice, _check_const(1, 2, 3, 4)),
    "aten::select": (_ts_select, _check_const(1, 2)),
    "aten::cat": (lambda xs, dim=0: torch.cat(xs, dim), _check_const(1)),
    "aten::stack": (lambda xs, dim=0: torch.stack(xs, dim), _check_const(1)),
    "aten::zeros_like": (lambda x, *rest: torch.zeros_like(x), _like_check),
    "aten::ones_like": (lambda x, *rest: torch.ones_like(x), _like_check),
}
_IDENTITY_OPS = ("aten::contiguous", "aten::detach", "aten::clone")
# ops folded when all their inputs are constants (run in float64 at import)
_FOLD_OPS = {
    "aten::t": lambda a: a.t(),
    "aten::numpy_T": lambda a: a.T,
    "aten::transpose": lambda a, i, j: a.transpose(i, j),
    "aten::permute": lambda a, dims: a.permute(*dims),
    "aten::reshape": lambda a, shape: a.reshape(shape),
    "aten::view": lambda a, shape: a.reshape(shape),
    "aten::unsqueeze": lambda a, d: a.unsqueeze(d),
    "aten::squeeze": lambda a, *d: a.squeeze(*d),
}


class _Unsupported(Exception):
    pass


class _Poisoned(Exception):
    """An input comes from an op already reported as unsupported (not reported again)."""


class TorchScriptModel(torch.nn.Module):
    """A TorchScript module as the function its (inlined) graph computes, op by op in float64.

    Each ``aten::`` op of the graph becomes one step (a torch function the bound engine has a
    rule for) with the constant arguments read from the file; parameters and buffers come from
    the module's attributes; ``prim::If`` on a constant condition (``if self.flag:``) takes its
    branch. Anything else (state-dependent control flow, unknown ops) is refused, all at once,
    with ``error``.
    """

    def __init__(
        self, scripted, source: str = "TorchScript model", error: type[Exception] = ModelFileError
    ):
        super().__init__()
        self.source = source
        graph = scripted.inlined_graph
        inputs = list(graph.inputs())
        if len(inputs) != 2:
            raise error(
                f"{source}: expected forward(self, x) with one input (the state), got "
                f"{len(inputs) - 1} inputs"
            )
        self._consts: dict[int, object] = {inputs[0].unique(): scripted}
        self._state_values: set[int] = {inputs[1].unique()}
        self.input_key = inputs[1].unique()
        self.steps: list[tuple] = []
        self._n_buffers = 0
        problems: list[str] = []
        self._walk(graph.nodes(), problems)
        outputs = list(graph.outputs())
        if len(outputs) != 1:
            problems.append(f"{len(outputs)} outputs (expected one tensor)")
        if problems:
            listed = "; ".join(sorted(set(problems)))
            raise error(
                f"{source}: the TorchScript model cannot be imported exactly: {listed}. "
                f"Supported ops: {', '.join(sorted(TORCHSCRIPT_OPS))} and constant-only shape "
                "ops; control flow only on constants"
            )
        key = outputs[0].unique()
        if key not in self._state_values:
            raise error(f"{source}: the output does not depend on the state")
        self.output_key = key
        del self._consts, self._state_values  # import-time only (they hold the loaded module)

    # -------------------------------------------------------------- import

    def _arg(self, value):
        key = value.unique()
        if key in self._state_values:
            return _STATE
        if key not in self._consts:
            raise _Poisoned
        return self._consts[key]

    def _const_tensor(self, t: torch.Tensor):
        if not t.is_floating_point():
            return t.clone()
        name = f"c{self._n_buffers}"
        self._n_buffers += 1
        self.register_buffer(name, t.detach().to(torch.float64).clone())
        return _Buffer(name)

    def _walk(self, nodes, problems: list[str]) -> None:
        for node in nodes:
            kind = node.kind()
            try:
                self._node(node, kind, problems)
            except _Poisoned:  # its outputs stay unknown: every use is poisoned in turn
                if kind == "prim::If":
                    problems.append(f"prim::If{_where(node)}: a condition that is not a constant")
                _scan([node], problems)
            except _Unsupported as exc:
                where = _where(node)
                problems.append(f"{kind}{where}: {exc}" if str(exc) else f"{kind}{where}")

    def _node(self, node, kind: str, problems: list[str]) -> None:
        outs = list(node.outputs())
        if kind == "prim::Constant":
            value = outs[0].toIValue()
            if isinstance(value, torch.Tensor):
                value = self._const_tensor(value)
            self._consts[outs[0].unique()] = value
            return
        args = [self._arg(v) for v in node.inputs()]
        if kind == "prim::GetAttr":
            obj = args[0]
            if obj is _STATE:
                raise _Unsupported("attribute of the state")
            value = getattr(obj, node.s("name"))
            if isinstance(value, torch.Tensor):
                value = self._const_tensor(value)
            self._consts[outs[0].unique()] = value
            return
        if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            if any(a is _STATE for a in args):
                specs = self._specs(node, args)
                self.steps.append(("list", specs, outs[0].unique()))
                self._state_values.add(outs[0].unique())
            else:
                self._consts[outs[0].unique()] = list(args)
            return
        if kind == "prim::If":
            cond = args[0]
            if cond is _STATE or not isinstance(cond, bool):
                for block in node.blocks():
                    _scan(block.nodes(), problems)
                raise _Unsupported("a condition that depends on the state")
            block = list(node.blocks())[0 if cond else 1]
            self._walk(block.nodes(), problems)
            for out, inner in zip(outs, block.outputs(), strict=True):
                key = inner.unique()
                if key in self._state_values:
                    self.steps.append(("alias", [("ref", key)], out.unique()))
                    self._state_values.add(out.unique())
                elif key in self._consts:
                    self._consts[out.unique()] = self._consts[key]
                else:
                    raise _Poisoned
            return
        state = any(a is _STATE for a in args)
        if kind in _IDENTITY_OPS:
            key = node.inputsAt(0).unique()
            if state:
                self.steps.append(("alias", [("ref", key)], outs[0].unique()))
                self._state_values.add(outs[0].unique())
            else:
                self._consts[outs[0].unique()] = args[0]
            return
        if len(outs) != 1 or not kind.startswith("aten::"):
            raise _Unsupported("")
        if not state and kind in _FOLD_OPS:
            self._consts[outs[0].unique()] = self._fold(_FOLD_OPS[kind], args)
            return
        if kind not in TORCHSCRIPT_OPS:
            raise _Unsupported("")
        fn, check = TORCHSCRIPT_OPS[kind]
        if not state:
            self._consts[outs[0].unique()] = self._fold(fn, args)
            return
        reason = check(args) if check is not None else None
        if reason:
            raise _Unsupported(reason)
        self.steps.append((kind, self._specs(node, args), outs[0].unique()))
        self._state_values.add(outs[0].unique())

    @staticmethod
    def _specs(node, args) -> list:
        return [
            ("ref", v.unique()) if a is _STATE else ("const", a)
            for v, a in zip(node.inputs(), args, strict=True)
        ]

    def _fold(self, fn, args):
        plain = [getattr(self, a.name) if isinstance(a, _Buffer) else a for a in args]
        try:
            value = fn(*plain)
        except Exception as exc:
            raise _Unsupported(f"constant folding failed ({type(exc).__name__}: {exc})") from None
        if isinstance(value, torch.Tensor):
            return self._const_tensor(value)
        return value

    # -------------------------------------------------------------- evaluation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_key: x}
        for kind, specs, out in self.steps:
            args = [
                env[v] if tag == "ref" else (getattr(self, v.name) if isinstance(v, _Buffer) else v)
                for tag, v in specs
            ]
            if kind == "alias":
                env[out] = args[0]
            elif kind == "list":
                env[out] = list(args)
            else:
                env[out] = TORCHSCRIPT_OPS[kind][0](*args)
        return env[self.output_key]


_PRIM_OPS = frozenset(
    {"prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct", "prim::If"}
)


def _known(kind: str) -> bool:
    return (
        kind in TORCHSCRIPT_OPS or kind in _FOLD_OPS or kind in _IDENTITY_OPS or kind in _PRIM_OPS
    )


def _scan(nodes, problems: list[str]) -> None:
    """Report every op of ``nodes`` (and their blocks) that has no rule at all."""
    for node in nodes:
        if not _known(node.kind()):
            problems.append(f"{node.kind()}{_where(node)}")
        for block in node.blocks():
            _scan(block.nodes(), problems)


class _Buffer:
    """A float64 constant tensor of the imported model (a registered buffer)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _where(node) -> str:
    try:
        first = node.sourceRange().strip().splitlines()[0].strip()
    except Exception:  # pragma: no cover - depends on the torch build
        return ""
    return f" (at {first})" if first else ""


EXACT_CHECK_POINTS = 10_000
EXACT_CHECK_ULPS = 4


def check_matches_file(
    built: torch.nn.Module,
    reference,
    system: System,
    source: str,
    n_points: int = EXACT_CHECK_POINTS,
    error: type[Exception] = ModelFileError,
) -> None:
    """Refuse unless ``built`` and ``reference`` (the loaded file, run in float64) agree on
    ``n_points`` points of the box (x*, corners, deterministic random points) to within
    ``EXACT_CHECK_ULPS`` ulps of the output's scale. A second guard, never the proof."""
    lo, hi = system.domain.as_tensors()
    n = system.n_states
    pts = [system.equilibrium_tensor().reshape(1, n)]
    n_corners = min(2**n, 1024)
    bits = (torch.arange(n_corners).unsqueeze(1) >> torch.arange(n)) & 1
    pts.append(torch.where(bits.bool(), hi.reshape(1, n), lo.reshape(1, n)))
    gen = torch.Generator().manual_seed(12)
    rest = max(n_points - sum(p.shape[0] for p in pts), 0)
    pts.append(lo + torch.rand(rest, n, generator=gen, dtype=torch.float64) * (hi - lo))
    x = torch.cat(pts).to(torch.float64)
    try:
        with torch.no_grad():
            ours = built(x)
            theirs = reference(x)
    except Exception as exc:
        raise error(
            f"{source}: cannot evaluate the model on a batch of states in float64 "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(theirs, torch.Tensor) or theirs.shape != ours.shape:
        raise error(f"{source}: the file's output is not a tensor of shape {ours.shape}")
    theirs = theirs.to(torch.float64)
    both_nan = torch.isnan(ours) & torch.isnan(theirs)
    same = (ours == theirs) | both_nan
    scale = (
        float(theirs[torch.isfinite(theirs)].abs().max())
        if bool(torch.isfinite(theirs).any())
        else 0.0
    )
    tol = EXACT_CHECK_ULPS * 2.0**-52 * (theirs.abs() + scale)
    ok = same | ((ours - theirs).abs() <= tol)
    if not bool(ok.all()):
        i = int((~ok).any(dim=-1).nonzero()[0, 0]) if ok.ndim > 1 else int((~ok).nonzero()[0, 0])
        raise error(
            f"{source}: the imported function differs from the file's own evaluation at "
            f"x = {x[i].tolist()}: {ours[i].tolist()} instead of {theirs[i].tolist()}; refused "
            "(the import must be exactly the function the file computes)"
        )


def read_model(
    path: str | Path,
    system: System,
    *,
    what: str = "model",
    error: type[Exception] = ModelFileError,
) -> torch.nn.Module:
    """The model in ``path`` (``.onnx``, or TorchScript ``.pt``/``.pth``/``.ts``) as a float64
    module in eval mode, refused with ``error`` when it cannot be imported exactly (``what``
    names it in the messages: ``"controller"``, ``"candidate"``).

    The file is read once: the bytes converted are kept as ``module.source_bytes`` (with
    ``module.source_file``, its path), so what a certificate saves and hashes is exactly what was
    verified, whatever happens to the file afterwards."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise error(f"{source}: no such {what} file")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise error(
            f"{source}: unknown {what} file type {suffix or '(none)'}; expected .onnx or a "
            "TorchScript file (.pt, .pth, .ts)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{source}: cannot read the {what} file ({exc})") from None
    module = model_from_bytes(data, suffix, system, source=source, what=what, error=error)
    module.source_file = path
    module.source_bytes = data
    return module


def model_from_bytes(
    data: bytes,
    suffix: str,
    system: System,
    *,
    source: str = "model",
    what: str = "model",
    error: type[Exception] = ModelFileError,
) -> torch.nn.Module:
    """``read_model`` of a file's bytes (``suffix`` says its type)."""
    if suffix.lower() in ONNX_SUFFIXES:
        import onnx

        try:
            model = onnx.load_model_from_string(data)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise error(f"{source}: not a valid ONNX model ({exc})") from None
        module: torch.nn.Module = OnnxModel(model, source, error)
    elif suffix.lower() in TORCHSCRIPT_SUFFIXES:
        try:
            scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:
            raise error(
                f"{source}: not a TorchScript model ({type(exc).__name__}); save the {what} "
                "with torch.jit.script(model).save(path) or export it to ONNX"
            ) from None
        module = TorchScriptModel(scripted, source, error)
        check_matches_file(module, scripted.double().eval(), system, source, error=error)
    else:
        raise error(f"{source}: unknown {what} file type {suffix or '(none)'}")
    return module.double().eval()
