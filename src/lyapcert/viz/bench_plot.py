"""The comparison as a picture: % of the true ROA per system (groups) and method (bars)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from lyapcert.errors import PlotError
from lyapcert.viz.certificate_plot import FIGURE_SUFFIXES, check_output, save_figure

EMPTY_HEIGHT = 6.0  # % : the height of the hatched bar of a missing or failed cell
FAILED_VERDICTS = ("failed", "error")


def _fraction(row: Mapping, key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlotError(f"{where}.{key}: expected a number in [0, 1] or None, got {value!r}")
    if key == "roa_fraction_mean" and not -1e-9 <= value <= 1 + 1e-9:
        raise PlotError(f"{where}.{key}: expected a share in [0, 1], got {value!r}")
    return float(value)


def bench_cells(rows: Sequence[Mapping]):
    """``(groups, methods, cells)``: the systems (with their controller) and methods in order of
    first appearance, and ``cells[(group, method)] = (mean %, std %, status)`` where ``status``
    is ``"ok"``, ``"failed"`` or ``"not verified"``."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise PlotError(f"rows: expected a list of dicts, got {type(rows).__name__}")
    groups: list[str] = []
    methods: list[str] = []
    cells: dict[tuple[str, str], tuple[float, float, str]] = {}
    for k, row in enumerate(rows):
        where = f"rows[{k}]"
        if not isinstance(row, Mapping):
            raise PlotError(f"{where}: expected a dict, got {type(row).__name__}")
        for key in ("system", "method"):
            if not isinstance(row.get(key), str) or not row.get(key):
                raise PlotError(f"{where}.{key}: expected a name, got {row.get(key)!r}")
        controller = row.get("controller")
        group = row["system"] + (f"\n({controller})" if controller else "")
        method = row["method"]
        if (group, method) in cells:
            raise PlotError(
                f"{where}: a second row for system {row['system']!r}, controller {controller!r}, "
                f"method {method!r}; give one row per cell (mean and spread over seeds)"
            )
        mean = _fraction(row, "roa_fraction_mean", where)
        std = _fraction(row, "roa_fraction_std", where)
        verdict = str(row.get("verdict") or "").lower()
        if verdict in FAILED_VERDICTS:
            status = "failed"
        elif mean is None or verdict not in ("verified", ""):
            status = "not verified"
        else:
            status = "ok"
        cells[(group, method)] = (100 * (mean or 0.0), 100 * (std or 0.0), status)
        if group not in groups:
            groups.append(group)
        if method not in methods:
            methods.append(method)
    if not cells:
        raise PlotError("rows: empty; nothing to plot")
    return groups, methods, cells


def plot_bench(rows: Sequence[Mapping], path: str | Path, title: str | None = None) -> Path:
    """Save a grouped bar chart of the certified share of the true ROA to ``path``.

    ``rows``: dicts with ``system``, ``method``, ``controller`` (or None), ``roa_fraction_mean``
    (0..1 or None), ``roa_fraction_std`` (or None) and ``verdict``. One group per system and
    controller, one bar per method, error bars from the spread over seeds; a cell without a row,
    a failed run (verdict ``failed``/``error``) or one without a verified share is a hatched empty
    bar labelled ``failed`` or ``not verified``.
    """
    path = check_output(path, FIGURE_SUFFIXES, "path")
    groups, methods, cells = bench_cells(rows)
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 + len(groups) * (0.5 + 0.32 * len(methods))), 4.6))
    centres = np.arange(len(groups))
    for m, method in enumerate(methods):
        colour = colours[m % len(colours)]
        xs = centres - 0.4 + width * (m + 0.5)
        for x, group in zip(xs, groups):
            mean, std, status = cells.get((group, method), (0.0, 0.0, "failed"))
            if (group, method) not in cells:
                status = "no run"
            if status == "ok":
                ax.bar(x, mean, width, color=colour, edgecolor="black", lw=0.5)
                if std > 0:
                    ax.errorbar(x, mean, yerr=std, color="black", capsize=2.5, lw=0.9)
                ax.text(x, mean + std + 1.2, f"{mean:.0f}", ha="center", va="bottom", fontsize=6)
            else:
                ax.bar(x, EMPTY_HEIGHT, width, fill=False, hatch="///", edgecolor=colour, lw=0.8)
                ax.text(
                    x,
                    EMPTY_HEIGHT + 1.5,
                    status,
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=6,
                    color="0.3",
                )
    ax.set_xticks(centres, groups, fontsize=8)
    ax.set_ylabel("certified share of the true ROA (%)")
    ax.set_ylim(0, 112)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Patch(color=colours[m % len(colours)], label=method) for m, method in enumerate(methods)
    ]
    handles.append(Patch(fill=False, hatch="///", edgecolor="0.4", label="failed / not verified"))
    ax.legend(handles=handles, fontsize=7, ncol=min(len(handles), 4), loc="upper right")
    ax.set_title(
        title or "certified region as a share of the true ROA (mean +- std over seeds)", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path)


def is_bench_folder(directory: str | Path) -> bool:
    """Whether ``directory`` holds a bench's results (``bench.json`` or ``table.json``)."""
    root = Path(directory)
    return (root / "bench.json").is_file() or (root / "table.json").is_file()


def plot_bench_folder(directory: str | Path, path: str | Path | None = None) -> Path:
    """``plot_bench`` of the finished cells of a bench results folder (``lyapcert bench ... --out
    DIR``) to ``path`` (default ``DIR/bench.png``); ``PlotError`` when no cell has finished."""
    from lyapcert.viz.report_figures import bench_plot_rows
    from lyapcert.viz.report_input import read_report_input

    directory = Path(directory)
    target = check_output(
        directory / "bench.png" if path is None else path, FIGURE_SUFFIXES, "path"
    )
    rows = read_report_input(directory).rows
    if not rows:
        raise PlotError(f"{directory}: the bench has no finished cells yet; nothing to plot")
    return plot_bench(bench_plot_rows(rows), target)
