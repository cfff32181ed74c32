"""neural-roa's fine-tuning stage on the band to be verified, and the local term of the value
margin (issue 16)."""

import itertools

import numpy as np
import pytest
import torch

import lyapcert
from lyapcert.errors import TrainingInterrupted
from lyapcert.methods.neural_roa import NeuralROAMethod, NeuralROAOptions, local_decrease
from lyapcert.methods.training import decrease
from lyapcert.systems import System, get_system
from lyapcert.verify import recheck


def _linear(A, discrete=False) -> System:
    n = len(A)
    names = [f"x{i}" for i in range(n)]
    dyn = [" + ".join(f"({A[i][j]})*{names[j]}" for j in range(n)) for i in range(n)]
    extra = {"time": "discrete", "dt": 0.1} if discrete else {}
    return System.from_equations("lin", states=names, dynamics=dyn, domain=[[-2, 2]] * n, **extra)


@pytest.mark.parametrize(
    "bad",
    [
        {"finetune_rounds": -1},
        {"finetune_epochs": 0},
        {"counterexamples": 0},
        {"finetune_level": 0.0},
        {"finetune_raise": 0.5},
        {"counterexample_weight": -1.0},
    ],
)
def test_finetune_options_are_checked(bad):
    with pytest.raises(ValueError):
        NeuralROAOptions(**bad)
    assert NeuralROAOptions().tuning_rounds() == 0  # off for autonomous systems
    assert NeuralROAOptions(train_controller=True).tuning_rounds() == 8  # on for joint training
    quadratic = NeuralROAOptions(train_controller=True, v_shape="quadratic")
    assert quadratic.tuning_rounds() == 4  # each verification costs minutes in 4-6 states
    assert NeuralROAOptions(train_controller=True, finetune_rounds=0).tuning_rounds() == 0


@pytest.mark.parametrize("discrete", [False, True])
def test_local_decrease_with_a_rate_is_the_known_eigenvalue(discrete):
    """``V = e'Pe`` (Hessian ``H = 2P``) on a linear system: ``lambda_max(A'H + HA + r H)``
    (discrete time, of the map ``x+ = A x``: ``lambda_max(A'HA - (1 - r) H)``)."""
    A = np.array([[0.5, 0.2], [-0.1, 0.6]]) if discrete else np.array([[-1.0, 2.0], [-0.5, -3.0]])
    P = np.array([[2.0, 0.3], [0.3, 1.0]])
    system = _linear(A.tolist(), discrete)
    Pt = torch.as_tensor(P)

    def v(x):
        return ((x @ Pt) * x).sum(1)

    H = 2 * P
    x_star = system.equilibrium_tensor()
    for rate in (0.0, 0.3):
        got = float(local_decrease(system, v, x_star, rate=rate))
        if discrete:
            M = A.T @ H @ A - (1 - rate) * H
        else:
            M = A.T @ H + H @ A + rate * H
        assert got == pytest.approx(np.linalg.eigvalsh(0.5 * (M + M.T))[-1], rel=1e-9, abs=1e-12)


def test_band_counterexamples_lie_in_the_band_and_violate():
    """On ``x' = A x`` with a rotation that makes ``|x|^2`` grow in places, every point returned
    lies in ``{V <= level}`` and violates ``dV + margin |z|^2 <= 0``; on a stable system with a
    decreasing ``V`` none is returned."""
    unstable = _linear([[0.2, 1.0], [-1.0, -1.0]])  # dV = 0.4 x0^2 - 2 x1^2 with V = |x|^2

    def v(x):
        return (x**2).sum(1)

    opts = NeuralROAOptions(margin=0.01, scale_inputs="off")
    lo, hi = unstable.domain.as_tensors()
    found = NeuralROAMethod()._band_counterexamples(unstable, v, 1.5, lo, hi, opts, seed=3)
    assert len(found) > 10
    x = found.clone().requires_grad_(True)
    viol = decrease(unstable, v, x) + 0.01 * (x.detach() ** 2).sum(1)
    assert bool((v(found) <= 1.5).all()) and bool((viol > 0).all())
    stable = _linear([[-1.0, 0.0], [0.0, -1.0]])
    none = NeuralROAMethod()._band_counterexamples(stable, v, 1.5, lo, hi, opts, seed=3)
    assert len(none) == 0


