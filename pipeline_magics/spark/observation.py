"""Reading a batch ``Observation`` without blocking: the one API here that differs between Spark versions.

A classic Observation's ``get`` waits until its action has run, forever if it never reaches the
observed node; whether the figures are there is asked first. Spark 4.2's JVM Observation has a
``future``; 4.0 and 4.1 have ``getOrEmpty``; 3.5 has neither, so its private ``metrics`` field
(a volatile ``Option``, filled by the same listener that wakes ``get``) is read by reflection.
Spark Connect's figures come with the command's result, so ``get`` never waits there (3.5's
Connect client has none: its Observation cannot be read at all).
"""
from __future__ import annotations

from typing import Any

from .kind import is_classic
from .versions import session_version


def _filled(jo: Any) -> bool:
    """Whether a JVM Observation holds its figures, asked without waiting for them."""
    try:
        return bool(jo.future().isCompleted())  # Spark 4.2 (``getOrEmpty`` is gone)
    except Exception:  # noqa: BLE001 - older Spark
        pass
    try:
        return not jo.getOrEmpty().isEmpty()  # Spark 4.0, 4.1
    except Exception:  # noqa: BLE001 - older Spark
        pass
    field = jo.getClass().getDeclaredField("metrics")  # Spark 3.5: only the blocking ``get``
    field.setAccessible(True)
    return bool(field.get(jo).isDefined())


def observed(obs: Any) -> dict[str, Any]:
    """An Observation's figures if its action has run, else ``{}`` (never blocks)."""
    jo = getattr(obs, "_jo", None)
    if jo is not None:
        # Classic Spark: ``get`` would wait forever if the action never reached the node.
        try:
            if not _filled(jo):
                return {}
        except Exception:  # noqa: BLE001 - a missing figure is not an error
            return {}
    try:
        return dict(obs.get)
    except Exception:  # noqa: BLE001
        return {}


def observes_any_frame(spark: Any) -> bool:
    """Whether an Observation may sit on any frame of a run. Always on classic Spark; on Spark Connect from
    client 4.2: before it, the client merges a join's or a union's observations with ``dict(**left, **right)``,
    which fails (``got multiple values for keyword argument``) when one observed frame feeds both sides,
    as it does in an scd2 load."""
    if is_classic(spark):
        return True
    import pyspark

    return tuple(int(part) for part in pyspark.__version__.split(".")[:2]) >= (4, 2)


def counts_merge_source(spark: Any) -> bool:
    """True where an Observation on the source of a Delta ``MERGE`` counts every row the MERGE reads:
    classic Spark 4.1 and later. Spark 4.0 with Delta 4.0 reports an execution that saw none of them
    (0 for a source holding the rows counted); Spark Connect sends no figures back for a MERGE."""
    if not is_classic(spark):
        return False
    major, minor = (int(part) for part in session_version(spark).split(".")[:2])
    return (major, minor) >= (4, 1)
