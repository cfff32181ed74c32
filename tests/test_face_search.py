"""The boundary search (``inf V`` over the box's faces) with V's linear lower bound: its lower
bound never exceeds V at any face point, and in 3 states it needs fewer boxes than intervals."""

import math

import pytest
import torch

from lyapcert.certificates import NetworkCandidate
from lyapcert.certificates.network import LyapunovNetwork
from lyapcert.systems import get_system
from lyapcert.verify import VerifyOptions
from lyapcert.verify.lyapunov import _boundary_search, _point_values, boundary_faces, build_problem


def _problem(linear: bool, seed: int = 0):
    system = get_system("nonpoly2_3d")
    torch.manual_seed(seed)
    net = LyapunovNetwork(3, system.equilibrium, width=16, depth=2, activation="tanh").double()
    with torch.no_grad():  # a V whose least value on the faces lies inside a face
        for p in net.parameters():
            p.mul_(3.0)
    options = VerifyOptions(time_limit=3600, max_boxes=400_000, linear=linear)
    problem = build_problem(system, NetworkCandidate(net), options)
    problem.deadline = math.inf
    return problem


def _face_samples(problem, per_face: int = 4000, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    face_lo, face_hi = boundary_faces(problem.lo, problem.hi)
    u = torch.rand(face_lo.shape[0], per_face, face_lo.shape[1], generator=g, dtype=torch.float64)
    pts = face_lo[:, None] + u * (face_hi - face_lo)[:, None]
    return pts.reshape(-1, face_lo.shape[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_faces_lower_bound_is_below_v_at_every_face_point(seed):
    problem = _problem(linear=True, seed=seed)
    res = _boundary_search(problem, None)
    assert res.stats.stopped_by == "converged"
    v_up = _point_values(problem.value_q, _face_samples(problem, seed=seed)).hi
    # a sound upper enclosure of V at each sampled face point: the proven infimum lies below
    assert res.lower <= float(v_up.min())
    assert res.lower <= res.upper <= float(v_up.min()) + 1e-3 * abs(float(v_up.min())) + 1e-9


def test_the_linear_lower_bound_saves_face_boxes_in_three_states():
    on = _boundary_search(_problem(linear=True), None)
    off = _boundary_search(_problem(linear=False), None)
    assert on.stats.stopped_by == off.stats.stopped_by == "converged"
    assert on.stats.boxes < off.stats.boxes
    # both are within the search's relative tolerance of the same infimum
    assert on.lower <= off.upper and off.lower <= on.upper


def test_a_target_answers_the_faces_question():
    problem = _problem(linear=True)
    full = _boundary_search(problem, None)
    below = _boundary_search(_problem(linear=True), 0.5 * full.lower)
    assert below.lower > 0.5 * full.lower  # proven above the target
    above = _boundary_search(_problem(linear=True), 2.0 * full.upper)
    assert above.upper <= 2.0 * full.upper  # a face point below the target
