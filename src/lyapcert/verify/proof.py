"""A certificate's stored proof: the decided boxes, re-checked without search (design rule 9).

A VERIFIED level ``c`` rests on three searches (``verify.lyapunov``): the inner level ``c0``, the
decrease search (one per part of the box) and the boundary search (the 2n faces; none in discrete
time). Each is a bisection tree whose leaves cover its roots. The stored proof keeps, per tree,
its root boxes and one code per node in breadth-first order (all roots first, then their children
level by level, left child before right): ``code >= 0`` bisects that coordinate at
``0.5*lo + 0.5*hi`` (float64, as the search did), ``code < 0`` is a leaf decided by the bound form
``-1 - code``: 0 interval, 1 mean value (intersected with the interval bound), 2 second-order
Taylor form of the decrease quantity (intersected with both), 3 linear (CROWN) bounds
(``bounds.crown``; intersected with the mean-value form; for ``x+`` the forward linear
bounds). Decoding from the roots reproduces every box bit for bit; the leaves cover the roots by
construction.

The re-check (``check_stored_proof``) recomputes everything the proof assumes except the boxes:
the local certificate around ``x*`` (the same code path as the search), ``c0`` from the quadratic
floor when the candidate has one, the parts of the box, the floor cut at the saved level, the 2n
faces. It checks that each tree's roots cover what they must and evaluates every leaf with its
recorded form only:

* inner level: ``(x-x*)'P(x-x*) < c_q`` on the box (inside the local region) or ``V > c0``;
* decrease: ``dV/dt < 0`` on the box (DT: ``V(x+) - V(x) + k V(x) < 0`` and ``x+`` in the
  domain) or ``V < c0`` or ``V > c``;
* boundary: ``V > c``.

Any leaf not decided, a root that does not cover its region, a malformed code stream or a NaN:
the re-check says why and never says VERIFIED.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lyapcert.bounds.affine import Affine
from lyapcert.bounds.crown import LINEAR_FAILURES, crown_bounds
from lyapcert.bounds.forms import best_bounds, interval_bounds, taylor2_bounds
from lyapcert.bounds.interval import Interval
from lyapcert.verify.result import Condition, Result, Verdict, provenance
from lyapcert.verify.search import SearchStats, SearchTree

FORMS = ("interval", "mean value", "second order", "linear")
PROOF_VERSION = 1
BATCH = 4096


@dataclass
class StoredProof:
    """The arrays of ``proof.npz`` and the summary kept in ``certificate.json``."""

    arrays: dict[str, np.ndarray]
    summary: dict = field(default_factory=dict)


class ProofRejected(Exception):
    """The stored proof does not prove the saved level (the message says why)."""


# ----------------------------------------------------------------------------- the checkers


def _bisect(lo: torch.Tensor, hi: torch.Tensor, dim: torch.Tensor):
    """Children of the boxes ``[lo, hi]`` split at ``dim``, interleaved (left, right, left, ...),
    with the search's midpoint ``0.5*lo + 0.5*hi``."""
    n = lo.shape[1]
    d = dim[:, None]
    mid = 0.5 * lo.gather(1, d) + 0.5 * hi.gather(1, d)
    left_hi = hi.clone().scatter_(1, d, mid)
    right_lo = lo.clone().scatter_(1, d, mid)
    return (
        torch.stack([lo, right_lo], dim=1).reshape(-1, n),
        torch.stack([left_hi, hi], dim=1).reshape(-1, n),
    )


