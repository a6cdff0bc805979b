"""What a ``%pipeline`` command reads from the notebook: its variables, its SparkSession, whether widgets can show."""
from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from .. import config
from ..spark.session import get_session

SIMPLE_TYPES = (str, int, float, bool)


def notebook_vars(shell: Any) -> dict[str, Any]:
    """The notebook's plain variables (str, int, float, bool), the defaults of a spec's ``${var}``."""
    ns = shell.user_ns if shell is not None else {}
    return {k: v for k, v in ns.items() if not k.startswith("_") and isinstance(v, SIMPLE_TYPES)}


def notebook_spark(shell: Any, expr: str | None) -> Any:
    """The SparkSession in the notebook variable ``expr`` (``--spark``); none named: the kernel's own."""
    if not expr:
        return get_session()
    if expr not in shell.user_ns:
        raise UsageError(f"--spark {expr}: no notebook variable '{expr}'")
    return shell.user_ns[expr]


def wants_widgets(shell: Any, no_widgets: bool) -> bool:
    """Widgets where a kernel (and so possibly a widget frontend) is attached, unless turned off."""
    return (config.enabled("widgets") and config.enabled("live_view") and not no_widgets
            and getattr(shell, "kernel", None) is not None)


def emit(kind: str, payload: Any) -> None:
    """A run's ``emit`` in a notebook: what it asks to display is displayed."""
    if kind == "display":
        display(payload)
