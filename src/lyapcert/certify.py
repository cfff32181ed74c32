"""``certify``: the pipeline. Fit a candidate with a method, verify it, measure it, save it.

The method only proposes; the sound verifier finds the largest certified level; the volume is
measured by ``lyapcert.metric``, the same for every method: on the true-ROA sample of
``lyapcert roa`` when it is cached (or asked for, ``roa=True``), with the share of the true ROA;
otherwise exactly (an ellipsoid) or on a sample of the box, with no simulation. A controlled
system travels as one closed-loop ``System`` (``lyapcert.control``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lyapcert.api import as_system
from lyapcert.errors import MethodError
from lyapcert.methods import get_method
from lyapcert.methods.options import build_options
from lyapcert.methods.training import check_weights
from lyapcert.metric import available_true_roa, measure_region
from lyapcert.systems.system import System
from lyapcert.verify import Condition, Result, Verdict, VerifyOptions, verify_candidate


@dataclass
class CertifyResult:
    """What ``certify`` returns: the verifier's ``Result`` plus what a comparison needs.

    The verifier's answer is ``result`` (a ``lyapcert.verify.Result``); ``verdict``, ``level``,
    ``hole`` and ``condition`` read it. ``method`` and ``options`` (a dict) say how the candidate
    was fitted, ``train_seconds`` and ``verify_seconds`` how long each part took.
    ``certified_volume`` is the volume of the certified set ``{x in box : V(x) <= level}``,
    counted as ``volume_method`` says (``"true-ROA sample"``, ``"exact ellipsoid"`` or ``"sample
    of N points"``, standard error ``certified_volume_stderr``), ``None`` unless VERIFIED;
    ``roa_fraction`` is its share of the true ROA, whose volume is ``true_roa_volume`` (both
    ``None`` without a true ROA). ``certificate_dir``: where the certificate was saved
    (``out=``; ``None`` when not saved). ``info``: the method's details (its ``history`` for
    example). ``checkpoint``: the trained state kept when the result is not verified (``None``
    otherwise): ``certify`` again with ``resume=True`` (a larger time limit, say) verifies it
    without training again.
    """

    result: Result
    method: str
    options: dict
    train_seconds: float
    verify_seconds: float
    true_roa_volume: float | None = None
    certified_volume: float | None = None
    roa_fraction: float | None = None
    volume_method: str | None = None
    certified_volume_stderr: float | None = None
    certificate_dir: str | None = None
    info: dict = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None

    @property
    def verified(self) -> bool:
        """``True`` only for a VERIFIED result of asymptotic stability with no hole
        (``Result.verified``)."""
        return self.result.verified

    @property
    def verdict(self) -> Verdict:
        """``Verdict.VERIFIED``, ``FALSIFIED`` or ``UNKNOWN`` (``result.verdict``)."""
        return self.result.verdict

    @property
    def level(self) -> float | None:
        """The certified level ``c`` of ``{x in box : V(x) <= c}`` (``result.level``; when not
        VERIFIED, the level that was checked, or ``None``)."""
        return self.result.level

    @property
    def hole(self) -> str | None:
        """``None`` when the neighbourhood of ``x*`` is covered by the local certificate (no
        hole), else why it is not (``result.hole``)."""
        return self.result.hole

    @property
    def condition(self) -> Condition:
        """What was proven on the certified set: asymptotic stability, non-strict decrease only,
        or nothing (``result.condition``)."""
        return self.result.condition

    def to_dict(self) -> dict:
        """The result as JSON-ready data: ``Result.to_dict()`` with the fields above (the
        method's details under ``method_info``)."""
        d = self.result.to_dict()
        d.update(
            method=self.method,
            options=self.options,
            train_seconds=self.train_seconds,
            verify_seconds=self.verify_seconds,
            true_roa_volume=self.true_roa_volume,
            certified_volume=self.certified_volume,
            roa_fraction=self.roa_fraction,
            volume_method=self.volume_method,
            certified_volume_stderr=self.certified_volume_stderr,
            certificate_dir=self.certificate_dir,
            checkpoint=self.checkpoint,
            method_info=self.info,
        )
        return d


def certify(
    system: System | str | Path,
    method: str = "quadratic",
    options=None,
    verify_options: VerifyOptions | None = None,
    out: str | Path | None = None,
    roa: bool | None = None,
    progress: bool = False,
    resume: bool = False,
    checkpoint: str | Path | bool = True,
    controller=None,
    **option_values,
) -> CertifyResult:
    """Fit with ``method``, verify (largest level), measure the certified volume, save to ``out``.

    ``system``: a ``System`` (a closed loop, ``system.closed_loop(k)``, is one), a registry name
    or a system file. ``options`` is the method's options dataclass, or a mapping; extra keyword
    arguments are option values too (``certify(s, "quadratic", optimize=True)``). Methods that
    train keep a checkpoint (``checkpoint``: a path, ``True`` for the default path in the cache
    folder, or ``False``); ``resume=True`` continues an interrupted run from it. It is removed
    once the certificate is verified and measured; when the result is not verified it is kept
    (``CertifyResult.checkpoint``), and ``resume=True`` then goes straight to verification.
    ``controller`` closes the loop first
    (``control.closed_loop.close_for_method``): ``"lqr"``, ``"neural"`` (a neural controller
    trained together with ``V``; methods that can), a path to an ONNX or TorchScript file, or a
    controller module.

    ``roa``: the true ROA the certified set is compared with. ``None`` (default): the cached one
    (``lyapcert roa``, or an earlier ``roa=True``) if there is one, never simulating; ``True``:
    cached or simulated now (and cached); ``False``: none. With it, ``certified_volume`` and
    ``roa_fraction`` are counted on its sample and a VERIFIED region is cross-checked by
    simulation; without it, ``certified_volume`` is exact (an ellipsoid inside the box) or counted
    on a sample of the box (``certified_volume_stderr``), ``roa_fraction`` is ``None``;
    ``volume_method`` says which. (A method that trains on the true ROA simulates it for its
    training data whatever ``roa`` says.)
    """
    from lyapcert.control.closed_loop import close_for_method
    from lyapcert.logline import heartbeat
    from lyapcert.methods.checkpoint import training_checkpoint

    system = as_system(system)
    m = get_method(method)
    if options is None or isinstance(options, dict):
        options = build_options(m.Options, {**(options or {}), **option_values}, where=method)
    elif option_values:
        options = dataclasses.replace(options, **option_values)
    torch.manual_seed(getattr(options, "seed", 0))
    system, options = close_for_method(system, controller, m, options)
    ckpt = training_checkpoint(system, m, options, checkpoint, resume)
    extra = {"checkpoint": ckpt} if ckpt is not None else {}
    with heartbeat(f"certify {system.name} with {method}", progress) as beat:
        beat.update("fitting")  # a method's own lines (epochs) take over while it reports
        fit = m.fit(system, options, progress=progress, **extra)
        _check_finite(fit, method)
        verify_options = verify_options or VerifyOptions(progress=progress)
        beat.update(f"verifying (fitted in {fit.train_seconds:.0f} s)")
        started = time.perf_counter()
        result = verify_candidate(system, fit.candidate, options=verify_options)
        verify_seconds = time.perf_counter() - started
    out_result = CertifyResult(
        result=result,
        method=method,
        options=dataclasses.asdict(options),
        train_seconds=fit.train_seconds,
        verify_seconds=verify_seconds,
        info=fit.info,
    )
    estimate = available_true_roa(system, roa, progress)  # its own lines when it simulates
    if estimate is not None:
        out_result.true_roa_volume = estimate.volume
    if result.level is not None and result.verified:
        measure_region(system, fit.candidate, result, estimate)
        out_result.certified_volume = result.certified_volume
        out_result.roa_fraction = result.roa_fraction
        out_result.volume_method = result.volume_method
        out_result.certified_volume_stderr = result.certified_volume_stderr
    if out is not None and result.level is not None:
        from lyapcert.certificates.store import save
        from lyapcert.verify.proof import stored_proof

        path = save(
            out,
            system,
            fit.candidate,
            result,
            proof=stored_proof(system, fit.candidate, result),
            extra={
                "method": method,
                "options": out_result.options,
                "train_seconds": fit.train_seconds,
                "history": fit.info.get("history", []),
                # the comparison's numbers: counted on the true ROA's sample when there is one
                # (volume_method says how certified_volume was counted; None: not measured)
                "certified_volume": out_result.certified_volume,
                "true_roa_volume": out_result.true_roa_volume,
                "roa_fraction": out_result.roa_fraction,
                "volume_method": out_result.volume_method,
                "certified_volume_stderr": out_result.certified_volume_stderr,
            },
        )
        out_result.certificate_dir = str(path.parent)
    if ckpt is not None:
        if result.verified:
            ckpt.remove()
        else:  # nothing lost: the trained network can be verified again without training
            out_result.checkpoint = str(ckpt.path)
    return out_result


def _check_finite(fit, method: str) -> None:
    """No certificate from non-finite coefficients or weights (whatever the method checked)."""
    cand = fit.candidate
    for name in ("P",):
        value = getattr(cand, name, None)
        if value is not None and not np.all(np.isfinite(value)):
            raise MethodError(
                f"the method produced non-finite coefficients ({name}); no certificate"
            )
    module = getattr(cand, "module", None)
    if module is not None:
        check_weights(module, method)
