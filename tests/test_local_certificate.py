"""The pieces of the local certificate: second-order duals, Hessian bounds, eigenvalue bounds."""

import numpy as np
import pytest
import torch

from lyapcert.bounds import Dual, Interval, capture
from lyapcert.systems import get_system
from lyapcert.verify.local import (
    hessian_norm_bound,
    interval_cholesky_pd,
    jacobian_enclosure,
    lower_eigenvalue_bound,
    upper_eigenvalue_bound,
)


def _no_input(x):
    base = x
    while isinstance(base, Dual):
        base = base.value
    from lyapcert.bounds.dual import lift_like

    return lift_like(torch.zeros(base.lo.shape[0], 0, dtype=torch.float64), x)


@pytest.mark.parametrize("name", ["vanderpol", "power_system", "pendulum", "nonpoly2_3d"])
def test_second_order_duals_enclose_the_hessians(name):
    s = get_system(name)
    n = s.n_states
    field = capture(s.dynamics, 2)
    lo, hi = s.domain.as_tensors()
    centre = (lo + hi) / 2
    half = (hi - lo) / 8
    box_lo, box_hi = (centre - half)[None], (centre + half)[None]
    # entries d2 f_i / dx_j dx_k over the box
    eye = torch.eye(n, dtype=torch.float64)
    j_idx = torch.arange(n).repeat_interleave(n)
    k_idx = torch.arange(n).repeat(n)
    inner = Dual(
        Interval(box_lo.expand(n * n, n).clone(), box_hi.expand(n * n, n).clone()),
        Interval(eye[k_idx], eye[k_idx]),
    )
    zero = torch.zeros(n * n, n, dtype=torch.float64)
    x = Dual(inner, Dual(Interval(eye[j_idx], eye[j_idx]), Interval(zero, zero)))
    out = field.evaluate(x, _no_input(x)).tangent.tangent  # [n*n, n]
    rng = np.random.default_rng(0)
    pts = box_lo + (box_hi - box_lo) * torch.as_tensor(rng.random((200, n)))
    for p in pts:
        for i in range(n):
            h = torch.autograd.functional.hessian(lambda z, i=i: s.f(z[None])[0, i], p)
            flat = h[j_idx, k_idx]
            assert bool(((out.lo[:, i] <= flat) & (flat <= out.hi[:, i])).all()), (name, i)
    # and the norm bound dominates the sampled Frobenius norms
    m = hessian_norm_bound(field, box_lo, box_hi, _no_input)
    for p in pts[:20]:
        hs = [
            torch.autograd.functional.hessian(lambda z, i=i: s.f(z[None])[0, i], p)
            for i in range(n)
        ]
        assert 0.5 * float(torch.sqrt(sum((h * h).sum() for h in hs))) <= m


def test_jacobian_enclosure_contains_autodiff():
    s = get_system("vanderpol")
    lo, hi = jacobian_enclosure(
        capture(s.dynamics, 2), torch.zeros(1, 2, dtype=torch.float64), _no_input
    )
    a, _ = s.linearize()
    assert np.all(lo <= a) and np.all(a <= hi) and np.all(hi - lo < 1e-12)


def test_interval_cholesky():
    assert interval_cholesky_pd(np.eye(3), np.eye(3))
    m = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert not interval_cholesky_pd(m, m)  # eigenvalues 3 and -1
    near = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-12]])
    assert interval_cholesky_pd(near, near)
    assert not interval_cholesky_pd(near - 1e-11 * np.eye(2), near)  # contains singular matrices


def test_eigenvalue_bounds_are_sound_and_tight():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 7))
        b = rng.normal(size=(n, n)) * 10 ** rng.uniform(-3, 3)
        m = b + b.T
        ev = np.linalg.eigvalsh(m)
        low = lower_eigenvalue_bound(m, m)
        high = upper_eigenvalue_bound(m, m)
        scale = max(1.0, np.abs(ev).max())
        assert low <= ev.min() and ev.max() <= high
        assert ev.min() - low <= 1e-6 * scale and high - ev.max() <= 1e-6 * scale
