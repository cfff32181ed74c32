"""Linear state feedback, saturated: ``u = clamp(u* - K (x - x*), u_lo, u_hi)``, and LQR gains."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.control.saturation import register_bounds
from lyapcert.errors import MethodError


class LinearController(torch.nn.Module):
    """``[batch, n] -> [batch, m]``: ``u* - (x - x*) K'``, clamped to the input bounds if any."""

    def __init__(self, K, x_star, u_star, lower=None, upper=None):
        super().__init__()
        K = torch.as_tensor(np.asarray(K, dtype=np.float64))
        if K.ndim != 2:
            raise ValueError(f"K: expected an [m, n] matrix, got shape {tuple(K.shape)}")
        m, n = K.shape
        self.register_buffer("K", K)
        self.register_buffer("x_star", torch.as_tensor(x_star, dtype=torch.float64).reshape(1, n))
        self.register_buffer("u_star", torch.as_tensor(u_star, dtype=torch.float64).reshape(1, m))
        register_bounds(self, lower, upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.u_star - (x - self.x_star) @ self.K.T
        if self.saturated:  # inline, so that the controller stays TorchScript-able
            u = torch.clamp(u, self.lower, self.upper)
        return u

    def spec(self) -> dict:
        """Plain data that rebuilds this controller (``LinearController(**spec)``)."""
        out = {
            "K": self.K.tolist(),
            "x_star": self.x_star.reshape(-1).tolist(),
            "u_star": self.u_star.reshape(-1).tolist(),
        }
        if self.saturated:
            out.update(lower=self.lower.reshape(-1).tolist(), upper=self.upper.reshape(-1).tolist())
        return out


def lqr(system: SystemLike, Q=None, R=None) -> LinearController:
    """The LQR controller of the linearisation at ``(x*, u*)`` (``Q = I``, ``R = I`` by default):
    continuous time ``K = R^-1 B' P`` with ``A'P + PA - PBR^-1B'P + Q = 0``; discrete time
    ``K = (R + B'PB)^-1 B'PA``. Saturated to the system's input bounds."""
    system = as_system(system)
    if system.n_inputs == 0:
        raise MethodError(f"lqr: {system.name} has no inputs")
    A, B = system.linearize()
    n, m = B.shape
    Q = np.eye(n) if Q is None else np.asarray(Q, dtype=np.float64)
    R = np.eye(m) if R is None else np.asarray(R, dtype=np.float64)
    try:
        if system.is_discrete:
            P = scipy.linalg.solve_discrete_are(A, B, Q, R)
            K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        else:
            P = scipy.linalg.solve_continuous_are(A, B, Q, R)
            K = np.linalg.solve(R, B.T @ P)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise MethodError(
            f"lqr: no stabilising solution for {system.name} (is (A, B) stabilisable?): {exc}"
        ) from None
    bounds = system.input_bounds
    return LinearController(
        K,
        system.equilibrium,
        system.equilibrium_input,
        None if bounds is None else bounds.lower,
        None if bounds is None else bounds.upper,
    )
