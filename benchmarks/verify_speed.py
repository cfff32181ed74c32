"""Benchmark: the sound verifier on quadratic certificates, a tanh network, and against Z3.

For the quadratic certificate of the linearisation (A'P + PA = -I) on vanderpol, vanderpol-mu3,
power_system and pendulum: the largest certified level, the certified volume as a % of the true
ROA (the `lyapcert roa` sample), boxes and seconds. Then a 2-layer, 32-wide tanh network
certificate on vanderpol, V(x) = x'Px + |phi(x) - phi(0)|^2 (phi: Linear-Tanh-Linear-Tanh-Linear
with small random weights, seed 0), and Z3 on the polynomial case poly2 (same level, same band).
For each VERIFIED row also the time to build the stored proof (`verify.proof.stored_proof`, what
saving a certificate adds) and to re-check it without search (what `lyapcert verify DIR` runs).

    python benchmarks/verify_speed.py [--device cpu|cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_linear_option, write_results

from lyapcert.certificates import NetworkCandidate, QuadraticCandidate
from lyapcert.certificates.store import Certificate
from lyapcert.methods.quadratic import lyapunov_matrix
from lyapcert.metric import region_share
from lyapcert.systems import get_system
from lyapcert.verify import VerifyOptions, verify_candidate
from lyapcert.verify.proof import check_stored_proof, stored_proof

QUADRATIC = ["vanderpol", "vanderpol-mu3", "power_system", "pendulum"]


def lyapunov_P(system) -> np.ndarray:
    """``A'P + PA = -I`` for the linearisation (the `quadratic` method's default)."""
    return lyapunov_matrix(system.linearize()[0], np.eye(system.n_states), discrete=False)


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


def recheck_times(system, candidate, r) -> tuple[float | None, float | None, int | None]:
    """``(build seconds, re-check seconds, leaves)`` of the stored proof of a VERIFIED ``r``
    (re-checked in memory, as `lyapcert verify DIR` does from the folder)."""
    if not r.verified:
        return None, None, None
    t = time.perf_counter()
    proof = stored_proof(system, candidate, r)
    build = time.perf_counter() - t
    if proof is None:
        return build, None, None
    cert = Certificate(
        system,
        candidate,
        r.level,
        r.verdict.value,
        r.condition.name.lower(),
        {"settings": r.provenance.get("settings", {})},
        proof.arrays,
    )
    t = time.perf_counter()
    again = check_stored_proof(cert)
    seconds = time.perf_counter() - t
    if not again.verified:
        raise RuntimeError(f"{system.name}: the stored proof did not re-check: {again.message}")
    return build, seconds, again.stats.boxes


def measure(system, label: str, candidate, opts: VerifyOptions) -> dict:
    """Verify ``candidate`` at its largest level, time it, print and return the table row."""
    t = time.perf_counter()
    r = verify_candidate(system, candidate, options=opts)
    seconds = time.perf_counter() - t
    build, recheck, leaves = recheck_times(system, candidate, r)
    vol, share = roa_share(system, candidate, r.level) if r.level else (None, None)
    nan = float("nan")
    print(
        f"{system.name + ' ' + label:<28} {r.verdict.value:<9} {r.level or nan:>10.5g} "
        f"{share if share is not None else nan:>10.2f}% {r.stats.boxes:>9,} "
        f"{seconds:>8.2f} {build if build is not None else nan:>8.2f} "
        f"{recheck if recheck is not None else nan:>9.3f} {leaves or 0:>8,}",
        flush=True,
    )
    return {
        "system": system.name,
        "certificate": label,
        "verdict": r.verdict.value,
        "condition": r.condition.name.lower(),
        "hole": r.hole,
        "level": r.level,
        "certified_volume": vol,
        "roa_percent": share,
        "boxes": r.stats.boxes,
        "seconds": seconds,
        "proof_build_seconds": build,
        "recheck_seconds": recheck,
        "proof_leaves": leaves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_linear_option(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--second-order",
        choices=["auto", "on", "off"],
        default="auto",
        help="the second-order Taylor form (VerifyOptions.second_order; auto: from 3 states)",
    )
    args = parser.parse_args()
    second = {"auto": None, "on": True, "off": False}[args.second_order]
    opts = VerifyOptions(
        device=args.device, time_limit=300, second_order=second, linear=args.linear == "on"
    )
    rows = []
    print(
        f"{'certificate':<28} {'verdict':<9} {'level':>10} {'% true ROA':>11} {'boxes':>9} "
        f"{'seconds':>8} {'proof s':>8} {'re-check s':>9} {'leaves':>8}"
    )
    for name in QUADRATIC:
        s = get_system(name)
        rows.append(measure(s, "quadratic", QuadraticCandidate(lyapunov_P(s), s), opts))
    s = get_system("vanderpol")
    net = NetworkCandidate(TanhCertificate(lyapunov_P(s)))
    rows.append(measure(s, "tanh 2x32 network", net, opts))
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
    suffix = "" if args.second_order == "auto" else f"-second-order-{args.second_order}"
    suffix += "" if args.linear == "on" else "-linear-off"
    path = Path(args.out) / f"verify_speed-{args.device.replace(':', '')}{suffix}.json"
    write_results(
        path,
        "verify_speed.py",
        args,
        rows,
        extra={"z3": z3_row},
        device=args.device,
        cuda_device=torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
