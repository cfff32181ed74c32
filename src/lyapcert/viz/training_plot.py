"""Training curves of a method: losses, the level and the ROA share per epoch, round or iteration.

The history is the list of records a method keeps (``fit.info["history"]``, saved by ``certify``
in ``certificate.json``). Records differ by method (``neural-roa``: ``epoch, loss, decrease,
coverage, ...`` and ``epoch, verified, level, roa_share``; ``neural-lyapunov``: ``round, epoch,
loss, ...`` and ``round, counterexamples``; ``neural-zubov``: ``epoch, loss, data, pde``; ``sos``:
``iteration, gamma, mean_v``); each numeric key gets a curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lyapcert.errors import PlotError
from lyapcert.viz.certificate_plot import FIGURE_SUFFIXES, check_output, save_figure

STEP_KEYS = ("epoch", "iteration", "round")
SKIPPED_KEYS = ("verified", "verify_seconds", "stopped")  # not curves
LOSS_HINTS = ("loss", "decrease", "coverage", "exclusion", "faces", "local", "shape", "data", "pde")


def training_history(record_or_history) -> list[dict]:
    """The history records of a certificate record (``certificate.json`` as a dict), a
    ``Certificate``, a ``CertifyResult`` or a list of records; ``[]`` when there is none."""
    if isinstance(record_or_history, Sequence) and not isinstance(record_or_history, str):
        history = list(record_or_history)
    elif isinstance(record_or_history, Mapping):
        history = record_or_history.get("history") or []
    elif hasattr(record_or_history, "record"):  # Certificate
        history = record_or_history.record.get("history") or []
    elif hasattr(record_or_history, "info"):  # CertifyResult
        history = record_or_history.info.get("history") or []
    else:
        raise PlotError(
            "record_or_history: expected a certificate record, a Certificate, a CertifyResult or "
            f"a list of history records, got {type(record_or_history).__name__}"
        )
    if not all(isinstance(r, Mapping) for r in history):
        raise PlotError("history: expected a list of records (dicts)")
    return [dict(r) for r in history]


def _epochs_per_round(record_or_history) -> int | None:
    options = None
    if isinstance(record_or_history, Mapping):
        options = record_or_history.get("options")
    elif hasattr(record_or_history, "record"):
        options = record_or_history.record.get("options")
    epochs = options.get("epochs") if isinstance(options, Mapping) else None
    return epochs if isinstance(epochs, int) and epochs > 0 else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _record_step(r: dict, index: int, name: str, epochs_per_round: int | None) -> float | None:
    """A record's step on the x axis (``history_curves``)."""
    if "epoch" in r and "round" in r and epochs_per_round:
        step = r["round"] * epochs_per_round + r["epoch"]
    elif "epoch" in r:
        step = r["epoch"]
    elif "round" in r and name == "epoch" and epochs_per_round:
        step = (r["round"] + 1) * epochs_per_round - 1  # a round's summary: at its end
    else:
        step = next((r[k] for k in STEP_KEYS if k in r), index)
    return _number(step)


def history_curves(history: list[dict], epochs_per_round: int | None = None):
    """``(step name, {key: ([steps], [values])})``: one curve per numeric key of the records.

    The step is the record's ``epoch`` (plus ``round x epochs_per_round`` when both are there and
    the epochs per round are known), else its ``iteration``, else its ``round``, else its index.
    The ``level`` curve holds verified levels only: a round whose verification failed (``verified``
    false) may still carry the level its search reached, which certifies nothing.
    """
    name = next((k for k in STEP_KEYS if any(k in r for r in history)), "record")
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for index, r in enumerate(history):
        step = _record_step(r, index, name, epochs_per_round)
        if step is None:
            continue
        for key, value in r.items():
            if key in STEP_KEYS or key in SKIPPED_KEYS:
                continue
            if key == "level" and r.get("verified") is False:
                continue
            number = _number(value)
            if number is None:
                continue
            xs, ys = curves.setdefault(key, ([], []))
            xs.append(step)
            ys.append(100 * number if key == "roa_share" else number)
    return name, curves


