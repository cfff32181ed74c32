"""The local certificate that closes the hole around the equilibrium (continuous time).

With ``e = x - x*``, ``J`` an enclosure of the Jacobian of the closed loop at ``x*`` and ``P`` the
solution of ``A'P + PA = -I`` for ``A = mid(J)`` (a floating-point proposal), every quantity below
is a rigorous bound:

* ``lam_Q <= lambda_min(-(P J + J' P))`` for every ``J`` in its enclosure (interval Cholesky);
* ``norm_P >= ||P||_2`` and ``lam_P <= lambda_min(P)`` (interval Cholesky);
* ``|r(e)| <= M |e|^2`` on the ball ``|e| <= rho`` for the remainder ``r(e) = f(x* + e) - J e``,
  with ``M = 1/2 sqrt(sum_i ||H_i||_F^2)`` and the Hessians ``H_i`` of ``f_i`` enclosed over the box
  ``x* +- rho`` by second-order forward mode.

Then ``d/dt V_q <= -lam_Q |e|^2 + 2 norm_P M |e|^3 < 0`` for ``0 < |e| < r = min(rho,
lam_Q / (2 norm_P M))``, so ``{V_q <= c_q}`` with ``c_q = lam_P r^2`` (rounded down) lies in that
ball and in the domain, and is a proven region of attraction of ``x*`` (Lyapunov's theorem with
``V_q = e' P e``). No branch and bound is needed at the equilibrium.

Discrete time (``x+ = F(x)``, ``J`` the Jacobian of the map): ``P`` solves ``A'PA - P = -I``,
``lam_Q <= lambda_min(P - J'PJ)``, and with ``F(x* + e) - x* = J e + r(e)``::

    V_q(x+) - V_q(x) <= -lam_Q |e|^2 + 2 ||J'P|| M |e|^3 + ||P|| M^2 |e|^4,

negative for ``0 < |e| < r``, the positive root of ``lam_Q = 2 a r + b r^2`` (``a = ||J'P|| M``,
``b = ||P|| M^2``; ``||J'P||`` bounded by the Frobenius norm of its enclosure). Sublevel sets of
``V_q`` inside that ball are then invariant and attracted to ``x*``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import BoundGraph
from lyapcert.bounds.interval import Interval
from lyapcert.bounds.psd import (  # noqa: F401 (re-exported: the local certificate's algebra)
    interval_cholesky_pd,
    lower_eigenvalue_bound,
    upper_eigenvalue_bound,
)
from lyapcert.verify.equilibrium import jacobian_over_box, sublevel_radius_shrink


@dataclass(frozen=True)
class LocalCertificate:
    """``{(x - x*)' P (x - x*) <= level}``: a proven region of attraction around ``x*``.

    ``P [n, n]`` (float64, exactly the matrix used in the proof), ``radius``: the ball it lies in,
    ``decay``: the proven lower bound ``lam_Q`` of the decrease rate coefficient.
    """

    P: np.ndarray
    level: float
    radius: float
    decay: float
    norm_P: float
    lam_P: float
    remainder_M: float

    def value(self, x: torch.Tensor, x_star: torch.Tensor) -> torch.Tensor:
        e = x - x_star
        P = torch.as_tensor(self.P, dtype=x.dtype, device=x.device)
        return ((e @ P) * e).sum(dim=-1)

    def to_dict(self) -> dict:
        return {
            "P": self.P.tolist(),
            "level": self.level,
            "radius": self.radius,
            "decay": self.decay,
            "norm_P": self.norm_P,
            "lam_P": self.lam_P,
            "remainder_M": self.remainder_M,
        }


@dataclass(frozen=True)
class LocalFailure:
    """Why no local certificate exists (for example a linearisation that is not Hurwitz)."""

    reason: str


# ------------------------------------------------------------------------ Jacobians and Hessians


def jacobian_enclosure(
    field: BoundGraph, x_star: torch.Tensor, u_fn, radius: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure ``[lo, hi]`` (``[n, n]`` each) of the Jacobian of the closed loop at ``x*``, or
    over the box ``x* +- radius`` when a radius is given."""
    lo, hi = x_star, x_star
    if radius is not None:
        lo = torch.nextafter(x_star - radius, torch.full_like(x_star, -math.inf))
        hi = torch.nextafter(x_star + radius, torch.full_like(x_star, math.inf))
    j_lo, j_hi = jacobian_over_box(field, u_fn, lo, hi)
    return j_lo.numpy().copy(), j_hi.numpy().copy()


def hessian_norm_bound(
    field: BoundGraph, box_lo: torch.Tensor, box_hi: torch.Tensor, u_fn
) -> float:
    """``1/2 sqrt(sum_i ||H_i||_F^2)`` with the Hessians of ``f_i`` enclosed over the box."""
    n = box_lo.shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    j_idx = torch.arange(n).repeat_interleave(n)
    k_idx = torch.arange(n).repeat(n)
    lo = box_lo.expand(n * n, n).clone()
    hi = box_hi.expand(n * n, n).clone()
    inner = Dual(Interval(lo, hi), Interval(eye[k_idx], eye[k_idx]))
    zero = torch.zeros(n * n, n, dtype=torch.float64)
    tangent = Dual(Interval(eye[j_idx], eye[j_idx]), Interval(zero, zero))
    x = Dual(inner, tangent)
    out = field.evaluate(x, u_fn(x)).tangent.tangent  # [n*n, n]: d2 f_i / dx_j dx_k
    sup = torch.maximum(out.lo.abs(), out.hi.abs())
    if not torch.isfinite(sup).all():
        return math.inf
    total = float((sup * sup).sum())
    return 0.5 * math.sqrt(total) * (1 + 1e-12) + 1e-300


# ------------------------------------------------------------------------ the certificate


def local_certificate(
    field: BoundGraph,
    x_star: torch.Tensor,
    domain_lo: torch.Tensor,
    domain_hi: torch.Tensor,
    u_fn,
    iterations: int = 12,
    discrete: bool = False,
    centre_radius=None,
    proposal: np.ndarray | None = None,
) -> LocalCertificate | LocalFailure:
    """Prove a quadratic region of attraction around ``x*`` (see the module docstring).

    ``centre_radius`` ``[n]``: the equilibrium is only known to be the unique zero ``x_e`` of the
    closed loop in the box ``x* +- centre_radius`` (``verify.equilibrium``). Then the Jacobian is
    enclosed over that box, the remainder bound over ``x_e +- rho`` for every such ``x_e``, and the
    proven region ``{(x - x_e)'P(x - x_e) <= c}`` is shrunk to a level ``c'`` of
    ``(x - x*)'P(x - x*)`` it contains for every ``x_e`` (``equilibrium.sublevel_radius_shrink``).

    ``proposal`` ``[n, n]``: the ``P`` to try instead of the Lyapunov equation's solution (its
    symmetric part is used; every fact about it is proven the same way, so any matrix is safe:
    one that does not work gives a ``LocalFailure``).
    """
    x_star = x_star.reshape(1, -1).to(torch.float64)
    n = x_star.shape[1]
    rad = None
    if centre_radius is not None and any(float(r) > 0 for r in centre_radius):
        rad = torch.as_tensor(list(centre_radius), dtype=torch.float64).reshape(1, -1)
    j_lo, j_hi = jacobian_enclosure(field, x_star, u_fn, rad)
    if not (np.isfinite(j_lo).all() and np.isfinite(j_hi).all()):
        return LocalFailure("the Jacobian at x* could not be bounded")
    a_mid = (j_lo + j_hi) / 2
    eig = np.linalg.eigvals(a_mid)
    if discrete:
        if not np.all(np.abs(eig) < 1):
            return LocalFailure(
                "the linearisation of the map at x* is not Schur stable (|eigenvalues| "
                + ", ".join(f"{abs(e):.4g}" for e in eig)
                + "): no quadratic local certificate"
            )
        P = (
            scipy.linalg.solve_discrete_lyapunov(a_mid.T, np.eye(n))
            if proposal is None
            else proposal
        )
        P = (P + P.T) / 2
        # Q = P - J'PJ over the Jacobian enclosure
        PJ = _mat_interval_product(P, j_lo, j_hi)
        JtPJ = _mat_interval_product_left_t(j_lo, j_hi, PJ)
        q_lo = np.nextafter(P - JtPJ[1], -np.inf)
        q_hi = np.nextafter(P - JtPJ[0], np.inf)
        jtp_sup = np.maximum(np.abs(PJ[0]), np.abs(PJ[1]))  # (J'P)' = PJ: same norm
        norm_JtP = float(np.sqrt((jtp_sup**2).sum())) * (1 + 1e-12) + 1e-300
    else:
        if not np.all(eig.real < 0):
            return LocalFailure(
                "the linearisation at x* is not Hurwitz (eigenvalues "
                + ", ".join(f"{e:.4g}" for e in eig)
                + "): no quadratic local certificate"
            )
        P = (
            scipy.linalg.solve_continuous_lyapunov(a_mid.T, -np.eye(n))
            if proposal is None
            else proposal
        )
        P = (P + P.T) / 2
        # Q = -(P J + J' P) over the Jacobian enclosure, with outward rounding
        PJ = _mat_interval_product(P, j_lo, j_hi)
        q_lo = -np.nextafter(PJ[1] + PJ[1].T, np.inf)
        q_hi = -np.nextafter(PJ[0] + PJ[0].T, -np.inf)
        q_lo, q_hi = np.nextafter(q_lo, -np.inf), np.nextafter(q_hi, np.inf)
        norm_JtP = 0.0
    lam_Q = lower_eigenvalue_bound(q_lo, q_hi)
    if not lam_Q > 0:
        return LocalFailure("could not prove that -(PJ + J'P) is positive definite")
    lam_P = lower_eigenvalue_bound(P, P)
    norm_P = upper_eigenvalue_bound(P, P)
    if not (lam_P > 0 and math.isfinite(norm_P)):
        return LocalFailure("could not bound the eigenvalues of P")
    xs = x_star[0]
    extra = torch.zeros_like(xs) if rad is None else rad[0]
    rho = float(torch.minimum(xs - extra - domain_lo, domain_hi - xs - extra).min())
    if not rho > 0:
        return LocalFailure("x* lies on the boundary of the domain")
    best = None
    for _ in range(iterations):
        box_lo = torch.nextafter(xs - extra - rho, xs - math.inf).reshape(1, -1)
        box_hi = torch.nextafter(xs + extra + rho, xs + math.inf).reshape(1, -1)
        M = hessian_norm_bound(field, box_lo, box_hi, u_fn)
        if M <= 0:
            r_star = math.inf
        elif discrete:
            a, b = norm_JtP * M, norm_P * M * M
            if b > 0:
                r_star = (-2 * a + math.sqrt(4 * a * a + 4 * b * lam_Q)) / (2 * b)
            else:  # b underflows: the quadratic term is negligible, and a > 0 here
                r_star = lam_Q / (2 * a) if a > 0 else math.inf
            r_star *= 1 - 1e-6  # margin for the rounding of this formula
        else:
            r_star = lam_Q / (2 * norm_P * M)
        if not r_star >= 0:  # NaN from an unbounded remainder: nothing is proven at this rho
            r_star = 0.0
        r = min(rho, r_star * (1 - 1e-9))
        if r > 0 and math.isfinite(r) and math.isfinite(M):
            level = lam_P * r * r * (1 - 1e-9)
            if rad is not None:
                level = sublevel_radius_shrink(level, norm_P, tuple(rad[0].tolist()))
            if level > 0 and (best is None or level > best.level):
                best = LocalCertificate(P, level, r, lam_Q, norm_P, lam_P, M)
        if r_star >= rho:
            break
        rho = max(r_star, rho / 8)
    if best is None:
        return LocalFailure("the remainder of the linearisation could not be bounded")
    return best


def _mat_interval_product(
    P: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of ``P @ J`` for ``J`` in ``[lo, hi]`` (exact ``P``), outward rounded."""
    J = Interval(torch.as_tensor(lo.T.copy()), torch.as_tensor(hi.T.copy()))  # rows: columns of J
    out = J.linear(torch.as_tensor(P))  # row j: (P @ J[:, j])'
    return out.lo.numpy().T.copy(), out.hi.numpy().T.copy()


def _mat_interval_product_left_t(
    j_lo: np.ndarray, j_hi: np.ndarray, pj: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of ``J' (P J)`` for ``J`` in ``[j_lo, j_hi]`` and ``PJ`` in ``pj`` (elementwise
    interval products summed with outward rounding)."""
    n = j_lo.shape[0]
    JT = Interval(torch.as_tensor(j_lo.T.copy()), torch.as_tensor(j_hi.T.copy()))  # row i: J[:, i]
    PJ = Interval(torch.as_tensor(pj[0]), torch.as_tensor(pj[1]))
    lo = np.empty((n, n))
    hi = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            term = (JT[i] * PJ[:, j]).sum()
            lo[i, j], hi[i, j] = float(term.lo), float(term.hi)
    return lo, hi
