"""The proof that ``x*`` is an equilibrium of the dynamics as computed (design rule 8).

With ``G(x) = f(x, k(x))`` (continuous time; ``k`` the controller as its graph computes it, or the
constant ``u*``) or ``G(x) = F(x, k(x)) - x`` (discrete time), and ``[G]`` its outward-rounded
interval enclosure:

* ``exact``: ``[G]([x*, x*]) = [0, 0]`` in every component: ``G(x*) = 0``.
* ``enclosed``: ``0`` lies in ``[G]([x*])`` but is not its only value (rounding), or ``0`` is
  excluded but a zero lies very close. The Krawczyk operator
  ``K(B) = x* - Y [G](x*) + (I - Y [J](B)) (B - x*)`` on a box ``B = x* +- r`` (``Y`` any
  matrix, here ``mid J(x*)^-1``; ``[J](B)`` the Jacobian of ``G`` enclosed over ``B``) with
  ``K(B)`` in the interior of ``B`` proves that ``G`` has exactly one zero ``x_e`` in ``B``
  (Krawczyk 1969; Moore, Kearfott and Cloud, *Introduction to Interval Analysis*, 8.2). Only
  radii ``r <= RADIUS_LIMIT`` box half-widths are tried: a farther zero is not "x*".
* otherwise no proof: ``provably_wrong`` when ``0`` is outside ``[G]([x*])`` in some component
  (the declared equilibrium is not one), else unproven (for example a singular Jacobian).

Nothing here uses a tolerance on ``|G(x*)|``: the loader's tolerance is for simulation and plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.interval import Interval

RADIUS_LIMIT = 1e-9
"""Largest radius of the box around ``x*`` in which an equilibrium is accepted, relative to the
box's half-widths."""


@dataclass(frozen=True)
class EquilibriumProof:
    """``G`` has exactly one zero in ``x* +- radius`` (``radius`` all zero: ``G(x*) = 0``).

    ``residual``: the enclosure ``[lo, hi]`` per component of ``G(x*)``.
    """

    status: str  # "exact" or "enclosed"
    radius: tuple[float, ...]
    residual: tuple[tuple[float, float], ...]
    what: str = "f(x*)"  # the quantity that vanishes, in words

    @property
    def exact(self) -> bool:
        return self.status == "exact"

    def describe(self) -> str:
        if self.exact:
            return f"x* is an equilibrium: {self.what} = 0 exactly (interval evaluation)"
        r = max(self.radius)
        return (
            f"{self.what} = 0 at a unique point within {r:.3g} of x* in each coordinate "
            "(Krawczyk); "
            "the certified set converges to it"
        )

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "radius": list(self.radius),
            "residual": [list(r) for r in self.residual],
            "text": self.describe(),
        }


@dataclass(frozen=True)
class EquilibriumFailure:
    """No proof that ``x*`` is an equilibrium; ``provably_wrong`` when ``G(x*) != 0`` is proven
    (and no zero was found within the radius limit)."""

    reason: str
    provably_wrong: bool
    residual: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict:
        return {
            "status": "not proven" if not self.provably_wrong else "not an equilibrium",
            "reason": self.reason,
            "residual": [list(r) for r in self.residual],
        }


def _residual_enclosure(field, u_fn, lo: torch.Tensor, hi: torch.Tensor, discrete: bool):
    x = Interval(lo, hi)
    out = field.evaluate(x, u_fn(x))
    if discrete:
        out = out - x
    return out


def jacobian_over_box(field, u_fn, lo: torch.Tensor, hi: torch.Tensor, discrete: bool = False):
    """Enclosure ``[n, n]`` (lo, hi) of the Jacobian of the closed loop over the box ``[lo, hi]``
    (``[1, n]``; a point when ``lo == hi``), of ``G = F - x`` when ``discrete``."""
    n = lo.shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    x = Dual(Interval(lo.expand(n, n).clone(), hi.expand(n, n).clone()), Interval(eye, eye))
    out = field.evaluate(x, u_fn(x))
    if discrete:
        out = out - x
    t = out.tangent  # row j: dG / dx_j
    return t.lo.T.clone(), t.hi.T.clone()


