"""The thread setting: ``lyapcert --threads N``, ``LYAPCERT_THREADS``, the default of one."""

from __future__ import annotations

import json
import os

import pytest
import torch
from threadpoolctl import threadpool_info
from typer.testing import CliRunner

from lyapcert import threads as thr
from lyapcert.cli import app
from lyapcert.errors import OptionsError

ENV = ("LYAPCERT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Every test here leaves the process as it found it (torch's threads, the environment)."""
    before = torch.get_num_threads()
    saved = {name: os.environ.get(name) for name in ENV}
    monkeypatch.delenv("LYAPCERT_THREADS", raising=False)
    yield
    torch.set_num_threads(before)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=before)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_default_is_one_thread():
    assert thr.DEFAULT_THREADS == 1
    assert thr.requested_threads() == 1


def test_order_option_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("LYAPCERT_THREADS", "3")
    assert thr.requested_threads() == 3
    assert thr.requested_threads(2) == 2  # the option wins
    monkeypatch.setenv("LYAPCERT_THREADS", " ")
    assert thr.requested_threads() == 1  # blank: unset


def test_zero_means_one_per_core(monkeypatch):
    assert thr.requested_threads(0) == thr.cores()
    monkeypatch.setenv("LYAPCERT_THREADS", "0")
    assert thr.requested_threads() == thr.cores()
    assert thr.cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["-1", "two", "1.5"])
def test_bad_values_name_their_source(monkeypatch, bad):
    with pytest.raises(OptionsError, match="--threads"):
        thr.requested_threads(bad)
    monkeypatch.setenv("LYAPCERT_THREADS", bad)
    with pytest.raises(OptionsError, match="LYAPCERT_THREADS"):
        thr.requested_threads()


def test_set_threads_applies_to_torch_blas_and_children():
    assert thr.set_threads(2) == 2
    assert torch.get_num_threads() == 2
    for name in ENV:
        assert os.environ[name] == "2"
    # every BLAS / OpenMP library loaded in the process is limited (numpy's BLAS at least); a
    # limit is a ceiling: a library built single-threaded (or started with one) stays at 1
    libraries = threadpool_info()
    assert libraries, "threadpoolctl sees no BLAS or OpenMP library"
    assert all(lib["num_threads"] <= 2 for lib in libraries), libraries
    assert any(lib["internal_api"] == "openmp" and lib["num_threads"] == 2 for lib in libraries)
    assert thr.set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert all(lib["num_threads"] == 1 for lib in threadpool_info())
    assert thr.requested_threads() == 1  # later calls read the exported setting


def test_cli_global_option_sets_threads(monkeypatch):
    runner = CliRunner()
    res = runner.invoke(app, ["--threads", "2", "methods", "--json"])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 2
    assert os.environ["LYAPCERT_THREADS"] == "2"
    monkeypatch.setenv("LYAPCERT_THREADS", "2")
    res = runner.invoke(app, ["methods", "--json"])  # the environment variable alone
    assert res.exit_code == 0 and torch.get_num_threads() == 2
    monkeypatch.delenv("LYAPCERT_THREADS")
    res = runner.invoke(app, ["methods", "--json"])  # neither: the default
    assert res.exit_code == 0 and torch.get_num_threads() == 1


@pytest.mark.parametrize(
    "args, env, source",
    [(["--threads", "-2"], None, "--threads"), ([], "many", "LYAPCERT_THREADS")],
)
def test_cli_refuses_bad_thread_settings(monkeypatch, args, env, source):
    if env is not None:
        monkeypatch.setenv("LYAPCERT_THREADS", env)
    res = CliRunner().invoke(app, [*args, "systems"])
    assert res.exit_code == 2
    assert source in res.output and "whole number of threads" in res.output
    assert "vanderpol" not in res.output  # nothing ran
    res = CliRunner().invoke(app, [*args, "show", "vanderpol", "--json"])  # --json: JSON too
    assert res.exit_code == 2
    payload = json.loads(res.stdout)
    assert payload["error_type"] == "OptionsError" and source in payload["error"]
    res = CliRunner().invoke(
        app, ["methods", "--json"] if env is None else ["--threads", "1", "methods", "--json"]
    )
    assert res.exit_code == 0  # the error does not stick to the next command


def test_bench_cells_take_the_process_setting(monkeypatch, tmp_path):
    """A local bench without ``--threads`` passes the process's setting to its cells."""
    from lyapcert.bench import runner

    seen = []

    def fake_run_local(todo, store, workers, threads, events, records):
        seen.append(threads)

    monkeypatch.setattr(runner, "_run_local", fake_run_local)
    from lyapcert.bench import MethodSpec, make_cells

    cells = make_cells(["vanderpol"], [MethodSpec.parse("quadratic")], None, 1)
    monkeypatch.setenv("LYAPCERT_THREADS", "2")
    runner.run_bench(cells, tmp_path / "a")
    runner.run_bench(cells, tmp_path / "b", threads=0)
    monkeypatch.delenv("LYAPCERT_THREADS")
    runner.run_bench(cells, tmp_path / "c")
    assert seen == [2, thr.cores(), 1]
    with pytest.raises(OptionsError, match="--threads"):
        runner.run_bench(cells, tmp_path / "d", threads=-1)


def test_libraries_loaded_after_set_threads_are_limited_too():
    """BLAS libraries loaded later (scipy's, cvxpy's) read the exported environment: in a fresh
    process, after ``set_threads(1)``, every thread pool threadpoolctl finds has one thread."""
    import subprocess
    import sys

    code = (
        "import lyapcert; lyapcert.set_threads(1)\n"
        "import scipy.linalg, cvxpy\n"
        "from threadpoolctl import threadpool_info\n"
        "info = threadpool_info()\n"
        "print(len(info), sorted({lib['num_threads'] for lib in info}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    count, values = done.stdout.split(" ", 1)
    assert int(count) >= 2 and values.strip() == "[1]", done.stdout