@pytest.mark.parametrize("weight", [0.0, 10.0])
def test_counterexamples_have_their_own_decrease_term(weight):
    """``_loss``'s decrease part: with ``counterexample_weight`` 0 the counterexamples are pooled
    with the buffer and the true-ROA points (one mean of ``relu(violation)`` over the points in
    ``{V <= level}``); with a weight ``w > 0`` it is that mean without them plus ``w`` times their
    own mean, so that a few counterexamples among thousands of points are not drowned out."""
    system = _linear([[0.2, 1.0], [-1.0, -1.0]])  # dV = 0.4 x0^2 - 2 x1^2 with V = |x|^2

    def v(x):
        return (x**2).sum(1)

    def violation(x):  # dV + margin |z|^2 (scale_inputs off: z = x)
        return 0.4 * x[:, 0] ** 2 - 2 * x[:, 1] ** 2 + 0.01 * (x**2).sum(1)

    opts = NeuralROAOptions(margin=0.01, scale_inputs="off", counterexample_weight=weight)
    t = torch.tensor
    buffer = t([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=torch.float64)  # the last is outside
    in_pts = t([[0.5, 0.1]], dtype=torch.float64)
    cex = t([[0.9, 0.2], [0.0, 0.5]], dtype=torch.float64)
    empty = torch.zeros(0, 2, dtype=torch.float64)
    faces = t([[2.0, 2.0]], dtype=torch.float64)
    x_star = system.equilibrium_tensor()
    _, parts = NeuralROAMethod()._loss(
        system, v, buffer, in_pts, empty, faces, x_star, opts, level=1.5, cex=cex
    )
    viol = torch.relu(violation(torch.cat([buffer[:2], in_pts])))
    viol_cex = torch.relu(violation(cex))
    if weight == 0:
        expected = float((viol.sum() + viol_cex.sum()) / 5)
    else:
        expected = float(viol.mean() + weight * viol_cex.mean())
    assert parts["decrease"] == pytest.approx(expected, rel=1e-12)
    assert viol_cex[0] > 0 and viol_cex[1] == 0  # one real counterexample, one that decreases


SMALL = dict(
    epochs=40,
    rounds=2,
    samples=512,
    adversarial_points=256,
    verify_seconds=600,  # the box budget decides (verdicts must not depend on the machine)
    verify_boxes=20_000,
    finetune_rounds=2,
    finetune_epochs=30,
    margin_kind="value",
)


def _stage(history):
    return [h for h in history if "finetune_level" in h]


def _joint_path_tracking(out, **extra):
    """A small joint run on path_tracking (``SMALL``, plus ``extra``), saved to ``out``."""
    return lyapcert.certify(
        get_system("path_tracking"),
        "neural-roa",
        controller="neural",
        **SMALL,
        **extra,
        checkpoint=False,
        roa=False,
        out=out,
    )


def test_joint_run_with_the_finetuning_stage_rechecks(tmp_path):
    res = _joint_path_tracking(tmp_path / "c")
    history = res.info["history"]
    stage = _stage(history)
    assert stage[0]["stage"] == "finetune" and stage[0]["epoch"] == 80
    assert len(stage) == 3  # the start and one record per fine-tuning round
    rho = [h["finetune_level"] for h in stage]
    assert all(b >= a for a, b in itertools.pairwise(rho))  # rho only grows
    rounds = [h for h in history if "verified" in h]
    assert len(rounds) == 4 and all("volume" in h for h in rounds)
    assert res.verified  # the stage keeps the best verified round: path_tracking's LQR verifies
    assert res.result.hole is None
    _, again = recheck(tmp_path / "c")
    assert again.verified and again.level == res.result.level


@pytest.mark.slow
def test_a_run_resumed_in_the_finetuning_stage_gives_the_same_result(
    interrupt_at, tmp_path, monkeypatch
):
    system = get_system("damped_sho")
    path = tmp_path / "run.pt"
    options = dict(SMALL)
    straight = lyapcert.certify(system, "neural-roa", checkpoint=path, roa=False, **options)
    with monkeypatch.context() as m:
        interrupt_at(m, 95)  # in the first fine-tuning round
        with pytest.raises(TrainingInterrupted):
            lyapcert.certify(system, "neural-roa", checkpoint=path, roa=False, **options)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 95 and state["finetune"][0] is not None  # in the stage
    resumed = lyapcert.certify(
        system, "neural-roa", checkpoint=path, resume=True, roa=False, **options
    )
    assert _stage(resumed.info["history"]) == _stage(straight.info["history"])
    assert resumed.result.verified == straight.result.verified
    assert resumed.result.level == pytest.approx(straight.result.level, rel=1e-9)


def test_band_level_raises_when_all_is_verified_and_narrows_when_stalled():
    from lyapcert.methods.neural_roa import BandLevel

    band = BandLevel(NeuralROAOptions(finetune_raise=1.2), rho=0.5, best=0.1)
    assert band.after_round(0.5, cap=0.9) and band.rho == pytest.approx(0.6)  # all verified
    assert band.after_round(0.7, cap=0.65) and band.rho == pytest.approx(0.65)  # up to the cap
    assert not band.after_round(0.65, cap=0.65)  # at the cap: stays
    # stalled twice (no more than 1.1 times the best, 0.7): the band narrows to sqrt(rho * best)
    band = BandLevel(NeuralROAOptions(), rho=0.4, best=0.01)
    assert not band.after_round(0.0105, cap=0.4)
    assert band.after_round(None, cap=0.4)
    assert band.rho == pytest.approx((0.4 * 0.0105) ** 0.5)
    assert band.stall == 0 and band.best == pytest.approx(0.0105)
    # progress resets the count
    band = BandLevel(NeuralROAOptions(), rho=0.4, best=0.01)
    assert not band.after_round(0.0105, cap=0.4)
    assert not band.after_round(0.05, cap=0.4) and band.stall == 0
    # a fixed finetune_level never moves
    fixed = BandLevel(NeuralROAOptions(finetune_level=0.3), rho=0.3)
    assert not fixed.after_round(0.3, cap=1.0) and not fixed.after_round(None, cap=1.0)
    assert not fixed.after_round(None, cap=1.0) and fixed.rho == 0.3


def test_a_capped_band_asks_v_to_rise_at_the_points_that_cap_it():
    """When the cap (not the verified level) stops ``rho``'s raise, the exclusion level becomes
    ``finetune_raise * rho``; an uncapped raise sets it back to ``rho``; the flag survives a
    checkpoint's ``state()``."""
    from lyapcert.methods.neural_roa import BandLevel

    band = BandLevel(NeuralROAOptions(finetune_raise=1.2), rho=0.5, best=0.1)
    assert band.exclusion_level == 0.5 and not band.capped
    band.after_round(0.5, cap=0.9)  # 0.6 < 0.9: not capped
    assert not band.capped and band.exclusion_level == pytest.approx(0.6)
    band.after_round(0.6, cap=0.62)  # the goal 0.72 is cut to 0.62
    assert band.capped and band.rho == pytest.approx(0.62)
    assert band.exclusion_level == pytest.approx(0.62 * 1.2)
    band.after_round(0.3, cap=0.62)  # a round that did not verify rho leaves the flag
    assert band.capped
    again = BandLevel(NeuralROAOptions(finetune_raise=1.2), *band.state())
    assert again.capped and again.exclusion_level == band.exclusion_level
    band.after_round(0.62, cap=2.0)  # room again: rho = 0.744, not capped
    assert not band.capped and band.exclusion_level == pytest.approx(0.744)


def test_a_capped_band_pushes_v_up_where_it_is_below_the_exclusion_level():
    """``_loss`` with ``exclude > level`` adds the push: the mean of ``exclude - V`` over the
    non-converging and face points where it is positive, those points alone; the exclusion and
    face parts stay at ``level``; without ``exclude`` there is no push."""
    system = _linear([[-1.0, 0.0], [0.0, -1.0]])

    def v(x):
        return (x**2).sum(1)

    t = torch.tensor
    opts = NeuralROAOptions(scale_inputs="off")
    empty = torch.zeros(0, 2, dtype=torch.float64)
    buffer = t([[0.1, 0.0]], dtype=torch.float64)
    out_pts = t([[1.0, 0.0], [0.0, 0.5], [2.0, 0.0]], dtype=torch.float64)  # V = 1, 0.25, 4
    faces = t([[1.2, 0.0], [3.0, 0.0]], dtype=torch.float64)  # V = 1.44, 9
    x_star = system.equilibrium_tensor()
    method = NeuralROAMethod()
    args = (system, v, buffer, empty, out_pts, faces, x_star, opts)
    loss, plain = method._loss(*args, level=1.0)
    assert plain["exclusion"] == pytest.approx(0.75 / 3) and plain["faces"] == 0
    assert plain["push"] == 0
    pushed_loss, pushed = method._loss(*args, level=1.0, exclude=1.5)
    assert pushed["exclusion"] == plain["exclusion"] and pushed["faces"] == plain["faces"]
    assert pushed["push"] == pytest.approx((0.5 + 1.25 + 0.06) / 3)  # three points below 1.5
    assert float((pushed_loss - loss).detach()) == pytest.approx(pushed["push"])


def test_a_users_controlled_system_file_gets_the_joint_method(tmp_path):
    """The joint method (rounds, then the fine-tuning stage) on a system file with no per-system
    settings: whatever it certifies has no hole and re-checks from the saved files."""
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "controlled_pendulum.toml"
    res = lyapcert.certify(
        str(path),
        "neural-roa",
        controller="neural",
        **{**SMALL, "rounds": 1, "finetune_rounds": 1},
        checkpoint=False,
        roa=False,
        out=tmp_path / "c",
    )
    assert _stage(res.info["history"])[0]["stage"] == "finetune"
    assert res.verified and res.result.hole is None
    _, again = recheck(tmp_path / "c")
    assert again.verified and again.level == res.result.level


def test_trainable_quadratic_is_the_quadratic_of_its_matrix_and_starts_at_p0():
    from lyapcert.methods.training import TrainableQuadratic

    P0 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]])
    x_star = [0.5, -1.0, 2.0]
    scale = [1.0, 4.0, 10.0]
    q = TrainableQuadratic(3, x_star, P0, input_scale=scale)
    assert np.allclose(q.matrix().numpy(), P0, rtol=0, atol=1e-12)
    with torch.no_grad():
        q.L.add_(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))  # "trained"
    x = torch.randn(100, 3, dtype=torch.float64) * 5
    e = x - torch.tensor(x_star)
    P = q.matrix()
    assert torch.allclose(q(x), ((e @ P) * e).sum(1), rtol=1e-12, atol=0)
    assert (
        float(torch.linalg.eigvalsh(P)[0]) > 0 and float(q(torch.tensor([x_star])).detach()) == 0.0
    )
    q(x).sum().backward()
    assert q.L.grad is not None and bool(torch.isfinite(q.L.grad).all())
    with pytest.raises(ValueError, match="v_shape"):
        NeuralROAOptions(v_shape="cubic")
    # the local term's weight: 0 autonomous; joint: 1, or 100 for a quadratic V; as given if set
    assert NeuralROAOptions().local_term_weight() == 0.0
    assert NeuralROAOptions(train_controller=True).local_term_weight() == 1.0
    joint_quadratic = NeuralROAOptions(train_controller=True, v_shape="quadratic")
    assert joint_quadratic.local_term_weight() == 100.0
    assert NeuralROAOptions(train_controller=True, local_weight=2.0).local_term_weight() == 2.0


