"""The run history: one JSON line per step of every run, under ``$PIPELINE_HISTORY``.

Each run's lines go to their own file, ``<root>/<pipeline>/<run id>.jsonl``, in one
``O_APPEND`` write made by a background thread, so the cell's result never waits for the
disk and concurrent runs (threads of one kernel, or processes) never interleave or lose a
line. A streaming run is recorded when its cell returns and again when it ends; the reader
keeps the latest line per run and step. Errors are masked; no setting's value is stored.
"""
from __future__ import annotations

import atexit
import datetime as dt
import glob
import hashlib
import html
import json
import os
import queue
import threading
from typing import Any

from .. import config
from ..render.palette import BLUE, GREY, STATUS_COLOURS
from ..secrets.redaction import redact

DEFAULT_ROOT = os.path.join("~", ".pipeline_magics", "history")
COLUMNS = ["run_id", "pipeline", "spec_hash", "mode", "run_status", "step_index", "step", "method", "status",
           "start", "end", "duration", "rows_in", "rows_out", "failed_rows", "failed_rules", "error",
           "target", "delta_before", "delta_after"]


def root() -> str | None:
    """The history folder, or None when ``PIPELINE_HISTORY=none`` turns the history off."""
    value = (config.value("history") or "").strip()
    if value.lower() in ("none", "off", "false", "0"):
        return None
    return os.path.expanduser(value or DEFAULT_ROOT)


def spec_hash(spec: Any) -> str:
    """A short hash of the spec's content (its secrets redacted first; tests left out)."""
    data = redact(spec.model_dump(mode="json", exclude={"tests"}))
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _time(seconds: float | None) -> str | None:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat() if seconds else None


def lines_of(run: Any) -> list[dict[str, Any]]:
    """The history lines of a run (``engine.Run``): one per step."""
    m, spec = run.metrics, run.plan.spec
    digest = spec_hash(spec)
    out = []
    for s in m.steps:
        rules = s.failed_rules
        if not isinstance(rules, dict):
            label = s.expectation
            rules = {str(label): s.failed_rows} if label and s.failed_rows is not None else {}
        out.append({
            "run_id": m.run_id, "pipeline": m.pipeline, "spec_hash": digest, "mode": spec.mode,
            "run_status": m.status, "step_index": s.index, "step": s.step, "method": f"{s.type}.{s.method}",
            "status": s.status, "start": _time(s.start), "end": _time(s.end), "duration": s.duration,
            "rows_in": s.rows_in, "rows_out": s.rows_out, "failed_rows": s.failed_rows,
            "failed_rules": {str(k): v for k, v in rules.items()},
            "error": run.mask(s.error) if s.error else None,
            # a load's target and the Delta versions before and after its commits (``%pipeline diff``)
            "target": s.target, "delta_after": s.delta_version,
            "delta_before": s.delta_first_version - 1 if s.delta_first_version is not None else None,
        })
    return out


class _Writer:
    """One daemon thread that appends queued lines to their files."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self, path: str, data: bytes) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, name="pipeline-history", daemon=True)
                self.thread.start()
        self.queue.put((path, data))

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is not None:
                    append(*item)
            except OSError:  # a history that cannot be written never fails a run
                pass
            finally:
                self.queue.task_done()

    def flush(self) -> None:
        """Waits until every queued line is on disk."""
        self.queue.join()


WRITER = _Writer()
atexit.register(WRITER.flush)


def append(path: str, data: bytes) -> None:
    """Appends ``data`` to ``path`` in one write (``O_APPEND``: concurrent writers never interleave)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def record(run: Any) -> None:
    """Queues the run's lines for writing; returns at once."""
    folder = root()
    if folder is None:
        return
    lines = lines_of(run)
    data = "".join(json.dumps(line, default=str) + "\n" for line in lines).encode()
    WRITER.submit(os.path.join(folder, run.metrics.pipeline, f"{run.metrics.run_id}.jsonl"), data)


def flush() -> None:
    """Waits for queued history lines to be written."""
    WRITER.flush()


def read(pipeline: str | None = None, last: int | None = None, folder: str | None = None) -> Any:
    """The history as a pandas DataFrame, one row per step of a run, oldest run first."""
    import pandas as pd

    flush()
    folder = folder or root()
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if folder is not None:
        for path in glob.glob(os.path.join(folder, pipeline or "*", "*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for text in fh:
                    try:
                        line = json.loads(text)
                    except ValueError:  # a line cut short by a crash
                        continue
                    rows[(line["run_id"], line["step_index"])] = line  # the latest line wins
    frame = pd.DataFrame(list(rows.values()), columns=COLUMNS)
    if frame.empty:
        return frame
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    begun = frame.groupby("run_id")["start"].min().sort_values()
    runs = list(begun.index[-last:] if last else begun.index)
    frame = frame[frame["run_id"].isin(runs)]
    order = {r: i for i, r in enumerate(runs)}
    frame = frame.assign(_order=frame["run_id"].map(order)).sort_values(["_order", "step_index"])
    return frame.drop(columns="_order").reset_index(drop=True)


def runs(frame: Any) -> Any:
    """One row per run: pipeline, status, start, duration, rows written (loads) and rows read."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=["run_id", "pipeline", "run_status", "start", "duration", "rows"])
    loads = frame[frame["method"].str.startswith("load.")]
    grouped = frame.groupby("run_id", sort=False)
    out = pd.DataFrame({
        "pipeline": grouped["pipeline"].first(), "run_status": grouped["run_status"].last(),
        "start": grouped["start"].min(),
        "duration": (grouped["end"].max() - grouped["start"].min()).dt.total_seconds(),
        "rows": loads.groupby("run_id")["rows_out"].sum(min_count=1).reindex(grouped.size().index),
    })
    return out.reset_index()


def chart_html(frame: Any) -> str:
    """A small bar chart of rows written and duration per run (plain HTML, no plotting library)."""
    table = runs(frame)
    if table.empty:
        return "<i>no runs recorded yet</i>"
    import pandas as pd

    top_rows = max(float(pd.to_numeric(table["rows"], errors="coerce").fillna(0).max()), 1.0)
    top_time = max(float(pd.to_numeric(table["duration"], errors="coerce").fillna(0).max()), 1e-9)
    cells = []
    for number, r in enumerate(table.itertuples(index=False), 1):
        rows = 0 if r.rows != r.rows or r.rows is None else int(r.rows)
        seconds = 0.0 if r.duration != r.duration else float(r.duration)
        colour = STATUS_COLOURS.get(r.run_status, GREY)
        cells.append(
            f"<tr><td title='run id {html.escape(str(r.run_id))}'>{number}</td><td>{html.escape(str(r.pipeline))}</td>"
            f"<td style='color:{colour}'>{html.escape(str(r.run_status))}</td>"
            f"<td><div title='{rows} rows' style='background:{BLUE};height:8px;width:{120 * rows / top_rows:.0f}px'>"
            f"</div></td><td style='text-align:right'>{rows:,}</td>"
            f"<td><div title='{seconds:.1f} s' style='background:#9e9e9e;height:8px;"
            f"width:{120 * seconds / top_time:.0f}px'></div></td><td style='text-align:right'>{seconds:.1f}s</td></tr>")
    return ("<table class='pipeline-history'><thead><tr><th>run</th><th>pipeline</th><th>status</th>"
            "<th colspan=2>rows written</th><th colspan=2>duration</th></tr></thead><tbody>"
            + "".join(cells) + "</tbody></table>")
