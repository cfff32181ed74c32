"""Capture a torch computation as a graph and evaluate it on bound values, one rule per operation.

``capture(fn, n_inputs)`` traces ``fn`` with ``torch.fx`` (modules are traced through, so
``nn.Linear`` becomes ``F.linear`` with its weights as constants). ``BoundGraph.evaluate`` runs the
graph on ``Interval`` or ``Dual`` inputs, mixing in exact constants. Every operation in the graph
must have a rule: ``capture`` reports all unsupported ones together in one ``UnsupportedOperationError``.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F

from lyapcert.bounds.dual import Dual, lift_like
from lyapcert.bounds.interval import Interval, softplus_smooth
from lyapcert.bounds.quadform import find_quadratic_forms
from lyapcert.errors import UnsupportedOperationError

Bound = Interval | Dual


def is_bound(x) -> bool:
    """An ``Interval``, a ``Dual``, or a bound value with rules of its own (``own_rules``:
    ``Affine``, ``Jet2``; each has ``constant(value, space)``, ``hull_const``, ``.lo``, ``.hi``,
    and ``Interval``'s operators defer to it)."""
    return isinstance(x, (Interval, Dual)) or getattr(x, "own_rules", False)


def _cls(x):
    if isinstance(x, Dual):
        return Dual
    return type(x) if getattr(x, "own_rules", False) else Interval


# ------------------------------------------------------------------------------- rules
# Each rule takes the evaluated args/kwargs (bound values, tensors, numbers) and returns a value.


def _add(a, b=None, *, alpha=1):
    if alpha != 1:
        b = b * alpha
    if is_bound(a):
        return a + b
    return b + a


def _sub(a, b, *, alpha=1):
    if alpha != 1:
        b = b * alpha
    if is_bound(a):
        return a - b
    return (-b) + a


def _mul(a, b):
    if a is b and is_bound(a):  # one value times itself: a square, never negative
        return a.square()
    return a * b if is_bound(a) else b * a


def _div(a, b, *, rounding_mode=None):
    if rounding_mode is not None:
        raise UnsupportedOperationError([f"div with rounding_mode={rounding_mode!r}"])
    return a / b


def _pow(a, b):
    if is_bound(b):
        raise UnsupportedOperationError(["pow with a non-constant exponent"])
    if isinstance(b, torch.Tensor):
        if b.numel() != 1:
            raise UnsupportedOperationError(["pow with a tensor exponent"])
        b = float(b)
    return a**b


def _unary(name):
    def rule(a, *args, **kwargs):
        if args or kwargs:
            raise UnsupportedOperationError([f"{name} with extra arguments"])
        return getattr(a, name)()

    rule.__name__ = name
    return rule


def _linear(x, weight, bias=None):
    if is_bound(weight) or is_bound(bias):
        raise UnsupportedOperationError(["linear with non-constant weights"])
    return x.linear(weight, bias)


def _matmul(a, b):
    if is_bound(a) and not is_bound(b):
        if b.ndim == 1:
            return a.linear(b.unsqueeze(0)).apply(torch.squeeze, -1)
        return a.linear(b.transpose(-1, -2))
    if is_bound(b) and not is_bound(a):
        # a @ x with x [batch, k]: rare in dynamics; x.T-style products are not supported
        raise UnsupportedOperationError(["matmul with the bound operand on the right"])
    raise UnsupportedOperationError(["matmul of two non-constant operands"])


def _leaky_relu(x, negative_slope=0.01, inplace=False):
    return x.leaky_relu(float(negative_slope))


def _relu(x, inplace=False):
    return x.relu()


def _softplus(x, beta=1.0, threshold=20.0):
    if not float(beta) > 0:
        raise UnsupportedOperationError([f"softplus with beta = {beta} (expected beta > 0)"])
    return x.softplus(float(beta), float(threshold))


def softplus_exact(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` with no threshold (ONNX's ``Softplus``), computed without overflow.

    A leaf of the captured graph (``torch.fx.wrap``); its bound rule is the smooth softplus."""
    return softplus_smooth(x)


torch.fx.wrap("softplus_exact")


def _softplus_exact(x):
    return x.softplus(1.0, float("inf"))


def _hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
    return _clamp(x, float(min_val), float(max_val))


def _relu6(x, inplace=False):
    return _clamp(x, 0.0, 6.0)


def _elu(x, alpha=1.0, inplace=False):
    """``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` else: ``relu(x) + alpha (exp(min(x, 0)) - 1)``,
    a sum of two increasing functions (for ``alpha >= 0``), so its interval bound is tight."""
    alpha = float(alpha)
    if not alpha >= 0:
        raise UnsupportedOperationError([f"elu with alpha = {alpha} (expected alpha >= 0)"])
    return x.relu() + (x.clamp(max=0.0).exp() - 1.0) * alpha


def _silu(x, inplace=False):
    return x * x.sigmoid()


def _clamp(x, min=None, max=None):
    if is_bound(min) or is_bound(max):
        if min is not None and max is None and is_bound(min):
            return _maximum(x, min)
        if max is not None and min is None and is_bound(max):
            return _minimum(x, max)
        raise UnsupportedOperationError(["clamp with non-constant limits on both sides"])
    if isinstance(min, torch.Tensor) or isinstance(max, torch.Tensor):
        out = x
        if min is not None:
            out = _maximum(out, min)
        if max is not None:
            out = _minimum(out, max)
        return out
    return x.clamp(min=None if min is None else float(min), max=None if max is None else float(max))


def _lift_pair(a, b):
    if not is_bound(a):
        a = lift_like(torch.as_tensor(a).expand(_shape_of(b)), b)
    if not is_bound(b):
        b = lift_like(torch.as_tensor(b).expand(_shape_of(a)), a)
    return a, b


def _shape_of(x):
    return x.shape


def _minimum(a, b):
    a, b = _lift_pair(a, b)
    return _cls(a).minimum(a, b)


def _maximum(a, b):
    a, b = _lift_pair(a, b)
    return _cls(a).maximum(a, b)


def _sum(x, dim=None, keepdim=False, *, dtype=None):
    return x.sum(dim, keepdim)


def _square(x):
    return x.square()


def _neg(x):
    return -x


def _getitem(x, index):
    if isinstance(index, (tuple, list)) and any(is_bound(i) for i in index):
        raise UnsupportedOperationError(["indexing with a non-constant index"])
    return x[index]


def _shape_op(torch_fn):
    def rule(x, *args, **kwargs):
        return x.apply(torch_fn, *args, **kwargs)

    rule.__name__ = getattr(torch_fn, "__name__", "shape_op")
    return rule


def _reshape(x, *shape):
    shape = (
        shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
    )
    return x.apply(torch.reshape, tuple(shape))


def _expand(x, *shape):
    shape = (
        shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
    )
    return x.apply(lambda t: t.expand(*shape))


def _flatten(x, start_dim=0, end_dim=-1):
    return x.apply(torch.flatten, start_dim, end_dim)


def _sequence_rule(kind):
    def rule(items, dim=0):
        items = list(items)
        ref = next((i for i in items if is_bound(i)), None)
        if ref is None:
            return getattr(torch, kind)(items, dim)
        lifted = [i if is_bound(i) else lift_like(i, ref) for i in items]
        return getattr(_cls(ref), kind)(lifted, dim)

    rule.__name__ = kind
    return rule


def _zeros_like(x, *args, **kwargs):
    return lift_like(torch.zeros_like(_base(x)), x)


def _ones_like(x, *args, **kwargs):
    return lift_like(torch.ones_like(_base(x)), x)


def _base(x):
    while isinstance(x, Dual):
        x = x.value
    return x.lo


def _size(x, dim=None):
    shape = _base(x).shape
    return shape if dim is None else shape[dim]


def _getattr(x, name):
    if name == "shape":
        return _base(x).shape
    if name in ("dtype", "device"):
        return getattr(_base(x), name)
    raise UnsupportedOperationError([f"attribute .{name}"])


def _transpose(x, dim0, dim1):
    return x.apply(torch.transpose, dim0, dim1)


FUNCTION_RULES: dict[object, Callable] = {
    operator.add: _add,
    operator.sub: _sub,
    operator.mul: _mul,
    operator.truediv: _div,
    operator.neg: _neg,
    operator.pow: _pow,
    operator.getitem: _getitem,
    operator.matmul: _matmul,
    builtins.getattr: _getattr,
    torch.add: _add,
    torch.sub: _sub,
    torch.subtract: _sub,
    torch.mul: _mul,
    torch.multiply: _mul,
    torch.div: _div,
    torch.divide: _div,
    torch.true_divide: _div,
    torch.neg: _neg,
    torch.negative: _neg,
    torch.pow: _pow,
    torch.square: _square,
    torch.matmul: _matmul,
    torch.mm: _matmul,
    F.linear: _linear,
    torch.sin: _unary("sin"),
    torch.cos: _unary("cos"),
    torch.tanh: _unary("tanh"),
    F.tanh: _unary("tanh"),
    torch.sigmoid: _unary("sigmoid"),
    F.sigmoid: _unary("sigmoid"),
    torch.exp: _unary("exp"),
    torch.log: _unary("log"),
    torch.sqrt: _unary("sqrt"),
    torch.abs: _unary("abs"),
    torch.atan: _unary("atan"),
    torch.arctan: _unary("atan"),
    torch.relu: _relu,
    F.relu: _relu,
    F.leaky_relu: _leaky_relu,
    F.softplus: _softplus,
    softplus_exact: _softplus_exact,
    F.hardtanh: _hardtanh,
    F.relu6: _relu6,
    F.elu: _elu,
    F.silu: _silu,
    torch.clamp: _clamp,
    torch.clip: _clamp,
    torch.minimum: _minimum,
    torch.maximum: _maximum,
    torch.sum: _sum,
    torch.stack: _sequence_rule("stack"),
    torch.cat: _sequence_rule("cat"),
    torch.concat: _sequence_rule("cat"),
    torch.reshape: _reshape,
    torch.unsqueeze: _shape_op(torch.unsqueeze),
    torch.squeeze: _shape_op(torch.squeeze),
    torch.flatten: _flatten,
    torch.transpose: _transpose,
    torch.zeros_like: _zeros_like,
    torch.ones_like: _ones_like,
}

METHOD_RULES: dict[str, Callable] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "neg": _neg,
    "pow": _pow,
    "square": _square,
    "matmul": _matmul,
    "sin": _unary("sin"),
    "cos": _unary("cos"),
    "tanh": _unary("tanh"),
    "sigmoid": _unary("sigmoid"),
    "exp": _unary("exp"),
    "log": _unary("log"),
    "sqrt": _unary("sqrt"),
    "abs": _unary("abs"),
    "atan": _unary("atan"),
    "relu": _relu,
    "clamp": _clamp,
    "clip": _clamp,
    "sum": _sum,
    "reshape": _reshape,
    "view": _reshape,
    "expand": _expand,
    "unsqueeze": _shape_op(torch.unsqueeze),
    "squeeze": _shape_op(torch.squeeze),
    "flatten": _flatten,
    "transpose": _transpose,
    "size": _size,
    "t": _shape_op(lambda t: t.transpose(-1, -2)),
}

# functions whose derivative jumps: a mean-value form through them is unsound
NON_SMOOTH = frozenset(
    {"relu", "leaky_relu", "abs", "clamp", "clip", "minimum", "maximum", "hardtanh", "relu6", "elu"}
)


class _InliningTracer(torch.fx.Tracer):
    """Traces through every module (so their parameters become constants)."""

    def __init__(self):
        super().__init__(autowrap_functions=(softplus_exact,))

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return False


def _describe(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"method .{node.target}()"
    target = node.target
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)
    module = getattr(target, "__module__", "") or ""
    return f"{module}.{name}" if module and module != "builtins" else name


@dataclass
class BoundGraph:
    """A captured computation ``fn(x_1, ..., x_k)`` ready for bound evaluation."""

    module: torch.fx.GraphModule
    n_inputs: int
    quadratic_forms: dict = field(default_factory=dict)  # node -> bounds.quadform.QuadraticForm

    def evaluate(self, *inputs, constant_dtype: torch.dtype = torch.float64, record=None):
        """Run the graph on bound values (``Interval`` / ``Dual``) or tensors. ``record``: a dict
        that receives every node's value (the intermediate bounds a linear relaxation needs)."""
        env: dict[torch.fx.Node, object] = {} if record is None else record
        args_iter = iter(inputs)
        ref = next((i for i in inputs if is_bound(i)), None)
        device = _base(ref).device if ref is not None else torch.device("cpu")

        result = None
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                env[node] = next(args_iter)
            elif node.op == "get_attr":
                value = _fetch_attr(self.module, node.target)
                if isinstance(value, torch.Tensor):
                    if value.is_floating_point():
                        value = value.detach().to(device=device, dtype=constant_dtype)
                    else:
                        value = value.to(device)
                env[node] = value
            elif node.op in ("call_function", "call_method"):
                args, kwargs = _load(node.args, env), _load(node.kwargs, env)
                if not _any_bound(args) and not _any_bound(kwargs):
                    env[node] = _run_plain(node, args, kwargs)
                    continue
                if node.op == "call_function":
                    rule = FUNCTION_RULES[node.target]
                else:
                    rule = METHOD_RULES[node.target]
                env[node] = rule(*args, **kwargs)
                form = self.quadratic_forms.get(node)
                if form is not None:
                    env[node] = form.tighten(env[node], env[form.e], env[form.p])
            elif node.op == "output":
                result = _load(node.args[0], env)
            else:  # pragma: no cover - call_module is inlined away
                raise UnsupportedOperationError([f"graph node {node.op} {node.target}"])
        return result

    def ops(self) -> set[str]:
        """Names of the operations in the graph (for smoothness checks and reports)."""
        names = set()
        for node in self.module.graph.nodes:
            if node.op == "call_function":
                names.add(getattr(node.target, "__name__", str(node.target)))
            elif node.op == "call_method":
                names.add(str(node.target))
        return names

    @property
    def smooth(self) -> bool:
        return not (self.ops() & NON_SMOOTH)


def _load(a, env: dict):
    """``a`` (a node, or a list / tuple / dict of them) with every node replaced by its value in
    ``env``. (A module-level function: a nested recursive one would be a reference cycle holding
    ``env``, every intermediate bound of the evaluation, until the cyclic garbage collector runs;
    on a 4-state network the resident memory grew by about 0.9 GB per 100,000 boxes.)"""
    if isinstance(a, torch.fx.Node):
        return env[a]
    if isinstance(a, (list, tuple)):
        return type(a)(_load(x, env) for x in a)
    if isinstance(a, dict):
        return {k: _load(v, env) for k, v in a.items()}
    return a


def _fetch_attr(module, target: str):
    obj = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _any_bound(x) -> bool:
    if is_bound(x):
        return True
    if isinstance(x, (list, tuple)):
        return any(_any_bound(i) for i in x)
    if isinstance(x, dict):
        return any(_any_bound(v) for v in x.values())
    return False


def _run_plain(node, args, kwargs):
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    obj, *rest = args
    return getattr(obj, node.target)(*rest, **kwargs)


class _Unary(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x0):
        return self.fn(x0)


class _Binary(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x0, x1):
        return self.fn(x0, x1)


def capture(fn: Callable, n_inputs: int) -> BoundGraph:
    """Trace ``fn`` (a module, or a function of ``n_inputs`` in {1, 2} tensors whose networks are
    submodules of a module) into a ``BoundGraph``.

    Raises ``UnsupportedOperationError`` listing every operation without a bound rule.
    """
    if isinstance(fn, torch.nn.Module):
        root = fn
    elif n_inputs == 1:
        root = _Unary(fn)
    elif n_inputs == 2:
        root = _Binary(fn)
    else:
        raise ValueError(f"n_inputs: expected 1 or 2 for a plain function, got {n_inputs}")
    tracer = _InliningTracer()
    try:
        graph = tracer.trace(root)
    except UnsupportedOperationError:
        raise
    except Exception as exc:
        raise UnsupportedOperationError(
            [
                f"the computation could not be traced ({type(exc).__name__}: {exc}); data-dependent "
                "control flow (if/while on tensor values) is not supported"
            ]
        ) from exc
    root = tracer.root
    module = torch.fx.GraphModule(root, graph)
    missing = []
    for node in module.graph.nodes:
        if (node.op == "call_function" and node.target not in FUNCTION_RULES) or (
            node.op == "call_method" and node.target not in METHOD_RULES
        ):
            missing.append(_describe(node))
        elif node.op == "call_module":  # pragma: no cover
            missing.append(f"module {node.target}")
    if missing:
        raise UnsupportedOperationError(sorted(set(missing)))
    return BoundGraph(module, n_inputs, find_quadratic_forms(module.graph))