def plot_training(record_or_history, path: str | Path, title: str | None = None) -> Path | None:
    """Save the training curves to ``path`` (PNG, PDF or SVG); returns the path, or ``None`` (and
    writes nothing) when there is no history (``quadratic`` trains nothing; certificates saved
    before histories were kept have none). The figure is ``training_figure``'s.
    """
    path = check_output(path, FIGURE_SUFFIXES, "path")
    fig = training_figure(record_or_history, title)
    return None if fig is None else save_figure(fig, path)


def training_figure(record_or_history, title: str | None = None):
    """The training curves as a matplotlib figure, or ``None`` when there is no history.

    Panels: the losses (log scale), then one panel per other quantity (``level``, ``roa_share``
    in %, ``counterexamples``, ``mean_v``, ...). Verification rounds that were not verified (and
    have no verified level at the same step) are drawn as hollow markers at 0 on the level panel.
    A quantity recorded once in a history of several steps (``sos``'s ``gamma``, the level of
    the starting quadratic, found before the iterations) is written in a note, not drawn as a
    one-point panel.
    """
    history = training_history(record_or_history)
    epochs_per_round = _epochs_per_round(record_or_history)
    name, curves = history_curves(history, epochs_per_round)
    if not curves:
        return None
    steps = {x for xs, _ in curves.values() for x in xs}
    first = ("level", "roa_share", "closed_loop_roa")
    once = {
        k: (xs[0], ys[0])
        for k, (xs, ys) in curves.items()
        if len(xs) == 1 and len(steps) > 1 and k not in first
    }
    losses = [k for k in curves if any(h in k for h in LOSS_HINTS) and k not in once]
    others = [k for k in first if k in curves and k not in losses]
    others += [k for k in curves if k not in losses and k not in first and k not in once]
    panels = ([losses] if losses else []) + [[k] for k in others]
    if not panels:  # every quantity recorded once: one panel of points
        panels, once = [list(curves)], {}
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7.5, 2.4 * len(panels) + 0.6), sharex=True, squeeze=False
    )
    for ax, keys in zip(axes[:, 0], panels):
        for key in keys:
            xs, ys = curves[key]
            style = {"lw": 1.6} if key == "loss" else {"lw": 1.0, "alpha": 0.8}
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key, **style)
        if keys is losses:
            values = [y for k in keys for y in curves[k][1]]
            if values and min(values) >= 0 and max(values) > 0:
                ax.set_yscale("symlog", linthresh=max(1e-6, min(v for v in values if v > 0)))
            ax.set_ylabel("loss terms")
            ax.legend(fontsize=7, ncol=3, loc="upper right")
        else:
            key = keys[0]
            ax.set_ylabel("ROA share (%)" if key == "roa_share" else key)
            if key == "level":
                _mark_unverified(ax, history, curves, name, epochs_per_round)
        ax.grid(alpha=0.3)
    if once:
        note = "; ".join(f"{k} = {y:.4g} ({name} {x:g})" for k, (x, y) in once.items())
        axes[0, 0].set_title(note, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel(name)
    method = record_or_history.get("method") if isinstance(record_or_history, Mapping) else None
    if method is None and hasattr(record_or_history, "record"):
        method = record_or_history.record.get("method")
    fig.suptitle(title or f"training history{f' ({method})' if method else ''}", fontsize=10)
    fig.tight_layout()
    return fig


def _mark_unverified(ax, history, curves, name, epochs_per_round=None) -> None:
    """Hollow red markers at 0 for the steps whose verification round was not verified, except
    steps that also have a verified level (a round verified again at the same step, e.g. after a
    resume)."""
    verified = set(curves.get("level", ([], []))[0])
    steps = [
        _record_step(r, i, name, epochs_per_round)
        for i, r in enumerate(history)
        if r.get("verified") is False
    ]
    steps = sorted({s for s in steps if s is not None and s not in verified})
    if steps:
        ax.plot(steps, [0.0] * len(steps), "o", mfc="none", mec="tab:red", label="not verified")
        ax.legend(fontsize=7, loc="upper left")
