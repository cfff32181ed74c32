"""Measurement (issue 15): what optimised relaxation slopes (alpha-CROWN) could gain on the boxes
the linear upper bound of ``dV/dt`` leaves open in the published pendulum band's decrease search.

    OMP_NUM_THREADS=1 python benchmarks/alpha_potential.py --external ../shared/external \
        [--steps 20] [--lr 0.1] [--grid 33] [--sample 0] [--batch 1024] [--variants]

1. Runs the band check (``check_band``, as ``benchmarks/external_certificates.py``) and records
   every batch ``_tighten_linear`` gets in the band's decrease search (the quantity whose box
   count is the report's): the boxes, which needed the linear bound, its upper bound after it.
   The open boxes are those with that bound ``>= 0``.
2. On the open boxes (all, or ``--sample`` of them): (a) the CROWN upper bound (``crown_bounds``,
   timed); a plain-float re-implementation of the backward pass with the same lines (it should
   match (a) up to the rounding charges); (b) the largest value of ``dV/dt`` on a
   ``--points`` x ``--points`` grid of each box (interval evaluation at the points): the ceiling
   of any bound; (c) the bound with optimised lines: every unary relation (tanh, sigmoid, their
   derivatives, sin, ...) takes a free lower and upper slope with the offset that makes the line
   touch ``f`` on a ``--grid``-point grid of the operand's interval, every product ``x y`` takes
   two free planes with slopes in the McCormick ranges and exact corner offsets; Adam on the sum
   of the upper bounds, ``--steps`` steps, the best bound per box kept (timed). (c) is NOT sound
   (the grid offsets may be a little too tight, no rounding charges): it over-estimates what a
   sound alpha pass would give, which is the direction a "does it pay" estimate may err in.
3. Savings: the boxes the search evaluated in later batches inside an open box that (c) decides
   (they would not be evaluated), at the band's seconds per box; for filters "CROWN upper bound
   at most its q-quantile on the open boxes" the cost per alpha try at which it breaks even.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import lyapcert
from lyapcert.bounds.affine import Affine
from lyapcert.bounds.crown import crown_bounds
from lyapcert.bounds.interval import Interval
from lyapcert.certificates import load_candidate
from lyapcert.verify import VerifyOptions
from lyapcert.verify import lyapunov as lyap
from lyapcert.verify.band import check_band

# ------------------------------------------------------------------ unary nodes by their function


def _tanh_d(z):
    return 1 - torch.tanh(z) ** 2


def _sig_d(z):
    s = torch.sigmoid(z)
    return s * (1 - s)


FN: dict[int, object] = {}
"""id of a recorded unary result -> the real function it relaxes (for the grid offsets)."""

_TAGS = {
    "tanh": (torch.tanh,),
    "sigmoid": (torch.sigmoid,),
    "tanh_with_derivative": (torch.tanh, _tanh_d),
    "sigmoid_with_derivative": (torch.sigmoid, _sig_d),
    "tanh_derivative": (_tanh_d,),
    "sigmoid_derivative": (_sig_d,),
    "sin": (torch.sin,),
    "cos": (torch.cos,),
    "relu": (torch.relu,),
    "exp": (torch.exp,),
}


def _tag_methods() -> None:
    def wrap(meth, fns):
        def w(self, *a, **k):
            out = meth(self, *a, **k)
            for o, f in zip(out if isinstance(out, tuple) else (out,), fns):
                if o.node is not None and o.node[0] == "unary":
                    FN[id(o)] = f
            return out

        return w

    for name, fns in _TAGS.items():
        setattr(Affine, name, wrap(getattr(Affine, name), fns))
    pow_int = Affine.pow_int

    def pow_tagged(self, n):
        out = pow_int(self, n)
        if out.node is not None and out.node[0] == "unary":
            FN[id(out)] = lambda z, n=n: z**n
        return out

    Affine.pow_int = pow_tagged


# ------------------------------------------------------------- the differentiable backward pass


def _red(t, b):
    return t.reshape(b, -1).sum(dim=1)


def _unbroadcast(L, shape):
    extra = L.ndim - len(shape)
    dims = list(range(extra)) + [
        i + extra for i, s in enumerate(shape) if s == 1 and L.shape[i + extra] != 1
    ]
    return L.sum(dim=dims, keepdim=True).reshape(shape) if dims else L.reshape(shape)


class Params:
    """Free slopes: per unary result a lower and an upper slope (``a0 + scale * theta``, starting
    at the recorded lines' slopes); per product two planes (sigmoid of ``theta`` in the McCormick
    slope ranges, starting at their midpoints, the recorded planes)."""

    def __init__(self, tape, grid: int, unary: bool = True, product: bool = True):
        self.theta, self.fixed = {}, {}
        for v in tape:
            kind = v.node[0]
            if kind == "unary" and unary and id(v) in FN:
                (z,) = v.node[1]
                a_lo, _, a_hi, _ = v.node[2]
                l, u = z.iv.lo, z.iv.hi
                pts = l[..., None] + (u - l)[..., None] * torch.linspace(0, 1, grid)
                fz = FN[id(v)](pts)
                sec = (fz[..., 1:] - fz[..., :-1]) / ((u - l)[..., None] / (grid - 1) + 1e-300)
                scale = (sec.max(-1).values - sec.min(-1).values).abs() + 1e-9
                self.fixed[id(v)] = (pts, fz, a_lo, a_hi, scale)
                self.theta[id(v)] = torch.zeros((2, *a_lo.shape), requires_grad=True)
            elif kind == "product" and product:
                self.theta[id(v)] = torch.zeros((4, *v.node[2][0].shape), requires_grad=True)


def upper_bound(out: Affine, P: Params | None) -> torch.Tensor:
    """The upper bound of ``out`` per box by a plain-float backward pass (``P``: the lines)."""
    sp = out.space
    b = sp.b
    lam: dict[int, tuple] = {}
    const = [torch.zeros(b)]

    def leaf(L, iv):
        lo, hi = iv.lo.expand_as(L), iv.hi.expand_as(L)
        const.append(_red(torch.where(L >= 0, L * lo, L * hi), b))

    def send(v, L):
        is_input = v.node is not None and v.node[0] == "input"
        batched = v.c_lo.ndim >= 1 and v.c_lo.shape[0] == b
        if not is_input and (v.node is None or not batched):
            leaf(L, v.iv)
            return
        if L.shape != v.shape:
            L = _unbroadcast(L, v.shape)
        lam[id(v)] = (v, lam[id(v)][1] + L) if id(v) in lam else (v, L)

    send(out, torch.full((b,), -1.0))
    for v in reversed(sp.tape):
        entry = lam.pop(id(v), None)
        if entry is None:
            continue
        L = entry[1]
        kind, ops, data = v.node
        th = P.theta.get(id(v)) if P is not None else None
        pos = L >= 0
        if kind == "linear":
            W, bias = data
            if bias is not None:
                const.append(_red(L * bias, b))
            send(ops[0], L @ W)
        elif kind == "unary":
            a_lo, b_lo, a_hi, b_hi = data
            if th is not None:
                pts, fz, a0lo, a0hi, scale = P.fixed[id(v)]
                a_lo, a_hi = a0lo + scale * th[0], a0hi + scale * th[1]
                b_lo = (fz - a_lo[..., None] * pts).min(-1).values
                b_hi = (fz - a_hi[..., None] * pts).max(-1).values
            const.append(_red(torch.where(pos, L * b_lo, L * b_hi), b))
            send(ops[0], L * torch.where(pos, a_lo, a_hi))
        elif kind == "product":
            x, y = ops
            a, bb, k_lo, k_hi = data
            if th is None:
                const.append(_red(torch.where(pos, L * k_lo, L * k_hi), b))
                send(x, L * a)
                send(y, L * bb)
            else:
                xl, xu, yl, yu = torch.broadcast_tensors(x.iv.lo, x.iv.hi, y.iv.lo, y.iv.hi)
                s = torch.sigmoid(th)
                al, bl = yl + (yu - yl) * s[0], xl + (xu - xl) * s[1]
                ah, bh = yl + (yu - yl) * s[2], xl + (xu - xl) * s[3]
                cx, cy = torch.stack([xl, xl, xu, xu]), torch.stack([yl, yu, yl, yu])
                kl = (cx * cy - al * cx - bl * cy).min(0).values
                kh = (cx * cy - ah * cx - bh * cy).max(0).values
                const.append(_red(torch.where(pos, L * kl, L * kh), b))
                send(x, L * torch.where(pos, al, ah))
                send(y, L * torch.where(pos, bl, bh))
        elif kind == "add":
            send(ops[0], L)
            send(ops[1], L)
        elif kind == "addc":
            const.append(_red(L * data, b))
            send(ops[0], L)
        elif kind == "neg":
            send(ops[0], -L)
        elif kind == "scale":
            send(ops[0], L * data)
        elif kind == "divc":
            send(ops[0], L / data)
        elif kind in ("linmap", "join"):
            _, vjp = torch.func.vjp(data, *[torch.zeros_like(o.c_lo) for o in ops])
            for o, M in zip(ops, vjp(L)):
                send(o, M)
        else:
            raise RuntimeError(f"relation {kind!r}")
    lam_x = torch.zeros_like(sp.m)
    for v, L in lam.values():
        if v.node is not None and v.node[0] == "input":
            lam_x = L
        else:
            leaf(L, v.iv)
    lo, hi = sp.m + sp.dlo.T, sp.m + sp.dhi.T
    return -(torch.where(lam_x >= 0, lam_x * lo, lam_x * hi).sum(1) + sum(const))


def optimise(q, lo, hi, args, unary=True, product=True) -> torch.Tensor:
    with torch.no_grad():
        out = q(Affine.from_boxes(Interval(lo, hi), tape=True))
        out = out.apply(torch.reshape, (lo.shape[0],))
    P = Params(out.space.tape, args.grid, unary, product)
    params = list(P.theta.values())
    with torch.no_grad():
        best = upper_bound(out, P)
    opt = torch.optim.Adam(params, lr=args.lr)
    for _ in range(args.steps):
        ub = upper_bound(out, P)
        with torch.no_grad():
            best = torch.minimum(best, ub)
        opt.zero_grad()
        ub.sum().backward()
        opt.step()
    with torch.no_grad():  # crown_bounds keeps the forward bound where it is lower
        return torch.minimum(torch.minimum(best, upper_bound(out, P)), out.hi)


# ---------------------------------------------------------------------------------- the run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--external", default="../shared/external")
    ap.add_argument("--name", default="pendulum")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--grid", type=int, default=33)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--sample", type=int, default=0, help="open boxes to use (0: all)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--variants", action="store_true", help="also unary-only and product-only")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)

    record: list[tuple] = []
    quantities: dict[int, object] = {}
    plain = lyap._tighten_linear

    def recording(q, boxes, bounds, need, keep_guide=False):
        out = plain(q, boxes, bounds, need, keep_guide)
        quantities.setdefault(id(q), q)
        record.append((id(q), boxes.lo.clone(), boxes.hi.clone(), need.clone(), out.hi.clone()))
        return out

    root = Path(args.external) / "twostage"
    entries = json.loads((root / "index.json").read_text())
    entry = next(e for e in entries if e["name"].startswith(args.name))
    system = lyapcert.get_system(entry["lyapcert_system"])
    closed = system.closed_loop(root / f"{entry['name']}_controller.onnx")
    V = load_candidate(str(root / f"{entry['name']}_V.onnx"), closed)
    c1, c2 = entry["V_at_x_star"] + 0.001, entry["c2"]
    lyap._tighten_linear = recording
    try:
        rep = check_band(closed, V, c1, c2, options=VerifyOptions(time_limit=300))
    finally:
        lyap._tighten_linear = plain
    n_dec = rep.decrease["boxes"]
    counts = {k: sum(r[1].shape[0] for r in record if r[0] == k) for k in quantities}
    qid = next(k for k, c in counts.items() if c == n_dec)
    q = quantities[qid]
    rec = [r[1:] for r in record if r[0] == qid]
    call = torch.cat([torch.full((r[0].shape[0],), i) for i, r in enumerate(rec)])
    box_lo, box_hi = torch.cat([r[0] for r in rec]), torch.cat([r[1] for r in rec])
    need, lin_hi = torch.cat([r[2] for r in rec]), torch.cat([r[3] for r in rec])
    open_ = need & ~(lin_hi < 0)
    per_box = rep.seconds / n_dec
    print(
        f"{entry['name']}: band {rep.seconds:.2f} s, decrease search {n_dec} boxes in "
        f"{len(rec)} batches ({per_box * 1e3:.3f} ms per box over the band's seconds); "
        f"the linear bound ran on {int(need.sum())}, left {int(open_.sum())} open"
    )

    _tag_methods()
    idx = open_.nonzero().squeeze(1)
    if args.sample > 0:
        gen = torch.Generator().manual_seed(0)
        idx = idx[torch.randperm(idx.numel(), generator=gen)[: args.sample]]
    n = idx.numel()
    keys = ["crown", "replica", "alpha", "smax"] + (["unary", "product"] if args.variants else [])
    res = {k: torch.empty(n) for k in keys}
    secs = {"crown": 0.0, "alpha": 0.0}
    s = torch.linspace(0, 1, args.points)
    unit = torch.stack([t.reshape(-1) for t in torch.meshgrid(s, s, indexing="ij")], 1)
    for i in range(0, n, args.batch):
        lo, hi = box_lo[idx[i : i + args.batch]], box_hi[idx[i : i + args.batch]]
        sl = slice(i, i + lo.shape[0])
        t = time.perf_counter()
        res["crown"][sl] = crown_bounds(q, Interval(lo, hi), lower=False, upper=True).hi
        secs["crown"] += time.perf_counter() - t
        with torch.no_grad():
            out = q(Affine.from_boxes(Interval(lo, hi), tape=True))
            out = out.apply(torch.reshape, (lo.shape[0],))
            res["replica"][sl] = torch.minimum(upper_bound(out, None), out.hi)
        t = time.perf_counter()
        res["alpha"][sl] = optimise(q, lo, hi, args)
        secs["alpha"] += time.perf_counter() - t
        if args.variants:
            res["unary"][sl] = optimise(q, lo, hi, args, product=False)
            res["product"][sl] = optimise(q, lo, hi, args, unary=False)
        pts = (lo[:, None, :] + (hi - lo)[:, None, :] * unit[None]).reshape(-1, lo.shape[1])
        with torch.no_grad():
            res["smax"][sl] = q(Interval(pts, pts)).hi.reshape(lo.shape[0], -1).max(1).values

    print(
        f"\nopen boxes measured: {n}; alpha: {args.steps} Adam steps, lr {args.lr}, "
        f"grid {args.grid}; batches of {args.batch}"
    )
    print(f"  (a) CROWN upper bound < 0 on re-run:          {int((res['crown'] < 0).sum())}")
    print(
        f"      plain-float replica < 0: {int((res['replica'] < 0).sum())}, largest "
        f"|replica - CROWN| {float((res['replica'] - res['crown']).abs().max()):.3g}"
    )
    print(f"  (c) alpha upper bound < 0 (decided):           {int((res['alpha'] < 0).sum())}")
    if args.variants:
        print(
            f"      unary slopes only: {int((res['unary'] < 0).sum())}, "
            f"product planes only: {int((res['product'] < 0).sum())}"
        )
    print(f"  (b) sampled max < 0 (ceiling of any bound):    {int((res['smax'] < 0).sum())}")
    gap_c, gap_a = res["crown"] - res["smax"], res["alpha"] - res["smax"]
    print(
        f"  median bound - sampled max: CROWN {float(gap_c.median()):.4g}, "
        f"alpha {float(gap_a.median()):.4g} (median ratio {float((gap_a / gap_c).median()):.3f})"
    )
    a_try, c_box = secs["alpha"] / n, secs["crown"] / n
    print(
        f"  seconds per box: CROWN (forward + backward) {c_box * 1e3:.3f} ms, "
        f"alpha {a_try * 1e3:.3f} ms ({a_try / c_box:.1f} x)"
    )

    decided = res["alpha"] < 0
    scaled = (
        "" if args.sample <= 0 else " (on the sample only: boxes not measured count as not decided)"
    )
    print(f"\nsavings{scaled}: boxes of later batches inside a box alpha decides")
    print(
        f"  {'filter: CROWN hi <=':>22} {'tries':>6} {'decided':>7} {'saved':>6} "
        f"{'saved s':>8} {'alpha s':>8} {'break-even ms/try':>18}"
    )
    crown = res["crown"]
    for frac in (0.05, 0.1, 0.2, 0.5, 1.0):
        tau = float(torch.quantile(crown, torch.tensor(frac, dtype=crown.dtype)))
        sel = crown <= tau
        saved = torch.zeros(box_lo.shape[0], dtype=torch.bool)
        for j in idx[sel & decided].tolist():
            saved |= (box_lo >= box_lo[j]).all(1) & (box_hi <= box_hi[j]).all(1) & (call > call[j])
        tries = int((sel & ~saved[idx]).sum())
        k = int(saved.sum())
        print(
            f"  {f'{tau:.3g} ({frac:.0%})':>22} {tries:>6} {int((sel & decided).sum()):>7} "
            f"{k:>6} {k * per_box:>8.3f} {tries * a_try:>8.3f} "
            f"{k * per_box / max(tries, 1) * 1e3:>18.3f}"
        )


if __name__ == "__main__":
    main()
