"""``%pipeline export NAME --sdp DIR`` and ``%pipeline sdp run|dry-run DIR`` in a notebook."""
from __future__ import annotations

import os
from typing import Any, Sequence

from IPython.core.error import UsageError
from IPython.display import display

from ..errors import PipelineCancelledError
from ..sdp.commands import export_parser, parse, sdp_options, sdp_parser
from ..sdp.connect import require_sdp
from ..sdp.export import Project, export, export_pipeline
from ..sdp.run import SdpRun, run_project
from ..spec.model import parse_vars
from .cells import Background
from .live import settle
from .widgets import PipelineView


def export_command(magics: Any, rest: Sequence[str]) -> Project:
    """export NAME|FILE.yaml --sdp DIR: NAME is a pipeline of an earlier ``%%pipeline NAME`` cell."""
    try:
        args = parse(export_parser("%pipeline export"), rest)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
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
    return export(text, args.sdp, parse_vars(args.var), magics._notebook_vars(), args.name, args.mode)


def sdp_command(magics: Any, rest: Sequence[str]) -> Any:
    """sdp run|dry-run DIR [options]: the run's result, or, with widgets, the run in the background (``cells.wait``)."""
    try:
        args = parse(sdp_parser("%pipeline sdp"), rest)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = sdp_options(args)
    spark = magics._spark(args.spark)
    job = SdpRun(args.project, dry=options["dry"], full_refresh=args.full_refresh,
                 full_refresh_all=args.full_refresh_all, refresh=args.refresh)
    if not magics._live(args):
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
