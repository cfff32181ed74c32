"""The double pendulum of the registry: its equations against the mechanics they come from.

Energy ``E = T + U`` is conserved without damping (RK4 over 10 s), and with damping ``b`` its
rate is minus the damping power ``b (w1^2 + (w2 - w1)^2)``, computed here by autograd on an
independent transcription of ``E`` (not through the registry's own ``energy`` text).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lyapcert.certificates import load_candidate
from lyapcert.simulate.integrate import make_stepper
from lyapcert.simulate.roa import CONVERGED, ConvergenceCriterion, label_convergence
from lyapcert.systems import get_system, registry_entry
from lyapcert.systems.spec import system_from_spec

PARAMS = {"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 9.81, "b": 0.5}


def energy(x: torch.Tensor, p=PARAMS) -> torch.Tensor:
    """``E = T + U`` of two point masses on rods, angles from the downward vertical."""
    th1, th2, w1, w2 = x.unbind(-1)
    m1, m2, l1, l2, g = p["m1"], p["m2"], p["l1"], p["l2"], p["g"]
    # positions of the masses, and their velocities by the chain rule
    v1 = torch.stack([l1 * torch.cos(th1) * w1, l1 * torch.sin(th1) * w1], -1)
    v2 = v1 + torch.stack([l2 * torch.cos(th2) * w2, l2 * torch.sin(th2) * w2], -1)
    y1 = -l1 * torch.cos(th1)
    y2 = y1 - l2 * torch.cos(th2)
    kinetic = 0.5 * m1 * (v1**2).sum(-1) + 0.5 * m2 * (v2**2).sum(-1)
    potential = m1 * g * (y1 + l1) + m2 * g * (y2 + l1 + l2)
    return kinetic + potential


def _system(**params):
    spec = dict(registry_entry("double_pendulum").spec)
    spec["params"] = {**spec["params"], **params}
    return system_from_spec(spec)


def _states(count: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    half = torch.tensor([math.pi, math.pi, 2 * math.pi, 2 * math.pi], dtype=torch.float64)
    return scale * half * (2 * torch.rand(count, 4, generator=gen, dtype=torch.float64) - 1)


def test_registry_entry_and_its_energy_candidate_are_the_mechanics():
    s = get_system("double_pendulum")
    assert s.state_names == ("th1", "th2", "w1", "w2")
    assert np.allclose(s.domain.upper, [math.pi, math.pi, 2 * math.pi, 2 * math.pi])
    assert np.allclose(s.domain.lower, -np.asarray(s.domain.upper))
    x = _states(256, seed=1)
    cand = load_candidate("energy", s)
    assert torch.allclose(cand.value(x), energy(x), rtol=1e-12, atol=1e-12)
    assert abs(float(cand.value(torch.zeros(1, 4, dtype=torch.float64)))) < 1e-12
    dt = get_system("double_pendulum-dt")
    assert dt.is_discrete and dt.dt == 0.01 and "energy" in dt.candidates


def test_energy_is_conserved_without_damping():
    """RK4 with step 1e-3 over 10 s from moderate and from high-energy (chaotic) states."""
    s = _system(b=0.0)
    stepper = make_stepper(s, 1e-3)
    x = torch.cat([_states(8, seed=2, scale=0.3), _states(8, seed=3, scale=0.9)])
    e0 = energy(x)
    with torch.no_grad():
        for _ in range(10_000):
            x = stepper(x)
    drift = ((energy(x) - e0).abs() / e0).max()
    assert float(drift) < 1e-6


@pytest.mark.parametrize("b", [0.5, 1.3])
def test_energy_rate_is_minus_the_damping_power(b):
    s = _system(b=b)
    x = _states(512, seed=4).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x, {**PARAMS, "b": b}).sum(), x)
    with torch.no_grad():
        rate = (grad * s.dynamics(x, torch.zeros(512, 0, dtype=torch.float64))).sum(-1)
        w1, w2 = x[:, 2], x[:, 3]
        power = b * (w1**2 + (w2 - w1) ** 2)
    assert torch.allclose(rate, -power, rtol=1e-10, atol=1e-10)


def test_dynamics_are_periodic_in_the_angles_as_the_simulation_hint_states():
    s = get_system("double_pendulum")
    x = _states(128, seed=5)
    u = torch.zeros(128, 0, dtype=torch.float64)
    for i, period in enumerate(registry_entry("double_pendulum").periods):
        if period:
            shifted = x.clone()
            shifted[:, i] += period * torch.randint(-2, 3, (128,), dtype=torch.float64)
            assert torch.allclose(s.dynamics(shifted, u), s.dynamics(x, u), atol=1e-9)


def test_convergence_box_lies_below_the_lowest_saddle_energy():
    """The registry's convergence box (box-scaled 0.2) is inside the ROA: E there stays below
    the lowest saddle, (th1, th2) = (0, pi) with E = 2 m2 g l2, and E never increases."""
    s = get_system("double_pendulum")
    radius = ConvergenceCriterion.for_system(s).convergence_radius
    half = torch.tensor(s.domain.upper, dtype=torch.float64)
    grid = torch.linspace(-1, 1, 9, dtype=torch.float64)
    corners = torch.cartesian_prod(grid, grid, grid, grid) * radius * half
    assert float(energy(corners).max()) < 0.75 * 2 * 9.81


def test_a_trajectory_over_the_top_settles_elsewhere_at_once():
    """From rest with the first rod nearly upright a trajectory falls over the top; the periodic
    hint labels it at a shifted copy of x*, and a small swing converges to x*."""
    s = get_system("double_pendulum")
    crit = ConvergenceCriterion.for_system(s)
    assert crit.periods == (2 * math.pi, 2 * math.pi, 0.0, 0.0)
    points = torch.tensor(
        [[0.2, 0.1, 0.0, 0.0], [math.pi - 0.05, math.pi - 0.05, 3.0, 3.0]], dtype=torch.float64
    )
    outcomes = label_convergence(s, points, crit)
    assert outcomes[0] == CONVERGED
    assert outcomes[1] != CONVERGED


def test_periods_are_checked_and_leave_other_cache_keys_alone():
    from lyapcert.errors import SimulationError
    from lyapcert.simulate.roa import _criterion_key

    for bad in [(float("nan"),), (-1.0,)]:
        with pytest.raises(SimulationError, match="periods"):
            ConvergenceCriterion(periods=bad)
    assert "periods" not in _criterion_key(ConvergenceCriterion())
    assert _criterion_key(ConvergenceCriterion(periods=(6.0, 0.0)))["periods"] == (6.0, 0.0)
    with pytest.raises(SimulationError, match="one per state"):
        label_convergence(
            get_system("double_pendulum"),
            torch.zeros(1, 4, dtype=torch.float64),
            ConvergenceCriterion(periods=(1.0, 0.0)),
        )


def test_square_sum_completes_the_square_of_a_semidefinite_form_only():
    import sympy

    from lyapcert.certificates.candidates import square_sum

    w1, w2, th = sympy.symbols("w1 w2 th", real=True)
    form = 2 * w1**2 - 2 * w1 * w2 + w2**2
    squares = square_sum(form, [th, w1, w2])
    assert sympy.expand(squares - form) == 0
    assert all(isinstance(t, sympy.Mul) and t.args[-1].is_Pow for t in squares.args)
    negative = square_sum(-form, [w1, w2])
    assert sympy.expand(negative + form) == 0 and negative != -form
    for kept in (w1**2 - w2**2, w1 * w2, w1**2 + w2, w1**2 * sympy.cos(th) + w2**2):
        assert square_sum(kept, [th, w1, w2]) == kept


@pytest.mark.slow
def test_verify_reports_the_energy_decreasing_but_not_strictly():
    """Like the single pendulum's: dE/dt = -b (w1^2 + (w2-w1)^2) <= 0 is proven on a level set
    (the rational normal form of the Lie derivative makes its sign visible to interval bounds),
    and a point with w = 0 is a counterexample to strict decrease."""
    import json as _json

    from typer.testing import CliRunner

    from lyapcert.cli import app

    res = CliRunner().invoke(
        app,
        [
            *("verify", "double_pendulum", "--candidate", "energy", "--json"),
            *("--max-boxes", "2000000", "--time-limit", "3600"),  # the box budget decides
        ],
    )
    assert res.exit_code == 1, res.output  # not verified
    data = _json.loads(res.output[res.output.index("{") :])
    assert data["verdict"] == "falsified" and data["condition"] == "nonstrict"
    assert data["level"] > 9.0 and data["hole"] == "none"


def test_rational_normal_form_equals_the_lie_derivative_to_50_digits():
    """Oracle: the normal form the verifier bounds and the plain Lie derivative, both evaluated
    by sympy at 40-digit random points (not through float64), agree to 1e-35 relative."""
    import random

    import sympy

    from lyapcert.certificates.candidates import rational_normal_form

    s = get_system("double_pendulum")
    cand = load_candidate("energy", s)
    symbols = cand.symbols
    params = {sympy.Symbol(k, real=True): sympy.Float(v, 30) for k, v in s.symbolic.params.items()}
    f = [e.subs(params) for e in s.symbolic.dynamics]
    plain = sum(sympy.diff(cand.expr, x) * fx for x, fx in zip(symbols, f))
    form = rational_normal_form(sympy.expand(plain), symbols, s)
    assert form is not None
    rng = random.Random(7)
    for _ in range(20):
        point = {x: sympy.Rational(rng.randint(-3000, 3000), 1000) for x in symbols}
        a, b = plain.evalf(50, subs=point), form.evalf(50, subs=point)
        assert abs(a - b) <= sympy.Float("1e-35") * (1 + abs(a))
        w1, w2 = point[symbols[2]], point[symbols[3]]
        assert abs(b + sympy.Rational(1, 2) * (w1**2 + (w2 - w1) ** 2)) < sympy.Float("1e-25")


@pytest.mark.slow
@pytest.mark.parametrize("b", [0.0, -0.5])
def test_energy_without_or_with_negative_damping_is_never_verified(b):
    """Soundness: undamped, E is constant on trajectories (no asymptotic stability); with b < 0
    it grows. Through the normal form as through any other path, no VERIFIED may come out."""
    from lyapcert.verify import VerifyOptions, verify_candidate

    s = _system(b=b)
    cand = load_candidate("energy", s)
    result = verify_candidate(s, cand, options=VerifyOptions(max_boxes=300_000, time_limit=3600))
    assert not result.verified, result.message
