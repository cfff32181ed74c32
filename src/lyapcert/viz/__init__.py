"""Plots, animations and reports. matplotlib is imported only inside this package."""
