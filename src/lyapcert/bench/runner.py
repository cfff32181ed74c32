"""Run the cells of a comparison on a backend and store each record as it finishes.

``local``: a pool of ``workers`` processes on this machine (each cell in a worker process, so a
crash of one cell is recorded as its failure and the others go on). ``ray``: each cell is a Ray
task on the cluster at ``address`` (``None``: a local Ray instance); the worker sends back its
record and the files of its certificate, which the driver writes into the store, so the results
land on the driver's disk whichever node ran the cell.

Cells whose record is already stored are skipped: a rerun after a crash, ``kill -9`` or Ctrl-C
continues where the last one stopped (an interrupted training cell resumes from its checkpoint
on the local backend).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lyapcert.bench.aggregate import aggregate, write_tables
from lyapcert.bench.cells import Cell, run_cell
from lyapcert.bench.store import ResultStore
from lyapcert.errors import OptionsError, TrainingInterrupted
from lyapcert.fileio import write_text_atomic
from lyapcert.threads import requested_threads

BACKENDS = ("local", "ray")


@dataclass
class BenchRun:
    """What a run did: the table rows, this run's records, counts, and the table files."""

    rows: list[dict]
    records: list[dict]
    ran: int
    failed: int
    skipped: int
    tables: dict[str, Path] = field(default_factory=dict)
    out: Path | None = None


class _Events:
    """Progress callbacks (no-ops unless a display is attached)."""

    def __init__(self, display=None):
        self.display = display

    def start(self, cell: Cell) -> None:
        if self.display:
            self.display.started(cell)

    def finish(self, cell: Cell, record: dict) -> None:
        if self.display:
            self.display.finished(cell, record)


def run_bench(
    cells: list[Cell],
    out: str | Path,
    backend: str = "local",
    address: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = False,
) -> BenchRun:
    """Run every cell without a stored record, then write ``OUT/table.{md,csv,json}`` over all
    of ``cells``. ``threads``: CPU threads per cell (default on the local backend:
    ``lyapcert.threads.requested_threads()``, that is ``$LYAPCERT_THREADS`` or 1; on Ray 1, where
    each task holds one CPU)."""
    if backend not in BACKENDS:
        raise OptionsError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers < 1:
        raise OptionsError(f"--workers: expected a number >= 1, got {workers}")
    if address is not None and backend != "ray":
        raise OptionsError("--address is for --backend ray (the Ray cluster to connect to)")
    store = ResultStore(out)
    store.root.mkdir(parents=True, exist_ok=True)
    _write_manifest(store, cells, backend, address)
    todo = [c for c in cells if not store.has(c.id)]
    skipped = len(cells) - len(todo)
    # a Ray task holds one CPU; local cells take the process's setting (0: one per core)
    threads = 1 if backend == "ray" and threads is None else requested_threads(threads)
    display = None
    if progress:
        from lyapcert.bench.progress import BenchProgress

        display = BenchProgress(len(cells), skipped)
    events = _Events(display)
    records: list[dict] = []
    try:
        if display:
            display.__enter__()
        if todo:
            if backend == "local":
                _run_local(todo, store, workers, threads, events, records)
            else:
                _run_ray(todo, store, address, threads, events, records)
    finally:
        if display:
            display.__exit__(None, None, None)
    ids = {c.id for c in cells}
    all_records = [r for r in store.records() if r.get("id") in ids]
    order = {c.id: i for i, c in enumerate(cells)}
    all_records.sort(key=lambda r: order[r["id"]])
    rows = aggregate(all_records)
    tables = write_tables(rows, store.root)
    return BenchRun(
        rows=rows,
        records=records,
        ran=len(records),
        failed=sum(r.get("status") != "done" for r in records),
        skipped=skipped,
        tables=tables,
        out=store.root,
    )


def _write_manifest(store: ResultStore, cells: list[Cell], backend: str, address) -> None:
    payload = {
        "format": "lyapcert-bench",
        "version": 1,
        "backend": backend,
        "address": address,
        "cells": [{"id": c.id, **c.describe()} for c in cells],
    }
    write_text_atomic(store.root / "bench.json", json.dumps(payload, indent=2, default=str))


def _failure(cell: Cell, message: str) -> dict:
    return {
        "id": cell.id,
        **cell.describe(),
        "status": "failed",
        "error": message,
        "traceback": "",
        "finished": time.time(),
    }


# ------------------------------------------------------------------------------ local processes


def _run_local(todo, store, workers, threads, events, records) -> None:
    """Cells in a pool of ``workers`` spawned processes; a pool broken by a dying worker is
    replaced, the dead cell recorded as failed and the others requeued."""
    ctx = multiprocessing.get_context("spawn")
    queue = list(todo)
    crashes: dict[str, int] = {}
    while queue:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            running: dict[cf.Future, Cell] = {}
            broken = False
            while (queue or running) and not broken:
                while queue and len(running) < workers:
                    cell = queue.pop(0)
                    events.start(cell)
                    fut = pool.submit(run_cell, cell, str(store.cell_dir(cell.id)), threads)
                    running[fut] = cell
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    cell = running.pop(fut)
                    try:
                        record = fut.result()
                    except TrainingInterrupted:
                        raise  # Ctrl-C: stop; the stored records stay, a rerun continues
                    except cf.process.BrokenProcessPool:
                        # every cell running in a broken pool sees this; which one crashed is
                        # unknown, so each is retried once in a fresh pool before it counts
                        broken = True
                        crashes[cell.id] = crashes.get(cell.id, 0) + 1
                        if crashes[cell.id] < 2 and workers > 1:
                            queue.insert(0, cell)
                            continue
                        record = _failure(cell, "the worker process died (crash or killed)")
                    except Exception as exc:  # pickling and similar: the cell's failure
                        record = _failure(cell, f"{type(exc).__name__}: {exc}")
                    store.write(record)
                    records.append(record)
                    events.finish(cell, record)
            # a broken pool: the cells that were still running go back to the queue
            queue = list(running.values()) + queue


# ------------------------------------------------------------------------------ Ray tasks


def _ray_cell(cell: Cell, threads: int) -> tuple[dict, dict[str, bytes]]:
    """On a Ray worker: run the cell in a temporary folder; return the record and its files."""
    with tempfile.TemporaryDirectory(prefix="lyapcert-cell-") as tmp:
        record = run_cell(cell, tmp, threads)
        files = {}
        for path in Path(tmp).rglob("*"):
            if path.is_file() and path.name != "checkpoint.pt":
                files[str(path.relative_to(tmp))] = path.read_bytes()
        if record.get("certificate_dir"):
            record["certificate_dir"] = str(Path(record["certificate_dir"]).relative_to(tmp))
    return record, files


def _run_ray(todo, store, address, threads, events, records) -> None:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        raise OptionsError("--backend ray needs the ray package (pip install 'ray>=2.9')") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
        refs = {}
        for cell in todo:
            events.start(cell)
            refs[task.remote(cell, threads)] = cell
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                cell = refs.pop(ref)
                try:
                    record, files = ray.get(ref)
                    cell_dir = store.cell_dir(cell.id)
                    for rel, data in files.items():
                        target = cell_dir / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                    if record.get("certificate_dir"):
                        record["certificate_dir"] = str(cell_dir / record["certificate_dir"])
                except Exception as exc:  # a task that died: its failure, not the run's
                    record = _failure(cell, f"ray task failed: {type(exc).__name__}: {exc}")
                store.write(record)
                records.append(record)
                events.finish(cell, record)
    finally:
        if started_here:
            ray.shutdown()
