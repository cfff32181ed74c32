"""Closing the loop: a controlled system and a controller ``u = k(x)`` become one autonomous
``System`` with ``f_cl(x) = f(x, k(x))`` (CT) or ``x+ = F(x, k(x))`` (DT).

Everything downstream (simulation, the true ROA, the verifier, the metric, the methods, plots,
reports, certificate files) takes that one system; what must know about the controller (saving it
beside a certificate, drawing the input, training its weights) asks ``system.controller`` and
``system.open_loop``. ``resolve_controller`` is the one place that turns ``"lqr"``, ``"neural"``,
a model file or a module into a checked controller.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.errors import ControllerError, OptionsError
from lyapcert.systems.system import System


class ClosedLoopDynamics(torch.nn.Module):
    """``(x [b, n], u [b, 0]) -> f(x, k(x)) [b, n]``: the open loop's dynamics fed by the
    controller. A module (the controller a submodule), so that the bound engine captures
    ``f(x, k(x))`` as one graph and training reaches the controller's weights."""

    def __init__(self, open_dynamics, controller: torch.nn.Module):
        super().__init__()
        self.controller = controller
        self.open_dynamics = open_dynamics

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.open_dynamics(x, self.controller(x))


@dataclass(frozen=True, eq=False)
class ClosedLoop(System):
    """An autonomous ``System`` (no inputs) made of ``open_loop`` closed by ``controller``:
    the same box, ``x*``, time kind and step; ``linearize()`` gives the closed loop's Jacobian
    (and an empty ``B``); ``fingerprint()`` covers the controller's content. Build it with
    ``system.closed_loop(controller)``."""

    open_loop: System | None = field(default=None, repr=False)
    controller: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def controller_id(self) -> str | None:
        """The controller's content hash (its parameters, or its source file's bytes); ``None``
        for a plain function."""
        from lyapcert.control.store import controller_id

        return controller_id(self.controller)

    def fingerprint(self) -> str:
        """A content hash of the open loop's definition and the controller's content (for a
        plain-function controller: of the closed loop's values at fixed points of the box)."""
        k = self.controller_id
        if k is None:
            return super().fingerprint()
        joined = f"{self.open_loop.fingerprint()}+{k}"
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def frozen(self) -> ClosedLoop:
        """The same closed loop with a copy of the controller (one being trained moves on)."""
        return _close(self.open_loop, copy.deepcopy(self.controller))

    def summary(self) -> dict[str, object]:
        """The open loop's description (its inputs and equations) and the controller's family."""
        out = self.open_loop.summary()
        out["controller"] = type(self.controller).__name__
        return out

    def equation_strings(self) -> list[str] | None:
        return self.open_loop.equation_strings()

    def discretize(self, dt: float, name: str | None = None) -> ClosedLoop:
        """The explicit Euler map ``x+ = x + dt f(x, k(x))``: the open loop's Euler map closed by
        the same controller."""
        return _close(self.open_loop.discretize(dt, name), self.controller)

    def __str__(self) -> str:
        return f"{self.open_loop} closed by {type(self.controller).__name__}"


def close_loop(system: SystemLike, controller, *, check_u_star: bool = False, **neural) -> System:
    """``system`` closed by ``controller`` (anything ``resolve_controller`` takes); ``system``
    itself when ``controller`` is ``None``. ``neural``: ``width``, ``depth``, ``seed`` of the
    controller made for ``"neural"``.

    A module or function given directly is checked for shape and finite outputs; whether
    ``k(x*) = u*`` (so that ``x*`` stays an equilibrium) is left to the verifier, which proves the
    closed loop's equilibrium exactly (``check_u_star=True`` asks for the early tolerance check of
    ``check_controller`` too, as ``certify`` does). Names and files are always checked fully."""
    system = as_system(system)
    if controller is None:
        return system
    if system.n_inputs == 0 and not isinstance(system, ClosedLoop):
        raise ControllerError(f"controller: {system.name} has no inputs to control")
    if isinstance(system, ClosedLoop):
        raise ControllerError(
            f"{system.name}: the loop is already closed by a {type(system.controller).__name__}; "
            "close the open loop (system.open_loop) instead"
        )
    return _close(system, resolve_controller(system, controller, check_u_star, **neural))


def _close(system: System, k: torch.nn.Module) -> ClosedLoop:
    return ClosedLoop(
        name=system.name,
        dynamics=ClosedLoopDynamics(system.dynamics, k),
        state_names=system.state_names,
        domain=system.domain,
        equilibrium=system.equilibrium,
        time=system.time,
        dt=system.dt,
        description=system.description,
        source=system.source,
        check_equilibrium=False,  # the open loop and the controller (k(x*) = u*) were checked
        open_loop=system,
        controller=k,
    )


def resolve_controller(
    system: System, controller, check_u_star: bool = True, width: int = 16, depth: int = 2, seed=0
):
    """``"lqr"``, ``"neural"`` (a ``NeuralController`` starting as the saturated LQR, of
    ``depth`` hidden layers of ``width`` units), a path to an ONNX or TorchScript file, or a
    module -> a checked controller ``[b, n] -> [b, m]`` (``ControllerError`` otherwise; a module
    is checked for ``k(x*) = u*`` only with ``check_u_star``)."""
    from lyapcert.control import NeuralController, check_controller, lqr
    from lyapcert.control.imported import load_controller

    if isinstance(controller, str) and controller == "lqr":
        return lqr(system)
    if isinstance(controller, str) and controller == "neural":
        k = NeuralController.from_lqr(system, width=width, depth=depth, seed=seed)
        check_controller(k, system, "neural controller")
        return k
    if isinstance(controller, (str, Path)):
        return load_controller(controller, system)
    if not isinstance(controller, torch.nn.Module) and not callable(controller):
        raise ControllerError(
            f"controller: expected 'lqr', 'neural', a model file or a module, got {controller!r}"
        )
    check_controller(controller, system, at_equilibrium=check_u_star)
    return controller


def trains_controllers(options_class) -> bool:
    """Whether a method's options dataclass has ``train_controller``."""
    return any(f.name == "train_controller" for f in dataclasses.fields(options_class))


def has_parameters(controller) -> bool:
    """Whether ``controller`` is a module with weights (one that training can change)."""
    return isinstance(controller, torch.nn.Module) and any(True for _ in controller.parameters())


def close_for_method(system: System, controller, method, options):
    """``(system, options)`` for a run of ``method``: ``system`` closed by ``controller``.
    ``"neural"`` makes a ``NeuralController`` (the options' ``controller_width``,
    ``controller_depth`` and ``seed``) and switches ``train_controller`` on, for the methods that
    can train one; ``train_controller`` without a controller with weights is refused."""
    if isinstance(controller, str) and controller == "neural":
        if not trains_controllers(type(options)):
            from lyapcert.methods import METHODS

            trainers = ", ".join(
                name for name, cls in METHODS.items() if trains_controllers(cls.Options)
            )
            raise OptionsError(
                f"--controller neural: the {method.name} method cannot train a controller; use "
                f"--method {trainers}, or --controller lqr / a controller file"
            )
        closed = close_loop(
            system,
            "neural",
            check_u_star=True,
            width=options.controller_width,
            depth=options.controller_depth,
            seed=getattr(options, "seed", 0),
        )
        return closed, dataclasses.replace(options, train_controller=True)
    closed = close_loop(system, controller, check_u_star=True)
    if getattr(options, "train_controller", False) and not has_parameters(closed.controller):
        raise OptionsError(
            "train_controller: needs a neural controller to train (--controller neural)"
        )
    return closed, options
