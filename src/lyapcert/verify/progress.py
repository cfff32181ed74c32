"""A live line on standard error for long branch-and-bound searches (rich; plain lines every
30 s in a log, ``lyapcert.logline``)."""

from __future__ import annotations

import math
import time


class SearchProgress:
    """Shows the current bounds of the searched level and the boxes processed."""

    _current: SearchProgress | None = None

    def __init__(self, label: str):
        from rich.console import Console
        from rich.live import Live

        from lyapcert.logline import LogLines, stderr_is_terminal

        self.label = label
        self.started = time.perf_counter()
        self.live = self.log = None
        if not stderr_is_terminal():  # a log: plain lines every 30 s
            self.log = LogLines(f"verify ({label})")
            return
        self.live = Live("", console=Console(stderr=True), transient=True, refresh_per_second=4)
        self.live.start()

    @classmethod
    def shared(cls, label: str) -> SearchProgress:
        if cls._current is not None:
            cls._current.close()
        cls._current = cls(label)
        return cls._current

    def __call__(self, lower: float, upper: float, boxes: int) -> None:
        up = f"{upper:.6g}" if math.isfinite(upper) else "-"
        if self.log is not None:
            self.log.update(f"level in [{lower:.6g}, {up}], {boxes:,} boxes")
            return
        self.live.update(
            f"[bold]{self.label}[/]: level in [{lower:.6g}, {up}]  {boxes:,} boxes  "
            f"{time.perf_counter() - self.started:.1f} s"
        )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        else:
            self.live.stop()
        SearchProgress._current = None

    @classmethod
    def close_all(cls) -> None:
        if cls._current is not None:
            cls._current.close()
