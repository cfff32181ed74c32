"""Benchmark: the sound verifier on quadratic certificates, a tanh network, and against Z3.

For the quadratic certificate of the linearisation (A'P + PA = -I) on vanderpol, vanderpol-mu3,
power_system and pendulum: the largest certified level, the certified volume as a % of the true
ROA (the `lyapcert roa` sample), boxes and seconds. Then a 2-layer, 32-wide tanh network
certificate on vanderpol, V(x) = x'Px + |phi(x) - phi(0)|^2 (phi: Linear-Tanh-Linear-Tanh-Linear
with small random weights, seed 0), and Z3 on the polynomial case poly2 (same level, same band).

    python benchmarks/verify_speed.py [--device cpu|cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from lyapcert.certificates import NetworkCandidate, QuadraticCandidate
from lyapcert.certify import region_share
from lyapcert.systems import get_system
from lyapcert.verify import VerifyOptions, verify_candidate

QUADRATIC = ["vanderpol", "vanderpol-mu3", "power_system", "pendulum"]


def lyapunov_P(system) -> np.ndarray:
    a, _ = system.linearize()
    return scipy.linalg.solve_continuous_lyapunov(a.T, -np.eye(system.n_states))


def roa_share(system, candidate, level: float) -> tuple[float, float]:
    volume, share = region_share(system, candidate, level)
    return volume, 100 * share


class TanhCertificate(torch.nn.Module):
    """V(x) = x'Px + |phi(x) - phi(0)|^2 with phi a 2-layer, 32-wide tanh network."""

    def __init__(self, P: np.ndarray, width: int = 32, scale: float = 0.05, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.phi = torch.nn.Sequential(
            torch.nn.Linear(2, width),
            torch.nn.Tanh(),
            torch.nn.Linear(width, width),
            torch.nn.Tanh(),
            torch.nn.Linear(width, 2),
        ).double()
        for p in self.phi.parameters():
            p.data *= scale
        self.register_buffer("P", torch.as_tensor(P))

    def forward(self, x):
        d = self.phi(x) - self.phi(torch.zeros_like(x))
        return (d * d).sum(-1) + ((x @ self.P) * x).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    opts = VerifyOptions(device=args.device, time_limit=300)
    rows = []
    print(
        f"{'certificate':<28} {'verdict':<9} {'level':>10} {'% true ROA':>11} {'boxes':>9} {'seconds':>8}"
    )
    for name in QUADRATIC:
        s = get_system(name)
        cand = QuadraticCandidate(lyapunov_P(s), s)
        t = time.perf_counter()
        r = verify_candidate(s, cand, options=opts)
        seconds = time.perf_counter() - t
        vol, share = roa_share(s, cand, r.level) if r.level else (None, None)
        rows.append(
            {
                "system": name,
                "certificate": "quadratic",
                "verdict": r.verdict.value,
                "condition": r.condition.name.lower(),
                "hole": r.hole,
                "level": r.level,
                "certified_volume": vol,
                "roa_percent": share,
                "boxes": r.stats.boxes,
                "seconds": seconds,
            }
        )
        print(
            f"{name + ' quadratic':<28} {r.verdict.value:<9} {r.level:>10.5g} {share:>10.2f}% "
            f"{r.stats.boxes:>9,} {seconds:>8.2f}",
            flush=True,
        )
    s = get_system("vanderpol")
    net = NetworkCandidate(TanhCertificate(lyapunov_P(s)))
    t = time.perf_counter()
    r = verify_candidate(s, net, options=opts)
    seconds = time.perf_counter() - t
    vol, share = roa_share(s, net, r.level) if r.level else (None, float("nan"))
    rows.append(
        {
            "system": "vanderpol",
            "certificate": "tanh 2x32 network",
            "verdict": r.verdict.value,
            "condition": r.condition.name.lower(),
            "hole": r.hole,
            "level": r.level,
            "certified_volume": vol,
            "roa_percent": share,
            "boxes": r.stats.boxes,
            "seconds": seconds,
        }
    )
    print(
        f"{'vanderpol tanh 2x32 network':<28} {r.verdict.value:<9} {r.level or float('nan'):>10.5g} "
        f"{share:>10.2f}% {r.stats.boxes:>9,} {seconds:>8.2f}",
        flush=True,
    )
    z3_row = None
    try:
        from lyapcert.verify.z3check import check_band

        s = get_system("poly2")
        cand = QuadraticCandidate(lyapunov_P(s), s)
        level = 0.8
        t = time.perf_counter()
        ours = verify_candidate(s, cand, level=level, options=opts)
        ours_s = time.perf_counter() - t
        z = check_band(s, cand, level, ours.inner_level, timeout_s=600)
        z3_row = {
            "system": "poly2",
            "level": level,
            "ours": ours.verdict.value,
            "ours_seconds": ours_s,
            "z3": z.status,
            "z3_seconds": z.seconds,
            "ratio_z3_over_ours": z.seconds / ours_s,
        }
        print(
            f"poly2 at level {level}: ours {ours.verdict.value} in {ours_s:.3f} s; Z3 {z.status} in "
            f"{z.seconds:.3f} s (ratio Z3/ours {z.seconds / ours_s:.2f})"
        )
    except Exception as exc:  # z3 missing
        print(f"Z3 comparison skipped: {exc}")
    meta = {
        "device": args.device,
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python benchmarks/verify_speed.py --device " + args.device,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"verify_speed-{args.device.replace(':', '')}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows, "z3": z3_row}, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
