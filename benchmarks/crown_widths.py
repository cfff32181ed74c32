"""Benchmark: width of the linear (CROWN) bounds against interval bounds on a random 2-40-40-1
tanh/sigmoid network (seed 0), median ratio over 200 random boxes per half-width.

    python benchmarks/crown_widths.py
"""

import torch

from lyapcert.bounds.crown import linear_bounds
from lyapcert.bounds.graph import capture
from lyapcert.bounds.interval import Interval

torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Linear(2, 40),
    torch.nn.Tanh(),
    torch.nn.Linear(40, 40),
    torch.nn.Tanh(),
    torch.nn.Linear(40, 1),
    torch.nn.Sigmoid(),
).double()
graph = capture(net, 1)
gen = torch.Generator().manual_seed(1)
print(f"{'half-width':>10} {'median crown / interval width':>30}")
for w in (0.01, 0.1, 1.0):
    c = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 4 - 2
    boxes = Interval(c - w, c + w)
    lb = linear_bounds(graph, boxes)
    iv = graph.evaluate(boxes)
    ratio = (lb.hi - lb.lo) / (iv.hi - iv.lo).reshape(-1)
    print(f"{w:>10} {float(ratio.median()):>30.4f}")
