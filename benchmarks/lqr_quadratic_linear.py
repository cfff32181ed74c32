"""Benchmark: the LQR closed loop's quadratic certificate verified with and without linear bounds.

The candidate is the quadratic of the closed loop's linearisation (``A'P + PA = -I``; discrete
time ``A'PA - P = -I``), the `quadratic` method's default; the verifier runs with the given time
limit (one deadline for the whole verification) and ``--linear on|off``. Prints the verdict, the
level, the seconds and the boxes of the searches.

    python benchmarks/lqr_quadratic_linear.py cartpole --linear on --time-limit 300 \
        [--parts 2 --backend process]

``--parts K --backend process`` splits the decrease search into K sub-boxes searched in worker
processes (one per core here), as ``lyapcert verify ... --parts K --backend process``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import add_linear_option

from lyapcert.certificates import QuadraticCandidate
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.systems import get_system
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.options import mapper_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    add_linear_option(parser)
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--backend", choices=["local", "process"], default="local")
    args = parser.parse_args()
    s = get_system(args.system).closed_loop("lqr")
    P = lyapunov_matrix(s.linearize()[0], np.eye(s.n_states), discrete=s.is_discrete)
    started = time.perf_counter()
    r = verify_candidate(
        s,
        QuadraticCandidate(P, s),
        options=VerifyOptions(
            time_limit=args.time_limit, linear=args.linear == "on", parts=args.parts
        ),
        mapper=mapper_for(args.backend),
    )
    seconds = time.perf_counter() - started
    boxes = r.stats.boxes if r.stats is not None else None
    print(
        f"{args.system} linear {args.linear}, parts {args.parts} ({args.backend}): "
        f"{r.verdict.value}, level {r.level}, {seconds:.1f} s, {boxes} boxes"
    )
    if r.message:
        print(r.message)


if __name__ == "__main__":
    main()
