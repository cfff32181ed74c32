"""Diagnostic: how strongly does ``V`` decrease near ``x*``? The Hessian of the decrease quantity
(``dV/dt``, or ``V(x+) - V(x)``) enclosed over ``x* +- r s`` (``s`` the box's half-widths) for a few
``r``: the eigenvalues of its midpoint and the proven upper bound of the largest eigenvalue over
the enclosure (``bounds.psd``). A negative bound proves the decrease on that neighbourhood (less a
ball of rounding size) by Taylor's theorem at ``x*``; a spread of eigenvalues over orders of
magnitude means thin boxes near ``x*`` for any branch and bound.

    python benchmarks/decrease_hessian.py cartpole-wide \\
        --candidate benchmarks/data/cartpole-net/V.pt --controller benchmarks/data/cartpole-net/controller.pt
    python benchmarks/decrease_hessian.py cartpole --controller lqr     # the LQR quadratic
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lyapcert.bounds.forms import hessian_enclosure
from lyapcert.bounds.interval import Interval
from lyapcert.bounds.psd import upper_eigenvalue_bound
from lyapcert.certificates import QuadraticCandidate, load_candidate
from lyapcert.control.closed_loop import close_loop
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.systems import resolve_system
from lyapcert.verify.lyapunov import VerifyOptions, build_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument(
        "--candidate", help="V (a file or an expression); default: the LQR quadratic"
    )
    parser.add_argument("--controller", help="lqr or a controller file")
    parser.add_argument("--radii", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1])
    args = parser.parse_args()
    s = close_loop(resolve_system(args.system), args.controller, check_u_star=True)
    if args.candidate is None:
        P = lyapunov_matrix(s.linearize()[0], np.eye(s.n_states), discrete=s.is_discrete)
        cand = QuadraticCandidate(P, s)
    else:
        cand = load_candidate(args.candidate, s)
    pb = build_problem(s, cand, VerifyOptions())
    xs = pb.x_star.reshape(1, -1)
    half = (pb.hi - pb.lo) / 2
    n = xs.shape[1]
    print(f"{'r':>8} {'proven lambda_max':>18}  midpoint eigenvalues")
    for r in args.radii:
        H = hessian_enclosure(pb.lie_q, Interval(xs - r * half, xs + r * half))
        lo, hi = np.zeros((n, n)), np.zeros((n, n))
        for (j, k), v in H.items():
            lo[j, k] = lo[k, j] = float(v.lo[0])
            hi[j, k] = hi[k, j] = float(v.hi[0])
        lam = upper_eigenvalue_bound(lo, hi)
        eig = np.linalg.eigvalsh((lo + hi) / 2)
        print(f"{r:>8.0e} {lam:>18.4g}  " + " ".join(f"{e:.3g}" for e in eig))


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
