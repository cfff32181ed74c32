"""``neural-lyapunov``: a positive-definite network trained on the Lyapunov risk, with the
verifier's falsifier feeding counterexamples back (counterexample-guided rounds).

Loss on samples of the box labelled by the true ROA (the `lyapcert roa` sample):

* decrease, on points inside the true ROA and on counterexamples:
  ``relu(dV/dt + margin |x - x*|^2)`` (discrete time: ``relu(V(x+) - V(x) + margin |x - x*|^2)``);
* shape: ``relu(1 - V)`` outside the true ROA and ``relu(V - 1)`` inside it, so that the
  sublevel set ``{V <= 1}`` follows the true ROA.

``V`` is ``certificates.network.LyapunovNetwork`` (positive definite by construction), optionally
plus the quadratic of the linearisation. After each round the falsifier proposes violation points
inside ``{V <= 1}``; they join the decrease set. The verifier decides afterwards, as always.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.certificates.candidates import NetworkCandidate
from lyapcert.certificates.network import ACTIVATIONS, LyapunovNetwork
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.quadratic import closed_loop_jacobian, lyapunov_matrix
from lyapcert.methods.training import check_weights, input_function, labelled_sample
from lyapcert.systems.system import System


@dataclass
class NeuralOptions:
    """Options of the neural-lyapunov method.

    width: hidden units per layer of phi
    depth: hidden layers of phi
    activation: tanh, softplus or sigmoid
    epochs: optimiser steps per round
    learning_rate: Adam step size
    samples: training points drawn from the true-ROA sample
    margin: required decrease, dV/dt <= -margin |x - x*|^2 on the training points
    rounds: counterexample-guided rounds
    use_quadratic: add the quadratic of the linearisation to V
    seed: random seed (CPU runs are reproducible)
    """

    width: int = 32
    depth: int = 2
    activation: str = "tanh"
    epochs: int = 1500
    learning_rate: float = 3e-3
    samples: int = 8192
    margin: float = 0.01
    rounds: int = 2
    use_quadratic: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if min(self.width, self.depth, self.epochs, self.samples, self.rounds) < 1:
            raise ValueError("width, depth, epochs, samples and rounds must be positive")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate: expected a number > 0, got {self.learning_rate}")


class NeuralLyapunovMethod(Method):
    name = "neural-lyapunov"
    Options = NeuralOptions

    def fit(
        self, system: System, options: NeuralOptions, progress: bool = False, controller=None
    ) -> Fit:
        from lyapcert.verify.falsify import decrease_function, falsification_points

        started = time.perf_counter()
        torch.manual_seed(options.seed)
        n = system.n_states
        P = None
        if options.use_quadratic:
            try:
                a = closed_loop_jacobian(system, controller)
                P = lyapunov_matrix(a, np.eye(n), system.is_discrete)
                P = P / max(1e-12, float(np.linalg.eigvalsh(P).max()))  # scale: V ~ O(|e|^2)
            except MethodError:
                P = None
        net = LyapunovNetwork(
            n, system.equilibrium, options.width, options.depth, options.activation, P=P
        )
        pts, inside = labelled_sample(system, options.samples, options.seed, progress)
        x_star = system.equilibrium_tensor()
        extra = torch.zeros(0, n, dtype=torch.float64)
        history = []
        for round_ in range(options.rounds):
            self._train(
                system,
                net,
                pts,
                inside,
                extra,
                x_star,
                options,
                controller,
                progress,
                history,
                round_,
            )
            cand = NetworkCandidate(net)
            lo, hi = system.domain.as_tensors()
            fn = decrease_function(system, cand, controller)
            found = falsification_points(fn, lo, hi, n_samples=4096, seed=options.seed + round_)
            with torch.no_grad():
                bad = (fn(found) >= 0) & (cand.value(found) <= 1.0)
            new = found[bad]
            history.append({"round": round_, "counterexamples": int(new.shape[0])})
            if new.shape[0] == 0:
                break
            extra = torch.cat([extra, new[:2048]])
        check_weights(net, "neural-lyapunov")
        return Fit(
            NetworkCandidate(net), time.perf_counter() - started, controller, {"history": history}
        )

    @staticmethod
    def _train(
        system, net, pts, inside, extra, x_star, options, controller, progress, history, round_
    ):
        opt = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
        dec_pts = torch.cat([pts[inside], extra])
        out_pts = pts[~inside]
        in_pts = pts[inside]

        inputs = input_function(system, controller)

        for epoch in range(options.epochs):
            x = dec_pts.clone().requires_grad_(True)
            v = net(x)
            e2 = ((x - x_star) ** 2).sum(1)
            if system.is_discrete:
                dec = net(system.dynamics(x, inputs(x))) - v
            else:
                (grad,) = torch.autograd.grad(v.sum(), x, create_graph=True)
                dec = (grad * system.dynamics(x, inputs(x))).sum(1)
            loss_dec = torch.relu(dec + options.margin * e2).mean()
            loss_out = (
                torch.relu(1.0 - net(out_pts)).mean() if out_pts.shape[0] else torch.zeros(())
            )
            loss_in = torch.relu(net(in_pts) - 1.0).mean() if in_pts.shape[0] else torch.zeros(())
            loss = loss_dec + loss_out + loss_in
            if not torch.isfinite(loss):
                raise MethodError(
                    f"neural-lyapunov: the loss became {float(loss)} at epoch {epoch}"
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if epoch % 250 == 0 or epoch == options.epochs - 1:
                history.append(
                    {
                        "round": round_,
                        "epoch": epoch,
                        "loss": float(loss.detach()),
                        "decrease": float(loss_dec.detach()),
                        "shape": float((loss_out + loss_in).detach()),
                    }
                )
                if progress:
                    from rich.console import Console

                    Console(stderr=True).print(
                        f"neural-lyapunov round {round_ + 1} epoch {epoch}: loss {float(loss):.4g} "
                        f"(decrease {float(loss_dec):.3g}, shape {float(loss_out + loss_in):.3g})"
                    )
