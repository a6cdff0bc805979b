"""IPython glue: ``%%pipeline`` and ``%pipeline``. Parse the line, parse the spec, run, render."""
from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import HTML, display
from traitlets import Int

from ..errors import PipelineCancelledError, PipelineError
from ..options import CELL, OPTIONS
from ..run.pipeline import Pipeline, PipelineResult, PlanView
from ..run.streaming import REGISTRY
from ..spec.model import parse_vars
from .cells import wait, wait_async
from .commands import COMMANDS, complete, dispatch, read_spec, show_tests
from .completion import add_spec_matcher
from .iterate import IterateCommands, run_options
from .live import start_live
from .settings import SettingsMagics
from .shell import notebook_spark, notebook_vars, wants_widgets


def shared(*names: str) -> Any:
    """The options ``names`` of ``options.OPTIONS`` as ``magic_arguments`` decorators, in that order."""
    def apply(func: Any) -> Any:
        for name in reversed(names):
            flags, settings = OPTIONS[name]
            func = argument(*flags, **settings)(func)
        return func

    return apply


@magics_class
class PipelineMagics(SettingsMagics, IterateCommands):
    """The ``%%pipeline`` cell magic and the ``%pipeline`` line magic; every setting of config.py is a traitlet."""

    preview_rows = Int(10, help="Rows of the last DataFrame shown under the result.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.pipelines: dict[str, Pipeline] = {}
        self.results: dict[str, PipelineResult] = {}
        self.last_error: PipelineError | None = None
        self.explain_next = False  # set by `%pipeline explain` alone

    @magic_arguments()
    @argument("name", nargs="?", help="the pipeline's name (overrides the spec's 'name')")
    @shared(*CELL)
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
        return self._guard(lambda: self.show(wait(self.start(cell, args, dry)), args))

    async def pipeline_async(self, line: str, cell: str | None = None) -> Any:
        """``%%pipeline`` (or ``%pipeline run``) as a coroutine the cell awaits (see ``await_pipeline_cells``).

        While a cell awaits, ipykernel 7 handles widget messages (a Cancel click) at once;
        while a cell blocks, they wait until it ends.
        """
        line = self.shell.var_expand(line, 1)  # `$name` and `{expr}` of the cell, as run_cell_magic does
        try:
            if cell is None:
                args = COMMANDS["run"].parse(shlex.split(line)[1:])
                cell, dry = read_spec(args.spec), args.dry_run
            else:
                args, dry = self._cell_options(line)
            return self.show(await wait_async(self.start(cell, args, dry)), args)
        except PipelineError as exc:
            self.last_error = exc
            raise

    def _cell_options(self, line: str) -> tuple[argparse.Namespace, bool]:
        """The cell's options, and whether it is a dry run (``--dry-run`` or ``%pipeline explain`` before)."""
        try:
            args = parse_argstring(self.pipeline, line)
        except SystemExit as exc:  # argparse's exit on bad options
            raise UsageError(f"bad %%pipeline options: {line!r}") from exc
        dry = args.dry_run or self.explain_next
        self.explain_next = False
        return args, dry

    def start(self, text: str, args: argparse.Namespace, dry_run: bool = False) -> Any:
        """Parses and checks a spec, then runs it: the outcome (a plan view, a test report, a run's
        result), or, with widgets, the run working in the background for the cell to ``wait`` on."""
        try:
            variables = parse_vars(args.var)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        pipeline = Pipeline.from_yaml(text, variables, defaults=notebook_vars(self.shell), name=args.name,
                                      mode=args.mode)
        if dry_run:
            return PlanView(pipeline)
        # None: the run starts one if need be, timed
        spark = notebook_spark(self.shell, args.spark) if args.spark else None
        self.pipelines.pop(pipeline.name, None)  # the last cell's pipeline comes last
        self.pipelines[pipeline.name] = pipeline
        if args.test:
            return show_tests(pipeline.test(spark))
        options = run_options(self, args)
        if wants_widgets(self.shell, args.no_widgets):
            return start_live(pipeline, spark, options, self.preview_rows)
        try:
            return pipeline.run(spark, **options)
        except KeyboardInterrupt:
            pipeline.cancel()
            raise PipelineCancelledError("interrupted", pipeline=pipeline.name) from None

    def show(self, outcome: Any, args: argparse.Namespace) -> Any:
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

    def _line(self, line: str) -> Any:
        return self._guard(lambda: dispatch(self, shlex.split(line)))

    def _guard(self, action: Any) -> Any:
        try:
            return action()
        except PipelineError as exc:
            self.last_error = exc
            raise


def register_completions(shell: Any, magics: PipelineMagics) -> None:
    """Tab completion: ``%pipeline`` and ``%%pipeline`` lines from the subcommand table, a cell's YAML."""

    def complete_line(_shell: Any, event: Any) -> list[str]:
        names = set(magics.pipelines) | set(magics.results) | set(REGISTRY.names())
        return complete(getattr(event, "text_until_cursor", None) or event.line, pipelines=names)

    for key in ("%pipeline", "%%pipeline"):
        shell.set_hook("complete_command", complete_line, str_key=key)
    add_spec_matcher(shell)
