"""The research-use notice: shown on every page and printed on every report the project writes."""

from __future__ import annotations

RESEARCH_NOTICE = (
    "Research tool, not a medical device: its outputs are not a diagnosis and must not guide patient care."
)
