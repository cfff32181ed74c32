"""Benchmark: the published pendulum band's decrease search with and without the linear (CROWN)
bounds of ``V`` itself intersected into ``V``'s bounds (``bounds.crown``; the decrease quantity
keeps its interval and mean-value forms). Boxes and seconds.

    python benchmarks/crown_value_bounds.py plain|crown
"""

import json
import sys
import time
from pathlib import Path

import torch

import lyapcert
import lyapcert.verify.lyapunov as L
from lyapcert.bounds.crown import linear_bounds
from lyapcert.bounds.forms import Bounds
from lyapcert.bounds.graph import capture
from lyapcert.certificates import load_candidate
from lyapcert.verify import VerifyOptions

data = Path(__file__).resolve().parents[1] / "tests" / "data" / "twostage"
entry = json.loads((data / "index.json").read_text())[0]
loop = lyapcert.get_system(entry["lyapcert_system"]).closed_loop(
    data / f"{entry['name']}_controller.onnx"
)
V = load_candidate(str(data / f"{entry['name']}_V.onnx"), loop)
use = len(sys.argv) > 1 and sys.argv[1] == "crown"
problem = L.build_problem(loop, V, VerifyOptions(time_limit=600, record_proof=False))
value_graph = capture(V.value_function(), 1)
plain_bounds = L._bounds


def with_crown(q, boxes, mean_value):
    b = plain_bounds(q, boxes, mean_value)
    if use and q is problem.value_q:
        lb = linear_bounds(value_graph, boxes)
        return Bounds(torch.maximum(b.lo, lb.lo), torch.minimum(b.hi, lb.hi), b.sensitivity)
    return b


L._bounds = with_crown
started = time.perf_counter()
dec = L.decrease_search(problem, entry["V_at_x_star"] + 0.001, strict=True, target=entry["c2"])
seconds = time.perf_counter() - started
print("crown" if use else "plain", dec.stats.boxes, f"{seconds:.1f} s", dec.lower)
