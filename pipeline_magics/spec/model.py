"""The pipeline spec: YAML with line marks, ``${var}`` interpolation, pydantic models.

``parse_spec`` turns YAML text into a frozen :class:`PipelineSpec` whose
:attr:`PipelineSpec.marks` maps every path in the document (``("steps", 0,
"config", "path")``) to its 1-based line and column, so later checks (method
settings, inputs, policies) can point at the line they are about.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import SpecError
from ..secrets.redaction import redact

Path = tuple[Any, ...]
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
STEP_TYPES = ("extract", "transform", "load")


class Frozen(BaseModel):
    """Strict and immutable: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(Frozen):
    """How often a step is tried on a transient failure, and the first back-off."""

    attempts: int = Field(3, ge=1, le=20, description="tries in all, the first included")
    backoffSeconds: float = Field(1.0, ge=0, le=600, description="wait before the 2nd try; doubles each time, with jitter")


class Step(Frozen):
    """One extract, transform or load step."""

    type: Literal["extract", "transform", "load"]
    method: str = Field(description="the method name, e.g. fromCsv, filterRows, toDelta")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="names the output DataFrame (and a temp view for sql)")
    input: str | None = Field(None, description="the input DataFrame's name; default: the previous step's output")
    inputs: list[str] | None = Field(None, description="several inputs, for join/union/sql")
    config: dict[str, Any] = Field(default_factory=dict, description="the method's settings")
    cache: bool = False
    cacheStorageLevel: str | None = Field(None, description="a pyspark.StorageLevel name, e.g. MEMORY_AND_DISK")
    retry: RetryPolicy | None = None
    description: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type}.{self.method}"

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (redact(value) if key == "config" else value)


class GivenRows(Frozen):
    """Rows that replace an extract step's output in a test."""

    schema_: str | None = Field(None, alias="schema", description="a DDL schema, e.g. 'id INT, amount DOUBLE'")
    rows: list[dict[str, Any]] = Field(description="the rows, one mapping of column to value each")


class SpecTest(Frozen):
    """A test inside the spec: given rows per extract, the expected rows per named step (or an error)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    given: dict[str, GivenRows] = Field(description="an extract step's name -> rows replacing its output")
    expect: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="a named step -> its exact rows (order ignored; the columns the rows mention)")
    expectError: str | None = Field(None, description="the run must fail with this text in its message")


class PipelineSpec(Frozen):
    """A whole pipeline: name, mode, vars, Spark confs and the steps."""

    name: str = Field("pipeline", pattern=NAME_PATTERN)
    mode: Literal["batch", "streaming"] = "batch"
    description: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict, description="defaults for ${...}")
    spark: dict[str, Any] = Field(default_factory=dict, description="runtime SQL confs set for the run")
    steps: list[Step] = Field(min_length=1)
    tests: list[SpecTest] = Field(default_factory=list, description="tests run by %pipeline test, never by a run")

    _marks: dict[Path, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @property
    def marks(self) -> dict[Path, tuple[int, int]]:
        return self._marks

    def line_of(self, *path: Any) -> tuple[int | None, int | None]:
        """The line and column of ``path``, or of its nearest enclosing node."""
        return locate(self._marks, path)


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so ``on:`` (join) and ``yes``/``no`` stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _load_with_marks(text: str) -> tuple[Any, dict[Path, tuple[int, int]]]:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.reader.ReaderError as exc:
        line = text[: max(exc.position, 0)].count("\n") + 1
        raise SpecError(f"YAML syntax error: character {exc.character!r} is not allowed in YAML", code="YAML_SYNTAX",
                        line=line, hint="remove control characters (copying from a PDF or a terminal can add them)",
                        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark else None
        opened = exc.context_mark
        if exc.context and opened is not None and mark is not None and opened.line != mark.line:
            problem += f" ({exc.context} that starts on line {opened.line + 1})"
        source = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        hint = ('quote values that use ${...} inside {...} or [...], e.g. {path: "${base}/x.csv"}'
                if "${" in source else "check the indentation and quoting around this line")
        raise SpecError(
            f"YAML syntax error: {problem}",
            code="YAML_SYNTAX", line=line, column=mark.column + 1 if mark else None, hint=hint,
        ) from None
    marks: dict[Path, tuple[int, int]] = {}
    constructor = _Loader("")

    def build(node: yaml.Node, path: Path) -> Any:
        marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = construct(key_node)
                if isinstance(key, list | dict):
                    raise SpecError("a mapping key must be a plain value", code="YAML_SYNTAX",
                                    line=key_node.start_mark.line + 1)
                if key in out:
                    raise SpecError(f"duplicate key '{key}'", code="YAML_DUPLICATE_KEY",
                                    line=key_node.start_mark.line + 1, column=key_node.start_mark.column + 1,
                                    hint="each key may appear once in a mapping")
                marks[path + (key, "__key__")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(child, path + (i,)) for i, child in enumerate(node.value)]
        return construct(node)

    def construct(node: yaml.Node) -> Any:
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise SpecError(f"YAML error: {exc.problem or exc.context}", code="YAML_SYNTAX",
                            line=node.start_mark.line + 1, column=node.start_mark.column + 1,
                            hint="YAML tags (!name) are not supported; quote the value") from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date that does not exist
            raise SpecError(f"YAML value {node.value!r} cannot be read: {exc}", code="YAML_VALUE",
                            line=node.start_mark.line + 1, column=node.start_mark.column + 1,
                            hint="quote it to keep it as text") from None

    if root is None:
        return None, marks
    return build(root, ()), marks


def locate(marks: Mapping[Path, tuple[int, int]], path: Sequence[Any]) -> tuple[int | None, int | None]:
    """Line and column of ``path`` (a key's own position when it exists), else its parent's."""
    path = tuple(path)
    while True:
        if path and path + ("__key__",) in marks:
            return marks[path + ("__key__",)]
        if path in marks:
            return marks[path]
        if not path:
            return None, None
        path = path[:-1]


# ---------------------------------------------------------------- interpolation

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


def interpolate(value: Any, variables: Mapping[str, Any], marks: Mapping[Path, tuple[int, int]] = {},
                path: Path = ()) -> Any:
    """Replaces ``${name}`` in every string; a value that is exactly ``${name}`` keeps the variable's type.

    ``$$`` stands for a literal ``$``.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, variables, marks, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, marks, path + (i,)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def lookup(name: str) -> Any:
        if name in variables:
            return variables[name]
        line, column = locate(marks, path)
        close = difflib.get_close_matches(name, list(variables), n=1)
        known = ", ".join(sorted(variables)) or "none"
        raise SpecError(
            f"unknown variable '${{{name}}}'" + (f" — did you mean '{close[0]}'?" if close else ""),
            code="UNKNOWN_VARIABLE", line=line, column=column, params={"name": name},
            step_index=path[1] if len(path) > 1 and path[0] == "steps" and isinstance(path[1], int) else None,
            hint=f"define it under 'vars:', pass --var {name}=VALUE, or set a notebook variable (known: {known})",
        )

    whole = _VAR.fullmatch(value)
    if whole and whole.group(1):
        return lookup(whole.group(1))
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else str(lookup(m.group(1))), value)


