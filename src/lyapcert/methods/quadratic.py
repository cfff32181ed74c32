"""The quadratic method: the Lyapunov equation of the linearisation.

Continuous time: ``A'P + PA = -Q``; discrete time: ``A'PA - P = -Q``, with ``A`` the Jacobian of
the (closed-loop) dynamics at ``x*`` and ``V = (x - x*)' P (x - x*)``. By default ``Q = I``.
With ``optimize = true``, ``Q = L L' + 1e-3 I`` (``L`` lower triangular) is searched by
Nelder-Mead for the largest certified volume *estimated on samples* (the level is the smallest
``V`` among sampled points where the decrease fails or on the boundary of the box); the verifier
then certifies the chosen ``P``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import torch

from lyapcert.certificates.candidates import QuadraticCandidate
from lyapcert.errors import MethodError
from lyapcert.methods.base import Fit, Method
from lyapcert.systems.system import System


@dataclass
class QuadraticOptions:
    """Options of the quadratic method.

    q_scale: Q = q_scale * I when not optimised
    optimize: search Q for the largest sampled certified volume
    samples: points used to score a Q during the search
    iterations: Nelder-Mead iterations of the search
    seed: random seed of the samples
    """

    q_scale: float = 1.0
    optimize: bool = False
    samples: int = 20_000
    iterations: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.q_scale > 0:
            raise ValueError(f"q_scale: expected a number > 0, got {self.q_scale}")
        if self.samples < 100 or self.iterations < 1:
            raise ValueError("samples must be >= 100 and iterations >= 1")


def lyapunov_matrix(a: np.ndarray, q: np.ndarray, discrete: bool) -> np.ndarray:
    if discrete:
        if not np.all(np.abs(np.linalg.eigvals(a)) < 1):
            raise MethodError("quadratic: the linearisation of the map is not Schur stable")
        p = scipy.linalg.solve_discrete_lyapunov(a.T, q)
    else:
        if not np.all(np.linalg.eigvals(a).real < 0):
            raise MethodError(
                "quadratic: the linearisation at x* is not Hurwitz (eigenvalues "
                + ", ".join(f"{e:.4g}" for e in np.linalg.eigvals(a))
                + "); no quadratic Lyapunov function exists"
            )
        p = scipy.linalg.solve_continuous_lyapunov(a.T, -q)
    return (p + p.T) / 2


def sampled_volume_score(
    system: System, P: np.ndarray, points: torch.Tensor, boundary: torch.Tensor
) -> float:
    """Estimated share of the box certified by ``V = e'Pe`` (a search heuristic only)."""
    Pt = torch.as_tensor(P)
    xs = system.equilibrium_tensor()
    with torch.no_grad():
        e = points - xs
        v = ((e @ Pt) * e).sum(1)
        fx = system.f(points)
        if system.is_discrete:
            en = fx - xs
            dec = ((en @ Pt) * en).sum(1) - v
            outside = ~system.domain.contains(fx)
            bad = (dec >= 0) | outside
        else:
            bad = 2 * ((e @ Pt) * fx).sum(1) >= 0
        eb = boundary - xs
        vb = ((eb @ Pt) * eb).sum(1)
        near = e.abs().amax(1) < 1e-6
        level = min(
            float(v[bad & ~near].min()) if (bad & ~near).any() else np.inf,
            float(vb.min()) if not system.is_discrete else np.inf,
        )
        return float((v < level).double().mean())


class QuadraticMethod(Method):
    """``quadratic``: ``V = (x - x*)' P (x - x*)`` from the Lyapunov equation of the
    linearisation (module docstring); options: ``QuadraticOptions``."""

    name = "quadratic"
    Options = QuadraticOptions

    def fit(self, system: System, options: QuadraticOptions, progress: bool = False) -> Fit:
        started = time.perf_counter()
        n = system.n_states
        a = system.linearize()[0]  # a closed loop's own Jacobian; else at u = u*
        q0 = options.q_scale * np.eye(n)
        P = lyapunov_matrix(a, q0, system.is_discrete)
        info = {"Q": q0.tolist()}
        if options.optimize:
            P, info = self._optimise(system, a, options, P)
        return Fit(QuadraticCandidate(P, system), time.perf_counter() - started, info)

    def _optimise(self, system, a, options, P0):
        rng = np.random.default_rng(options.seed)
        n = system.n_states
        lo = np.asarray(system.domain.lower)
        hi = np.asarray(system.domain.upper)
        pts = torch.as_tensor(lo + (hi - lo) * rng.random((options.samples, n)))
        face = torch.as_tensor(lo + (hi - lo) * rng.random((options.samples // 4, n)))
        dims = rng.integers(0, n, face.shape[0])
        sides = rng.integers(0, 2, face.shape[0])
        face[np.arange(face.shape[0]), dims] = torch.as_tensor(np.where(sides, hi[dims], lo[dims]))
        tril = np.tril_indices(n)

        def matrices(theta):
            L = np.zeros((n, n))
            L[tril] = theta
            q = L @ L.T + 1e-3 * np.eye(n)
            return q, lyapunov_matrix(a, q, system.is_discrete)

        def objective(theta):
            try:
                _, P = matrices(theta)
                return -sampled_volume_score(system, P, pts, face)
            except Exception:
                return 0.0

        start = np.eye(n)[tril]
        best = scipy.optimize.minimize(
            objective,
            start,
            method="Nelder-Mead",
            options={"maxiter": options.iterations, "xatol": 1e-4, "fatol": 1e-5},
        )
        q, P = matrices(best.x)
        base = -objective(start)
        if -best.fun <= base:
            q, P = np.eye(n) * options.q_scale, P0
        return P, {
            "Q": q.tolist(),
            "sampled_score": float(-best.fun),
            "sampled_score_identity": base,
            "evaluations": int(best.nfev),
        }
