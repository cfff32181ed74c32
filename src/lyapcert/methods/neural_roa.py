"""``neural-roa``: training that enlarges a verified sublevel set with adversarial (PGD)
counterexamples on it (in the spirit of Yang et al., ICML 2024, for autonomous systems).

``V`` is ``certificates.network.LyapunovNetwork`` (positive definite by construction), optionally
plus the quadratic of the linearisation; the target set is ``S = {V <= 1}``. Each epoch:

* adversarial points: a persistent buffer of points in the box is moved by a few steps of
  projected gradient ascent on ``h(x) = min(1 - V(x), dV + margin |x - x*|^2)`` (positive exactly
  where ``x`` lies in ``S`` and violates the decrease; ``dV`` is ``dV/dt``, or ``V(x+) - V(x)``
  in discrete time); a share of the buffer is redrawn uniformly every epoch;
* loss: the decrease violation ``relu(dV + margin |e|^2)`` on the buffer points inside ``S`` and on
  the true-ROA sample inside ``S``; coverage ``relu(V - 1)`` on points of the true ROA (this is
  what enlarges ``S``); exclusion ``relu(1 - V)`` on points outside it, and with a small weight on
  the box's faces (the certified set may not reach them; a large weight fights the coverage where
  the true ROA meets the faces).

After every round the sound verifier certifies the current ``V`` (coarse tolerance): the progress
shows the certified level and its share of the true ROA, and the point that limits the level joins
the buffer. The verifier decides afterwards, as always.
"""

from __future__ import annotations

import copy
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
    face_points,
    input_function,
    labelled_sample,
    normalised_quadratic,
)
from lyapcert.systems.system import System


@dataclass
class NeuralROAOptions(NetworkOptions):
    """Options of the neural-roa method.

    epochs: optimiser steps per round
    learning_rate: Adam step size (cosine decay to 5 % of it over the whole run)
    use_quadratic: add the linearisation's quadratic to V, scaled to 1/2 at the farthest true-ROA point
    rounds: training rounds, each followed by a verification of the current V
    margin: required decrease, dV <= -margin |x - x*|^2 inside {V <= 1}
    adversarial_points: size of the PGD buffer
    pgd_steps: projected gradient steps on the buffer per epoch
    pgd_step: PGD step as a fraction of the box width
    refresh: share of the buffer redrawn uniformly each epoch
    coverage_weight: weight of relu(V - 1) on the true ROA (enlarges {V <= 1})
    face_weight: weight of relu(1 - V) on the box's faces (the set may not reach them)
    verify_seconds: time limit of each in-training verification (0: skip them)
    """

    epochs: int = 600
    rounds: int = 4
    margin: float = 0.01
    adversarial_points: int = 2048
    pgd_steps: int = 3
    pgd_step: float = 0.01
    refresh: float = 0.1
    coverage_weight: float = 1.0
    face_weight: float = 0.02
    verify_seconds: float = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.rounds, self.adversarial_points) < 1 or self.pgd_steps < 0:
            raise ValueError("rounds and adversarial_points must be positive, pgd_steps >= 0")
        if not (0 <= self.refresh <= 1 and self.margin >= 0 and self.coverage_weight >= 0):
            raise ValueError("refresh must lie in [0, 1]; margin and coverage_weight >= 0")
        if not self.face_weight >= 0:
            raise ValueError(f"face_weight: expected a number >= 0, got {self.face_weight}")
        if not (self.pgd_step > 0 and self.verify_seconds >= 0):
            raise ValueError("pgd_step must be > 0 and verify_seconds >= 0")


