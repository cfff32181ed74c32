"""The start-up check of the PyTorch build, and that installing lyapcert leaves torch alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lyapcert import environment

ROOT = Path(__file__).resolve().parents[1]


def test_a_cuda_build_without_a_gpu_is_warned_about_once(monkeypatch):
    monkeypatch.setattr(environment, "_warned", False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = environment.torch_build_warning()
    assert message and "CUDA 12.8 build" in message and environment.CPU_WHEELS in message
    assert environment.torch_build_warning() is None  # once


@pytest.mark.parametrize(("cuda", "gpu"), [(None, False), ("12.8", True)])
def test_no_warning_for_a_cpu_build_or_with_a_gpu(monkeypatch, cuda, gpu):
    monkeypatch.setattr(environment, "_warned", False)
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert environment.torch_build_warning() is None


@pytest.mark.slow
def test_pip_install_of_the_project_keeps_the_installed_torch(tmp_path):
    """``pip install .`` beside an installed torch resolves to installing lyapcert alone: the
    range in pyproject.toml accepts the build that is there (a CPU build here), so nothing pulls
    another torch (a dry run with pip's JSON report; no build isolation, so no download)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation"]
    cmd += ["--quiet", "--report", str(report), str(ROOT)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert "lyapcert" in names
    assert "torch" not in names, names
