"""``%pipeline doctor [--spark]``: the doctor's table, plus what only a kernel knows (the widget frontend)."""
from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any

from ..doctor import Check, Report, diagnose


def _widgets(shell: Any) -> Check:
    """ipywidgets in the kernel and a frontend that may render them (the renderer's package)."""
    try:
        version = importlib.metadata.version("ipywidgets")
    except importlib.metadata.PackageNotFoundError:
        return Check("widget frontend", "warn", "ipywidgets is missing: results show as static tables",
                     "pip install ipywidgets")
    if getattr(shell, "kernel", None) is None:
        return Check("widget frontend", "info", f"ipywidgets {version}; not in a kernel, so no widgets")
    try:
        renderer = f"jupyterlab_widgets {importlib.metadata.version('jupyterlab_widgets')}"
    except importlib.metadata.PackageNotFoundError:
        renderer = "no jupyterlab_widgets here (the frontend may bring its own renderer)"
    return Check("widget frontend", "ok", f"ipywidgets {version}, {renderer}; a frontend without a renderer "
                 "gets the static result (--no-widgets forces it)")


def doctor_command(magics: Any, args: argparse.Namespace) -> Report:
    """Checks what the extension depends on, one row each with its fix (``--spark``: a session too)."""
    return diagnose(spark=args.spark, extra=(_widgets(magics.shell),))
