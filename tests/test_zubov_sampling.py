"""neural-roa's Zubov sampling, domain expansion and value-relative margin (issue 16)."""

import pytest
import torch

import lyapcert
from lyapcert.errors import TrainingInterrupted
from lyapcert.methods.neural_roa import NeuralROAMethod, NeuralROAOptions, TrainingDomain
from lyapcert.methods.training import boundary_points
from lyapcert.methods.zubov import zubov_targets
from lyapcert.systems import System, get_system
from lyapcert.verify import recheck


def _linear(n: int, time_kind: str = "continuous", rate: str = "-1") -> System:
    names = [f"x{i}" for i in range(n)]
    extra = {"time": "discrete", "dt": 0.1} if time_kind == "discrete" else {}
    return System.from_equations(
        f"linear{n}",
        states=names,
        dynamics=[f"{rate}*{x}" for x in names],
        domain=[[-2, 2]] * n,
        **extra,
    )


@pytest.mark.parametrize("n", [1, 2])
def test_zubov_targets_on_xdot_minus_x_are_exact(n):
    """``xdot = -x``: ``integral |x(t)|^2 dt = |x0|^2 / 2``, so ``W = 1 - exp(-beta |x0|^2 / 2)``;
    points labelled outside get 1."""
    system = _linear(n)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(50, n, generator=gen, dtype=torch.float64) * 4 - 2
    inside = torch.ones(50, dtype=torch.bool)
    inside[:5] = False
    w = zubov_targets(system, x0, inside, 0.3, 40.0, 0.01)
    exact = 1 - torch.exp(-0.3 * (x0**2).sum(1) / 2)
    torch.testing.assert_close(w[5:], exact[5:], rtol=1e-4, atol=1e-8)
    assert bool((w[:5] == 1).all())
    # in units of 2 per axis the cost is a quarter
    w2 = zubov_targets(system, x0, inside, 0.3, 40.0, 0.01, units=torch.full((n,), 2.0))
    torch.testing.assert_close(
        w2[5:], 1 - torch.exp(-0.3 * (x0[5:] ** 2).sum(1) / 8), rtol=1e-4, atol=1e-8
    )


def test_zubov_targets_in_discrete_time_are_the_trapezoid_sum():
    """``x+ = x / 2``, ``dt = 0.1``: the trapezoid sum is ``dt |x0|^2 (1/2 + sum 4^-k) =
    dt |x0|^2 (1/2 + 1/3)``."""
    system = _linear(1, "discrete", "0.5")
    x0 = torch.tensor([[0.5], [-1.5], [2.0]], dtype=torch.float64)
    w = zubov_targets(system, x0, torch.ones(3, dtype=torch.bool), 1.0, 20.0, 0.1)
    torch.testing.assert_close(w, 1 - torch.exp(-0.1 * x0[:, 0] ** 2 * (0.5 + 1 / 3)))


def test_boundary_points_pick_the_outer_band_and_the_nearest_outside():
    """A 1-D sample with the ROA ``|x| < 1`` and Zubov's ``W`` of ``xdot = -x``: the converging
    picks have ``|x|`` in the top fifth of the converging ones, the others are the fifth of the
    non-converging points nearest to ``|x| = 1``; half and half."""
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).reshape(-1, 1)
    inside = x[:, 0].abs() < 1
    w = torch.where(inside, 1 - torch.exp(-0.05 * x[:, 0] ** 2 / 2), torch.ones(601, dtype=x.dtype))
    idx = boundary_points(x, inside, w, 100, torch.Generator().manual_seed(0), quantile=0.8)
    assert idx.shape == (100,) and idx.dtype == torch.long
    picked, labels = x[idx, 0].abs(), inside[idx]
    assert int(labels.sum()) == 50
    assert bool((picked[labels] >= 0.79).all())  # |x| in [0.8, 1): the top 20 % of |x| < 1
    assert bool((picked[~labels] >= 1.0).all() and (picked[~labels] <= 1.41).all())
    again = boundary_points(x, inside, w, 100, torch.Generator().manual_seed(0), quantile=0.8)
    assert torch.equal(idx, again)


def test_boundary_points_with_one_side_empty():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64).reshape(-1, 1)
    gen = torch.Generator().manual_seed(0)
    all_in = torch.ones(11, dtype=torch.bool)
    w = x[:, 0].abs()
    idx = boundary_points(x, all_in, w, 7, gen, quantile=0.5)
    assert len(idx) == 7 and bool((x[idx, 0].abs() >= 0.6 - 1e-12).all())
    none_in = torch.zeros(11, dtype=torch.bool)
    assert len(boundary_points(x, none_in, torch.ones(11), 7, gen)) == 7
    assert len(boundary_points(x[:0], none_in[:0], w[:0], 7, gen)) == 0
    with pytest.raises(ValueError, match="quantile"):
        boundary_points(x, all_in, w, 7, gen, quantile=1.5)


