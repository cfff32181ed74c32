"""Benchmark: the true region of attraction by simulation (speed and the known areas).

Times `lyapcert roa NAME` at its default resolution as a user runs it (a fresh process, cache off,
plot on), and the library call alone, on the systems whose true ROA is known from
shared/benchmarks.md. Prints a table and writes JSON.

    python benchmarks/roa_speed.py [--device cpu|cuda] [--repeats 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import write_results

from lyapcert.simulate import true_roa
from lyapcert.systems import get_system

# system -> area of the true ROA stated in shared/benchmarks.md (None: no published figure)
KNOWN = {
    "vanderpol": 13.72,
    "vanderpol-mu3": 20.49,
    "power_system": 9.94,
    "cubic_1d": 2.0,
    "pendulum": None,
    "nonpoly2_3d": None,
    "interconnected_10d": None,
}


def time_cli(name: str, device: str, repeats: int) -> list[float]:
    """Wall-clock seconds of `lyapcert roa NAME --no-cache` in a fresh process, each repeat."""
    exe = Path(sys.executable).with_name("lyapcert")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lyapcert.cli"]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [*cmd, "roa", name, "--no-cache", "--device", device, "--out", tmp, "--json"],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--systems", nargs="*", default=list(KNOWN))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    rows = []
    print(
        f"{'system':<20} {'points':>8} {'area/volume':>14} {'published':>10} {'error %':>8} "
        f"{'library s':>10} {'CLI s (median)':>15}"
    )
    for name in args.systems:
        system = get_system(name)
        start = time.perf_counter()
        est = true_roa(system, cache=False, device=args.device)
        library_s = time.perf_counter() - start
        cli = time_cli(name, args.device, args.repeats) if system.n_states <= 2 else []
        published = KNOWN.get(name)
        err = 100 * (est.volume - published) / published if published else None
        row = {
            "system": name,
            "n_points": len(est.outcomes),
            "sample": est.sample.describe(),
            "roa_volume": est.volume,
            "roa_fraction": est.fraction,
            "published_volume": published,
            "error_percent": err,
            "counts": est.counts,
            "library_seconds": library_s,
            "cli_seconds": cli,
            "cli_seconds_median": statistics.median(cli) if cli else None,
        }
        rows.append(row)
        print(
            f"{name:<20} {row['n_points']:>8} {est.volume:>14.6g} "
            f"{published if published is not None else '-':>10} "
            f"{f'{err:+.2f}' if err is not None else '-':>8} {library_s:>10.2f} "
            f"{row['cli_seconds_median'] if cli else float('nan'):>15.2f}",
            flush=True,
        )
    path = Path(args.out) / f"roa_speed-{args.device.replace(':', '')}.json"
    write_results(
        path,
        "roa_speed.py",
        args,
        rows,
        device=args.device,
        cuda_device=torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        machine=platform.machine(),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
