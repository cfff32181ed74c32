"""The verifier: known answers, and candidates that must never be verified."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lyapcert.certificates import ExpressionCandidate, NetworkCandidate, QuadraticCandidate
from lyapcert.errors import UnsupportedOperationError, VerificationError
from lyapcert.systems import System, get_system
from lyapcert.verify import Condition, Verdict, VerifyOptions, verify_candidate

FAST = VerifyOptions(time_limit=3600.0, max_boxes=400_000)  # box budgets decide, never the clock


def lyapunov_P(system):
    a, _ = system.linearize()
    return scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(system.n_states))


def dense_check(system, candidate, level, n=200_000, seed=0):
    """Sampling: points of {V <= level} in the box where dV/dt >= 0 (excluding a tiny ball),
    and boundary points with V <= level. Returns the number of violations found."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(system.domain.lower), np.asarray(system.domain.upper)
    x = torch.as_tensor(lo + (hi - lo) * rng.random((n, system.n_states)))
    x.requires_grad_(True)
    v = candidate.value(x)
    (grad,) = torch.autograd.grad(v.sum(), x)
    lie = (grad * system.f(x.detach())).sum(1)
    far = x.detach().norm(dim=1) > 1e-3
    bad = ((v <= level) & (lie >= 0) & far).sum()
    edge = x.detach().clone()
    dims = torch.as_tensor(rng.integers(0, system.n_states, n))
    side = torch.as_tensor(rng.integers(0, 2, n)).bool()
    edge[torch.arange(n), dims] = torch.where(
        side, torch.as_tensor(hi)[dims], torch.as_tensor(lo)[dims]
    )
    bad_edge = (candidate.value(edge) <= level).sum()
    return int(bad) + int(bad_edge)


def test_vanderpol_quadratic_matches_the_published_level():
    s = get_system("vanderpol")
    cand = QuadraticCandidate(lyapunov_P(s), s)
    r = verify_candidate(s, cand, options=FAST)
    assert r.verified and r.verdict is Verdict.VERIFIED and r.hole is None
    assert r.level == pytest.approx(2.30, abs=0.01)  # shared/benchmarks.md: x'Px <= 2.30
    assert r.level < r.level_upper <= r.level * 1.002
    assert dense_check(s, cand, r.level) == 0
    # and just above the level, sampling finds a violation: the level is tight
    assert dense_check(s, cand, r.level * 1.02) > 0


def test_linear_system_quadratic_certificate_is_exact():
    s = get_system("damped_sho")
    P = lyapunov_P(s)
    r = verify_candidate(s, QuadraticCandidate(P, s), options=FAST)
    assert r.verified
    # the exact answer: the minimum of x'Px on the boundary of the box
    t = np.linspace(-1, 1, 400_001)
    faces = [np.stack([np.full_like(t, 5.0), 2 * t]), np.stack([5 * t, np.full_like(t, 2.0)])]
    exact = min(float(np.einsum("in,ij,jn->n", f, P, f).min()) for f in faces)
    assert exact * (1 - 2e-3) <= r.level <= exact


def test_pendulum_energy_decreases_but_not_strictly():
    s = get_system("pendulum")
    r = verify_candidate(s, ExpressionCandidate("0.5*x2**2 + 1 - cos(x1)", s), options=FAST)
    assert r.verdict is Verdict.FALSIFIED and not r.verified
    assert r.condition is Condition.NONSTRICT
    cx = r.counterexample["point"]
    assert cx[1] == 0.0 and abs(cx[0]) > 0  # dV/dt = -0.1 x2^2 = 0 on the x1 axis
    assert r.level == pytest.approx(1 - math.cos(3.5), rel=2e-3)


