"""``neural-roa``: training that enlarges a verified sublevel set with adversarial (PGD)
counterexamples on it (in the spirit of Yang et al., ICML 2024, for autonomous systems).

``V`` is ``certificates.network.LyapunovNetwork`` (positive definite by construction), optionally
plus the quadratic of the linearisation, or with ``v_shape="quadratic"`` a trained quadratic
``(x - x*)' P (x - x*)`` (``training.TrainableQuadratic``, saved as a quadratic certificate); the
target set is ``S = {V <= 1}``. With ``verify_v="linearisation"`` the trained ``V`` only guides
the training: each verification gets the quadratic of the trained closed loop's linearisation
(``linearisation_candidate``). Each epoch:

* adversarial points: a persistent buffer of points in the box is moved by a few steps of
  projected gradient ascent on ``h(x) = min(1 - V(x), dV + margin |z|^2)`` (``z = x - x*``, or in
  box units ``(x - x*) / half-widths`` with ``scale_inputs``; positive exactly
  where ``x`` lies in ``S`` and violates the decrease; ``dV`` is ``dV/dt``, or ``V(x+) - V(x)``
  in discrete time); a share of the buffer is redrawn uniformly every epoch;
* loss: the decrease violation ``relu(dV + margin |z|^2)`` on the buffer points inside ``S`` and on
  the true-ROA sample inside ``S``; coverage ``relu(V - 1)`` on points of the true ROA (this is
  what enlarges ``S``); exclusion ``relu(1 - V)`` on points outside it, and with a small weight on
  the box's faces (the certified set may not reach them; a large weight fights the coverage where
  the true ROA meets the faces);
* local (by default only when the controller is trained): the linearisation at ``x*`` must
  decrease ``V``'s quadratic part, ``lambda_max(M) <= -2 margin`` (in the coordinates ``z``) with
  ``M = A'H + HA`` (discrete time ``A'HA - H``), ``H`` the Hessian of ``V`` and ``A`` the closed
  loop's Jacobian at ``x*``: points that close are never sampled, yet the verifier needs the
  decrease down to the radius of its local certificate.

After every round the sound verifier certifies the current ``V`` (coarse tolerance): the progress
shows the certified level and its share of the true ROA, and the point that limits the level joins
the buffer. The verifier decides afterwards, as always.

Joint synthesis (``train_controller``, set by ``--controller neural``): the system is a closed
loop whose controller is a ``NeuralController`` (starting as the saturated LQR); its weights
(``system.controller``) are trained together with ``V``: the decrease goes through the closed
loop's dynamics ``f(x, k(x))`` (or ``F(x, k(x))`` in discrete time). The labels
of the closed loop's true ROA are drawn afresh for the current controller (``samples`` uniform
points, simulated) before every round, so the coverage target grows with the controller.

Fine-tuning stage (``finetune_rounds``; by default 8 rounds in joint synthesis, 4 with a quadratic
``V``): the best verified round's ``V`` (and controller) is trained on the band ``S = {V <= rho}``
it is to be verified on: PGD on ``min(rho - V, violation)``, the verifier's limiting point and the
falsifier's violations in ``S`` kept as counterexamples (their decrease has its own mean in the
loss, weighted by ``counterexample_weight``), coverage only of the true-ROA points already in ``S``;
``rho`` follows ``BandLevel`` (from 0.95 times the least ``V`` of a non-converging or face point;
raised when a round verifies all of ``S``, narrowed when rounds stall). When that least ``V`` caps
the raise (the set touches the box's faces or the true ROA's edge), the band is reshaped: the push
asks ``V >= finetune_raise * rho`` at the non-converging and face points below it (a mean over those
points alone) and the coverage pulls the true-ROA points up to that level into ``S``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.certificates.candidates import NetworkCandidate, QuadraticCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.methods.checkpoint import TrainingSession
from lyapcert.methods.training import (
    NetworkOptions,
    TrainableQuadratic,
    build_network,
    build_quadratic,
    check_weights,
    decrease,
    face_points,
    half_widths,
    labelled_sample,
    normalised_quadratic,
    uses_box_units,
)
from lyapcert.systems.system import System


@dataclass
class NeuralROAOptions(NetworkOptions):
    """Options of the neural-roa method.

    epochs: optimiser steps per round
    learning_rate: Adam step size (cosine decay to 5 % of it over the whole run)
    scale_inputs: box units (auto, on, off): network inputs and the margin's z in half-widths
    use_quadratic: add the linearisation's quadratic to V, scaled to 1/2 at the farthest true-ROA point
    rounds: training rounds, each followed by a verification of the current V
    margin: required decrease, dV <= -margin |z|^2 inside {V <= 1}, z = x - x* (box units:
        (x - x*) / half-widths)
    adversarial_points: size of the PGD buffer
    pgd_steps: projected gradient steps on the buffer per epoch
    pgd_step: PGD step as a fraction of the box width
    refresh: share of the buffer redrawn uniformly each epoch
    coverage_weight: weight of relu(V - 1) on the true ROA (enlarges {V <= 1})
    face_weight: weight of relu(1 - V) on the box's faces (the set may not reach them)
    local_weight: weight of relu(lambda_max(DMD) + 2 margin) (D = I, in box units the half-widths),
        the decrease of V's quadratic part along the linearisation; default (none): 1 when the
        controller is trained (100 with v_shape=quadratic), 0 otherwise (on the autonomous
        registry it cost up to 5 points of the true ROA on five systems and gained 7 on
        nonpoly2_3d)
    verify_seconds: time limit of each in-training verification (0: skip them); default (none):
        120 s for a quadratic V in 4 or more states, else 20 s
    verify_boxes: box budget of each in-training verification (default: none; set it, with a
        generous verify_seconds, to make training independent of the machine's speed)
    train_controller: train the (neural) controller's weights together with V
    controller_width: hidden units per layer of the controller made by --controller neural
    controller_depth: hidden layers of that controller
    margin_kind: "box" (dV <= -margin |z|^2, above) or "value": dV <= -margin V(x) (discrete time
        V(x+) - V(x) <= -margin V(x)), a decrease that does not vanish relative to V near x*
    zubov_sampling: each round, estimate the closed loop's Zubov function
        W = 1 - exp(-zubov_beta * integral |z(t)|^2 dt) on the uniform sample of the training
        domain by simulation (W = 1 where it does not converge) and draw boundary_share of the
        coverage/exclusion sample and of the buffer's refreshed points near the estimated ROA's
        boundary (training.boundary_points: W in the top 1 - boundary_quantile of the converging
        points, and the non-converging points nearest to converging ones)
    boundary_share: share of those points drawn near the boundary
    boundary_quantile: the boundary band: W at or above this quantile of the converging points
    zubov_beta: scale of the Zubov cost (z as for the margin; the band depends on it only by ties)
    expand_domain: train on a domain that grows: the box around x* scaled by domain_start
        (intersected with the box), times domain_growth after a round whose closed-loop sample
        converges on at least expand_when of the domain, up to the whole box; the samples and the
        PGD buffer lie in it (the verifier still certifies on the whole box)
    domain_start: first domain's scale (half-widths relative to the box's)
    domain_growth: factor of each growth
    expand_when: share of the current domain's sample that must converge before it grows
    finetune_rounds: rounds of the fine-tuning stage after the rounds above (0: none): the best
        verified V (and controller) is trained on the band {V <= rho} it is to be verified on,
        with PGD on that set and the verifier's and falsifier's counterexamples in it, then
        verified again; default (none): 8 when the controller is trained (4 with
        v_shape=quadratic, whose verifications cost minutes), 0 otherwise (the autonomous
        registry's results are those measured without it)
    finetune_epochs: optimiser steps per fine-tuning round
    finetune_level: a fixed rho (default: none, rho starts at 0.95 times the least V of a sample
        point that does not converge or of a face point, at most 1 and at least the verified
        level, and follows BandLevel: raised after a round that verifies all of it, narrowed
        after two stalled rounds)
    finetune_raise: factor rho grows by (times the verified level) after a round verified at rho;
        when the cap (above) cuts that raise, V is asked to reach finetune_raise * rho at the
        non-converging and face points and the true-ROA points below that level to come into S
    counterexamples: capacity of the fine-tuning stage's counterexample set (oldest dropped)
    counterexample_weight: weight of the counterexamples' own decrease term, the mean of
        relu(violation) over those in the band, added to the mean over the buffer and the true-ROA
        points (0: pooled with them, where a few dozen among thousands are drowned out; on
        inverted_pendulum-small-wide they lie where gravity nearly beats the torque bound and
        their violations are 1e-5)
    v_shape: "network" (V as above) or "quadratic": V = (x - x*)' P (x - x*) with P = L L' + eps I
        trained (training.TrainableQuadratic, starting at the linearisation's quadratic), saved
        as a quadratic certificate: a V with no network to bound, the shape that verifies in
        4 states (in 6: verify_v; width, depth, activation and use_quadratic do not apply);
        "auto" (default): quadratic for a trained controller in 4 or more states, network
        otherwise
    verify_v: the V each verification (in training and at the end) is given: "trained" (default)
        or "linearisation": (x - x*)' P (x - x*) with A'P + PA = -I (discrete time A'PA - P = -I),
        A the trained closed loop's Jacobian at x*, whose decrease near x* is perfectly
        conditioned (a trained quadratic's was 55 to 210 times worse in 6 states after the best
        diagonal scaling, and verified nothing there); the trained V then only guides the
        training, and the fine-tuning stage (a band of the trained V) is off by default
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
    local_weight: float | None = None
    verify_seconds: float | None = None
    verify_boxes: int | None = None
    train_controller: bool = False
    controller_width: int = 16
    controller_depth: int = 2
    margin_kind: str = "box"
    zubov_sampling: bool = False
    boundary_share: float = 0.5
    boundary_quantile: float = 0.8
    zubov_beta: float = 0.05
    expand_domain: bool = False
    domain_start: float = 0.25
    domain_growth: float = 1.5
    expand_when: float = 0.9
    finetune_rounds: int | None = None
    finetune_epochs: int = 300
    finetune_level: float | None = None
    finetune_raise: float = 1.2
    counterexamples: int = 1024
    counterexample_weight: float = 10.0
    v_shape: str = "auto"
    verify_v: str = "trained"

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.rounds, self.adversarial_points) < 1 or self.pgd_steps < 0:
            raise ValueError("rounds and adversarial_points must be positive, pgd_steps >= 0")
        if not (0 <= self.refresh <= 1 and self.margin >= 0 and self.coverage_weight >= 0):
            raise ValueError("refresh must lie in [0, 1]; margin and coverage_weight >= 0")
        if not (self.face_weight >= 0 and (self.local_weight is None or self.local_weight >= 0)):
            raise ValueError("face_weight and local_weight: expected numbers >= 0")
        if self.verify_boxes is not None and self.verify_boxes < 1:
            raise ValueError(f"verify_boxes: expected a positive number, got {self.verify_boxes}")
        if not (self.pgd_step > 0 and (self.verify_seconds is None or self.verify_seconds >= 0)):
            raise ValueError("pgd_step must be > 0 and verify_seconds >= 0")
        if min(self.controller_width, self.controller_depth) < 1:
            raise ValueError("controller_width and controller_depth must be positive")
        if self.v_shape not in V_SHAPES:
            raise ValueError(
                f"v_shape: expected one of {', '.join(V_SHAPES)}, got {self.v_shape!r}"
            )
        if self.verify_v not in VERIFY_VS:
            raise ValueError(
                f"verify_v: expected one of {', '.join(VERIFY_VS)}, got {self.verify_v!r}"
            )
        if self.verify_v == "linearisation" and (self.finetune_rounds or 0) > 0:
            raise ValueError(
                "finetune_rounds: the fine-tuning band is a level of the trained V, which "
                "verify_v=linearisation does not verify; set finetune_rounds=0"
            )
        if self.margin_kind not in MARGIN_KINDS:
            raise ValueError(
                f"margin_kind: expected one of {', '.join(MARGIN_KINDS)}, got {self.margin_kind!r}"
            )
        for name in ("boundary_share", "boundary_quantile", "expand_when"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a number in [0, 1], got {getattr(self, name)}")
        if not (self.zubov_beta > 0 and 0 < self.domain_start <= 1 and self.domain_growth > 1):
            raise ValueError("zubov_beta must be > 0, domain_start in (0, 1], domain_growth > 1")
        if (self.finetune_rounds or 0) < 0 or min(self.finetune_epochs, self.counterexamples) < 1:
            raise ValueError("finetune_rounds >= 0; finetune_epochs and counterexamples > 0")
        if self.finetune_level is not None and not self.finetune_level > 0:
            raise ValueError(f"finetune_level: expected a number > 0, got {self.finetune_level}")
        if not self.counterexample_weight >= 0:
            raise ValueError(
                f"counterexample_weight: expected a number >= 0, got {self.counterexample_weight}"
            )
        if not self.finetune_raise >= 1:
            raise ValueError(f"finetune_raise: expected a number >= 1, got {self.finetune_raise}")

    def local_term_weight(self) -> float:
        """``local_weight``, its default resolved: 0 for an autonomous system; with a trained
        controller 1, or 100 for a quadratic ``V`` (its local term is small beside the decrease
        term, and at weight 1 training traded the linearisation's stability for it: on
        ``cartpole-wide`` the trained loop's linearisation had an eigenvalue 0.42)."""
        if self.local_weight is not None:
            return self.local_weight
        if not self.train_controller:
            return 0.0
        return 100.0 if self.v_shape == "quadratic" else 1.0

    def tuning_rounds(self) -> int:
        """``finetune_rounds``, its default resolved: 0 for an autonomous system; with a trained
        controller 8, or 4 for a quadratic ``V`` (each round's verification costs minutes in 4-6
        states)."""
        if self.finetune_rounds is None:
            if not self.train_controller or self.verify_v == "linearisation":
                return 0
            return 4 if self.v_shape == "quadratic" else 8
        return self.finetune_rounds

    def for_system(self, system: System) -> NeuralROAOptions:
        """These options with the system-dependent defaults resolved: ``v_shape="auto"`` is
        ``"quadratic"`` for a trained controller in 4 or more states (a network ``V`` never
        verified there: ``cartpole-wide``), else ``"network"``; ``verify_seconds=None`` is 120 s
        for a quadratic ``V`` in 4 or more states (each verification must cross the band down to
        the local certificate in 4-6 dimensions), else 20 s."""
        shape = self.v_shape
        wide = system.n_states >= 4
        if shape == "auto":
            shape = "quadratic" if self.train_controller and wide else "network"
        seconds = self.verify_seconds
        if seconds is None:
            seconds = 120.0 if shape == "quadratic" and wide else 20.0
        return dataclasses.replace(self, v_shape=shape, verify_seconds=seconds)


MARGIN_KINDS = ("box", "value")
V_SHAPES = ("auto", "network", "quadratic")
VERIFY_VS = ("trained", "linearisation")


class NeuralROAMethod(Method):
    """``neural-roa``: training that enlarges a verified sublevel set with adversarial
    counterexamples, the controller too in joint synthesis (module docstring); options:
    ``NeuralROAOptions``."""

    name = "neural-roa"
    Options = NeuralROAOptions
    checkpoints = True

    def fit(
        self,
        system: System,
        options: NeuralROAOptions,
        progress: bool = False,
        checkpoint=None,
    ) -> Fit:
        started = time.perf_counter()
        options = options.for_system(system)
        torch.manual_seed(options.seed)
        gen = torch.Generator().manual_seed(options.seed)
        n = system.n_states
        train_k = options.train_controller
        if train_k:
            _check_trainable(system.controller, self.name)
            pts, inside = closed_loop_sample(system, options.samples, options.seed)
        else:
            pts, inside = labelled_sample(system, options.samples, options.seed, progress)
        if options.v_shape == "quadratic":
            net = build_quadratic(system, options, normalised_quadratic(system, pts[inside]))
        else:
            P = normalised_quadratic(system, pts[inside]) if options.use_quadratic else None
            net = build_network(system, options, P)
        lo, hi = system.domain.as_tensors()
        x_star = system.equilibrium_tensor()
        # the training domain (expand_domain: a growing box around x*; else the box) and, with
        # zubov_sampling or expand_domain, the labelled sample drawn in it (pool: boundary points)
        domain = TrainingDomain(system, options)
        dlo, dhi = domain.bounds()
        pool = None
        resample = options.zubov_sampling or options.expand_domain
        domain_roa = None
        if resample:
            pts, inside, pool, domain_roa = self._domain_sample(system, options, domain, 0, gen)
        # the trained weights: V's, and the closed loop's controller's with train_controller
        trained = {"k": system.controller} if train_k else {}
        model = torch.nn.ModuleDict({"V": net, **trained})
        opt = torch.optim.Adam(model.parameters(), lr=options.learning_rate)
        main_total = options.rounds * options.epochs
        total = main_total + options.tuning_rounds() * options.finetune_epochs
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, total, eta_min=0.05 * options.learning_rate
        )
        buffer = dlo + torch.rand(
            options.adversarial_points, n, generator=gen, dtype=torch.float64
        ) * (dhi - dlo)
        history: list[dict] = []
        best = None  # (share, state dict, level, volume) of the best verified round
        # the fine-tuning stage's BandLevel (rho's schedule; None before the stage): the training
        # works on S = {V <= 1}, in the stage on S = {V <= rho}
        band = None
        cex = torch.zeros(0, n, dtype=torch.float64)  # the fine-tuning stage's counterexamples
        kept = None  # its true-ROA points kept in S (the coverage term asks only for these)
        session = TrainingSession(self.name, total, checkpoint, progress)
        state = session.restore()
        start = 0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            buffer, history, start = state["buffer"], state["history"], state["step"] + 1
            gen.set_state(state["generator"])
            if state["labels"] is not None:
                pts, inside = state["labels"]
            if resample:
                domain.scale, pool, domain_roa = state["domain"]
                dlo, dhi = domain.bounds()
            if state["best_model"] is not None:
                best = (
                    state["best_share"],
                    state["best_model"],
                    state.get("best_level"),
                    state.get("best_volume", 0.0),
                )
            if state.get("finetune") is not None:
                band_state, cex, kept = state["finetune"]
                if band_state is not None:
                    band = BandLevel(options, *band_state)
                    dlo, dhi = lo, hi

        def snapshot():
            return {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "buffer": buffer,
                "history": history,
                "generator": gen.get_state(),
                "labels": (pts, inside) if train_k or resample else None,
                "domain": (domain.scale, pool, domain_roa) if resample else None,
                "best_model": None if best is None else best[1],
                "best_share": 0.0 if best is None else best[0],
                "best_level": None if best is None else best[2],
                "best_volume": 0.0 if best is None else best[3],
                "finetune": (None if band is None else band.state(), cex, kept),
            }

        # points on the box's faces: V >= 1 there, with the small weight face_weight
        faces = face_points(system, max(64, options.samples // 8), options.seed)
        if resample and not history:  # the first domain (a resumed run has it in its history)
            history.append({"epoch": 0, **domain.record(), "domain_roa": domain_roa})
        in_pts, out_pts = pts[inside], pts[~inside]
        if kept is not None:
            in_pts = in_pts[kept]
        step_size = options.pgd_step * (hi - lo)
        with session:
            for step in range(start, total):
                if step == main_total and band is None:  # the fine-tuning stage begins
                    if best is not None:  # it tunes the best verified V (and controller)
                        model.load_state_dict(best[1])
                    domain.scale = domain.full  # the band may reach anywhere in the box
                    dlo, dhi = lo, hi
                    if resample:
                        pts, inside, pool, domain_roa = self._domain_sample(
                            system, options, domain, options.rounds + 104729, gen
                        )
                    elif train_k:  # labels of the (best) controller now trained
                        pts, inside = closed_loop_sample(
                            system, options.samples, options.seed + options.rounds
                        )
                    out_pts = pts[~inside]
                    rho = self._finetune_level(net, out_pts, faces, best, options)
                    band = BandLevel(options, rho, 0.0 if best is None else best[2] or 0.0)
                    kept, in_pts = self._kept(net, pts[inside], band.rho)
                    buffer = lo + torch.rand(buffer.shape, generator=gen, dtype=buffer.dtype) * (
                        hi - lo
                    )
                    history.append({"epoch": step, "stage": "finetune", "finetune_level": band.rho})
                level = 1.0 if band is None else band.rho
                buffer = self._attack(
                    system, net, buffer, dlo, dhi, step_size, options, gen, pool, level
                )
                exclude = level if band is None else band.exclusion_level
                loss, parts = self._loss(
                    system,
                    net,
                    buffer,
                    in_pts,
                    out_pts,
                    faces,
                    x_star,
                    options,
                    level,
                    cex,
                    exclude,
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
                if band is not None:
                    end_of_round = (step + 1 - main_total) % options.finetune_epochs == 0
                else:
                    end_of_round = (step + 1) % options.epochs == 0
                if end_of_round and options.verify_seconds > 0:
                    record, point = self._verify_round(system, net, options)
                    history.append({"epoch": step, **record})
                    metrics.update(
                        level=record["level"] or 0.0,
                        roa_share=record["roa_share"],
                        volume=record["volume"],
                    )
                    if record["verified"] and (best is None or _better(record, best)):
                        best = (
                            record["roa_share"],
                            copy.deepcopy(model.state_dict()),
                            record["level"],
                            record["volume"],
                        )
                    if point is not None:
                        buffer[int(torch.randint(len(buffer), (1,), generator=gen))] = point
                    if band is not None:  # counterexamples in the band; rho's schedule
                        found = self._band_counterexamples(
                            system, net, level, lo, hi, options, step
                        )
                        if point is not None and float(net(point[None]).detach()) <= level:
                            found = torch.cat([point[None], found])
                        cex = torch.cat([found, cex])[: options.counterexamples]
                        proven = record["level"] if record["verified"] else None
                        cap = self._finetune_level(net, out_pts, faces, None, options)
                        if band.after_round(proven, cap) or band.capped:
                            # the true-ROA points to keep in S (capped: also pull in the shell
                            # up to the exclusion level, while the push raises V beyond it)
                            kept, in_pts = self._kept(net, pts[inside], band.exclusion_level)
                        metrics.update(rho=band.rho, counterexamples=len(cex))
                        history.append(
                            {
                                "epoch": step,
                                "finetune_level": band.rho,
                                "capped": band.capped,
                                "counterexamples": len(cex),
                            }
                        )
                if resample and end_of_round and step + 1 < main_total:
                    round_no = (step + 1) // options.epochs
                    if train_k:  # the closed loop changed: a fresh sample of the domain
                        pts, inside, pool, domain_roa = self._domain_sample(
                            system, options, domain, round_no, gen
                        )
                    if domain.grow(domain_roa):  # most of the domain converges: a larger one
                        dlo, dhi = domain.bounds()
                        pts, inside, pool, domain_roa = self._domain_sample(
                            system, options, domain, round_no + 7919, gen
                        )
                    in_pts, out_pts = pts[inside], pts[~inside]
                    history.append({"epoch": step, **domain.record(), "domain_roa": domain_roa})
                    metrics.update(domain=domain.scale, domain_roa=domain_roa)
                elif train_k and end_of_round and step + 1 < main_total:
                    # the closed loop changed: fresh labels of its true ROA for the next round
                    round_seed = options.seed + (step + 1) // options.epochs
                    pts, inside = closed_loop_sample(system, options.samples, round_seed)
                    in_pts, out_pts = pts[inside], pts[~inside]
                    metrics["closed_loop_roa"] = float(inside.double().mean())
                session.tick(step, metrics, snapshot)
            session.finish(snapshot())
        if best is not None:
            model.load_state_dict(best[1])
        check_weights(model, self.name)
        return Fit(
            candidate_of(net, system, options),
            time.perf_counter() - started,
            {"history": history, "trained_controller": train_k},
        )

    @staticmethod
    def _domain_sample(system, options, domain, round_no, gen):
        """``(points, inside, pool, roa share)``: ``samples`` uniform points of the training domain
        labelled by simulation (share: of them, converging); with ``zubov_sampling``
        ``boundary_share`` of them are replaced by points drawn near the estimated ROA's boundary
        (``boundary_points`` on the Zubov estimate), which are also the ``pool`` the buffer's
        refreshed points come from (``None`` without it)."""
        from lyapcert.methods.training import boundary_points
        from lyapcert.methods.zubov import zubov_targets
        from lyapcert.simulate.roa import ConvergenceCriterion

        dlo, dhi = domain.bounds()
        seed = options.seed + round_no
        pts, inside = closed_loop_sample(system, options.samples, seed, dlo, dhi)
        share = float(inside.double().mean())
        if not options.zubov_sampling:
            return pts, inside, None, share
        crit = ConvergenceCriterion.for_system(system)
        frozen = system.frozen() if system.is_closed_loop else system
        units = margin_units(system, options)
        w = zubov_targets(frozen, pts, inside, options.zubov_beta, crit.horizon, crit.step, units)
        k = round(options.boundary_share * len(pts))
        idx = boundary_points(pts, inside, w, k, gen, options.boundary_quantile)
        keep = len(pts) - len(idx)
        pool = pts[idx] if len(idx) else None
        pts, inside = torch.cat([pts[:keep], pts[idx]]), torch.cat([inside[:keep], inside[idx]])
        return pts, inside, pool, share

    @staticmethod
    def _violation(system, net, x, x_star, options):
        """``dV + margin |z|^2`` ``[k]`` with ``z = (x - x*) / margin_units`` (the half-widths in box
        units, else ``z = x - x*``), or with ``margin_kind="value"`` ``dV + margin V(x)``; ``x``
        requires grad in continuous time."""
        if options.margin_kind == "value":
            return decrease(system, net, x) + options.margin * net(x)
        z = (x - x_star) / margin_units(system, options)
        return decrease(system, net, x) + options.margin * (z**2).sum(1)

    def _attack(self, system, net, buffer, lo, hi, step_size, options, gen, pool=None, level=1.0):
        """PGD ascent of ``min(level - V, violation)`` on the buffer (kept in ``[lo, hi]``, the
        training domain); redraw a share uniformly, ``boundary_share`` of it from ``pool``."""
        x_star = system.equilibrium_tensor()
        z = buffer.detach()
        for _ in range(options.pgd_steps):
            z = z.clone().requires_grad_(True)
            h = torch.minimum(level - net(z), self._violation(system, net, z, x_star, options))
            (grad,) = torch.autograd.grad(h.sum(), z)
            with torch.no_grad():
                grad = torch.nan_to_num(grad)
                z = torch.minimum(torch.maximum(z + step_size * torch.sign(grad), lo), hi)
        k = int(options.refresh * len(z))
        if k:
            idx = torch.randperm(len(z), generator=gen)[:k]
            fresh = lo + torch.rand(k, len(lo), generator=gen, dtype=z.dtype) * (hi - lo)
            if pool is not None:
                b = round(options.boundary_share * k)
                fresh[:b] = pool[torch.randint(len(pool), (b,), generator=gen)]
            z[idx] = fresh
        return z.detach()

    def _loss(
        self,
        system,
        net,
        buffer,
        in_pts,
        out_pts,
        faces,
        x_star,
        options,
        level=1.0,
        cex=None,
        exclude=None,
    ):
        """The training loss on ``S = {V <= level}`` and its parts. ``cex``: counterexamples;
        their decrease is a mean of its own times ``counterexample_weight`` (0: pooled with the
        buffer's and the true-ROA points'). ``exclude`` above ``level`` (a capped band) adds the
        push: the mean of ``exclude - V`` over the non-converging and face points where it is
        positive (a mean over those alone, not diluted by the rest)."""

        def band_mean(points):  # mean of relu(violation) over the points in S
            x = points.clone().requires_grad_(True)
            viol = self._violation(system, net, x, x_star, options)
            inside_s = (net(x) <= level).detach()
            return (torch.relu(viol) * inside_s).sum() / max(1, int(inside_s.sum()))

        has_cex = cex is not None and len(cex) > 0
        separate = has_cex and options.counterexample_weight > 0
        pooled = [cex] if has_cex and not separate else []
        loss_dec = band_mean(torch.cat([buffer, in_pts, *pooled]))
        if separate:  # the counterexamples' own mean, so that a few are not drowned out
            loss_dec = loss_dec + options.counterexample_weight * band_mean(cex)
        loss_cov = torch.relu(net(in_pts) - level).mean() if len(in_pts) else torch.zeros(())
        loss_out = torch.relu(level - net(out_pts)).mean() if len(out_pts) else torch.zeros(())
        loss_faces = torch.relu(level - net(faces)).mean()
        loss = loss_dec + options.coverage_weight * loss_cov + loss_out
        loss = loss + options.face_weight * loss_faces
        loss_push = torch.zeros(())
        if exclude is not None and exclude > level:
            short = torch.relu(exclude - net(torch.cat([out_pts, faces])))
            loss_push = short.sum() / max(1, int((short > 0).sum()))
            loss = loss + loss_push
        weight = options.local_term_weight()
        loss_local = torch.zeros(())
        if weight > 0:
            units = margin_units(system, options)
            if options.margin_kind == "value":  # dV + 2 margin V <= 0 along the linearisation
                rate = 2 * options.margin
                loss_local = torch.relu(local_decrease(system, net, x_star, units, rate))
            else:
                loss_local = torch.relu(
                    local_decrease(system, net, x_star, units) + 2 * options.margin
                )
            loss = loss + weight * loss_local
        parts = {
            "decrease": float(loss_dec.detach()),
            "coverage": float(loss_cov.detach()),
            "exclusion": float(loss_out.detach()),
            "faces": float(loss_faces.detach()),
            "push": float(loss_push.detach()),
            "local": float(loss_local.detach()),
        }
        return loss, parts

    def _verify_round(self, system, net, options):
        """Certify a copy of the current ``V`` (and of a closed loop's controller: training goes
        on) with a coarse tolerance; the limiting point, if any."""
        from lyapcert.metric import ellipsoid_volume
        from lyapcert.verify import VerifyOptions, verify_candidate

        if system.is_closed_loop:
            system = system.frozen()
        try:
            cand = candidate_of(copy.deepcopy(net), system, options)
        except MethodError:  # verify_v=linearisation: the loop's linearisation is not stable
            return {
                "verified": False,
                "level": None,
                "roa_share": 0.0,
                "volume": 0.0,
                "verify_seconds": 0.0,
            }, None
        result = verify_candidate(
            system,
            cand,
            options=VerifyOptions(
                time_limit=options.verify_seconds,
                level_tolerance=1e-2,
                falsify_samples=2048,
                **({} if options.verify_boxes is None else {"max_boxes": options.verify_boxes}),
            ),
        )
        share = volume = 0.0
        if result.verified and result.level is not None:
            share, volume = self._share(system, cand, result.level, options)
            exact = ellipsoid_volume(system, cand, result.level)  # quadratic V inside the box
            if exact is not None:  # (the sets of 6-state loops are too small for a sample)
                volume = exact
        point = None
        cx = result.counterexample
        if cx is not None and cx.get("point") is not None:
            point = torch.as_tensor(cx["point"], dtype=torch.float64).reshape(-1)
        record = {
            "verified": bool(result.verified),
            "level": result.level,
            "roa_share": float(share),
            "volume": float(volume),
            "verify_seconds": result.seconds,
        }
        return record, point

    @staticmethod
    def _share(system, cand, level, options):
        """``(share of the true ROA, volume)`` of ``{V <= level}`` (the volume of its converging
        points): on the cached true-ROA sample, or for a controller being trained (whose true ROA
        changes every round) on a fresh labelled sample of the box."""
        from lyapcert.metric import region_share

        if not options.train_controller:
            volume, share = region_share(system, cand, level)
            return share, volume
        pts, inside = closed_loop_sample(system, options.samples, options.seed + 7919)
        with torch.no_grad():
            within = cand.value(pts) <= level
        lo, hi = system.domain.as_tensors(torch.float64)
        hits = int((within & inside).sum())
        volume = hits / len(pts) * float(torch.prod(hi - lo))
        return hits / max(1, int(inside.sum())), volume

    @staticmethod
    def _kept(net, points, level) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask [k], points[mask])``: the true-ROA points ``points [k, n]`` that lie in
        ``{V <= level}`` now (the fine-tuning stage keeps them there; it does not pull the rest
        in)."""
        with torch.no_grad():
            mask = net(points) <= level
        return mask, points[mask]

    @staticmethod
    def _finetune_level(net, out_pts, faces, best, options) -> float:
        """The fine-tuning stage's ``rho``: ``finetune_level``, or 0.95 times the least ``V`` of
        the non-converging sample points and of the box's face points, at most 1 and at least the
        best verified level (``best[2]``)."""
        if options.finetune_level is not None:
            return float(options.finetune_level)
        with torch.no_grad():
            outside = torch.cat([out_pts, faces])
            rho = min(1.0, 0.95 * float(net(outside).min())) if len(outside) else 1.0
        if best is not None and best[2] is not None:
            rho = max(rho, float(best[2]))
        return rho

    def _band_counterexamples(self, system, net, level, lo, hi, options, seed) -> torch.Tensor:
        """Points ``[k, n]`` of ``{V <= level}`` where the decrease with the margin fails, found by
        the falsifier (Sobol sample, then PGD) on ``min(level - V, violation)``; at most a quarter
        of the ``counterexamples`` capacity, the worst first."""
        from lyapcert.verify.falsify import falsification_points

        x_star = system.equilibrium_tensor()

        def score(x):
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                viol = self._violation(system, net, xg, x_star, options)
                h = torch.minimum(level - net(xg), viol)
            return h if x.requires_grad else h.detach()

        found = falsification_points(score, lo, hi, n_samples=4096, n_starts=128, seed=seed)
        h = score(found)
        keep = torch.argsort(h, descending=True)[: max(1, options.counterexamples // 4)]
        keep = keep[h[keep] > 0]
        return found[keep].detach()


class BandLevel:
    """The fine-tuning stage's ``rho`` round by round (``finetune_level`` fixes it):

    * a round verified on all of ``{V <= rho}``: ``rho <- max(rho, level) * finetune_raise``, at
      most ``cap`` (0.95 times the least ``V`` of a non-converging sample or face point);
    * a round whose verified level does not exceed 1.1 times the best one of the stage (nor
      ``rho``), twice in a row: ``rho <- sqrt(rho * best)``, a narrower band between the proven
      level and the goal (a band too wide to repair is what stalls it);
    * otherwise ``rho`` stays.

    ``capped``: the last raise was cut to ``cap``, so the band cannot grow until ``V`` rises at the
    non-converging and face points that set it; ``exclusion_level`` is then ``finetune_raise *
    rho`` (the loss asks ``V`` to exceed it there), else ``rho``.

    ``best`` starts at the best verified level before the stage."""

    patience = 2

    def __init__(
        self, options, rho: float, best: float = 0.0, stall: int = 0, capped: bool = False
    ) -> None:
        self.fixed = options.finetune_level is not None
        self.factor = options.finetune_raise
        self.rho, self.best, self.stall = float(rho), float(best), int(stall)
        self.capped = bool(capped)

    @property
    def exclusion_level(self) -> float:
        """The level ``V`` must exceed at the non-converging and face points."""
        return self.rho * self.factor if self.capped else self.rho

    def after_round(self, level: float | None, cap: float) -> bool:
        """Update after a round that verified ``level`` (``None``: nothing); ``True`` when
        ``rho`` changed."""
        proven = level or 0.0
        before = self.rho
        if not self.fixed:
            if proven >= 0.99 * self.rho:
                goal = max(self.rho, proven) * self.factor
                self.capped = cap < goal
                self.rho = max(self.rho, min(goal, cap))
                self.stall = 0
            elif proven > 1.1 * self.best:
                self.stall = 0
            else:
                self.stall += 1
                if self.stall >= self.patience:
                    floor = max(self.best, proven)
                    self.rho = math.sqrt(self.rho * floor) if floor > 0 else self.rho / 2
                    self.stall = 0
        self.best = max(self.best, proven)
        return self.rho != before

    def state(self) -> tuple[float, float, int, bool]:
        return self.rho, self.best, self.stall, self.capped


def _better(record: dict, best: tuple) -> bool:
    """A verified round beats the best so far: a larger share of the true ROA, or the same share
    (0 for the tiny sets of 6-state loops, which no sample point hits) and a larger volume."""
    if record["roa_share"] != best[0]:
        return record["roa_share"] > best[0]
    return record["volume"] > best[3]


def candidate_of(net, system: System, options=None):
    """The certificate candidate of the trained ``V``: a ``QuadraticCandidate`` of its matrix for
    a ``TrainableQuadratic``, else a ``NetworkCandidate`` of the module; with
    ``verify_v="linearisation"`` the ``linearisation_candidate`` of ``system`` instead."""
    if options is not None and options.verify_v == "linearisation":
        return linearisation_candidate(system)
    if isinstance(net, TrainableQuadratic):
        return QuadraticCandidate(net.matrix().numpy(), system)
    return NetworkCandidate(net)


def linearisation_candidate(system: System) -> QuadraticCandidate:
    """``V = (x - x*)' P (x - x*)`` with ``A'P + PA = -I`` (discrete time ``A'PA - P = -I``), ``A``
    the Jacobian at ``x*`` of ``system`` (a closed loop: with its controller's current weights).
    A ``MethodError`` when ``A`` is not Hurwitz (Schur): the loop has no such quadratic."""
    from lyapcert.methods.quadratic import lyapunov_matrix

    A = np.asarray(system.linearize()[0], dtype=np.float64)
    try:
        P = lyapunov_matrix(A, np.eye(system.n_states), system.is_discrete)
    except MethodError as exc:
        raise MethodError(
            f"neural-roa (verify_v=linearisation): the trained closed loop has no quadratic of "
            f"its linearisation ({exc}); a smaller margin keeps the loop stable (in discrete "
            f"time the margin is asked of every step)"
        ) from None
    return QuadraticCandidate(P, system)


def local_decrease(
    system: System, net, x_star: torch.Tensor, units=None, rate: float = 0.0
) -> torch.Tensor:
    """``lambda_max(D M D)``: ``M = A'H + HA + rate H`` (discrete time ``A'HA - (1 - rate) H``)
    with ``H`` the Hessian of ``V``, ``A`` the Jacobian of the (closed-loop) dynamics at ``x*`` and
    ``D = diag(units)`` (default I); differentiable in the weights (of ``V`` and of a trained
    controller). Negative iff ``V``'s quadratic part decreases along the linearisation at least as
    fast as ``dV <= -rate V`` (discrete time ``V(x+) - V(x) <= -rate V(x)``)."""
    from torch.autograd.functional import hessian, jacobian

    from lyapcert.simulate.integrate import vector_field

    field = vector_field(system)

    def closed_loop(x):
        return field(x[None])[0]

    def value(x):
        return net(x[None]).sum()

    centre = x_star.reshape(-1)
    H = hessian(value, centre, create_graph=True)
    A = jacobian(closed_loop, centre, create_graph=True)
    M = A.T @ H @ A - (1 - rate) * H if system.is_discrete else A.T @ H + H @ A + rate * H
    if units is not None:  # in the coordinates z = D^-1 e
        D = torch.diag(torch.as_tensor(units, dtype=M.dtype))
        M = D @ M @ D
    return torch.linalg.eigvalsh(0.5 * (M + M.T))[-1]


def margin_units(system: System, options) -> torch.Tensor:
    """``[n]``: the box half-widths in box units (``scale_inputs``), else ones."""
    if uses_box_units(system, options):
        return half_widths(system)
    return torch.ones(system.n_states, dtype=torch.float64)


def _check_trainable(controller, method: str) -> None:
    from lyapcert.control.neural import NeuralController

    if not isinstance(controller, NeuralController):
        raise MethodError(
            f"{method}: train_controller needs a NeuralController (lyapcert certify "
            f"--controller neural), got {type(controller).__name__}"
        )


def closed_loop_sample(system: System, samples: int, seed: int, lo=None, hi=None):
    """``(points [samples, n], inside [samples])``: uniform points of the box (or of ``[lo, hi]``)
    labelled by simulating the closed loop with its controller as it is now (not cached: it is
    being trained)."""
    from lyapcert.simulate.roa import CONVERGED, ConvergenceCriterion, label_convergence

    gen = torch.Generator().manual_seed(seed)
    if lo is None or hi is None:
        lo, hi = system.domain.as_tensors()
    pts = lo + torch.rand(samples, system.n_states, generator=gen, dtype=torch.float64) * (hi - lo)
    frozen = system.frozen() if system.is_closed_loop else system
    outcome = label_convergence(frozen, pts, ConvergenceCriterion.for_system(system))
    return pts, torch.as_tensor(outcome == CONVERGED)


class TrainingDomain:
    """The box neural-roa trains on: with ``expand_domain`` the box ``x* +- scale * half-widths``
    intersected with the system's box (``scale`` from ``domain_start``, times ``domain_growth`` at
    each growth, until it holds the whole box); else the system's box."""

    def __init__(self, system: System, options) -> None:
        self.lo, self.hi = system.domain.as_tensors(torch.float64)
        self.centre = system.equilibrium_tensor().reshape(-1)
        self.half = half_widths(system)
        self.expand = options.expand_domain
        self.growth, self.when = options.domain_growth, options.expand_when
        # the scale at which the domain holds the whole box
        reach = torch.maximum(self.hi - self.centre, self.centre - self.lo) / self.half
        self.full = float(reach.max())
        self.scale = min(options.domain_start, self.full) if self.expand else self.full

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.expand:
            return self.lo, self.hi
        lo = torch.maximum(self.centre - self.scale * self.half, self.lo)
        hi = torch.minimum(self.centre + self.scale * self.half, self.hi)
        return lo, hi

    def grow(self, roa_share: float | None) -> bool:
        """Grow (``True``) when the domain is not yet the box and ``roa_share >= expand_when``."""
        if not self.expand or roa_share is None or self.scale >= self.full:
            return False
        if roa_share < self.when:
            return False
        self.scale = min(self.scale * self.growth, self.full)
        return True

    def record(self) -> dict:
        lo, hi = self.bounds()
        return {"domain_scale": self.scale, "domain": [lo.tolist(), hi.tolist()]}
