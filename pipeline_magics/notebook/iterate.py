"""The options a ``%%pipeline`` cell passes to its run (``run_options``), the kernel's kept outputs, and
``%pipeline uncache`` and ``%pipeline sandbox`` (SPEC 12)."""
from __future__ import annotations

import argparse
import functools
from typing import Any

from IPython.core.error import UsageError

from ..options import iterate_options
from ..run import sandbox
from ..run.iterate import KeptOutputs
from ..spark.session import get_session
from .shell import emit

SANDBOX_USAGE = "usage: %pipeline sandbox [NAME] [--dir DIR] | sandbox clear NAME [--dir DIR]"


def uncache_command(magics: Any, args: argparse.Namespace) -> Any:
    """Frees the outputs ``--until`` kept (of one pipeline, or all); returns what it freed, with sizes."""
    freed = magics.kept.drop(args.name)
    total = int(freed["bytes"].fillna(0).sum())
    print(f"freed {len(freed)} kept output{'s' if len(freed) != 1 else ''}" + (f" ({total:,} bytes)" if total else "")
          if len(freed) else "no kept outputs" + (f" of '{args.name}'" if args.name else " in this kernel"))
    return freed


def sandbox_command(magics: Any, args: argparse.Namespace) -> Any:
    """Lists the sandbox tables (rows, real target) as pandas, or removes a pipeline's (``clear NAME``)."""
    root = sandbox.sandbox_root(args.dir)
    if args.target == "clear":
        if args.name is None:
            raise UsageError(SANDBOX_USAGE)
        print(f"removed {sandbox.clear(root, args.name)}")
        return None
    if args.name is not None:
        raise UsageError(SANDBOX_USAGE)
    return sandbox.listing(get_session(), root, args.target)


def run_options(magics: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``Pipeline.run``'s keywords for a cell's parsed options; ``--until`` keeps into the kernel's ``kept``."""
    return dict(metrics=args.metrics, emit=emit, raise_on_error=False, timeout=args.timeout,
                preview=args.preview, lineage=args.lineage, diff=args.diff, kept=magics.kept,
                **iterate_options(args))


class IterateCommands:
    """The magics' part for iterating on one step: the kernel's kept outputs."""

    @functools.cached_property
    def kept(self) -> KeptOutputs:
        """What ``--until`` kept in this kernel, for ``--from``."""
        return KeptOutputs()