def test_auto_defaults_pick_a_quadratic_v_for_a_trained_controller_in_four_states():
    """``v_shape="auto"``: quadratic only with a trained controller in >= 4 states; the in-training
    verification then gets 120 s (20 s otherwise); values the user gave are kept."""
    cartpole, two = get_system("cartpole-wide"), get_system("double_integrator")
    joint = NeuralROAOptions(train_controller=True)
    assert joint.v_shape == "auto" and joint.verify_seconds is None
    wide = joint.for_system(cartpole)
    assert (wide.v_shape, wide.verify_seconds) == ("quadratic", 120.0)
    assert wide.local_term_weight() == 100.0 and wide.tuning_rounds() == 4
    small = joint.for_system(two)
    assert (small.v_shape, small.verify_seconds) == ("network", 20.0)
    assert small.tuning_rounds() == 8
    autonomous = NeuralROAOptions().for_system(cartpole)  # V alone: a network, as before
    assert (autonomous.v_shape, autonomous.verify_seconds) == ("network", 20.0)
    given = NeuralROAOptions(train_controller=True, v_shape="network", verify_seconds=5.0)
    assert given.for_system(cartpole) == given
    assert NeuralROAOptions(v_shape="quadratic").for_system(two).verify_seconds == 20.0
    with pytest.raises(ValueError, match="verify_seconds"):
        NeuralROAOptions(verify_seconds=-1.0)


