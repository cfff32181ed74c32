"""The comparison: a grid of (system, method, controller, seed) cells, run locally or on Ray,
stored one record per cell, aggregated into tables with the published numbers beside ours."""

from lyapcert.bench.aggregate import aggregate, markdown_table, write_tables
from lyapcert.bench.anchors import Anchor, anchor_for
from lyapcert.bench.cells import Cell, MethodSpec, make_cells, run_cell
from lyapcert.bench.runner import BACKENDS, BenchRun, run_bench
from lyapcert.bench.store import ResultStore

__all__ = [
    "BACKENDS",
    "Anchor",
    "BenchRun",
    "Cell",
    "MethodSpec",
    "ResultStore",
    "aggregate",
    "anchor_for",
    "make_cells",
    "markdown_table",
    "run_bench",
    "run_cell",
    "write_tables",
]
