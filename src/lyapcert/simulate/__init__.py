"""Simulation and the true region of attraction (ground truth for every ROA metric)."""

from lyapcert.simulate.integrate import Trajectory, make_stepper, simulate, vector_field
from lyapcert.simulate.roa import (
    ConvergenceCriterion,
    RoaEstimate,
    Sample,
    default_sample,
    label_convergence,
    sample_points,
    slice_grid,
    true_roa,
)

__all__ = [
    "ConvergenceCriterion",
    "RoaEstimate",
    "Sample",
    "Trajectory",
    "default_sample",
    "label_convergence",
    "make_stepper",
    "sample_points",
    "simulate",
    "slice_grid",
    "true_roa",
    "vector_field",
]
