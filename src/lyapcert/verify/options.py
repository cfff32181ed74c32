"""Checking the verifier's settings at the boundary: the same refusals for the command line and
for Python callers.

``VerifyOptions`` itself accepts any values when it is built (internal code builds it with a
spent time limit, ``time_limit=0.0``, when a deadline has run out); ``VerifyOptions.validate()``
(``check_options``) refuses what a caller must not ask for. Messages name the command-line flag
of each setting (``--time-limit`` for ``time_limit``, ``--tolerance`` for ``level_tolerance``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from lyapcert.errors import VerificationError

BACKENDS = ("local", "process", "ray")


def check_device(device: str) -> None:
    """``VerificationError`` when ``device`` asks for CUDA and torch sees no CUDA device."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise VerificationError(
            "--device: CUDA was asked for but torch sees no CUDA device; use --device cpu"
        )


def check_limits(options) -> None:
    """``VerificationError`` for a decay rate outside ``[0, 1)``, a time limit or level tolerance
    that is not a finite number > 0, or fewer than one box, batch or part."""
    k = options.decay_rate
    if not (_is_number(k) and math.isfinite(k) and 0 <= k < 1):
        raise VerificationError(f"--decay-rate: expected 0 <= k < 1, got {k}")
    for name, value in (
        ("--time-limit", options.time_limit),
        ("--tolerance", options.level_tolerance),
    ):
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            raise VerificationError(f"{name}: expected a finite number > 0, got {value}")
    for name, value in (
        ("--max-boxes", options.max_boxes),
        ("batch_size", options.batch_size),
        ("--parts", options.parts),
    ):
        if not (_is_int(value) and value >= 1):
            raise VerificationError(f"{name}: expected a positive integer, got {value}")
    if not (_is_int(options.falsify_samples) and options.falsify_samples >= 0):
        raise VerificationError(
            f"falsify_samples: expected an integer >= 0, got {options.falsify_samples}"
        )


def check_options(options) -> None:
    """Everything ``check_device`` and ``check_limits`` refuse, device first."""
    check_device(options.device)
    check_limits(options)


def mapper_for(backend: str = "local", address: str | None = None) -> Callable | None:
    """The mapper that runs a split verification's parts: ``None`` (here, one after another) for
    ``"local"``, ``verify.distributed.process_mapper()`` (worker processes on this machine's
    cores) for ``"process"``, ``verify.distributed.ray_mapper(address)`` for ``"ray"``;
    ``VerificationError`` for another backend, or an address without Ray."""
    if backend not in BACKENDS:
        raise VerificationError(f"--backend: expected local, process or ray, got {backend!r}")
    if address is not None and backend != "ray":
        raise VerificationError("--address is for --backend ray (the Ray cluster to connect to)")
    if backend == "ray":
        from lyapcert.verify.distributed import ray_mapper

        return ray_mapper(address)
    if backend == "process":
        from lyapcert.verify.distributed import process_mapper

        return process_mapper()
    return None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
