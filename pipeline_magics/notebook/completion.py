"""Tab completion inside a ``%%pipeline`` cell's YAML, from the kernel: every frontend that asks the kernel
(JupyterLab, Notebook 7, VS Code) gets it.

After ``method:`` the methods of the step's ``type`` (all of them without one); on a key under a step's
``config:`` (block or flow style) the settings of its method. The step around the cursor is read from the
cell's lines as YAML's layout puts it (the cell need not parse while it is being typed). An IPython
matcher (API v2) that answers for a cell's body and leaves Python's completions out there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher

from ..methods import METHODS
from ..spec.model import STEP_TYPES, PipelineSpec, Step

MAGIC = "%%pipeline"
IDENTIFIER = "pipeline_magics.spec"
_METHOD = re.compile(r"^( *)(- +)?(?:\{.*[{,] *)?method: *[\"']?([\w-]*)$")
_TYPE = re.compile(r"^( *)(- +)?(?:\{.*[{,] *)?type: *[\"']?([\w-]*)$")
_BLOCK_KEY = re.compile(r"^( *)(- +)?([\w-]*)$")
_FLOW_KEY = re.compile(r"^( *)(- +)?(?:\{.*[{,] *)?config: *\{(?:[^{}]*, *)?([\w-]*)$")
_INLINE = re.compile(r"\b(type|method): *[\"']?([\w-]+)")


@dataclass(frozen=True)
class _Line:
    """A line of the YAML body: its indent, where its content starts (after ``- ``), its ``key: value``."""

    indent: int
    col: int
    item: bool
    key: str | None
    value: str


def _parse(text: str) -> _Line | None:
    """A line as :class:`_Line`; None when blank or a comment."""
    spaces, dash, rest = re.match(r"^( *)(- +)?(.*)$", text).groups()  # type: ignore[union-attr]
    dash = dash or ""
    if not dash and (not rest.strip() or rest.startswith("#")):
        return None
    pair = re.match(r"^([\w-]+):(?:\s+[\"']?([\w-]*))?", rest)
    return _Line(len(spaces), len(spaces) + len(dash), bool(dash), pair.group(1) if pair else None,
                 (pair.group(2) or "") if pair else "")


def _mapping_at(lines: list[str], at: int, col: int) -> dict[str, str]:
    """The ``key: value`` pairs of the block mapping (a step) whose keys sit at column ``col`` around line ``at``;
    a flow-style step (``- {type: ..., method: ...}``) on its own line counts too."""
    fields = dict(_INLINE.findall(lines[at]))
    for step in (-1, 1):
        n = at if step < 0 else at + 1
        while 1 <= n < len(lines):
            line = _parse(lines[n])
            n += step
            if line is None or (line.col > col and line.indent >= col):
                continue  # blank, a comment or nested deeper
            if line.col != col or (line.item and step > 0):
                break  # the mapping's parent, or the next list item
            if line.key:
                fields.setdefault(line.key, line.value)
            if line.item:
                break  # the first line of this list item
    return fields


def _settings(step: dict[str, str]) -> list[str]:
    """The settings of the step's method (of its type, if it names one)."""
    for (type_, name), method in sorted(METHODS.items()):
        if name == step.get("method") and step.get("type") in (None, type_):
            return sorted(field.alias or attr for attr, field in method.config.model_fields.items())
    return []


def spec_completions(text: str, line: int, column: int) -> tuple[str, list[str], str] | None:
    """For the cursor at ``line``/``column`` of a cell's ``text``: (the word typed, its candidates, their kind:
    ``method``, ``value``, ``setting`` or ``key``); None outside a ``%%pipeline`` cell's YAML or where nothing completes."""
    lines = text.split("\n")
    if not lines[0].startswith(MAGIC) or not 0 < line < len(lines):
        return None
    before = lines[line][:column]
    method, type_ = _METHOD.match(before), _TYPE.match(before)
    if method:
        of = _mapping_at(lines, line, len(method.group(1)) + len(method.group(2) or "")).get("type")
        names = sorted({n for t, n in METHODS if t == of or of not in STEP_TYPES})
        return _starting(method.group(3), names, "method")
    if type_:
        return _starting(type_.group(3), STEP_TYPES, "value")
    flow = _FLOW_KEY.match(before)
    if flow:
        step = _mapping_at(lines, line, len(flow.group(1)) + len(flow.group(2) or ""))
        return _starting(flow.group(3), _settings(step), "setting")
    key = _BLOCK_KEY.match(before)
    if key:
        indent = len(key.group(1))
        return _key(lines, line, indent, indent + len(key.group(2) or ""), bool(key.group(2)), key.group(3))
    return None


def _starting(word: str, names: Any, kind: str) -> tuple[str, list[str], str]:
    return word, sorted(n for n in names if n.startswith(word)), kind


def _key(lines: list[str], line: int, indent: int, col: int, item: bool, word: str) -> tuple[str, list[str], str] | None:
    """A key being typed at column ``col``: a setting under ``config:``, a step's key, or the spec's own."""
    if col == 0:
        return _starting(word, _fields(PipelineSpec), "key")
    limit = indent if item else col
    for n in range(line - 1, 0, -1):  # up to the parent: the nearest line above that starts left of this key
        above = _parse(lines[n])
        if above is None:
            continue
        if not item and above.item and above.col == col:  # the first line of this list item: its parent decides
            item, limit = True, above.indent
        elif above.col < limit:
            if item:
                return _starting(word, _fields(Step), "key") if above.key == "steps" else None
            if above.key == "config" and not above.value:
                return _starting(word, _settings(_mapping_at(lines, n, above.col)), "setting")
            return None
    return None


def _fields(model: Any) -> list[str]:
    return [field.alias or attr for attr, field in model.model_fields.items()]


def spec_matches(context: CompletionContext, files: Callable[[CompletionContext], Any]) -> SimpleMatcherResult:
    """An IPython matcher's answer in a ``%%pipeline`` cell's YAML: methods, types, settings and keys, else
    ``files``' (a path being typed); Python's completions are left out there."""
    in_body = context.full_text.startswith(MAGIC) and context.cursor_line > 0
    found = spec_completions(context.full_text, context.cursor_line, context.cursor_position) if in_body else None
    if found is None:
        paths = files(context) if in_body else {"completions": []}
        return {**paths, "suppress": in_body}  # suppresses the others only when it has something itself
    word, names, kind = found
    kind = {"method": "function", "setting": "param", "key": "keyword"}.get(kind, "value")
    return {"completions": [SimpleCompletion(n, type=kind) for n in names], "matched_fragment": word,
            "suppress": True}


def add_spec_matcher(shell: Any) -> None:
    """Adds the matcher of ``%%pipeline`` cells' YAML to the shell's completer (once)."""
    completer = shell.Completer
    if any(getattr(m, "matcher_identifier", "") == IDENTIFIER for m in completer.custom_matchers):
        return

    @context_matcher(priority=100, identifier=IDENTIFIER)
    def matcher(context: CompletionContext) -> SimpleMatcherResult:
        return spec_matches(context, completer.file_matcher)

    completer.custom_matchers.append(matcher)
