"""Training runs: the neural-roa method, checkpoints on Ctrl-C / SIGTERM / kill -9, --resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lyapcert
from lyapcert.errors import OptionsError, TrainingInterrupted
from lyapcert.methods.checkpoint import TrainingSession
from lyapcert.methods.neural_roa import NeuralROAOptions
from lyapcert.systems import get_system
from lyapcert.verify import VerifyOptions, recheck

SMALL_ROA = dict(epochs=150, rounds=2, samples=2048, adversarial_points=512, verify_seconds=10.0)


def test_neural_roa_on_damped_sho(tmp_path):
    res = lyapcert.certify(get_system("damped_sho"), "neural-roa", **SMALL_ROA, out=tmp_path / "c")
    assert res.verified and res.result.hole is None
    _, again = recheck(tmp_path / "c")
    assert again.verified and again.level == res.result.level
    levels = [h for h in res.info["history"] if "level" in h]
    assert len(levels) == 2  # the certified level was measured after every round


def test_neural_roa_on_cubic_1d_covers_most_of_the_true_roa(tmp_path):
    res = lyapcert.certify(
        get_system("cubic_1d"),
        "neural-roa",
        **{**SMALL_ROA, "samples": 2001},
        out=tmp_path / "c",
        roa=True,
    )
    assert res.verified
    assert res.roa_fraction >= 0.9
    # the certified interval lies inside the true ROA (-1, 1)
    cand = lyapcert.load(tmp_path / "c").candidate
    lo, hi = get_system("cubic_1d").domain.as_tensors()
    x = torch.linspace(float(lo[0]), float(hi[0]), 20001, dtype=torch.float64).reshape(-1, 1)
    x = x[x[:, 0].abs() >= 1.0]
    with torch.no_grad():
        assert bool((cand.value(x) > res.result.level).all())


def test_neural_roa_options_are_checked():
    with pytest.raises(ValueError, match="refresh"):
        NeuralROAOptions(refresh=1.5)
    with pytest.raises(ValueError, match="rounds"):
        NeuralROAOptions(rounds=0)


def test_progress_shows_epoch_loss_and_level(capfd, monkeypatch):
    import lyapcert.methods.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "_terminal", lambda: True)  # the live bar
    with TrainingSession("demo", total=3, progress=True) as session:
        for step in range(3):
            session.tick(step, {"loss": 0.5 / (step + 1), "level": 0.25 * step}, dict)
    err = capfd.readouterr().err
    assert "demo" in err and "3/3" in err and "loss 0.167" in err and "level 0.5" in err


def test_progress_in_a_log_is_plain_lines(capfd, monkeypatch):
    """Standard error not a terminal: one plain line per beat (here 0.05 s), and a last one."""
    import time

    monkeypatch.setenv("LYAPCERT_LOG_EVERY", "0.05")
    with TrainingSession("demo", total=3, progress=True) as session:
        for step in range(3):
            session.tick(step, {"loss": 0.5 / (step + 1), "level": 0.25 * step}, dict)
        time.sleep(0.3)
    lines = capfd.readouterr().err.splitlines()
    assert lines and all(x.startswith("[lyapcert ") for x in lines)
    assert "demo: epoch 3/3  loss 0.167  level 0.5" in lines[-1]


@pytest.mark.parametrize(
    "method, options",
    [
        ("neural-lyapunov", dict(epochs=120, rounds=2, samples=1024)),
        ("neural-zubov", dict(epochs=200, samples=1024)),
        ("neural-roa", dict(SMALL_ROA, epochs=60, samples=1024)),
    ],
)
def test_ctrl_c_leaves_a_checkpoint_and_resume_gives_the_same_network(
    interrupt_at, method, options, tmp_path, monkeypatch
):
    system = get_system("cubic_1d")
    path = tmp_path / "run.pt"
    straight = lyapcert.certify(system, method, checkpoint=path, roa=False, **options)
    assert not path.exists()  # removed once the certificate is verified

    with monkeypatch.context() as m:
        interrupt_at(m, 70)
        with pytest.raises(TrainingInterrupted, match="--resume") as info:
            lyapcert.certify(system, method, checkpoint=path, roa=False, **options)
    assert info.value.checkpoint == path and path.exists()
    assert torch.load(path, weights_only=True)["step"] == 70

    resumed = lyapcert.certify(system, method, checkpoint=path, resume=True, roa=False, **options)
    a = straight.result
    b = resumed.result
    assert b.verified == a.verified and b.level == pytest.approx(a.level, rel=1e-9)
    assert not path.exists()


def test_resume_without_a_checkpoint_or_with_other_options_is_refused(
    interrupt_at, tmp_path, monkeypatch
):
    system = get_system("cubic_1d")
    path = tmp_path / "run.pt"
    with pytest.raises(OptionsError, match="no checkpoint"):
        lyapcert.certify(system, "neural-lyapunov", checkpoint=path, resume=True, epochs=10)
    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        with pytest.raises(TrainingInterrupted):
            lyapcert.certify(system, "neural-lyapunov", checkpoint=path, epochs=10, samples=200)
    with pytest.raises(OptionsError, match="another system, method or options"):
        lyapcert.certify(
            system, "neural-lyapunov", checkpoint=path, resume=True, epochs=11, samples=200
        )
    with pytest.raises(OptionsError, match="keeps no checkpoint"):
        lyapcert.certify(system, "quadratic", resume=True)


@pytest.mark.slow
def test_sigterm_and_kill_9_leave_a_usable_checkpoint(tmp_path):
    """The command line: SIGTERM -> exit 130 with a checkpoint; kill -9 -> the last periodic save
    is intact (written atomically) and --resume accepts it."""
    path = tmp_path / "run.pt"
    cmd = [
        sys.executable,
        "-m",
        "lyapcert.cli",
        "certify",
        "cubic_1d",
        "--method",
        "neural-lyapunov",
        "-o",
        "epochs=1000000",
        "-o",
        "samples=500",
        "--checkpoint",
        str(path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def wait_for_checkpoint(proc):
        deadline = time.time() + 120
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no periodic checkpoint within 120 s"
            time.sleep(0.5)

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    first = torch.load(path, weights_only=True)["step"]

    proc = subprocess.Popen(
        [*cmd, "--resume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    mtime = path.stat().st_mtime
    deadline = time.time() + 120
    while path.stat().st_mtime == mtime:  # the resumed run saves again
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.5)
    proc.kill()  # kill -9: no handler runs
    proc.communicate(timeout=60)
    state = torch.load(path, weights_only=True)
    assert state["step"] > first and not state["done"]


def test_box_units_scale_the_network_on_a_wide_box_and_survive_the_certificate_file(tmp_path):
    """scale_inputs=auto: inputs in half-widths on inverted_pendulum-wide (±(20, 100)), raw on
    vanderpol; the scaled network is saved, rebuilt and re-verified at the same level."""
    from lyapcert.methods.neural_roa import NeuralROAOptions
    from lyapcert.methods.training import uses_box_units
    from lyapcert.verify import recheck

    wide = lyapcert.get_system("inverted_pendulum-wide")
    assert uses_box_units(wide, NeuralROAOptions())
    assert not uses_box_units(lyapcert.get_system("vanderpol"), NeuralROAOptions())
    assert uses_box_units(lyapcert.get_system("vanderpol"), NeuralROAOptions(scale_inputs="on"))
    with pytest.raises(ValueError, match="scale_inputs"):
        NeuralROAOptions(scale_inputs="yes")
    res = lyapcert.certify(
        wide,
        "neural-roa",
        controller="lqr",
        epochs=60,
        rounds=1,
        samples=1024,
        adversarial_points=256,
        verify_seconds=0,
        checkpoint=False,
        roa=False,
        out=tmp_path / "c",
    )
    assert res.verified and res.result.hole is None
    cert, again = recheck(tmp_path / "c")
    assert cert.candidate.module.scaled
    assert cert.candidate.module.spec()["input_scale"] == [20.0, 100.0]
    assert again.verified and again.level == res.result.level


def test_a_run_that_does_not_verify_keeps_its_trained_network(tmp_path, monkeypatch):
    system = get_system("cubic_1d")
    path = tmp_path / "run.pt"
    options = dict(epochs=120, rounds=2, samples=1024)
    first = lyapcert.certify(
        system,
        "neural-lyapunov",
        checkpoint=path,
        roa=False,
        verify_options=VerifyOptions(max_boxes=1),  # too few boxes to prove a level
        **options,
    )
    assert not first.verified and first.checkpoint == str(path) and path.exists()
    assert first.to_dict()["checkpoint"] == str(path)

    def no_training(self, step, metrics, state_fn):
        raise AssertionError(f"epoch {step} trained again")

    monkeypatch.setattr(TrainingSession, "tick", no_training)
    again = lyapcert.certify(
        system, "neural-lyapunov", checkpoint=path, resume=True, roa=False, **options
    )
    assert again.verified and again.checkpoint is None and not path.exists()


def test_the_cli_names_the_kept_network_and_resume_verifies_it(tmp_path, monkeypatch):
    import dataclasses
    import importlib

    from typer.testing import CliRunner

    from lyapcert.cli import app

    certify_module = importlib.import_module("lyapcert.certify")  # the module, not the function

    real = certify_module.verify_candidate

    def one_box(system, candidate, options):
        return real(system, candidate, options=dataclasses.replace(options, max_boxes=1))

    monkeypatch.chdir(tmp_path)  # a short relative path: rich wraps long lines at any width
    path = Path("run.pt")
    args = ["certify", "cubic_1d", "--method", "neural-lyapunov", "--checkpoint", str(path)]
    args += ["-o", "epochs=120", "-o", "rounds=2", "-o", "samples=1024"]
    with monkeypatch.context() as m:
        m.setattr(certify_module, "verify_candidate", one_box)
        first = CliRunner().invoke(app, args)
    assert first.exit_code == 1, first.output
    said = " ".join(first.output.split())
    assert f"kept in {path}" in said and "rerun with --resume" in said and path.exists()
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "kept in" not in again.output and not path.exists()
