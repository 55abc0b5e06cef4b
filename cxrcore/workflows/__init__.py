"""Workflows: end-to-end jobs composed from the engine's functions.

Preparing the synthetic demo (``demo``), registering the real public X-rays as the bundled model's recipe
says (``realdata``), writing a trained checkpoint as a bundled one with its card and test figures
(``bundle``). They sit above data, models, training, evaluation and explanation, and below the command
line and the dashboard, which call them.
"""
