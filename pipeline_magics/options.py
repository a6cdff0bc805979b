"""The options a ``%%pipeline`` cell, ``%pipeline export|sdp`` and ``python -m pipeline_magics`` share.

Each is declared once here, with its help text; ``add`` puts some on an argparse parser
(the command line, the SDP subcommands), and the magic applies the same ones through
IPython's ``magic_arguments`` (``magic.shared``).
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
}


def add(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    """Adds the options ``names`` (keys of ``OPTIONS``) to ``parser``, in that order."""
    for name in names:
        flags, settings = OPTIONS[name]
        parser.add_argument(*flags, **settings)
    return parser
