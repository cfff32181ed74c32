"""``certify``: fit a candidate with a method, verify it, measure it against the true ROA, save it.

The method only proposes; the sound verifier finds the largest certified level; the volume is
counted on the cached sample of ``lyapcert roa`` (``RoaEstimate.fraction_of_roa``), the same for
every method.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lyapcert.errors import MethodError, OptionsError
from lyapcert.methods import METHODS, get_method
from lyapcert.methods.options import build_options
from lyapcert.methods.training import check_weights
from lyapcert.systems.system import System
from lyapcert.verify import Result, VerifyOptions, verify_candidate


@dataclass
class CertifyResult:
    """The verifier's ``Result`` plus what the comparison needs (times, volumes, where saved)."""

    result: Result
    method: str
    options: dict
    train_seconds: float
    verify_seconds: float
    true_roa_volume: float | None = None
    certified_volume: float | None = None
    roa_fraction: float | None = None
    certificate_dir: str | None = None
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.result.verified

    def to_dict(self) -> dict:
        d = self.result.to_dict()
        d.update(
            method=self.method,
            options=self.options,
            train_seconds=self.train_seconds,
            verify_seconds=self.verify_seconds,
            true_roa_volume=self.true_roa_volume,
            certified_volume=self.certified_volume,
            roa_fraction=self.roa_fraction,
            certificate_dir=self.certificate_dir,
            method_info=self.info,
        )
        return d


def certify(
    system: System,
    method: str = "quadratic",
    options=None,
    verify_options: VerifyOptions | None = None,
    out: str | Path | None = None,
    roa: bool = True,
    progress: bool = False,
    resume: bool = False,
    checkpoint: str | Path | bool = True,
    controller=None,
    **option_values,
) -> CertifyResult:
    """Fit with ``method``, verify (largest level), compare with the true ROA, save to ``out``.

    ``options`` is the method's options dataclass, or a mapping; extra keyword arguments are
    option values too (``certify(s, "quadratic", optimize=True)``). Methods that train keep a
    checkpoint (``checkpoint``: a path, ``True`` for the default path in the cache folder, or
    ``False``); ``resume=True`` continues an interrupted run from it. It is removed once the
    certificate is verified and measured. ``controller`` closes the loop of a controlled system:
    ``"lqr"``, ``"neural"`` (a neural controller trained together with ``V``; methods that can),
    a path to an ONNX or TorchScript file, or a controller module.
    """
    m = get_method(method)
    if options is None or isinstance(options, dict):
        options = build_options(m.Options, {**(options or {}), **option_values}, where=method)
    elif option_values:
        options = dataclasses.replace(options, **option_values)
    torch.manual_seed(getattr(options, "seed", 0))
    k, options = prepare_controller(system, m, options, controller)
    ckpt = training_checkpoint(system, m, options, checkpoint, resume, k)
    extra = {"checkpoint": ckpt} if ckpt is not None else {}
    if k is not None:
        extra["controller"] = k
    fit = m.fit(system, options, progress=progress, **extra)
    k = fit.controller if fit.controller is not None else k
    _check_finite(fit, method)
    verify_options = verify_options or VerifyOptions(progress=progress)
    started = time.perf_counter()
    result = verify_candidate(system, fit.candidate, controller=k, options=verify_options)
    verify_seconds = time.perf_counter() - started
    out_result = CertifyResult(
        result=result,
        method=method,
        options=dataclasses.asdict(options),
        train_seconds=fit.train_seconds,
        verify_seconds=verify_seconds,
        info=fit.info,
    )
    if roa:
        from lyapcert.methods.training import true_roa_of

        out_result.true_roa_volume = true_roa_of(system, k, progress).volume
        if result.level is not None and result.verified:
            volume, share = region_share(system, fit.candidate, result.level, progress, k)
            out_result.certified_volume = result.certified_volume = volume
            out_result.roa_fraction = result.roa_fraction = share
            result.simulation_check = simulation_check(system, fit.candidate, result.level, k)
            warning = contradiction_message(result.simulation_check)
            if warning:
                result.message = (result.message + " " + warning).strip()
    if out is not None and result.level is not None:
        from lyapcert.certificates.store import save
        from lyapcert.verify.proof import stored_proof

        path = save(
            out,
            system,
            fit.candidate,
            result,
            controller=k,
            proof=stored_proof(system, fit.candidate, result, k),
            extra={
                "method": method,
                "options": out_result.options,
                "train_seconds": fit.train_seconds,
                "history": fit.info.get("history", []),
                # the comparison's numbers, counted on the true ROA's sample (None without it)
                "certified_volume": out_result.certified_volume,
                "true_roa_volume": out_result.true_roa_volume,
                "roa_fraction": out_result.roa_fraction,
            },
        )
        out_result.certificate_dir = str(path.parent)
    if ckpt is not None:
        ckpt.remove()
    return out_result


