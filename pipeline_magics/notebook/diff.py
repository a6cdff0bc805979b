"""``%pipeline diff``: what a recorded run changed in its tables (``run.changes``), shown and returned."""
from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError

from .. import options
from ..run.changes import run_diffs
from ..run.diff import DiffSet
from ..spark.session import get_session


def diff_command(magics: Any, args: argparse.Namespace) -> DiffSet:
    """What a recorded run changed in its tables, row by row (default: the kernel's last pipeline)."""
    name = args.name or next(reversed(magics.results), None)
    if name is None:
        raise UsageError("usage: %pipeline " + options.DIFF_USAGE + " (no pipeline has run in this kernel)")
    return run_diffs(get_session(), name, args.run, args.against, args.step, options.diff_keys(args.keys))
