"""The registry matches shared/benchmarks.md: names, equations, parameters, boxes, input bounds.

Each system is compared with an independent numpy transcription of its equations from
benchmarks.md at random points of its box (and random admissible inputs).
"""

import math

import numpy as np
import pytest
import torch

from lyapcert.errors import UnknownSystemError
from lyapcert.systems import get_system, registry_entry, resolve_system, system_names

sin, cos, pi = np.sin, np.cos, math.pi


def _interconnected(x):
    p, q = x[:, 0::2], x[:, 1::2]
    pad = np.pad(p, ((0, 0), (1, 1)))
    dq = -p + 0.01 * p**3 - 0.5 * q + 0.1 * (pad[:, :-2] - 2 * p + pad[:, 2:])
    out = np.empty_like(x)
    out[:, 0::2], out[:, 1::2] = q, dq
    return out


def _double_pendulum(x, u):
    """M(th) a = r, solved point by point (numpy), from the Lagrangian of two point masses."""
    m1 = m2 = l1 = l2 = 1.0
    g, b = 9.81, 0.5
    th1, th2, w1, w2 = x.T
    d = th1 - th2
    out = np.empty_like(x)
    out[:, 0], out[:, 1] = w1, w2
    for k in range(len(x)):
        M = np.array(
            [[(m1 + m2) * l1**2, m2 * l1 * l2 * cos(d[k])], [m2 * l1 * l2 * cos(d[k]), m2 * l2**2]]
        )
        q = np.array([-b * w1[k] + b * (w2[k] - w1[k]), -b * (w2[k] - w1[k])])  # joint torques
        r = np.array(
            [
                -m2 * l1 * l2 * sin(d[k]) * w2[k] ** 2 - (m1 + m2) * g * l1 * sin(th1[k]),
                m2 * l1 * l2 * sin(d[k]) * w1[k] ** 2 - m2 * g * l2 * sin(th2[k]),
            ]
        )
        out[k, 2:] = np.linalg.solve(M, r + q)
    return out


def _ip(x, u):
    m, l, b, g = 0.15, 0.5, 0.1, 9.81
    th, w = x.T
    return np.stack([w, g / l * sin(th) - b / (m * l**2) * w + u[:, 0] / (m * l**2)], 1)


def _pt(x, u):
    v, L, R = 2.0, 1.0, 10.0
    _d, th = x.T
    return np.stack([v * sin(th), v * u[:, 0] / L - cos(th) / (R / v - sin(th))], 1)


def _cartpole(x, u):
    mc, mp, l, g = 1.0, 0.1, 1.0, 9.81
    _p, th, pd, thd = x.T
    u = u[:, 0]
    den = mc + mp * sin(th) ** 2
    pdd = (u + mp * sin(th) * (l * thd**2 - g * cos(th))) / den
    thdd = (-u * cos(th) - mp * l * thd**2 * cos(th) * sin(th) + (mc + mp) * g * sin(th)) / (
        l * den
    )
    return np.stack([pd, thd, pdd, thdd], 1)


def _quad(x, u):
    m, l, I, g = 0.486, 0.25, 0.00383, 9.81
    th, xd, yd, thd = x[:, 2], x[:, 3], x[:, 4], x[:, 5]
    u1, u2 = u.T
    return np.stack(
        [xd, yd, thd, -(u1 + u2) * sin(th) / m, (u1 + u2) * cos(th) / m - g, l * (u1 - u2) / I], 1
    )


def _pvtol(x, u):
    m, I, d, g = 4.0, 0.0475, 0.25, 9.8
    _, _, th, xb, yb, w = x.T
    u1, u2 = u.T
    return np.stack(
        [
            xb * cos(th) - yb * sin(th),
            xb * sin(th) + yb * cos(th),
            w,
            yb * w - g * sin(th),
            -xb * w - g * cos(th) + (u1 + u2) / m,
            d * (u1 - u2) / I,
        ],
        1,
    )


