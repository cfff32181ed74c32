"""Benchmark: one joint-synthesis attempt (``--controller neural``, neural-roa) without the true-ROA
measurement, for systems whose closed-loop simulation is too slow to label 160k points (6-D).

    python benchmarks/controlled_attempt.py quadrotor2d --epochs 300 --rounds 2 --samples 2048

Prints the verdict, the level, train and verify seconds, the verifier's message and the training
history (per-round in-training verification included).
"""

from __future__ import annotations

import argparse
import time

import lyapcert
from lyapcert.verify import VerifyOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args()
    system = lyapcert.get_system(args.system)
    started = time.perf_counter()
    res = lyapcert.certify(
        system,
        "neural-roa",
        controller="neural",
        epochs=args.epochs,
        rounds=args.rounds,
        samples=args.samples,
        checkpoint=False,
        roa=False,
        verify_options=VerifyOptions(time_limit=args.time_limit),
    )
    print(
        f"{args.system}: {res.result.verdict.value}, level {res.result.level}, hole "
        f"{res.result.hole or 'none'}; train {res.train_seconds:.1f} s, verify "
        f"{res.verify_seconds:.1f} s, wall {time.perf_counter() - started:.1f} s"
    )
    print(f"message: {res.result.message}")
    for record in res.info.get("history", []):
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})


if __name__ == "__main__":
    main()