class NeuralROAMethod(Method):
    name = "neural-roa"
    Options = NeuralROAOptions
    checkpoints = True

    def fit(
        self,
        system: System,
        options: NeuralROAOptions,
        progress: bool = False,
        controller=None,
        checkpoint=None,
    ) -> Fit:
        started = time.perf_counter()
        torch.manual_seed(options.seed)
        gen = torch.Generator().manual_seed(options.seed)
        n = system.n_states
        pts, inside = labelled_sample(system, options.samples, options.seed, progress, controller)
        P = None
        if options.use_quadratic:
            P = normalised_quadratic(system, controller, pts[inside])
        net = build_network(system, options, P)
        lo, hi = system.domain.as_tensors()
        x_star = system.equilibrium_tensor()
        inputs = input_function(system, controller)
        opt = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
        total = options.rounds * options.epochs
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, total, eta_min=0.05 * options.learning_rate
        )
        buffer = lo + torch.rand(
            options.adversarial_points, n, generator=gen, dtype=torch.float64
        ) * (hi - lo)
        history: list[dict] = []
        best = None  # (share, state dict) of the best verified round
        session = TrainingSession(self.name, total, checkpoint, progress)
        state = session.restore()
        start = 0
        if state is not None:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            buffer, history, start = state["buffer"], state["history"], state["step"] + 1
            gen.set_state(state["generator"])
            if state["best_net"] is not None:
                best = (state["best_share"], state["best_net"])

        def snapshot():
            return {
                "net": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "buffer": buffer,
                "history": history,
                "generator": gen.get_state(),
                "best_net": None if best is None else best[1],
                "best_share": 0.0 if best is None else best[0],
            }

        # points on the box's faces: V >= 1 there, with the small weight face_weight
        faces = face_points(system, max(64, options.samples // 8), options.seed)
        in_pts, out_pts = pts[inside], pts[~inside]
        step_size = options.pgd_step * (hi - lo)
        with session:
            for step in range(start, total):
                buffer = self._attack(system, net, buffer, lo, hi, step_size, options, inputs, gen)
                loss, parts = self._loss(
                    system, net, buffer, in_pts, out_pts, faces, x_star, options, inputs
                )
                if not torch.isfinite(loss):
                    raise MethodError(f"{self.name}: the loss became {float(loss)} at epoch {step}")
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                metrics = {"loss": float(loss.detach())}
                if step % 100 == 0:
                    history.append({"epoch": step, **metrics, **parts})
                if (step + 1) % options.epochs == 0 and options.verify_seconds > 0:
                    record, point = self._verify_round(system, net, controller, options)
                    history.append({"epoch": step, **record})
                    metrics.update(level=record["level"] or 0.0, roa_share=record["roa_share"])
                    if record["verified"] and (best is None or record["roa_share"] > best[0]):
                        best = (record["roa_share"], copy.deepcopy(net.state_dict()))
                    if point is not None:
                        buffer[int(torch.randint(len(buffer), (1,), generator=gen))] = point
                session.tick(step, metrics, snapshot)
            session.finish(snapshot())
        if best is not None:
            net.load_state_dict(best[1])
        check_weights(net, self.name)
        return Fit(
            NetworkCandidate(net), time.perf_counter() - started, controller, {"history": history}
        )

    @staticmethod
    def _violation(system, net, x, x_star, margin, inputs):
        """``dV + margin |x - x*|^2`` ``[k]`` (``x`` requires grad in continuous time)."""
        return decrease(system, net, x, inputs) + margin * ((x - x_star) ** 2).sum(1)

    def _attack(self, system, net, buffer, lo, hi, step_size, options, inputs, gen):
        """PGD ascent of ``min(1 - V, violation)`` on the buffer; redraw a share uniformly."""
        x_star = system.equilibrium_tensor()
        z = buffer.detach()
        for _ in range(options.pgd_steps):
            z = z.clone().requires_grad_(True)
            h = torch.minimum(
                1.0 - net(z), self._violation(system, net, z, x_star, options.margin, inputs)
            )
            (grad,) = torch.autograd.grad(h.sum(), z)
            with torch.no_grad():
                grad = torch.nan_to_num(grad)
                z = torch.minimum(torch.maximum(z + step_size * torch.sign(grad), lo), hi)
        k = int(options.refresh * len(z))
        if k:
            idx = torch.randperm(len(z), generator=gen)[:k]
            z[idx] = lo + torch.rand(k, len(lo), generator=gen, dtype=z.dtype) * (hi - lo)
        return z.detach()

    def _loss(self, system, net, buffer, in_pts, out_pts, faces, x_star, options, inputs):
        x = torch.cat([buffer, in_pts]).clone().requires_grad_(True)
        viol = self._violation(system, net, x, x_star, options.margin, inputs)
        inside_s = (net(x) <= 1.0).detach()
        loss_dec = (torch.relu(viol) * inside_s).sum() / max(1, int(inside_s.sum()))
        loss_cov = torch.relu(net(in_pts) - 1.0).mean() if len(in_pts) else torch.zeros(())
        loss_out = torch.relu(1.0 - net(out_pts)).mean() if len(out_pts) else torch.zeros(())
        loss_faces = torch.relu(1.0 - net(faces)).mean()
        loss = loss_dec + options.coverage_weight * loss_cov + loss_out
        loss = loss + options.face_weight * loss_faces
        parts = {
            "decrease": float(loss_dec.detach()),
            "coverage": float(loss_cov.detach()),
            "exclusion": float(loss_out.detach()),
            "faces": float(loss_faces.detach()),
        }
        return loss, parts

    def _verify_round(self, system, net, controller, options):
        """Certify a copy of the current ``V`` (coarse tolerance); the limiting point, if any."""
        from lyapcert.certify import region_share
        from lyapcert.verify import VerifyOptions, verify_candidate

        cand = NetworkCandidate(copy.deepcopy(net))
        result = verify_candidate(
            system,
            cand,
            controller=controller,
            options=VerifyOptions(
                time_limit=options.verify_seconds, level_tolerance=1e-2, falsify_samples=2048
            ),
        )
        share = 0.0
        if result.verified and result.level is not None:
            share = region_share(system, cand, result.level)[1]
        point = None
        cx = result.counterexample
        if cx is not None and cx.get("point") is not None:
            point = torch.as_tensor(cx["point"], dtype=torch.float64).reshape(-1)
        record = {
            "verified": bool(result.verified),
            "level": result.level,
            "roa_share": float(share),
            "verify_seconds": result.seconds,
        }
        return record, point