def _fan(x, u):
    m, g, J, r, d = 11.2, 0.28, 0.0462, 0.156, 0.1
    th, xd, yd = x[:, 2], x[:, 3], x[:, 4]
    u1, u2 = u.T
    return np.stack(
        [
            xd,
            yd,
            x[:, 5],
            (-d * xd + u1 * cos(th) - u2 * sin(th)) / m,
            (-d * yd + u1 * sin(th) + u2 * cos(th) - m * g) / m,
            r * u1 / J,
        ],
        1,
    )


# name -> (states, box, input bounds, u*, f(x, u) from benchmarks.md)
REFERENCE = {
    "double_pendulum": (
        ["th1", "th2", "w1", "w2"],
        [[-pi, pi], [-pi, pi], [-2 * pi, 2 * pi], [-2 * pi, 2 * pi]],
        None,
        [],
        _double_pendulum,
    ),
    "pendulum": (
        ["x1", "x2"],
        [[-3.5, 3.5], [-3, 3]],
        None,
        [],
        lambda x, u: np.stack([x[:, 1], -sin(x[:, 0]) - 0.1 * x[:, 1]], 1),
    ),
    "vanderpol": (
        ["x1", "x2"],
        [[-2.5, 2.5], [-3.5, 3.5]],
        None,
        [],
        lambda x, u: np.stack([-x[:, 1], x[:, 0] - (1 - x[:, 0] ** 2) * x[:, 1]], 1),
    ),
    "vanderpol-mu3": (
        ["x1", "x2"],
        [[-3, 3], [-6, 6]],
        None,
        [],
        lambda x, u: np.stack([-x[:, 1], x[:, 0] - 3 * (1 - x[:, 0] ** 2) * x[:, 1]], 1),
    ),
    "power_system": (
        ["x1", "x2"],
        [[-2, 3], [-3, 1.5]],
        None,
        [],
        lambda x, u: np.stack([x[:, 1], -0.5 * x[:, 1] - (sin(x[:, 0] + pi / 3) - sin(pi / 3))], 1),
    ),
    "pendulum_linear_control": (
        ["x1", "x2"],
        [[-4, 4], [-10, 10]],
        None,
        [],
        lambda x, u: np.stack(
            [x[:, 1], sin(x[:, 0]) - x[:, 1] - (4.4142 * x[:, 0] + 2.3163 * x[:, 1])], 1
        ),
    ),
    "cubic_1d": (["x"], [[-2, 2]], None, [], lambda x, u: -x + x**3),
    "poly2": (
        ["x", "y"],
        [[-1, 1]] * 2,
        None,
        [],
        lambda x, u: np.stack([-(x[:, 0] ** 3) + x[:, 1], -x[:, 0] - x[:, 1]], 1),
    ),
    "poly3": (
        ["x", "y"],
        [[-1, 1]] * 2,
        None,
        [],
        lambda x, u: np.stack(
            [-(x[:, 0] ** 3) - x[:, 1] ** 2, x[:, 0] * x[:, 1] - x[:, 1] ** 3], 1
        ),
    ),
    "nonpoly0": (
        ["x", "y"],
        [[-1, 1]] * 2,
        None,
        [],
        lambda x, u: np.stack([-x[:, 0] + x[:, 0] * x[:, 1], -x[:, 1]], 1),
    ),
    "nonpoly2_3d": (
        ["x", "y", "z"],
        [[-1, 1]] * 3,
        None,
        [],
        lambda x, u: np.stack(
            [
                -x[:, 0],
                -2 * x[:, 1] + 0.1 * x[:, 0] * x[:, 1] ** 2 + x[:, 2],
                -x[:, 2] - 1.5 * x[:, 1],
            ],
            1,
        ),
    ),
    "damped_sho": (
        ["x", "v"],
        [[-5, 5], [-2, 2]],
        None,
        [],
        lambda x, u: np.stack([x[:, 1], -2 * 0.5 * 1 * x[:, 1] - x[:, 0]], 1),
    ),
    "interconnected_10d": (
        [f"{v}{i}" for i in range(1, 6) for v in "pq"],
        [[-10, 10]] * 10,
        None,
        [],
        lambda x, u: _interconnected(x),
    ),
    "inverted_pendulum": (["th", "w"], [[-12, 12]] * 2, [[-6, 6]], [0.0], _ip),
    "inverted_pendulum-small": (["th", "w"], [[-12, 12]] * 2, [[-0.75, 0.75]], [0.0], _ip),
    "path_tracking": (["d", "th"], [[-3, 3]] * 2, [[-0.84, 0.84]], [0.1], _pt),
    "path_tracking-small": (["d", "th"], [[-3, 3]] * 2, [[-0.5, 0.5]], [0.1], _pt),
    # the 2025 two-stage verification boxes (RADIUS_MAP of its src/verification/run_verify.sh)
    "inverted_pendulum-wide": (["th", "w"], [[-20, 20], [-100, 100]], [[-6, 6]], [0.0], _ip),
    "inverted_pendulum-small-wide": (
        ["th", "w"],
        [[-19.2, 19.2], [-64.8, 64.8]],
        [[-0.75, 0.75]],
        [0.0],
        _ip,
    ),
    "path_tracking-wide": (["d", "th"], [[-10, 10]] * 2, [[-0.84, 0.84]], [0.1], _pt),
    "path_tracking-small-wide": (["d", "th"], [[-10, 10]] * 2, [[-0.5, 0.5]], [0.1], _pt),
    "vanderpol_controlled": (
        ["x1", "x2"],
        [[-4.8, 4.8], [-10.8, 10.8]],
        [[-1, 1]],
        [0.0],
        lambda x, u: np.stack([x[:, 1], -x[:, 0] + (1 - x[:, 0] ** 2) * x[:, 1] + u[:, 0]], 1),
    ),
    "double_integrator": (
        ["x", "v"],
        [[-26.4, 26.4], [-9.6, 9.6]],
        [[-1, 1]],
        [0.0],
        lambda x, u: np.stack([x[:, 1], u[:, 0]], 1),
    ),
    "cartpole": (["p", "th", "p_dot", "th_dot"], [[-1, 1]] * 4, [[-30, 30]], [0.0], _cartpole),
    "cartpole-wide": (
        ["p", "th", "p_dot", "th_dot"],
        [[-3.6, 3.6], [-2.4, 2.4], [-12, 12], [-12, 12]],
        [[-30, 30]],
        [0.0],
        _cartpole,
    ),
    "quadrotor2d": (
        ["x", "y", "th", "x_dot", "y_dot", "th_dot"],
        [[-0.75, 0.75], [-0.75, 0.75], [-pi / 2, pi / 2], [-4, 4], [-4, 4], [-3, 3]],
        [[0, 1.25 * 0.486 * 9.81]] * 2,
        [0.486 * 9.81 / 2] * 2,
        _quad,
    ),
    "pvtol": (
        ["x", "y", "th", "xb", "yb", "w"],
        [[-1, 1]] * 6,
        [[0, 39.2]] * 2,
        [19.6, 19.6],
        _pvtol,
    ),
    "ducted_fan": (
        ["x", "y", "th", "x_dot", "y_dot", "th_dot"],
        [[-2, 2], [-2, 2], [-pi / 4, pi / 4], [-2, 2], [-2, 2], [-2, 2]],
        [[-10, 10], [0, 10]],
        [0.0, 11.2 * 0.28],
        _fan,
    ),
}
DT_VARIANTS = {
    "inverted_pendulum-dt": ("inverted_pendulum", 0.05),
    "inverted_pendulum-small-dt": ("inverted_pendulum-small", 0.05),
    "path_tracking-dt": ("path_tracking", 0.05),
    "path_tracking-small-dt": ("path_tracking-small", 0.05),
    "cartpole-dt": ("cartpole", 0.05),
    "quadrotor2d-dt": ("quadrotor2d", 0.01),
    "pvtol-dt": ("pvtol", 0.05),
    "double_pendulum-dt": ("double_pendulum", 0.01),
}