class _Checker:
    """The condition each leaf of one kind of tree must satisfy, at a given bound form."""

    def __init__(self, problem, kind: str, level: float, c0: float, local=None):
        self.problem, self.kind, self.level, self.c0, self.local = problem, kind, level, c0, local
        self.max_form = 3

    def _value(self, boxes: Interval, form: int):
        q = self.problem.value_q
        if form == 0:
            return interval_bounds(q, boxes)
        b = best_bounds(q, boxes)
        if form == 3:
            try:
                lb = crown_bounds(q, boxes)
            except LINEAR_FAILURES:  # no linear bounds for this V: the form adds nothing
                return b
            b.lo, b.hi = torch.maximum(b.lo, lb.lo), torch.minimum(b.hi, lb.hi)
        return b

    def decided(self, lo: torch.Tensor, hi: torch.Tensor, form: int) -> torch.Tensor:
        """``[k]`` booleans: the condition holds on each box ``[lo, hi]`` with bound form ``form``
        (evaluated in batches of ``BATCH`` boxes, in order)."""
        out = []
        for s in range(0, lo.shape[0], BATCH):
            out.append(self._decided(Interval(lo[s : s + BATCH], hi[s : s + BATCH]), form))
        if not out:
            return torch.zeros(0, dtype=torch.bool)
        return torch.cat(out).cpu()

    def _decided(self, boxes: Interval, form: int) -> torch.Tensor:
        v = self._value(boxes, form)
        if self.kind == "boundary":
            return v.lo > self.level
        if self.kind == "inner":
            from lyapcert.bounds.dual import lift_like

            P = torch.as_tensor(self.local.P, dtype=torch.float64, device=boxes.lo.device)
            xs = self.problem.x_star
            e = boxes - lift_like(xs.expand(boxes.shape[0], -1), boxes)
            vq = (e.linear(P) * e).sum(dim=1)
            return (vq.hi < self.local.level) | (v.lo > self.c0)
        lie_q = self.problem.lie_q
        if form == 0:
            lie = interval_bounds(lie_q, boxes)
        else:
            lie = best_bounds(lie_q, boxes)
            if form == 2:
                t2 = taylor2_bounds(lie_q, boxes)
                lie.hi = torch.minimum(lie.hi, t2.hi)
            if form == 3:
                try:
                    lie.hi = torch.minimum(lie.hi, crown_bounds(lie_q, boxes, lower=False).hi)
                except LINEAR_FAILURES:
                    form = 1
        ok = lie.hi < 0
        if self.problem.succ_q is not None:
            nxt = self.problem.succ_q(Affine.from_boxes(boxes) if form == 3 else boxes)
            ok = ok & ((nxt.lo >= self.problem.lo) & (nxt.hi <= self.problem.hi)).all(dim=1)
        return ok | (v.hi < self.c0) | (v.lo > self.level)


# ----------------------------------------------------------------------------- decoding codes


def _decode(roots_lo, roots_hi, codes: np.ndarray, max_form: int, n: int):
    """Leaves of a coded tree: ``{form: (lo, hi, positions)}`` (positions index ``codes``).
    Raises ``ProofRejected`` on a malformed stream (a bad code, too few or too many codes)."""
    if roots_lo.shape != roots_hi.shape or roots_lo.ndim != 2 or roots_lo.shape[1] != n:
        raise ProofRejected(f"root boxes of shape {tuple(roots_lo.shape)}, expected [R, {n}]")
    if not (torch.isfinite(roots_lo).all() and torch.isfinite(roots_hi).all()):
        raise ProofRejected("a root box is not finite")
    if bool((roots_lo > roots_hi).any()):
        raise ProofRejected("a root box is empty (lo > hi)")
    c = torch.as_tensor(np.asarray(codes, dtype=np.int64))
    if c.ndim != 1 or (c.numel() and (int(c.min()) < -1 - max_form or int(c.max()) >= n)):
        raise ProofRejected("a code is out of range")
    leaves: dict[int, list] = {f: [] for f in range(max_form + 1)}
    lo, hi, pos = roots_lo, roots_hi, 0
    while lo.shape[0]:
        m = lo.shape[0]
        if pos + m > c.numel():
            raise ProofRejected("the code stream ends before the tree does (truncated)")
        level = c[pos : pos + m]
        split = level >= 0
        for f in range(max_form + 1):
            at = level == -1 - f
            if bool(at.any()):
                leaves[f].append((lo[at], hi[at], pos + at.nonzero().squeeze(1)))
        pos += m
        if bool(split.any()):
            lo, hi = _bisect(lo[split], hi[split], level[split])
        else:
            lo = lo[:0]
    if pos != c.numel():
        raise ProofRejected(f"{c.numel() - pos} codes left over after the tree (malformed)")
    out = {}
    for f, parts in leaves.items():
        if parts:
            out[f] = tuple(torch.cat([p[i] for p in parts]) for i in range(3))
    return out


