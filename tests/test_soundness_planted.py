"""Property tier: planted equilibrium offsets never yield a false VERIFIED (slow).

Random systems (polynomial and trigonometric terms; continuous and discrete time; autonomous and
closed by a random linear or tanh-network controller) on tiny, unit and huge boxes get an offset
planted into the equilibrium (relative 0, 1e-12, ..., 1e-3 of the box half-widths), while x* is
still declared at the old point and the loader's check is off. Every VERIFIED result is then checked
by simulating 10^4 points of its certified set: all must converge to x* (within 1e-4 box
half-widths). Known answers: offsets of 0 and 1e-12 are certified (the equilibrium is proven
exactly or within the 1e-9 radius), offsets of 1e-6 and more are refused as not an equilibrium.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from lyapcert.certificates.candidates import NetworkCandidate, QuadraticCandidate
from lyapcert.errors import EquilibriumError
from lyapcert.simulate import simulate
from lyapcert.systems.box import Box
from lyapcert.systems.system import System
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.result import Verdict

pytestmark = pytest.mark.slow

OPTS = VerifyOptions(time_limit=3600.0, max_boxes=60_000, falsify_samples=1024)
OFFSETS = (0.0, 1e-12, 1e-9, 1e-6, 1e-3)
SCALES = (1e-6, 1.0, 1e3)
N_SIM = 10_000
CONVERGED = 1e-4  # of the box half-widths


class _NetController(torch.nn.Module):
    """``u = K z + W2 (tanh(W1 z + c) - tanh(c)) + delta`` with ``z = (x - x*) / h``."""

    def __init__(self, K, W1, c, W2, delta, x_star, h):
        super().__init__()
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        self.K, self.W1, self.c, self.W2 = t(K), t(W1), t(c), t(W2)
        self.delta, self.x_star, self.h = t(delta), t(x_star), float(h)

    def forward(self, x):
        z = (x - self.x_star) / self.h
        hidden = torch.tanh(z @ self.W1.T + self.c) - torch.tanh(self.c)
        return z @ self.K.T + hidden @ self.W2.T + self.delta


class _NetV(torch.nn.Module):
    """``V = |phi(z) - phi(0)|^2 + z'Pz`` (a small tanh network plus a quadratic)."""

    def __init__(self, P, x_star, h, seed):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        n = P.shape[0]
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
        ).double()
        with torch.no_grad():
            for p in self.body.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        self.P = torch.as_tensor(P, dtype=torch.float64)
        self.x_star = torch.as_tensor(x_star, dtype=torch.float64)
        self.h = float(h)

    def forward(self, x):
        z = (x - self.x_star) / self.h
        phi = self.body(z) - self.body(torch.zeros_like(z))
        return (phi**2).sum(-1) + ((z @ self.P) * z).sum(-1)