def test_registry_has_exactly_the_benchmark_systems():
    assert set(system_names()) == set(REFERENCE) | set(DT_VARIANTS)
    assert set(system_names("controlled")) == {
        n for n, r in REFERENCE.items() if r[2] is not None
    } | {n for n, (base, _) in DT_VARIANTS.items() if REFERENCE[base][2] is not None}


def _random_inputs(rng, system, n):
    lo, hi = np.asarray(system.domain.lower), np.asarray(system.domain.upper)
    x = lo + (hi - lo) * rng.random((n, system.n_states))
    if system.input_bounds is None:
        u = np.zeros((n, 0))
    else:
        ulo, uhi = np.asarray(system.input_bounds.lower), np.asarray(system.input_bounds.upper)
        u = ulo + (uhi - ulo) * rng.random((n, system.n_inputs))
    return x, u


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_system_matches_benchmarks_md(name):
    states, box, input_bounds, u_star, f = REFERENCE[name]
    s = get_system(name)
    assert list(s.state_names) == states
    np.testing.assert_allclose(s.domain.to_list(), box, rtol=0, atol=1e-15)
    if input_bounds is None:
        assert s.input_bounds is None and s.input_names == ()
    else:
        np.testing.assert_allclose(s.input_bounds.to_list(), input_bounds, atol=1e-12)
    np.testing.assert_allclose(s.equilibrium_input, u_star, atol=1e-12)
    assert s.equilibrium == (0.0,) * len(states)
    assert s.time == "continuous" and s.dt is None
    rng = np.random.default_rng(0)
    x, u = _random_inputs(rng, s, 256)
    got = s.f(torch.as_tensor(x), torch.as_tensor(u)).numpy()
    np.testing.assert_allclose(got, f(x, u), rtol=1e-12, atol=1e-12)
    assert s.residual() < 1e-12
    assert s.description and "lyapcert benchmark registry" in s.source
    assert "shared/" not in s.source + s.description  # nothing outside the package


