"""The sandbox (``--sandbox [DIR]``): every load writes a Delta table under ``DIR/<pipeline>/<step>`` instead of
its real target, whatever that target's kind.

``sandboxed`` puts a Delta load in place of a load step: same input, same write mode (a mode that refuses
an existing target, ``error`` or ``ignore``, overwrites: each sandbox run starts that table afresh), its
checkpoint under ``DIR/<pipeline>/_checkpoints/<step>``. A merge or change-data-capture load starts each
run from a shallow clone of its real Delta target (no data copied; the clone's own commits never reach the
real table), so it computes against real state. ``DIR/<pipeline>/_sandbox.json`` says which real target
each sandbox table stands for; ``listing`` reads it, ``clear`` removes a pipeline's sandbox.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import shutil
from typing import Any

from .. import config
from ..errors import IterateError
from ..methods import METHODS
from ..methods import delta
from ..methods.load import to_delta
from ..methods.registry import StepContext
from ..secrets.redaction import redact
from ..spec.model import Step
from ..spec.plan import PlannedStep

#: the sinks a sandbox replaces (memory tables and display touch nothing outside the session)
REPLACED = frozenset({"delta", "jdbc", "kafka", "files"})
KEYED = frozenset({"merge", "scd1", "scd2"})
INDEX = "_sandbox.json"
CHECKPOINTS = "_checkpoints"


def sandbox_root(folder: str | None = None) -> str:
    """The sandbox folder: ``folder``, else the ``sandbox`` setting (``PIPELINE_SANDBOX``)."""
    return os.path.abspath(os.path.expanduser(folder or config.value("sandbox") or "~/.pipeline_magics/sandbox"))


def real_target(step: Step) -> str:
    """What a load writes for real, in words (secrets masked): ``delta /lake/x``, ``postgres public.t``, ..."""
    cfg = redact(step.config)
    if step.method == "toDelta":
        return f"delta {cfg.get('table') or cfg.get('path')}"
    if step.method == "toPostgres":
        return f"postgres {cfg.get('table')}"
    if step.method == "toKafka":
        return f"kafka topic {cfg.get('topic')}"
    return f"{step.method.removeprefix('to').lower()} files {cfg.get('path')}"


def _mode(planned: PlannedStep) -> str:
    """The sandbox table's write mode for the load's own."""
    mode = planned.step.config.get("mode")
    if not isinstance(mode, str):
        field = planned.method.config.model_fields.get("mode")
        mode = field.default if field is not None else "append"
    return mode if mode in KEYED or mode in ("append", "overwrite") else "overwrite"


def sandboxed(planned: PlannedStep, root: str, pipeline: str, streaming: bool) -> PlannedStep:
    """``planned`` (a load) writing a Delta table under ``root`` instead of its real target."""
    real = planned.step
    if planned.method.sink not in REPLACED:
        return planned
    mode = _mode(planned)
    settings: dict[str, Any] = {"path": os.path.join(root, pipeline, planned.label), "mode": mode}
    copied = ["partitionBy"] + (["mergeKeys", "sequenceBy", "deleteWhen", "exceptColumns"] if mode in KEYED else [])
    settings.update({k: real.config[k] for k in copied if real.method == "toDelta" and k in real.config})
    checkpoint = os.path.join(root, pipeline, CHECKPOINTS, planned.label)
    if streaming:
        settings.update(checkpointLocation=checkpoint, queryName=f"{pipeline}.{planned.label}.sandbox")
        settings.update({k: real.config[k] for k in ("trigger", "outputMode") if k in real.config
                         and (k == "trigger" or real.method == "toDelta")})
    func = functools.partial(_write, real=real, root=root, checkpoint=checkpoint if streaming else None)
    method = dataclasses.replace(METHODS[("load", "toDelta")], func=func)
    return dataclasses.replace(planned, step=real.model_copy(update={"method": "toDelta", "config": settings}),
                               method=method)


def _write(ctx: StepContext, cfg: Any, *, real: Step, root: str, checkpoint: str | None) -> Any:
    """The sandbox load: a fresh clone first for a merge or CDC load, then the Delta write; the index updated."""
    target = real_target(real)
    if cfg.mode in KEYED:
        shutil.rmtree(cfg.path, ignore_errors=True)
        if checkpoint:  # the clone starts afresh, and so does the stream that merges into it
            shutil.rmtree(checkpoint, ignore_errors=True)
        path, table = real.config.get("path"), real.config.get("table")
        if real.method == "toDelta" and delta.exists(ctx.spark, path, table):
            ctx.spark.sql(f"CREATE TABLE {delta.table_ref(cfg.path, None)} SHALLOW CLONE {delta.table_ref(path, table)}")
            ctx.record.extra["cloned_from"] = table or path
    out = to_delta(ctx, cfg)
    _index(root, ctx.pipeline, ctx.step_name, {"target": target, "method": real.method, "path": cfg.path,
                                               "written": dt.datetime.now().isoformat(timespec="seconds")})
    how = "on a shallow clone of" if "cloned_from" in ctx.record.extra else "instead of"
    ctx.record.extra.update(wrote_to=cfg.path, real_target=target)
    ctx.record.note = f"sandbox: wrote {cfg.path} {how} {target} (untouched)"
    return out


def _index(root: str, pipeline: str, step: str, entry: dict[str, Any]) -> None:
    folder = os.path.join(root, pipeline)
    os.makedirs(folder, exist_ok=True)
    index = read_index(folder)
    index[step] = entry
    with open(os.path.join(folder, INDEX), "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=1)


def read_index(folder: str) -> dict[str, dict[str, Any]]:
    """A pipeline's sandbox index: step -> its real target, method, path and when it was written."""
    try:
        with open(os.path.join(folder, INDEX), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def listing(spark: Any, root: str, name: str | None = None) -> Any:
    """The sandbox tables (of pipeline ``name``, else all) as pandas: pipeline, step, rows, real target, path."""
    import pandas as pd

    names = [name] if name else sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))) \
        if os.path.isdir(root) else []
    rows = []
    for pipeline in names:
        for step, entry in read_index(os.path.join(root, pipeline)).items():
            try:
                count: int | None = spark.read.format("delta").load(entry["path"]).count()
            except Exception:  # noqa: BLE001 - a table removed by hand, or a stream that has written nothing yet
                count = None
            rows.append({"pipeline": pipeline, "step": step, "rows": count, "real target": entry["target"],
                         "sandbox": entry["path"], "written": entry.get("written")})
    return pd.DataFrame(rows, columns=["pipeline", "step", "rows", "real target", "sandbox", "written"])


def clear(root: str, name: str) -> str:
    """Removes pipeline ``name``'s sandbox (its tables and checkpoints); returns the folder removed."""
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
        known = sorted(os.listdir(root)) if os.path.isdir(root) else []
        raise IterateError(f"no sandbox for '{name}' under {root}", code="SANDBOX_UNKNOWN",
                           hint="sandboxes: " + (", ".join(known) or "none"))
    shutil.rmtree(folder)
    return folder
