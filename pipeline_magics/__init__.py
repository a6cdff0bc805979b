"""pipeline_magics: YAML pipelines on Spark and Delta Lake from a ``%%pipeline`` cell.

``%load_ext pipeline_magics`` registers the magics; the Python API
(``Pipeline``, ``PipelineResult``, the errors) works without IPython.
"""
from __future__ import annotations

from typing import Any

from .notebook.cells import await_pipeline_cells, forget_pipeline_cells
from .errors import (CredentialError, DataFrameResolutionError, ExpectationError, PipelineCancelledError,
                     PipelineError, PipelineExecutionError, RetryableError, SpecError, StreamingQueryError)
from .run.pipeline import Pipeline, PipelineResult

__version__ = "0.1.0"
__all__ = [
    "Pipeline", "PipelineResult", "PipelineError", "SpecError", "PipelineExecutionError",
    "DataFrameResolutionError", "ExpectationError", "CredentialError", "StreamingQueryError",
    "RetryableError", "PipelineCancelledError", "load_ipython_extension", "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """Registers ``%%pipeline`` and ``%pipeline`` and their tab completion; starts nothing."""
    # The notebook layer (IPython, ipywidgets) is imported only where the extension is loaded:
    # the Python API and the CLI work without it.
    from .notebook.magic import PipelineMagics, register_completions

    magics = PipelineMagics(ipython)
    ipython.register_magics(magics)
    register_completions(ipython, magics)
    await_pipeline_cells(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Removes the input transformer; the magics stay in IPython's table (IPython has no way to drop them)."""
    forget_pipeline_cells(ipython)
