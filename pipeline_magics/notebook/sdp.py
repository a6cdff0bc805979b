"""``%pipeline export NAME --sdp DIR`` and ``%pipeline sdp run|dry-run DIR`` in a notebook."""
from __future__ import annotations

import argparse
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from ..errors import PipelineCancelledError
from ..sdp.commands import sdp_options
from ..sdp.connect import require_sdp
from ..sdp.export import Project, export, export_pipeline
from ..sdp.run import SdpRun, run_project
from ..spec.model import parse_vars
from .cells import Background
from .live import settle
from .shell import notebook_spark, notebook_vars, wants_widgets
from .widgets import PipelineView


def export_command(magics: Any, args: argparse.Namespace) -> Project:
    """Writes a spec file, or a pipeline of an earlier ``%%pipeline NAME`` cell, as an SDP project."""
    require_sdp()
    if args.spec in magics.pipelines and not os.path.isfile(args.spec):
        return export_pipeline(magics.pipelines[args.spec], args.sdp)
    try:
        with open(args.spec, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        known = ", ".join(sorted(magics.pipelines)) or "none yet"
        raise UsageError(f"%pipeline export: '{args.spec}' is neither a spec file nor a pipeline of this kernel "
                         f"(pipelines: {known})") from None
    return export(text, args.sdp, parse_vars(args.var), notebook_vars(magics.shell), args.name, args.mode)


def sdp_command(magics: Any, args: argparse.Namespace) -> Any:
    """Runs an SDP project: the run's result, or, with widgets, the run in the background (``cells.wait``)."""
    try:
        options = sdp_options(args)
    except ValueError as exc:
        raise UsageError(f"%pipeline sdp: {exc}") from None
    spark = notebook_spark(magics.shell, args.spark)
    job = SdpRun(args.project, dry=options["dry"], full_refresh=args.full_refresh,
                 full_refresh_all=args.full_refresh_all, refresh=args.refresh)
    if not wants_widgets(magics.shell, args.no_widgets):
        try:
            return run_project(args.project, spark, metrics=args.metrics, sdp_run=job)
        except KeyboardInterrupt:
            job.cancel()
            raise PipelineCancelledError("interrupted", pipeline=job.spec.name) from None
    view = PipelineView(job.metrics, job.cancel)
    handle = display(view.widget, display_id=True)

    def work() -> Any:
        return run_project(args.project, spark, metrics=args.metrics, sdp_run=job, on_update=lambda _: view.refresh())

    return Background(job.spec.name, work, job.cancel, shown=lambda result: settle(view, handle, result))
