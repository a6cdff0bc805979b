"""The ``export --sdp`` and ``sdp run|dry-run`` commands: their arguments, shared by the magic and the CLI."""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from .. import options
from ..spec.model import parse_vars
from .connect import require_sdp
from .export import export
from .run import SdpRun, run_project


def _tables(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def export_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``export SPEC|NAME --sdp DIR [--var K=V] [--name N] [--mode M]``'s arguments to ``p``."""
    p.add_argument("spec", metavar="NAME|FILE.yaml",
                   help="a spec file (or, in a notebook, the NAME of an earlier %%pipeline cell)")
    p.add_argument("--sdp", required=True, metavar="DIR", help="the project folder to write")
    p.add_argument("--name", help="the pipeline's name (overrides the spec's 'name')")
    return options.add(p, "var", "mode")


def sdp_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``sdp run|dry-run DIR [--full-refresh T,...|--full-refresh-all|--refresh T,...] [--metrics ...]``'s
    arguments to ``p``."""
    p.add_argument("action", choices=["run", "dry-run"])
    p.add_argument("project", metavar="DIR", help="the project folder (or its spark-pipeline.yml)")
    p.add_argument("--full-refresh", type=_tables, action="extend", default=[], metavar="T,...",
                   help="tables to reset and recompute")
    p.add_argument("--full-refresh-all", action="store_true", help="reset and recompute every table")
    p.add_argument("--refresh", type=_tables, action="extend", default=[], metavar="T,...",
                   help="update only these tables")
    return options.add(p, "metrics")  # the notebook adds --no-widgets and --spark


def sdp_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``run_project`` for parsed ``sdp`` options; ValueError for a usage mistake."""
    if args.full_refresh_all and (args.full_refresh or args.refresh):
        raise ValueError("--full-refresh-all cannot be combined with --full-refresh or --refresh")
    return dict(dry=args.action == "dry-run", full_refresh=args.full_refresh, full_refresh_all=args.full_refresh_all,
                refresh=args.refresh, metrics=args.metrics)


def cli_export(args: argparse.Namespace, out: Any = None) -> int:
    """``python -m pipeline_magics export SPEC.yaml --sdp DIR``."""
    out = out or sys.stdout  # the stdout of the call (a test's capture), not of the import
    require_sdp()
    with open(args.spec, encoding="utf-8") as fh:
        project = export(fh.read(), args.sdp, parse_vars(args.var), name=args.name, mode=args.mode)
    print(repr(project), file=out)
    return 0


def cli_sdp(args: argparse.Namespace, out: Any = None) -> int:
    """``python -m pipeline_magics sdp run|dry-run DIR``: prints each flow as it changes, then the table."""
    out = out or sys.stdout  # the stdout of the call (a test's capture), not of the import
    options = sdp_options(args)
    job = SdpRun(args.project, dry=options["dry"], full_refresh=args.full_refresh,
                 full_refresh_all=args.full_refresh_all, refresh=args.refresh)
    seen: dict[str, str] = {}

    def changed(metrics: Any) -> None:
        for s in metrics.steps:
            if seen.get(s.step) != s.status:
                seen[s.step] = s.status
                print(f"flow {s.step}: {s.status}", file=out, flush=True)

    previous = signal.signal(signal.SIGTERM, lambda *_: job.cancel())
    try:
        result = run_project(args.project, metrics=args.metrics, on_update=changed, sdp_run=job)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.metrics.to_text(), file=out)
    return 0

