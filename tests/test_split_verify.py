"""A verification split into sub-boxes (in this process or as Ray tasks) proves what one search
proves: the sub-boxes cover the domain exactly, and the merged level and verdict agree."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from typer.testing import CliRunner

import lyapcert
from lyapcert.certificates import ExpressionCandidate
from lyapcert.cli import app
from lyapcert.control.linear import lqr
from lyapcert.errors import OptionsError, VerificationError
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.lyapunov import split_box

VDP_V = "1.5*x1**2 - x1*x2 + x2**2"


@pytest.mark.parametrize("parts", [1, 2, 5, 8])
def test_split_box_covers_the_box_exactly(parts):
    lo = torch.tensor([-2.0, -3.0, 0.5], dtype=torch.float64)
    hi = torch.tensor([3.0, 1.5, 0.75], dtype=torch.float64)
    boxes = split_box(lo, hi, parts)
    assert len(boxes) >= parts
    volume = sum(float(torch.prod(b - a)) for a, b in boxes)
    assert volume == pytest.approx(float(torch.prod(hi - lo)), rel=1e-14)
    # every sample point of the box lies in some sub-box (closed boxes: shared faces count)
    x = lo + (hi - lo) * torch.rand(20000, 3, dtype=torch.float64)
    x[:100, 0] = (lo[0] + hi[0]) / 2  # on a cut
    inside = torch.zeros(x.shape[0], dtype=torch.bool)
    for a, b in boxes:
        inside |= ((x >= a) & (x <= b)).all(dim=1)
    assert bool(inside.all())


def _quadratic(name):
    s = lyapcert.get_system(name)
    k = lqr(s) if s.n_inputs else None
    return s, QuadraticMethod().fit(s.closed_loop(k), QuadraticOptions()).candidate, k


@pytest.mark.parametrize("name", ["vanderpol", "inverted_pendulum"])
def test_split_verification_gives_the_level_of_one_search(name):
    s, cand, k = _quadratic(name)
    one = verify_candidate(s.closed_loop(k), cand)
    split = verify_candidate(s.closed_loop(k), cand, options=VerifyOptions(parts=4))
    assert one.verdict.value == split.verdict.value == "verified"
    assert split.level == pytest.approx(one.level, rel=2e-3)
    assert split.hole is None


@pytest.mark.slow
def test_split_verification_still_finds_a_violation():
    """V = x1^2 on van der Pol: dV/dt = -2 x1 x2 changes sign arbitrarily close to x*, and V
    vanishes on the x2 axis: no certificate, with or without the split."""
    s = lyapcert.get_system("vanderpol")
    cand = ExpressionCandidate("x1**2 + 0.01*x2**2", s)
    opts = VerifyOptions(time_limit=3600, max_boxes=50_000)  # box budgets, never the clock
    one = verify_candidate(s, cand, options=opts)
    split = verify_candidate(s, cand, options=dataclasses.replace(opts, parts=4))
    assert not one.verified and not split.verified
    # both know a replayed violation; FALSIFIED only where the search converged on it (each of
    # the 4 parts has its own box budget), UNKNOWN where the budget ran out first
    for r in (one, split):
        assert r.verdict.value in ("falsified", "unknown") and r.counterexample is not None
        assert r.counterexample["replay"]["interval"][0] >= 0


def test_a_mapper_that_loses_a_part_is_refused():
    s, cand, _ = _quadratic("vanderpol")

    def lossy(fn, items):
        return [fn(i) for i in list(items)[1:]]

    with pytest.raises(VerificationError, match="mapper returned 2 results for 3 parts"):
        verify_candidate(s, cand, options=VerifyOptions(parts=3), mapper=lossy)


def test_cli_parts_and_bad_backend():
    runner = CliRunner()
    res = runner.invoke(app, ["verify", "vanderpol", "-c", VDP_V, "--parts", "3", "--no-volume"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["verify", "vanderpol", "-c", VDP_V, "--parts", "0"])
    assert res.exit_code == 2 and "--parts" in res.output
    res = runner.invoke(app, ["verify", "vanderpol", "-c", VDP_V, "--backend", "dask"])
    assert res.exit_code == 2 and "--backend" in res.output


def test_process_split_verification_gives_the_level_of_one_search():
    """The parts in two worker processes (fresh interpreters: the system, its controller and the
    candidate travel by cloudpickle) merge to the level of one search."""
    from lyapcert.verify.distributed import process_mapper

    s, cand, k = _quadratic("inverted_pendulum")
    one = verify_candidate(s.closed_loop(k), cand)
    split = verify_candidate(
        s.closed_loop(k), cand, options=VerifyOptions(parts=2), mapper=process_mapper(2)
    )
    assert split.verdict.value == "verified" and split.hole is None
    assert split.level == pytest.approx(one.level, rel=2e-3)


def test_process_mapper_keeps_order_and_raises_a_worker_error():
    from lyapcert.verify.distributed import process_mapper

    mapper = process_mapper(2)
    assert mapper(abs, [-3, 2, -1]) == [3, 2, 1]
    assert mapper(abs, []) == []
    with pytest.raises(TypeError):
        mapper(abs, ["not a number"])
    with pytest.raises(OptionsError, match="workers"):
        process_mapper(0)


@pytest.mark.slow
def test_ray_split_verification_on_a_local_cluster():
    ray = pytest.importorskip("ray")
    from lyapcert.verify.distributed import ray_mapper

    s, cand, k = _quadratic("inverted_pendulum")
    one = verify_candidate(s.closed_loop(k), cand)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        split = verify_candidate(
            s.closed_loop(k), cand, options=VerifyOptions(parts=4), mapper=ray_mapper()
        )
    finally:
        ray.shutdown()
    assert split.verdict.value == "verified" and split.hole is None
    assert split.level == pytest.approx(one.level, rel=2e-3)
    assert math.isfinite(split.inner_level)
