"""Pieces shared by the neural methods: the labelled training sample, inputs, weight checks."""

from __future__ import annotations

import numpy as np
import torch

from lyapcert.errors import MethodError
from lyapcert.systems.system import System


def labelled_sample(system: System, samples: int, seed: int, progress: bool = False):
    """``(points [k, n], inside [k])``: a random subset of the cached true-ROA sample."""
    from lyapcert.simulate.roa import true_roa

    rng = np.random.default_rng(seed)
    est = true_roa(system, cache=True, progress=progress)
    idx = rng.choice(len(est.points), size=min(samples, len(est.points)), replace=False)
    return torch.as_tensor(est.points[idx]), torch.as_tensor(est.inside[idx])


def input_function(system: System, controller=None):
    """``x -> u``: the controller, or ``u*`` held constant."""

    def inputs(x: torch.Tensor) -> torch.Tensor:
        if controller is not None:
            return controller(x)
        return system.equilibrium_input_tensor(x.dtype, x.device).expand(x.shape[0], -1)

    return inputs


def check_weights(module: torch.nn.Module, method: str) -> None:
    """A clear error, and so no certificate, when training left NaN or inf weights."""
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            raise MethodError(f"{method}: training produced NaN or inf weights ({name})")


def report(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(text)
