"""Falsification: look for points where the decrease condition fails, before branch and bound.

Floating-point search proposes, interval arithmetic decides: the points returned here are only
candidates; the branch and bound keeps those whose violation the point-interval evaluation proves.

* sampling: a scrambled Sobol sample of the box, scored by the decrease quantity;
* gradient search (PGD): from the highest-scoring samples, projected gradient ascent on the
  decrease quantity (dV/dt, or V(x+) - V(x) + k V(x)), staying in the box.
"""

from __future__ import annotations

import torch


def falsification_points(
    decrease_fn,
    lo: torch.Tensor,
    hi: torch.Tensor,
    n_samples: int = 8192,
    n_starts: int = 256,
    steps: int = 40,
    seed: int = 0,
) -> torch.Tensor:
    """Candidate violation points ``[k, n]`` (float64): the best samples and their PGD ascents.

    ``decrease_fn(x [b, n]) -> [b]`` is a differentiable float64 torch function.
    """
    n = lo.shape[0]
    engine = torch.quasirandom.SobolEngine(n, scramble=True, seed=seed)
    unit = engine.draw(n_samples, dtype=torch.float64).to(lo.device)
    x = lo + unit * (hi - lo)
    with torch.no_grad():
        score = decrease_fn(x)
    score = torch.where(torch.isfinite(score), score, torch.full_like(score, -torch.inf))
    k = min(n_starts, x.shape[0])
    start = x[torch.topk(score, k).indices]
    path = [x[score >= 0], start]
    z = start.clone()
    step = 0.02 * (hi - lo)
    for _ in range(steps):
        z.requires_grad_(True)
        val = decrease_fn(z)
        (grad,) = torch.autograd.grad(val.sum(), z)
        with torch.no_grad():
            grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
            z = torch.minimum(torch.maximum(z + step * torch.sign(grad), lo), hi)
        step = step * 0.93
    path.append(z.detach())
    return torch.cat(path)


def decrease_function(system, candidate, decay_rate: float = 0.0):
    """The float64 decrease quantity as a differentiable function (for the falsifier only)."""
    from lyapcert.simulate.integrate import vector_field

    field = vector_field(system)
    if system.is_discrete:

        def discrete(x):
            v = candidate.value(x)
            return candidate.value(field(x)) - v + decay_rate * v

        return discrete

    def lie(x):
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            v = candidate.value(xg)
            (grad,) = torch.autograd.grad(v.sum(), xg, create_graph=x.requires_grad)
        return (grad * field(x)).sum(dim=1)

    return lie
