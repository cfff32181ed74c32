"""Progress for a log: plain lines on standard error when it is not a terminal.

rich's live displays draw nothing into a file or a pipe until they stop, so a long run written to
a log (``lyapcert certify ... > log 2>&1``) was silent for as long as it ran. ``LogLines`` keeps
the latest status text and a daemon thread prints it as one line every ``every`` seconds
(``LYAPCERT_LOG_EVERY``, default 30), whatever the work is doing (an SDP solve, a verification
inside a training round), and once more when it closes, if it printed at all (short runs stay
quiet)::

    [lyapcert 14:03:21] neural-roa: epoch 1,200/2,400  loss 0.013  level 0.41 (elapsed 95 s)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import ClassVar

DEFAULT_EVERY = 30.0


def log_every() -> float:
    """Seconds between two lines (``LYAPCERT_LOG_EVERY``, default 30; at least 0.05)."""
    try:
        value = float(os.environ.get("LYAPCERT_LOG_EVERY", DEFAULT_EVERY))
    except ValueError:
        value = DEFAULT_EVERY
    return max(0.05, value) if value == value else DEFAULT_EVERY


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (rich's live displays work there)."""
    from rich.console import Console

    return Console(stderr=True).is_terminal


class LogLines:
    """The latest status of ``label``, printed as a plain line every ``every`` seconds.

    Nested ones (a verification inside a training round inside ``certify``) take turns: only the
    innermost open one prints, so an outer one covers the stretches no inner one reports on."""

    _open: ClassVar[list[LogLines]] = []

    def __init__(self, label: str, every: float | None = None, stream=None):
        self.label = label
        self.every = log_every() if every is None else every
        self.stream = stream if stream is not None else sys.stderr
        self.text = ""
        self.lines = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lyapcert-log")
        LogLines._open.append(self)
        self._thread.start()

    def update(self, text: str | Callable[[], str]) -> None:
        """Set the status text (printed at the next beat), or a function that makes it when a
        line is printed (for a status that changes with time, such as a running cell's age)."""
        with self._lock:
            self.text = text

    def line(self) -> str:
        """The line as printed now."""
        with self._lock:
            text = self.text
        if callable(text):
            try:
                text = text()
            except Exception as exc:  # a status must never stop the work it reports on
                text = f"(status unavailable: {type(exc).__name__})"
        stamp = time.strftime("%H:%M:%S")
        elapsed = time.monotonic() - self.started
        body = f"{self.label}: {text}" if text else self.label
        return f"[lyapcert {stamp}] {body} (elapsed {elapsed:.0f} s)"

    def emit(self) -> None:
        """Print the line now."""
        try:
            print(self.line(), file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stream: nothing to report to
            return
        self.lines += 1

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            if LogLines._open and LogLines._open[-1] is self:
                self.emit()

    def close(self, text: str | None = None) -> None:
        """Stop the beat; print the final status if any line was printed."""
        if text is not None:
            self.update(text)
        self._done.set()
        self._thread.join(timeout=1.0)
        if self in LogLines._open:
            LogLines._open.remove(self)
        if self.lines:
            self.emit()


class heartbeat:
    """``with heartbeat(label, enabled):`` a ``LogLines`` for the block when ``enabled`` and
    standard error is not a terminal (nothing otherwise); ``.update(text)`` sets its status."""

    def __init__(self, label: str, enabled: bool = True):
        self.log = LogLines(label) if enabled and not stderr_is_terminal() else None

    def update(self, text: str | Callable[[], str]) -> None:
        if self.log is not None:
            self.log.update(text)

    def __enter__(self) -> heartbeat:
        return self

    def __exit__(self, *exc) -> None:
        if self.log is not None:
            self.log.close()
