"""The cells of a comparison: one (system, method, controller, seed) each, run independently.

A cell's record (a JSON-safe dict) is everything the tables need: ``status`` ("done" or
"failed"), the verdict, hole, level, certified volume, % of the true ROA, train and verify
seconds, boxes, the certificate directory, and for a failed cell the error and its traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import re
import time
import traceback
from pathlib import Path

from lyapcert.errors import OptionsError, TrainingInterrupted
from lyapcert.systems.registry import resolve_system


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A method and option overrides, written ``NAME`` or ``NAME:key=value,key=value`` on the
    command line (values parsed as JSON where they parse, else kept as text)."""

    name: str
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name:
            raise OptionsError(f"--methods: empty method in {text!r}")
        options = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, raw = item.partition("=")
            if not eq or not key.strip():
                raise OptionsError(
                    f"--methods: {text!r}: expected NAME:key=value,key=value (got {item!r})"
                )
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            options.append((key.strip(), value))
        return cls(name, tuple(options))

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={json.dumps(v)}" for k, v in self.options)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One independent job: ``system`` (registry name or system file), ``method``, ``controller``
    (``None`` for autonomous systems; ``"lqr"``, ``"neural"`` or a file), ``seed`` (``None`` for
    a method without a seed option)."""

    system: str
    method: MethodSpec
    controller: str | None = None
    seed: int | None = None

    @property
    def id(self) -> str:
        """A file-safe, stable name: readable parts plus a short hash of the whole cell."""
        whole = json.dumps(
            [self.system, self.method.name, list(self.method.options), self.controller, self.seed],
            default=str,
        )
        digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
        parts = [Path(self.system).stem, self.method.name, self.controller or "", ""]
        parts[-1] = "" if self.seed is None else f"s{self.seed}"
        slug = "-".join(p for p in parts if p)
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", slug) + "-" + digest

    def describe(self) -> dict:
        return {
            "system": self.system,
            "method": self.method.name,
            "method_label": self.method.label,
            "method_options": dict(self.method.options),
            "controller": self.controller,
            "seed": self.seed,
        }


def run_cell(cell: Cell, cell_dir: str | Path, threads: int | None = None) -> dict:
    """Run ``cell`` (fit, verify, compare with the true ROA, save the certificate under
    ``cell_dir/certificate``) and return its record. Never raises for a failing cell: the error
    and traceback go into the record with ``status = "failed"``."""
    import lyapcert
    from lyapcert.threads import set_threads

    if threads:
        set_threads(threads)
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    record = {"id": cell.id, **cell.describe(), "host": platform.node()}
    started = time.time()
    record["started"] = started
    try:
        system = resolve_system(cell.system)
        options = dict(cell.method.options)
        if cell.seed is not None:
            options["seed"] = cell.seed
        checkpoint = cell_dir / "checkpoint.pt"
        res = lyapcert.certify(
            system,
            cell.method.name,
            options=options,
            out=cell_dir / "certificate",
            controller=cell.controller,
            checkpoint=checkpoint,
            resume=checkpoint.exists(),
            roa=True,  # the comparison's % of the true ROA (simulated once, then cached)
        )
        result = res.result
        record.update(
            status="done",
            verdict=result.verdict.value,
            condition=result.condition.name.lower(),
            hole=result.hole,
            level=result.level,
            certified_volume=res.certified_volume,
            true_roa_volume=res.true_roa_volume,
            roa_fraction=res.roa_fraction,
            train_seconds=res.train_seconds,
            verify_seconds=res.verify_seconds,
            boxes=result.stats.boxes if result.stats is not None else None,
            certificate_dir=res.certificate_dir,
            message=result.message,
            box=[list(system.domain.lower), list(system.domain.upper)],
        )
    except TrainingInterrupted:
        raise  # stopped by the user: not a result (the checkpoint resumes it on the next run)
    except Exception as exc:  # a failed cell is a record, not a crash of the comparison
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    record["seconds"] = time.time() - started
    return json.loads(json.dumps(record, default=_jsonable))


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def seeded(method_name: str) -> bool:
    """Whether the method has a ``seed`` option (so several seeds make different runs)."""
    from lyapcert.methods import get_method

    fields = {f.name for f in dataclasses.fields(get_method(method_name).Options)}
    return "seed" in fields


def make_cells(
    systems: list[str],
    methods: list[MethodSpec],
    controllers: list[str] | None = None,
    seeds: int = 1,
) -> list[Cell]:
    """The grid: autonomous systems get no controller, controlled ones each of ``controllers``
    (default ``["lqr"]``); methods with a seed option get seeds ``0 .. seeds-1``, others one
    run. Unknown systems and methods are refused here, before anything runs."""
    from lyapcert.methods import get_method

    if seeds < 1:
        raise OptionsError(f"--seeds: expected a number >= 1, got {seeds}")
    for m in methods:
        get_method(m.name)  # raises OptionsError-like errors naming the choices
    controllers = controllers or ["lqr"]
    cells = []
    for name in systems:
        system = resolve_system(name)
        loops = controllers if system.n_inputs else [None]
        for method in methods:
            runs = list(range(seeds)) if seeded(method.name) else [None]
            for controller in loops:
                for seed in runs:
                    cells.append(Cell(name, method, controller, seed))
    return cells