def test_given_level_is_checked():
    s = get_system("vanderpol")
    cand = QuadraticCandidate(lyapunov_P(s), s)
    ok = verify_candidate(s, cand, level=2.0, options=FAST)
    assert ok.verified and ok.level == 2.0
    bad = verify_candidate(s, cand, level=3.0, options=FAST)
    assert bad.verdict is Verdict.FALSIFIED and bad.counterexample is not None
    # the counterexample is real: dV/dt >= 0 there, with V <= 3
    p = torch.tensor([bad.counterexample["point"]], requires_grad=True)
    v = cand.value(p)
    (g,) = torch.autograd.grad(v.sum(), p)
    assert float((g * s.f(p.detach())).sum()) >= 0 and float(v.detach()) <= 3.0
    # a replay that proves dV/dt > 0 there decides the non-strict condition too (no search)
    assert bad.counterexample["replay"]["interval"][0] > 0
    assert bad.condition is Condition.NONE and "dV/dt in [" in bad.message


def test_saddle_is_never_verified():
    s = System.from_equations("saddle", ["x", "y"], ["x", "-y"], [[-1, 1], [-1, 1]])
    r = verify_candidate(s, ExpressionCandidate("x**2 + y**2", s), options=FAST)
    assert not r.verified and r.verdict is not Verdict.VERIFIED


def test_hole_exploit_is_not_verified():
    # unstable origin inside a stable limit cycle (Hopf normal form, r' = r (0.1 - r^2)):
    # V = x^2 + y^2 decreases everywhere outside r = 0.32, which a verifier with a hole accepts
    s = System.from_equations(
        "hopf",
        ["x", "y"],
        ["0.1*x - y - x*(x**2 + y**2)", "x + 0.1*y - y*(x**2 + y**2)"],
        [[-2, 2], [-2, 2]],
    )
    r = verify_candidate(s, ExpressionCandidate("x**2 + y**2", s), options=FAST)
    assert not r.verified and r.verdict is not Verdict.VERIFIED
    assert r.hole is not None and "Hurwitz" in r.hole


def test_network_candidate_uses_forward_mode():
    s = get_system("vanderpol")
    L = np.linalg.cholesky(lyapunov_P(s))  # P = L L'

    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2, bias=False)
            self.lin.weight.data = torch.as_tensor(L.T.copy())

        def forward(self, x):
            return (self.lin(x) ** 2).sum(dim=-1)

    r = verify_candidate(s, NetworkCandidate(Quadratic()), options=FAST)
    assert r.verified and r.level == pytest.approx(2.30, abs=0.01)


def test_tanh_network_candidate_is_sound():
    torch.manual_seed(0)
    s = get_system("vanderpol")
    P = torch.as_tensor(lyapunov_P(s))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
            )
            for p in self.body.parameters():
                p.data *= 0.05

        def forward(self, x):
            phi = self.body(x) - self.body(torch.zeros_like(x))
            return (phi**2).sum(-1) + ((x @ P) * x).sum(-1)

    cand = NetworkCandidate(Net())
    r = verify_candidate(s, cand, options=FAST)
    assert r.verdict is Verdict.VERIFIED and r.level > 1.0
    assert dense_check(s, cand, r.level) == 0


def test_unsupported_operations_are_listed_together():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.floor(x).sum(-1) + torch.erf(x).sum(-1)

    s = get_system("vanderpol")
    with pytest.raises(UnsupportedOperationError) as info:
        verify_candidate(s, NetworkCandidate(Odd()), options=FAST)
    assert "floor" in str(info.value) and "erf" in str(info.value)


def test_bad_level_is_rejected():
    s = get_system("vanderpol")
    with pytest.raises(VerificationError, match="level"):
        verify_candidate(s, QuadraticCandidate(np.eye(2), s), level=-1.0)


def test_engine_exception_fails_closed(monkeypatch):
    from lyapcert.bounds import interval

    s = get_system("vanderpol")
    cand = QuadraticCandidate(lyapunov_P(s), s)

    def boom(self, other):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(interval.Interval, "__mul__", boom)
    r = verify_candidate(s, cand, options=FAST)
    assert r.verdict is Verdict.UNKNOWN and not r.verified
    assert "injected fault" in r.message


