"""Neural controllers: ``u = clamp(u* - K (x - x*) + (g(x) - g(x*)), u_lo, u_hi)`` with ``g`` an
MLP and ``K`` an optional fixed linear part (for example the LQR gain, so that training starts
from LQR), so that ``u(x*) = u*`` exactly (the difference is computed, not learnt) and ``u``
respects the bounds."""

from __future__ import annotations

import torch

from lyapcert.certificates.network import ACTIVATIONS
from lyapcert.control.saturation import register_bounds


class NeuralController(torch.nn.Module):
    """``[batch, n] -> [batch, m]``; ``depth`` hidden layers of ``width`` units."""

    @classmethod
    def from_lqr(cls, system, width: int = 16, depth: int = 2, activation: str = "tanh", seed=0):
        """A controller that starts as the LQR controller (``g``'s last layer is zero)."""
        from lyapcert.control.linear import lqr

        torch.manual_seed(seed)
        bounds = system.input_bounds
        k = cls(
            system.n_states,
            system.n_inputs,
            system.equilibrium,
            system.equilibrium_input,
            None if bounds is None else bounds.lower,
            None if bounds is None else bounds.upper,
            width,
            depth,
            activation,
            K=lqr(system).K,
        )
        with torch.no_grad():
            k.g[-1].weight.zero_()
            k.g[-1].bias.zero_()
        return k

    def __init__(
        self,
        n: int,
        m: int,
        x_star,
        u_star,
        lower=None,
        upper=None,
        width: int = 16,
        depth: int = 2,
        activation: str = "tanh",
        K=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS and activation != "relu":
            raise ValueError(
                f"activation: expected relu or one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        layers: list[torch.nn.Module] = []
        size = n
        act = torch.nn.ReLU if activation == "relu" else ACTIVATIONS[activation]
        for _ in range(depth):
            layers += [torch.nn.Linear(size, width), act()]
            size = width
        layers.append(torch.nn.Linear(size, m))
        self.g = torch.nn.Sequential(*layers).double()
        self.register_buffer("x_star", torch.as_tensor(x_star, dtype=torch.float64).reshape(1, n))
        self.register_buffer("u_star", torch.as_tensor(u_star, dtype=torch.float64).reshape(1, m))
        K = torch.zeros(m, n, dtype=torch.float64) if K is None else torch.as_tensor(K).double()
        self.register_buffer("K", K.reshape(m, n))
        register_bounds(self, lower, upper)
        self._spec = dict(
            n=n,
            m=m,
            x_star=[float(v) for v in torch.as_tensor(x_star).reshape(-1)],
            u_star=[float(v) for v in torch.as_tensor(u_star).reshape(-1)],
            lower=None if lower is None else [float(v) for v in lower],
            upper=None if upper is None else [float(v) for v in upper],
            width=width,
            depth=depth,
            activation=activation,
            K=self.K.tolist(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the difference first: it is exactly 0 at x*, so u(x*) = u* + 0 = u* bit for bit
        u = self.u_star + ((self.g(x) - self.g(self.x_star)) - (x - self.x_star) @ self.K.T)
        if self.saturated:  # inline, so that the controller stays TorchScript-able
            u = torch.clamp(u, self.lower, self.upper)
        return u

    def spec(self) -> dict:
        return dict(self._spec)
