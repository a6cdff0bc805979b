"""The ``%pipeline`` subcommands, each declared once: its name, one-line help, argparse parser (built from
``options.OPTIONS``) and handler. Dispatch, ``%pipeline help`` and Tab completion are read from this table."""
from __future__ import annotations

import argparse
import glob
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from IPython.core.error import UsageError
from IPython.display import display

from . import help as helptext
from .. import options
from ..methods import METHODS
from ..render.graph import build_graph
from ..sdp.commands import export_arguments, sdp_arguments
from ..secrets import audit, vault
from ..spec.model import STEP_TYPES, suggest
from ..spec.schema import json_schema
from .cells import wait
from .diff import diff_command
from .doctor import doctor_command
from .iterate import sandbox_command, uncache_command
from .lineage import lineage_command
from .sdp import export_command, sdp_command
from .shell import notebook_spark
from .status import (history_command, last_error_command, list_command, metrics_command, status_command,
                     stop_command, vault_command)


class CommandParser(argparse.ArgumentParser):
    """argparse whose mistakes raise ``UsageError`` with the command's usage, instead of exiting."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog=prog, add_help=False, **kwargs)

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


@dataclass(frozen=True)
class Command:
    """One ``%pipeline`` subcommand."""

    name: str
    help: str
    parser: argparse.ArgumentParser
    handler: Callable[[Any, argparse.Namespace], Any]

    def parse(self, words: Sequence[str]) -> argparse.Namespace:
        """The subcommand's arguments; a usage mistake raises ``UsageError``."""
        return self.parser.parse_args(list(words))


NAME = ("name", {"nargs": "?", "metavar": "NAME", "help": "a pipeline of this kernel"})
NAMES = ("names", {"nargs": "*", "metavar": "NAME", "help": "pipelines of this kernel"})
TARGET = ("target", {"nargs": "?", "metavar": "NAME|FILE.yaml",
                     "help": "a pipeline of this kernel or a spec file (default: the last %%pipeline cell)"})


def _command(name: str, help: str, handler: Callable[[Any, argparse.Namespace], Any], *positionals: tuple,
             opts: Sequence[str] = (), fill: Callable[[argparse.ArgumentParser], Any] | None = None,
             **arguments: dict[str, Any]) -> Command:
    """A subcommand: ``positionals`` (dest, settings), ``opts`` of ``options.OPTIONS``, ``arguments`` as
    ``flag=settings`` (``--flag``), then what ``fill`` adds."""
    parser = CommandParser(f"%pipeline {name}")
    for dest, settings in positionals:
        parser.add_argument(dest, **settings)
    options.add(parser, *opts)
    for flag, settings in arguments.items():
        parser.add_argument("--" + flag.replace("_", "-"), **settings)
    if fill is not None:
        fill(parser)
    return Command(name, help, parser, handler)


def show_tests(report: Any) -> Any:
    """Shows a test report; a failed test fails the cell (so nbval and CI notice)."""
    if not report.ok:
        display(report)
        report.raise_for_failures()
    return report


def read_spec(path: str) -> str:
    """A spec file's text; one that cannot be read is a usage mistake."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def run_file(magics: Any, args: argparse.Namespace) -> Any:
    """``run``: the spec file run as a ``%%pipeline`` cell with these options."""
    return magics.show(wait(magics.start(read_spec(args.spec), args, args.dry_run)), args)


def _as_run(target: str, **overrides: Any) -> argparse.Namespace:
    """``run TARGET``'s arguments, with ``overrides``."""
    ran = COMMANDS["run"].parse([target])
    vars(ran).update(overrides)
    return ran


def _kernel_pipeline(magics: Any, target: str | None) -> Any:
    """The kernel's pipeline called ``target``, unless a file of that name exists (None then)."""
    return magics.pipelines.get(target) if target and not os.path.exists(target) else None


def test_command(magics: Any, args: argparse.Namespace) -> Any:
    """``test``: the tests of a kernel's pipeline, or of a spec file."""
    if args.target is None and not magics.pipelines:
        raise UsageError("usage: %pipeline test [NAME|FILE.yaml] [--var K=V] (alone: the last %%pipeline cell)")
    target = args.target or list(magics.pipelines)[-1]
    pipeline = _kernel_pipeline(magics, target)
    if pipeline is not None:
        return show_tests(pipeline.test(notebook_spark(magics.shell, None)))
    return run_file(magics, _as_run(target, var=args.var, test=True))


def explain_command(magics: Any, args: argparse.Namespace) -> None:
    """``explain``: a kernel's pipeline drawn (by its last run's status), a spec file's plan, or the next cell's."""
    pipeline = _kernel_pipeline(magics, args.target)
    if pipeline is not None:
        result = magics.results.get(args.target)
        display(build_graph(pipeline.plan, result.metrics if result else None))
        return None
    if args.target:
        return run_file(magics, _as_run(args.target, var=args.var, mode=args.mode, dry_run=True))
    magics.explain_next = True
    print("the next %%pipeline cell will be explained, not run")
    return None


