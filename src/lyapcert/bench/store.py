"""The results store of a comparison: ``OUT/cells/<cell id>.json``, one record per finished cell.

Each record is written atomically (a temporary file in the same folder, flushed and fsynced,
then ``os.replace``), so a crash or ``kill -9`` leaves either the whole record or none; a rerun
skips the cells whose record exists and loses none. A cell's certificate and checkpoint live in
``OUT/cells/<cell id>/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lyapcert.errors import CertificateFileError
from lyapcert.fileio import write_text_atomic


class ResultStore:
    """Records of one comparison under ``root`` (created on first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def cell_dir(self, cell_id: str) -> Path:
        return self.cells_dir / cell_id

    def record_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def has(self, cell_id: str) -> bool:
        return self.record_path(cell_id).exists()

    def write(self, record: dict) -> Path:
        """Store ``record`` (it must have an ``id``) atomically; returns its path."""
        return write_text_atomic(self.record_path(record["id"]), json.dumps(record, indent=2))

    def records(self) -> list[dict]:
        """All finished records, in file-name order (temporary files are ignored)."""
        if not self.cells_dir.is_dir():
            return []
        out = []
        for path in sorted(self.cells_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise CertificateFileError(
                    f"{path}: not a readable cell record ({exc}); delete it to rerun that cell"
                ) from None
        return out
