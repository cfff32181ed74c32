"""The comparison table: cell records grouped by (system, method, controller) over seeds.

Each row: runs, verdicts, hole, certified volume and % of the true ROA (mean and standard
deviation over seeds), train and verify seconds (mean), boxes (mean), certificate directories,
and the published anchor (``anchors``). Written as markdown, CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from pathlib import Path

from lyapcert.bench.anchors import anchor_for
from lyapcert.fileio import write_text_atomic

COLUMNS = [
    "system",
    "method",
    "controller",
    "runs",
    "verdict",
    "hole",
    "certified_volume_mean",
    "certified_volume_std",
    "roa_percent_mean",
    "roa_percent_std",
    "train_seconds_mean",
    "verify_seconds_mean",
    "boxes_mean",
    "published",
    "published_kind",
    "certificate_dirs",
    "errors",
]


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(records: list[dict]) -> list[dict]:
    """One row per (system, method label, controller), in first-seen order. A seed that did not
    verify counts as volume 0 and 0 % (the region it certified is empty), so the mean is over all
    runs that finished; failed cells are counted and their errors listed."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["system"], r.get("method_label", r["method"]), r.get("controller"))
        groups.setdefault(key, []).append(r)
    rows = []
    for (system, method, controller), rs in groups.items():
        done = [r for r in rs if r.get("status") == "done"]
        failed = [r for r in rs if r.get("status") != "done"]
        verdicts = Counter(r.get("verdict") for r in done)
        verdicts.update({"failed": len(failed)} if failed else {})
        if len(verdicts) == 1:
            verdict = next(iter(verdicts))
        else:
            verdict = ", ".join(f"{k} {v}/{len(rs)}" for k, v in verdicts.most_common())

        def verified(r):
            return r.get("verdict") == "verified"

        volume = _mean_std(
            [(r.get("certified_volume") or 0.0) if verified(r) else 0.0 for r in done]
            if done
            else []
        )
        percent = _mean_std(
            [100 * (r.get("roa_fraction") or 0.0) if verified(r) else 0.0 for r in done]
            if done and any(r.get("roa_fraction") is not None for r in done)
            else []
        )
        anchor = anchor_for(system, rs[0]["method"])
        holes = sorted({r["hole"] for r in done if r.get("hole")})
        rows.append(
            {
                "system": system,
                "method": method,
                "controller": controller,
                "runs": len(rs),
                "verdict": verdict,
                "hole": "; ".join(holes) if holes else ("none" if done else None),
                "certified_volume_mean": volume[0],
                "certified_volume_std": volume[1],
                "roa_percent_mean": percent[0],
                "roa_percent_std": percent[1],
                "train_seconds_mean": _mean_std([r.get("train_seconds") for r in done])[0],
                "verify_seconds_mean": _mean_std([r.get("verify_seconds") for r in done])[0],
                "boxes_mean": _mean_std([r.get("boxes") for r in done])[0],
                "published": anchor.value if anchor else None,
                "published_kind": anchor.kind if anchor else None,
                "certificate_dirs": [
                    r["certificate_dir"] for r in done if r.get("certificate_dir")
                ],
                "errors": [r["error"] for r in failed if r.get("error")],
            }
        )
    return rows


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _number(value: float, digits: int = 2) -> str:
    """``digits`` decimals, or 3 significant digits for a nonzero value they would show as 0."""
    if value and abs(value) < 0.5 * 10.0**-digits:
        return f"{value:.3g}"
    return f"{value:,.{digits}f}"


def _pm(mean, std, digits: int = 2) -> str:
    if mean is None:
        return "-"
    if std:
        return f"{_number(mean, digits)} ± {_number(std, digits)}"
    return _number(mean, digits)


def _certificates(dirs: list[str], root: Path | None) -> str:
    """The first certificate folder (relative to ``root`` when inside it) and how many more."""
    if not dirs:
        return "-"
    first = Path(dirs[0])
    if root is not None and first.resolve().is_relative_to(Path(root).resolve()):
        first = first.resolve().relative_to(Path(root).resolve())
    return f"`{first}`" + (f" (+{len(dirs) - 1})" if len(dirs) > 1 else "")


def markdown_table(rows: list[dict], root: str | Path | None = None) -> str:
    """The table in markdown; certificate folders relative to ``root`` (the results folder)."""
    head = (
        "| system | method | controller | runs | verdict | hole | certified volume | % of true ROA "
        "| published | train s | verify s | boxes | certificate |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        published = "-"
        if r["published"] is not None:
            published = (
                f"{r['published']:g} %"
                if r["published_kind"] == "percent"
                else f"{r['published']:,.1f}"
            )
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{r['system']}`",
                    r["method"],
                    r["controller"] or "-",
                    str(r["runs"]),
                    r["verdict"],
                    r["hole"] or "-",
                    _pm(r["certified_volume_mean"], r["certified_volume_std"]),
                    _pm(r["roa_percent_mean"], r["roa_percent_std"]),
                    published,
                    _fmt(r["train_seconds_mean"], 1),
                    _fmt(r["verify_seconds_mean"], 1),
                    _fmt(r["boxes_mean"], 0),
                    _certificates(r["certificate_dirs"], root),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {
                k: (";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))
                for k, v in r.items()
            }
        )
    return buf.getvalue()


def write_tables(rows: list[dict], out: str | Path) -> dict[str, Path]:
    """``OUT/table.md``, ``OUT/table.csv``, ``OUT/table.json`` (each written atomically)."""
    out = Path(out)
    paths = {}
    for suffix, text in (
        ("md", markdown_table(rows, out)),
        ("csv", csv_table(rows)),
        ("json", json.dumps(rows, indent=2)),
    ):
        paths[suffix] = write_text_atomic(out / f"table.{suffix}", text)
    return paths
