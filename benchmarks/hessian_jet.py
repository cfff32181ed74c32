"""Benchmark: the Hessian enclosure of the second-order Taylor form by one second-order jet
(``bounds.jet``) against nested forward mode, on random small boxes of a quantity's domain:
CPU seconds (best of 5) and the ratio of the enclosures' widths (jet / nested).

    python benchmarks/hessian_jet.py [cartpole] [--boxes 4096]

The quantity is ``dV/dt`` of the system's LQR closed loop with the quadratic of its
linearisation (what the cart-pole's level search bounds).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lyapcert.bounds import forms
from lyapcert.bounds.interval import Interval
from lyapcert.certificates import QuadraticCandidate
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.systems import get_system
from lyapcert.verify.lyapunov import build_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", nargs="?", default="cartpole")
    parser.add_argument("--boxes", type=int, default=4096)
    args = parser.parse_args()
    loop = get_system(args.system).closed_loop("lqr")
    P = lyapunov_matrix(loop.linearize()[0], np.eye(loop.n_states), discrete=loop.is_discrete)
    problem = build_problem(loop, QuadraticCandidate(P, loop))
    q = problem.lie_q
    g = torch.Generator().manual_seed(0)
    lo, hi = problem.lo, problem.hi
    n = lo.shape[0]
    c = lo + (hi - lo) * torch.rand(args.boxes, n, generator=g, dtype=torch.float64)
    w = (hi - lo) * 0.02 * torch.rand(args.boxes, n, generator=g, dtype=torch.float64)
    boxes = Interval(c - w, c + w)
    nested = forms.hessian_enclosure_nested(q, boxes)
    jet = forms._hessian_jet(q, boxes, list(nested))
    ratios = []
    for pair in nested:
        wn = nested[pair].hi - nested[pair].lo
        wj = jet[pair].hi - jet[pair].lo
        both = torch.isfinite(wn) & torch.isfinite(wj) & (wn > 0)
        ratios.append(wj[both] / wn[both])
    r = torch.cat(ratios)
    print(
        f"{args.system}: {args.boxes} boxes, {len(nested)} pairs; width jet / nested: "
        f"min {float(r.min()):.4f}, median {float(r.median()):.6f}, max {float(r.max()):.6f}"
    )
    for label, fn in (
        ("nested forward mode", lambda: forms.hessian_enclosure_nested(q, boxes)),
        ("second-order jet", lambda: forms._hessian_jet(q, boxes, list(nested))),
    ):
        times = []
        for _ in range(5):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        print(f"  {label:20s} CPU s, best of 5: {min(times):.3f}")


if __name__ == "__main__":
    main()
