"""Running a split verification's parts elsewhere: as Ray tasks, or in worker processes here.

``verify_candidate(system, V, options=VerifyOptions(parts=8), mapper=ray_mapper())`` sends each
sub-box (with the system (a closed loop carries its controller), the candidate, the inner level and the falsifier's
points) to a Ray task, which rebuilds the problem and runs the same branch and bound on its
sub-box. The sub-boxes cover the domain, so the least of the parts' proven lower bounds is a
proven lower bound for the whole domain, and any part's replayed violation is a proven violation:
the merged result is exactly as sound as a run in one process (each part's time limit is the
per-search ``time_limit``).

``process_mapper(workers)`` does the same on this machine's cores, without Ray: each part runs in
a worker process (started fresh, ``spawn``: nothing of this process's torch state is shared) with
one torch thread; the work and its result travel by ``cloudpickle``, so systems built from
equations and closed loops travel as they do to Ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from lyapcert.errors import OptionsError


def ray_mapper(address: str | None = None, num_cpus: float = 1) -> Callable:
    """A ``mapper(fn, items) -> list`` that runs ``fn(item)`` for each item as a Ray task on the
    cluster at ``address`` (``None``: the running Ray instance, or a new local one), and returns
    the results in order."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        raise OptionsError(
            "the ray backend needs the ray package (pip install 'ray>=2.9')"
        ) from None

    def mapper(fn: Callable, items: Iterable) -> list:
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
        task = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
        return ray.get([task.remote(item) for item in items])

    return mapper


def _run_pickled(payload: bytes) -> bytes:
    """In a worker process: ``fn(item)`` from ``cloudpickle.dumps((fn, item))``, pickled back."""
    import cloudpickle
    import torch

    torch.set_num_threads(1)
    fn, item = cloudpickle.loads(payload)
    return cloudpickle.dumps(fn(item))


def process_mapper(workers: int | None = None) -> Callable:
    """A ``mapper(fn, items) -> list`` that runs ``fn(item)`` for each item in a pool of at most
    ``workers`` fresh processes on this machine (default: one per core), and returns the results
    in order. Items beyond the pool's size wait for a free worker. A worker that fails raises its
    error here."""
    import concurrent.futures
    import multiprocessing

    import cloudpickle

    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise OptionsError(f"workers: expected a positive integer, got {workers!r}")

    def mapper(fn: Callable, items: Iterable) -> list:
        items = list(items)
        if not items:
            return []
        size = min(len(items), workers or os.cpu_count() or 1)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(size, mp_context=context) as pool:
            futures = [pool.submit(_run_pickled, cloudpickle.dumps((fn, i))) for i in items]
            return [cloudpickle.loads(f.result()) for f in futures]

    return mapper
