"""Extract, transform and load methods; importing this package registers them all."""
from __future__ import annotations

from . import extract, load, quality, transform  # noqa: F401  (registration side effect)
from .registry import METHODS, Config, Method, StepContext, methods_of, register

__all__ = ["METHODS", "Config", "Method", "StepContext", "methods_of", "register"]
