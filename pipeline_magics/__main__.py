"""Headless runs: ``python -m pipeline_magics run SPEC.yaml [--var K=V] [--dry-run] [--metrics KIND[:PATH]]``.

Exit status: 0 done, 1 a run or a spec's test failed, 2 a spec to fix or a usage mistake (``errors.exit_status``).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any, Sequence

from . import options
from .doctor import diagnose
from .errors import PipelineError, SpecTestError, exit_status
from .spark import jars as spark_jars
from .spark.causes import root_cause
from .spark.versions import local_line, pyspark_version
from .run.changes import run_diffs
from .run.diff import DiffSet
from .run.pipeline import Pipeline
from .spark.session import get_session
from .spec.schema import json_schema
from .sdp.commands import cli_export, cli_sdp, export_arguments, sdp_arguments
from .spec.model import parse_vars


def run(spec_path: str, variables: dict[str, str], dry_run: bool = False, metrics: Sequence[str] = (),
        name: str | None = None, mode: str | None = None, out: Any = None,
        timeout: float | None = None, lineage: str | None = None, iterate: dict[str, Any] | None = None) -> int:
    """Runs one spec file; prints the step table and a preview; returns the exit code.

    ``iterate``: ``--until``/``--from``/``--sample``/``--sandbox`` (``options.iterate_options``); outputs kept
    by ``--until`` live only as long as this process, so ``--from`` finds none here."""
    out = out or sys.stdout  # the stdout of the call (a test's capture), not of the import
    pipeline = Pipeline.from_file(spec_path, variables, name=name, mode=mode)
    if dry_run:
        print(pipeline.explain(), file=out)
        return 0
    previous = signal.signal(signal.SIGTERM, lambda *_: pipeline.cancel())
    try:
        result = pipeline.run(metrics=list(metrics), timeout=timeout, lineage=lineage, **(iterate or {}),
                              emit=lambda kind, frame: print(frame.to_string(index=False), file=out))
        if result.stream is not None and result.stream.active and timeout is not None:
            result.stop()  # --timeout passed: the run ends here
        elif result.stream is not None and result.stream.active:
            # Headless streaming runs until the queries end, SIGTERM, or Ctrl-C.
            print(f"streaming: {', '.join(q.name for q in result.queries)} (SIGTERM or Ctrl-C stops)",
                  file=out, flush=True)
            try:
                result.await_termination()
            except KeyboardInterrupt:
                result.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.metrics.to_text(reasons=True), file=out)
    last = result.last_frame
    try:
        if last is not None and not last.isStreaming:
            print(last.limit(20).toPandas().to_string(index=False), file=out)
    except Exception as exc:  # noqa: BLE001 - the run is done; a preview that cannot be read does not fail it
        # e.g. a Spark Connect 3.5 client's sql frame, which reads the temp views the run has dropped
        print(f"no preview of the last step: {root_cause(exc)[0]}", file=sys.stderr)
    return 0


def jars(list_only: bool = False, out: Any = None) -> int:
    """Fetches (or lists) the jars of the installed pyspark's version."""
    out = out or sys.stdout  # the stdout of the call (a test's capture), not of the import
    packages = local_line().packages(pyspark_version())
    if list_only:
        print("\n".join(packages), file=out)
        return 0
    print(f"Spark {pyspark_version()}: {', '.join(packages)} -> {spark_jars.fetch()}", file=out)
    return 0


def test(spec_path: str, variables: dict[str, str], junit_xml: str | None = None, names: Sequence[str] = (),
         out: Any = None) -> int:
    """Runs a spec file's tests; prints the table; 0 when all pass, 1 when one fails."""
    out = out or sys.stdout  # the stdout of the call (a test's capture), not of the import
    report = Pipeline.from_file(spec_path, variables).test(names=names or None)
    print(repr(report), file=out)
    if junit_xml:
        with open(junit_xml, "w", encoding="utf-8") as fh:
            fh.write(report.junit_xml())
    return 0 if report.ok else SpecTestError.exit_code


def diff(name: str, run_id: str | None = None, against: str | None = None, step: str | None = None,
         keys: Sequence[str] | None = None, preview: bool = False, variables: dict[str, str] | None = None,
         out: Any = sys.stdout) -> int:
    """Prints what a recorded run changed in its tables (``preview``: what the spec file ``name`` would change)."""
    if preview:
        diffs = Pipeline.from_file(name, variables or {}).run(preview=True, diff=True).diff or DiffSet()
    else:
        diffs = run_diffs(get_session(), name, run_id, against, step, keys)
    print(repr(diffs), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m pipeline_magics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a spec file")
    p_run.add_argument("spec")
    p_run.add_argument("--name", help="the pipeline's name (overrides the spec's 'name')")
    options.add(p_run, "mode", "var", "dry_run", "metrics", "timeout", "lineage", *options.ITERATE)
    p_test = sub.add_parser("test", help="run a spec file's tests (exit 1 when one fails)")
    p_test.add_argument("spec")
    options.add(p_test, "var")
    p_test.add_argument("--junit-xml", metavar="PATH", help="also write the results as JUnit XML")
    p_test.add_argument("--test", action="append", default=[], metavar="NAME", help="run only this test")
    p_diff = sub.add_parser("diff", help="what a recorded run changed in its tables, row by row")
    p_diff.add_argument("name", help="the pipeline (with --preview: a spec file)")
    options.add(p_diff, *options.DIFF_OPTIONS, table=options.DIFF_OPTIONS)
    p_diff.add_argument("--preview", action="store_true", help="compare each table with what the spec's loads "
                                                               "would leave; nothing is written")
    options.add(p_diff, "var")
    sub.add_parser("schema", help="print the spec's JSON Schema")
    p_jars = sub.add_parser("jars", help="fetch the Delta Lake, Kafka and JDBC jars for the installed pyspark")
    p_jars.add_argument("--list", action="store_true", help="print the Maven coordinates instead")
    p_doctor = sub.add_parser("doctor", help="check what pipeline_magics depends on (exit 1 when something "
                                             "required fails)")
    p_doctor.add_argument("--spark", action="store_true", help="also start a Spark session and report it")
    export_arguments(sub.add_parser("export", help="write a spec as an SDP project: export SPEC.yaml --sdp DIR"))
    sdp_arguments(sub.add_parser("sdp", help="run an SDP project: sdp run|dry-run DIR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "doctor":
            report = diagnose(spark=args.spark)
            print(report.to_text())
            return 0 if report.ok else SpecTestError.exit_code
        if args.command in ("export", "sdp"):
            return (cli_export if args.command == "export" else cli_sdp)(args)
        if args.command == "schema":
            print(json.dumps(json_schema(), indent=2))
            return 0
        if args.command == "jars":
            return jars(args.list)
        if args.command == "diff":
            return diff(args.name, args.run, args.against, args.step, options.diff_keys(args.keys), args.preview,
                        parse_vars(args.var))
        if args.command == "test":
            return test(args.spec, parse_vars(args.var), args.junit_xml, args.test)
        return run(args.spec, parse_vars(args.var), args.dry_run, args.metrics, args.name, args.mode,
                   timeout=args.timeout, lineage=args.lineage, iterate=options.iterate_options(args))
    except (PipelineError, OSError, ValueError) as exc:  # one line; the status is the error's class's
        print(f"{type(exc).__name__ if isinstance(exc, PipelineError) else 'error'}: {exc}", file=sys.stderr)
        return exit_status(exc)

if __name__ == "__main__":
    sys.exit(main())
