"""Batched best-first branch and bound for ``inf { V(x) : x in D }`` over boxes.

``D`` is a set described by a box test and a point test: ``box_clear(boxes)`` says which boxes are
proven to contain no point of ``D`` (for example "dV/dt < 0 on the whole box"), and
``point_in_set(points)`` says which points are proven to lie in ``D`` (a replayed violation).
The search keeps a lower bound ``L`` (from interval / mean-value bounds of ``V`` on the boxes that
may meet ``D``) and an upper bound ``U`` (``V`` at proven points of ``D``), splits the box with the
smallest lower bound first, and stops when ``U - L`` is within tolerance, when ``L`` passes a
target level (proof) or ``U`` falls to it (disproof), or when a budget runs out. Every level below
the returned ``lower`` is free of ``D``: that is the proof.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lyapcert.bounds.forms import Bounds
from lyapcert.bounds.interval import Interval

BoxBounds = Callable[[Interval], Bounds]
BoxClear = Callable[[Interval, Bounds], torch.Tensor]
PointTest = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SearchStats:
    """What the branch and bound did: boxes evaluated, deepest split, time, stuck boxes."""

    boxes: int = 0
    iterations: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    stuck: int = 0
    stopped_by: str = ""
    stuck_example: list[list[float]] | None = None

    def merge(self, other: SearchStats) -> SearchStats:
        return SearchStats(
            boxes=self.boxes + other.boxes,
            iterations=self.iterations + other.iterations,
            max_depth=max(self.max_depth, other.max_depth),
            seconds=self.seconds + other.seconds,
            stuck=self.stuck + other.stuck,
            stopped_by=";".join(s for s in (self.stopped_by, other.stopped_by) if s),
            stuck_example=self.stuck_example or other.stuck_example,
        )


@dataclass
class SearchTree:
    """The bisection tree of one search (``minimize(record=True)``): the root boxes
    ``[roots_lo, roots_hi]`` (``[R, n]``, node ids ``0 .. R-1``) and, for each split, the parent's
    id, the bisected coordinate and the id of the left child (the right one is the next id).
    Children are ``[lo, mid]`` and ``[mid, hi]`` with ``mid = 0.5*lo + 0.5*hi`` in float64, so the
    tree reproduces every box of the search bit for bit; its leaves cover the roots."""

    roots_lo: torch.Tensor
    roots_hi: torch.Tensor
    split_parent: torch.Tensor  # int64 [S]
    split_dim: torch.Tensor  # int64 [S]
    split_left: torch.Tensor  # int64 [S]
    nodes: int

    @staticmethod
    def empty(n: int) -> SearchTree:
        """No root: the search had nothing to cover."""
        z = torch.zeros((0, n), dtype=torch.float64)
        i = torch.zeros(0, dtype=torch.long)
        return SearchTree(z, z.clone(), i, i.clone(), i.clone(), 0)


@dataclass
class SearchResult:
    """``lower <= inf_D V <= upper``; ``witness``: a proven point of ``D`` with ``V <= upper``;
    ``trees``: the bisection tree(s) when the search was recorded (one per search, in order)."""

    lower: float
    upper: float
    witness: list[float] | None
    stats: SearchStats = field(default_factory=SearchStats)
    trees: list[SearchTree] = field(default_factory=list)


@dataclass
class Budget:
    max_boxes: int = 2_000_000
    time_limit: float = 60.0
    batch_size: int = 2048
    min_width: float = 1e-10  # relative to the domain width: boxes this small are not split
    presplit: int = 3  # extra bisection levels of a small frontier per evaluation (see minimize)


_ULP_GAP = 8 * 2.0**-52
"""With a target, the search stops as converged only when ``upper - lower`` is a few ulps of
``upper`` (no float64 level lies strictly between them)."""


def _corners_and_centre(lo: torch.Tensor, hi: torch.Tensor, max_corners: int = 16) -> torch.Tensor:
    """Test points per box: the centre and up to ``max_corners`` corners, ``[k, batch, n]``."""
    n = lo.shape[1]
    pts = [0.5 * lo + 0.5 * hi]
    if 2**n <= max_corners:
        for mask in range(2**n):
            bits = torch.tensor(
                [(mask >> i) & 1 for i in range(n)], dtype=torch.bool, device=lo.device
            )
            pts.append(torch.where(bits, hi, lo))
    else:
        gen = torch.Generator(device="cpu").manual_seed(lo.shape[0])
        for _ in range(max_corners):
            bits = (torch.rand(n, generator=gen) < 0.5).to(lo.device)
            pts.append(torch.where(bits, hi, lo))
    return torch.stack(pts)


def minimize(
    bounds_fn: BoxBounds,
    box_clear: BoxClear,
    point_in_set: PointTest,
    lo: torch.Tensor,
    hi: torch.Tensor,
    scale: torch.Tensor,
    budget: Budget,
    target: float | None = None,
    rel_tol: float = 1e-3,
    abs_tol: float = 0.0,
    progress: Callable[[float, float, int], None] | None = None,
    initial_points: torch.Tensor | None = None,
    record: bool = False,
) -> SearchResult:
    """Lower and upper bounds of ``inf { V(x) : x in D, x in the boxes [lo, hi] }``.

    ``bounds_fn(boxes)`` encloses ``V`` on boxes; ``point_in_set(points)`` returns
    ``(in_D [k], V_upper [k])`` for points ``[k, n]``; ``initial_points`` are tested first (the
    falsifier's candidates); ``scale [n]`` normalises widths for the
    split heuristic. Without ``target`` it stops when ``upper - lower <= rel_tol |upper|`` (or
    ``abs_tol``, 0 by default: every tolerance is relative, so ``V`` and ``k V`` (``k > 0``) get
    the same answer, scaled). With ``target``, it stops as soon as ``lower > target`` (proof) or
    ``upper <= target`` (disproof), and not on ``rel_tol``: a target inside that gap still gets
    proved (the re-check of a saved level, which lies within ``rel_tol`` of ``upper``). With ``record``, the result carries the bisection tree
    (``SearchTree``): every leaf box of it is either proven clear, has ``V``'s lower bound above
    the returned ``lower`` (dropped, or too small to split), or was still queued (its parent's
    bound is then above ``lower``).
    """
    started = time.perf_counter()
    stats = SearchStats()
    device = lo.device
    keys = torch.full((lo.shape[0],), -math.inf, dtype=lo.dtype, device=device)
    depth = torch.zeros(lo.shape[0], dtype=torch.long, device=device)
    roots_lo, roots_hi = lo.detach().cpu().clone(), hi.detach().cpu().clone()
    ids = torch.arange(lo.shape[0], dtype=torch.long, device=device) if record else None
    next_id = lo.shape[0]
    sp_parent: list[torch.Tensor] = []
    sp_dim: list[torch.Tensor] = []
    sp_left: list[torch.Tensor] = []
    upper, witness = math.inf, None
    if initial_points is not None and initial_points.shape[0]:
        # candidates from falsification (sampling, gradient search): keep the proven ones
        in_set, v_up = point_in_set(initial_points)
        v_up = torch.where(in_set, v_up, torch.full_like(v_up, math.inf))
        if torch.isfinite(v_up).any():
            j = int(torch.argmin(v_up))
            upper, witness = float(v_up[j]), initial_points[j].tolist()
    stuck_lower = math.inf
    dropped_lower = math.inf  # the least bound of boxes dropped for being above the target
    min_width = budget.min_width * scale

    while True:
        if lo.shape[0] == 0:
            stats.stopped_by = "exhausted"
            break
        lower_now = min(float(keys.min()), stuck_lower)
        if target is not None and lower_now > target:
            stats.stopped_by = "proved"
            break
        if target is not None and upper <= target:
            stats.stopped_by = "disproved"
            break
        # Relative (V and a positive multiple of V have the same answer). With a target the
        # question is only "lower > target?": a gap within rel_tol says nothing about it (a
        # saved level lies within rel_tol of the upper bound by construction), so the search
        # goes on until the target is proved or disproved, or the budget ends.
        tol = max(rel_tol * abs(upper), abs_tol) if target is None else _ULP_GAP * abs(upper)
        if upper < math.inf and lower_now >= upper - tol:
            stats.stopped_by = "converged"
            break
        if stats.boxes >= budget.max_boxes:
            stats.stopped_by = "box budget"
            break
        if time.perf_counter() - started > budget.time_limit:
            stats.stopped_by = "time budget"
            break
        k = min(budget.batch_size, lo.shape[0])
        if k < lo.shape[0]:
            idx = torch.topk(keys, k, largest=False).indices
            rest = torch.ones(lo.shape[0], dtype=torch.bool, device=device)
            rest[idx] = False
        else:
            idx = torch.arange(lo.shape[0], device=device)
            rest = torch.zeros(lo.shape[0], dtype=torch.bool, device=device)
        blo, bhi, bdepth = lo[idx], hi[idx], depth[idx]
        lo, hi, keys, depth = lo[rest], hi[rest], keys[rest], depth[rest]
        if record:
            bids, ids = ids[idx], ids[rest]
        boxes = Interval(blo, bhi)
        vb = bounds_fn(boxes)
        stats.boxes += k
        stats.iterations += 1
        clear = box_clear(boxes, vb)
        cut = upper if target is None else min(upper, target)
        # boxes proven clear of D, or whose V is above what could matter, are done
        alive = ~clear & ~(vb.lo > cut) & ~(vb.lo >= upper)
        above_target = ~clear & (vb.lo > cut) & (vb.lo < upper)
        if bool(above_target.any()):  # not needed for the answer, but the infimum may lie there
            dropped_lower = min(dropped_lower, float(vb.lo[above_target].min()))
        if alive.any():
            # look for proven points of D (replayed violations) in the live boxes
            pts = _corners_and_centre(blo[alive], bhi[alive])
            kk, nb, n = pts.shape
            in_set, v_up = point_in_set(pts.reshape(kk * nb, n))
            v_up = torch.where(in_set, v_up, torch.full_like(v_up, math.inf))
            if torch.isfinite(v_up).any():
                j = int(torch.argmin(v_up))
                if float(v_up[j]) < upper:
                    upper = float(v_up[j])
                    witness = pts.reshape(kk * nb, n)[j].tolist()
        alive = alive & ~(vb.lo >= upper)
        if not alive.any():
            if progress:
                progress(
                    min(float(keys.min()) if keys.numel() else math.inf, stuck_lower),
                    upper,
                    stats.boxes,
                )
            continue
        blo, bhi, bdepth, key = blo[alive], bhi[alive], bdepth[alive], vb.lo[alive]
        if record:
            bids = bids[alive]
        sens = vb.sensitivity[alive] if vb.sensitivity is not None else None
        width = bhi - blo
        too_small = (width <= min_width).all(dim=1)
        if too_small.any():
            stats.stuck += int(too_small.sum())
            stuck_lower = min(stuck_lower, float(key[too_small].min()))
            if stats.stuck_example is None:
                stats.stuck_example = [blo[too_small][0].tolist(), bhi[too_small][0].tolist()]
            keep = ~too_small
            blo, bhi, bdepth, key = blo[keep], bhi[keep], bdepth[keep], key[keep]
            if record:
                bids = bids[keep]
            sens = sens[keep] if sens is not None else None
            width = width[keep]
        # Bisect the live boxes; while the queue stays under an eighth of a batch, bisect
        # the children again (widest side), up to budget.presplit more times: a small frontier
        # costs one evaluation per level of the tree whatever its size, so early levels are
        # skipped (every split is recorded: the proof tree stays binary).
        rounds = 0
        while True:
            dim = _split_dimension(width / scale, sens, width > min_width)
            mid = 0.5 * blo.gather(1, dim[:, None]) + 0.5 * bhi.gather(1, dim[:, None])
            left_hi = bhi.clone()
            left_hi.scatter_(1, dim[:, None], mid)
            right_lo = blo.clone()
            right_lo.scatter_(1, dim[:, None], mid)
            m = blo.shape[0]
            if record:
                left = torch.arange(next_id, next_id + 2 * m, 2, dtype=torch.long, device=device)
                sp_parent.append(bids.cpu())
                sp_dim.append(dim.cpu())
                sp_left.append(left.cpu())
                bids = torch.cat([left, left + 1])
                next_id += 2 * m
            blo, bhi = torch.cat([blo, right_lo]), torch.cat([left_hi, bhi])
            key, bdepth = torch.cat([key, key]), torch.cat([bdepth, bdepth]) + 1
            width = bhi - blo
            rounds += 1
            sens = None
            if rounds > budget.presplit or 8 * (lo.shape[0] + blo.shape[0]) > budget.batch_size:
                break
            if not bool((width > min_width).all()):
                break
        lo = torch.cat([lo, blo])
        hi = torch.cat([hi, bhi])
        keys = torch.cat([keys, key])
        depth = torch.cat([depth, bdepth])
        if record:
            ids = torch.cat([ids, bids])
        if depth.numel():
            stats.max_depth = max(stats.max_depth, int(depth.max()))
        if progress:
            progress(min(float(keys.min()), stuck_lower), upper, stats.boxes)

    lower = min(float(keys.min()) if keys.numel() else math.inf, stuck_lower, upper, dropped_lower)
    stats.seconds = time.perf_counter() - started
    result = SearchResult(lower=lower, upper=upper, witness=witness, stats=stats)
    if record:

        def cat(xs):
            return torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long)

        result.trees = [
            SearchTree(roots_lo, roots_hi, cat(sp_parent), cat(sp_dim), cat(sp_left), next_id)
        ]
    return result


def _split_dimension(
    rel_width: torch.Tensor, sens: torch.Tensor | None, splittable: torch.Tensor
) -> torch.Tensor:
    """The coordinate to bisect: the largest contribution to the bound's width when the
    mean-value form provided one, else the widest side relative to the domain."""
    score = rel_width.clone()
    if sens is not None:
        s = torch.where(torch.isfinite(sens), sens, torch.full_like(sens, math.inf))
        finite_rows = torch.isfinite(s).all(dim=1) & (s.sum(dim=1) > 0)
        norm = s / s.sum(dim=1, keepdim=True).clamp_min(1e-300)
        score = torch.where(finite_rows[:, None], norm + 1e-3 * rel_width, rel_width)
    score = torch.where(splittable, score, torch.full_like(score, -1.0))
    return torch.argmax(score, dim=1)
