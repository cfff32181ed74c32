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