def _check_tree(checker: _Checker, roots_lo, roots_hi, codes) -> tuple[int, torch.Tensor]:
    """``(leaves, failed positions)`` of one coded tree."""
    n = checker.problem.lo.shape[0]
    leaves = _decode(roots_lo, roots_hi, codes, checker.max_form, n)
    count, failed = 0, []
    for form in sorted(leaves):
        lo, hi, pos = leaves[form]
        ok = checker.decided(lo, hi, form)
        count += lo.shape[0]
        failed.append(pos[~ok])
    failed_t = torch.cat(failed) if failed else torch.zeros(0, dtype=torch.long)
    return count, failed_t


# ----------------------------------------------------------------------------- what must be covered


def _contains(roots_lo, roots_hi, need_lo, need_hi) -> bool:
    return bool(((roots_lo <= need_lo) & (roots_hi >= need_hi)).all())


def _decrease_regions(problem, level: float, parts: int):
    """Per part of the box: the region the decrease tree must cover (``None``: nothing, no point
    of the part has ``V <= level``)."""
    from lyapcert.verify.lyapunov import floor_box, split_box

    boxes = split_box(problem.lo.cpu(), problem.hi.cpu(), parts)
    if len(boxes) != parts:
        raise ProofRejected(f"the box splits into {len(boxes)} parts, the proof has {parts}")
    out = []
    for a, b in boxes:
        cut = floor_box(problem.candidate, problem.x_star.cpu(), level, a, b)
        if cut is not None:
            a, b = cut
            if bool((a > b).any()):
                out.append(None)
                continue
        out.append((a, b))
    return out


def _tree_names(arrays: dict) -> list[str]:
    names = []
    if "inner_codes" in arrays:
        names.append("inner")
    parts = int(arrays["parts"])
    names += [f"decrease{k}" for k in range(parts)]
    if "boundary_codes" in arrays:
        names.append("boundary")
    return names


def _kind(name: str) -> str:
    return "decrease" if name.startswith("decrease") else name


def _inner_level(problem, local, arrays):
    """``(c0, needs_inner_tree)``: from the quadratic floor (recomputed), else the stored value,
    which the inner tree must prove."""
    from lyapcert.verify.lyapunov import floor_inner_level

    floor = floor_inner_level(problem.candidate, local, problem.x_star)
    if floor > 0:
        return math.nextafter(floor, -math.inf) * (1 - 1e-9), False
    c0 = float(arrays.get("c0", math.nan))
    if not (math.isfinite(c0) and c0 > 0):
        raise ProofRejected(f"the stored inner level c0 = {c0} is not a number > 0")
    return c0, True


