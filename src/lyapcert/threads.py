"""How many CPU threads lyapcert's numerical work uses: one by default.

lyapcert's work is many small batches (a few thousand 2-D points, boxes of a branch and bound,
a training batch), and PyTorch's OpenMP threads spin while they wait for one another, so on a
loaded machine a second thread fights every other busy process for the cores.
``benchmarks/threads.py`` measures it (BENCHMARKS.md, "Threads"): on 2 cores, two threads save
12-31 % on an idle machine, but beside another busy process they make a verification 3.5-4.5
times and a training step 2-4.5 times as slow as one thread does. So the default is one thread
per process; parallel work runs in processes instead (``bench --workers``, ``verify --backend
process|ray``).

The setting, first found wins: the ``--threads N`` option of the ``lyapcert`` command (before
the subcommand), the environment variable ``LYAPCERT_THREADS``, then ``DEFAULT_THREADS``.
``0`` means one thread per core (PyTorch's own default). ``set_threads(n)`` applies it to
PyTorch's intra-op pool, to the BLAS and OpenMP libraries loaded in the process (threadpoolctl),
and to the environment of processes started after it (benchmark and verification workers).
"""

from __future__ import annotations

import os

from lyapcert.errors import OptionsError

DEFAULT_THREADS = 1
"""Threads per process when nothing asks for another number."""

THREADS_ENV = "LYAPCERT_THREADS"
"""The environment variable that sets the number of threads (an integer >= 0)."""

_CHILD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_limits = None  # threadpoolctl's limiter: kept so that the limit is not undone by collection


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _parse(value, source: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = -1
    if n < 0:
        raise OptionsError(
            f"{source}: expected a whole number of threads >= 0 (0: one per core), got {value!r}"
        )
    return n


def requested_threads(threads: int | None = None) -> int:
    """The number of threads to use: ``threads`` when given, else ``$LYAPCERT_THREADS``, else
    ``DEFAULT_THREADS``; ``0`` resolves to ``cores()``. Raises ``OptionsError`` for a negative or
    non-integer value, naming where it came from."""
    if threads is not None:
        n = _parse(threads, "--threads")
    elif os.environ.get(THREADS_ENV, "").strip():
        n = _parse(os.environ[THREADS_ENV], THREADS_ENV)
    else:
        n = DEFAULT_THREADS
    return n if n > 0 else cores()


def set_threads(threads: int | None = None) -> int:
    """Use ``requested_threads(threads)`` threads in this process from now on, and in processes
    it starts; returns that number.

    Sets ``torch.set_num_threads``, limits every BLAS and OpenMP library loaded in the process
    (threadpoolctl) and exports ``LYAPCERT_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``
    and ``OPENBLAS_NUM_THREADS`` for later ``requested_threads()`` calls and child processes. Library users call it once, as the ``lyapcert``
    command does at start-up; lyapcert never changes the setting on import."""
    global _limits
    import torch
    from threadpoolctl import threadpool_limits

    n = requested_threads(threads)
    torch.set_num_threads(n)
    _limits = threadpool_limits(limits=n)
    for name in (THREADS_ENV, *_CHILD_ENV):
        os.environ[name] = str(n)
    return n
