"""The true region of attraction by simulation: known answers, the cache, the sample, plots."""

import numpy as np
import pytest
import torch

from lyapcert.errors import SimulationError
from lyapcert.simulate import ConvergenceCriterion, default_sample, sample_points, true_roa
from lyapcert.simulate.roa import (
    CONVERGED,
    SETTLED_ELSEWHERE,
    is_locally_exponentially_stable,
    roa_slices,
    slice_pairs,
)
from lyapcert.systems import System, get_system


def test_cubic_1d_roa_is_the_open_interval_minus_one_one():
    est = true_roa(get_system("cubic_1d"), cache=False)
    xs = est.points[:, 0]
    step = 4.0 / est.sample.resolution
    inside = xs[est.inside]
    # one contiguous run of grid cells
    idx = np.flatnonzero(est.inside)
    assert np.all(np.diff(idx) == 1)
    assert abs(inside.min() - (-1.0)) <= step and abs(inside.max() - 1.0) <= step
    assert np.all(np.abs(xs[~est.inside]) > 1 - step)
    assert est.volume == pytest.approx(2.0, abs=2 * step)


@pytest.mark.parametrize(
    "name, area, rel",
    [("vanderpol", 13.72, 0.01), ("vanderpol-mu3", 20.49, 0.015)],
)
def test_vanderpol_roa_area(name, area, rel):
    est = true_roa(get_system(name), cache=False)
    assert est.volume == pytest.approx(area, rel=rel)
    assert est.counts["undecided"] == 0


@pytest.mark.slow
def test_power_system_roa_area():
    est = true_roa(get_system("power_system"), cache=False)
    assert est.volume == pytest.approx(9.94, rel=0.02)
    assert est.fraction == pytest.approx(0.44, abs=0.01)


def test_vanderpol_roa_extent_matches_the_limit_cycle():
    est = true_roa(get_system("vanderpol"), resolution=200, cache=False)
    pts = est.points[est.inside]
    assert np.abs(pts[:, 0]).max() == pytest.approx(2.01, abs=0.05)
    assert np.abs(pts[:, 1]).max() == pytest.approx(2.68, abs=0.05)


def test_linear_stable_system_attracts_the_whole_box():
    est = true_roa(get_system("damped_sho"), resolution=60, cache=False)
    assert est.fraction == 1.0 and est.volume == pytest.approx(40.0)


def test_points_that_rest_at_another_equilibrium_are_outside():
    s = System.from_equations(
        "heavy_damped_pendulum", ["x", "y"], ["y", "-sin(x) - 2*y"], [[-7, 7], [-2, 2]]
    )
    est = true_roa(
        s, resolution=80, criterion=ConvergenceCriterion(horizon=60, step=0.05), cache=False
    )
    assert est.counts["settled_elsewhere"] > 0
    near_2pi = (np.abs(np.abs(est.points[:, 0]) - 2 * np.pi) < 0.5) & (
        np.abs(est.points[:, 1]) < 0.2
    )
    assert near_2pi.any() and np.all(est.outcomes[near_2pi] == SETTLED_ELSEWHERE)


def test_cache_is_reused_and_keyed_by_resolution(tmp_path):
    s = get_system("vanderpol")
    first = true_roa(s, resolution=50, cache_dir=tmp_path)
    again = true_roa(s, resolution=50, cache_dir=tmp_path)
    other = true_roa(s, resolution=60, cache_dir=tmp_path)
    assert not first.from_cache and again.from_cache and not other.from_cache
    np.testing.assert_array_equal(first.outcomes, again.outcomes)
    np.testing.assert_array_equal(first.points, again.points)
    assert len(list((tmp_path / "roa").glob("*.npz"))) == 2
    changed = true_roa(
        s, resolution=50, cache_dir=tmp_path, criterion=ConvergenceCriterion(horizon=30)
    )
    assert not changed.from_cache


def test_damaged_cache_file_is_recomputed(tmp_path):
    s = get_system("cubic_1d")
    first = true_roa(s, resolution=101, cache_dir=tmp_path)
    path = tmp_path / "roa" / first.cache_path.split("/")[-1]
    path.write_bytes(b"not an npz file")
    again = true_roa(s, resolution=101, cache_dir=tmp_path)
    assert not again.from_cache
    np.testing.assert_array_equal(first.outcomes, again.outcomes)


def test_no_cache_writes_nothing(tmp_path):
    true_roa(get_system("cubic_1d"), resolution=51, cache=False, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_controller_without_an_id_is_never_cached(tmp_path):
    s = get_system("inverted_pendulum")
    gain = torch.tensor([[-4.0, -1.0]])
    est = true_roa(
        s.closed_loop(lambda x: (x @ gain.T).clamp(-6, 6)), resolution=20, cache_dir=tmp_path
    )
    assert est.cache_path is None and not any(tmp_path.iterdir())
    assert est.fraction > 0.05


def test_sample_kinds():
    assert default_sample(get_system("nonpoly2_3d")).kind == "grid"
    sobol = default_sample(get_system("quadrotor2d"), resolution=1024)
    assert sobol.kind == "sobol"
    pts = sample_points(get_system("quadrotor2d"), sobol)
    box = get_system("quadrotor2d").domain
    assert pts.shape == (1024, 6)
    assert get_system("quadrotor2d").domain.contains(torch.as_tensor(pts)).all()
    # the Sobol sample fills every coordinate's range
    assert np.all(pts.min(0) - np.asarray(box.lower) < 0.01 * np.asarray(box.width))
    grid = sample_points(get_system("vanderpol"), default_sample(get_system("vanderpol"), 4))
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(np.unique(grid[:, 0]), [-1.875, -0.625, 0.625, 1.875])


def test_fraction_of_roa_counts_on_the_same_sample():
    est = true_roa(get_system("cubic_1d"), cache=False)
    half = np.abs(est.points[:, 0]) < 0.5
    assert est.fraction_of_roa(half) == pytest.approx(0.5, abs=0.002)
    assert est.fraction_of_roa(np.ones_like(half)) == 1.0
    with pytest.raises(SimulationError):
        est.fraction_of_roa(half[:10])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"step": -1.0},
        {"convergence_radius": 5, "escape_radius": 2},
        {"check_every": 0},
        {"horizon": float("inf")},
    ],
)
def test_bad_criteria_are_rejected(kwargs):
    with pytest.raises(SimulationError):
        ConvergenceCriterion(**kwargs)


