"""A live table of a comparison's cells on stderr: done, running, failed, and the latest results."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class BenchProgress:
    """``started(cell)`` / ``finished(cell, record)`` update a ``rich`` live view (a context
    manager)."""

    def __init__(
        self, total: int, skipped: int = 0, recent: int = 8, console: Console | None = None
    ):
        self.total = total
        self.skipped = skipped
        self.done = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self.latest: list[tuple[str, str]] = []
        self.recent = recent
        self.console = console or Console(file=sys.stderr)
        # On a terminal the view is erased when it stops: the results table and summary that
        # follow on stdout (the same screen) would otherwise run on from its last frame. In a
        # log (stderr not a terminal) nothing is drawn live, so the final view is kept there.
        self.live = Live(
            self._render(),
            console=self.console,
            refresh_per_second=2,
            transient=self.console.is_terminal,
        )

        self.log = None  # in a log: plain lines every 30 s (lyapcert.logline)

    def __enter__(self):
        if not self.console.is_terminal:
            from lyapcert.logline import LogLines

            self.log = LogLines("bench", stream=self.console.file)
            self.log.update(self._summary)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.update(self._render())
        if self.log is not None:
            self.log.close(self._summary())
        return self.live.__exit__(*exc)

    def _summary(self) -> str:
        left = self.total - self.skipped - self.done - self.failed - len(self.running)
        now = time.time()
        cells = list(self.running.items())  # the log's beat thread reads it too
        running = ", ".join(f"{cid} ({now - t:.0f} s)" for cid, t in cells)
        return (
            f"{self.done} done, {self.failed} failed, {left} waiting, {self.skipped} stored "
            f"(of {self.total})" + (f"; running {running}" if running else "")
        )

    def started(self, cell) -> None:
        self.running[cell.id] = time.time()
        self.live.update(self._render())
        if self.log is not None:
            self.log.update(self._summary)

    def finished(self, cell, record: dict) -> None:
        self.running.pop(cell.id, None)
        if record.get("status") == "done":
            self.done += 1
            level = record.get("level")
            pct = record.get("roa_fraction")
            text = record.get("verdict", "?")
            if level is not None:
                text += f", level {level:.4g}"
            if pct is not None:
                text += f", {100 * pct:.1f} % of the true ROA"
        else:
            self.failed += 1
            text = "[red]failed[/red]: " + str(record.get("error", ""))[:80]
        self.latest = [(cell.id, text), *self.latest][: self.recent]
        self.live.update(self._render())
        if self.log is not None:
            plain = Text.from_markup(text).plain
            self.log.update(lambda: f"{cell.id}: {plain}; {self._summary()}")

    def _render(self) -> Table:
        left = self.total - self.skipped - self.done - self.failed - len(self.running)
        table = Table(
            title=f"cells: {self.done} done, {len(self.running)} running, {self.failed} failed, "
            f"{left} waiting, {self.skipped} already stored (of {self.total})",
            title_justify="left",
            show_header=True,
        )
        table.add_column("cell")
        table.add_column("status")
        now = time.time()
        for cid, since in self.running.items():
            table.add_row(cid, f"[yellow]running[/yellow] {now - since:.0f} s")
        for cid, text in self.latest:
            table.add_row(cid, text)
        return table