def prepare_controller(system: System, method, options, controller):
    """``(controller, options)`` for a run: ``"neural"`` becomes a ``NeuralController`` starting
    as the LQR (seeded by the options) with ``train_controller`` switched on, for the methods that
    can train one; anything else goes through ``resolve_controller``."""
    if isinstance(controller, str) and controller == "neural":
        if not _trains_controllers(type(options)):
            trainers = ", ".join(
                name for name, cls in METHODS.items() if _trains_controllers(cls.Options)
            )
            raise OptionsError(
                f"--controller neural: the {method.name} method cannot train a controller; use "
                f"--method {trainers}, or --controller lqr / a controller file"
            )
        from lyapcert.control import NeuralController

        k = NeuralController.from_lqr(
            system,
            width=options.controller_width,
            depth=options.controller_depth,
            seed=getattr(options, "seed", 0),
        )
        return k, dataclasses.replace(options, train_controller=True)
    if getattr(options, "train_controller", False) and not _has_parameters(controller):
        raise OptionsError(
            "train_controller: needs a neural controller to train (--controller neural)"
        )
    return resolve_controller(system, controller), options


def _trains_controllers(options_class) -> bool:
    """Whether a method's options dataclass has ``train_controller``."""
    return any(f.name == "train_controller" for f in dataclasses.fields(options_class))


def _has_parameters(controller) -> bool:
    return isinstance(controller, torch.nn.Module) and any(True for _ in controller.parameters())


def resolve_controller(system: System, controller):
    """``None``, ``"lqr"``, a model file path, or a module -> a checked controller (or None)."""
    from lyapcert.control import check_controller, lqr
    from lyapcert.control.imported import load_controller

    if controller is None:
        return None  # autonomous, or the open loop at u*
    if isinstance(controller, str) and controller == "lqr":
        return lqr(system)
    if isinstance(controller, (str, Path)):
        return load_controller(controller, system)
    check_controller(controller, system)
    return controller


def training_checkpoint(system: System, method, options, where=True, resume=False, controller=None):
    """The ``Checkpoint`` of a training run (``None`` for methods that keep none, or when
    ``where`` is ``False``)."""
    from lyapcert.methods.checkpoint import Checkpoint, checkpoint_key, default_checkpoint_path

    if not getattr(method, "checkpoints", False) or where is False:
        if resume:
            raise OptionsError(
                f"--resume: the {method.name} method keeps no checkpoint"
                + (" (checkpoints are off)" if where is False else " (it trains nothing long)")
                + "; run without --resume"
            )
        return None
    opts = dataclasses.asdict(options)
    if controller is not None:
        from lyapcert.control.store import controller_id

        opts["controller"] = controller_id(controller)
    key = checkpoint_key(system, method.name, opts)
    path = Path(where) if isinstance(where, (str, Path)) else default_checkpoint_path(key)
    return Checkpoint(path, key, resume=resume)


def region_share(system: System, candidate, level: float, progress: bool = False, controller=None):
    """``(volume, share of the true ROA)`` of ``{x in box : V(x) <= level}``, both counted on the
    cached sample of ``lyapcert roa`` (the one metric every method and command uses; of the closed
    loop when there is a controller)."""
    from lyapcert.methods.training import true_roa_of

    est = true_roa_of(system, controller, progress)
    inside = _sublevel_mask(est, candidate, level)
    return float(inside.mean() * est.box_volume), est.fraction_of_roa(inside)


def _sublevel_mask(est, candidate, level: float) -> np.ndarray:
    with torch.no_grad():
        values = candidate.value(torch.as_tensor(est.points, dtype=torch.float64)).numpy()
    return np.asarray(values <= level)


def simulation_check(system: System, candidate, level: float, controller=None) -> dict:
    """Cross-check of a VERIFIED region with the true-ROA sample: ``{"points": M,
    "not_converged": N, "example": [...] | None}`` for the ``M`` sample points of ``{V <= level}``,
    ``N`` of which did not converge to ``x*`` in simulation. ``N > 0`` contradicts the certificate
    (or the simulation's horizon): it is reported, never hidden; it does not change the verdict."""
    from lyapcert.methods.training import true_roa_of

    est = true_roa_of(system, controller, False)
    inside = _sublevel_mask(est, candidate, level)
    bad = inside & ~est.inside
    example = est.points[np.argmax(bad)].tolist() if bad.any() else None
    return {"points": int(inside.sum()), "not_converged": int(bad.sum()), "example": example}


def contradiction_message(check: dict) -> str:
    """The warning for a failed ``simulation_check`` ('' when there is none)."""
    if not check.get("not_converged"):
        return ""
    return (
        f"WARNING: {check['not_converged']} of the {check['points']} sample points of the "
        f"certified set did not converge to x* in simulation (e.g. {check['example']}): the "
        "certificate and the simulation contradict each other; please report this"
    )


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
