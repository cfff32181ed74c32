"""A certificate that ``certify`` saves re-verifies from its folder to the same verdict and level,
for every method; a candidate and its tiny (1e-7) or huge (1e7) multiples verify to the same
(scaled) level. Budgets are box counts; the time limits are generous and never decide a verdict."""

import math

import pytest
import torch

import lyapcert
from lyapcert.bounds.forms import interval_bounds
from lyapcert.bounds.interval import Interval
from lyapcert.certificates.candidates import ExpressionCandidate
from lyapcert.certificates.store import save
from lyapcert.methods import get_method
from lyapcert.systems import get_system
from lyapcert.verify import Verdict, VerifyOptions, recheck, verify_candidate
from lyapcert.verify.search import Budget, minimize

BUDGET = VerifyOptions(time_limit=900.0, max_boxes=400_000)
SHO_V = "2.62785147951089*v**2 + 0.897239540914023*v*x + 2.11402126070063*x**2"
VDP_V = "1.5*x1**2 - x1*x2 + x2**2"


def _certify_and_recheck(system, method, tmp_path, **options):
    res = lyapcert.certify(
        system,
        method,
        verify_options=BUDGET,
        out=tmp_path / "c",
        roa=False,
        checkpoint=False,
        **options,
    )
    assert res.verified, res.result.message
    cert, again = recheck(tmp_path / "c")
    assert again.verdict is res.result.verdict and again.condition is res.result.condition
    assert again.level == res.result.level == cert.level, again.message
    return res, cert


# ----------------------------------------------------------------- every method, saved and re-run


@pytest.mark.parametrize("name", ["damped_sho", "vanderpol"])
def test_quadratic_certificate_rechecks_from_its_folder(tmp_path, name):
    _certify_and_recheck(get_system(name), "quadratic", tmp_path)


def test_sos_degree_2_rechecks_from_its_folder(tmp_path):
    """The review's case: damped_sho, degree 2 (V's coefficients came out near 1e-7)."""
    res, _ = _certify_and_recheck(
        get_system("damped_sho"), "sos", tmp_path, degree=2, iterations=3, target="box"
    )
    # normalised: V's mean on the target points is 1, so the level is O(1), not 1e-6
    assert res.info["normalised_by"] > 0 and 0.01 < res.result.level < 100


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "degree"), [("cubic_1d", 4), ("damped_sho", 4), ("damped_sho", 6)]
)
def test_sos_higher_degrees_recheck_from_their_folders(tmp_path, name, degree):
    _certify_and_recheck(
        get_system(name), "sos", tmp_path, degree=degree, iterations=2, target="box"
    )


def test_saved_sos_candidate_is_the_fitted_function_bit_for_bit():
    """``str`` of a sympy float keeps 15 digits: the saved V was another function, a few ulps off,
    and its re-check could fall just short of the saved level. The text now round-trips."""
    s = get_system("damped_sho")
    sos = get_method("sos")
    fit = sos.fit(s, sos.Options(degree=2, iterations=2, target="box"))
    again = ExpressionCandidate(fit.candidate.to_dict()["expression"], s)
    x = torch.rand(1000, 2, dtype=torch.float64) * 4 - 2
    assert torch.equal(fit.candidate.value(x), again.value(x))
    assert again.expr == fit.candidate.expr


@pytest.mark.slow
def test_neural_lyapunov_certificate_rechecks_from_its_folder(tmp_path):
    _certify_and_recheck(
        get_system("damped_sho"), "neural-lyapunov", tmp_path, epochs=300, samples=2048
    )


@pytest.mark.slow
def test_neural_zubov_certificate_rechecks_from_its_folder(tmp_path):
    _certify_and_recheck(
        get_system("damped_sho"), "neural-zubov", tmp_path, epochs=300, samples=2048
    )


@pytest.mark.slow
def test_neural_roa_certificate_rechecks_from_its_folder(tmp_path):
    # verify_seconds=0: no timed verification inside training (the candidate is the last one)
    _certify_and_recheck(
        get_system("damped_sho"),
        "neural-roa",
        tmp_path,
        epochs=150,
        rounds=2,
        samples=2048,
        adversarial_points=512,
        verify_seconds=0.0,
    )


# ----------------------------------------------------------------- scale of V