def _check(problem, eq, local, level: float, arrays: dict):
    """Check the coded trees in ``arrays`` at ``level``: ``(c0, leaves per tree, failed leaf
    positions per tree)``; raises ``ProofRejected`` for anything but undecided leaves."""
    if int(arrays.get("version", -1)) != PROOF_VERSION:
        raise ProofRejected(f"proof version {arrays.get('version')}, expected {PROOF_VERSION}")
    if not (math.isfinite(level) and level > 0):
        raise ProofRejected(f"the level {level} is not a finite number > 0")
    from lyapcert.verify.lyapunov import value_near_equilibrium

    c0, need_inner = _inner_level(problem, local, arrays)
    v_hi = value_near_equilibrium(problem, eq)[1]
    if not v_hi < min(c0, level):
        raise ProofRejected(
            f"V at the equilibrium (up to {v_hi:.6g}) is not below c0 = {c0:.6g} and the level "
            f"{level}: the set is not proven to contain it"
        )
    parts = int(arrays["parts"])
    if parts < 1:
        raise ProofRejected(f"{parts} parts")
    roots = {
        name: (
            torch.as_tensor(np.asarray(arrays[f"{name}_lo"], dtype=np.float64)),
            torch.as_tensor(np.asarray(arrays[f"{name}_hi"], dtype=np.float64)),
        )
        for name in _tree_names(arrays)
    }
    # what each tree must cover
    dom_lo, dom_hi = problem.lo.cpu(), problem.hi.cpu()
    if need_inner and ("inner" not in roots or not _contains(*roots["inner"], dom_lo, dom_hi)):
        raise ProofRejected("the inner level's tree does not cover the box")
    for k, region in enumerate(_decrease_regions(problem, level, parts)):
        if region is None:
            continue
        r_lo, r_hi = roots[f"decrease{k}"]
        if r_lo.shape[0] != 1 or not _contains(r_lo[0], r_hi[0], *region):
            raise ProofRejected(f"the decrease tree of part {k} does not cover its region")
    if problem.succ_q is None:
        if "boundary" not in roots:
            raise ProofRejected("no boundary tree (continuous time needs V > c on the faces)")
        from lyapcert.verify.lyapunov import boundary_faces

        f_lo, f_hi = boundary_faces(dom_lo, dom_hi)
        b_lo, b_hi = roots["boundary"]
        if b_lo.shape != f_lo.shape or not _contains(b_lo, b_hi, f_lo, f_hi):
            raise ProofRejected("the boundary tree does not cover the 2n faces of the box")
    counts, failed = {}, {}
    for name, (r_lo, r_hi) in roots.items():
        if name == "inner" and not need_inner:
            continue
        checker = _Checker(problem, _kind(name), level, c0, local)
        dev = problem.lo.device
        counts[name], failed[name] = _check_tree(
            checker, r_lo.to(dev), r_hi.to(dev), arrays[f"{name}_codes"]
        )
    return c0, counts, failed


# ----------------------------------------------------------------------------- building a proof


class _TreeBuilder:
    """A recorded ``SearchTree`` turned into a coded tree: each leaf gets the cheapest form that
    decides it; a leaf no form decides is merged into its parent (a box the search evaluated,
    or whose children it never evaluated)."""

    def __init__(self, tree: SearchTree, checker: _Checker):
        self.tree, self.checker = tree, checker
        nodes = tree.nodes
        self.split_dim = torch.full((nodes,), -1, dtype=torch.long)
        self.split_dim[tree.split_parent] = tree.split_dim
        self.left = torch.full((nodes,), -1, dtype=torch.long)
        self.left[tree.split_parent] = tree.split_left
        self.parent = torch.full((nodes,), -1, dtype=torch.long)
        self.parent[tree.split_left] = tree.split_parent
        self.parent[tree.split_left + 1] = tree.split_parent
        self.form = torch.full((nodes,), -1, dtype=torch.long)  # -1: not yet decided

    def _levels(self):
        """Breadth-first levels ``(ids, lo, hi)`` of the current tree."""
        ids = torch.arange(self.tree.roots_lo.shape[0], dtype=torch.long)
        lo, hi = self.tree.roots_lo, self.tree.roots_hi
        while ids.numel():
            yield ids, lo, hi
            d = self.split_dim[ids]
            s = d >= 0
            if not bool(s.any()):
                break
            left = self.left[ids[s]]
            ids = torch.stack([left, left + 1], dim=1).reshape(-1)
            lo, hi = _bisect(lo[s], hi[s], d[s])

    def decide(self) -> bool:
        """Give every leaf a form (merging undecided leaves into their parents)."""
        dev = self.checker.problem.lo.device
        for _ in range(64):
            ids_l, lo_l, hi_l = [], [], []
            for ids, lo, hi in self._levels():
                leaf = (self.split_dim[ids] < 0) & (self.form[ids] < 0)
                if bool(leaf.any()):
                    ids_l.append(ids[leaf])
                    lo_l.append(lo[leaf])
                    hi_l.append(hi[leaf])
            if not ids_l:
                return True
            ids, lo, hi = torch.cat(ids_l), torch.cat(lo_l).to(dev), torch.cat(hi_l).to(dev)
            todo = torch.ones(ids.numel(), dtype=torch.bool)
            for form in range(self.checker.max_form + 1):
                if not bool(todo.any()):
                    break
                ok = self.checker.decided(lo[todo.to(dev)], hi[todo.to(dev)], form)
                rows = todo.nonzero().squeeze(1)[ok]
                self.form[ids[rows]] = form
                todo[rows] = False
            if not self.collapse(ids[todo]):
                return False
        return False

    def collapse(self, ids: torch.Tensor) -> bool:
        """Merge the leaves ``ids`` into their parents; ``False`` when one is a root."""
        if ids.numel() == 0:
            return True
        par = self.parent[ids]
        if bool((par < 0).any()):
            return False
        par = torch.unique(par)
        self.split_dim[par] = -1
        self.form[par] = -1
        return True

    def encode(self):
        """``(codes int8, node id per code)``."""
        codes, nodes = [], []
        for ids, _lo, _hi in self._levels():
            d = self.split_dim[ids]
            codes.append(torch.where(d >= 0, d, -1 - self.form[ids]))
            nodes.append(ids)
        if not codes:
            return np.zeros(0, dtype=np.int8), torch.zeros(0, dtype=torch.long)
        c = torch.cat(codes)
        if bool((c < -1 - self.checker.max_form).any()):
            raise RuntimeError("a leaf without a form")  # decide() ran first: cannot happen
        dtype = np.int8 if self.tree.roots_lo.shape[1] < 127 else np.int32
        return c.numpy().astype(dtype), torch.cat(nodes)


