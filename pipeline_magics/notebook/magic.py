"""IPython glue: ``%%pipeline`` and ``%pipeline``. Parse the line, parse the spec, run, render."""
from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import HTML, display
from traitlets import Int

from . import help as helptext
from ..secrets import vault
from .. import config
from ..run import history
from ..secrets.audit import audit_command
from .cells import wait, wait_async
from ..errors import PipelineCancelledError, PipelineError
from ..render.graph import build_graph
from .live import start_live
from .settings import SettingsMagics
from ..metrics.exporters import to_prometheus
from ..options import OPTIONS
from ..run.pipeline import Pipeline, PipelineResult, PlanView
from ..spec.schema import json_schema
from .sdp import export_command, sdp_command
from ..spark.session import get_session
from ..spec.model import parse_vars, suggest
from ..run.streaming import REGISTRY
from .vault_form import VaultLoginForm
from .completion import add_spec_matcher
from .doctor import doctor_command
from .lineage import lineage_command
from .diff import diff_command
from .iterate import IterateCommands, run_options


def shared(*names: str) -> Any:
    """The options ``names`` of ``options.OPTIONS`` as ``magic_arguments`` decorators, in that order."""
    def apply(func: Any) -> Any:
        for name in reversed(names):
            flags, settings = OPTIONS[name]
            func = argument(*flags, **settings)(func)
        return func

    return apply


SUBCOMMANDS = ("run", "test", "history", "list", "status", "stop", "metrics", "explain", "schema", "last-error",
               "help", "vault", "audit", "export", "sdp", "doctor", "lineage", "diff", "uncache", "sandbox")
SIMPLE_TYPES = (str, int, float, bool)