@pytest.mark.parametrize(("name", "expr"), [("damped_sho", SHO_V), ("vanderpol", VDP_V)])
@pytest.mark.parametrize("k", [1e-15, 1e-7, 1e7, 1e15])
def test_scaled_candidates_reach_the_same_scaled_level_and_recheck(tmp_path, name, expr, k):
    """``k V`` has the sublevel sets of ``V``: the same verdict and level (times ``k``), up to
    the level search's relative tolerance; the old absolute tolerance 1e-12 cost a 1e-12 V 5% of
    its level and failed a 1e-15 V outright. Saved and re-checked at that level."""
    s = get_system(name)
    unit = verify_candidate(s, ExpressionCandidate(expr, s), options=BUDGET)
    cand = ExpressionCandidate(f"{k!r}*({expr})", s)
    r = verify_candidate(s, cand, options=BUDGET)
    assert unit.verdict is Verdict.VERIFIED and r.verdict is Verdict.VERIFIED, r.message
    assert r.level / k == pytest.approx(unit.level, rel=2 * BUDGET.level_tolerance)
    assert r.inner_level / k == pytest.approx(unit.inner_level, rel=0.25)
    save(tmp_path / "c", s, cand, r)
    _, again = recheck(tmp_path / "c")
    assert again.verified and again.level == r.level


# The review's failure, reduced: a V verified with full-precision coefficients, re-checked at
# its level with the coefficients rounded to 15 digits (what the saved text held). Each of these
# came back UNKNOWN "proven only up to level ..." (the search stopped as converged just below the
# target); a few ulps of V cannot move a level that is within the tolerance of its bound.
ROUNDED = [
    (1.9091709861689912e-07, 9.588974089057842e-08, 1.536817660617451e-07),
    (3.3856751103468533e-07, 9.00157565052155e-08, 2.746336366204935e-07),
    (2.3277561805704313e-07, 6.695043744920436e-08, 2.2405616799945655e-07),
]


@pytest.mark.parametrize("coefficients", ROUNDED)
def test_recheck_at_a_saved_level_survives_a_few_ulps(coefficients):
    s = get_system("damped_sho")
    a, b, c = coefficients
    exact = ExpressionCandidate(f"{a!r}*v**2 + {b!r}*v*x + {c!r}*x**2", s)
    rounded = ExpressionCandidate(f"{a:.15g}*v**2 + {b:.15g}*v*x + {c:.15g}*x**2", s)
    r = verify_candidate(s, exact, options=BUDGET)
    assert r.verified
    again = verify_candidate(s, rounded, level=r.level, options=BUDGET)
    assert again.verified, again.message


def test_a_target_inside_the_tolerance_gap_is_still_proved():
    """inf (x^2 - x + 1) on [0, 1] is 0.75; the free search stops within rel_tol (1e-3) of it.
    A target in that gap, below the infimum, must be proved, not left at 'converged'."""

    def q(x):
        return (x * x - x + 1.0).sum(dim=1)

    def clear(boxes, vb):
        return torch.zeros(vb.lo.shape[0], dtype=torch.bool)

    def points(p):
        return torch.ones(p.shape[0], dtype=torch.bool), q(Interval(p, p)).hi

    lo = torch.zeros(1, 1, dtype=torch.float64)
    hi = torch.ones(1, 1, dtype=torch.float64)
    scale = torch.ones(1, dtype=torch.float64)
    budget = Budget(max_boxes=100_000, time_limit=900.0)
    for target in (0.75 * (1 - 1e-4), 0.75 * (1 - 5e-4)):
        r = minimize(
            lambda b: interval_bounds(q, b), clear, points, lo, hi, scale, budget, target=target
        )
        assert r.lower > target and r.upper >= 0.75
    # a target far below: boxes are dropped once above it, and the returned lower bound is still
    # a lower bound of the infimum (not the upper bound, nor infinity)
    for target in (0.5, -1.0):
        r = minimize(
            lambda b: interval_bounds(q, b), clear, points, lo, hi, scale, budget, target=target
        )
        assert target < r.lower <= 0.75
    # and scaled by 1e-9: the same decisions (relative tolerances)
    tiny = minimize(
        lambda b: interval_bounds(lambda x: q(x) * 1e-9, b),
        clear,
        lambda p: (torch.ones(p.shape[0], dtype=torch.bool), (q(Interval(p, p)) * 1e-9).hi),
        lo,
        hi,
        scale,
        budget,
    )
    assert tiny.upper - tiny.lower <= 1e-3 * tiny.upper and math.isclose(
        tiny.upper, 0.75e-9, rel_tol=1e-9
    )