def test_nan_inside_the_engine_fails_closed(monkeypatch):
    from lyapcert.bounds import interval

    s = get_system("vanderpol")
    cand = QuadraticCandidate(lyapunov_P(s), s)
    original = interval.Interval.square

    def nan_square(self):
        out = original(self)
        return interval.Interval(out.lo * float("nan"), out.hi * float("nan"))

    monkeypatch.setattr(interval.Interval, "square", nan_square)
    r = verify_candidate(s, cand, options=FAST)
    assert not r.verified


@pytest.mark.slow
def test_mutated_certificates_are_never_verified():
    s = get_system("vanderpol")
    P0 = lyapunov_P(s)
    rng = np.random.default_rng(7)
    opts = VerifyOptions(time_limit=3600.0, max_boxes=200_000)
    checked = 0
    verified_bad = []
    while checked < 200:
        noise = rng.normal(scale=0.4, size=(2, 2))
        P = P0 + (noise + noise.T) / 2
        level = float(rng.uniform(0.5, 6.0))
        cand = QuadraticCandidate(P, s)
        if dense_check(s, cand, level, n=20_000, seed=checked) == 0:
            continue  # only mutants whose violation sampling finds
        checked += 1
        r = verify_candidate(s, cand, level=level, options=opts)
        if r.verdict is Verdict.VERIFIED:
            verified_bad.append((P.tolist(), level))
    assert verified_bad == []


def _saturated_gain(K):
    K = torch.as_tensor(K, dtype=torch.float64)

    def controller(x):
        return torch.clamp(x @ K.T, -6.0, 6.0)

    return controller


@pytest.mark.parametrize(
    "name, discrete",
    [
        ("vanderpol", False),
        ("power_system", False),
        ("inverted_pendulum", False),
        ("inverted_pendulum-dt", True),
    ],
)
@pytest.mark.parametrize("proposal", [False, True])
def test_local_certificate_claims_hold_on_dense_samples(name, discrete, proposal):
    """Inside {V_q <= c_q} the quadratic strictly decreases (sampled, float64, margin-free);
    also with a proposed ``P`` (the Lyapunov matrix of a weight far from the identity)."""
    from lyapcert.verify.local import LocalCertificate, local_certificate
    from lyapcert.verify.lyapunov import build_problem

    s = get_system(name)
    ctrl = _saturated_gain([[-4.0, -1.0]]) if s.input_names else None
    loop = s.closed_loop(ctrl)
    pb = build_problem(loop, QuadraticCandidate(np.eye(2), s), FAST)
    P0 = None
    if proposal:
        a = loop.linearize()[0]
        weight = np.diag([1.0, 40.0])
        P0 = (
            scipy.linalg.solve_discrete_lyapunov(a.T, weight)
            if discrete
            else scipy.linalg.solve_continuous_lyapunov(a.T, -weight)
        )
    loc = local_certificate(
        pb.field, pb.x_star, pb.lo, pb.hi, pb.u_fn, discrete=discrete, proposal=P0
    )
    assert isinstance(loc, LocalCertificate) and np.isfinite(loc.remainder_M)
    if proposal:
        assert np.array_equal(loc.P, (P0 + P0.T) / 2)
    rng = np.random.default_rng(1)
    # points on and inside the boundary of the ellipse {e'Pe <= c}
    L = np.linalg.cholesky(np.linalg.inv(loc.P))
    d = rng.normal(size=(50_000, 2))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    e = (L @ (d * np.sqrt(loc.level) * rng.uniform(0.01, 1, (50_000, 1)) ** 0.5).T).T
    x = torch.as_tensor(e)
    Pt = torch.as_tensor(loc.P)
    vq = ((x @ Pt) * x).sum(1)
    assert float(vq.max()) <= loc.level * (1 + 1e-9)
    assert s.domain.contains(x).all()
    u = ctrl(x) if ctrl else None
    fx = s.f(x, u)
    if discrete:
        change = ((fx @ Pt) * fx).sum(1) - vq
    else:
        change = 2 * ((x @ Pt) * fx).sum(1)
    assert bool((change < 0).all())


