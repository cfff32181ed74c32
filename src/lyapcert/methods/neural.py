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

import time
from dataclasses import dataclass

import torch

from lyapcert.certificates.candidates import NetworkCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.checkpoint import TrainingSession
from lyapcert.methods.training import (
    NetworkOptions,
    build_network,
    check_weights,
    decrease,
    labelled_sample,
    normalised_quadratic,
)
from lyapcert.systems.system import System


@dataclass
class NeuralOptions(NetworkOptions):
    """Options of the neural-lyapunov method (and those of every neural method).

    margin: required decrease, dV/dt <= -margin |x - x*|^2 on the training points
    rounds: counterexample-guided rounds (epochs each)
    """

    margin: float = 0.01
    rounds: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1 or self.margin < 0:
            raise ValueError("rounds must be positive and margin >= 0")


class NeuralLyapunovMethod(Method):
    """``neural-lyapunov``: a positive-definite network trained on the Lyapunov risk, with the
    falsifier's counterexamples fed back (module docstring); options: ``NeuralOptions``."""

    name = "neural-lyapunov"
    Options = NeuralOptions
    checkpoints = True

    def fit(
        self,
        system: System,
        options: NeuralOptions,
        progress: bool = False,
        checkpoint=None,
    ) -> Fit:
        from lyapcert.verify.falsify import decrease_function, falsification_points

        started = time.perf_counter()
        torch.manual_seed(options.seed)
        n = system.n_states
        pts, inside = labelled_sample(system, options.samples, options.seed, progress)
        # lambda_max(P) = 1: V >= e'Pe keeps the decrease near x* (scaling P down to the true ROA,
        # as neural-roa does, left vanderpol falsified near x* without the PGD buffer)
        P = normalised_quadratic(system) if options.use_quadratic else None
        net = build_network(system, options, P)
        extra = torch.zeros(0, n, dtype=torch.float64)
        history: list[dict] = []
        session = TrainingSession(self.name, options.rounds * options.epochs, checkpoint, progress)
        state = session.restore()
        start_step = 0
        if state is not None:
            net.load_state_dict(state["net"])
            # a finished run was saved at the last step: nothing is left to train
            extra, history, start_step = state["extra"], state["history"], state["step"] + 1
        with session:
            for round_ in range(start_step // options.epochs, options.rounds):
                first = (
                    start_step - round_ * options.epochs
                    if round_ == start_step // options.epochs
                    else 0
                )
                self._train(
                    system,
                    net,
                    pts,
                    inside,
                    extra,
                    options,
                    session,
                    history,
                    round_,
                    first,
                    state,
                )
                state = None
                cand = NetworkCandidate(net)
                lo, hi = system.domain.as_tensors()
                fn = decrease_function(system, cand)
                found = falsification_points(fn, lo, hi, n_samples=4096, seed=options.seed + round_)
                with torch.no_grad():
                    bad = (fn(found) >= 0) & (cand.value(found) <= 1.0)
                new = found[bad]
                history.append({"round": round_, "counterexamples": int(new.shape[0])})
                session.metrics["counterexamples"] = float(new.shape[0])
                if new.shape[0] == 0:
                    break
                extra = torch.cat([extra, new[:2048]])
            session.finish({"net": net.state_dict(), "extra": extra, "history": history})
        check_weights(net, self.name)
        return Fit(NetworkCandidate(net), time.perf_counter() - started, {"history": history})

    def _train(
        self,
        system,
        net,
        pts,
        inside,
        extra,
        options,
        session,
        history,
        round_,
        first,
        state,
    ):
        opt = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
        if state is not None and first > 0:
            opt.load_state_dict(state["optimizer"])
        dec_pts = torch.cat([pts[inside], extra])
        out_pts = pts[~inside]
        in_pts = pts[inside]
        x_star = system.equilibrium_tensor()

        for epoch in range(first, options.epochs):
            x = dec_pts.clone().requires_grad_(True)
            e2 = ((x - x_star) ** 2).sum(1)
            loss_dec = torch.relu(decrease(system, net, x) + options.margin * e2).mean()
            loss_out = (
                torch.relu(1.0 - net(out_pts)).mean() if out_pts.shape[0] else torch.zeros(())
            )
            loss_in = torch.relu(net(in_pts) - 1.0).mean() if in_pts.shape[0] else torch.zeros(())
            loss = loss_dec + loss_out + loss_in
            if not torch.isfinite(loss):
                raise MethodError(f"{self.name}: the loss became {float(loss)} at epoch {epoch}")
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
            session.tick(
                round_ * options.epochs + epoch,
                {"round": round_ + 1, "loss": float(loss.detach())},
                lambda: {
                    "net": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "extra": extra,
                    "history": history,
                },
            )
