"""``neural-zubov``: a network trained on Zubov's equation with simulation data.

Zubov: ``W(x) = 1 - exp(-V(x))`` with ``grad V . f = -beta phi(x)``, ``phi = |x - x*|^2``, so that
``V(x) = beta * integral_0^inf phi(x(t)) dt`` along the trajectory from ``x`` (finite exactly on the
region of attraction) and ``W < 1`` on it, ``W = 1`` outside. The sublevel sets of ``W`` (the same
as those of ``V``) therefore follow the true ROA. Training (physics-informed):

* data: ``W_target = 1 - exp(-beta * integral phi)``, the integral by the simulator's RK4
  trajectories (points that do not converge get ``W_target = 1``);
* PDE residual on the same points: ``grad W . f + beta phi (1 - W)``.

``V`` is ``certificates.network.LyapunovNetwork`` (positive definite by construction); the
verifier certifies ``V`` (not ``W``) at its largest level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.certificates.candidates import NetworkCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.checkpoint import TrainingSession
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.methods.training import (
    NetworkOptions,
    build_network,
    check_weights,
    labelled_sample,
)
from lyapcert.simulate.integrate import make_stepper, n_steps, vector_field
from lyapcert.systems.system import System


@dataclass
class ZubovOptions(NetworkOptions):
    """Options of the neural-zubov method.

    epochs: optimiser steps (cosine learning-rate decay)
    beta: scale of the Zubov cost (V = beta * integral |x - x*|^2 dt)
    pde_weight: weight of the Zubov residual against the data term
    horizon: simulated time for the cost integral (default: the system's ROA horizon)
    use_quadratic: add quadratic_scale beta e'Pe (A'P + PA = -I: Zubov's V of the linearisation)
    quadratic_scale: share of that quadratic fixed in V (V >= it, so a large share caps the region)
    """

    epochs: int = 3000
    beta: float = 0.05
    pde_weight: float = 1.0
    horizon: float | None = None
    quadratic_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.beta > 0 and self.pde_weight >= 0 and self.quadratic_scale >= 0):
            raise ValueError("beta must be > 0, pde_weight and quadratic_scale >= 0")
        if self.horizon is not None and not self.horizon > 0:
            raise ValueError(f"horizon: expected a number > 0, got {self.horizon}")


def zubov_targets(
    system: System,
    points: torch.Tensor,
    inside: torch.Tensor,
    beta: float,
    horizon: float,
    step: float,
    units: torch.Tensor | None = None,
) -> torch.Tensor:
    """``W_target = 1 - exp(-beta * int_0^T |z(t)|^2 dt)`` by RK4 (trapezoid rule), and 1
    for points outside the true ROA (``inside`` False); ``z = x - x*``, or ``(x - x*) / units``
    (e.g. the box half-widths). Discrete time: the trapezoid sum over the iterates, step ``dt``."""
    steps, h = n_steps(system, horizon, step)
    stepper = make_stepper(system, h)
    x_star = system.equilibrium_tensor()
    scale = torch.ones_like(x_star) if units is None else torch.as_tensor(units).to(x_star)
    x = points[inside].clone()
    cost = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.no_grad():
        prev = (((x - x_star) / scale) ** 2).sum(1)
        for _ in range(steps):
            x = stepper(x)
            now = (((x - x_star) / scale) ** 2).sum(1)
            cost += 0.5 * h * (prev + now)
            prev = now
            if not len(now) or float(now.max()) < 1e-14:
                break
    target = torch.ones(points.shape[0], dtype=torch.float64)
    target[inside] = 1.0 - torch.exp(-beta * cost)
    return target


class NeuralZubovMethod(Method):
    """``neural-zubov``: a network trained on Zubov's equation with simulation data (module
    docstring); options: ``ZubovOptions``."""

    name = "neural-zubov"
    Options = ZubovOptions
    checkpoints = True

    def fit(
        self,
        system: System,
        options: ZubovOptions,
        progress: bool = False,
        checkpoint=None,
    ) -> Fit:
        from lyapcert.simulate.roa import ConvergenceCriterion

        if system.is_discrete:
            raise MethodError("neural-zubov: continuous-time systems only (the PDE uses dV/dt)")
        started = time.perf_counter()
        torch.manual_seed(options.seed)
        n = system.n_states
        P = None
        if options.use_quadratic:
            a = system.linearize()[0]
            P = options.quadratic_scale * options.beta * lyapunov_matrix(a, np.eye(n), False)
        net = build_network(system, options, P)
        pts, inside = labelled_sample(system, options.samples, options.seed, progress)
        crit = ConvergenceCriterion.for_system(system)
        horizon = options.horizon or crit.horizon
        target = zubov_targets(system, pts, inside, options.beta, horizon, crit.step)
        x_star = system.equilibrium_tensor()
        opt = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, options.epochs)
        history: list[dict] = []
        session = TrainingSession(self.name, options.epochs, checkpoint, progress)
        state = session.restore()
        start = 0
        if state is not None:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history, start = state["history"], state["step"] + 1

        def snapshot():
            return {
                "net": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history,
            }

        fx = vector_field(system)(pts).detach()
        phi = ((pts - x_star) ** 2).sum(1)
        phi_floor = 1e-3 * options.beta * float(phi.mean())
        with session:
            for epoch in range(start, options.epochs):
                x = pts.clone().requires_grad_(True)
                v = net(x)
                w = 1.0 - torch.exp(-v)
                (grad_w,) = torch.autograd.grad(w.sum(), x, create_graph=True)
                residual = (grad_w * fx).sum(1) + options.beta * phi * (1.0 - w)
                # relative to the size of the decrease, so that points near x* count as much as
                # far ones (an absolute residual ~|e|^2 would leave the decrease near x* untrained)
                residual = residual / (options.beta * phi + phi_floor)
                loss_data = ((w - target) ** 2).mean()
                loss_pde = (residual[inside] ** 2).mean() if inside.any() else torch.zeros(())
                loss = loss_data + options.pde_weight * loss_pde
                if not torch.isfinite(loss):
                    raise MethodError(
                        f"{self.name}: the loss became {float(loss)} at epoch {epoch}"
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                metrics = {"loss": float(loss.detach())}
                if epoch % 500 == 0 or epoch == options.epochs - 1:
                    history.append(
                        {
                            "epoch": epoch,
                            **metrics,
                            "data": float(loss_data.detach()),
                            "pde": float(loss_pde.detach()),
                        }
                    )
                session.tick(epoch, metrics, snapshot)
            session.finish(snapshot())
        check_weights(net, self.name)
        return Fit(NetworkCandidate(net), time.perf_counter() - started, {"history": history})
