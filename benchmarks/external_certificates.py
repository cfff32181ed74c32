"""Benchmark: every published certificate in ``../shared/external/`` checked by lyapcert.

For each certificate (a network ``V`` and a controller as ONNX files, the system, the box and the
band ``c1 <= V <= c2`` in ``index.json``): the band's decrease (holds / violated / unknown),
whether ``{V <= c2}`` stays in the box (min ``V`` on the faces), whether the hole ``{V < c1}`` is
closed by a chain, and the largest level lyapcert certifies with no hole, with its volume beside
the volume of the peer's own set ``{V <= min(c2, min V on the faces)}`` (both counted on the same
sample of the box) and the seconds. ``c1 = V(x*) + 0.001`` (the published README's advice) by
default.

    python benchmarks/external_certificates.py [--external ../shared/external] [--time-limit 300]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from _common import add_linear_option, write_results

import lyapcert
from lyapcert.certificates import load_candidate
from lyapcert.metric import certified_volume
from lyapcert.verify import VerifyOptions
from lyapcert.verify.band import check_band

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_linear_option(parser)
    parser.add_argument("--external", default=str(HERE.parents[1] / "shared" / "external"))
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per part")
    parser.add_argument("--c1-offset", type=float, default=0.001, help="c1 = V(x*) + this")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="external_certificates")
    args = parser.parse_args()
    root = Path(args.external)
    indexes = sorted(root.glob("*/index.json"))
    if not indexes:
        raise SystemExit(f"no */index.json under {root}")
    rows = []
    path = Path(args.out) / f"{args.name}.json"
    print(
        f"{'certificate':<32} {'band decrease':<14} {'in box':<18} {'hole':<8} "
        f"{'level':>9} {'volume':>9} {'theirs':>9} {'ratio':>6} {'band s':>7} {'total s':>7}"
    )
    for index in indexes:
        for entry in json.loads(index.read_text()):
            folder = index.parent
            system = lyapcert.get_system(entry["lyapcert_system"])
            closed = system.closed_loop(folder / f"{entry['name']}_controller.onnx")
            V = load_candidate(str(folder / f"{entry['name']}_V.onnx"), closed)
            c1, c2 = entry["V_at_x_star"] + args.c1_offset, entry["c2"]
            started = time.perf_counter()
            report = check_band(
                closed,
                V,
                c1,
                c2,
                options=VerifyOptions(time_limit=args.time_limit, linear=args.linear == "on"),
            )
            total = time.perf_counter() - started
            r = report.certified
            face_lo = report.box["min_v_on_faces"][0]
            theirs_level = min(c2, face_lo) if math.isfinite(face_lo) else c2
            theirs = certified_volume(closed, V, theirs_level, samples=2**18)
            ours = certified_volume(closed, V, r.level, samples=2**18) if r.verified else None
            row = {
                "certificate": entry["name"],
                "system": entry["lyapcert_system"],
                "c1": c1,
                "c2": c2,
                "band": {k: v for k, v in report.to_dict().items() if k != "certified"},
                "verdict": r.verdict.value,
                "level": r.level,
                "hole": r.hole or "none",
                "chain": r.chain is not None,
                "certified_volume": None if ours is None else ours.volume,
                "certified_volume_stderr": None if ours is None else ours.stderr,
                "their_set_level": theirs_level,
                "their_set_volume": theirs.volume,
                "their_set_volume_stderr": theirs.stderr,
                "band_seconds": report.seconds,
                "total_seconds": total,
                "published_mean_volume_5_seeds": entry.get("published_mean_volume_5_seeds"),
                "published_verify_seconds_gpu": entry.get("published_verify_seconds_rtx5090"),
                "message": r.message,
            }
            rows.append(row)
            write_results(path, "external_certificates.py", args, rows)
            ratio = (ours.volume / theirs.volume) if ours is not None and theirs.volume else 0.0
            vol = "-" if ours is None else f"{ours.volume:.4g}"
            lvl = "-" if r.level is None else f"{r.level:.4g}"
            print(
                f"{entry['name']:<32} {report.decrease['status']:<14} {report.box['status']:<18} "
                f"{report.hole['status']:<8} {lvl:>9} {vol:>9} {theirs.volume:>9.4g} "
                f"{ratio:>6.1%} {report.seconds:>7.1f} {total:>7.1f}",
                flush=True,
            )
            for line in report.lines():
                print("    " + line)
    print(f"wrote {path}")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
