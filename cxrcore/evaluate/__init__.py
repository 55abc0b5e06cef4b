"""Evaluation: metrics per pathology (and, later, predictions, ensembles and localisation)."""
