"""Axis-aligned boxes: the verification domain of a system and the bounds of its inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lyapcert.errors import SystemDefinitionError


@dataclass(frozen=True)
class Box:
    """The box ``[lower_1, upper_1] x ... x [lower_n, upper_n]`` with ``lower_i < upper_i``."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lower) != len(self.upper):
            raise SystemDefinitionError(
                f"box: {len(self.lower)} lower bounds but {len(self.upper)} upper bounds"
            )
        for i, (l, h) in enumerate(zip(self.lower, self.upper)):
            if not (math.isfinite(l) and math.isfinite(h)):
                raise SystemDefinitionError(
                    f"box: interval {i} is [{l}, {h}], expected finite bounds"
                )
            if l > h:
                raise SystemDefinitionError(f"box: interval {i} is [{l}, {h}], expected lo <= hi")
        object.__setattr__(self, "lower", tuple(float(v) for v in self.lower))
        object.__setattr__(self, "upper", tuple(float(v) for v in self.upper))

    @classmethod
    def from_bounds(
        cls,
        bounds: Sequence[Sequence[float]],
        names: Sequence[str],
        field: str = "domain",
        allow_degenerate: bool = False,
    ) -> Box:
        """Build a box from one ``[lo, hi]`` pair per name, validating every entry."""
        if len(bounds) != len(names):
            raise SystemDefinitionError(
                f"expected one [lo, hi] pair per name ({len(names)}: {', '.join(names)}), "
                f"got {len(bounds)}",
                field,
            )
        lower, upper = [], []
        for name, pair in zip(names, bounds):
            where = f"{field}.{name}"
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise SystemDefinitionError(f"expected a pair [lo, hi], got {pair!r}", where)
            lo, hi = (_finite(v, where) for v in pair)
            if lo > hi or (lo == hi and not allow_degenerate):
                raise SystemDefinitionError(f"expected lo < hi, got [{lo}, {hi}]", where)
            lower.append(lo)
            upper.append(hi)
        return cls(tuple(lower), tuple(upper))

    @property
    def dim(self) -> int:
        """Number of coordinates ``n``."""
        return len(self.lower)

    @property
    def width(self) -> tuple[float, ...]:
        """``upper - lower`` per coordinate (float arithmetic, not outward rounded)."""
        return tuple(h - l for l, h in zip(self.lower, self.upper))

    @property
    def center(self) -> tuple[float, ...]:
        """``(lower + upper) / 2`` per coordinate."""
        return tuple((l + h) / 2 for l, h in zip(self.lower, self.upper))

    @property
    def volume(self) -> float:
        """The product of the widths."""
        return math.prod(self.width)

    def as_tensors(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` as ``[dim]`` tensors."""
        return (
            torch.tensor(self.lower, dtype=dtype, device=device),
            torch.tensor(self.upper, dtype=dtype, device=device),
        )

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch]`` booleans: which rows of ``x`` (``[batch, dim]``) lie in the closed box."""
        lo, hi = self.as_tensors(x.dtype, x.device)
        return ((x >= lo) & (x <= hi)).all(dim=-1)

    def contains_point(self, point: Sequence[float]) -> bool:
        """Whether ``lower <= point <= upper`` in every coordinate (the faces included)."""
        return all(l <= p <= h for l, p, h in zip(self.lower, point, self.upper))

    def to_list(self) -> list[list[float]]:
        """``[[lower_i, upper_i], ...]``, as in system files and JSON output."""
        return [[l, h] for l, h in zip(self.lower, self.upper)]

    def __str__(self) -> str:
        return " x ".join(f"[{_fmt(l)}, {_fmt(h)}]" for l, h in zip(self.lower, self.upper))


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SystemDefinitionError(f"expected a number, got {value!r}", field)
    v = float(value)
    if not math.isfinite(v):
        raise SystemDefinitionError(f"expected a finite number, got {value!r}", field)
    return v


def _fmt(v: float) -> str:
    return f"{v:g}"
