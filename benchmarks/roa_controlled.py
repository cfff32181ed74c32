"""Benchmark: controlled systems closed by a controller, certified by a method; certified volume
beside the published one (shared/benchmarks.md).

    python benchmarks/roa_controlled.py [--systems ...] [--methods quadratic neural-roa]
        [--controller lqr|neural] [--name roa_controlled] [-o KEY=VALUE ...]
        [--seeds 0 1 2 3 4] [--no-roa] [--certificates DIR]

``-o KEY=VALUE`` (repeatable) sets a method option, as ``lyapcert certify -o`` does (for example
``-o zubov_sampling=true -o expand_domain=true -o margin_kind=value`` for neural-roa).

``--seeds`` runs each (system, method) once per seed (the method's ``seed`` option) and ends with
the mean and standard deviation of the certified volume over the seeds. ``--no-roa`` skips the
simulated true ROA (the volume is then counted on a sample of the box, the % of the ROA is not
reported): the trained closed loop's true ROA costs minutes per run. ``--certificates DIR`` saves
each certificate under ``DIR/SYSTEM-METHOD-sSEED`` (``lyapcert verify`` re-checks it).

Each row: system, controller, method, seed, verdict, hole, certified volume (counted on the
`lyapcert roa` sample of the closed loop, in state-space units), % of the closed loop's true
ROA, train and verify seconds, and the published certified volume. The published volumes are for
jointly trained neural controllers on the paper's own (sometimes larger) CT boxes; the boxes used
here are printed with each row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import add_linear_option, write_results

import lyapcert
from lyapcert.bench.anchors import PUBLISHED_VOLUME
from lyapcert.errors import TrainingInterrupted
from lyapcert.methods.options import parse_assignments
from lyapcert.verify import VerifyOptions

SYSTEMS = [
    # continuous time, on the verification boxes of the 2025 two-stage setup
    "inverted_pendulum-wide",
    "inverted_pendulum-small-wide",
    "path_tracking-wide",
    "path_tracking-small-wide",
    "vanderpol_controlled",
    "double_integrator",
    # discrete time, on the ICML 2024 boxes
    "inverted_pendulum-dt",
    "path_tracking-dt",
]
# shared/benchmarks.md, 2025 two-stage method, continuous time (certified volume), on its boxes
PUBLISHED = PUBLISHED_VOLUME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_linear_option(parser)
    parser.add_argument("--systems", nargs="*", default=SYSTEMS)
    parser.add_argument("--methods", nargs="*", default=["quadratic", "neural-roa"])
    parser.add_argument("--controller", default="lqr")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="roa_controlled")
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds per branch-and-bound search"
    )
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="seeds (default: 0)")
    parser.add_argument("--no-roa", action="store_true", help="no simulated true ROA")
    parser.add_argument("--certificates", default=None, help="save each certificate here")
    args = parser.parse_args()
    method_options = parse_assignments(args.option)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"{args.name}.json"
    rows = []
    print(
        f"{'system':<26} {'method':<11} {'verdict':<9} {'hole':<5} {'volume':>9} {'% ROA':>7} "
        f"{'published':>9} {'train s':>8} {'verify s':>9}  box"
    )
    # seed by seed: a run stopped early has the same seeds of every system
    runs = [
        (name, method, seed)
        for seed in (args.seeds if args.seeds is not None else [None])
        for name in args.systems
        for method in args.methods
    ]
    for name, method, seed in runs:
        system = lyapcert.get_system(name)
        box = f"{list(system.domain.lower)} .. {list(system.domain.upper)}"
        row = {
            "system": name,
            "controller": args.controller,
            "method": method,
            "seed": seed,
            "box": box,
            "published_volume": PUBLISHED.get(name),
        }
        seeded = {} if seed is None else {"seed": seed}
        out = None
        if args.certificates is not None:
            out = Path(args.certificates) / f"{name}-{method}-s{seed or 0}"
        try:
            res = lyapcert.certify(
                system,
                method,
                controller=args.controller,
                verify_options=VerifyOptions(
                    time_limit=args.time_limit, linear=args.linear == "on"
                ),
                roa=not args.no_roa,
                out=out,
                **{**method_options, **seeded},
            )
        except TrainingInterrupted:
            raise  # Ctrl-C or SIGTERM stops the benchmark (the checkpoint resumes the run)
        except lyapcert.LyapcertError as exc:
            row.update(verdict="error", message=str(exc))
            rows.append(row)
            print(f"{name:<26} {method:<11} error: {exc}", flush=True)
            _write(path, args, rows)
            continue
        row.update(
            verdict=res.result.verdict.value,
            hole=res.result.hole or "none",
            level=res.result.level,
            certified_volume=res.certified_volume,
            roa_percent=None if res.roa_fraction is None else 100 * res.roa_fraction,
            true_roa_volume=res.true_roa_volume,
            train_seconds=res.train_seconds,
            verify_seconds=res.verify_seconds,
            message=res.result.message,
        )
        rows.append(row)
        _write(path, args, rows)
        vol = row["certified_volume"]
        pct = row["roa_percent"]
        print(
            f"{name:<26} {method:<11} {row['verdict']:<9} {row['hole']:<5} "
            f"{vol if vol is not None else float('nan'):>9.2f} "
            f"{pct if pct is not None else float('nan'):>6.2f}% "
            f"{row['published_volume'] or '-':>9} {res.train_seconds:>8.1f} "
            f"{res.verify_seconds:>9.2f}  {box}",
            flush=True,
        )
        if not res.result.verified:
            print(f"{'':<26} {res.result.message}", flush=True)
    if args.seeds is not None and len(args.seeds) > 1:
        _summary(rows)
    print(f"wrote {path}")


def _summary(rows: list[dict]) -> None:
    """Mean and standard deviation of the certified volume over the seeds (a seed without a
    verified certificate counts as volume 0), beside the published mean."""
    import statistics

    print(
        f"\n{'system':<26} {'method':<11} {'seeds':>5} {'verified':>8} {'volume mean +- std':>22}"
    )
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["method"]), []).append(row)
    for (name, method), group in groups.items():
        vols = [
            (r.get("certified_volume") or 0.0) if r["verdict"] == "verified" else 0.0 for r in group
        ]
        std = statistics.stdev(vols) if len(vols) > 1 else 0.0
        ok = sum(r["verdict"] == "verified" for r in group)
        print(
            f"{name:<26} {method:<11} {len(group):>5} {ok:>8} "
            f"{statistics.fmean(vols):>12.2f} +- {std:<8.2f} published {PUBLISHED.get(name) or '-'}"
        )


def _write(path: Path, args, rows: list[dict]) -> None:
    write_results(path, "roa_controlled.py", args, rows)


if __name__ == "__main__":
    main()