def prove_equilibrium(
    field,
    x_star: torch.Tensor,
    u_fn,
    domain_lo: torch.Tensor,
    domain_hi: torch.Tensor,
    discrete: bool = False,
    what: str | None = None,
) -> EquilibriumProof | EquilibriumFailure:
    """Prove that ``G`` (see the module docstring) vanishes at ``x*`` or has a unique zero in a
    tiny box around it. ``x_star [n]`` or ``[1, n]``; the field is the captured dynamics graph."""
    xs = x_star.reshape(1, -1).to(torch.float64).cpu()
    n = xs.shape[1]
    g = _residual_enclosure(field, u_fn, xs, xs, discrete)
    g_lo, g_hi = g.lo.reshape(-1), g.hi.reshape(-1)
    residual = tuple((float(a), float(b)) for a, b in zip(g_lo, g_hi))
    what = ("F(x*) - x*" if discrete else "f(x*)") if what is None else what
    if not (torch.isfinite(g_lo).all() and torch.isfinite(g_hi).all()):
        return EquilibriumFailure(
            f"{what} could not be evaluated to a finite enclosure at x*", False, residual
        )
    if bool(((g_lo == 0) & (g_hi == 0)).all()):
        return EquilibriumProof("exact", (0.0,) * n, residual, what)
    excluded = (g_lo > 0) | (g_hi < 0)
    half = ((domain_hi - domain_lo) / 2).reshape(-1).to(torch.float64).cpu()
    limit = half * RADIUS_LIMIT
    proof = _krawczyk(field, u_fn, xs, g, limit, discrete)
    if proof is not None:
        return EquilibriumProof("enclosed", tuple(float(r) for r in proof), residual, what)
    if bool(excluded.any()):
        i = int(torch.nonzero(excluded)[0])
        value = float(g_lo[i]) if float(g_lo[i]) > 0 else float(g_hi[i])
        return EquilibriumFailure(
            f"{what} = {value:.3g} (component {i + 1}) is not 0: x* is not an equilibrium"
            f" (and no equilibrium was proven within {RADIUS_LIMIT:g} box half-widths of x*)",
            True,
            residual,
        )
    return EquilibriumFailure(
        f"{what} lies in an interval around 0 but no unique equilibrium could be proven within "
        f"{RADIUS_LIMIT:g} box half-widths of x* (Krawczyk test failed, e.g. a singular Jacobian)",
        False,
        residual,
    )


def _krawczyk(field, u_fn, xs, g: Interval, limit: torch.Tensor, discrete: bool):
    """Radii ``r [n]`` (``<= limit``) with ``K(x* +- r)`` inside the open box, or None."""
    j_lo, j_hi = jacobian_over_box(field, u_fn, xs, xs, discrete)
    if not (torch.isfinite(j_lo).all() and torch.isfinite(j_hi).all()):
        return None
    mid = ((j_lo + j_hi) / 2).numpy()
    try:
        Y = np.linalg.inv(mid)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(Y).all():
        return None
    Yt = torch.as_tensor(Y, dtype=torch.float64)
    n = xs.shape[1]
    # the Newton step |Y [G](x*)| (an outward enclosure), and a first radius from it
    step = Interval(g.lo.reshape(1, n), g.hi.reshape(1, n)).linear(Yt)  # Y g, [1, n]
    mag = torch.maximum(step.lo.abs(), step.hi.abs()).reshape(-1)
    tiny = limit * 1e-6
    r = torch.maximum(2 * mag, tiny)
    eye = torch.eye(n, dtype=torch.float64)
    for _ in range(8):
        if bool((r > limit).any()):
            r = torch.minimum(r, limit)
        lo = (xs.reshape(-1) - r).reshape(1, n)
        hi = (xs.reshape(-1) + r).reshape(1, n)
        lo, hi = torch.nextafter(lo, lo - 1), torch.nextafter(hi, hi + 1)
        b_lo, b_hi = jacobian_over_box(field, u_fn, lo, hi, discrete)
        if not (torch.isfinite(b_lo).all() and torch.isfinite(b_hi).all()):
            return None
        # I - Y J(B), row i: e_i - sum_k Y_ik J_k. (rows of J' are the columns of J)
        J_cols = Interval(b_lo.T.clone(), b_hi.T.clone())  # [n(col j), n(row k)]: J[k, j]
        YJ_t = J_cols.linear(Yt)  # row j: Y @ J[:, j], i.e. (Y J)[:, j]
        M = Interval(eye - YJ_t.hi.T, eye - YJ_t.lo.T)  # exact I minus an enclosure
        M = Interval(torch.nextafter(M.lo, M.lo - 1), torch.nextafter(M.hi, M.hi + 1))
        mag_M = torch.maximum(M.lo.abs(), M.hi.abs())
        # (I - YJ)(B - x*) lies in +- mag_M @ r; computed with outward rounding
        spread = Interval(torch.zeros(1, n, dtype=torch.float64), r.reshape(1, n)).linear(mag_M)
        width = spread.hi.reshape(-1)
        k_lo = (-step.hi.reshape(-1)) - width  # offsets from x*: K - x*
        k_hi = (-step.lo.reshape(-1)) + width
        k_lo = torch.nextafter(k_lo, k_lo - 1)
        k_hi = torch.nextafter(k_hi, k_hi + 1)
        if bool(((k_lo > -r) & (k_hi < r)).all()):
            return r.tolist()
        if bool((r >= limit).all()):
            return None
        r = torch.minimum(r * 8, limit)
    return None


def sublevel_radius_shrink(level: float, norm_P: float, radius: tuple[float, ...]) -> float:
    """A level ``c' <= c`` with ``{(x-x*)'P(x-x*) <= c'}`` inside ``{(x-x_e)'P(x-x_e) <= c}`` for
    every ``x_e`` with ``|x_e - x*|_i <= radius_i``: by the triangle inequality of the P-norm,
    ``sqrt(c') = sqrt(c) - sqrt(norm_P) |radius|_2`` (rounded down; ``0.0`` if none)."""
    if not any(radius):
        return level
    d = float(np.sqrt(np.sum(np.square(radius)))) * (1 + 1e-12)
    s = float(np.sqrt(level)) * (1 - 1e-12) - float(np.sqrt(norm_P)) * (1 + 1e-12) * d
    if not s > 0:
        return 0.0
    return s * s * (1 - 1e-12)