def help_command(magics: Any, args: argparse.Namespace) -> None:
    """``help``: the subcommands and methods; one method's settings, a step type's methods, a topic, a subcommand."""
    topic = args.topic
    if topic is None:
        print(helptext.overview({c.name: c.help for c in COMMANDS.values()}))
    elif topic in helptext.TOPICS:
        print(helptext.topic_help(topic))
    elif topic in STEP_TYPES:
        print(helptext.method_list((topic,)))
    elif topic in COMMANDS and topic not in {n for _, n in METHODS}:
        command = COMMANDS[topic]
        print(f"%pipeline {topic}: {command.help}")
        if command.parser._actions:
            print("\n" + command.parser.format_help().rstrip())
    else:
        try:
            display(helptext.method_help(topic))
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None


COMMANDS: dict[str, Command] = {c.name: c for c in (
    _command("run", "Runs a spec file: run FILE.yaml [cell options].", run_file,
             ("spec", {"metavar": "FILE.yaml", "help": "the spec file"}),
             ("name", {"nargs": "?", "help": "the pipeline's name (overrides the spec's 'name')"}), opts=options.CELL),
    _command("test", "Runs a spec's tests: test NAME (its last %%pipeline cell) | FILE.yaml [--var K=V].",
             test_command, TARGET, opts=("var",)),
    _command("history", "The run history as a DataFrame, with a chart: history [NAME] [--last N].", history_command,
             NAME, last={"type": int, "metavar": "N", "help": "only the last N runs"}),
    _command("list", "Lists the kernel's pipelines and their streaming queries.", list_command),
    _command("status", "Shows the step table (and query progress) of a pipeline: status [NAME].", status_command,
             NAMES),
    _command("stop", "Stops a pipeline's run and its queries: stop NAME|--all.", stop_command, NAMES,
             all={"action": "store_true", "help": "every pipeline of this kernel"}),
    _command("metrics", "Prints a pipeline's metrics: metrics NAME [--format prometheus|json|text].",
             metrics_command, ("name", {"metavar": "NAME", "help": "a pipeline of this kernel"}),
             format={"choices": ["prometheus", "json", "text"], "default": "text"}),
    _command("explain", "Draws the pipeline: explain FILE.yaml | NAME (its last run, by status) | alone: the next "
             "cell.", explain_command, TARGET, opts=("mode", "var")),
    _command("schema", "Prints the spec's JSON Schema.", lambda magics, args: print(json.dumps(json_schema(),
                                                                                                indent=2))),
    _command("last-error", "Shows everything about the last failure, the full trace included.", last_error_command),
    _command("help", "Lists subcommands and methods: help [METHOD | extract|transform|load | SUBCOMMAND].",
             help_command, ("topic", {"nargs": "?", "metavar": "METHOD|TYPE|SUBCOMMAND|TOPIC"})),
    _command("vault", "Vault for this kernel: vault login [--method M --username U | --token-env VAR] | logout | "
             "status.", vault_command, fill=vault.arguments),
    _command("audit", "This kernel's audited credential reads: audit [--pipeline NAME] [--last N] [--json].",
             lambda magics, args: print(audit.audit_command(args)), fill=audit.arguments),
    _command("export", "Writes a spec as a Spark Declarative Pipelines project: export NAME|FILE.yaml --sdp DIR.",
             export_command, fill=export_arguments),
    _command("sdp", "Runs an SDP project with the live view: sdp run|dry-run DIR [--full-refresh T,...].",
             lambda magics, args: wait(sdp_command(magics, args)), opts=("no_widgets", "spark"), fill=sdp_arguments),
    _command("doctor", "Checks what the extension depends on, one row each with its fix: doctor [--spark].",
             doctor_command, spark={"action": "store_true", "help": "also start a Spark session and report it"}),
    _command("lineage", "Draws the last run's column lineage: lineage [NAME] [--column C].", lineage_command, NAME,
             column={"metavar": "C", "help": "only what this output column comes from"}),
    _command("diff", "What a run changed, row by row: " + options.DIFF_USAGE + ".", diff_command, NAME,
             fill=lambda p: options.add(p, *options.DIFF_OPTIONS, table=options.DIFF_OPTIONS)),
    _command("uncache", "Frees the outputs --until kept: uncache [NAME] (alone: all); returns what it freed, with "
             "sizes.", uncache_command, NAME),
    _command("sandbox", "Lists the sandbox tables (rows, real target): sandbox [NAME]; removes them: sandbox clear "
             "NAME.", sandbox_command, ("target", {"nargs": "?", "metavar": "clear|NAME",
                                            "help": "a pipeline's tables, or 'clear' to remove them"}), NAME,
             dir={"metavar": "DIR", "help": "the sandbox folder (default: $PIPELINE_SANDBOX)"}),
)}