def _options(settings: dict):
    from lyapcert.verify.lyapunov import VerifyOptions

    known = {f.name for f in dataclasses.fields(VerifyOptions)}
    opts = VerifyOptions(**{k: v for k, v in settings.items() if k in known})
    k = opts.decay_rate
    if not (isinstance(k, (int, float)) and math.isfinite(k) and 0 <= k < 1):
        raise ProofRejected(f"decay_rate: expected 0 <= k < 1, got {k!r}")
    return dataclasses.replace(opts, device="cpu", progress=False, record_proof=False, parts=1)


def stored_proof(system, candidate, result) -> StoredProof | None:
    """The stored proof of a VERIFIED ``result`` (from its recorded search trees), checked once by
    the same re-check that ``lyapcert verify DIR`` runs; ``None`` when the result is not VERIFIED,
    its searches were not recorded, or (never seen) the proof does not re-check."""
    from lyapcert.verify.lyapunov import build_problem, prove_local

    trees = getattr(result, "proof_trees", None)
    if trees is None or not result.verified or result.level is None:
        return None
    started = time.perf_counter()
    try:
        options = _options(result.provenance.get("settings", {}))
    except ProofRejected:
        return None
    problem = build_problem(system, candidate, options)
    eq, local = prove_local(problem)
    if not hasattr(local, "P"):
        return None
    level, c0 = float(result.level), float(trees.c0)
    named: dict[str, SearchTree] = {}
    if trees.inner is not None:
        named["inner"] = trees.inner
    for k, t in enumerate(trees.decrease):
        named[f"decrease{k}"] = t
    if trees.boundary is not None:
        named["boundary"] = trees.boundary
    builders = {
        name: _TreeBuilder(t, _Checker(problem, _kind(name), level, c0, local))
        for name, t in named.items()
    }
    arrays: dict[str, np.ndarray] = {
        "version": np.array(PROOF_VERSION),
        "parts": np.array(len(trees.decrease)),
        "c0": np.array(c0),
    }
    for name, b in builders.items():
        arrays[f"{name}_lo"] = b.tree.roots_lo.numpy()
        arrays[f"{name}_hi"] = b.tree.roots_hi.numpy()
    for _round in range(4):
        node_of = {}
        for name, b in builders.items():
            if not b.decide():
                return None
            arrays[f"{name}_codes"], node_of[name] = b.encode()
        try:
            _c0, counts, failed = _check(problem, eq, local, level, arrays)
        except ProofRejected:
            return None
        if all(f.numel() == 0 for f in failed.values()):
            break
        # a leaf decided while building but not in the check (a last-ulp difference between
        # batches): a tighter form, else its parent
        for name, pos in failed.items():
            if pos.numel() == 0:
                continue
            b = builders[name]
            ids = node_of[name][pos]
            up = b.form[ids] < b.checker.max_form
            b.form[ids[up]] += 1
            if not b.collapse(ids[~up]):
                return None
    else:
        return None
    forms = dict.fromkeys(FORMS, 0)
    for name in counts:
        c = arrays[f"{name}_codes"]
        for f, label in enumerate(FORMS):
            forms[label] += int((c == -1 - f).sum())
    leaves = {"inner": 0, "decrease": 0, "boundary": 0}
    for name, k in counts.items():
        leaves[_kind(name)] += k
    summary = {
        "leaves": leaves,
        "forms": forms,
        "parts": len(trees.decrease),
        "search_seconds": result.seconds,
        "build_seconds": time.perf_counter() - started,
    }
    return StoredProof(arrays, summary)


