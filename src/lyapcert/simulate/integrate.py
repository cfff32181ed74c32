"""Batched simulation: fixed-step RK4 (or Euler) for continuous time, iteration for discrete time.

A closed loop (``system.closed_loop(k)``) is simulated through its own dynamics ``f(x, k(x))``;
a system that still has inputs is simulated with the input held at ``u*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.errors import ShapeError, SimulationError
from lyapcert.systems.system import System

Method = Literal["rk4", "euler"]


def vector_field(system: SystemLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x [batch, n] -> f(x, u*) [batch, n]`` (a closed loop: ``f(x, k(x))``; DT: the map)."""
    system = as_system(system)

    def field(x: torch.Tensor) -> torch.Tensor:
        u = system.equilibrium_input_tensor(x.dtype, x.device).expand(x.shape[0], -1)
        return system.dynamics(x, u)

    return field


def make_stepper(
    system: SystemLike, step: float, method: Method = "rk4"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One step ``x -> x(t + step)``: RK4 or Euler for CT, one application of the map for DT."""
    system = as_system(system)
    field = vector_field(system)
    if system.is_discrete:
        return field
    if method == "euler":
        return lambda x: x + step * field(x)
    if method != "rk4":
        raise SimulationError(f"method: expected 'rk4' or 'euler', got {method!r}")
    half = step / 2

    def rk4(x: torch.Tensor) -> torch.Tensor:
        k1 = field(x)
        k2 = field(x + half * k1)
        k3 = field(x + half * k2)
        k4 = field(x + step * k3)
        return x + (step / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

    return rk4


def n_steps(system: System, horizon: float, step: float | None) -> tuple[int, float]:
    """Number of steps and the step actually used (DT: the system's dt)."""
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise SimulationError(f"horizon: expected a finite time > 0, got {horizon!r}")
    if system.is_discrete:
        step = float(system.dt)
    elif step is None or not (math.isfinite(step) and step > 0):
        raise SimulationError(f"step: expected a finite step > 0, got {step!r}")
    return max(1, math.ceil(horizon / step - 1e-9)), float(step)


@dataclass(frozen=True)
class Trajectory:
    """States ``[len(times), batch, n]`` at ``times`` (``[len(times)]``), starting at t = 0."""

    times: torch.Tensor
    states: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        return self.states[-1]


def simulate(
    system: SystemLike,
    x0: torch.Tensor,
    horizon: float,
    step: float | None = None,
    method: Method = "rk4",
    record_every: int = 1,
) -> Trajectory:
    """Integrate from ``x0 [batch, n]`` over ``[0, horizon]`` with a fixed step.

    CT: ``step`` is the RK4 (or Euler) step. DT: the map is iterated ``ceil(horizon / dt)`` times
    and ``step`` is ignored. Every ``record_every``-th state is kept (the last one always).
    """
    system = as_system(system)
    if not isinstance(x0, torch.Tensor) or x0.ndim != 2 or x0.shape[1] != system.n_states:
        got = list(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ShapeError(f"x0: expected shape [batch, {system.n_states}], got {got}")
    if record_every < 1:
        raise SimulationError(f"record_every: expected an integer >= 1, got {record_every!r}")
    steps, h = n_steps(system, horizon, step)
    stepper = make_stepper(system, h, method)
    x = x0
    times, states = [0.0], [x0]
    with torch.no_grad():
        for k in range(1, steps + 1):
            x = stepper(x)
            if k % record_every == 0 or k == steps:
                times.append(k * h)
                states.append(x)
    return Trajectory(
        times=torch.tensor(times, dtype=x0.dtype, device=x0.device), states=torch.stack(states)
    )
