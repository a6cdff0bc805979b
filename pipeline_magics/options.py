"""The options a ``%%pipeline`` cell, the ``%pipeline`` subcommands and ``python -m pipeline_magics`` share.

Each is declared once here, with its help text; ``add`` puts some on an argparse parser
(the command line, the subcommands of ``notebook/commands.py``), and the cell magic applies
the same ones through IPython's ``magic_arguments`` (``magic.shared``).
"""
from __future__ import annotations

import argparse
from typing import Any

def lineage_target(text: str) -> str:
    """``--lineage``'s value: console, file:PATH or off."""
    if text in ("console", "off") or (text.startswith("file:") and len(text) > len("file:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use console, file:PATH or off")


OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "mode": (("--mode",), {"choices": ["batch", "streaming"], "help": "overrides the spec's mode"}),
    "var": (("--var",), {"action": "append", "default": [], "metavar": "KEY=VALUE",
                         "help": "sets ${KEY}; beats vars: in the spec (repeatable)"}),
    "dry_run": (("--dry-run",), {"action": "store_true", "help": "parse, validate and show the plan; nothing runs"}),
    "metrics": (("--metrics",), {"action": "append", "default": [], "metavar": "KIND[:PATH]",
                                 "help": "export metrics: prometheus:PATH, json:PATH or log (repeatable)"}),
    "timeout": (("--timeout",), {"type": float, "metavar": "SECONDS",
                                 "help": "streaming: block until the queries end or SECONDS pass"}),
    "no_widgets": (("--no-widgets",), {"action": "store_true", "help": "plain HTML output instead of live widgets"}),
    "lineage": (("--lineage",), {"metavar": "console|file:PATH", "type": lineage_target,
                                 "help": "send OpenLineage events to the console or a JSON-lines file (default: "
                                         "the lineage setting, else OPENLINEAGE_URL / OPENLINEAGE_CONFIG, else off)"}),
    "spark": (("--spark",), {"metavar": "EXPR", "help": "the notebook variable holding the SparkSession"}),
    "until": (("--until",), {"metavar": "STEP", "help": "run only what STEP needs, and STEP (no load); keep its "
                                                       "outputs for a later --from"}),
    "from_step": (("--from",), {"dest": "from_step", "metavar": "STEP",
                                "help": "reuse the kept outputs STEP reads; run STEP and what follows"}),
    "sample": (("--sample",), {"metavar": "N|N%", "help": "every extract reads at most N rows (or N%%); "
                                                          "implies --sandbox"}),
    "sandbox": (("--sandbox",), {"nargs": "?", "const": "", "metavar": "DIR",
                                 "help": "every load writes a Delta table under DIR/NAME/STEP (default: "
                                         "$PIPELINE_SANDBOX); real targets untouched"}),
    "diff": (("--diff",), {"action": "store_true",
                           "help": "with --preview: compare each table with what its load would leave, row by row"}),
    "test": (("--test",), {"action": "store_true", "help": "run the spec's tests (tests:) instead of the pipeline"}),
    "preview": (("--preview",), {"action": "store_true",
                                 "help": "read and transform, write nothing: what each load would do"}),
    "export": (("--export",), {"action": "store_true", "help": "bind every named DataFrame as a notebook variable"}),
}

#: a ``%%pipeline`` cell's options (and ``%pipeline run``'s), in the order ``%pipeline?`` lists them
CELL = ("mode", "var", "dry_run", "test", "preview", "diff", "no_widgets", "metrics", "export", "timeout", "spark",
        "lineage", "until", "from_step", "sample", "sandbox")

#: ``%pipeline diff`` and ``python -m pipeline_magics diff``: what a recorded run changed
DIFF_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "run": (("--run",), {"metavar": "RUN", "help": "the run (its id or a prefix; default: the latest)"}),
    "against": (("--against",), {"metavar": "RUN", "help": "compare the tables this earlier run left with "
                                                          "those --run left (default: before and after --run)"}),
    "step": (("--step",), {"metavar": "LOAD", "help": "only this load step"}),
    "keys": (("--keys",), {"metavar": "K,...", "help": "match rows on these columns (default: the load's diffKeys "
                                                      "or mergeKeys; none: whole rows)"}),
}
DIFF_USAGE = "diff NAME [--run RUN] [--against RUN] [--step LOAD] [--keys K,...]"


def add(parser: argparse.ArgumentParser, *names: str, table: dict[str, Any] = OPTIONS) -> argparse.ArgumentParser:
    """Adds the options ``names`` (keys of ``table``: ``OPTIONS`` unless told) to ``parser``, in that order."""
    for name in names:
        flags, settings = table[name]
        parser.add_argument(*flags, **settings)
    return parser


def diff_keys(text: str | None) -> list[str] | None:
    """``--keys a,b`` as a list (None: not given)."""
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


ITERATE = ("until", "from_step", "sample", "sandbox")


def iterate_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Pipeline.run``'s keywords for the ``ITERATE`` options of parsed ``args`` (``--sandbox`` alone: True)."""
    sandbox = args.sandbox if args.sandbox else (True if args.sandbox == "" else None)
    return dict(until=args.until, from_step=args.from_step, sample=args.sample, sandbox=sandbox)