def test_new_options_are_checked_and_off_by_default():
    opts = NeuralROAOptions()
    assert opts.margin_kind == "box" and not opts.zubov_sampling and not opts.expand_domain
    with pytest.raises(ValueError, match=r"margin_kind.*box, value"):
        NeuralROAOptions(margin_kind="relative")
    with pytest.raises(ValueError, match="boundary_share"):
        NeuralROAOptions(boundary_share=1.5)
    with pytest.raises(ValueError, match="expand_when"):
        NeuralROAOptions(expand_when=-0.1)
    with pytest.raises(ValueError, match="domain_growth"):
        NeuralROAOptions(domain_growth=1.0)
    with pytest.raises(ValueError, match="domain_start"):
        NeuralROAOptions(domain_start=0.0)


def test_training_domain_grows_around_x_star_up_to_the_box():
    system = get_system("double_integrator")
    domain = TrainingDomain(system, NeuralROAOptions(expand_domain=True, domain_start=0.5))
    lo, hi = system.domain.as_tensors()
    x_star = system.equilibrium_tensor().reshape(-1)
    d_lo, d_hi = domain.bounds()
    torch.testing.assert_close(d_hi - x_star, 0.5 * (hi - lo) / 2)
    torch.testing.assert_close(x_star - d_lo, 0.5 * (hi - lo) / 2)
    assert not domain.grow(0.5) and domain.scale == 0.5  # below expand_when (0.9)
    assert domain.grow(0.95) and domain.scale == 0.75
    assert domain.grow(1.0) and not domain.grow(1.0)  # the whole box: no further growth
    torch.testing.assert_close(torch.stack(domain.bounds()), torch.stack([lo, hi]))
    fixed = TrainingDomain(system, NeuralROAOptions())
    assert not fixed.grow(1.0)
    torch.testing.assert_close(torch.stack(fixed.bounds()), torch.stack([lo, hi]))


def test_value_margin_is_relative_to_v():
    """``margin_kind="value"``: the violation is ``dV + margin V``; ``"box"``: ``dV + margin |z|^2``."""
    system = get_system("damped_sho")
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.float64, requires_grad=True)

    def v(z):
        return 3.0 * (z**2).sum(1)

    from lyapcert.methods import neural_roa
    from lyapcert.methods.training import decrease

    net = v
    value = NeuralROAOptions(margin_kind="value", margin=0.1, scale_inputs="off")
    box = NeuralROAOptions(margin=0.1, scale_inputs="off")
    dv = decrease(system, net, x)
    x_star = system.equilibrium_tensor()
    got = neural_roa.NeuralROAMethod._violation(system, net, x, x_star, value)
    torch.testing.assert_close(got, dv + 0.1 * v(x))
    got = neural_roa.NeuralROAMethod._violation(system, net, x, x_star, box)
    torch.testing.assert_close(got, dv + 0.1 * ((x - x_star) ** 2).sum(1))


ALL_ON = dict(
    epochs=40,
    rounds=3,
    samples=512,
    adversarial_points=256,
    verify_seconds=0,
    zubov_sampling=True,
    expand_domain=True,
    domain_start=0.25,
    expand_when=0.0,  # grow after every round: the growth itself is what is tested
    margin_kind="value",
    finetune_rounds=0,
)


def _domains(history):
    return [h["domain_scale"] for h in history if "domain_scale" in h]


def test_joint_training_with_all_three_options_runs_grows_and_rechecks(tmp_path):
    system = get_system("path_tracking")
    res = lyapcert.certify(
        system,
        "neural-roa",
        controller="neural",
        **ALL_ON,
        checkpoint=False,
        roa=False,
        out=tmp_path / "c",
    )
    scales = _domains(res.info["history"])
    assert scales == pytest.approx([0.25, 0.375, 0.5625])
    if res.verified:  # whatever it certified is re-checked by the verifier
        assert res.result.hole is None
        _, again = recheck(tmp_path / "c")
        assert again.verified and again.level == res.result.level


def test_autonomous_fit_with_the_options_keeps_points_in_the_domain():
    system = get_system("damped_sho")
    opts = NeuralROAOptions(**{**ALL_ON, "rounds": 2, "epochs": 20})
    fit = NeuralROAMethod().fit(system, opts)
    records = [h for h in fit.info["history"] if "domain" in h]
    assert [r["domain_scale"] for r in records] == pytest.approx([0.25, 0.375])
    lo, hi = records[0]["domain"]
    assert all(h > l for l, h in zip(lo, hi))


def test_a_resumed_run_continues_with_the_same_domain(interrupt_at, tmp_path, monkeypatch):
    system = get_system("cubic_1d")
    path = tmp_path / "run.pt"
    options = dict(ALL_ON)
    straight = lyapcert.certify(system, "neural-roa", checkpoint=path, roa=False, **options)
    with monkeypatch.context() as m:
        interrupt_at(m, 50)  # in the second round, after one growth
        with pytest.raises(TrainingInterrupted):
            lyapcert.certify(system, "neural-roa", checkpoint=path, roa=False, **options)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 50 and state["domain"][0] == pytest.approx(0.375)
    resumed = lyapcert.certify(
        system, "neural-roa", checkpoint=path, resume=True, roa=False, **options
    )
    assert _domains(resumed.info["history"]) == _domains(straight.info["history"])
    assert resumed.result.verified == straight.result.verified
    assert resumed.result.level == pytest.approx(straight.result.level, rel=1e-9)
