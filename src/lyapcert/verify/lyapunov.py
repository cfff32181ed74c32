"""Lyapunov conditions in continuous time, without a hole, and the largest certified level.

The proof (shared/design.md, "the no-hole argument") for a candidate ``V`` on the box ``B``:

1. a local quadratic certificate ``Q = {V_q <= c_q}`` around ``x*`` (``verify.local``);
2. an inner level ``c0 > 0`` with ``V > c0`` on ``B \\ int Q``, so ``{V <= c0} subset Q``;
3. ``dV/dt < 0`` on ``{x in B : c0 <= V(x) <= c}`` and ``V > c`` on the boundary of ``B``.

Then ``{x in B : V(x) <= c}`` is positively invariant, ``V`` falls below ``c0`` in finite time
and the trajectory converges inside ``Q``: every point of the sublevel set converges to ``x*``.
Step 3 is a branch and bound for ``inf V`` over the set where the decrease fails and over the
boundary of ``B``; every level below that infimum is certified.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from lyapcert.api import SystemLike, as_system
from lyapcert.bounds.affine import Affine
from lyapcert.bounds.crown import LINEAR_FAILURES, crown_bounds
from lyapcert.bounds.dual import Dual, lift_like
from lyapcert.bounds.forms import (
    Bounds,
    best_bounds,
    interval_bounds,
    mean_value_bounds,
    taylor2_bounds,
)
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval
from lyapcert.bounds.psd import proven_multiple
from lyapcert.certificates.candidates import Candidate
from lyapcert.certificates.imported import load_candidate
from lyapcert.errors import EquilibriumError, VerificationError
from lyapcert.systems.system import System
from lyapcert.verify.equilibrium import EquilibriumFailure, EquilibriumProof, prove_equilibrium
from lyapcert.verify.local import LocalCertificate, LocalFailure, local_certificate
from lyapcert.verify.result import Condition, ProofTrees, Result, Verdict, provenance
from lyapcert.verify.search import Budget, SearchResult, SearchStats, SearchTree, minimize


@dataclass
class VerifyOptions:
    """Settings of the verifier (all have defaults).

    ``time_limit`` bounds the whole verification (one deadline for all its searches) and
    ``max_boxes`` each branch and bound (tests use box budgets: verdicts must not depend on
    speed); ``level_tolerance`` is the relative gap at which the search for the largest level stops; ``mean_value`` turns on the
    mean-value form next to interval bounds; ``second_order`` adds the second-order Taylor form
    of the decrease quantity on the boxes those two leave undecided (near ``x*``, where the
    decrease is quadratically small, it proves boxes many times wider; ``None``: on from 3 states,
    where a split costs 2^n boxes; in 2-D more splits are cheaper than the Hessian); ``linear``
    adds linear (CROWN) bounds (``bounds.crown``: a forward pass of linear bounds for the
    intermediate enclosures, a backward pass for the decrease) on the boxes intervals leave
    undecided (in 2-D in place of the mean-value form of the decrease, from 3 states after the
    second-order form), and linear bounds of ``x+`` and of ``V`` near ``x*``; ``device`` runs
    the boxes on CPU or CUDA.
    """

    time_limit: float = 120.0
    max_boxes: int = 5_000_000
    batch_size: int = 4096
    level_tolerance: float = 1e-3
    inner_tolerance: float = 0.2
    mean_value: bool = True
    second_order: bool | None = None
    device: str = "cpu"
    progress: bool = False
    decay_rate: float = 0.0  # discrete time: prove V(x+) - V(x) <= -decay_rate V(x), strictly
    falsify_samples: int = 8192  # Sobol samples for the falsifier (0: off)
    parts: int = 1  # the decrease search split into this many sub-boxes (run by a mapper)
    record_proof: bool = True  # keep the searches' bisection trees (a saved certificate's proof)
    chain: bool = True  # close a hole the local certificate cannot by a chain (verify.chain)
    linear: bool = True  # linear (CROWN) bounds of the decrease where intervals leave it open

    def budget(self) -> Budget:
        return Budget(
            max_boxes=self.max_boxes, time_limit=self.time_limit, batch_size=self.batch_size
        )

    def validate(self) -> VerifyOptions:
        """Refuse settings a caller must not ask for (``VerificationError`` naming the setting,
        as ``lyapcert verify`` does: CUDA without a CUDA device, a time limit or tolerance that
        is not a finite number > 0, a decay rate outside ``[0, 1)``, fewer than one box or
        part); returns ``self``. Not run on construction: the verifier itself builds options
        with a spent time limit (``0.0``) when a deadline has run out."""
        from lyapcert.verify.options import check_options

        check_options(self)
        return self


@dataclass
class _Problem:
    system: System
    candidate: Candidate
    value_q: object
    lie_q: object  # CT: dV/dt; DT: V(x+) - V(x) + k V(x)
    succ_q: object  # DT: x+ = F(x) as a bound function; CT: None
    field: object
    u_fn: object
    x_star: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    scale: torch.Tensor
    options: VerifyOptions
    stats: SearchStats = field(default_factory=SearchStats)
    falsifier_points: torch.Tensor | None = None
    mapper: object = None  # runs the parts of a split decrease search (None: in this process)
    deadline: float | None = None  # time.perf_counter() value at which every search stops
    auxiliary: object = None  # the chain's auxiliary certificate (None: the defaults, verify.chain)

    def budget(self) -> Budget:
        """The options' budget, its time limit cut to what is left before the deadline: the
        time limit holds for the whole verification, not for each search."""
        budget = self.options.budget()
        if self.deadline is not None:
            budget.time_limit = max(
                0.0, min(budget.time_limit, self.deadline - time.perf_counter())
            )
        return budget

    inner_tree: SearchTree | None = None  # the inner level's bisection tree (recorded)


def _u_fn(system: System):
    """Inputs as bound values: the constant ``u*`` (``[batch, 0]`` for a closed loop, whose
    dynamics feed the controller's graph themselves)."""

    def constant(x):
        base = x
        while isinstance(base, Dual):
            base = base.value
        u = system.equilibrium_input_tensor(base.lo.dtype, base.lo.device).expand(
            base.lo.shape[0], -1
        )
        return lift_like(u, x)

    return constant


def build_problem(
    system: System, candidate: Candidate, options: VerifyOptions | None = None
) -> _Problem:
    """The quantities of the proof as bound functions. ``system.dynamics`` is captured as one
    graph: for a closed loop that is ``f(x, k(x))`` through the controller's own operations."""
    options = options or VerifyOptions()
    device = torch.device(options.device)
    value_graph = capture(candidate.value_function(), 1)
    field_graph = capture(system.dynamics, 2)
    u_fn = _u_fn(system)

    def value_q(x):
        out = value_graph.evaluate(x)
        return out.apply(torch.reshape, (out.shape[0],))

    lie_fn = candidate.lie_derivative_function(system)
    succ_q = None
    if system.is_discrete:
        k = float(options.decay_rate)

        def succ_q(x):
            return field_graph.evaluate(x, u_fn(x))

        def lie_q(x):
            v_now = value_q(x)
            out = value_q(succ_q(x)) - v_now
            return out + v_now * k if k else out

    elif lie_fn is not None:
        lie_graph = capture(lie_fn, 1)

        def lie_q(x):
            out = lie_graph.evaluate(x)
            return out.apply(torch.reshape, (out.shape[0],))

    else:

        def lie_q(x):
            fx = field_graph.evaluate(x, u_fn(x))
            out = value_graph.evaluate(Dual(x, fx)).tangent
            return out.apply(torch.reshape, (out.shape[0],))

    lo, hi = system.domain.as_tensors(torch.float64, device)
    x_star = system.equilibrium_tensor(torch.float64, device)
    return _Problem(
        system,
        candidate,
        value_q,
        lie_q,
        succ_q,
        field_graph,
        u_fn,
        x_star,
        lo,
        hi,
        hi - lo,
        options,
    )


def _bounds(q, boxes: Interval, mean_value: bool) -> Bounds:
    return best_bounds(q, boxes, mean_value) if mean_value else interval_bounds(q, boxes)


def _point_values(q, points: torch.Tensor) -> Interval:
    out = q(Interval(points, points))
    return out


def inner_level(problem: _Problem, local, target: float | None = None) -> tuple[float, SearchStats]:
    """A proven ``c0`` with ``V > c0`` on ``B \\ int Q`` (so ``{V <= c0}`` lies in ``Q``): from
    the candidate's quadratic floor when it has one, else by branch and bound. ``Q`` is
    ``{(x-x*)'P(x-x*) <= level}`` (``local.P``, ``local.level``: the local certificate, or a
    chain's quadratic region), or ``{W <= level}`` with ``local.value_q`` the bound function of
    ``W`` (``verify.chain.InnerRegion``). With ``target`` the search stops as soon as ``c0 >
    target`` is proven or a point of ``B \\ int Q`` with ``V <= target`` is found (the band
    check only asks whether ``c0`` reaches ``c1``); a Sobol sample of the box is tried first."""
    region_q = getattr(local, "value_q", None)
    problem.inner_tree = None
    if region_q is None:
        floor = floor_inner_level(problem.candidate, local, problem.x_star)
        if floor > 0:
            return floor, SearchStats()
        vq = _quadratic_q(local.P, problem.x_star)
    else:
        vq = region_q

    def bounds_fn(boxes):
        vb = _bounds(problem.value_q, boxes, problem.options.mean_value)
        q = interval_bounds(vq, boxes)
        vb.q_hi = q.hi
        open_ = ~(q.hi < local.level)
        if problem.options.linear and bool(open_.any()):
            # V's linear lower bound where the box is not inside Q (near x*, where V is
            # quadratically small and intervals cannot prove it positive)
            vb = _raise_linear_lower(problem.value_q, boxes, vb, open_)
        return vb

    def clear(boxes, vb):
        return vb.q_hi < local.level  # the whole box is inside Q: no point of B \ int Q

    def in_set(points):
        v = _point_values(problem.value_q, points)
        q = _point_values(vq, points)
        return q.lo >= local.level, v.hi

    start = None
    if target is not None:  # a point with V <= target outside Q answers at once: try a sample
        n = problem.lo.shape[0]
        unit = torch.quasirandom.SobolEngine(n, scramble=True, seed=0).draw(4096)
        start = problem.lo + unit.to(problem.lo) * (problem.hi - problem.lo)
    res = minimize(
        bounds_fn,
        clear,
        in_set,
        problem.lo[None],
        problem.hi[None],
        problem.scale,
        problem.budget(),
        target=target,
        rel_tol=problem.options.inner_tolerance,
        initial_points=start,
        record=problem.options.record_proof,
    )
    problem.inner_tree = res.trees[0] if res.trees else None
    return res.lower, res.stats


def _floor_at(candidate: Candidate, x_star) -> tuple[np.ndarray, np.ndarray] | None:
    """The candidate's quadratic floor ``[lo, hi]`` (``V >= e'Fe`` for every ``F`` in it), or
    ``None`` when it has none or its centre is not ``x*``."""
    floor = candidate.quadratic_floor()
    if floor is None:
        return None
    centre, lo, hi = floor
    xs = x_star.detach().cpu().numpy().reshape(-1)
    if centre.shape != xs.shape or not np.array_equal(centre, xs):
        return None
    return lo, hi


def floor_inner_level(candidate: Candidate, local: LocalCertificate, x_star) -> float:
    """``t c_q`` (rounded down) for a ``t > 0`` with ``F - t P_q`` proven positive definite (interval
    Cholesky) for every ``F`` of the candidate's quadratic floor: then on ``B \\ int Q``, where
    ``e' P_q e >= c_q``, ``V >= e' F e >= t e' P_q e >= t c_q``. ``0.0`` when there is no floor,
    its centre is not ``x*``, or no ``t`` is proven."""
    floor = _floor_at(candidate, x_star)
    if floor is None:
        return 0.0
    lo, hi = floor
    Pq = np.asarray(local.P, dtype=np.float64)
    try:
        guess = float(scipy.linalg.eigh((lo + hi) / 2, Pq, eigvals_only=True)[0])
    except (np.linalg.LinAlgError, ValueError):
        return 0.0
    if not (math.isfinite(guess) and guess > 0):
        return 0.0
    t = proven_multiple(lo, hi, Pq, guess)
    if t is None:
        return 0.0
    return math.nextafter(t * float(local.level), -math.inf) * (1 - 1e-12)


def floor_box(candidate: Candidate, x_star, level: float, lo: torch.Tensor, hi: torch.Tensor):
    """``(lo', hi')``: the box ``[lo, hi]`` cut down to a box that contains every point of it with
    ``V <= level``, from the candidate's quadratic floor ``V >= e'Fe``: on ``{e'Fe <= level}``,
    ``e_i^2 <= level / s_i`` for any ``s_i > 0`` with ``F - s_i E_ii`` proven positive definite
    (interval Cholesky; ``E_ii`` the unit matrix at ``(i, i)``), ``s_i`` just under
    ``1 / (F^-1)_ii``. ``None`` when there is no floor, its centre is not ``x*``, or ``level`` is
    not a finite positive number."""
    if not (math.isfinite(level) and level > 0):
        return None
    floor = _floor_at(candidate, x_star)
    if floor is None:
        return None
    f_lo, f_hi = floor
    try:
        inv_diag = np.diag(np.linalg.inv((f_lo + f_hi) / 2))
    except np.linalg.LinAlgError:
        return None
    n = inv_diag.shape[0]
    half = np.empty(n)
    for i in range(n):
        if not (math.isfinite(inv_diag[i]) and inv_diag[i] > 0):
            return None
        unit = np.zeros((n, n))
        unit[i, i] = 1.0
        s_i = proven_multiple(f_lo, f_hi, unit, 1.0 / inv_diag[i])
        if s_i is None:
            return None
        # sqrt(level / s_i), rounded up (each step at most one ulp; the factor covers them)
        half[i] = math.sqrt(level / s_i) * (1 + 1e-12) + 1e-300
    h = torch.as_tensor(half, dtype=lo.dtype, device=lo.device)
    xs_t = torch.as_tensor(x_star.reshape(-1), dtype=lo.dtype, device=lo.device)
    new_lo = torch.maximum(lo, torch.nextafter(xs_t - h, torch.full_like(h, -math.inf)))
    new_hi = torch.minimum(hi, torch.nextafter(xs_t + h, torch.full_like(h, math.inf)))
    return new_lo, new_hi


def _rows(x) -> int:
    while isinstance(x, Dual):
        x = x.value
    return x.lo.shape[0]


def decrease_search(
    problem: _Problem,
    c0: float,
    strict: bool = True,
    target: float | None = None,
    lo: torch.Tensor | None = None,
    hi: torch.Tensor | None = None,
    known_upper: float = math.inf,
    exclude=None,
):
    """``inf V`` over the points of the box ``[lo, hi]`` (default: the whole domain) where the
    decrease fails, with ``V >= c0``: a ``SearchResult``. Its ``lower`` is proven for that box
    only; its ``upper`` and witness are proven violations, valid anywhere. ``exclude``: a proven
    region of attraction ``{W <= d}`` (``verify.chain.InnerRegion``) whose interior needs no
    decrease: boxes inside ``{W < d}`` are cleared and violations count only outside it.

    ``known_upper``: a number the caller's final level cannot exceed (the boundary's proven
    ``V`` value). With the falsifier's proven violations it bounds the levels that matter, ``u``;
    when the candidate has a quadratic floor the search runs only on the part of the box that can
    hold points with ``V <= u`` (``floor_box``), and its ``lower`` is at most ``u``: every point
    left out has ``V > u``."""
    opts = problem.options
    discrete = problem.succ_q is not None
    lo_b, hi_b = problem.lo, problem.hi
    second_order = opts.second_order
    if second_order is None:
        second_order = problem.lo.shape[0] >= 3

    def successor_inside(boxes) -> torch.Tensor:
        nxt = problem.succ_q(boxes)
        inside = ((nxt.lo >= lo_b) & (nxt.hi <= hi_b)).all(dim=1)
        if opts.linear and not bool(inside.all()):
            # the forward linear bounds of x+ where intervals leave the box's faces open
            out = ~inside
            try:
                nxt = problem.succ_q(Affine.from_boxes(Interval(boxes.lo[out], boxes.hi[out])))
            except LINEAR_FAILURES:
                return inside
            inside = inside.clone()
            inside[out] = ((nxt.lo >= lo_b) & (nxt.hi <= hi_b)).all(dim=1)
        return inside

    def successor_outside(points) -> torch.Tensor:
        nxt = problem.succ_q(Interval(points, points))
        return ((nxt.lo > hi_b) | (nxt.hi < lo_b)).any(dim=1)

    region_q = None
    if exclude is not None:
        region_q = exclude.value_q or _quadratic_q(exclude.P, problem.x_star)
    # from 3 states the linear bound comes last, after forms that are often enough (a quadratic
    # V of a smooth loop): there it runs only while it decides boxes the others left open
    linear_tier = PayingTier()

    def bounds_fn(boxes):
        vb = _bounds(problem.value_q, boxes, opts.mean_value)
        if region_q is not None:
            vb.region_hi = interval_bounds(region_q, boxes).hi
        lb = interval_bounds(problem.lie_q, boxes)
        if discrete:
            vb.inside = successor_inside(boxes)
        # with linear bounds in 2-D (no second-order form) the mean-value form is skipped: on the
        # published pendulum band it decided no box the linear bound left open, at 40 % of the
        # time; from 3 states its split guide steers the second-order form (kept)
        if opts.mean_value and (not opts.linear or second_order):
            # the mean-value form (several times the cost) only where intervals leave the box
            # undecided (every other box is cleared, never split, so its split guide is never
            # needed): the intersection of both enclosures is an enclosure
            decided = lb.hi < 0
            if discrete:
                decided = decided & vb.inside
            need = ~decided & ~(vb.hi < c0)
            if region_q is not None:
                need = need & ~(vb.region_hi < exclude.level)
            lb = _tighten_mean_value(problem.lie_q, boxes, lb, need)
        if second_order:
            lb = _tighten_second_order(problem.lie_q, boxes, lb, undecided=~(vb.hi < c0))
        if opts.linear and (not second_order or linear_tier.wanted()):
            need = ~(lb.hi < 0) & ~(vb.hi < c0)
            if discrete:
                need = need & vb.inside
            if region_q is not None:
                need = need & ~(vb.region_hi < exclude.level)
            lb = _tighten_linear(problem.lie_q, boxes, lb, need, keep_guide=second_order)
            linear_tier.record(int(need.sum()), int((need & (lb.hi < 0)).sum()))
        vb.lie_hi = lb.hi
        if lb.sensitivity is not None:
            vb.sensitivity = lb.sensitivity
        return vb

    def clear(boxes, vb):
        ok = vb.lie_hi < 0 if strict else vb.lie_hi <= 0
        if discrete:
            ok = ok & vb.inside
        if region_q is not None:
            ok = ok | (vb.region_hi < exclude.level)
        return ok | (vb.hi < c0)

    screen = _violation_screen(problem)

    def in_set(points):
        # only the points a float64 evaluation says may violate are replayed in intervals (the
        # replay decides; the screen can only miss a witness, never make one)
        keep = screen(points) if screen is not None else None
        if keep is not None and not bool(keep.all()):
            bad = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
            v_hi = torch.full(
                (points.shape[0],), math.inf, dtype=points.dtype, device=points.device
            )
            if bool(keep.any()):
                bad[keep], v_hi[keep] = in_set_exact(points[keep])
            return bad, v_hi
        return in_set_exact(points)

    def in_set_exact(points):
        v = _point_values(problem.value_q, points)
        lie = _point_values(problem.lie_q, points)
        bad = lie.lo >= 0 if strict else lie.lo > 0
        if discrete:
            bad = bad | successor_outside(points)
        if region_q is not None:
            bad = bad & (_point_values(region_q, points).lo >= exclude.level)
        return bad & (v.lo >= c0), v.hi

    lo = problem.lo if lo is None else lo
    hi = problem.hi if hi is None else hi
    u = known_upper
    pts = problem.falsifier_points
    if pts is not None and pts.shape[0]:
        bad, v_up = in_set(pts)
        if bool(bad.any()):
            u = min(u, float(v_up[bad].min()))
        pts = pts[bad]  # the search starts from the proven violations only (the rest add nothing)
    cut = floor_box(problem.candidate, problem.x_star, u, lo, hi) if math.isfinite(u) else None
    if cut is not None:
        lo, hi = cut
        if bool((lo > hi).any()):  # no point of the box has V <= u
            trees = [SearchTree.empty(lo.shape[0])] if opts.record_proof else []
            return SearchResult(lower=u, upper=math.inf, witness=None, trees=trees)
    decrease = minimize(
        bounds_fn,
        clear,
        in_set,
        lo[None],
        hi[None],
        problem.scale,
        problem.budget(),
        target=target,
        rel_tol=opts.level_tolerance,
        initial_points=pts,
        progress=_progress_callback(problem, "decrease"),
        record=opts.record_proof,
    )
    if cut is not None:
        decrease.lower = min(decrease.lower, u)
    return decrease


def _violation_screen(problem: _Problem):
    """``points -> [k] bool``: the points where a plain float64 evaluation of the decrease
    quantity (or, in discrete time, of the successor) leaves a violation possible; ``None`` when
    the float function cannot be built. A screen for the interval replay: a real violation has a
    float value at most a rounding error below 0."""
    from lyapcert.simulate.integrate import vector_field
    from lyapcert.verify.falsify import decrease_function

    try:
        fn = decrease_function(problem.system, problem.candidate, problem.options.decay_rate)
        field = vector_field(problem.system)
    except Exception:  # pragma: no cover - the screen is only a speed-up
        return None
    discrete = problem.succ_q is not None
    lo, hi = problem.lo, problem.hi
    span = (hi - lo).abs().amax()

    def screen(points):
        try:
            x = points.to(lo.device)
            val = fn(x).detach()
            keep = ~(val < -1e-9 * (1 + val.abs())) | ~torch.isfinite(val)
            if discrete:
                with torch.no_grad():
                    nxt = field(x)
                slack = 1e-9 * span
                keep = keep | ((nxt < lo + slack) | (nxt > hi - slack)).any(dim=1)
                keep = keep | ~torch.isfinite(nxt).all(dim=1)
            return keep.to(points.device)
        except Exception:  # pragma: no cover - then every point is replayed
            return None

    return screen


def _quadratic_q(P, x_star):
    """``x -> (x - x*)' P (x - x*)`` as a bound function."""
    Pt = torch.as_tensor(P, dtype=torch.float64, device=x_star.device)

    def vq(x):
        e = x - lift_like(x_star.expand(_rows(x), -1), x)
        return (e.linear(Pt) * e).sum(dim=1)

    return vq


def split_box(
    lo: torch.Tensor, hi: torch.Tensor, parts: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """At least ``parts`` sub-boxes that cover ``[lo, hi]`` exactly: repeated bisection of the
    widest side relative to the box (the midpoint is shared by both halves, so no point is
    lost)."""
    boxes = [(lo.clone(), hi.clone())]
    scale = hi - lo
    while len(boxes) < parts:
        a, b = boxes.pop(0)
        j = int(torch.argmax((b - a) / scale))
        mid = 0.5 * a[j] + 0.5 * b[j]
        left_hi, right_lo = b.clone(), a.clone()
        left_hi[j] = mid
        right_lo[j] = mid
        boxes += [(a, left_hi), (right_lo, b)]
    return boxes


@dataclass
class _DecreasePart:
    """One sub-box of the decrease search, shipped to a worker (the problem is rebuilt there)."""

    system: System
    candidate: Candidate
    options: VerifyOptions
    c0: float
    strict: bool
    target: float | None
    lo: list[float]
    hi: list[float]
    falsifier_points: list | None
    known_upper: float = math.inf


def run_decrease_part(part: _DecreasePart):
    """Rebuild the problem and search one sub-box (runs on a worker)."""
    opts = dataclasses.replace(part.options, progress=False, parts=1)
    problem = build_problem(part.system, part.candidate, opts)
    problem.deadline = time.perf_counter() + opts.time_limit
    if part.falsifier_points is not None:
        problem.falsifier_points = torch.tensor(part.falsifier_points, dtype=torch.float64)
    lo = torch.tensor(part.lo, dtype=torch.float64, device=problem.lo.device)
    hi = torch.tensor(part.hi, dtype=torch.float64, device=problem.lo.device)
    return decrease_search(
        problem, part.c0, part.strict, part.target, lo, hi, known_upper=part.known_upper
    )


def _split_decrease(
    problem: _Problem, c0: float, strict: bool, target, mapper, known_upper: float = math.inf
):
    """The decrease search over sub-boxes covering the domain, merged: the proven lower bound
    is the least of the parts' (each part's ``lower`` holds on its sub-box, and the sub-boxes
    cover the domain), the upper bound and witness the least proven violation of any part."""
    pts = problem.falsifier_points
    left = problem.budget().time_limit  # each part gets what is left of the deadline
    parts = [
        _DecreasePart(
            problem.system,
            problem.candidate,
            dataclasses.replace(problem.options, time_limit=left),
            c0,
            strict,
            target,
            a.tolist(),
            b.tolist(),
            None if pts is None else pts.cpu().tolist(),
            known_upper,
        )
        for a, b in split_box(problem.lo.cpu(), problem.hi.cpu(), problem.options.parts)
    ]
    results = list(mapper(run_decrease_part, parts))
    if len(results) != len(parts):
        raise VerificationError(
            f"the mapper returned {len(results)} results for {len(parts)} parts"
        )
    stats = SearchStats()
    for r in results:
        stats = stats.merge(r.stats)
    best = min(results, key=lambda r: r.upper)
    merged = SearchResult(
        lower=min(r.lower for r in results),
        upper=best.upper,
        witness=best.witness,
        stats=stats,
        trees=[t for r in results for t in r.trees],  # one per part, in the parts' order
    )
    return merged


def level_search(
    problem: _Problem, c0: float, strict: bool = True, target: float | None = None, exclude=None
):
    """``inf V`` over the points of the box where the decrease fails (``dV/dt >= 0``, or ``> 0``
    when ``strict`` is False) with ``V >= c0``, and over the boundary of the box. With
    ``options.parts > 1`` the decrease search runs on sub-boxes, by ``problem.mapper``
    (``mapper(fn, items) -> results``, for example Ray tasks; default the builtin ``map``), and
    the results are merged. ``exclude``: see ``decrease_search`` (one process only)."""
    opts = problem.options
    discrete = problem.succ_q is not None
    if discrete:  # the region is {x in B : V <= c} and x+ stays in B: no face condition
        boundary = SearchResult(lower=math.inf, upper=math.inf, witness=None)
    else:
        boundary = _boundary_search(problem, target)
    # the level cannot exceed V at a boundary point: the decrease search may skip V > that
    if opts.parts <= 1 or exclude is not None:
        decrease = decrease_search(
            problem, c0, strict, target, known_upper=boundary.upper, exclude=exclude
        )
    else:
        mapper = problem.mapper or map
        decrease = _split_decrease(problem, c0, strict, target, mapper, boundary.upper)
    return decrease, boundary


def boundary_faces(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2n faces of the box ``[lo, hi]`` as degenerate boxes ``[2n, n]`` (low side, then high
    side, for each coordinate in turn)."""
    n = lo.shape[0]
    face_lo, face_hi = [], []
    for i in range(n):
        for side in (lo[i], hi[i]):
            flo, fhi = lo.clone(), hi.clone()
            flo[i] = side
            fhi[i] = side
            face_lo.append(flo)
            face_hi.append(fhi)
    return torch.stack(face_lo), torch.stack(face_hi)


def _boundary_search(problem: _Problem, target: float | None):
    """``inf V`` over the boundary of the box (its 2n faces)."""
    opts = problem.options
    face_lo, face_hi = boundary_faces(problem.lo, problem.hi)
    best = [math.inf]  # the least proven value of V at a face point so far
    linear_tier = PayingTier()

    def face_bounds(boxes):
        vb = (
            interval_bounds(problem.value_q, boxes)
            if not opts.mean_value
            else best_bounds(problem.value_q, boxes)
        )
        if opts.linear and linear_tier.wanted():
            # V's linear lower bound where the box could still hold the minimum: below the
            # least value seen (less the tolerance) and the target
            bar = best[0] - opts.level_tolerance * abs(best[0])
            if target is not None:
                bar = min(bar, target)
            need = ~(vb.lo >= bar)
            if bool(need.any()):
                vb = _raise_linear_lower(problem.value_q, boxes, vb, need)
                linear_tier.record(int(need.sum()), int((need & (vb.lo >= bar)).sum()))
        return vb

    def face_clear(boxes, vb):
        return torch.zeros(vb.lo.shape[0], dtype=torch.bool, device=vb.lo.device)

    def face_point(points):
        v = _point_values(problem.value_q, points)
        if v.hi.numel():
            best[0] = min(best[0], float(v.hi.min()))
        return torch.ones(points.shape[0], dtype=torch.bool, device=points.device), v.hi

    return minimize(
        face_bounds,
        face_clear,
        face_point,
        face_lo,
        face_hi,
        problem.scale,
        problem.budget(),
        target=target,
        rel_tol=opts.level_tolerance,
        record=opts.record_proof,
    )


def _tighten_mean_value(q, boxes: Interval, bounds: Bounds, need: torch.Tensor) -> Bounds:
    """Intersect ``bounds`` with the mean-value form on the boxes marked ``need``; their
    sensitivity (the split guide) is the form's, the others' is unknown (``inf``: split the
    widest side)."""
    n = boxes.shape[1]
    sens = torch.full(
        (bounds.lo.shape[0], n), math.inf, dtype=bounds.lo.dtype, device=bounds.lo.device
    )
    if not bool(need.any()):
        return Bounds(bounds.lo, bounds.hi, sens)
    mv = mean_value_bounds(q, Interval(boxes.lo[need], boxes.hi[need]))
    lo, hi = bounds.lo.clone(), bounds.hi.clone()
    lo[need] = torch.maximum(lo[need], mv.lo)
    hi[need] = torch.minimum(hi[need], mv.hi)
    sens[need] = mv.sensitivity
    return Bounds(lo, hi, sens)


@dataclass
class PayingTier:
    """Whether an extra bound form pays in a search: it runs on every evaluation until it has
    been tried on ``warmup`` boxes, then while it decides at least ``min_share`` of the boxes it
    is tried on (counts decayed by ``decay`` per evaluation, so the share follows the search
    from one part of the box to another); below that it runs on one evaluation in ``probe``,
    which re-measures the share. Counts only, never the clock: the same search on any machine
    makes the same choices. Skipping a form never makes a bound wrong, only looser."""

    warmup: int = 4096
    min_share: float = 0.02
    probe: int = 8
    decay: float = 0.7
    tried: float = 0.0
    decided: float = 0.0
    seen: int = 0
    calls: int = 0

    def wanted(self) -> bool:
        self.calls += 1
        if self.seen < self.warmup or self.decided >= self.min_share * self.tried:
            return True
        return self.calls % self.probe == 0

    def record(self, tried: int, decided: int) -> None:
        self.seen += tried
        self.tried = self.tried * self.decay + tried
        self.decided = self.decided * self.decay + decided


def _tighten_linear(
    q, boxes: Interval, bounds: Bounds, need: torch.Tensor, keep_guide: bool = False
) -> Bounds:
    """Intersect ``bounds`` with the linear (CROWN) upper bound of ``q`` on the boxes marked
    ``need``. Their split guide becomes "the widest side" (measured on the pendulum band: 26,533
    boxes, against 85,901 when splitting along ``|lam| * width`` of the linear bound), unless
    ``keep_guide`` (the mean-value / second-order guide, from 3 states). Any failure of the
    linear passes keeps ``bounds``."""
    if not bool(need.any()):
        return bounds
    sub = Interval(boxes.lo[need], boxes.hi[need])
    try:
        lb = crown_bounds(q, sub, lower=False, upper=True)
    except LINEAR_FAILURES:
        return bounds
    lo_l, hi_l = lb.lo, lb.hi
    sens_l = torch.full_like(sub.lo, math.inf)  # split the widest side (measured: better)
    lo, hi = bounds.lo.clone(), bounds.hi.clone()
    lo[need] = torch.maximum(lo[need], lo_l)
    hi[need] = torch.minimum(hi[need], hi_l)
    sens = bounds.sensitivity
    if sens is None:
        sens = torch.full(boxes.lo.shape, math.inf, dtype=lo.dtype, device=lo.device)
    elif not keep_guide:
        sens = sens.clone()
        sens[need] = sens_l
    return Bounds(lo, hi, sens)


def _raise_linear_lower(q, boxes: Interval, bounds: Bounds, need: torch.Tensor) -> Bounds:
    """``bounds`` with its lower end raised to the linear (CROWN) lower bound of ``q`` on the
    boxes marked ``need`` (the split guide is kept). Any failure of the linear passes keeps
    ``bounds`` (updated in place and returned)."""
    try:
        lb = crown_bounds(q, Interval(boxes.lo[need], boxes.hi[need]), upper=False)
    except LINEAR_FAILURES:
        return bounds
    lo = bounds.lo.clone()
    lo[need] = torch.maximum(lo[need], lb.lo)
    bounds.lo = lo  # the caller's own object: fields it attached (``q_hi``) stay
    return bounds


def _tighten_second_order(q, boxes: Interval, bounds: Bounds, undecided: torch.Tensor) -> Bounds:
    """Intersect ``bounds`` with the second-order Taylor form where the upper bound is not yet
    negative, the box is ``undecided`` and ``q`` is negative at its centre (elsewhere the box is
    split anyway: no enclosure can be negative there); where that form is finite, its split guide
    replaces the mean-value one."""
    need = (bounds.hi >= 0) & undecided
    if not bool(need.any()):
        return bounds
    c = boxes.mid[need]
    at_centre = q(Interval(c, c))
    rows = need.nonzero().squeeze(1)
    need = need.clone()
    need[rows[~(at_centre.hi.reshape(-1) < 0)]] = False
    if not bool(need.any()):
        return bounds
    t2 = taylor2_bounds(q, boxes[need])
    lo, hi = bounds.lo.clone(), bounds.hi.clone()
    lo[need] = torch.maximum(lo[need], t2.lo)
    hi[need] = torch.minimum(hi[need], t2.hi)
    sens = bounds.sensitivity
    if sens is not None and t2.sensitivity is not None:
        sens = sens.clone()
        finite = torch.isfinite(t2.sensitivity).all(dim=1) & torch.isfinite(t2.hi)
        rows = need.nonzero().squeeze(1)[finite]
        sens[rows] = t2.sensitivity[finite]
    return Bounds(lo, hi, sens)


def verify_candidate(
    system: SystemLike,
    candidate: Candidate | str | Path | torch.nn.Module,
    level: float | None = None,
    options: VerifyOptions | None = None,
    mapper=None,
    auxiliary: Candidate | None = None,
) -> Result:
    """Verify ``candidate`` on ``system``: prove asymptotic stability of ``x*`` on
    ``{x in box : V(x) <= level}``, or find the largest such level when ``level`` is None. A
    controlled system is verified as its closed loop (``system.closed_loop(k)``), or with the
    input held at ``u*``. When the local certificate alone cannot close the hole around ``x*``
    (``V`` not zero at ``x*``, or its minimum elsewhere), a chain of certificates may
    (``verify.chain``): ``auxiliary`` (a candidate ``W``, verified first), by default the
    quadratic of the (closed-loop) linearisation.
    With ``options.parts > 1`` the decrease search is split into sub-boxes run by ``mapper``
    (``mapper(fn, items)`` like the builtin ``map``, which is the default; see
    ``lyapcert.verify.distributed`` for Ray).

    ``system``: a ``System``, a registry name or a system file (``lyapcert.as_system``);
    ``candidate``: a ``Candidate`` or anything ``certificates.load_candidate`` takes (a ready
    candidate's name, an expression, an ONNX or TorchScript file, a module).

    Never raises on numerical trouble: NaN or an exception inside the engine gives UNKNOWN.
    """
    system = as_system(system)
    if not isinstance(candidate, Candidate):
        candidate = load_candidate(candidate, system)
    options = options or VerifyOptions()
    started = time.perf_counter()
    if level is not None and not (
        isinstance(level, (int, float)) and math.isfinite(level) and level > 0
    ):
        raise VerificationError(f"level: expected a finite number > 0, got {level!r}")
    problem = build_problem(system, candidate, options)
    problem.mapper = mapper
    problem.auxiliary = auxiliary
    problem.deadline = started + float(options.time_limit)
    base = dict(
        system=system.name,
        candidate=candidate.describe(),
        provenance=provenance(system, candidate, options),
    )
    try:
        return _verify(problem, level, started, base)
    except (VerificationError, EquilibriumError):
        raise
    except Exception as exc:  # fail closed: an engine error can never yield VERIFIED
        return _unknown(
            started,
            message=f"the verifier failed ({type(exc).__name__}: {exc}); nothing was proven",
            **base,
        )
    finally:
        if options.progress:
            from lyapcert.verify.progress import SearchProgress

            SearchProgress.close_all()


def prove_local(problem: _Problem):
    """The proof of what the search assumes near ``x*``: ``(equilibrium, local)`` with
    ``equilibrium`` an ``EquilibriumProof`` or ``EquilibriumFailure`` (``verify.equilibrium``: x*
    is a zero of the closed loop as computed, or a unique zero lies in a tiny box around it) and
    ``local`` the quadratic local certificate around it (``None`` when the equilibrium failed).
    The search and the re-check of a stored proof both call this."""
    discrete = problem.succ_q is not None
    u = "k(x*)" if problem.system.is_closed_loop else "u*"
    if problem.system.open_loop.input_names:
        what = f"F(x*, {u}) - x*" if discrete else f"f(x*, {u})"
    else:
        what = "F(x*) - x*" if discrete else "f(x*)"
    eq = prove_equilibrium(
        problem.field,
        problem.x_star.cpu(),
        problem.u_fn,
        problem.lo.cpu(),
        problem.hi.cpu(),
        discrete=discrete,
        what=what,
    )
    if isinstance(eq, EquilibriumFailure):
        return eq, None

    def attempt(proposal=None):
        return local_certificate(
            problem.field,
            problem.x_star.cpu(),
            problem.lo.cpu(),
            problem.hi.cpu(),
            problem.u_fn,
            discrete=discrete,
            centre_radius=None if eq.exact else eq.radius,
            proposal=proposal,
        )

    local = attempt()
    floor = _floor_at(problem.candidate, problem.x_star)
    if floor is not None and isinstance(local, LocalCertificate):
        # the candidate's own quadratic floor as the local P: its sublevel sets have V's shape
        # near x*, so the hole it leaves in V is often much smaller (the better c0 is kept)
        own = attempt((floor[0] + floor[1]) / 2)
        if isinstance(own, LocalCertificate) and floor_inner_level(
            problem.candidate, own, problem.x_star
        ) > floor_inner_level(problem.candidate, local, problem.x_star):
            local = own
    return eq, local


def value_near_equilibrium(problem: _Problem, eq: EquilibriumProof) -> tuple[float, float]:
    """An enclosure of ``V`` at the equilibrium: at ``x*`` itself, or over the box
    ``x* +- radius`` that holds it."""
    xs = problem.x_star.reshape(1, -1)
    lo, hi = xs, xs
    if not eq.exact:
        r = torch.as_tensor(list(eq.radius), dtype=xs.dtype, device=xs.device).reshape(1, -1)
        lo = torch.nextafter(xs - r, torch.full_like(xs, -math.inf))
        hi = torch.nextafter(xs + r, torch.full_like(xs, math.inf))
    v = problem.value_q(Interval(lo, hi))
    return float(v.lo[0]), float(v.hi[0])


def _equilibrium_failure(problem: _Problem, eq: EquilibriumFailure, started: float, base: dict):
    if eq.provably_wrong:
        x_star = [float(v) for v in problem.x_star.reshape(-1)]
        raise EquilibriumError(
            f"{problem.system.name}: {eq.reason} (x* = {x_star}). The local certificate and "
            "the whole proof assume the dynamics as computed vanish at x* (design rule 8); "
            "declare the true equilibrium (or, for a closed loop, a controller with "
            "f(x*, k(x*)) = 0)"
        )
    return _unknown(
        started,
        hole=f"x* is not proven an equilibrium: {eq.reason}",
        message="nothing is certified without a proven equilibrium",
        equilibrium=eq.to_dict(),
        proof="nothing proven: " + eq.reason,
        **base,
    )


def _unknown(started: float, **fields) -> Result:
    """An UNKNOWN result with no level and no condition proven (``fields``: why, and what holds)."""
    return Result(
        verdict=Verdict.UNKNOWN,
        condition=Condition.NONE,
        level=None,
        seconds=time.perf_counter() - started,
        **fields,
    )


def _proof_trees(problem: _Problem, c0: float, decrease, boundary) -> ProofTrees | None:
    """The trees of the searches that proved the level (``None`` when not recorded)."""
    if not problem.options.record_proof:
        return None
    discrete = problem.succ_q is not None
    return ProofTrees(
        c0=c0,
        inner=problem.inner_tree,
        decrease=list(decrease.trees),
        boundary=None if discrete else (boundary.trees[0] if boundary.trees else None),
    )


def _verify(problem: _Problem, level: float | None, started: float, base: dict) -> Result:
    stats = SearchStats()
    discrete = problem.succ_q is not None
    eq, local = prove_local(problem)
    if isinstance(eq, EquilibriumFailure):
        return _equilibrium_failure(problem, eq, started, base)
    v_at_eq = value_near_equilibrium(problem, eq)
    base = dict(base, equilibrium=eq.to_dict(), v_at_equilibrium=v_at_eq)
    if isinstance(local, LocalFailure):
        return _unknown(
            started,
            hole=f"no local certificate: {local.reason}",
            message="the neighbourhood of x* cannot be closed, so asymptotic stability is not proven",
            proof=eq.describe() + "; no local certificate",
            **base,
        )
    local_text = (
        f"{eq.describe()}; local certificate (x-x*)'P(x-x*) <= {local.level:.4g} "
        f"(radius {local.radius:.3g})"
    )
    c0, st = inner_level(problem, local)
    stats = stats.merge(st)
    if not (c0 > 0 and math.isfinite(c0)):
        hole = _unknown(
            started,
            local=local.to_dict(),
            hole="V is not proven positive outside the local certificate's region (inner level <= 0)",
            message="V <= 0 somewhere on the box outside the local region, or the bound is too loose",
            stats=stats,
            proof=local_text,
            **base,
        )
        return _chain_or(problem, level, started, base, v_at_eq, stats, local_text, hole)
    c0 = math.nextafter(c0, -math.inf) * (1 - 1e-9)
    local_text += f"; V > c0 = {c0:.4g} outside it"
    need = c0 if level is None else min(c0, level)
    if not v_at_eq[1] < need:
        where = "at x*" if eq.exact else "on the equilibrium's box"
        hole = _unknown(
            started,
            local=local.to_dict(),
            inner_level=c0,
            hole=f"V {where} (up to {v_at_eq[1]:.6g}) is not proven below "
            f"{'the inner level c0' if need == c0 else 'the level'} = {need:.6g}: the sublevel "
            "set is not proven to contain the equilibrium",
            message="V does not have its minimum at x* (a constant or wrongly centred V, or a "
            "level below V(x*)): nothing is certified",
            stats=stats,
            proof=local_text,
            **base,
        )
        return _chain_or(problem, level, started, base, v_at_eq, stats, local_text, hole)
    problem.falsifier_points = _falsify(problem)
    target = level
    decrease, boundary = level_search(problem, c0, strict=True, target=target)
    stats = stats.merge(decrease.stats).merge(boundary.stats)
    proven = math.nextafter(min(decrease.lower, boundary.lower), -math.inf)
    found = []
    if decrease.witness is not None:
        kind = "V(x+) - V(x) + k V(x) >= 0 or x+ outside the box" if discrete else "dV/dt >= 0"
        cx = {"point": decrease.witness, "kind": kind, "V": decrease.upper}
        cx["replay"] = replay(problem, decrease.witness)
        found.append(cx)
    if boundary.witness is not None:
        found.append(
            {"point": boundary.witness, "kind": "on the boundary of the box", "V": boundary.upper}
        )
    counterexample = min(found, key=lambda c: c["V"]) if found else None
    common = dict(
        positivity=f"V > {c0:.6g} > 0 proven on the box outside the local region "
        f"{{(x-x*)'P(x-x*) < {local.level:.6g}}}; V(x*) in [{v_at_eq[0]:.3g}, {v_at_eq[1]:.3g}]",
        local=local.to_dict(),
        inner_level=c0,
        stats=stats,
        **base,
    )

    def band(upto: float) -> str:
        cond = "V(x+) - V(x) + k V(x) < 0 and x+ in the box" if discrete else "dV/dt < 0"
        face = "" if discrete else ", V > level on the box's boundary"
        if upto <= c0:
            return f"{local_text}; {{V <= {upto:.6g}}} lies in {{V <= c0}}, inside the local region"
        return f"{local_text}; {cond} proven on c0 <= V <= {upto:.6g}{face}"

    partial = band(proven) if proven > c0 else local_text + "; no level above c0 proven"
    best = proven if proven > c0 else None
    if level is not None:
        if proven >= level:
            return _done(
                problem,
                Verdict.VERIFIED,
                Condition.ASYMPTOTIC,
                level,
                counterexample=None,
                started=started,
                proof=band(level),
                proof_trees=_proof_trees(problem, c0, decrease, boundary),
                **common,
            )
        violated = min(decrease.upper, boundary.upper if boundary.witness else math.inf) <= level
        if violated:
            return _nonstrict_or(
                problem,
                Verdict.FALSIFIED,
                level,
                c0,
                counterexample,
                started,
                common,
                partial,
                best,
            )
        return _done(
            problem,
            Verdict.UNKNOWN,
            Condition.NONE,
            level,
            counterexample=counterexample,
            started=started,
            message=f"budget exhausted: proven only up to level {proven:.6g}"
            + (
                f"; a violation is known at V = {counterexample['V']:.6g}" if counterexample else ""
            ),
            proof=partial,
            proven_level=best,
            **common,
        )

    if proven > c0:
        return _done(
            problem,
            Verdict.VERIFIED,
            Condition.ASYMPTOTIC,
            proven,
            counterexample=counterexample,
            started=started,
            level_upper=min(decrease.upper, boundary.upper),
            proof=band(proven),
            proof_trees=_proof_trees(problem, c0, decrease, boundary),
            **common,
        )
    # A point of the box's boundary only limits the level (it violates nothing): when the faces
    # stop the level at or below c0, {x in B : V <= level} lies in {V <= c0}, inside the local
    # certificate's region, with no decrease to prove: VERIFIED at that level, never FALSIFIED.
    box_level = math.nextafter(boundary.lower, -math.inf)
    if boundary.lower <= min(decrease.lower, c0) and box_level > v_at_eq[1]:
        return _done(
            problem,
            Verdict.VERIFIED,
            Condition.ASYMPTOTIC,
            box_level,
            counterexample=found[-1] if boundary.witness is not None else None,
            started=started,
            level_upper=boundary.upper,
            message="the box limits the level below the inner level c0: the set lies inside "
            "the local certificate's region",
            proof=band(box_level),
            **common,
        )
    # FALSIFIED needs a replayed decrease violation that the search converged on (no level
    # above c0 holds); a boundary point, stuck boxes or a spent budget leave the answer UNKNOWN.
    tol = problem.options.level_tolerance * abs(decrease.upper)
    if decrease.witness is not None and decrease.lower >= decrease.upper - tol:
        return _nonstrict_or(
            problem, Verdict.FALSIFIED, None, c0, found[0], started, common, partial, None
        )
    return _done(
        problem,
        Verdict.UNKNOWN,
        Condition.NONE,
        None,
        counterexample=found[0] if decrease.witness is not None else None,
        started=started,
        message="no level above the inner level could be proven within the budget"
        + (f" ({'; '.join(sorted(set(stats.stopped_by.split(';'))))})" if stats.stopped_by else "")
        + (f"; a violation is known at V = {counterexample['V']:.6g}" if counterexample else ""),
        proof=partial,
        **common,
    )


def _chain_or(problem, level, started, base, v_at_eq, stats, local_text, hole: Result) -> Result:
    """``hole`` (the local certificate alone cannot close the hole), unless a chain of
    certificates closes it (``verify.chain``; ``options.chain``)."""
    if not problem.options.chain:
        return hole
    from lyapcert.verify.chain import verify_by_chain

    problem.falsifier_points = _falsify(problem)
    return verify_by_chain(problem, level, started, base, v_at_eq, stats, local_text, hole)


def _nonstrict_or(
    problem, verdict, level, c0, counterexample, started, common, partial, best
) -> Result:
    """After strict decrease failed: is the decrease at least non-strict (V' <= 0)? Not searched
    when the replay already proves ``dV/dt > 0`` at a point with ``V <= level`` (continuous
    time): the non-strict condition fails there too."""

    def violated(detail: str = "") -> Result:
        return _done(
            problem,
            verdict,
            Condition.NONE,
            level,
            counterexample=counterexample,
            started=started,
            message="the decrease condition is violated (counterexample replayed with interval "
            f"arithmetic at the point{detail})",
            proof=partial,
            proven_level=best,
            **common,
        )

    iv = ((counterexample or {}).get("replay") or {}).get("interval")
    if (
        level is not None
        and problem.succ_q is None
        and iv is not None
        and iv[0] > 0
        and counterexample["V"] <= level
    ):
        return violated(
            f": dV/dt in [{iv[0]:.6g}, {iv[1]:.6g}], V = {counterexample['V']:.6g} <= {level:.6g}"
        )
    decrease, boundary = level_search(problem, c0, strict=False, target=level)
    common = dict(common)
    common["stats"] = common["stats"].merge(decrease.stats).merge(boundary.stats)
    proven = math.nextafter(min(decrease.lower, boundary.lower), -math.inf)
    ok = proven >= level if level is not None else proven > c0
    if ok:
        lvl = level if level is not None else proven
        return _done(
            problem,
            verdict,
            Condition.NONSTRICT,
            lvl,
            counterexample=counterexample,
            started=started,
            message="dV/dt <= 0 holds on the level set but not strictly: Lyapunov stability "
            "only, no asymptotic-stability certificate from this V",
            proof=partial + f"; non-strict decrease (<= 0) proven on c0 <= V <= {lvl:.6g}",
            proven_level=best,
            **common,
        )
    return violated()


def _done(
    problem,
    verdict,
    condition,
    level,
    counterexample,
    started,
    message="",
    level_upper=None,
    proof_trees=None,
    **common,
) -> Result:
    return Result(
        proof_trees=proof_trees,
        verdict=verdict,
        condition=condition,
        level=level,
        counterexample=counterexample,
        level_upper=level_upper,
        message=message,
        seconds=time.perf_counter() - started,
        hole=None,
        **common,
    )


def _falsify(problem: _Problem) -> torch.Tensor | None:
    """Sampling and gradient search for violations (candidates only; intervals decide)."""
    from lyapcert.verify.falsify import decrease_function, falsification_points

    if problem.options.falsify_samples <= 0:
        return None
    try:
        fn = decrease_function(problem.system, problem.candidate, problem.options.decay_rate)
        return falsification_points(
            fn, problem.lo, problem.hi, n_samples=problem.options.falsify_samples
        )
    except Exception:  # the falsifier is a heuristic: its failure only costs speed
        return None


def _progress_callback(problem: _Problem, label: str):
    if not problem.options.progress:
        return None
    from lyapcert.verify.progress import SearchProgress

    return SearchProgress.shared(label)


def replay(problem: _Problem, point: list[float]) -> dict:
    """Re-evaluate the decrease quantity at a counterexample: as a float64 interval (rigorous),
    in plain float64, and with 50 significant digits (sympy/mpmath) when ``V`` and the system
    are symbolic and no controller is involved."""
    x = torch.tensor([point], dtype=torch.float64, device=problem.lo.device)
    iv = problem.lie_q(Interval(x, x))
    out = {"interval": [float(iv.lo[0]), float(iv.hi[0])]}
    try:
        from lyapcert.verify.falsify import decrease_function

        fn = decrease_function(problem.system, problem.candidate, problem.options.decay_rate)
        out["float64"] = float(fn(x)[0].detach())
    except Exception:  # pragma: no cover - the interval value above is the rigorous one
        pass
    expr = getattr(problem.candidate, "expr", None)
    sym = problem.system.symbolic
    if expr is not None and sym is not None and not problem.system.input_names:
        import sympy

        states = problem.candidate.symbols
        if not problem.system.is_discrete and _on_a_kink(expr, states, point):
            return out  # V has no derivative there (a Clarke set, not one number)
        params = {sympy.Symbol(k, real=True): sympy.Float(v, 60) for k, v in sym.params.items()}
        at = {s: sympy.Rational(float(v)) for s, v in zip(states, point)}  # the exact float
        f = [e.subs(params) for e in sym.dynamics]
        if problem.system.is_discrete:
            nxt = {s: fi.subs(at) for s, fi in zip(states, f)}
            q = expr.subs(nxt) - expr.subs(at) + problem.options.decay_rate * expr.subs(at)
        else:
            q = sum(sympy.diff(expr, s) * fi for s, fi in zip(states, f)).subs(at)
        out["mp50"] = str(sympy.N(q, 50))
    return out


def _on_a_kink(expr, states, point) -> bool:
    """Whether ``point`` lies on (or within 1e-40 of) a kink of ``expr``: an ``abs`` argument
    0, a tie in ``min`` or ``max`` (50-digit evaluation at the exact floats)."""
    import sympy

    at = {s: sympy.Rational(float(v)) for s, v in zip(states, point)}

    def near_zero(e) -> bool:
        try:
            return abs(complex(sympy.N(e.subs(at), 50))) < 1e-40
        except (TypeError, ValueError):
            return True

    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Abs) and near_zero(node.args[0]):
            return True
        if isinstance(node, (sympy.Min, sympy.Max)):
            args = node.args
            if any(near_zero(a - b) for i, a in enumerate(args) for b in args[i + 1 :]):
                return True
    return False
