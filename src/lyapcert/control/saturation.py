"""The input bounds every controller clamps its output to (``clamp(u, lower, upper)`` in its
``forward``, written inline so that the controllers stay TorchScript-able)."""

from __future__ import annotations

import torch


def register_bounds(module: torch.nn.Module, lower, upper) -> None:
    """Give ``module`` the float64 buffers ``lower``, ``upper`` (``[1, m]``) and ``saturated``
    (``False`` when either bound is ``None``)."""
    module.saturated = lower is not None and upper is not None
    if module.saturated:
        module.register_buffer("lower", torch.as_tensor(lower, dtype=torch.float64).reshape(1, -1))
        module.register_buffer("upper", torch.as_tensor(upper, dtype=torch.float64).reshape(1, -1))
