"""Benchmark helper: the exact volume of a quadratic certificate's region ``{e'Pe <= c}``.

    python benchmarks/ellipsoid_volume.py RESULTS.json

For each verified row of a ``roa_controlled.py --methods quadratic --controller lqr`` results
file: ``P`` rebuilt as that benchmark builds it (LQR loop, ``A'P + PA = -I``, DT ``A'PA - P = -I``),
the ellipsoid's volume ``pi^(n/2) / Gamma(n/2 + 1) * c^(n/2) / sqrt(det P)``, and whether it lies
inside the box (its half-widths ``sqrt(c (P^-1)_ii)``); when it does, that is the certified
volume exactly, where the sampled count is too coarse for tiny sets in large boxes.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import lyapcert
from lyapcert.control.linear import lqr
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    args = parser.parse_args()
    with open(args.results) as fh:
        rows = json.load(fh)["rows"]
    print(
        f"{'system':<16} {'level':>10} {'ellipsoid volume':>17} {'inside box':>10} {'sampled':>9}"
    )
    for row in rows:
        if row.get("verdict") != "verified" or row.get("method") != "quadratic":
            continue
        s = lyapcert.get_system(row["system"])
        closed = s.closed_loop(lqr(s))
        P = np.asarray(QuadraticMethod().fit(closed, QuadraticOptions()).candidate.P)
        n, c = P.shape[0], row["level"]
        unit = math.pi ** (n / 2) / math.gamma(n / 2 + 1)
        volume = unit * c ** (n / 2) / math.sqrt(np.linalg.det(P))
        reach = np.sqrt(c * np.diag(np.linalg.inv(P)))
        x_star = np.asarray(s.equilibrium)
        inside = bool(
            np.all(x_star - reach >= np.asarray(s.domain.lower))
            and np.all(x_star + reach <= np.asarray(s.domain.upper))
        )
        print(
            f"{row['system']:<16} {c:>10.4g} {volume:>17.4g} {inside!s:>10} "
            f"{row.get('certified_volume') or 0:>9.4g}"
        )


if __name__ == "__main__":
    main()
