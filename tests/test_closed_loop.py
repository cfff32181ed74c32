"""One closed-loop object: ``system.closed_loop(k)`` is an autonomous ``System`` with
``f(x) = f(x, k(x))``, and everything downstream takes it (issue 13)."""

import ast
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lyapcert
from lyapcert.control import LinearController, NeuralController, lqr
from lyapcert.control.closed_loop import ClosedLoop, ClosedLoopDynamics
from lyapcert.errors import ControllerError, EquilibriumError
from lyapcert.verify import VerifyOptions, recheck, verify_candidate

DATA = Path(__file__).parent / "data"
SRC = Path(lyapcert.__file__).parent


def _points(system, count=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = system.domain.as_tensors()
    return lo + (hi - lo) * torch.rand(count, system.n_states, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", ["inverted_pendulum", "cartpole", "path_tracking-dt"])
def test_a_closed_loop_is_an_autonomous_system_with_the_open_loops_shape(name):
    s = lyapcert.get_system(name)
    k = lqr(s)
    c = s.closed_loop(k)
    assert isinstance(c, lyapcert.System) and c.is_closed_loop and not s.is_closed_loop
    assert c.n_inputs == 0 and c.is_autonomous and c.input_bounds is None
    assert (c.name, c.state_names, c.domain, c.equilibrium) == (
        s.name,
        s.state_names,
        s.domain,
        s.equilibrium,
    )
    assert (c.time, c.dt) == (s.time, s.dt)
    assert c.open_loop is s and c.controller is k and s.open_loop is s and s.controller is None
    x = _points(s)
    with torch.no_grad():
        assert torch.equal(c.f(x), s.f(x, k(x)))


def test_the_closed_loops_jacobian_is_a_minus_bk_inside_the_saturation():
    s = lyapcert.get_system("cartpole")
    k = lqr(s)
    A, B = s.linearize()
    A_cl, B_cl = s.closed_loop(k).linearize()
    assert B_cl.shape == (4, 0)
    np.testing.assert_allclose(A_cl, A - B @ k.K.numpy(), rtol=1e-12, atol=1e-12)


def test_the_fingerprint_covers_the_controllers_content():
    s = lyapcert.get_system("inverted_pendulum")
    a, b = s.closed_loop(lqr(s)), s.closed_loop(lqr(s))
    assert a.fingerprint() == b.fingerprint() != s.fingerprint()
    k = lqr(s)
    other = LinearController(1.01 * k.K, s.equilibrium, s.equilibrium_input, [-6.0], [6.0])
    assert s.closed_loop(other).fingerprint() != a.fingerprint()
    n = NeuralController.from_lqr(s, seed=0)
    c = s.closed_loop(n)
    before = c.fingerprint()
    with torch.no_grad():
        n.g[-1].bias.add_(0.0)  # no change: same hash
        assert c.fingerprint() == before
        n.g[0].weight.mul_(1.5)  # trained weights: another closed loop
    assert c.fingerprint() != before
    frozen = c.frozen()
    assert frozen.fingerprint() == c.fingerprint() and frozen.controller is not n


def test_closing_twice_and_bad_controllers_are_refused():
    s = lyapcert.get_system("inverted_pendulum")
    c = s.closed_loop("lqr")
    with pytest.raises(ControllerError, match="already closed"):
        c.closed_loop("lqr")
    with pytest.raises(ControllerError, match="shape"):
        s.closed_loop(lambda x: x)  # [b, 2] instead of [b, 1]
    with pytest.raises(ControllerError, match="no inputs"):
        lyapcert.get_system("vanderpol").closed_loop("lqr")
    assert s.closed_loop(None) is s


def test_k_of_x_star_is_proven_by_the_verifier_and_checked_early_by_certify():
    """A module that moves the equilibrium closes a loop (the verifier proves or refuses x*);
    ``certify`` refuses it at once with the controller check."""
    s = lyapcert.get_system("inverted_pendulum")
    k = lqr(s)
    shifted = LinearController(k.K, s.equilibrium, [0.5], [-6.0], [6.0])
    closed = s.closed_loop(shifted)
    cand = lyapcert.certificates.QuadraticCandidate(np.eye(2), s)
    with pytest.raises(EquilibriumError, match="not an equilibrium"):
        verify_candidate(closed, cand, options=VerifyOptions(time_limit=3600, max_boxes=10_000))
    with pytest.raises(ControllerError, match="expected u\\*"):
        lyapcert.certify(s, "quadratic", controller=shifted, roa=False)


def test_a_closed_loop_travels_to_workers_and_a_certify_of_a_closed_system_equals_controller_arg():
    cloudpickle = pytest.importorskip("cloudpickle")  # what Ray sends a part with
    s = lyapcert.get_system("inverted_pendulum")
    c = s.closed_loop("lqr")
    back = pickle.loads(cloudpickle.dumps(c))
    x = _points(s)
    with torch.no_grad():
        assert torch.equal(back.f(x), c.f(x))
    assert back.fingerprint() == c.fingerprint()
    one = lyapcert.certify(c, "quadratic", roa=False)
    two = lyapcert.certify(s, "quadratic", controller="lqr", roa=False)
    assert one.verified and one.result.level == two.result.level


def test_the_true_roa_cache_of_a_closed_loop_is_keyed_by_its_controller(tmp_path):
    from lyapcert.simulate.roa import cached_true_roa, true_roa

    s = lyapcert.get_system("inverted_pendulum")
    first = true_roa(s.closed_loop("lqr"), resolution=24, cache_dir=tmp_path)
    again = true_roa(s.closed_loop(lqr(s)), resolution=24, cache_dir=tmp_path)
    assert not first.from_cache and again.from_cache
    assert np.array_equal(first.outcomes, again.outcomes)
    assert cached_true_roa(s, resolution=24, cache_dir=tmp_path) is None  # the open loop: not it
    weak = LinearController(0.2 * lqr(s).K, s.equilibrium, s.equilibrium_input, [-6.0], [6.0])
    other = true_roa(s.closed_loop(weak), resolution=24, cache_dir=tmp_path)
    assert not other.from_cache and other.summary()["controller"] != first.summary()["controller"]


@pytest.mark.parametrize("name", ["certificate-v0.1-lqr", "certificate-v0.1-neural"])
def test_certificates_written_before_closed_loops_load_and_recheck(name, tmp_path):
    """Folders written by lyapcert 0.1 before this change (an LQR loop with a quadratic V; a
    neural controller trained with a network V) load as closed loops and re-check, from the
    stored proof and by search, at their saved level."""
    folder = tmp_path / name
    shutil.copytree(DATA / name, folder)
    cert, result = recheck(folder)
    assert isinstance(cert.system, ClosedLoop) and cert.controller is cert.system.controller
    assert result.verified and result.level == cert.level
    assert result.provenance["recheck"] == "stored proof"
    _, searched = recheck(folder, search=True)
    assert searched.verified and searched.level == cert.level


def _imports(path: Path) -> set[str]:
    """Every ``lyapcert`` module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lyapcert"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lyapcert"))
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_methods_call_the_verifier_not_the_pipeline():
    """No import path (top-level or lazy) leads from a method, the verifier, the simulation or
    the controllers back to ``lyapcert.certify`` (the old circle certify -> methods ->
    neural_roa -> certify)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: {m for m in _imports(p) if m in modules} for name, p in modules.items()}
    for start in ("lyapcert.methods", "lyapcert.verify", "lyapcert.simulate", "lyapcert.control"):
        seen, todo = set(), [m for m in modules if m.startswith(start)]
        while todo:
            m = todo.pop()
            if m in seen or m == "lyapcert":
                continue
            seen.add(m)
            todo.extend(graph[m])
        assert "lyapcert.certify" not in seen, start


def test_closed_loop_dynamics_is_one_module_the_bound_engine_captures():
    from lyapcert.bounds.graph import capture
    from lyapcert.bounds.interval import Interval

    s = lyapcert.get_system("inverted_pendulum")
    c = s.closed_loop("lqr")
    assert isinstance(c.dynamics, ClosedLoopDynamics)
    graph = capture(c.dynamics, 2)
    x = _points(s, 64)
    u = torch.zeros(64, 0, dtype=torch.float64)
    out = graph.evaluate(Interval(x, x), Interval(u, u))
    with torch.no_grad():
        exact = c.f(x)
    assert bool(((out.lo <= exact) & (exact <= out.hi)).all())
