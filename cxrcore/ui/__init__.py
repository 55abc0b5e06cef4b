"""Dashboard plumbing shared by every page: page set-up, state keys, cached loaders, charts.

This package and ``pages/`` are the only places that import Streamlit.
"""
