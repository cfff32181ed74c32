"""Benchmark: the least V on the box's faces (the search that bounds every certified level), with
and without V's linear lower bound: the proven range, boxes and CPU seconds.

Certificates: the two published two-stage bands (``--external``), the LQR quadratics of
``cartpole`` and ``quadrotor2d``, and the trained 4-state network of
``benchmarks/data/cartpole-net/`` (``cartpole-wide``).

    python benchmarks/faces_linear.py [--external ../shared/external] [--time-limit 300]

Prints the process (CPU) seconds of each search: on a shared machine they are the ones to
compare.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import lyapcert
from lyapcert.certificates import QuadraticCandidate, load_candidate
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.verify import VerifyOptions
from lyapcert.verify import lyapunov as L

HERE = Path(__file__).resolve().parent


def faces(system, candidate, label: str, time_limit: float) -> None:
    for linear in (False, True):
        options = VerifyOptions(time_limit=time_limit, linear=linear)
        problem = L.build_problem(system, candidate, options)
        problem.deadline = time.perf_counter() + time_limit
        cpu = time.process_time()
        r = L._boundary_search(problem, None)
        cpu = time.process_time() - cpu
        print(
            f"{label:34s} linear {'on ' if linear else 'off'}: min V on the faces in "
            f"[{r.lower:.6g}, {r.upper:.6g}], {r.stats.boxes:,} boxes, {r.stats.stopped_by}, "
            f"CPU {cpu:.2f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external", default=str(HERE.parent.parent / "shared" / "external"))
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    root = Path(args.external) / "twostage"
    if (root / "index.json").exists():
        for entry in json.loads((root / "index.json").read_text()):
            system = lyapcert.get_system(entry["lyapcert_system"])
            loop = system.closed_loop(root / f"{entry['name']}_controller.onnx")
            V = load_candidate(str(root / f"{entry['name']}_V.onnx"), loop)
            faces(loop, V, entry["name"], args.time_limit)
    for name in ("cartpole", "quadrotor2d"):
        loop = lyapcert.get_system(name).closed_loop("lqr")
        P = lyapunov_matrix(loop.linearize()[0], np.eye(loop.n_states), discrete=False)
        faces(loop, QuadraticCandidate(P, loop), f"{name} LQR quadratic", args.time_limit)
    data = HERE / "data" / "cartpole-net"
    loop = lyapcert.get_system("cartpole-wide").closed_loop(data / "controller.pt")
    faces(
        loop,
        load_candidate(str(data / "V.pt"), loop),
        "cartpole-wide trained network",
        args.time_limit,
    )


if __name__ == "__main__":
    main()
