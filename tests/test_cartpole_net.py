"""The trained cart-pole closed loop of issue 15 (``benchmarks/data/cartpole-net/``, made by
``benchmarks/train_cartpole_net.py``): the files load through lyapcert's importers, have the
published sizes (V 4-128-128-1, controller 4-32-32-1) and close a loop whose x* is an
equilibrium."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import lyapcert
from lyapcert.certificates import FileCandidate, load_candidate
from lyapcert.control.imported import load_controller

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "cartpole-net"
V_FILE, K_FILE = DATA / "V.pt", DATA / "controller.pt"


@pytest.fixture(scope="module")
def system():
    return lyapcert.get_system("cartpole-wide")


def _weight_shapes(path: Path) -> list[list[int]]:
    """Shapes of the 2-D parameters (the linear layers' weights), in order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's own notice
        module = torch.jit.load(str(path))
    return [list(p.shape) for p in module.parameters() if p.dim() == 2]


def test_files_are_small_and_described():
    for path in (V_FILE, K_FILE, DATA / "README.md", DATA / "training.json"):
        assert path.is_file(), path
    assert V_FILE.stat().st_size < 1_000_000 and K_FILE.stat().st_size < 1_000_000
    record = json.loads((DATA / "training.json").read_text())
    assert record["system"] == "cartpole-wide"
    assert record["options"]["width"] == 128 and record["options"]["outputs"] == 1


def test_published_sizes():
    # phi: Linear(4, 128), Linear(128, 128), Linear(128, 1) (weights [out, in])
    assert _weight_shapes(V_FILE) == [[128, 4], [128, 128], [1, 128]]
    # g: Linear(4, 32), Linear(32, 32), Linear(32, 1)
    assert _weight_shapes(K_FILE) == [[32, 4], [32, 32], [1, 32]]


def test_files_load_and_x_star_is_an_equilibrium(system):
    candidate = load_candidate(V_FILE, system)  # checked against the file on 10^4 points
    assert isinstance(candidate, FileCandidate)
    controller = load_controller(K_FILE, system)  # checked: u* at x*, within the bounds
    closed = system.closed_loop(controller)
    x_star = system.equilibrium_tensor()
    with torch.no_grad():
        u = controller(x_star)
        assert u.shape == (1, 1) and float(u.abs().max()) == 0.0  # u* = 0, exactly
        f = closed.dynamics(x_star, torch.zeros(1, 0, dtype=torch.float64))
        assert float(f.abs().max()) <= 1e-12
        # V is positive definite around x*: 0 there, positive on a sample of the box
        assert abs(float(candidate.value(x_star)[0])) <= 1e-12
        lo, hi = system.domain.as_tensors()
        gen = torch.Generator().manual_seed(0)
        x = lo + torch.rand(2000, 4, generator=gen, dtype=torch.float64) * (hi - lo)
        assert bool((candidate.value(x) > 0).all())
        # the controller respects |u| <= 30
        assert float(controller(x).abs().max()) <= 30.0


def test_outputs_option_sets_phi_s_last_layer(system):
    from lyapcert.methods import NeuralROAOptions
    from lyapcert.methods.training import build_network

    net = build_network(system, NeuralROAOptions(width=8, outputs=1))
    assert [list(p.shape) for p in net.parameters() if p.dim() == 2] == [[8, 4], [8, 8], [1, 8]]
    default = build_network(system, NeuralROAOptions(width=8))
    assert default.phi[-1].out_features == 4  # one per state, as before
    with pytest.raises(ValueError, match="outputs"):
        NeuralROAOptions(outputs=0)