def test_bad_resolution_is_rejected():
    with pytest.raises(SimulationError, match="resolution"):
        default_sample(get_system("vanderpol"), 1)
    with pytest.raises(SimulationError, match="points"):
        default_sample(get_system("nonpoly2_3d"), 10_000)


def test_slices_through_the_equilibrium():
    s = get_system("nonpoly2_3d")
    assert slice_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert slice_pairs(10) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    slices = roa_slices(s, resolution=16)
    assert len(slices) == 3
    assert all(sl.inside.shape == (16, 16) and sl.inside.all() for sl in slices)


def test_local_stability_flag():
    assert is_locally_exponentially_stable(get_system("vanderpol"))
    assert not is_locally_exponentially_stable(get_system("inverted_pendulum"))
    assert not is_locally_exponentially_stable(get_system("poly3"))  # zero linearisation
    assert is_locally_exponentially_stable(get_system("damped_sho").discretize(0.1))


def test_discrete_time_roa():
    s = System.from_equations(
        "cubic_map", ["x"], ["x + 0.1*(-x + x**3)"], [[-2, 2]], time="discrete", dt=0.1
    )
    est = true_roa(s, resolution=401, cache=False)
    assert est.volume == pytest.approx(2.0, abs=0.02)


@pytest.mark.parametrize("name", ["cubic_1d", "vanderpol", "nonpoly2_3d"])
def test_plot_is_written(tmp_path, name):
    from lyapcert.viz.roa_plot import plot_roa

    s = get_system(name)
    est = true_roa(s, resolution=12 if s.n_states == 3 else 60, cache=False)
    slices = roa_slices(s, resolution=12) if s.n_states > 2 else None
    path = plot_roa(s, est, tmp_path / "roa.png", slices=slices)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outcome_codes_cover_every_point():
    est = true_roa(get_system("power_system"), resolution=40, cache=False)
    assert sum(est.counts.values()) == len(est.points)
    assert est.counts["converged"] == int((est.outcomes == CONVERGED).sum())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_roa_matches_cpu():
    s = get_system("vanderpol")
    cpu = true_roa(s, resolution=200, cache=False)
    gpu = true_roa(s, resolution=200, cache=False, device="cuda")
    # identical arithmetic up to rounding: only points on the boundary may differ
    assert np.mean(cpu.outcomes != gpu.outcomes) < 1e-3
    assert gpu.volume == pytest.approx(cpu.volume, rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dynamics_in_both_precisions():
    s = get_system("quadrotor2d")
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(64, 6, dtype=dtype)
        u = torch.rand(64, 2, dtype=dtype)
        out = s.f(x.cuda(), u.cuda())
        assert out.device.type == "cuda" and out.dtype == dtype
        torch.testing.assert_close(out.cpu(), s.f(x, u))


def test_a_box_that_is_all_roa_is_drawn_shaded(tmp_path):
    import matplotlib.image

    from lyapcert.viz.roa_plot import ROA_COLOUR, plot_roa

    s = get_system("damped_sho")
    est = true_roa(s, resolution=40, cache=False)
    assert est.fraction == 1.0
    img = matplotlib.image.imread(plot_roa(s, est, tmp_path / "all.png"))[..., :3]
    blue = np.array([int(ROA_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    shaded = 0.55 * blue + 0.45  # the ROA colour at alpha 0.55 over white
    close = np.abs(img - shaded).max(axis=-1) < 0.05
    assert close.mean() > 0.3


def test_slow_convergence_extends_the_horizon():
    # a lightly damped pendulum from a file without simulation hints: the default horizon (50) is
    # too short, the extension reaches the answer of the registry pendulum (about 50 % of the box)
    s = System.from_equations(
        "light_pendulum", ["x1", "x2"], ["x2", "-sin(x1) - 0.1*x2"], [[-3.5, 3.5], [-3, 3]]
    )
    est = true_roa(s, resolution=60, cache=False)
    assert est.fraction == pytest.approx(0.50, abs=0.03)
    short = true_roa(
        s, resolution=60, cache=False, criterion=ConvergenceCriterion(max_horizon_factor=1.0)
    )
    assert short.fraction < 0.1


def test_simulation_table_sets_the_defaults(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nstates = ["x"]\ndynamics = ["-x"]\ndomain = [[-1, 1]]\n'
        "[simulation]\nhorizon = 7\nstep = 0.5\n"
    )
    crit = ConvergenceCriterion.for_system(System.from_file(path))
    assert crit.horizon == 7 and crit.step == 0.5
    path.write_text(
        'name = "s"\nstates = ["x"]\ndynamics = ["-x"]\ndomain = [[-1, 1]]\n'
        "[simulation]\nhorizn = 7\n"
    )
    from lyapcert.errors import SystemDefinitionError

    with pytest.raises(SystemDefinitionError, match="horizn"):
        System.from_file(path)