@magics_class
class PipelineMagics(SettingsMagics, IterateCommands):
    """The ``%%pipeline`` cell magic and the ``%pipeline`` line magic; every setting of config.py is a traitlet."""

    preview_rows = Int(10, help="Rows of the last DataFrame shown under the result.").tag(config=True)
    _cmd_diff = diff_command  # %pipeline diff (notebook/diff.py; its docstring is the subcommand's help)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.pipelines: dict[str, Pipeline] = {}
        self.results: dict[str, PipelineResult] = {}
        self.last_error: PipelineError | None = None
        self._explain_next = False

    @magic_arguments()
    @argument("name", nargs="?", help="the pipeline's name (overrides the spec's 'name')")
    @shared("mode", "var", "dry_run")
    @argument("--test", action="store_true", help="run the spec's tests (tests:) instead of the pipeline")
    @argument("--preview", action="store_true", help="read and transform, write nothing: what each load would do")
    @shared("diff", "no_widgets", "metrics")
    @argument("--export", action="store_true", help="bind every named DataFrame as a notebook variable")
    @shared("timeout", "spark", "lineage", "until", "from_step", "sample", "sandbox")
    @line_cell_magic
    def pipeline(self, line: str, cell: str | None = None) -> Any:
        """Runs a YAML pipeline spec (cell magic), or a subcommand (line magic).

        Cell:  %%pipeline [NAME] [options], then the YAML spec (options below).
        Line:  %pipeline SUBCOMMAND ...; `%pipeline help` lists the subcommands and every
               method, `%pipeline help METHOD` one method's settings.
        """
        if cell is None:
            return self._line(line)
        args, dry = self._cell_options(line)
        return self._guard(lambda: self._show(wait(self._start(cell, args, dry)), args))

    async def pipeline_async(self, line: str, cell: str | None = None) -> Any:
        """``%%pipeline`` (or ``%pipeline run``) as a coroutine the cell awaits (see ``await_pipeline_cells``).

        While a cell awaits, ipykernel 7 handles widget messages (a Cancel click) at once;
        while a cell blocks, they wait until it ends.
        """
        line = self.shell.var_expand(line, 1)  # `$name` and `{expr}` of the cell, as run_cell_magic does
        try:
            if cell is None:
                cell, args = self._read_spec(shlex.split(line)[1:])
                dry = args.dry_run
            else:
                args, dry = self._cell_options(line)
            return self._show(await wait_async(self._start(cell, args, dry)), args)
        except PipelineError as exc:
            self.last_error = exc
            raise

    def _cell_options(self, line: str) -> tuple[argparse.Namespace, bool]:
        """The cell's options, and whether it is a dry run (``--dry-run`` or ``%pipeline explain`` before)."""
        try:
            args = parse_argstring(self.pipeline, line)
        except SystemExit as exc:  # argparse's exit on bad options
            raise UsageError(f"bad %%pipeline options: {line!r}") from exc
        dry = args.dry_run or self._explain_next
        self._explain_next = False
        return args, dry

    def _start(self, text: str, args: argparse.Namespace, dry_run: bool = False) -> Any:
        """Parses and checks a spec, then runs it: the outcome (a plan view, a test report, a run's
        result), or, with widgets, the run working in the background for the cell to ``wait`` on."""
        try:
            variables = parse_vars(args.var)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        pipeline = Pipeline.from_yaml(text, variables, defaults=self._notebook_vars(), name=args.name, mode=args.mode)
        if dry_run:
            return PlanView(pipeline)
        spark = self._spark(args.spark) if args.spark else None  # None: the run starts one if need be, timed
        self.pipelines.pop(pipeline.name, None)  # the last cell's pipeline comes last
        self.pipelines[pipeline.name] = pipeline
        if args.test:
            return show_tests(pipeline.test(spark))
        options = run_options(self, args)
        if self._live(args):
            return start_live(pipeline, spark, options, self.preview_rows)
        try:
            return pipeline.run(spark, **options)
        except KeyboardInterrupt:
            pipeline.cancel()
            raise PipelineCancelledError("interrupted", pipeline=pipeline.name) from None

    def _show(self, outcome: Any, args: argparse.Namespace) -> Any:
        """A run's result is kept (``%pipeline status``), its frames bound with ``--export``, its error raised."""
        if not isinstance(outcome, PipelineResult):
            return outcome
        outcome.preview_rows = self.preview_rows
        self.results[outcome.name] = outcome
        if args.export:
            self.shell.user_ns.update(outcome.named_frames())
        if outcome.error is not None:
            if outcome.live != "static":  # else its live view has become this output already
                display(HTML(outcome._repr_html_()))
            raise outcome.error
        return outcome

    def _live(self, args: argparse.Namespace) -> bool:
        """Widgets where a kernel (and so possibly a widget frontend) is attached, unless turned off."""
        return (config.enabled("widgets") and config.enabled("live_view") and not args.no_widgets
                and getattr(self.shell, "kernel", None) is not None)

    def _line(self, line: str) -> Any:
        parts = shlex.split(line)
        if not parts:
            raise UsageError("usage: %pipeline " + "|".join(SUBCOMMANDS) + "  (or %%pipeline for a cell)")
        command, rest = parts[0], parts[1:]
        handler = getattr(self, "_cmd_" + command.replace("-", "_"), None)
        if command not in SUBCOMMANDS or handler is None:
            close = suggest(command, SUBCOMMANDS)
            raise UsageError(f"unknown subcommand '{command}'" + (f" — did you mean '{close}'?" if close else "")
                             + "; subcommands: " + ", ".join(SUBCOMMANDS))
        return self._guard(lambda: handler(rest))

    def _cmd_run(self, rest: list[str]) -> Any:
        """Runs a spec file: run FILE.yaml [cell options]."""
        text, args = self._read_spec(rest)
        return self._show(wait(self._start(text, args, args.dry_run)), args)

    def _read_spec(self, rest: list[str]) -> tuple[str, argparse.Namespace]:
        """FILE.yaml [cell options]: the file's text and the options."""
        if not rest:
            raise UsageError("usage: %pipeline run FILE.yaml [--var K=V] [--dry-run] [--metrics ...]")
        path, options = rest[0], " ".join(shlex.quote(r) for r in rest[1:])
        args = parse_argstring(self.pipeline, options)
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), args
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None

    def _cmd_test(self, rest: list[str]) -> Any:
        """Runs a spec's tests: test NAME (its last %%pipeline cell) | FILE.yaml [--var K=V]."""
        if not rest and not self.pipelines:
            raise UsageError("usage: %pipeline test [NAME|FILE.yaml] [--var K=V] (alone: the last %%pipeline cell)")
        rest = rest or [list(self.pipelines)[-1]]
        if rest[0] in self.pipelines and not os.path.exists(rest[0]):
            return show_tests(self.pipelines[rest[0]].test(self._spark(None)))
        path, options = rest[0], " ".join(shlex.quote(r) for r in rest[1:])
        return self._cmd_run([path, "--test", *shlex.split(options)])

    def _cmd_history(self, rest: list[str]) -> Any:
        """The run history as a DataFrame, with a chart: history [NAME] [--last N]."""
        parser = argparse.ArgumentParser(prog="%pipeline history", add_help=False)
        parser.add_argument("name", nargs="?")
        parser.add_argument("--last", type=int, default=None)
        try:
            args = parser.parse_args(rest)
        except SystemExit:
            raise UsageError("usage: %pipeline history [NAME] [--last N]") from None
        frame = history.read(args.name, args.last)
        display(HTML(history.chart_html(frame)))
        return frame

    def _cmd_export(self, rest: list[str]) -> Any:
        """Writes a spec as a Spark Declarative Pipelines project: export NAME|FILE.yaml --sdp DIR."""
        return export_command(self, rest)

    def _cmd_sdp(self, rest: list[str]) -> Any:
        """Runs an SDP project with the live view: sdp run|dry-run DIR [--full-refresh T,...]."""
        return wait(sdp_command(self, rest))

    def _cmd_explain(self, rest: list[str]) -> Any:
        """Draws the pipeline: explain FILE.yaml | NAME (its last run, by status) | alone: the next cell."""
        if rest and rest[0] in self.pipelines and not os.path.exists(rest[0]):
            result = self.results.get(rest[0])
            display(build_graph(self.pipelines[rest[0]].plan, result.metrics if result else None))
            return None
        if rest:
            return self._cmd_run([rest[0], "--dry-run", *rest[1:]])
        self._explain_next = True
        print("the next %%pipeline cell will be explained, not run")
        return None

    def _cmd_schema(self, rest: list[str]) -> None:
        """Prints the spec's JSON Schema."""
        print(json.dumps(json_schema(), indent=2))

    def _cmd_list(self, rest: list[str]) -> None:
        """Lists the kernel's pipelines and their streaming queries."""
        if not self.pipelines:
            print("no pipelines have run in this kernel")
        for name in self.pipelines:
            result = self.results.get(name)
            stream = REGISTRY.get(name)
            if stream is not None:
                stream.refresh()
            metrics = stream.run.metrics if stream else (result.metrics if result else None)
            status = metrics.status if metrics is not None else "running"  # as the run's status machine set it
            print(f"{name}: {status}")
            for q in stream.describe() if stream else []:
                state = "active" if q["active"] else ("failed: " + q["error"] if q["error"] else "stopped")
                print(f"  query {q['query']} ({state}), batch {q.get('batch_id', '—')}, "
                      f"{q.get('processed_rows_per_second') or 0:.1f} rows/s")

    def _cmd_status(self, rest: list[str]) -> Any:
        """Shows the step table (and query progress) of a pipeline: status [NAME]."""
        names = rest or list(self.results)
        for name in names:
            if name not in self.results:
                raise UsageError(f"no pipeline '{name}'; known: {', '.join(self.results) or 'none'}")
            stream = REGISTRY.get(name)
            if stream is not None:
                stream.refresh()
            print(self.results[name].metrics.to_text())
            for q in stream.describe() if stream else []:
                print(f"  query {q['query']}: {'active' if q['active'] else 'stopped'}, batch {q.get('batch_id')}, "
                      f"input {q.get('input_rows_per_second') or 0:.1f} rows/s, "
                      f"processed {q.get('processed_rows_per_second') or 0:.1f} rows/s"
                      + (f", error: {q['error']}" if q["error"] else ""))

    def _cmd_stop(self, rest: list[str]) -> None:
        """Stops a pipeline's run and its queries: stop NAME|--all."""
        names = list(self.pipelines) if rest == ["--all"] else rest
        if not names:
            raise UsageError("usage: %pipeline stop NAME|--all")
        for name in names:
            if name not in self.pipelines:
                raise UsageError(f"no pipeline '{name}'; known: {', '.join(self.pipelines) or 'none'}")
            self.pipelines[name].cancel()
            if REGISTRY.get(name) is not None:
                REGISTRY.stop(name)  # its end goes into the history
            print(f"stopped {name}")

    def _cmd_metrics(self, rest: list[str]) -> None:
        """Prints a pipeline's metrics: metrics NAME [--format prometheus|json|text]."""
        parser = argparse.ArgumentParser(prog="%pipeline metrics", add_help=False)
        parser.add_argument("name")
        parser.add_argument("--format", choices=["prometheus", "json", "text"], default="text")
        try:
            args = parser.parse_args(rest)
        except SystemExit:
            raise UsageError("usage: %pipeline metrics NAME [--format prometheus|json|text]") from None
        if args.name not in self.results:
            raise UsageError(f"no metrics for '{args.name}'; known: {', '.join(self.results) or 'none'}")
        m = self.results[args.name].metrics
        print({"json": m.to_json, "prometheus": lambda: to_prometheus(m), "text": m.to_text}[args.format]())

    def _cmd_last_error(self, rest: list[str]) -> None:
        """Shows everything about the last failure, the full trace included."""
        exc = self.last_error
        if exc is None:
            print("no pipeline has failed in this kernel")
            return
        print(f"{type(exc).__name__} [{exc.code}]: {exc}")
        if exc.config is not None:
            print("config:", json.dumps(exc.config, default=str))
        if exc.params:
            print("params:", json.dumps(exc.params, default=str))
        if exc.detail:
            print(exc.detail)

    def _cmd_vault(self, rest: list[str]) -> Any:
        """Vault for this kernel: vault login [--method M --username U | --token-env VAR] | logout | status."""
        try:
            args = vault.parse_args(rest)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.interactive and config.enabled("widgets") and getattr(self.shell, "kernel", None) is not None:
            return VaultLoginForm(address=args.address)  # the cell shows it; no secret ever enters it
        print(vault.command(args))
        return None

    def _cmd_audit(self, rest: list[str]) -> None:
        """This kernel's audited credential reads: audit [--pipeline NAME] [--last N] [--json]."""
        try:
            print(audit_command(rest))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    # commands kept in modules of their own (the function's docstring is the help line)
    _cmd_doctor = doctor_command
    _cmd_lineage = lineage_command

    def _cmd_help(self, rest: list[str]) -> None:
        """Lists subcommands and methods: help [METHOD | extract|transform|load | SUBCOMMAND]."""
        docs = {name: (getattr(self, "_cmd_" + name.replace("-", "_"), None).__doc__ or "").strip().split("\n")[0]
                for name in SUBCOMMANDS if hasattr(self, "_cmd_" + name.replace("-", "_"))}
        if not rest:
            print(helptext.overview(docs))
        elif rest[0] in helptext.TOPICS:
            print(helptext.topic_help(rest[0]))
        elif rest[0] in helptext.STEP_TYPES:
            print(helptext.method_list((rest[0],)))
        elif rest[0] in docs and rest[0] not in {n for _, n in helptext.METHODS}:
            print(f"%pipeline {rest[0]}: {docs[rest[0]] or 'see %pipeline?'}")
        else:
            try:
                display(helptext.method_help(rest[0]))
            except KeyError as exc:
                raise UsageError(exc.args[0]) from None

    def _guard(self, action: Any) -> Any:
        try:
            return action()
        except PipelineError as exc:
            self.last_error = exc
            raise

    def _notebook_vars(self) -> dict[str, Any]:
        ns = self.shell.user_ns if self.shell is not None else {}
        return {k: v for k, v in ns.items() if not k.startswith("_") and isinstance(v, SIMPLE_TYPES)}

    def _spark(self, expr: str | None) -> Any:
        if not expr:
            return get_session()
        if expr not in self.shell.user_ns:
            raise UsageError(f"--spark {expr}: no notebook variable '{expr}'")
        return self.shell.user_ns[expr]

    def _emit(self, kind: str, payload: Any) -> None:
        if kind == "display":
            display(payload)


def show_tests(report: Any) -> Any:
    """Shows a test report; a failed test fails the cell (so nbval and CI notice)."""
    if not report.ok:
        display(report)
        report.raise_for_failures()
    return report


def register_completions(shell: Any, magics: PipelineMagics) -> None:
    """Tab completion: ``%pipeline`` subcommands, pipeline names, methods, files; ``%%pipeline`` options, YAML."""

    def names() -> list[str]:
        return sorted(set(magics.pipelines) | set(magics.results) | set(REGISTRY.names()))

    def complete(_shell: Any, event: Any) -> list[str]:
        options = [s for a in PipelineMagics.pipeline.parser._actions for s in a.option_strings if s != "-h"]
        return helptext.complete(getattr(event, "text_until_cursor", None) or event.line, subcommands=SUBCOMMANDS,
                                 pipelines=names(), options=options)

    for key in ("%pipeline", "%%pipeline"):
        shell.set_hook("complete_command", complete, str_key=key)
    add_spec_matcher(shell)