# ----------------------------------------------------------------------------- the re-check


def check_stored_proof(cert) -> Result:
    """Re-check a loaded certificate (``certificates.store.load``) from its stored proof, with no
    search: VERIFIED at the saved level when every leaf is decided with its recorded form and the
    trees cover what they must, else UNKNOWN with the reason."""
    from lyapcert.verify.lyapunov import build_problem, prove_local

    started = time.perf_counter()
    arrays = cert.proof
    settings = cert.record.get("settings", {})
    base = dict(system=cert.system.name, candidate=cert.candidate.describe())

    def unknown(reason: str, **extra) -> Result:
        return Result(
            verdict=Verdict.UNKNOWN,
            condition=Condition.NONE,
            level=cert.level,
            message=f"the stored proof does not prove the level: {reason}",
            seconds=time.perf_counter() - started,
            **base,
            **extra,
        )

    try:
        options = _options(settings)
        problem = build_problem(cert.system, cert.candidate, options)
        base["provenance"] = provenance(cert.system, cert.candidate, options)
        eq, local = prove_local(problem)
        if local is None:
            return unknown(f"x* is not proven an equilibrium: {eq.reason}")
        if not hasattr(local, "P"):
            return unknown(f"no local certificate: {getattr(local, 'reason', local)}")
        base["equilibrium"] = eq.to_dict()
        c0, counts, failed = _check(problem, eq, local, float(cert.level), arrays)
    except ProofRejected as exc:
        return unknown(str(exc))
    except Exception as exc:  # fail closed: an engine error can never yield VERIFIED
        return unknown(f"the re-check failed ({type(exc).__name__}: {exc})")
    leaves = sum(counts.values())
    stats = SearchStats(boxes=leaves, seconds=time.perf_counter() - started, stopped_by="proof")
    bad = {name: int(f.numel()) for name, f in failed.items() if f.numel()}
    if bad:
        where = ", ".join(f"{k} leaves in the {name} tree" for name, k in bad.items())
        return unknown(f"{where} are not decided", stats=stats, inner_level=c0)
    v_star = problem.value_q(Interval(problem.x_star, problem.x_star))
    return Result(
        verdict=Verdict.VERIFIED,
        condition=Condition.ASYMPTOTIC,
        level=cert.level,
        inner_level=c0,
        local=local.to_dict(),
        v_at_equilibrium=(float(v_star.lo[0]), float(v_star.hi[0])),
        message=f"re-checked from the stored proof: {leaves} boxes evaluated, no search",
        seconds=time.perf_counter() - started,
        stats=stats,
        **base,
    )
