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

SANDBOX_USAGE = "usage: %pipeline sandbox [NAME] [--dir DIR] | sandbox clear NAME [--dir DIR]"


def uncache_command(magics: Any, rest: list[str]) -> Any:
    """Frees the outputs --until kept: uncache [NAME] (alone: all); returns what it freed, with sizes."""
    if len(rest) > 1:
        raise UsageError("usage: %pipeline uncache [NAME]")
    freed = magics.kept.drop(rest[0] if rest else None)
    total = int(freed["bytes"].fillna(0).sum())
    print(f"freed {len(freed)} kept output{'s' if len(freed) != 1 else ''}" + (f" ({total:,} bytes)" if total else "")
          if len(freed) else "no kept outputs" + (f" of '{rest[0]}'" if rest else " in this kernel"))
    return freed


def sandbox_command(magics: Any, rest: list[str]) -> Any:
    """Lists the sandbox tables (rows, real target): sandbox [NAME]; removes them: sandbox clear NAME."""
    parser = argparse.ArgumentParser(prog="%pipeline sandbox", add_help=False)
    parser.add_argument("words", nargs="*")
    parser.add_argument("--dir", default=None)
    try:
        args = parser.parse_args(rest)
    except SystemExit:
        raise UsageError(SANDBOX_USAGE) from None
    root = sandbox.sandbox_root(args.dir)
    if args.words[:1] == ["clear"]:
        if len(args.words) != 2:
            raise UsageError(SANDBOX_USAGE)
        print(f"removed {sandbox.clear(root, args.words[1])}")
        return None
    if len(args.words) > 1:
        raise UsageError(SANDBOX_USAGE)
    return sandbox.listing(get_session(), root, args.words[0] if args.words else None)


def run_options(magics: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``Pipeline.run``'s keywords for a cell's parsed options; ``--until`` keeps into the kernel's ``kept``."""
    return dict(metrics=args.metrics, emit=magics._emit, raise_on_error=False, timeout=args.timeout,
                preview=args.preview, lineage=args.lineage, diff=args.diff, kept=magics.kept,
                **iterate_options(args))


class IterateCommands:
    """The magics' part for iterating on one step: the kernel's kept outputs and their subcommands."""

    _cmd_uncache = uncache_command
    _cmd_sandbox = sandbox_command

    @functools.cached_property
    def kept(self) -> KeptOutputs:
        """What ``--until`` kept in this kernel, for ``--from``."""
        return KeptOutputs()