def _case(seed: int):
    """A random (system, candidate, controller, planted offset, box scale)."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 2, 3]))
    rel = OFFSETS[seed % len(OFFSETS)]
    h = SCALES[(seed // len(OFFSETS)) % len(SCALES)]
    discrete = seed % 4 == 3
    controlled = seed % 3 == 1
    network_v = seed % 7 == 2 and not discrete
    x_star = np.round(rng.uniform(-2, 2, n), 3) * h if seed % 2 else np.zeros(n)
    # linear part: a stable A (eigenvalues with real parts in [-3, -0.7]) in scaled coordinates
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(-rng.uniform(0.7, 3.0, n)) @ Q.T + 0.3 * rng.normal(size=(n, n)) * (n > 1)
    A = A - max(0.0, np.linalg.eigvals(A).real.max() + 0.7) * np.eye(n)
    poly = 0.1 * rng.normal(size=(n, n))
    trig = 0.2 * rng.normal(size=n) * (seed % 2 == 0)
    offset = rel * rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
    xs_t = torch.as_tensor(x_star, dtype=torch.float64)
    poly_t, trig_t = (torch.as_tensor(a, dtype=torch.float64) for a in (poly, trig))
    off_t = torch.as_tensor(offset, dtype=torch.float64)
    dt = 0.05

    controller, B_t, A_open = None, None, A
    if controlled:
        B = np.eye(n)
        A_open = A + 1.5 * np.eye(n)  # unstable open loop; the controller makes it A
        K = -1.5 * np.eye(n)
        W1 = 0.2 * rng.normal(size=(4, n))
        W2 = 0.1 * rng.normal(size=(n, 4))
        c = rng.normal(size=4)
        # the planted offset sits in the controller: k(x*) = delta != u* = 0
        controller = _NetController(K, W1, c, W2, offset, x_star, h)
        B_t = torch.as_tensor(B, dtype=torch.float64)
        off_t = torch.zeros(n, dtype=torch.float64)
        A_lin = A + W2 @ (W1 * (1 - np.tanh(c) ** 2)[:, None])
    else:
        A_lin = A
    Ao_t = torch.as_tensor(A_open, dtype=torch.float64)

    def rhs(x, u):
        z = (x - xs_t) / h
        dz = z @ Ao_t.T + (z @ poly_t.T) * z + trig_t * (torch.sin(z) - z) + off_t
        if B_t is not None:
            dz = dz + u @ B_t.T
        return h * dz

    def step(x, u):
        return x + dt * rhs(x, u)

    system = System(
        name=f"planted-{seed}",
        dynamics=step if discrete else rhs,
        state_names=tuple(f"x{i + 1}" for i in range(n)),
        domain=Box(tuple(x_star - h), tuple(x_star + h)),
        input_names=tuple(f"u{i + 1}" for i in range(n)) if controlled else (),
        equilibrium=tuple(x_star),
        time="discrete" if discrete else "continuous",
        dt=dt if discrete else None,
        check_equilibrium=False,
    )
    if discrete:
        Ad = np.eye(n) + dt * A_lin
        Pz = scipy.linalg.solve_discrete_lyapunov(Ad.T, np.eye(n))
    else:
        Pz = scipy.linalg.solve_continuous_lyapunov(A_lin.T, -np.eye(n))
    Pz = (Pz + Pz.T) / 2
    if network_v:
        candidate = NetworkCandidate(_NetV(Pz, x_star, h, seed))
    else:
        candidate = QuadraticCandidate(Pz / h**2, system)  # V = z'Pz in x coordinates
    return system, candidate, controller, rel, h, Pz


def _points_of_the_set(system, candidate, level, Pz, h, rng) -> torch.Tensor:
    """Up to N_SIM points of {x in box : V(x) <= level}: the box sampled uniformly, and for a
    small set the ellipsoid {z'Pz <= level} it lies near, filtered by V <= level."""
    lo = np.asarray(system.domain.lower)
    hi = np.asarray(system.domain.upper)
    n = lo.size
    x_star = np.asarray(system.equilibrium)
    found = []
    for _ in range(4):
        box = rng.uniform(lo, hi, size=(50_000, n))
        # ellipsoid points: z = L^-T w sqrt(level) with w uniform in the ball
        w = rng.normal(size=(50_000, n))
        w *= (rng.uniform(size=(50_000, 1)) ** (1 / n)) / np.linalg.norm(w, axis=1, keepdims=True)
        L = np.linalg.cholesky(Pz)
        z = np.linalg.solve(L.T, (w * np.sqrt(level) * 1.2).T).T
        ell = x_star + h * z
        pts = torch.as_tensor(np.concatenate([box, ell]), dtype=torch.float64)
        inside = (pts >= torch.as_tensor(lo)).all(1) & (pts <= torch.as_tensor(hi)).all(1)
        with torch.no_grad():
            v = candidate.value(pts)
        keep = pts[inside & (v <= level)]
        found.append(keep)
        if sum(k.shape[0] for k in found) >= N_SIM:
            break
    return torch.cat(found)[:N_SIM]


@pytest.mark.parametrize("seed", range(30))
def test_planted_offsets_never_give_a_false_verified(seed):
    system, candidate, controller, rel, h, Pz = _case(seed)
    try:
        result = verify_candidate(system.closed_loop(controller), candidate, options=OPTS)
    except EquilibriumError:
        assert rel >= 1e-9, "an exact or near-exact equilibrium was refused"
        return
    if rel >= 1e-6:
        pytest.fail(f"an equilibrium {rel:g} box half-widths off was not refused: {result}")
    if rel <= 1e-12:
        assert result.verdict is Verdict.VERIFIED, result.summary_line()
    if result.verdict is not Verdict.VERIFIED:
        return
    rng = np.random.default_rng(1000 + seed)
    x0 = _points_of_the_set(system, candidate, result.level, Pz, h, rng)
    assert x0.shape[0] > 0
    traj = simulate(
        system.closed_loop(controller), x0, horizon=30.0, step=0.02, record_every=100000
    )
    x_star = torch.as_tensor(system.equilibrium, dtype=torch.float64)
    dist = ((traj.final - x_star).abs() / h).max(dim=1).values
    assert bool((dist <= CONVERGED).all()), (
        f"{int((dist > CONVERGED).sum())} of {x0.shape[0]} points of the certified set do not "
        f"converge to x* (max distance {float(dist.max()):.3g} box half-widths)"
    )
