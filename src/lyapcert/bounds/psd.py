"""Proven facts about symmetric matrices with interval entries (float64, outward rounding).

* ``interval_cholesky_pd(lo, hi)``: every symmetric ``M`` in ``[lo, hi]`` is positive definite
  (interval Cholesky with positive pivots);
* ``lower_eigenvalue_bound`` / ``upper_eigenvalue_bound``: proven ``t <= lambda_min(M)`` /
  ``t >= lambda_max(M)`` over the enclosure;
* ``proven_multiple(lo, hi, M, guess)``: a ``t`` just under ``guess`` with ``F - t M`` positive
  definite for every ``F`` in ``[lo, hi]``;
* ``symmetric_part(P)``: the enclosure of ``(P + P')/2`` for a float matrix ``P``.

Used by the local certificate (``verify.local``), the quadratic floor of a candidate and the
quadratic-form rule of the bound engine (``bounds.quadform``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lyapcert.bounds.interval import Interval


def _iv(lo, hi) -> Interval:
    return Interval(
        torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
    )


def interval_cholesky_pd(lo: np.ndarray, hi: np.ndarray) -> bool:
    """True only if every symmetric matrix with entries in ``[lo, hi]`` is positive definite
    (interval Cholesky succeeds with positive pivots; lower triangle is used)."""
    n = lo.shape[0]
    L: list[list[Interval | None]] = [[None] * n for _ in range(n)]
    for j in range(n):
        s = _iv(lo[j, j], hi[j, j])
        for k in range(j):
            s = s - L[j][k].square()
        if not bool(s.lo > 0):
            return False
        d = s.sqrt()
        L[j][j] = d
        for i in range(j + 1, n):
            t = _iv(lo[i, j], hi[i, j])
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / d
            if not (torch.isfinite(L[i][j].lo) and torch.isfinite(L[i][j].hi)):
                return False
    return True


def lower_eigenvalue_bound(lo: np.ndarray, hi: np.ndarray) -> float:
    """A proven ``t`` with ``lambda_min(M) >= t`` for every symmetric ``M`` in ``[lo, hi]``
    (``-inf`` if none is found)."""
    mid = (lo + hi) / 2
    guess = float(np.linalg.eigvalsh((mid + mid.T) / 2).min())
    scale = max(1.0, float(np.abs(mid).max()))
    for k in range(40):
        t = guess - abs(guess) * 1e-9 * 4**k - scale * 1e-14 * 4**k
        eye = np.eye(len(lo)) * t
        # lo - t and hi - t rounded outward
        if interval_cholesky_pd(np.nextafter(lo - eye, -np.inf), np.nextafter(hi - eye, np.inf)):
            return t
    return -math.inf


def upper_eigenvalue_bound(lo: np.ndarray, hi: np.ndarray) -> float:
    """A proven ``t >= lambda_max(M)`` for every symmetric ``M`` in ``[lo, hi]``."""
    return -lower_eigenvalue_bound(-hi, -lo)


def proven_multiple(lo: np.ndarray, hi: np.ndarray, M: np.ndarray, guess: float) -> float | None:
    """A ``t`` just under ``guess`` with ``F - t M`` proven positive definite (interval Cholesky)
    for every symmetric ``F`` in ``[lo, hi]`` (``M`` exact; each entry of ``t M`` is rounded once,
    so ``nextafter`` on both sides encloses it), or ``None``."""
    for k in range(12):
        t = guess * (1 - 1e-9 * 4**k)
        tm = t * M
        a_lo = np.nextafter(lo - np.nextafter(tm, np.inf), -np.inf)
        a_hi = np.nextafter(hi - np.nextafter(tm, -np.inf), np.inf)
        if interval_cholesky_pd(a_lo, a_hi):
            return t
    return None


def symmetric_part(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi]`` containing the exact ``(P + P')/2`` of a float64 matrix ``P`` (``e'Pe =
    e' sym(P) e``): the sum is rounded once and moved out by one ulp, the halving is exact."""
    total = P + P.T
    return np.nextafter(total, -np.inf) / 2, np.nextafter(total, np.inf) / 2