@pytest.mark.parametrize("name", sorted(DT_VARIANTS))
def test_dt_variants_are_euler_maps(name):
    base_name, dt = DT_VARIANTS[name]
    s, base = get_system(name), get_system(base_name)
    assert s.is_discrete and s.dt == dt
    assert s.domain == base.domain and s.input_bounds == base.input_bounds
    rng = np.random.default_rng(1)
    x, u = _random_inputs(rng, s, 64)
    xt, ut = torch.as_tensor(x), torch.as_tensor(u)
    torch.testing.assert_close(s.f(xt, ut), xt + dt * base.f(xt, ut), rtol=1e-13, atol=1e-13)


def test_stability_facts_of_the_linearisations():
    # open-loop upright pendulum: saddle; autonomous benchmarks (except poly3): Hurwitz
    assert get_system("inverted_pendulum").eigenvalues().real.max() > 0
    for name in ("pendulum", "vanderpol", "power_system", "damped_sho", "nonpoly2_3d"):
        assert get_system(name).eigenvalues().real.max() < 0, name
    np.testing.assert_allclose(get_system("poly3").linearize()[0], 0, atol=1e-15)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownSystemError, match="vanderpol") as info:
        resolve_system("vanderpool")
    assert isinstance(info.value, KeyError)
    assert "lyapcert systems" in str(info.value)


def test_registry_entries_carry_simulation_hints():
    for name in system_names():
        e = registry_entry(name)
        assert e.horizon > 0 and e.step > 0 and 0 < e.convergence_radius < 1
