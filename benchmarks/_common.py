"""What the benchmark scripts share: the results file with the machine's metadata, and the
``--linear on|off`` switch of the verifier's linear bounds."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def write_results(
    path: Path, script: str, args, rows: list[dict], extra: dict | None = None, **meta
) -> None:
    """Write ``{"meta": ..., "rows": rows, **extra}`` to ``path`` atomically (rewritten after every
    row, so a stopped run keeps its rows); ``meta`` holds the command that reproduces the run."""
    command = " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if k not in ("out", "table") and v is not None
    )
    meta = {
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **meta,
        "command": f"python benchmarks/{script} {command}",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows, **(extra or {})}, indent=2, default=str))
    tmp.replace(path)


def add_linear_option(parser) -> None:
    """``--linear on|off`` (default on): ``VerifyOptions.linear`` for the script's verifications."""
    parser.add_argument(
        "--linear",
        choices=["on", "off"],
        default="on",
        help="linear (CROWN) bounds in the verifier (off: intervals and mean-value only)",
    )
