"""Benchmark: every method on the autonomous benchmark systems, one metric (% of the true ROA).

    python benchmarks/roa_autonomous.py [--methods quadratic quadratic-opt sos] [--systems ...]
        [--sos-degree 6] [--out benchmarks/results]

Each row: method, verdict, hole, certified volume as % of the true ROA (counted on the
`lyapcert roa` sample), train and verify seconds, and the published number from
shared/benchmarks.md beside it. Methods not implemented yet are reported as such, not skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import write_results

import lyapcert
from lyapcert.bench.anchors import PUBLISHED_PERCENT
from lyapcert.methods import METHODS

SYSTEMS = ["vanderpol", "vanderpol-mu3", "power_system", "pendulum", "poly2", "nonpoly2_3d"]
# shared/benchmarks.md: best neural (Zubov + dReal) and SOS degree 6, % of the true ROA
PUBLISHED = PUBLISHED_PERCENT
# every method once; "-opt" / "-box": the quadratic with Q searched, SOS without simulation data
VARIANTS = {
    "quadratic": ("quadratic", {}),
    "quadratic-opt": ("quadratic", {"optimize": True}),
    "sos": ("sos", {}),
    "sos-box": ("sos", {"target": "box"}),
    "neural-zubov": ("neural-zubov", {}),
    "neural-lyapunov": ("neural-lyapunov", {}),
    "neural-roa": ("neural-roa", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list(VARIANTS))
    parser.add_argument("--systems", nargs="*", default=SYSTEMS)
    parser.add_argument("--sos-degree", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="roa_autonomous", help="results file stem")
    parser.add_argument(
        "--table",
        nargs="*",
        metavar="JSON",
        help="only print the merged table of results files (later files win per cell)",
    )
    args = parser.parse_args()
    if args.table:
        latest = {}  # a later file's row replaces an earlier one for the same cell
        for f in args.table:
            for r in json.loads(Path(f).read_text())["rows"]:
                latest[(r["system"], r["method"])] = r
        rows = list(latest.values())
        order = {name: i for i, name in enumerate(SYSTEMS)}
        methods = {name: i for i, name in enumerate(VARIANTS)}
        rows.sort(key=lambda r: (order.get(r["system"], 99), methods.get(r["method"], 99)))
        print(markdown(rows))
        return
    rows = []
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"{args.name}.json"
    head = (
        f"{'system':<15} {'method':<16} {'verdict':<9} {'hole':<5} {'% true ROA':>10} "
        f"{'published':>10} {'train s':>8} {'verify s':>9}"
    )
    print(head)
    for system_name in args.systems:
        system = lyapcert.get_system(system_name)
        for variant in args.methods:
            method, opts = VARIANTS[variant]
            if method == "sos":
                opts = {**opts, "degree": args.sos_degree}
            published = PUBLISHED.get(system_name, {}).get(
                "sos" if method == "sos" else "neural" if method.startswith("neural") else "", None
            )
            row = {
                "system": system_name,
                "method": variant,
                "options": opts,
                "published_percent": published,
            }
            if method not in METHODS:
                row.update(verdict="not implemented")
                print(f"{system_name:<15} {variant:<16} not implemented yet", flush=True)
                rows.append(row)
                continue
            try:
                res = lyapcert.certify(system, method, roa=True, **opts)
            except lyapcert.LyapcertError as exc:
                row.update(verdict="error", message=str(exc))
                print(f"{system_name:<15} {variant:<16} error: {exc}", flush=True)
                rows.append(row)
                _write(path, args, rows)
                continue
            pct = 100 * res.roa_fraction if res.roa_fraction is not None else None
            row.update(
                verdict=res.result.verdict.value,
                hole=res.result.hole or "none",
                level=res.result.level,
                roa_percent=pct,
                train_seconds=res.train_seconds,
                verify_seconds=res.verify_seconds,
                info={k: v for k, v in res.info.items() if k != "history"},
            )
            rows.append(row)
            _write(path, args, rows)
            print(
                f"{system_name:<15} {variant:<16} {row['verdict']:<9} {row['hole']:<5} "
                f"{pct if pct is not None else float('nan'):>9.2f}% "
                f"{published if published is not None else '-':>10} {res.train_seconds:>8.1f} "
                f"{res.verify_seconds:>9.2f}",
                flush=True,
            )
    _write(path, args, rows)
    print(f"wrote {path}")
    print()
    print(markdown(rows))


def _write(path: Path, args, rows: list[dict]) -> None:
    write_results(path, "roa_autonomous.py", args, rows, sos_degree=args.sos_degree)


def markdown(rows: list[dict]) -> str:
    """The BENCHMARKS.md table of ``rows``."""
    lines = [
        "| system | method | verdict | hole | % true ROA | published | train s | verify s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pct = r.get("roa_percent")
        lines.append(
            f"| `{r['system']}` | {r['method']} | {r['verdict']} | {r.get('hole', '-')} | "
            f"{'-' if pct is None else f'{pct:.2f}'} | {r.get('published_percent') or '-'} | "
            f"{r.get('train_seconds', float('nan')):.1f} | {r.get('verify_seconds', float('nan')):.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
