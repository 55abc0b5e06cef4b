"""Evaluation: stored batch predictions, per-label metrics with confidence intervals, operating points,
calibration, DeLong's test, ensembles, and localisation metrics against ground-truth boxes."""
