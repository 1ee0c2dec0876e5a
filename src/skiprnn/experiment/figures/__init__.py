"""Figures and curve listings from trained runs: ``python -m skiprnn.experiment.figures.<name> --help``."""
