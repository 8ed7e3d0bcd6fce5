"""Experiment configurations: one `get_config(arg)` per file over experiments/base.py."""
