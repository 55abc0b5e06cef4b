"""Explanations: heat maps, overlays and boxes drawn over chest X-rays."""
