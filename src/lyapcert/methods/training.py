"""Pieces shared by the neural methods: network options, the labelled training sample, the
network itself, the decrease, weight checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.certificates.network import ACTIVATIONS, LyapunovNetwork
from lyapcert.errors import MethodError
from lyapcert.systems.system import System


@dataclass
class NetworkOptions:
    """Options every neural method shares.

    width: hidden units per layer of phi
    depth: hidden layers of phi
    activation: tanh, softplus or sigmoid
    epochs: optimiser steps (per round, for methods with rounds)
    learning_rate: Adam step size
    samples: training points drawn from the true-ROA sample
    use_quadratic: add the quadratic of the linearisation to V
    seed: random seed (CPU runs are reproducible)
    scale_inputs: box units: network inputs divided by the box half-widths (and, in neural-roa,
        the margin measured in them): "on", "off", or "auto" (on when some half-width exceeds
        WIDE_BOX, where raw inputs would saturate the tanh layers)
    outputs: outputs of phi (default: one per state; 1 gives the published 1-output shape)
    """

    width: int = 32
    depth: int = 2
    activation: str = "tanh"
    epochs: int = 1500
    learning_rate: float = 3e-3
    samples: int = 8192
    use_quadratic: bool = True
    seed: int = 0
    scale_inputs: str = "auto"
    outputs: int | None = None

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if min(self.width, self.depth, self.epochs, self.samples) < 1:
            raise ValueError("width, depth, epochs and samples must be positive")
        if self.outputs is not None and self.outputs < 1:
            raise ValueError(f"outputs: expected a positive number, got {self.outputs}")
        if self.scale_inputs not in ("auto", "on", "off"):
            raise ValueError(f"scale_inputs: expected auto, on or off, got {self.scale_inputs!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate: expected a number > 0, got {self.learning_rate}")


# half-width above which "auto" works in box units
WIDE_BOX = 8.0


def half_widths(system: System) -> torch.Tensor:
    lo, hi = system.domain.as_tensors(torch.float64)
    return (hi - lo) / 2


def uses_box_units(system: System, options: NetworkOptions) -> bool:
    """Whether ``scale_inputs`` puts this run in box units (see ``NetworkOptions``)."""
    if options.scale_inputs == "auto":
        return bool(half_widths(system).max() > WIDE_BOX)
    return options.scale_inputs == "on"


def build_network(system: System, options: NetworkOptions, P=None) -> LyapunovNetwork:
    """The positive-definite network ``V`` of ``options`` around ``x*`` (plus ``e'Pe``)."""
    scale = half_widths(system).tolist() if uses_box_units(system, options) else None
    return LyapunovNetwork(
        system.n_states,
        system.equilibrium,
        options.width,
        options.depth,
        options.activation,
        P=P,
        outputs=options.outputs,
        input_scale=scale,
    )


class TrainableQuadratic(torch.nn.Module):
    """``V(x) = |L' z|^2 + eps |z|^2`` with ``z = (x - x*) / s`` (``s``: the input scales, or 1)
    and ``L [n, n]`` trained: a positive definite quadratic ``V = e' P e``, ``e = x - x*``,
    ``P = S^-1 (L L' + eps I) S^-1`` (``matrix()``). ``[batch, n] -> [batch]``. Starts at ``P0``
    (its part above ``eps`` in the scaled coordinates; the identity there when ``P0`` is None)."""

    def __init__(self, n: int, x_star, P0=None, eps: float = 1e-3, input_scale=None):
        super().__init__()
        scale = torch.ones(n, dtype=torch.float64)
        if input_scale is not None:
            scale = torch.as_tensor(input_scale, dtype=torch.float64).reshape(n)
        self.register_buffer("x_star", torch.as_tensor(x_star, dtype=torch.float64).reshape(1, n))
        self.register_buffer("inverse_scale", (1.0 / scale).reshape(1, n))
        self.eps = float(eps)
        start = torch.eye(n, dtype=torch.float64)
        if P0 is not None:  # in the scaled coordinates: z' (S P0 S) z
            Ps = torch.as_tensor(P0, dtype=torch.float64) * scale[:, None] * scale[None, :]
            w, U = torch.linalg.eigh(0.5 * (Ps + Ps.T))
            start = U * torch.sqrt(torch.clamp(w - self.eps, min=self.eps))[None, :]
        self.L = torch.nn.Parameter(start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.x_star) * self.inverse_scale
        y = z @ self.L
        return (y * y).sum(-1) + self.eps * (z * z).sum(-1)

    def matrix(self) -> torch.Tensor:
        """``P [n, n]`` with ``V(x) = (x - x*)' P (x - x*)`` (float64, no gradient)."""
        with torch.no_grad():
            n = self.L.shape[0]
            inner = self.L @ self.L.T + self.eps * torch.eye(n, dtype=torch.float64)
            d = self.inverse_scale.reshape(n)
            return d[:, None] * inner * d[None, :]


def build_quadratic(system: System, options: NetworkOptions, P=None) -> TrainableQuadratic:
    """The trainable quadratic ``V`` of ``options`` around ``x*``, starting at ``P``."""
    scale = half_widths(system).tolist() if uses_box_units(system, options) else None
    return TrainableQuadratic(system.n_states, system.equilibrium, P, input_scale=scale)


def labelled_sample(system: System, samples: int, seed: int, progress: bool = False):
    """``(points [k, n], inside [k])``: a random subset of the cached true-ROA sample."""
    from lyapcert.metric import true_roa_of

    rng = np.random.default_rng(seed)
    est = true_roa_of(system, progress)
    idx = rng.choice(len(est.points), size=min(samples, len(est.points)), replace=False)
    return torch.as_tensor(est.points[idx]), torch.as_tensor(est.inside[idx])


def check_weights(module: torch.nn.Module, method: str) -> None:
    """A clear error, and so no certificate, when training left NaN or inf weights."""
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            raise MethodError(f"{method}: training produced NaN or inf weights ({name})")


def report(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(text)


def normalised_quadratic(system: System, region: torch.Tensor | None = None):
    """``P`` of the linearisation's Lyapunov equation (``Q = I``), scaled so that
    ``max e'Pe = 1/2`` over the points ``region`` (the true-ROA sample: then ``{V <= 1}`` can still
    reach all of it, since the network only adds to ``V``), or ``lambda_max(P) = 1`` without
    ``region``; ``None`` when the linearisation has none (not Hurwitz / Schur)."""
    from lyapcert.methods.quadratic import lyapunov_matrix

    try:
        a = system.linearize()[0]
        P = lyapunov_matrix(a, np.eye(system.n_states), system.is_discrete)
    except MethodError:
        return None
    if region is not None and len(region):
        e = region - system.equilibrium_tensor()
        top = float(((e @ torch.as_tensor(P)) * e).sum(1).max())
        if top > 0:
            return P * (0.5 / top)
    return P / max(1e-12, float(np.linalg.eigvalsh(P).max()))


def decrease(system: System, net, x: torch.Tensor) -> torch.Tensor:
    """``dV/dt = grad V . f(x)`` (continuous time) or ``V(F(x)) - V(x)`` (discrete time), with
    ``f`` the closed loop's dynamics (or the input held at ``u*``); differentiable in the weights
    (of ``V``, and of a closed loop's controller); ``x`` must require grad in continuous time.
    ``[k]``."""
    from lyapcert.simulate.integrate import vector_field

    field = vector_field(system)
    v = net(x)
    if system.is_discrete:
        return net(field(x)) - v
    (grad,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    return (grad * field(x)).sum(1)


def face_points(system: System, count: int, seed: int) -> torch.Tensor:
    """``count`` random points on the faces of the box ``[count, n]`` (a certified sublevel set
    may not reach them)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = system.domain.as_tensors(torch.float64)
    n = lo.shape[0]
    x = lo + torch.rand(count, n, generator=gen, dtype=torch.float64) * (hi - lo)
    axis = torch.randint(n, (count,), generator=gen)
    upper = torch.rand(count, generator=gen) < 0.5
    rows = torch.arange(count)
    x[rows, axis] = torch.where(upper, hi[axis], lo[axis])
    return x


def boundary_points(
    points: torch.Tensor,
    inside: torch.Tensor,
    w: torch.Tensor,
    count: int,
    gen: torch.Generator,
    quantile: float = 0.8,
) -> torch.Tensor:
    """Indices ``[count]`` (into ``points [k, n]``) of points drawn near the boundary of the region
    of attraction estimated by a Zubov function ``w [k]`` (``W = 1 - exp(-beta * cost)``, larger
    farther along the ROA, 1 outside) and the convergence labels ``inside [k]``.

    The rule: the candidates are (a) the converging points whose ``w`` is at least the
    ``quantile``-quantile of ``w`` over the converging points (the outer band of the estimated
    ROA) and (b) the same share of the non-converging points, those nearest (Euclidean distance in
    the coordinates of ``points``) to a converging point: the ``1 - quantile`` nearest, at
    least one. Half of ``count`` (rounded down) is drawn uniformly with replacement from (a), the
    rest from (b); when one of the two sets is empty all come from the other; with neither (no
    points) the result is empty. Draws use ``gen`` only (reproducible)."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile: expected a number in [0, 1], got {quantile}")
    inside = inside.bool()
    idx_in = torch.nonzero(inside).reshape(-1)
    idx_out = torch.nonzero(~inside).reshape(-1)
    band = idx_in
    if len(idx_in):
        w_in = w[idx_in].double()
        band = idx_in[w_in >= torch.quantile(w_in, quantile)]
    near = idx_out
    if len(idx_out) and len(idx_in):
        # distance of each non-converging point to the nearest converging one (chunked: k x k)
        ref = points[idx_in].double()
        dist = torch.cat(
            [torch.cdist(points[c].double(), ref).min(1).values for c in idx_out.split(1024)]
        )
        keep = max(1, math.ceil((1 - quantile) * len(idx_out)))
        near = idx_out[torch.argsort(dist, stable=True)[:keep]]
    if count <= 0 or (len(band) == 0 and len(near) == 0):
        return torch.zeros(0, dtype=torch.long)
    n_band = count // 2 if len(near) else count
    n_band = n_band if len(band) else 0

    def draw(pool: torch.Tensor, k: int) -> torch.Tensor:
        return pool[torch.randint(len(pool), (k,), generator=gen)] if k else pool[:0]

    return torch.cat([draw(band, n_band), draw(near, count - n_band)])
