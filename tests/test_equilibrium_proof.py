"""The verifier proves that x* is an equilibrium of the dynamics as computed (design rule 8).

Each case here was (or is a variant of) a false VERIFIED of the outside review: a declared
equilibrium off by a residual that a relative tolerance accepted.
"""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lyapcert.certificates.candidates import ExpressionCandidate, QuadraticCandidate
from lyapcert.cli import app
from lyapcert.errors import EquilibriumError
from lyapcert.systems.box import Box
from lyapcert.systems.registry import get_system
from lyapcert.systems.system import System
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.equilibrium import EquilibriumFailure, EquilibriumProof, prove_equilibrium
from lyapcert.verify.lyapunov import build_problem, prove_local
from lyapcert.verify.result import Verdict

OPTS = VerifyOptions(time_limit=3600.0, max_boxes=200_000)  # box budgets decide


def _system(fn, lo, hi, time="continuous", dt=None, inputs=(), u_star=None, bounds=None):
    n = len(lo)
    return System(
        name="planted",
        dynamics=fn,
        state_names=tuple(f"x{i + 1}" for i in range(n)),
        domain=Box(tuple(lo), tuple(hi)),
        input_names=tuple(inputs),
        equilibrium_input=u_star,
        time=time,
        dt=dt,
        check_equilibrium=False,
    )


def _proof(system, controller=None):
    cand = QuadraticCandidate(np.eye(system.n_states), system)
    problem = build_problem(system.closed_loop(controller), cand)
    return prove_local(problem)[0]


def test_issue_example_offset_equilibrium_is_refused(tmp_path):
    """x' = -x + 9.9e-9 on [-2e-8, 2e-8], V = 1e16 x^2: was VERIFIED at level 4."""
    spec = tmp_path / "off.toml"
    spec.write_text(
        'name = "offset"\nstates = ["x"]\n[dynamics]\nx = "-x + 9.9e-9"\n'
        "[domain]\nx = [-2e-8, 2e-8]\n"
    )
    system = System.from_file(spec)  # the loader's relative tolerance lets it through
    with pytest.raises(EquilibriumError, match="not 0: x\\* is not an equilibrium"):
        verify_candidate(system, ExpressionCandidate("1e16*x**2", system), options=OPTS)
    res = CliRunner().invoke(app, ["verify", str(spec), "-c", "1e16*x**2", "--json"])
    assert res.exit_code == 2
    payload = json.loads(res.stdout)
    assert payload["error_type"] == "EquilibriumError"
    assert "9.9e-09" in payload["error"]


