"""The sound bound engine: interval arithmetic with outward rounding, forward-mode derivatives
over intervals, graph capture with one rule per operation, and mean-value (first-order) forms."""

from lyapcert.bounds.dual import Dual
from lyapcert.bounds.graph import BoundGraph, capture
from lyapcert.bounds.interval import Interval

__all__ = ["BoundGraph", "Dual", "Interval", "capture"]
