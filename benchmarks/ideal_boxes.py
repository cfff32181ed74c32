"""Benchmark: how few boxes the decrease search could need with perfect bounds.

The decrease search of a saved certificate at its saved level (``lyapcert verify DIR --search``)
runs three times from the same proven inner level ``c0``: with the linear bound, without it, and
with every enclosure of ``V`` and ``dV/dt`` replaced by the range seen on a ``G x G`` grid of each
box (its corners included). The last is NOT a proof: sampling under-estimates a range, so its box
count is optimistic, an estimate from below of what any sound bound, however tight, needs on
this search. If it is above a fifth of the count without the linear bound, no tighter bound can
give "5x fewer boxes" on that certificate.

    python benchmarks/ideal_boxes.py DIR [DIR ...] [--grid 9] [--verify-speed-network]

Two-state certificates (the grid has ``G^n`` points per box). ``--verify-speed-network`` adds
``verify_speed.py``'s tanh network on ``vanderpol``, at the largest level the verifier (linear
bound on) certifies for it here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from lyapcert.bounds.interval import Interval
from lyapcert.certificates.store import load
from lyapcert.verify import VerifyOptions
from lyapcert.verify import lyapunov as L


def _sampled(q, grid: int):
    """A bound function that encloses ``q`` on points exactly (as ``q`` does) and on boxes by the
    range of ``q``'s point enclosures on a ``grid^n`` lattice of the box (not a proof)."""

    def oracle(x):
        if not isinstance(x, Interval) or bool((x.lo == x.hi).all()):
            return q(x)
        b, n = x.lo.shape
        t = torch.linspace(0.0, 1.0, grid, dtype=x.lo.dtype)
        mesh = torch.stack(torch.meshgrid(*([t] * n), indexing="ij"), -1).reshape(-1, n)
        pts = x.lo[:, None, :] + mesh[None] * (x.hi - x.lo)[:, None, :]
        flat = pts.reshape(-1, n)
        out = q(Interval(flat, flat))
        lo = out.lo.reshape(b, -1).min(dim=1).values
        hi = out.hi.reshape(b, -1).max(dim=1).values
        return Interval(lo, hi)

    return oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--grid", type=int, default=9)
    parser.add_argument("--verify-speed-network", action="store_true")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    cases = []
    for d in args.dirs:
        cert = load(d)
        cases.append((d, cert.system, cert.candidate, float(cert.level)))
    if args.verify_speed_network:
        from verify_speed import TanhCertificate, lyapunov_P

        from lyapcert.certificates import NetworkCandidate
        from lyapcert.systems import get_system
        from lyapcert.verify import verify_candidate

        s = get_system("vanderpol")
        net = NetworkCandidate(TanhCertificate(lyapunov_P(s)))
        level = verify_candidate(s, net, options=VerifyOptions(time_limit=3600)).level
        cases.append(("verify_speed tanh 2x32 network (vanderpol)", s, net, float(level)))
    for d, system, candidate, level in cases:
        base = L.build_problem(system, candidate, VerifyOptions(time_limit=3600))
        base.deadline = math.inf
        _, local = L.prove_local(base)
        c0, _ = L.inner_level(base, local)
        rows = []
        for label, opts in (
            ("linear", VerifyOptions(time_limit=3600)),
            ("no linear", VerifyOptions(time_limit=3600, linear=False)),
            (
                f"sampled {args.grid}x{args.grid} (not a proof)",
                VerifyOptions(time_limit=3600, linear=False, mean_value=False, second_order=False),
            ),
        ):
            problem = L.build_problem(system, candidate, opts)
            problem.deadline = math.inf
            if label.startswith("sampled"):
                problem = dataclasses.replace(
                    problem,
                    value_q=_sampled(problem.value_q, args.grid),
                    lie_q=_sampled(problem.lie_q, args.grid),
                )
            started = time.perf_counter()
            res = L.decrease_search(problem, c0, strict=True, target=level)
            rows.append((label, res.stats.boxes, res.lower > level, time.perf_counter() - started))
        print(f"{d}: level {level:.6g}, c0 {c0:.3g}")
        for label, boxes, proved, seconds in rows:
            print(f"  {label:32s} {boxes:>9,} boxes  proved {proved}  {seconds:.1f} s")
        print(f"  no linear / sampled: {rows[1][1] / rows[2][1]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