# ----------------------------------------------------------------------- parsing


def _pydantic_error(exc: ValidationError, marks: Mapping[Path, tuple[int, int]], data: Any) -> SpecError:
    rank = {"extra_forbidden": 0, "missing": 1}
    err = min(exc.errors(), key=lambda e: rank.get(e["type"], 2))
    loc = tuple(err["loc"])
    line, column = locate(marks, loc)
    step_index = loc[1] if len(loc) > 1 and loc[0] == "steps" and isinstance(loc[1], int) else None
    step = data["steps"][step_index] if step_index is not None else {}
    step = step if isinstance(step, dict) else {}
    field = loc[-1] if loc else None
    kind = err["type"]
    if step_index is not None and len(loc) > 3 and loc[2] == "retry":
        where_model: type[BaseModel] = RetryPolicy
    elif step_index is not None and len(loc) <= 3:
        where_model = Step
    elif loc[:1] == ("tests",):
        where_model = GivenRows if "given" in loc[2:3] and len(loc) > 4 else SpecTest
    else:
        where_model = PipelineSpec
    if kind == "extra_forbidden":
        allowed = sorted(where_model.model_fields)
        close = difflib.get_close_matches(str(field), allowed, n=1)
        message = f"unknown key '{field}'" + (f" — did you mean '{close[0]}'?" if close else "")
        hint = "valid keys: " + ", ".join(allowed)
    elif kind == "missing":
        message = f"missing required key '{field}'"
        required = [n for n, f in where_model.model_fields.items() if f.is_required()]
        hint = "required keys: " + ", ".join(required)
    else:
        shown = ".".join(map(str, loc[2:])) if loc[:1] == ("tests",) and len(loc) > 2 else field
        message = f"'{shown}' {err['msg'][0].lower()}{err['msg'][1:]} (got {err.get('input')!r})"
        hint = None
    if step_index is not None and field == "type" and kind == "literal_error":
        hint = "a step's type is one of: " + ", ".join(STEP_TYPES)
    return SpecError(
        message, code="SPEC_" + kind.upper(), line=line, column=column, step_index=step_index,
        step_name=step.get("name") if isinstance(step.get("name"), str) else None,
        step_type=step.get("type") if isinstance(step.get("type"), str) else None,
        method=step.get("method") if isinstance(step.get("method"), str) else None,
        hint=hint, params={"loc": list(loc), "type": kind},
    )


def parse_spec(
    text: str,
    variables: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PipelineSpec:
    """Parses YAML text into a :class:`PipelineSpec`.

    ``${var}`` values come from, strongest first: ``variables`` (``--var``),
    ``defaults`` (notebook variables), then the spec's own ``vars:``.
    ``overrides`` replaces top-level keys after parsing (``name``, ``mode`` from the magic line).
    """
    data, marks = _load_with_marks(text)
    if data is None:
        raise SpecError("the spec is empty", code="SPEC_EMPTY", line=1,
                        hint="write at least 'steps:' with one step; `%pipeline schema` shows the format")
    if not isinstance(data, dict):
        raise SpecError("the spec must be a YAML mapping with a 'steps:' list", code="SPEC_NOT_MAPPING",
                        line=1, hint="start with 'steps:' (and optionally 'name:', 'mode:', 'vars:')")
    spec_vars = data.get("vars") or {}
    if not isinstance(spec_vars, dict):
        line, column = locate(marks, ("vars",))
        raise SpecError("'vars' must be a mapping of names to values", code="SPEC_VARS", line=line, column=column)
    merged: dict[str, Any] = {**spec_vars, **dict(defaults or {}), **dict(variables or {})}
    body = {k: v for k, v in data.items() if k != "vars"}
    body = interpolate(body, merged, marks)
    body["vars"] = spec_vars
    for key, value in (overrides or {}).items():
        if value is not None:
            body[key] = value
    try:
        spec = PipelineSpec.model_validate(body)
    except ValidationError as exc:
        raise _pydantic_error(exc, marks, body) from None
    spec._marks.update(marks)
    return spec


def suggest(name: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``name``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if close:
        return close[0]
    lowered = {c.lower(): c for c in choices}
    return lowered.get(name.lower())


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` to ``{"a": "1", "b": "x"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--var needs KEY=VALUE, got '{item}'")
        out[key.strip()] = value
    return out
