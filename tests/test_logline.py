"""Progress for logs: plain lines every few seconds when standard error is not a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

from lyapcert.logline import LogLines, heartbeat, log_every

LINE = re.compile(r"^\[lyapcert \d\d:\d\d:\d\d\] .+ \(elapsed \d+ s\)$")


def test_lines_come_at_the_beat_with_the_latest_status_and_a_final_one():
    stream = io.StringIO()
    log = LogLines("neural-roa", every=0.05, stream=stream)
    log.update("epoch 3/10  loss 0.5")
    deadline = time.monotonic() + 10
    while log.lines < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    log.close("done")
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(LINE.match(line) for line in lines), lines
    assert "neural-roa: epoch 3/10  loss 0.5" in lines[0]
    assert "neural-roa: done" in lines[-1]


def test_a_short_run_prints_nothing():
    stream = io.StringIO()
    LogLines("quick", every=60, stream=stream).close("done")
    assert stream.getvalue() == ""


def test_only_the_innermost_open_one_prints():
    stream = io.StringIO()
    outer = LogLines("certify", every=0.05, stream=stream)
    inner = LogLines("training", every=0.05, stream=stream)
    deadline = time.monotonic() + 10
    while inner.lines < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    inner.close()
    outer.close()
    assert outer.lines == 0
    assert all("training" in line for line in stream.getvalue().splitlines())


def test_heartbeat_is_silent_when_disabled_and_the_beat_reads_the_environment(monkeypatch):
    with heartbeat("x", enabled=False) as beat:
        beat.update("nothing")
    assert beat.log is None
    monkeypatch.setenv("LYAPCERT_LOG_EVERY", "0.2")
    assert log_every() == 0.2
    monkeypatch.setenv("LYAPCERT_LOG_EVERY", "nonsense")
    assert log_every() == 30.0


def test_a_long_command_writes_progress_lines_into_a_log(tmp_path):
    """``lyapcert roa`` with standard error redirected to a file (not a terminal): plain lines,
    every 0.2 s here (``LYAPCERT_LOG_EVERY``), with the simulation's step count."""
    log = tmp_path / "log"
    env = {"LYAPCERT_LOG_EVERY": "0.2", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    env["LYAPCERT_CACHE_DIR"] = str(tmp_path / "cache")
    with log.open("w") as fh:
        subprocess.run(
            [
                *(sys.executable, "-c", "from lyapcert.cli import main; main()", "roa"),
                *("vanderpol", "--resolution", "300", "--no-plot", "--no-cache"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=env,
            check=True,
            timeout=600,
        )
    lines = [x for x in log.read_text().splitlines() if x.startswith("[lyapcert")]
    assert lines, log.read_text()
    assert all(LINE.match(x) for x in lines), lines
    assert any(re.search(r"step [\d,]+/[\d,]+, [\d,]+ undecided", x) for x in lines), lines


def test_bench_progress_writes_plain_lines_into_a_log(monkeypatch):
    import io as _io

    from rich.console import Console

    from lyapcert.bench.progress import BenchProgress

    class _Cell:
        id = "vanderpol-quadratic"

    monkeypatch.setenv("LYAPCERT_LOG_EVERY", "0.05")
    stream = _io.StringIO()
    with BenchProgress(2, console=Console(file=stream, force_terminal=False)) as progress:
        progress.started(_Cell())
        progress.finished(_Cell(), {"status": "done", "verdict": "verified", "level": 2.3})
        time.sleep(0.3)
    lines = [x for x in stream.getvalue().splitlines() if x.startswith("[lyapcert")]
    assert lines and all(LINE.match(x) for x in lines), lines
    assert any("vanderpol-quadratic: verified, level 2.3" in x for x in lines)
    assert "1 done, 0 failed, 1 waiting" in lines[-1]


def test_a_status_function_is_read_when_each_line_is_printed():
    stream = io.StringIO()
    log = LogLines("bench", every=60, stream=stream)
    ages = iter(range(100))
    log.update(lambda: f"running cell ({next(ages)} s)")
    log.emit()
    log.emit()
    log.update(lambda: 1 / 0)  # a failing status prints a note, never raises into the work
    log.emit()
    log.close()
    lines = stream.getvalue().splitlines()
    assert "running cell (0 s)" in lines[0] and "running cell (1 s)" in lines[1]
    assert "status unavailable: ZeroDivisionError" in lines[2]


def test_bench_log_lines_show_running_cells_ageing_and_no_markup(monkeypatch):
    """A running cell's age is its age when the line is printed, not when it started."""
    from rich.console import Console

    from lyapcert.bench.progress import BenchProgress

    class _Cell:
        id = "pendulum-neural-roa"

    class _Other:
        id = "vanderpol-sos"

    clock = [1000.0]
    monkeypatch.setattr("lyapcert.bench.progress.time.time", lambda: clock[0])
    stream = io.StringIO()
    with BenchProgress(3, console=Console(file=stream, force_terminal=False)) as progress:
        progress.log.every = 3600  # lines only when the test asks for them
        progress.started(_Cell())
        progress.started(_Other())
        progress.finished(_Other(), {"status": "failed", "error": "boom"})
        clock[0] += 47
        progress.log.emit()
        clock[0] += 30
        progress.log.emit()
    lines = [x for x in stream.getvalue().splitlines() if x.startswith("[lyapcert")]
    assert "pendulum-neural-roa (47 s)" in lines[0], lines
    assert "pendulum-neural-roa (77 s)" in lines[1], lines
    assert "vanderpol-sos: failed: boom" in lines[0] and "[red]" not in "".join(lines)
