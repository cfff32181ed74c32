"""Benchmark: the cart-pole's LQR loop with the quadratic of its linearisation, verified at the
fixed level 0.101 with no time pressure (a one-hour limit): verdict and boxes.

Its box count is a deterministic fingerprint of the verifier's work, so running this script on two
commits (``PYTHONPATH`` on a ``git worktree`` of each) shows whether a change kept the behaviour;
the largest-level row of ``roa_controlled.py`` ends at its time limit on this system and so is not.
Runs on commits from before the closed-loop object too (``controller=`` then).

    python benchmarks/cartpole_fixed_level.py LABEL
"""

import sys
import time

import lyapcert
from lyapcert.control import lqr
from lyapcert.methods.quadratic import QuadraticMethod, QuadraticOptions
from lyapcert.verify import VerifyOptions, verify_candidate

s = lyapcert.get_system("cartpole")
k = lqr(s)
opts = VerifyOptions(time_limit=3600)
if hasattr(s, "closed_loop"):
    c = s.closed_loop(k)
    cand = QuadraticMethod().fit(c, QuadraticOptions()).candidate
    t = time.perf_counter()
    r = verify_candidate(c, cand, level=0.101, options=opts)
else:  # a commit before the closed-loop object
    cand = QuadraticMethod().fit(s, QuadraticOptions(), controller=k).candidate
    t = time.perf_counter()
    r = verify_candidate(s, cand, level=0.101, controller=k, options=opts)
label = sys.argv[1] if len(sys.argv) > 1 else "this commit"
print(label, r.verdict.value, r.level, r.stats.boxes, f"{time.perf_counter() - t:.1f} s")