def test_the_local_certificate_takes_the_shape_of_a_quadratic_candidate():
    """``prove_local`` also tries the candidate's own quadratic floor as the local ``P`` and keeps
    whichever leaves the smaller hole (the larger proven ``c0``)."""
    from lyapcert.verify.local import local_certificate
    from lyapcert.verify.lyapunov import build_problem, floor_inner_level, prove_local

    s = get_system("vanderpol")
    a = s.linearize()[0]
    for weight, own_wins in (([0.2, 1.0], True), ([1.0, 0.2], False)):
        P = scipy.linalg.solve_continuous_lyapunov(a.T, -np.diag(weight))
        cand = QuadraticCandidate(P, s)
        pb = build_problem(s, cand, FAST)
        default = local_certificate(pb.field, pb.x_star, pb.lo, pb.hi, pb.u_fn)
        own = local_certificate(pb.field, pb.x_star, pb.lo, pb.hi, pb.u_fn, proposal=P)
        c_default = floor_inner_level(cand, default, pb.x_star)
        c_own = floor_inner_level(cand, own, pb.x_star)
        assert (c_own > c_default) == own_wins
        _, local = prove_local(pb)
        assert np.array_equal(local.P, own.P if own_wins else default.P)
        assert floor_inner_level(cand, local, pb.x_star) == max(c_own, c_default) > 0


def test_discrete_time_quadratic_certificate():
    s = get_system("damped_sho").discretize(0.1)
    a, _ = s.linearize()
    P = scipy.linalg.solve_discrete_lyapunov(a.T, np.eye(2))
    r = verify_candidate(s, QuadraticCandidate(P, s), options=FAST)
    assert r.verified
    # sampled: in {V <= level}, V decreases and x+ stays in the box
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform([-5, -2], [5, 2], (100_000, 2)))
    cand = QuadraticCandidate(P, s)
    inside = cand.value(x) <= r.level
    nxt = s.f(x)
    assert bool((cand.value(nxt)[inside] < cand.value(x)[inside]).all())
    assert bool(s.domain.contains(nxt[inside]).all())


def test_discrete_time_cubic_map_interval():
    s = System.from_equations(
        "cubic_map", ["x"], ["x + 0.1*(-x + x**3)"], [[-2, 2]], time="discrete", dt=0.1
    )
    r = verify_candidate(s, ExpressionCandidate("x**2", s), options=FAST)
    assert r.verified and 0.998 <= r.level < 1.0  # the true ROA is (-1, 1)


