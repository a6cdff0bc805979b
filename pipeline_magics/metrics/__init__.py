"""Run metrics: one record per step and per streaming query, where their figures come from, and the exporters.

``from pipeline_magics.metrics import to_prometheus, export, push`` is the notebook's way to them.
"""
from .exporters import export, push, to_prometheus

__all__ = ["export", "push", "to_prometheus"]
