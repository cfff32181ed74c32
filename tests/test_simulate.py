"""Batched simulation: RK4 against scipy's solve_ivp, discrete-time iteration, controllers."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from lyapcert.errors import ShapeError, SimulationError
from lyapcert.simulate import simulate
from lyapcert.systems import System, get_system


def _scipy_final(system, x0, horizon, controller=None):
    def rhs(_t, x):
        xt = torch.as_tensor(x[None, :])
        u = controller(xt) if controller else None
        return system.f(xt, u)[0].numpy()

    return np.stack(
        [
            solve_ivp(rhs, (0, horizon), p, method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
            for p in x0
        ]
    )


@pytest.mark.parametrize("name", ["vanderpol", "pendulum", "power_system", "nonpoly2_3d"])
def test_rk4_matches_solve_ivp(name):
    system = get_system(name)
    rng = np.random.default_rng(3)
    lo, hi = np.asarray(system.domain.lower), np.asarray(system.domain.upper)
    x0 = 0.3 * (hi - lo) * (rng.random((6, system.n_states)) - 0.5)  # near x* = 0
    traj = simulate(system, torch.as_tensor(x0), horizon=3.0, step=0.005)
    reference = _scipy_final(system, x0, 3.0)
    np.testing.assert_allclose(traj.final.numpy(), reference, rtol=1e-7, atol=1e-8)
    assert traj.states.shape == (601, 6, system.n_states)
    assert float(traj.times[-1]) == pytest.approx(3.0)


def test_rk4_is_fourth_order():
    system = get_system("damped_sho")  # linear: exact solution by the matrix exponential
    from scipy.linalg import expm

    a, _ = system.linearize()
    x0 = np.array([[1.0, -0.5]])
    exact = (expm(a * 2.0) @ x0.T).T
    errors = [
        np.abs(simulate(system, torch.as_tensor(x0), 2.0, h).final.numpy() - exact).max()
        for h in (0.1, 0.05)
    ]
    assert 12 < errors[0] / errors[1] < 20  # 2**4 = 16


def test_controlled_system_with_a_linear_controller_matches_solve_ivp():
    system = get_system("inverted_pendulum")
    gain = torch.tensor([[-4.0, -1.0]])  # u = K x stabilises the upright pendulum

    def controller(x):
        return x @ gain.T

    x0 = np.array([[0.3, 0.0], [-0.2, 0.5]])
    traj = simulate(system.closed_loop(controller), torch.as_tensor(x0), 2.0, 0.002)
    np.testing.assert_allclose(
        traj.final.numpy(), _scipy_final(system, x0, 2.0, controller), rtol=1e-7, atol=1e-9
    )


def test_without_controller_the_input_is_held_at_u_star():
    system = get_system("path_tracking")  # u* = 0.1 keeps the origin at rest
    traj = simulate(system, torch.zeros(1, 2), 5.0, 0.01)
    assert float(traj.final.abs().max()) < 1e-12


def test_discrete_time_iterates_the_map():
    system = System.from_equations(
        "halving", states=["x"], dynamics=["0.5*x"], domain=[[-1, 1]], time="discrete", dt=0.1
    )
    traj = simulate(system, torch.tensor([[0.8]]), horizon=1.0)  # 10 iterations
    assert traj.states.shape[0] == 11
    assert float(traj.final) == pytest.approx(0.8 * 0.5**10, rel=1e-14)
    np.testing.assert_allclose(traj.times.numpy(), np.arange(11) * 0.1, atol=1e-12)


def test_discretize_then_simulate_is_euler():
    ct = get_system("damped_sho")
    dt_sys = ct.discretize(0.01)
    x0 = torch.tensor([[1.0, 0.0]])
    a = simulate(dt_sys, x0, horizon=1.0).final
    b = simulate(ct, x0, horizon=1.0, step=0.01, method="euler").final
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_record_every_keeps_the_last_state():
    system = get_system("vanderpol")
    traj = simulate(system, torch.tensor([[0.1, 0.1]]), 1.0, 0.03, record_every=10)
    assert float(traj.times[-1]) == pytest.approx(34 * 0.03)
    assert traj.states.shape[0] == len(traj.times)


def test_float32_stays_float32():
    traj = simulate(
        get_system("vanderpol"), torch.tensor([[0.5, 0.5]], dtype=torch.float32), 1.0, 0.01
    )
    assert traj.final.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"horizon": 0.0, "step": 0.1}, SimulationError),
        ({"horizon": float("nan"), "step": 0.1}, SimulationError),
        ({"horizon": 1.0, "step": -0.1}, SimulationError),
        ({"horizon": 1.0, "step": 0.1, "method": "midpoint"}, SimulationError),
        ({"horizon": 1.0, "step": 0.1, "record_every": 0}, SimulationError),
    ],
)
def test_bad_simulation_settings_are_rejected(kwargs, error):
    with pytest.raises(error):
        simulate(get_system("vanderpol"), torch.zeros(2, 2), **kwargs)


def test_bad_initial_state_shape():
    with pytest.raises(ShapeError, match=r"\[batch, 2\]"):
        simulate(get_system("vanderpol"), torch.zeros(2, 3), 1.0, 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    system = get_system("vanderpol")
    x0 = torch.rand(128, 2) - 0.5
    cpu = simulate(system, x0, 2.0, 0.01).final
    gpu = simulate(system, x0.cuda(), 2.0, 0.01).final.cpu()
    torch.testing.assert_close(cpu, gpu, rtol=1e-10, atol=1e-12)
