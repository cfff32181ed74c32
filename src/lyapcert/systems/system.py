"""``System``: one definition of a (possibly controlled) dynamical system.

Continuous time (CT): ``x' = f(x, u)``. Discrete time (DT): ``x+ = f(x, u)``. The dynamics take
batched tensors ``x: [batch, n]`` and ``u: [batch, m]`` (``m`` may be 0) of any float dtype on any
device and return ``[batch, n]``; they are written with plain torch operations, so the same
definition serves training, simulation and bound propagation.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import sympy
import torch

from lyapcert.errors import EquilibriumError, ShapeError, SystemDefinitionError
from lyapcert.systems.box import Box

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TimeKind = Literal["continuous", "discrete"]

EQUILIBRIUM_TOLERANCE = 1e-8
"""Largest accepted residual ``max |f(x*, u*)|`` (CT) or ``max |f(x*, u*) - x*|`` (DT), relative
to ``max(1, |x*|, |u*|)``; evaluated in float64."""


@dataclass(frozen=True)
class SymbolicModel:
    """The equations a system was built from (for display, hashing and saving).

    ``dynamics[i]`` is the right-hand side for state ``i`` with parameters still symbolic;
    ``params`` maps each parameter name to its value; ``spec`` is the plain-data definition
    (the TOML fields) that rebuilds the system.
    """

    dynamics: tuple[sympy.Expr, ...]
    params: Mapping[str, float]
    spec: Mapping[str, object]


@dataclass(frozen=True, eq=False)
class System:
    """A dynamical system with its equilibrium, domain and input bounds.

    Attributes:
        name: identifier (registry name or the ``name`` field of a file).
        dynamics: ``f(x, u) -> [batch, n]``; for DT systems the successor ``x+``.
        state_names: ``n`` names; ``input_names``: ``m`` names (empty when autonomous).
        domain: the box of states to study and verify on.
        equilibrium: ``x*`` (``n`` floats); ``equilibrium_input``: ``u*`` (``m`` floats).
        input_bounds: box of admissible inputs, or None (unbounded / autonomous).
        time: ``"continuous"`` or ``"discrete"``; ``dt``: the step of a DT system.
    """

    name: str
    dynamics: Dynamics = field(repr=False)
    state_names: tuple[str, ...]
    domain: Box
    input_names: tuple[str, ...] = ()
    equilibrium: tuple[float, ...] | None = None
    equilibrium_input: tuple[float, ...] | None = None
    input_bounds: Box | None = None
    time: TimeKind = "continuous"
    dt: float | None = None
    description: str = ""
    source: str = ""
    symbolic: SymbolicModel | None = field(default=None, repr=False)
    check_equilibrium: bool = field(default=True, repr=False)

    controller = None
    """The controller ``u = k(x)`` of a closed loop (``control.closed_loop.ClosedLoop``); None."""

    def __post_init__(self) -> None:
        n, m = len(self.state_names), len(self.input_names)
        if n == 0:
            raise SystemDefinitionError("expected at least one state, got none", "states")
        if not callable(self.dynamics):
            raise SystemDefinitionError(f"expected a callable, got {self.dynamics!r}", "dynamics")
        _check_names(self.state_names, "states")
        _check_names(self.input_names, "inputs")
        clash = set(self.state_names) & set(self.input_names)
        if clash:
            raise SystemDefinitionError(
                f"names used both as state and input: {', '.join(sorted(clash))}", "inputs"
            )
        if any(w <= 0 for w in self.domain.width):
            raise SystemDefinitionError(
                f"expected lo < hi for every state, got {self.domain}", "domain"
            )
        if self.domain.dim != n:
            raise SystemDefinitionError(
                f"expected {n} intervals (one per state), got {self.domain.dim}", "domain"
            )
        if self.time not in ("continuous", "discrete"):
            raise SystemDefinitionError(
                f"expected 'continuous' or 'discrete', got {self.time!r}", "time"
            )
        if self.time == "discrete":
            if self.dt is None or not (isinstance(self.dt, (int, float)) and self.dt > 0):
                raise SystemDefinitionError(
                    f"a discrete-time system needs a step dt > 0, got {self.dt!r}", "dt"
                )
        elif self.dt is not None:
            raise SystemDefinitionError(
                f"dt is only meaningful for time = 'discrete', got dt = {self.dt!r} with "
                "time = 'continuous' (use discretize(dt) to build the Euler map)",
                "dt",
            )
        x_star = _vector(self.equilibrium, n, "equilibrium", default=0.0)
        u_star = _vector(self.equilibrium_input, m, "equilibrium_input", default=0.0)
        object.__setattr__(self, "equilibrium", x_star)
        object.__setattr__(self, "equilibrium_input", u_star)
        if not self.domain.contains_point(x_star):
            raise SystemDefinitionError(
                f"the equilibrium {list(x_star)} lies outside the domain {self.domain}",
                "equilibrium",
            )
        if self.input_bounds is not None:
            if m == 0:
                raise SystemDefinitionError(
                    "input bounds given for a system without inputs", "input_bounds"
                )
            if self.input_bounds.dim != m:
                raise SystemDefinitionError(
                    f"expected {m} intervals (one per input), got {self.input_bounds.dim}",
                    "input_bounds",
                )
            if not self.input_bounds.contains_point(u_star):
                raise SystemDefinitionError(
                    f"the equilibrium input {list(u_star)} lies outside the input bounds "
                    f"{self.input_bounds}",
                    "equilibrium_input",
                )
        if self.check_equilibrium:
            self._check_equilibrium()

    # ------------------------------------------------------------------ shape and kind

    @property
    def n_states(self) -> int:
        """Number of state coordinates ``n``."""
        return len(self.state_names)

    @property
    def n_inputs(self) -> int:
        """Number of inputs ``m`` (0 for an autonomous system)."""
        return len(self.input_names)

    @property
    def is_discrete(self) -> bool:
        """Whether the system is a map ``x+ = f(x, u)`` (else ``dx/dt = f(x, u)``)."""
        return self.time == "discrete"

    @property
    def is_autonomous(self) -> bool:
        """Whether the system has no inputs."""
        return self.n_inputs == 0

    @property
    def open_loop(self) -> System:
        """The system before any controller closed it: this one (a ``ClosedLoop`` keeps its own)."""
        return self

    @property
    def candidates(self) -> dict[str, str]:
        """Ready candidates ``V`` named by the definition's ``candidates`` table (name ->
        expression in the states and params, e.g. ``energy``); empty for a system without one."""
        symbolic = self.open_loop.symbolic
        if symbolic is None:
            return {}
        return dict(symbolic.spec.get("candidates", {}) or {})

    @property
    def is_closed_loop(self) -> bool:
        """Whether a controller closes this system's loop (then ``controller`` is it)."""
        return self.controller is not None

    # ------------------------------------------------------------------ evaluation

    def f(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate the dynamics on a batch: ``x [batch, n]``, ``u [batch, m]`` (default ``u*``).

        Returns ``x'`` (CT) or ``x+`` (DT), ``[batch, n]``, in the dtype and device of ``x``.
        """
        if not isinstance(x, torch.Tensor):
            raise ShapeError(
                f"x: expected a torch.Tensor of shape [batch, {self.n_states}], got {type(x).__name__}"
            )
        if x.ndim != 2 or x.shape[1] != self.n_states:
            raise ShapeError(
                f"x: expected shape [batch, {self.n_states}] for states "
                f"({', '.join(self.state_names)}), got {list(x.shape)}"
            )
        if u is None:
            u = self.equilibrium_input_tensor(x.dtype, x.device).expand(x.shape[0], -1)
        elif isinstance(u, torch.Tensor) and u.dtype != x.dtype and u.is_floating_point():
            u = u.to(x.dtype)
        elif (
            not isinstance(u, torch.Tensor) or u.ndim != 2 or u.shape != (x.shape[0], self.n_inputs)
        ):
            got = list(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ShapeError(
                f"u: expected shape [{x.shape[0]}, {self.n_inputs}] for inputs "
                f"({', '.join(self.input_names) or 'none'}), got {got}"
            )
        out = self.dynamics(x, u)
        if out.shape != x.shape:
            raise ShapeError(
                f"dynamics of {self.name!r} returned shape {list(out.shape)}, expected {list(x.shape)}"
            )
        return out

    def equilibrium_tensor(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``x*`` as a ``[1, n]`` tensor."""
        return torch.tensor([self.equilibrium], dtype=dtype, device=device)

    def equilibrium_input_tensor(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``u*`` as a ``[1, m]`` tensor."""
        return torch.tensor([list(self.equilibrium_input)], dtype=dtype, device=device).reshape(
            1, self.n_inputs
        )

    def residual(self) -> float:
        """``max |f(x*, u*)|`` (CT) or ``max |f(x*, u*) - x*|`` (DT) in float64."""
        x = self.equilibrium_tensor()
        with torch.no_grad():
            out = self.dynamics(x, self.equilibrium_input_tensor())
        if self.is_discrete:
            out = out - x
        return float(out.abs().max())

    def _check_equilibrium(self) -> None:
        try:
            r = self.residual()
        except Exception as exc:  # a user function may fail in any way
            raise SystemDefinitionError(
                f"evaluating the dynamics at the equilibrium failed: {exc}", "dynamics"
            ) from exc
        scale = max(1.0, *map(abs, self.equilibrium), *map(abs, self.equilibrium_input))
        what = "f(x*, u*) - x*" if self.is_discrete else "f(x*, u*)"
        if not math.isfinite(r):
            raise EquilibriumError(
                f"{what} is not finite at x* = {list(self.equilibrium)}, "
                f"u* = {list(self.equilibrium_input)}",
                "equilibrium",
            )
        if r > EQUILIBRIUM_TOLERANCE * scale:
            raise EquilibriumError(
                f"x* = {list(self.equilibrium)} with u* = {list(self.equilibrium_input)} is not an "
                f"equilibrium: max |{what}| = {r:.3g} (tolerance {EQUILIBRIUM_TOLERANCE * scale:.1g})",
                "equilibrium",
            )

    # ------------------------------------------------------------------ transformations

    def linearize(self) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians ``A = df/dx``, ``B = df/du`` at ``(x*, u*)`` by autodiff in float64.

        Shapes ``[n, n]`` and ``[n, m]``. For a DT system these are the Jacobians of the map.
        """
        x = self.equilibrium_tensor()
        u = self.equilibrium_input_tensor()
        a, b = torch.autograd.functional.jacobian(lambda xx, uu: self.dynamics(xx, uu), (x, u))
        return (
            a.reshape(self.n_states, self.n_states).numpy().copy(),
            b.reshape(self.n_states, self.n_inputs).numpy().copy(),
        )

    def closed_loop(self, controller) -> System:
        """This system closed by ``controller`` (``"lqr"``, ``"neural"``, an ONNX or TorchScript
        file, or a module ``[b, n] -> [b, m]``): an autonomous ``System`` with
        ``f(x) = f(x, k(x))`` that keeps ``open_loop`` and ``controller``
        (``lyapcert.control.closed_loop``). ``None`` returns this system."""
        from lyapcert.control.closed_loop import close_loop

        return close_loop(self, controller)

    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of ``A`` from ``linearize()``."""
        return np.linalg.eigvals(self.linearize()[0])

    def discretize(self, dt: float, name: str | None = None) -> System:
        """The explicit Euler map ``x+ = x + dt f(x, u)`` of a continuous-time system."""
        if self.is_discrete:
            raise SystemDefinitionError(f"{self.name!r} is already discrete-time", "time")
        if (
            isinstance(dt, bool)
            or not isinstance(dt, (int, float))
            or not (math.isfinite(dt) and dt > 0)
        ):
            raise SystemDefinitionError(f"expected a finite step dt > 0, got {dt!r}", "dt")
        dt = float(dt)
        flow = self.dynamics

        def euler(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            return x + dt * flow(x, u)

        symbolic = None
        if self.symbolic is not None:
            states = [sympy.Symbol(s, real=True) for s in self.state_names]
            spec = dict(self.symbolic.spec)
            dyn_spec = spec.get("dynamics")
            if isinstance(dyn_spec, Mapping):
                spec["dynamics"] = {s: f"{s} + {dt!r}*({expr})" for s, expr in dyn_spec.items()}
            spec.update(time="discrete", dt=dt, name=name or f"{self.name}-dt")
            symbolic = SymbolicModel(
                dynamics=tuple(s + dt * e for s, e in zip(states, self.symbolic.dynamics)),
                params=self.symbolic.params,
                spec=spec,
            )
        return System(
            name=name or f"{self.name}-dt",
            dynamics=euler,
            state_names=self.state_names,
            input_names=self.input_names,
            domain=self.domain,
            equilibrium=self.equilibrium,
            equilibrium_input=self.equilibrium_input,
            input_bounds=self.input_bounds,
            time="discrete",
            dt=dt,
            description=(self.description + f" Explicit Euler, dt = {dt:g}.").strip(),
            source=self.source,
            symbolic=symbolic,
        )

    # ------------------------------------------------------------------ identity

    def fingerprint(self) -> str:
        """A content hash (hex) of the definition: equal for equal systems, used as a cache key.

        Equation-built systems hash their equations and parameters; Python-defined ones hash
        their values at fixed pseudo-random points of the domain.
        """
        h = hashlib.sha256()
        meta = {
            "states": self.state_names,
            "inputs": self.input_names,
            "domain": self.domain.to_list(),
            "equilibrium": self.equilibrium,
            "equilibrium_input": self.equilibrium_input,
            "input_bounds": self.input_bounds.to_list() if self.input_bounds else None,
            "time": self.time,
            "dt": self.dt,
        }
        h.update(json.dumps(meta, sort_keys=True).encode())
        if self.symbolic is not None:
            h.update(repr([sympy.srepr(e) for e in self.symbolic.dynamics]).encode())
            h.update(json.dumps(dict(self.symbolic.params), sort_keys=True).encode())
        else:
            gen = torch.Generator().manual_seed(12345)
            lo, hi = self.domain.as_tensors()
            x = lo + (hi - lo) * torch.rand(64, self.n_states, generator=gen, dtype=torch.float64)
            if self.input_bounds is not None:
                ulo, uhi = self.input_bounds.as_tensors()
                u = ulo + (uhi - ulo) * torch.rand(
                    64, self.n_inputs, generator=gen, dtype=torch.float64
                )
            else:
                u = self.equilibrium_input_tensor().expand(64, -1)
            with torch.no_grad():
                h.update(np.round(self.dynamics(x, u).numpy(), 10).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, object]:
        """Plain-data description (for ``--json`` and tables)."""
        return {
            "name": self.name,
            "states": list(self.state_names),
            "inputs": list(self.input_names),
            "time": self.time,
            "dt": self.dt,
            "domain": self.domain.to_list(),
            "domain_volume": self.domain.volume,
            "equilibrium": list(self.equilibrium),
            "equilibrium_input": list(self.equilibrium_input),
            "input_bounds": self.input_bounds.to_list() if self.input_bounds else None,
            "params": dict(self.symbolic.params) if self.symbolic else {},
            "equations": self.equation_strings(),
            "candidates": self.candidates,
            "description": self.description,
            "source": self.source,
        }

    def equation_strings(self) -> list[str] | None:
        """``["x1' = x2", ...]`` (CT) or ``["x1+ = ...", ...]`` (DT), or None without equations."""
        if self.symbolic is None:
            return None
        mark = "+" if self.is_discrete else "'"
        return [f"{s}{mark} = {e}" for s, e in zip(self.state_names, self.symbolic.dynamics)]

    def __str__(self) -> str:
        kind = f"discrete time, dt = {self.dt:g}" if self.is_discrete else "continuous time"
        return f"System {self.name!r} ({self.n_states} states, {self.n_inputs} inputs, {kind})"

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_equations(cls, name: str, states: Sequence[str], dynamics, domain, **kwargs) -> System:
        """Build a system from equations given as text; see ``lyapcert.systems.spec``.

        Example::

            System.from_equations(
                "pendulum", states=["x1", "x2"],
                dynamics=["x2", "-sin(x1) - b*x2"], params={"b": 0.1},
                domain=[[-3.5, 3.5], [-3, 3]])
        """
        from lyapcert.systems.spec import system_from_spec

        spec = {"name": name, "states": states, "dynamics": dynamics, "domain": domain, **kwargs}
        return system_from_spec(spec)

    @classmethod
    def from_file(cls, path) -> System:
        """Read a system from a TOML file (format in the README)."""
        from lyapcert.systems.spec import load_system_file

        return load_system_file(path)


def _check_names(names: Sequence[str], field_name: str) -> None:
    from lyapcert.systems.equations import RESERVED

    seen = set()
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise SystemDefinitionError(f"expected an identifier, got {name!r}", field_name)
        if name in RESERVED:
            raise SystemDefinitionError(
                f"{name!r} is reserved for a function or constant; rename it", field_name
            )
        if name in seen:
            raise SystemDefinitionError(f"duplicate name {name!r}", field_name)
        seen.add(name)


def _vector(values, length: int, field_name: str, default: float) -> tuple[float, ...]:
    if values is None:
        return (default,) * length
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise SystemDefinitionError(
            f"expected a list of {length} numbers, got {values!r}", field_name
        )
    if len(values) != length:
        raise SystemDefinitionError(
            f"expected {length} numbers, got {len(values)}: {list(values)!r}", field_name
        )
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SystemDefinitionError(
                f"expected finite numbers, got {list(values)!r}", field_name
            )
        out.append(float(v))
    return tuple(out)