def test_saturated_controller_closed_loop_ct_and_dt():
    ctrl = _saturated_gain([[-4.0, -1.0]])
    for name, solve in (("inverted_pendulum", "ct"), ("inverted_pendulum-dt", "dt")):
        s = get_system(name)
        a, b = s.linearize()
        acl = a + b @ np.array([[-4.0, -1.0]])
        if solve == "ct":
            P = scipy.linalg.solve_continuous_lyapunov(acl.T, -np.eye(2))
        else:
            P = scipy.linalg.solve_discrete_lyapunov(acl.T, np.eye(2))
        r = verify_candidate(s.closed_loop(ctrl), QuadraticCandidate(P, s), options=FAST)
        assert r.verified, (name, r.message)
        # sampled check of the claim
        rng = np.random.default_rng(2)
        x = torch.as_tensor(rng.uniform(-12, 12, (200_000, 2)))
        cand = QuadraticCandidate(P, s)
        inside = (cand.value(x) <= r.level) & (x.norm(dim=1) > 1e-3)
        if solve == "ct":
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(cand.value(xg).sum(), xg)
            assert bool(((g * s.f(x, ctrl(x))).sum(1)[inside] < 0).all())
        else:
            nxt = s.f(x, ctrl(x))
            assert bool((cand.value(nxt)[inside] < cand.value(x)[inside]).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_verification_matches_cpu():
    s = get_system("vanderpol")
    cand = QuadraticCandidate(lyapunov_P(s), s)
    cpu = verify_candidate(s, cand, options=FAST)
    gpu = verify_candidate(s, cand, options=VerifyOptions(time_limit=20.0, device="cuda"))
    assert gpu.verified and cpu.verified
    assert gpu.level == pytest.approx(cpu.level, rel=2e-3)


@pytest.mark.parametrize("family", ["quadratic", "network", "scaled-network", "file-network"])
def test_inner_level_from_the_quadratic_floor_holds_against_an_exact_oracle(family, tmp_path):
    """``V > c0`` on the boundary of the local region Q (and so, for a floor, outside it): checked
    at sampled points of that boundary in exact rational arithmetic (python-flint). A network read
    from a TorchScript file has the floor its graph proves (``bounds.quadform``)."""
    import flint

    from lyapcert.certificates.network import LyapunovNetwork
    from lyapcert.verify.local import LocalCertificate, local_certificate
    from lyapcert.verify.lyapunov import build_problem, floor_inner_level

    s = get_system("vanderpol")
    P = np.array([[1.5, -0.5], [-0.5, 1.0]])
    if family == "quadratic":
        cand = QuadraticCandidate(P, s)
    else:
        torch.manual_seed(0)
        scale = [2.5, 3.0] if family in ("scaled-network", "file-network") else None
        net = LyapunovNetwork(2, s.equilibrium, width=8, P=P * 0.3, eps=0.5, input_scale=scale)
        cand = NetworkCandidate(net)
        if family == "file-network":
            from lyapcert.certificates import load_candidate

            torch.jit.script(net).save(str(tmp_path / "V.pt"))
            cand = load_candidate(str(tmp_path / "V.pt"), s)
            assert cand.family == "torchscript"
    pb = build_problem(s, cand, FAST)
    loc = local_certificate(pb.field, pb.x_star, pb.lo, pb.hi, pb.u_fn, discrete=False)
    assert isinstance(loc, LocalCertificate)
    c0 = floor_inner_level(cand, loc, pb.x_star)
    assert c0 > 0
    # points with e'P_q e = c_q exactly (rationally rescaled), V evaluated exactly on the floor
    rng = np.random.default_rng(3)
    Pq = [[flint.fmpq(*float(v).as_integer_ratio()) for v in row] for row in loc.P]
    cq = flint.fmpq(*float(loc.level).as_integer_ratio())
    centre, lo, hi = cand.quadratic_floor()
    assert np.array_equal(centre, s.equilibrium)
    assert np.array_equal(lo, hi) if family == "quadratic" else bool((lo < hi).all())
    F = [[flint.fmpq(*float(v).as_integer_ratio()) for v in row] for row in lo]
    for d in rng.normal(size=(2000, 2)):
        e = [flint.fmpq(*float(v).as_integer_ratio()) for v in d]
        q = sum(Pq[i][j] * e[i] * e[j] for i in range(2) for j in range(2))
        f = sum(F[i][j] * e[i] * e[j] for i in range(2) for j in range(2))
        # on the boundary e -> e sqrt(c_q / q): f scales by c_q / q
        assert f * cq / q > flint.fmpq(*float(c0).as_integer_ratio())
    # the network's V itself lies above its floor (float64 evaluation with a margin)
    x = torch.as_tensor(rng.normal(size=(5000, 2)))
    with torch.no_grad():
        v = cand.value(x)
    floor = ((x @ torch.as_tensor(lo)) * x).sum(1)
    assert bool((v >= floor * (1 - 1e-12) - 1e-15).all())


@pytest.mark.parametrize("family", ["quadratic", "scaled-network"])
def test_floor_box_contains_the_sublevel_set_against_an_exact_oracle(family):
    """``floor_box`` cuts the decrease search to a box around ``{e'Fe <= u}``: its half-width in
    each coordinate must be at least the exact maximum ``sqrt(u (F^-1)_ii)`` (mpmath, 60 digits,
    on the floor's own float entries) and not much more (it is the tight bound, not a loose one);
    a level below every point of the box, or no floor, gives no cut."""
    import mpmath

    from lyapcert.certificates.network import LyapunovNetwork
    from lyapcert.verify.lyapunov import floor_box

    s = get_system("cartpole")  # P's condition number ~650: thin ellipsoids
    lo_t, hi_t = s.domain.as_tensors(torch.float64, "cpu")
    xs = s.equilibrium_tensor(torch.float64, "cpu")
    A, B = s.linearize()
    K = np.array([[-1.0, -34.3894, -2.4106, -10.7039]])
    P = scipy.linalg.solve_continuous_lyapunov((A - B @ K).T, -np.eye(4))
    if family == "quadratic":
        cand = QuadraticCandidate(P, s)
    else:
        torch.manual_seed(0)
        net = LyapunovNetwork(
            4, s.equilibrium, width=8, P=P * 0.3, eps=0.5, input_scale=[1, 1, 2, 2]
        )
        cand = NetworkCandidate(net)
    _, f_lo, f_hi = cand.quadratic_floor()
    u = 0.1
    lo, hi = floor_box(cand, xs, u, lo_t, hi_t)
    mpmath.mp.dps = 60
    for corner in (f_lo, f_hi):
        inv = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in corner]) ** -1
        for i in range(4):
            reach = mpmath.sqrt(mpmath.mpf(u) * inv[i, i])
            x_i = mpmath.mpf(float(xs.reshape(-1)[i]))
            assert mpmath.mpf(float(hi[i])) >= min(x_i + reach, mpmath.mpf(float(hi_t[i])))
            assert mpmath.mpf(float(lo[i])) <= max(x_i - reach, mpmath.mpf(float(lo_t[i])))
            if family == "quadratic":  # tight: within 1e-6 relative of the exact reach
                assert float(hi[i]) <= float(x_i + reach * (1 + mpmath.mpf("1e-6")))
    assert floor_box(cand, xs, 0.0, lo_t, hi_t) is None
    assert floor_box(cand, xs, float("inf"), lo_t, hi_t) is None
    assert (
        floor_box(ExpressionCandidate("p**2 + th**2 + p_dot**2 + th_dot**2", s), xs, u, lo_t, hi_t)
        is None
    )


