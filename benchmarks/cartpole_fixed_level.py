"""Benchmark: the cart-pole's LQR loop with the quadratic of its linearisation, verified at the
fixed level 0.101 with no time pressure (a one-hour limit): verdict and boxes.

Its box count is a deterministic fingerprint of the verifier's work, so running this script on two
commits (``PYTHONPATH`` on a ``git worktree`` of each) shows whether a change kept the behaviour;
the largest-level row of ``roa_controlled.py`` ends at its time limit on this system and so is not.
Runs on commits from before the closed-loop object too (``controller=`` then).

    python benchmarks/cartpole_fixed_level.py LABEL [--linear on|off]

Prints the wall and the process (CPU) seconds: on a shared machine the second is the one to
compare.
"""

import argparse
import time

import lyapcert
from lyapcert.control import lqr
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
from lyapcert.verify import VerifyOptions, verify_candidate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("label", nargs="?", default="this commit")
parser.add_argument("--linear", choices=["on", "off"], default=None, help="default: the commit's")
args = parser.parse_args()
s = lyapcert.get_system("cartpole")
k = lqr(s)
opts = VerifyOptions(time_limit=3600)
if args.linear is not None:  # (commits before the linear bounds have no such setting)
    opts = VerifyOptions(time_limit=3600, linear=args.linear == "on")
if hasattr(s, "closed_loop"):
    c = s.closed_loop(k)
    cand = QuadraticMethod().fit(c, QuadraticOptions()).candidate
    t, cpu = time.perf_counter(), time.process_time()
    r = verify_candidate(c, cand, level=0.101, options=opts)
else:  # a commit before the closed-loop object
    cand = QuadraticMethod().fit(s, QuadraticOptions(), controller=k).candidate
    t, cpu = time.perf_counter(), time.process_time()
    r = verify_candidate(s, cand, level=0.101, controller=k, options=opts)
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
print(args.label, r.verdict.value, r.level, r.stats.boxes, f"{wall:.1f} s (CPU {cpu:.1f} s)")
