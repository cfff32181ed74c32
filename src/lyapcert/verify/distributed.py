"""Running a split verification on Ray: the decrease search's sub-boxes as Ray tasks.

``verify_candidate(system, V, options=VerifyOptions(parts=8), mapper=ray_mapper())`` sends each
sub-box (with the system (a closed loop carries its controller), the candidate, the inner level and the falsifier's
points) to a Ray task, which rebuilds the problem and runs the same branch and bound on its
sub-box. The sub-boxes cover the domain, so the least of the parts' proven lower bounds is a
proven lower bound for the whole domain, and any part's replayed violation is a proven violation:
the merged result is exactly as sound as a run in one process (each part's time limit is the
per-search ``time_limit``).
"""

from __future__ import annotations

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