def test_no_floor_for_a_subclassed_network_or_a_moved_centre():
    from lyapcert.certificates.network import LyapunovNetwork
    from lyapcert.verify.local import local_certificate
    from lyapcert.verify.lyapunov import build_problem, floor_inner_level

    class Shifted(LyapunovNetwork):
        def forward(self, x):
            return super().forward(x) - 1.0

    s = get_system("vanderpol")
    assert NetworkCandidate(Shifted(2, s.equilibrium, width=4)).quadratic_floor() is None
    moved = NetworkCandidate(LyapunovNetwork(2, [0.5, 0.0], width=4, P=np.eye(2)))
    pb = build_problem(s, QuadraticCandidate(np.eye(2), s), FAST)
    loc = local_certificate(pb.field, pb.x_star, pb.lo, pb.hi, pb.u_fn, discrete=False)
    assert floor_inner_level(moved, loc, pb.x_star) == 0.0


def test_scaled_network_certificate_with_the_floor_inner_level_holds_on_dense_samples():
    """A LyapunovNetwork in box units, certified with the inner level taken from its quadratic
    floor: no sampled point of the certified set violates the decrease or reaches the boundary."""
    from lyapcert.certificates.network import LyapunovNetwork
    from lyapcert.verify.lyapunov import build_problem, floor_inner_level, prove_local

    torch.manual_seed(0)
    s = get_system("vanderpol")
    net = LyapunovNetwork(2, s.equilibrium, width=16, P=lyapunov_P(s), input_scale=[2.5, 3.5])
    for p in net.phi.parameters():
        p.data *= 0.05
    cand = NetworkCandidate(net)
    r = verify_candidate(s, cand, options=FAST)
    assert r.verdict is Verdict.VERIFIED and r.hole is None and r.level > 1.0
    pb = build_problem(s, cand, FAST)
    _, loc = prove_local(pb)
    c0 = floor_inner_level(cand, loc, pb.x_star)
    assert c0 > 0 and math.nextafter(c0, -math.inf) * (1 - 1e-9) == r.inner_level
    assert dense_check(s, cand, r.level) == 0