def test_python_api_without_the_loader_check_is_refused():
    s = _system(lambda x, u: -x + 0.1, [-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(EquilibriumError):
        verify_candidate(s, QuadraticCandidate(np.eye(2), s), options=OPTS)


def test_discrete_time_fixed_point_off_x_star_is_refused():
    s = _system(lambda x, u: 0.5 * x + 3e-9, [-1e-8], [1e-8], time="discrete", dt=0.1)
    proof = _proof(s)
    assert isinstance(proof, EquilibriumFailure) and proof.provably_wrong
    with pytest.raises(EquilibriumError, match="F\\(x\\*\\) - x\\*"):
        verify_candidate(s, QuadraticCandidate(np.eye(1), s), options=OPTS)


def test_residual_hidden_in_a_large_input_is_refused():
    """f(x*, u*) = 5 with u* = 1e9: the loader's tolerance scales with |u*| and accepts it."""
    s = _system(lambda x, u: -x + (u - 1e9 + 5.0), [-1.0], [1.0], inputs=("u",), u_star=(1e9,))
    with pytest.raises(EquilibriumError, match="f\\(x\\*, u\\*\\)"):
        verify_candidate(s, QuadraticCandidate(np.eye(1), s), options=OPTS)


class _OffsetController(torch.nn.Module):
    """u = -x + delta: passes the loader's check |k(x*) - u*| <= 1e-9 for delta = 1e-10."""

    def __init__(self, delta):
        super().__init__()
        self.delta = delta

    def forward(self, x):
        return -x + self.delta


def test_controller_that_moves_the_equilibrium_is_refused():
    """u* = 1e9: the loader's check |k(x*) - u*| <= 1e-9 max(1, |u*|) accepts an offset of 0.5,
    which moves the closed loop's equilibrium to x = 0.5."""
    from lyapcert.control.checks import check_controller

    s = _system(lambda x, u: u - 1e9, [-1.0], [1.0], inputs=("u",), u_star=(1e9,))
    k = _OffsetController(1e9 + 0.5)
    check_controller(k, s)  # the tolerance of the loader lets it through...
    proof = _proof(s, k)
    assert isinstance(proof, EquilibriumFailure) and proof.provably_wrong
    with pytest.raises(EquilibriumError, match="k\\(x\\*\\)"):
        verify_candidate(s.closed_loop(k), QuadraticCandidate(np.eye(1), s), options=OPTS)
    # without the offset: never a false claim (outward rounding around 1e9 may leave it unproven)
    fine = verify_candidate(
        s.closed_loop(_OffsetController(1e9)), QuadraticCandidate(np.eye(1), s), options=OPTS
    )
    assert fine.verdict is not Verdict.FALSIFIED
    # and a loop whose k(x*) = u* exactly is certified with an exact equilibrium
    s0 = _system(lambda x, u: u, [-1.0], [1.0], inputs=("u",), u_star=(0.0,))
    good = verify_candidate(
        s0.closed_loop(_OffsetController(0.0)), QuadraticCandidate(np.eye(1), s0), options=OPTS
    )
    assert good.verified and good.equilibrium["status"] == "exact"


def test_tiny_controller_offset_is_an_enclosed_equilibrium_that_contains_the_true_one():
    """An offset of 1e-10 moves the equilibrium to 1e-10: accepted only as 'a unique equilibrium
    within r of x*', with r >= 1e-10 (the claim covers the true equilibrium)."""
    s = _system(lambda x, u: u, [-1.0], [1.0], inputs=("u",), u_star=(0.0,))
    proof = _proof(s, _OffsetController(1e-10))
    assert isinstance(proof, EquilibriumProof) and proof.status == "enclosed"
    assert proof.radius[0] >= 1e-10


def test_exact_zero_is_proven_exactly():
    proof = _proof(get_system("vanderpol"))
    assert isinstance(proof, EquilibriumProof) and proof.exact and not any(proof.radius)


def test_zero_within_rounding_is_proven_by_krawczyk():
    """f(0) = 1e-12 != 0, but the unique zero 1e-12 lies within the radius limit: the proof is
    about that zero, and the box it gives contains it."""
    s = _system(lambda x, u: -(x - 1e-12), [-1.0], [1.0])
    proof = _proof(s)
    assert isinstance(proof, EquilibriumProof) and proof.status == "enclosed"
    assert 1e-12 <= proof.radius[0] <= 1e-9
    r = verify_candidate(s, QuadraticCandidate(np.eye(1), s), options=OPTS)
    assert r.verified and r.equilibrium["status"] == "enclosed"
    assert "Krawczyk" in r.proof


def test_krawczyk_box_contains_the_true_zero():
    """Nonlinear G with a known zero off x*: the proven box contains it."""
    z = 3e-11

    def f(x, u):
        return torch.sin(x - z) * 2.0 + (x - z) ** 3 - x + z

    s = _system(f, [-1.0], [1.0])  # G(x) = 2 sin(x - z) + (x - z)^3 - (x - z): zero at z
    problem = build_problem(s, QuadraticCandidate(np.eye(1), s))
    proof = prove_equilibrium(problem.field, problem.x_star, problem.u_fn, problem.lo, problem.hi)
    assert isinstance(proof, EquilibriumProof) and proof.radius[0] >= z


def test_far_zero_is_not_accepted():
    """A zero farther than the radius limit is not 'x*' even when nonzero is proven."""
    s = _system(lambda x, u: -(x - 1e-6), [-1.0], [1.0])
    proof = _proof(s)
    assert isinstance(proof, EquilibriumFailure) and proof.provably_wrong
    assert "1e-06" in proof.reason


def test_registry_systems_have_proven_equilibria():
    for name in ("pendulum", "power_system", "path_tracking", "cartpole-dt"):
        s = get_system(name)
        k = None
        if s.n_inputs:
            from lyapcert.control.linear import lqr

            k = lqr(s)
        proof = _proof(s, k)
        assert isinstance(proof, EquilibriumProof), (name, proof)
        half = (np.asarray(s.domain.upper) - np.asarray(s.domain.lower)) / 2
        assert np.all(np.asarray(proof.radius) <= 1e-9 * half)


def test_constant_candidate_is_never_verified():
    s = get_system("vanderpol")
    r = verify_candidate(s, ExpressionCandidate("5", s), options=OPTS)
    assert r.verdict is not Verdict.VERIFIED
    r = verify_candidate(s, ExpressionCandidate("5", s), level=4.99999, options=OPTS)
    assert r.verdict is not Verdict.VERIFIED


def test_level_below_v_at_x_star_is_never_verified():
    s = get_system("vanderpol")
    cand = ExpressionCandidate("x1**2 + x2**2 + 1", s)
    r = verify_candidate(s, cand, level=0.5, options=OPTS)
    assert r.verdict is not Verdict.VERIFIED
    assert "contain the equilibrium" in (r.hole or "")


def test_candidate_centred_elsewhere_is_verified_only_through_a_chain():
    """A V centred at (0.5, 0): the local certificate alone cannot close the hole (issue 12:
    never VERIFIED that way); since issue 14 a chain through the verified quadratic of the
    linearisation may, and only for a set inside that proven region of attraction."""
    import dataclasses

    s = get_system("vanderpol")
    cand = ExpressionCandidate("(x1 - 0.5)**2 + x2**2", s)
    alone = verify_candidate(s, cand, options=dataclasses.replace(OPTS, chain=False))
    assert alone.verdict is not Verdict.VERIFIED
    r = verify_candidate(s, cand, options=OPTS)
    assert r.verdict is Verdict.VERIFIED and r.chain is not None
    assert r.level > 0.25  # V(x*) = 0.25: x* lies in the set
    W = ExpressionCandidate("1.5*x1**2 - x1*x2 + x2**2", s)
    aux = r.chain[-1]["auxiliary_level"]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20_000, 2, generator=gen, dtype=torch.float64)
    x = x * torch.tensor([5.0, 7.0]) - torch.tensor([2.5, 3.5])
    with torch.no_grad():
        c0 = r.chain[-1]["inner_level"]
        inside = x[cand.value(x) <= c0]
        assert inside.shape[0] > 100
        assert bool((W.value(inside) <= aux).all())  # below c0 the set lies in {W <= d}


def test_falsified_text_states_only_what_was_proven():
    s = get_system("vanderpol")
    cand = ExpressionCandidate("1.5*x1**2 - x1*x2 + x2**2", s)
    r = verify_candidate(s, cand, level=2.31, options=OPTS)
    assert r.verdict is Verdict.FALSIFIED
    assert "<= 2.31," not in r.proof and "<= 2.31" not in r.proof.split("proven on")[-1]
    assert r.proven_level is not None and r.proven_level < 2.31
    assert f"{r.proven_level:.6g}" in r.proof
    res = CliRunner().invoke(
        app,
        [
            "verify",
            "vanderpol",
            "-c",
            "1.5*x1**2 - x1*x2 + x2**2",
            "--level",
            "2.31",
            "--no-volume",
        ],
    )
    assert res.exit_code == 1
    assert "decrease proven on c0 <= V <= level" not in res.stdout


def test_out_of_time_is_unknown_with_the_known_violation_never_falsified():
    """A search stopped by its budget is UNKNOWN (with what it knows), not FALSIFIED."""
    s = get_system("vanderpol")
    cand = QuadraticCandidate(np.array([[1.5, -0.5], [-0.5, 1.0]]), s)  # c0 from its floor
    tiny = VerifyOptions(time_limit=3600.0, max_boxes=1)  # every search stops at once
    r = verify_candidate(s, cand, options=tiny)
    assert r.verdict is Verdict.UNKNOWN
    assert "budget" in r.message
    # the falsifier's replayed violation (V ~ 2.305) is reported, not turned into FALSIFIED
    assert r.counterexample is not None and math.isfinite(r.counterexample["V"])
    assert "violation is known" in r.message


def test_one_deadline_for_the_whole_verification():
    s = get_system("vanderpol")
    cand = ExpressionCandidate("1.5*x1**2 - x1*x2 + x2**2", s)
    problem = build_problem(s, cand, VerifyOptions(time_limit=50.0))
    import time

    problem.deadline = time.perf_counter() - 1.0  # already past
    assert problem.budget().time_limit == 0.0
    problem.deadline = time.perf_counter() + 10.0
    assert 0.0 < problem.budget().time_limit <= 10.0
