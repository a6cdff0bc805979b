"""A diff of a table (``run.diff.Diff``) as HTML: the counts, the columns changed, the schema changes,
and the examples of each kind with the changed values marked. Plain HTML from pandas; no IPython."""
from __future__ import annotations

import html
from typing import Any

ADDED, REMOVED, MARK = "#e8f5e9", "#ffebee", "#fff59d"


def _value(value: Any) -> str:
    try:
        if value is None or value != value:  # None or NaN: a NULL
            return "<i>null</i>"
    except (TypeError, ValueError):  # an array or a struct
        pass
    return html.escape(str(value))


def _table(frame: Any, colour: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(f"<tr style='background:{colour}'>" + "".join(f"<td>{_value(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _changed(frame: Any, diff: Any) -> str:
    """Keys, then each changed column's value: unchanged ones plain, changed ones marked ``before → after``."""
    shown = [c for c, n in diff.columns.items() if n]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (*diff.keys, *shown))
    body = ""
    for _, row in frame.iterrows():
        changed = set(row[("changed_columns", "")])
        cells = "".join(f"<td>{_value(row[(k, '')])}</td>" for k in diff.keys)
        for c in shown:
            before, after = row[(c, "before")], row[(c, "after")]
            cells += (f"<td style='background:{MARK}'>{_value(before)} → <b>{_value(after)}</b></td>" if c in changed
                      else f"<td>{_value(after)}</td>")
        body += f"<tr>{cells}</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def diff_html(diff: Any) -> str:
    """One load's diff."""
    title = (f"<b>{html.escape(diff.step + ': ' if diff.step else '')}{html.escape(diff.target)}</b> "
             f"({html.escape(diff.before)} → {html.escape(diff.after)})")
    if diff.note:
        return f"<div class='pipeline-diff'><p>{title}: {html.escape(diff.note)}</p></div>"
    counts = diff.counts
    matched = f"matched on {', '.join(map(html.escape, diff.keys))}" if diff.keys else "whole rows compared"
    out = (f"<div class='pipeline-diff'><p>{title}: <span style='background:{ADDED}'>{counts.get('added', 0):,}"
           f" added</span>, <span style='background:{REMOVED}'>{counts.get('removed', 0):,} removed</span>, "
           f"<span style='background:{MARK}'>{counts.get('changed', 0):,} changed</span> ({matched})</p>")
    columns = [(c, n) for c, n in diff.columns.items() if n]
    if columns:
        out += "<p>values changed per column: " + ", ".join(f"{html.escape(c)} {n:,}" for c, n in columns) + "</p>"
    if diff.schema_changes:
        out += "<p>schema: " + ", ".join(
            html.escape(f"{c['column']} {c['change']}" + (f" {c['from']} → {c['to']}" if c["change"] == "type" else
                                                          f" ({c['to'] or c['from']})"))
            for c in diff.schema_changes) + "</p>"
    for kind, colour in (("added", ADDED), ("removed", REMOVED), ("changed", MARK)):
        frame = diff.examples.get(kind)
        if frame is None or frame.empty:
            continue
        table = _changed(frame, diff) if kind == "changed" and diff.keys else _table(frame, colour)
        more = f" (first {len(frame)} of {counts[kind]:,})" if counts[kind] > len(frame) else ""
        out += f"<details><summary>{kind}{more}</summary>{table}</details>"
    return out + "</div>"


def diffs_html(diffs: Any) -> str:
    """The diffs of several loads, one after the other."""
    return "".join(diff_html(d) for d in diffs) or "<i>no loads to compare</i>"