def dispatch(magics: Any, words: Sequence[str]) -> Any:
    """Runs ``%pipeline WORDS``: the subcommand named first, with the rest parsed by its parser."""
    if not words:
        raise UsageError("usage: %pipeline " + "|".join(COMMANDS) + "  (or %%pipeline for a cell)")
    command = COMMANDS.get(words[0])
    if command is None:
        close = suggest(words[0], COMMANDS)
        raise UsageError(f"unknown subcommand '{words[0]}'" + (f" — did you mean '{close}'?" if close else "")
                         + "; subcommands: " + ", ".join(COMMANDS))
    return command.handler(magics, command.parse(words[1:]))


# --------------------------------------------------------------- completion

#: a ``%%pipeline`` line's options, for completion (the magic applies the same ones through ``magic_arguments``)
CELL_PARSER = options.add(CommandParser("%%pipeline"), *options.CELL)


def complete(text_until_cursor: str, pipelines: Iterable[str] = (), cwd: str | None = None) -> list[str]:
    """Candidates for the word under the cursor in a ``%pipeline`` or ``%%pipeline`` line, from the table."""
    words = text_until_cursor.split()
    if not words:
        return []
    current = "" if text_until_cursor[-1:].isspace() else words.pop()
    if not words:  # still typing the magic's own name
        return []
    if words[0].startswith("%%"):
        parser, args = CELL_PARSER, words[1:]
    elif len(words) == 1:
        return sorted(c for c in COMMANDS if c.startswith(current))
    elif words[1] in COMMANDS:
        parser, args = COMMANDS[words[1]].parser, words[2:]
    else:
        return []
    kinds: dict[str, Callable[[], Sequence[str]]] = {  # what a metavar's part stands for
        "NAME": lambda: sorted(set(pipelines)), "FILE.yaml": lambda: _spec_files(current, cwd),
        "KIND[:PATH]": lambda: ("prometheus:", "json:", "log"), "METHOD": lambda: sorted({n for _, n in METHODS}),
        "TYPE": lambda: STEP_TYPES, "SUBCOMMAND": lambda: list(COMMANDS), "TOPIC": lambda: helptext.TOPICS}
    values, flags, required = _candidates(parser, args, kinds)
    offered = values + (flags if current.startswith("-") or not required else [])
    return sorted({c for c in offered if c.startswith(current)})


def _values(action: argparse.Action, kinds: dict[str, Callable[[], Sequence[str]]]) -> list[str]:
    """What an argument's value may be: its choices, else what the parts of its metavar name (``NAME|FILE.yaml``:
    the kernel's pipelines and spec files); a lowercase part is a word as it is (``clear|NAME``)."""
    if action.choices:
        return list(action.choices)
    parts = str(action.metavar or "").split("|")
    return [w for part in parts for w in (kinds[part]() if part in kinds else [part] if part.islower() else [])]


def _candidates(parser: argparse.ArgumentParser, args: list[str],
                kinds: dict[str, Callable[[], Sequence[str]]]) -> tuple[list[str], list[str], bool]:
    """After ``args``: the values the next word may take, the options not given yet, and whether a value is
    required there (a positional, or an option's value)."""
    flags = {s: a for a in parser._actions for s in a.option_strings}
    if args and args[-1] in flags and flags[args[-1]].nargs not in (0, "?"):
        return _values(flags[args[-1]], kinds), [], True
    given, filled, skip = set(), 0, False
    for word in args:
        if skip:
            skip = False
        elif word in flags:
            given.add(flags[word])
            skip = flags[word].nargs not in (0, "?")
        elif not word.startswith("-"):
            filled += 1
    unused = [s for a in parser._actions if a.option_strings and (a not in given or a.default == [])
              for s in a.option_strings[:1]]
    for action in (a for a in parser._actions if not a.option_strings):
        if action.nargs in ("*", "+") or filled == 0:
            return _values(action, kinds), unused, action.nargs is None
        filled -= 1
    return [], unused, False


def _spec_files(prefix: str, cwd: str | None) -> list[str]:
    """Folders and ``.yaml``/``.yml`` files whose path starts with ``prefix``."""
    base = cwd or os.getcwd()
    out = []
    for path in glob.glob(os.path.join(base, glob.escape(os.path.expanduser(prefix)) + "*")):
        shown = prefix + path[len(os.path.join(base, os.path.expanduser(prefix))):]
        if os.path.isdir(path):
            out.append(shown + "/")
        elif path.endswith((".yaml", ".yml")):
            out.append(shown)
    return out

