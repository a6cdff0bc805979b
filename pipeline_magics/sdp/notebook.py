"""``%pipeline export NAME --sdp DIR`` and ``%pipeline sdp run|dry-run DIR`` in a notebook."""
from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from IPython.core.error import UsageError
from IPython.display import display

from ..notebook.widgets import PipelineView
from ..spec.model import parse_vars
from ..errors import PipelineCancelledError
from .commands import export_parser, parse, sdp_options, sdp_parser
from .connect import require_sdp
from .export import Project, export, export_pipeline
from .run import SdpRun, run_project


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
    """sdp run|dry-run DIR [options], as a cell generator (see ``cells.drive``)."""
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
    display(view.widget)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = run_project(args.project, spark, metrics=args.metrics, sdp_run=job,
                                            on_update=lambda _: view.refresh())
        except BaseException as exc:  # noqa: BLE001 - handed to the cell's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"sdp-{job.spec.name}", daemon=True)
    worker.start()
    try:
        yield worker
    except KeyboardInterrupt:
        job.cancel()
        worker.join(60)
        raise PipelineCancelledError("interrupted", pipeline=job.spec.name) from None
    finally:
        view.refresh.flush()
    if "error" in outcome:
        raise outcome["error"]
    outcome["result"].live = True
    return outcome["result"]

