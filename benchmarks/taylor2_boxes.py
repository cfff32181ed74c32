"""Benchmark: which bound form decides dV/dt < 0 on small boxes near the equilibrium.

    python benchmarks/taylor2_boxes.py [--system cartpole] [--boxes 200]

For the LQR loop of ``--system`` and the quadratic ``V`` of ``A'P + PA = -I``: boxes centred on
random points at distance ``r`` from x*, of width ``w = rel * r``; for each form the share of boxes
where the upper bound of dV/dt is negative, and the share where the sampled maximum (256 points)
is negative (what an exact bound would decide). Prints one line per (r, rel).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import lyapcert
from lyapcert.bounds.forms import mean_value_bounds, taylor2_bounds
from lyapcert.bounds.interval import Interval
from lyapcert.control.linear import lqr
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
from lyapcert.verify.lyapunov import VerifyOptions, build_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="cartpole")
    parser.add_argument("--boxes", type=int, default=200)
    args = parser.parse_args()
    system = lyapcert.get_system(args.system)
    closed = system.closed_loop(lqr(system))
    cand = QuadraticMethod().fit(closed, QuadraticOptions()).candidate
    problem = build_problem(closed, cand, VerifyOptions())
    n = system.n_states
    x_star = problem.x_star
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    print(f"{args.system}: cond(P) = {np.linalg.cond(np.asarray(cand.P)):.0f}")
    print(f"{'r':>7} {'w/r':>5} {'mean value':>11} {'taylor2':>8} {'sampled':>8}")
    for r in (1e-3, 1e-2, 3e-2):
        for rel in (0.5, 0.25, 0.1, 0.03):
            d = rng.normal(size=(args.boxes, n))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            c = x_star + torch.tensor(d * r)
            w = rel * r
            box = Interval(c - w / 2, c + w / 2)
            mv = mean_value_bounds(problem.lie_q, box)
            t2 = taylor2_bounds(problem.lie_q, box)
            pts = (
                c[:, None, :]
                + (torch.rand(args.boxes, 256, n, generator=gen, dtype=torch.float64) - 0.5) * w
            )
            flat = pts.reshape(-1, n)
            sampled = problem.lie_q(Interval(flat, flat)).hi.reshape(args.boxes, 256).max(1).values
            assert bool((t2.hi >= sampled).all() and (mv.hi >= sampled).all())  # both enclose
            share = lambda b: float((b < 0).double().mean())  # noqa: E731
            print(
                f"{r:>7.0e} {rel:>5} {share(mv.hi):>11.2f} {share(t2.hi):>8.2f} {share(sampled):>8.2f}"
            )


if __name__ == "__main__":
    main()
