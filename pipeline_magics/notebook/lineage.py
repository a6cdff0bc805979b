"""``%pipeline lineage [NAME] [--column C]``: the last run's column lineage, drawn as the step graphs are."""
from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError

from ..render.lineage import lineage_graph
from ..run.lineage import column_lineage


def lineage_command(magics: Any, args: argparse.Namespace) -> Any:
    """Draws the column lineage of a pipeline's last run (default: the kernel's last run)."""
    name = args.name or next(reversed(magics.results), None)
    result = magics.results.get(name) if name else None
    if result is None or result.plan is None:
        raise UsageError(f"no run of '{name}' in this kernel; known: {', '.join(magics.results) or 'none'}")
    columns = getattr(result.lineage, "columns", None)
    if columns is None:
        spark = next((df.sparkSession for df in result.frames.values()), None)
        columns = column_lineage(result.plan, result.frames, spark)[0] if spark is not None else {}
    if args.column and not any(args.column in fields for fields in columns.values()):
        known = sorted({c for fields in columns.values() for c in fields})
        raise UsageError(f"no output column '{args.column}'; output columns are {known}")
    return lineage_graph(result.name, columns, args.column, result.plan.spec.mode)
