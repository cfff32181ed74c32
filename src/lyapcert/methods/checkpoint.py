"""Checkpoints and progress of long training runs.

A ``TrainingSession`` wraps a method's epoch loop: it shows a progress bar (epoch, loss, current
certified level, elapsed time), saves the training state atomically every ``every_seconds`` (so a
``kill -9`` loses at most that much), and on Ctrl-C or SIGTERM finishes the current epoch, saves,
and raises ``TrainingInterrupted`` naming the file. ``certify(..., resume=True)`` (``lyapcert
certify ... --resume``) continues from it; a run whose training finished but whose verification
was interrupted resumes straight into verification.

The file is keyed by the system's fingerprint, the method and its options: resuming with other
options is refused (the state would not belong to them).
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lyapcert.errors import OptionsError, TrainingInterrupted
from lyapcert.fileio import atomic_target


def checkpoint_key(system, method: str, options: dict) -> str:
    """SHA-256 of the system's fingerprint, the method name and its options (hex)."""
    payload = json.dumps(
        {"system": system.fingerprint(), "method": method, "options": options},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def training_checkpoint(system, method, options, where=True, resume: bool = False):
    """The ``Checkpoint`` of a run of ``method`` with ``options`` on ``system`` (a closed loop's
    fingerprint covers its controller), or ``None`` for methods that keep none or when ``where``
    is ``False``; ``where`` is a path, or ``True`` for the default path in the cache folder."""
    import dataclasses

    if not getattr(method, "checkpoints", False) or where is False:
        if resume:
            raise OptionsError(
                f"--resume: the {method.name} method keeps no checkpoint"
                + (" (checkpoints are off)" if where is False else " (it trains nothing long)")
                + "; run without --resume"
            )
        return None
    key = checkpoint_key(system, method.name, dataclasses.asdict(options))
    path = Path(where) if isinstance(where, (str, Path)) else default_checkpoint_path(key)
    return Checkpoint(path, key, resume=resume)


def default_checkpoint_path(key: str) -> Path:
    """``<cache dir>/checkpoints/<key[:20]>.pt`` (cache dir: ``$LYAPCERT_CACHE_DIR`` or
    ``~/.cache/lyapcert``)."""
    from lyapcert.simulate.roa import default_cache_dir

    return default_cache_dir() / "checkpoints" / f"{key[:20]}.pt"


@dataclass
class Checkpoint:
    """Where a training run saves its state, and whether it continues from it.

    path: the checkpoint file
    key: ``checkpoint_key(...)`` of the run; a file with another key is not resumed
    resume: continue from ``path`` (an error if there is none)
    every_seconds: time between periodic saves
    """

    path: Path
    key: str
    resume: bool = False
    every_seconds: float = 10.0

    def load(self) -> dict | None:
        """The saved state when resuming, else ``None``. Errors name the file and the fix."""
        if not self.resume:
            return None
        if not self.path.exists():
            raise OptionsError(
                f"--resume: no checkpoint at {self.path} for this system, method and options; "
                "run without --resume to start training"
            )
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file
            raise OptionsError(
                f"--resume: {self.path} is not a readable checkpoint: {exc}"
            ) from None
        if state.get("key") != self.key:
            raise OptionsError(
                f"--resume: {self.path} was saved for another system, method or options"
            )
        return state

    def save(self, state: dict) -> None:
        """Write ``state`` atomically (temporary file, then rename)."""
        with atomic_target(self.path) as tmp:
            torch.save({**state, "key": self.key}, tmp)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class TrainingSession:
    """Progress bar, periodic checkpoints and graceful interruption for one training loop.

    Use as a context manager; call ``tick(step, metrics, state_fn)`` after every epoch (``step``
    counts epochs from 0 over the whole run, ``total`` of them) and ``finish(state)`` at the end.
    ``state_fn()`` returns the state to save (tensors, numbers, lists, state dicts); it is only
    called when a save is due.
    """

    def __init__(
        self,
        method: str,
        total: int,
        checkpoint: Checkpoint | None = None,
        progress: bool = False,
    ):
        self.method = method
        self.total = total
        self.checkpoint = checkpoint
        self.show = progress
        self.metrics: dict[str, float] = {}
        self._stop = False
        self._last_save = time.monotonic()
        self._old_handlers: dict = {}
        self._bar = None
        self._task = None
        self._log = None

    # -- resuming ---------------------------------------------------------------------------
    def restore(self) -> dict | None:
        """The saved state to continue from (``None`` for a fresh run)."""
        return self.checkpoint.load() if self.checkpoint is not None else None

    # -- the loop ---------------------------------------------------------------------------
    def __enter__(self) -> TrainingSession:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._request_stop)
        if self.show and not _terminal():
            from lyapcert.logline import LogLines

            self._log = LogLines(self.method)  # a log: plain lines every 30 s
        elif self.show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.method, total=self.total, metrics="")
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self._bar is not None:
            self._bar.stop()
        if self._log is not None:
            self._log.close()

    def _request_stop(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now, without a checkpoint of this epoch
            raise KeyboardInterrupt
        self._stop = True

    def tick(self, step: int, metrics: dict[str, float], state_fn) -> None:
        """Record the epoch ``step`` (0-based); save when due; stop here if interrupted."""
        self.metrics.update(metrics)
        if self._bar is not None or self._log is not None:
            text = "  ".join(f"{k} {v:.3g}" for k, v in self.metrics.items())
            if self._bar is not None:
                self._bar.update(self._task, completed=step + 1, metrics=text)
            else:
                self._log.update(f"epoch {step + 1:,}/{self.total:,}  {text}".rstrip())
        if self.checkpoint is None:
            if self._stop:
                raise TrainingInterrupted(self.method, None)
            return
        due = time.monotonic() - self._last_save >= self.checkpoint.every_seconds
        if due or self._stop:
            self.checkpoint.save({**state_fn(), "step": step, "done": False})
            self._last_save = time.monotonic()
        if self._stop:
            raise TrainingInterrupted(self.method, self.checkpoint.path)

    def finish(self, state: dict) -> None:
        """Save the trained state (``done``), so that a resumed run goes straight to
        verification."""
        if self.checkpoint is not None:
            self.checkpoint.save({**state, "step": self.total - 1, "done": True})


def _terminal() -> bool:
    from lyapcert.logline import stderr_is_terminal

    return stderr_is_terminal()