@pytest.mark.parametrize("name", ["quadrotor2d", "quadrotor2d-dt"])
def test_linearisation_candidate_solves_the_trained_loops_lyapunov_equation(name):
    """``verify_v="linearisation"``: the candidate's ``P`` solves ``A'P + PA = -I`` (DT
    ``A'PA - P = -I``) for the controller's current weights; an unstable loop has none."""
    from lyapcert.errors import MethodError
    from lyapcert.methods.neural_roa import candidate_of, linearisation_candidate
    from lyapcert.methods.training import build_quadratic

    loop = get_system(name).closed_loop("neural")
    with torch.no_grad():  # a trained controller: the linearisation moves away from LQR's
        loop.controller.g[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    A = np.asarray(loop.linearize()[0])
    options = NeuralROAOptions(train_controller=True, verify_v="linearisation")
    trained = build_quadratic(loop, options)
    P = candidate_of(trained, loop, options).P
    residual = A.T @ P @ A - P if loop.is_discrete else A.T @ P + P @ A
    assert np.abs(residual + np.eye(6)).max() < 1e-9 and np.all(np.linalg.eigvalsh(P) > 0)
    assert not np.allclose(P, candidate_of(trained, loop).P)  # not the trained V's matrix
    assert options.tuning_rounds() == 0  # no band of the trained V to tune on
    with pytest.raises(ValueError, match="finetune_rounds"):
        NeuralROAOptions(verify_v="linearisation", finetune_rounds=2)
    with pytest.raises(ValueError, match="verify_v"):
        NeuralROAOptions(verify_v="network")
    with torch.no_grad():  # a controller that destabilises the loop: no quadratic
        loop.controller.K.neg_()
    with pytest.raises(MethodError, match=r"verify_v=linearisation.*no quadratic"):
        linearisation_candidate(loop)


def test_the_best_round_is_the_larger_share_then_the_larger_volume():
    from lyapcert.methods.neural_roa import _better

    best = (0.0, {}, 0.05, 0.014)  # (share, state, level, volume): a tiny 6-state set
    assert _better({"roa_share": 0.0, "volume": 0.020}, best)  # no sample point: the volume
    assert not _better({"roa_share": 0.0, "volume": 0.010}, best)
    assert _better({"roa_share": 0.4, "volume": 1.0}, (0.3, {}, 0.5, 9.0))  # the share first
    assert not _better({"roa_share": 0.3, "volume": 1.0}, (0.4, {}, 0.5, 0.5))


def test_joint_run_with_a_quadratic_v_saves_a_quadratic_certificate(tmp_path):
    from lyapcert.certificates.candidates import QuadraticCandidate

    res = _joint_path_tracking(tmp_path / "c", v_shape="quadratic")
    assert res.verified and res.result.hole is None
    cert, again = recheck(tmp_path / "c")
    assert again.verified and again.level == res.result.level
    assert isinstance(cert.candidate, QuadraticCandidate)
    assert cert.record["candidate"]["family"] == "quadratic"
    assert cert.controller is not None  # the trained controller is saved beside it
    P = np.asarray(cert.record["candidate"]["P"])
    assert np.all(np.linalg.eigvalsh(P) > 0)
