"""Checks every controller must pass before it closes a loop (clear errors, nothing written)."""

from __future__ import annotations

import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.errors import ControllerError

U_STAR_TOLERANCE = 1e-9
"""Largest accepted ``max |k(x*) - u*|``, relative to ``max(1, |u*|)``."""


def check_controller(
    controller, system: SystemLike, source: str = "controller", at_equilibrium: bool = True
) -> None:
    """Raise ``ControllerError`` unless ``controller`` maps ``[b, n]`` float64 states to ``[b, m]``
    finite inputs and (``at_equilibrium``) gives ``u*`` at ``x*`` within ``U_STAR_TOLERANCE``
    (an early, clear error; the verifier proves the closed loop's equilibrium exactly anyway)."""
    system = as_system(system)
    n, m = system.n_states, system.n_inputs
    if m == 0:
        raise ControllerError(f"{source}: {system.name} has no inputs to control")
    lo, hi = system.domain.as_tensors()
    x = torch.cat([system.equilibrium_tensor(), lo.reshape(1, n), hi.reshape(1, n)])
    try:
        with torch.no_grad():
            u = controller(x)
    except Exception as exc:  # the model cannot even run on [b, n] inputs
        raise ControllerError(
            f"{source}: cannot evaluate on a batch of {n}-dimensional states ({type(exc).__name__}: "
            f"{exc})"
        ) from None
    if not isinstance(u, torch.Tensor) or tuple(u.shape) != (3, m):
        shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ControllerError(
            f"{source}: expected outputs of shape [batch, {m}] ({', '.join(system.input_names)}) "
            f"for {system.name}, got {shape} for a batch of 3"
        )
    if not torch.isfinite(u).all():
        raise ControllerError(f"{source}: non-finite outputs at x* or the box corners")
    if not at_equilibrium:
        return
    u_star = system.equilibrium_input_tensor().reshape(-1)
    err = float((u[0] - u_star).abs().max())
    if err > U_STAR_TOLERANCE * max(1.0, float(u_star.abs().max())):
        raise ControllerError(
            f"{source}: gives u = {u[0].tolist()} at x* = {list(system.equilibrium)}, expected "
            f"u* = {u_star.tolist()} (x* must stay an equilibrium of the closed loop)"
        )
