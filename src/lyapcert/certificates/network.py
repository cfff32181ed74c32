"""Neural Lyapunov functions that are positive definite by construction, and their files.

``V(x) = |phi(x / s) - phi(x* / s)|^2 + eps |(x - x*) / s|^2 + (x - x*)' P (x - x*)`` with ``phi`` an MLP
(``s``: optional input scales, for example the box's half-widths, so that ``phi`` sees inputs of
order one on a box of any size)
(``depth`` hidden layers of ``width`` units, smooth activation); ``P`` is optional (the quadratic of
the linearisation). ``V(x*) = 0`` exactly and ``V > 0`` elsewhere. The architecture is plain data
(``spec()``), so a certificate file can rebuild the network from it and a weights file.
"""

from __future__ import annotations

import hashlib

import torch

ACTIVATIONS = {"tanh": torch.nn.Tanh, "softplus": torch.nn.Softplus, "sigmoid": torch.nn.Sigmoid}


class LyapunovNetwork(torch.nn.Module):
    """``[batch, n] -> [batch]``, positive definite around ``x*`` by construction."""

    def __init__(
        self,
        n: int,
        x_star,
        width: int = 32,
        depth: int = 2,
        activation: str = "tanh",
        eps: float = 1e-3,
        P=None,
        outputs: int | None = None,
        input_scale=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        if width < 1 or depth < 1:
            raise ValueError("width and depth must be positive")
        outputs = outputs or n
        layers: list[torch.nn.Module] = []
        size = n
        for _ in range(depth):
            layers += [torch.nn.Linear(size, width), ACTIVATIONS[activation]()]
            size = width
        layers.append(torch.nn.Linear(size, outputs))
        self.phi = torch.nn.Sequential(*layers).double()
        self.register_buffer("x_star", torch.as_tensor(x_star, dtype=torch.float64).reshape(1, n))
        P = (
            torch.zeros(n, n, dtype=torch.float64)
            if P is None
            else torch.as_tensor(P, dtype=torch.float64)
        )
        self.register_buffer("P", P)
        self.eps = float(eps)
        self.scaled = input_scale is not None
        if self.scaled:
            scale = torch.as_tensor(input_scale, dtype=torch.float64).reshape(1, n)
            if not bool((scale > 0).all() and torch.isfinite(scale).all()):
                raise ValueError("input_scale: expected finite numbers > 0")
            self.register_buffer("inverse_scale", 1.0 / scale)
        self._spec = {
            "n": n,
            "x_star": [float(v) for v in torch.as_tensor(x_star).reshape(-1)],
            "width": width,
            "depth": depth,
            "activation": activation,
            "eps": float(eps),
            "P": P.tolist(),
            "outputs": outputs,
        }
        if self.scaled:
            self._spec["input_scale"] = [float(v) for v in scale.reshape(-1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x - self.x_star
        if self.scaled:  # (an old certificate without scales keeps its exact graph)
            d = self.phi(x * self.inverse_scale) - self.phi(self.x_star * self.inverse_scale)
            es = e * self.inverse_scale
            return (d * d).sum(-1) + self.eps * (es * es).sum(-1) + ((e @ self.P) * e).sum(-1)
        d = self.phi(x) - self.phi(self.x_star)
        return (d * d).sum(-1) + self.eps * (e * e).sum(-1) + ((e @ self.P) * e).sum(-1)

    def spec(self) -> dict:
        return dict(self._spec)

    @classmethod
    def from_spec(cls, spec: dict) -> LyapunovNetwork:
        return cls(**spec)


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().cpu().double().numpy().tobytes())
    return digest.hexdigest()
