"""Reading the report's input: a bench results folder or a certificate folder into a
``ReportInput`` (the comparison's records and table rows, and one ``CertificateItem`` per
certificate to show). No pictures and no HTML here; bad input raises ``ReportError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lyapcert.errors import ReportError


@dataclass
class CertificateItem:
    """One certificate of the report: its folder, a title, an HTML anchor, and the bench cell
    record it came from (``None`` for a single certificate folder)."""

    title: str
    anchor: str
    directory: Path
    cell: dict | None = None


@dataclass
class ReportInput:
    """What a report shows, read from ``root``: ``kind`` is ``"bench"`` or ``"certificate"``."""

    kind: str
    root: Path
    manifest: dict | None = None
    records: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    certificates: list[CertificateItem] = field(default_factory=list)
    certificate: dict | None = None  # the single certificate's record

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") != "done"]


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def report_kind(directory: str | Path) -> str:
    """``"bench"`` (``bench.json`` or ``table.json`` there) or ``"certificate"``
    (``certificate.json``); ``ReportError`` for anything else."""
    root = Path(directory)
    if not root.exists():
        raise ReportError(
            f"{root}: no such folder; expected a bench results folder (`lyapcert bench ... --out "
            "DIR`) or a certificate folder (`lyapcert certify ... --out DIR`)"
        )
    if not root.is_dir():
        raise ReportError(f"{root}: not a folder; give the folder, not a file in it")
    if (root / "bench.json").is_file() or (root / "table.json").is_file():
        return "bench"
    if (root / "certificate.json").is_file():
        return "certificate"
    raise ReportError(
        f"{root}: neither a bench results folder (no bench.json or table.json) nor a certificate "
        "folder (no certificate.json)"
    )


def read_report_input(directory: str | Path) -> ReportInput:
    """Read everything the report shows (no pictures yet); ``ReportError`` on bad input."""
    root = Path(directory)
    kind = report_kind(root)
    if kind == "certificate":
        record = _read_json(root / "certificate.json", "certificate (certificate.json)")
        if not isinstance(record, dict) or record.get("format") != "lyapcert-certificate":
            raise ReportError(
                f"{root / 'certificate.json'}: not a lyapcert certificate (format "
                f"{record.get('format') if isinstance(record, dict) else None!r})"
            )
        title = _certificate_title(record)
        item = CertificateItem(title, "certificate", root)
        return ReportInput("certificate", root, certificate=record, certificates=[item])
    return _read_bench(root)


def _read_bench(root: Path) -> ReportInput:
    manifest = None
    if (root / "bench.json").is_file():
        manifest = _read_json(root / "bench.json", "bench manifest (bench.json)")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("cells", []), list):
            raise ReportError(f"{root / 'bench.json'}: expected an object with a list of cells")
    records = []
    cells_dir = root / "cells"
    if cells_dir.is_dir():
        for path in sorted(cells_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            record = _read_json(path, "cell record")
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise ReportError(f"{path}: expected a cell record (an object with an id)")
            records.append(record)
    if manifest is not None:  # the grid's order, not the file names'
        order = {c.get("id"): k for k, c in enumerate(manifest.get("cells", []))}
        records.sort(key=lambda r: order.get(r["id"], len(order)))
    if (root / "table.json").is_file():
        rows = _read_json(root / "table.json", "table (table.json)")
        where = root / "table.json"
    else:  # interrupted before the table was written: aggregate the stored records
        from lyapcert.bench.aggregate import aggregate

        rows = aggregate(records)
        where = cells_dir
    if not isinstance(rows, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("system"), str)
        and isinstance(r.get("method"), str)
        for r in rows
    ):
        raise ReportError(f"{where}: expected a list of table rows with a system and a method")
    items = []
    for record in records:
        if record.get("status") != "done":
            continue
        directory = _certificate_dir(root, record)
        if directory is not None:
            items.append(
                CertificateItem(cell_title(record), _anchor(record["id"]), directory, record)
            )
    return ReportInput("bench", root, manifest, records, rows, items)


def _certificate_dir(root: Path, record: dict) -> Path | None:
    """The cell's certificate folder: the recorded one, else its place in this results folder
    (the folder may have been moved or copied)."""
    recorded = record.get("certificate_dir")
    candidates = [Path(recorded)] if recorded else []
    candidates.append(root / "cells" / record["id"] / "certificate")
    for path in candidates:
        if (path / "certificate.json").is_file():
            return path
    return None


def _anchor(text: str) -> str:
    return "cert-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def cell_title(record: Mapping) -> str:
    parts = [str(record.get("system")), str(record.get("method_label") or record.get("method"))]
    if record.get("controller"):
        parts.append(f"controller {record['controller']}")
    if record.get("seed") is not None:
        parts.append(f"seed {record['seed']}")
    return ", ".join(parts)


def _certificate_title(record: Mapping) -> str:
    system = record.get("system") or {}
    name = system.get("registry") if isinstance(system, dict) else None
    if name is None and isinstance(system, dict) and isinstance(system.get("spec"), dict):
        name = system["spec"].get("name")
    parts = [str(name or "system"), str(record.get("method") or "certificate")]
    controller = record.get("controller")
    if isinstance(controller, dict) and controller.get("family"):
        parts.append(f"controller {controller['family']}")
    return ", ".join(parts)
