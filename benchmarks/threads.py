"""Benchmark: CPU threads per process (`lyapcert --threads N`), alone and beside a CPU-heavy job.

Each workload runs in a fresh process with N threads (``LYAPCERT_THREADS=N``, which the
``lyapcert`` command and ``lyapcert.threads.set_threads`` read), timed by wall clock:

- ``roa``: ``lyapcert roa vanderpol --no-cache --json``, the true ROA of a 2-D system (a batched
  RK4 simulation of a grid of the box);
- ``verify``: ``lyapcert verify inverted_pendulum-wide`` of the published two-stage certificate
  (``tests/data/twostage/pendulum_bigtorque_seed0_{V,controller}.onnx``), its largest level with
  no hole (bound propagation and branch and bound);
- ``train-SYSTEM``: ``--steps`` Adam steps of the ``neural-roa`` method's network on its default
  sample (forward, the Lie derivative by autograd, a hinge loss, backward), for a 2-state and a
  4-state system.

Thread settings: ``--threads`` (default 1, 2 and 0 = one per core, PyTorch's own default and
lyapcert's before it chose 1; a setting that resolves to the same number as an earlier one is
skipped). Loads (``--loads``): ``none``; ``torch``, another PyTorch job at its own default
threads (a 2000 x 64 tanh layer evaluated in a loop, started before the run and stopped after);
``spin``, one pure-Python busy loop per core. The median of ``--repeats`` runs is reported.

    python benchmarks/threads.py [--repeats 3] [--loads none torch spin] [--out DIR] [--name N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import write_results

from lyapcert.threads import cores

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "twostage"
LYAPCERT = [sys.executable, "-m", "lyapcert.cli"]

TORCH_LOAD = """
import torch
a = torch.randn(64, 64, dtype=torch.float64)
x = torch.randn(2000, 64, dtype=torch.float64)
while True:
    torch.tanh(x @ a)
"""
SPIN_LOAD = "while True: pass"


def workloads(steps: int) -> dict[str, list[str]]:
    """The command line of each workload."""
    pend = DATA / "pendulum_bigtorque_seed0"
    train = [sys.executable, str(Path(__file__).resolve()), "--train-step"]
    return {
        "roa": [*LYAPCERT, "roa", "vanderpol", "--no-cache", "--json"],
        "verify": [
            *LYAPCERT,
            "verify",
            "inverted_pendulum-wide",
            "--candidate",
            f"{pend}_V.onnx",
            "--controller",
            f"{pend}_controller.onnx",
            "--no-roa",
            "--no-volume",
            "--json",
        ],
        "train-vanderpol": [*train, "vanderpol", str(steps)],
        "train-cartpole-wide": [*train, "cartpole-wide", str(steps)],
    }


def train_steps(system_name: str, steps: int) -> None:
    """In a child process: ``steps`` Adam steps of neural-roa's network for ``system_name``;
    prints the seconds of the steps alone (not the set-up) as JSON."""
    import torch

    from lyapcert.methods.neural_roa import NeuralROAOptions
    from lyapcert.methods.training import build_network, decrease
    from lyapcert.systems import get_system
    from lyapcert.threads import set_threads

    threads = set_threads()
    system = get_system(system_name)
    options = NeuralROAOptions().for_system(system)
    torch.manual_seed(0)
    net = build_network(system, options)
    lo, hi = system.domain.as_tensors()
    x = lo + torch.rand(options.samples, system.n_states, dtype=torch.float64) * (hi - lo)
    x.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
    started = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.relu(decrease(system, net, x) + 1e-2 * (x.detach() ** 2).sum(1)).mean()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "threads": threads, "samples": options.samples}))


def start_load(kind: str) -> list[subprocess.Popen]:
    if kind == "none":
        return []
    if kind == "torch":
        return [subprocess.Popen([sys.executable, "-c", TORCH_LOAD])]
    return [subprocess.Popen([sys.executable, "-c", SPIN_LOAD]) for _ in range(cores())]


def run_once(command: list[str], threads: int) -> float:
    """Wall-clock seconds of ``command`` with ``LYAPCERT_THREADS=threads`` (the training
    workload reports the seconds of its steps); raises if the command fails."""
    env = {**os.environ, "LYAPCERT_THREADS": str(threads)}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a negative verdict, still a completed run
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    if "--train-step" in command:
        return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--loads", nargs="+", default=["none", "torch", "spin"])
    parser.add_argument("--workloads", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="Adam steps of the training load")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="threads")
    parser.add_argument(
        "--train-step", nargs=2, metavar=("SYSTEM", "STEPS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.train_step:
        train_steps(args.train_step[0], int(args.train_step[1]))
        return
    for load in args.loads:
        if load not in ("none", "torch", "spin"):
            parser.error(f"--loads: expected none, torch or spin, got {load!r}")
    commands = workloads(args.steps)
    names = args.workloads or list(commands)
    settings: list[tuple[int, int]] = []  # (as asked, resolved)
    for t in args.threads:
        resolved = t if t > 0 else cores()
        if resolved not in [r for _, r in settings]:
            settings.append((t, resolved))
    rows: list[dict] = []
    path = args.out / f"{args.name}.json"
    print(f"{'workload':<22} {'load':<6} {'threads':>8} {'median s':>9}  runs")
    for load in args.loads:
        for name in names:
            for asked, threads in settings:
                procs = start_load(load)
                try:
                    time.sleep(1.0 if procs else 0.0)  # the load is running before the work
                    runs = [run_once(commands[name], threads) for _ in range(args.repeats)]
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
                row = {
                    "workload": name,
                    "load": load,
                    "threads": threads,
                    "asked": asked,
                    "median_s": statistics.median(runs),
                    "runs_s": runs,
                }
                rows.append(row)
                label = f"{threads}" + (" (0)" if asked == 0 else "")
                print(
                    f"{name:<22} {load:<6} {label:>8} {row['median_s']:>9.2f}  "
                    + " ".join(f"{r:.2f}" for r in runs),
                    flush=True,
                )
                write_results(path, "threads.py", args, rows, cores=cores())
    print(f"results: {path}")


if __name__ == "__main__":
    main()
