"""Closing the hole with a chain of certificates, for a ``V`` that does not vanish at ``x*`` or has
its minimum elsewhere (the published neural certificates: ``V = sigmoid(network)``).

The argument (continuous time; discrete time alike with ``V(x+) < V(x)`` and ``x+`` in ``B``):

1. an auxiliary certificate ``W`` (one the user passes; by default each of the quadratic of
   ``V``'s Hessian at ``x*``, which follows the shape of ``V``'s sublevel sets, and the quadratic
   Lyapunov function of the (closed-loop) linearisation, keeping the largest level) is verified
   by the same engine, with its own no-hole proof, up to a level ``d``: ``R = {x in B : W(x) <= d}`` is forward invariant and every point
   of it converges to ``x*``, which is asymptotically stable;
2. ``c0 = min V`` over ``B`` outside ``{W < d}`` (branch and bound): every point of ``B`` with
   ``V < c0`` lies in ``R``;
3. ``dV/dt < 0`` on ``{x in B : c0 <= V <= c}`` outside ``{W < d}`` (inside it ``W`` does the
   work: a stationary point of ``V`` there is harmless), ``V > c`` on the box's boundary, and
   ``V(x*) < c``.

Then a trajectory from ``S = {x in B : V <= c}`` stays in ``S`` while it is outside ``R`` (``V``
falls and cannot reach the faces), cannot stay outside ``R`` forever (``dV/dt <= -eps`` on the
compact band), and once in ``R`` converges to ``x*``: ``S``, which contains ``x*``, lies in the
region of attraction. (``S`` itself need not be invariant: inside ``R``, which is, ``V`` may
rise; a trajectory stays in ``S`` union ``R``.) Nothing asks ``V`` to be positive or to vanish at ``x*``. The chain is
tried when the local certificate alone cannot close the hole; its result says which chain closed
it (``Result.chain``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from lyapcert.verify.result import Condition, Result, Verdict


@dataclass
class InnerRegion:
    """A proven region of attraction ``{x in B : W(x) <= level}`` around ``x*``: ``W =
    (x - x*)' P (x - x*)`` when ``P`` is given, else ``value_q`` is ``W``'s bound function."""

    level: float
    P: np.ndarray | None = None
    value_q: object = None
    text: str = ""
    candidate: object = None  # W itself (for sampling)


def linearisation_quadratic(system):
    """The quadratic of the (closed-loop) linearisation (``A'P + PA = -I``; discrete time
    ``A'PA - P = -I``) as a candidate, or ``(None, reason)`` when ``A`` is not Hurwitz / Schur."""
    from lyapcert.certificates.candidates import QuadraticCandidate
    from lyapcert.errors import MethodError
    from lyapcert.methods.quadratic import lyapunov_matrix

    try:
        P = lyapunov_matrix(system.linearize()[0], np.eye(system.n_states), system.is_discrete)
    except MethodError as exc:
        return None, str(exc)
    return QuadraticCandidate(P, system), ""


def hessian_quadratic(system, candidate):
    """``W = (x - x*)' H (x - x*)`` with ``H`` the Hessian of ``V`` at ``x*`` (autograd, float64),
    when ``H`` is positive definite and the linearisation decreases ``W`` (``A'H + HA``, discrete
    time ``A'HA - H``, negative definite): a quadratic with the shape of ``V``'s own sublevel
    sets near ``x*``; ``(None, reason)`` otherwise."""
    from lyapcert.certificates.candidates import QuadraticCandidate

    try:
        xs = system.equilibrium_tensor().reshape(-1)
        H = torch.autograd.functional.hessian(lambda x: candidate.value(x[None]).sum(), xs)
        H = H.detach().cpu().numpy().astype(np.float64)
        H = (H + H.T) / 2
        A = system.linearize()[0]
        M = A.T @ H @ A - H if system.is_discrete else A.T @ H + H @ A
        if not (np.all(np.isfinite(H)) and np.linalg.eigvalsh(H)[0] > 0):
            return None, "V's Hessian at x* is not positive definite"
        if not np.linalg.eigvalsh((M + M.T) / 2)[-1] < 0:
            return None, "the linearisation does not decrease V's Hessian quadratic"
    except Exception as exc:  # a kinked or non-differentiable V: no Hessian
        return None, f"no Hessian of V at x* ({type(exc).__name__})"
    return QuadraticCandidate(H, system), ""


def default_auxiliaries(problem) -> tuple[list, list[str]]:
    """The auxiliary certificates tried in turn when none is given: the quadratic of ``V``'s
    Hessian at ``x*`` (it follows the shape of ``V``'s sublevel sets), then the quadratic of the
    linearisation; ``(candidates, reasons for those left out)``."""
    out, why = [], []
    for build in (
        lambda: hessian_quadratic(problem.system, problem.candidate),
        lambda: linearisation_quadratic(problem.system),
    ):
        w, reason = build()
        (out.append(w) if w is not None else why.append(reason))
    return out, why


def auxiliary_region(problem, auxiliary=None) -> tuple[InnerRegion | None, Result | None, str]:
    """Verify the auxiliary certificate (``auxiliary``, or the quadratic of the linearisation)
    with the same engine and what is left of the time limit, with no chain of its own:
    ``(region, its result, reason)``; ``region`` is ``None`` when it is not VERIFIED with a
    positive level and no hole."""
    import time

    from lyapcert.bounds.graph import capture
    from lyapcert.verify.lyapunov import verify_candidate

    w = auxiliary
    if w is None:
        w, why = linearisation_quadratic(problem.system)
        if w is None:
            return None, None, f"the linearisation has no quadratic Lyapunov function ({why})"
    left = problem.options.time_limit
    if problem.deadline is not None:
        left = max(0.0, problem.deadline - time.perf_counter())
    opts = dataclasses.replace(
        problem.options, chain=False, progress=False, record_proof=False, parts=1, time_limit=left
    )
    res = verify_candidate(problem.system, w, options=opts)
    if not (res.verified and res.level is not None and res.level > 0):
        return None, res, f"the auxiliary certificate {w.describe()} is not verified: {res.message}"
    P = getattr(w, "P", None)
    graph = capture(w.value_function(), 1)

    def value_q(x):
        out = graph.evaluate(x)
        return out.apply(torch.reshape, (out.shape[0],))

    region = InnerRegion(
        level=float(res.level),
        P=None if P is None else np.asarray(P, dtype=np.float64),
        value_q=None if P is not None else value_q,
        text=f"{{W <= {res.level:.6g}}} with W: {w.describe()}",
        candidate=w,
    )
    return region, res, ""


def verify_by_chain(problem, level, started, base, v_at_eq, stats, local_text, direct: Result):
    """The chain (module docstring) after the local certificate alone left a hole: a VERIFIED
    ``Result`` when it proves a level, else ``direct`` (the hole's UNKNOWN) with what the chain
    found added to its message."""

    def failed(reason: str) -> Result:
        direct.message = (direct.message + f"; no chain closed the hole: {reason}").strip("; ")
        direct.seconds = _elapsed(started)
        return direct

    given = getattr(problem, "auxiliary", None)
    tries, reasons = ([given], []) if given is not None else default_auxiliaries(problem)
    best = None
    for w in tries:
        out = _chain_through(problem, w, level, started, base, v_at_eq, stats, local_text, direct)
        if not isinstance(out, Result):
            reasons.append(out)
        elif level is not None:
            return out  # the level asked for is proven
        elif best is None or out.level > best.level:
            best = out  # the largest level over the auxiliaries tried
    if best is not None:
        best.seconds = _elapsed(started)
        return best
    return failed("; ".join(reasons) or "no auxiliary certificate")


def _chain_through(problem, w, level, started, base, v_at_eq, stats, local_text, direct):
    """The chain through the auxiliary certificate ``w``: a VERIFIED ``Result``, or the reason
    (a string) why it proves nothing."""
    from lyapcert.verify.lyapunov import _done, inner_level, level_search

    discrete = problem.succ_q is not None

    def failed(reason: str) -> str:
        return f"through {w.describe()}: {reason}"

    region, aux, why = auxiliary_region(problem, w)
    if aux is not None:
        stats = stats.merge(aux.stats)
    if region is None:
        return failed(why)
    c0, st = inner_level(problem, region)
    stats = stats.merge(st)
    if not math.isfinite(c0):
        return failed(f"min V outside {region.text} is not proven (bound {c0})")
    c0 = math.nextafter(c0, -math.inf) - 1e-12 * abs(c0)
    k = problem.options.decay_rate
    if discrete and k and c0 < 0:
        return failed(f"V can be negative (down to {c0:.4g}) where decay rate {k} is asked")
    if level is not None and not v_at_eq[1] < level:
        return failed(f"V at x* (up to {v_at_eq[1]:.6g}) is not below the level {level:.6g}")
    link = {
        "auxiliary": aux.candidate,
        "auxiliary_level": region.level,
        "auxiliary_proof": aux.proof,
        "inner_level": c0,
    }
    chain_text = (
        f"chain: {region.text} proven a region of attraction ({aux.proof}); V >= c0 = {c0:.6g} "
        "on the box outside it"
    )
    proven, level_upper = -math.inf, None
    if level is None or level >= c0:  # below c0 the set lies in R: no search needed
        decrease, boundary = level_search(problem, c0, strict=True, target=level, exclude=region)
        stats = stats.merge(decrease.stats).merge(boundary.stats)
        proven = math.nextafter(min(decrease.lower, boundary.lower), -math.inf)
        level_upper = min(decrease.upper, boundary.upper)
    cond = "V(x+) < V(x) and x+ in the box" if discrete else "dV/dt < 0"
    face = "" if discrete else ", V > level on the box's boundary"
    # below c0 the set {x in B : V <= c} lies in R (and so inside the box): nothing to decrease
    inside_r = math.nextafter(c0, -math.inf)
    if level is None:
        level_ok = max(proven, inside_r)
        if not level_ok > v_at_eq[1]:
            return failed(
                f"V at x* (up to {v_at_eq[1]:.6g}) is not below a proven level (c0 = {c0:.6g}, "
                f"decrease proven up to {proven:.6g})"
            )
    else:
        if not (proven >= level or level <= inside_r):
            return failed(f"proven only up to {max(proven, inside_r):.6g} < {level:.6g}")
        level_ok = level
    proof = (
        f"{chain_text}; {cond} proven on c0 <= V <= {level_ok:.6g} outside {{W < d}}{face}; "
        f"V(x*) <= {v_at_eq[1]:.6g} < {level_ok:.6g}"
    )
    if level_ok < c0:
        proof = f"{chain_text}; {{x in B : V <= {level_ok:.6g}}} lies in {{V < c0}}, inside it"
    common = {k: v for k, v in base.items() if k not in ("stats",)}
    return _done(
        problem,
        Verdict.VERIFIED,
        Condition.ASYMPTOTIC,
        level_ok,
        counterexample=None,
        started=started,
        message=f"the hole is closed by a chain: {region.text} (verified) contains {{V < c0}}",
        level_upper=level_upper
        if level is None and math.isfinite(level_upper or math.inf)
        else None,
        proof=proof,
        chain=[{"link": "local certificate", "text": local_text}, link],
        positivity=f"V >= {c0:.6g} on the box outside {region.text} (the chain does not need "
        "V > 0)",
        inner_level=c0,
        local=direct.local,
        stats=stats,
        **common,
    )


def _elapsed(started: float) -> float:
    import time

    return time.perf_counter() - started
