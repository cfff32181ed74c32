"""Shared test set-up: float64 everywhere, and a private cache folder for the true-ROA cache."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one worker per core: avoid oversubscribing the 2 cores


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LYAPCERT_CACHE_DIR", str(tmp_path_factory.mktemp("lyapcert-cache")))


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _interrupt_training_at(monkeypatch, at_step: int) -> None:
    """Send this process SIGINT (a real Ctrl-C) right after training epoch ``at_step``."""
    import signal
    import time

    from lyapcert.methods.checkpoint import TrainingSession

    original = TrainingSession.tick

    def tick(self, step, metrics, state_fn):
        if step == at_step:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # let the handler run
        return original(self, step, metrics, state_fn)

    monkeypatch.setattr(TrainingSession, "tick", tick)


@pytest.fixture
def interrupt_at():
    """``interrupt_at(monkeypatch, step)``: a Ctrl-C right after that training epoch."""
    return _interrupt_training_at
