"""Tests inside the spec (``tests:``): given rows per extract, the expected rows per named step.

``check_tests`` checks the section against the plan before anything runs (a ``SpecError``
naming the line); ``run_tests`` runs each test as a batch over its given rows: the given
extracts yield those rows, every other extract and every step no expectation needs is
skipped, and a load hands on the rows it would write instead of writing them. No source,
sink or checkpoint is touched.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any, Iterable

from .engine import Run, execute, release
from ..errors import PipelineError, SpecError
from ..methods.registry import Config, step_label
from ..spec.plan import Plan, PlannedStep
from ..spec.model import GivenRows, SpecTest, suggest
from .testreport import TestOutcome, TestReport, compare_rows


class _NoSettings(Config):
    """The settings of a stand-in step: none (the real ones, credentials included, are never read)."""


# ---------------------------------------------------------------- dependencies


def reads(plan: Plan, planned: PlannedStep) -> set[str]:
    """The outputs ``planned`` reads: its inputs, frames named in settings, views its SQL mentions."""
    found = set(planned.inputs)
    config = planned.step.config
    found |= {config[s] for s in planned.method.frame_settings if isinstance(config.get(s), str)}
    query = config.get("query") if planned.step.method == "sql" else None
    if isinstance(query, str):
        earlier = [p.step.name for p in plan.steps[:planned.index] if p.step.name and p.step.type != "load"]
        found |= {n for n in earlier if re.search(rf"(?<![\w`]){re.escape(n)}(?![\w`])|`{re.escape(n)}`", query)}
    return found


def upstream(plan: Plan, outputs: Iterable[str]) -> set[int]:
    """The indexes of the steps producing ``outputs`` and of every step they depend on."""
    by_output = {p.output: p for p in plan.steps}
    seen: set[int] = set()
    todo = [by_output[o] for o in outputs if o in by_output]
    while todo:
        p = todo.pop()
        if p.index not in seen:
            seen.add(p.index)
            todo += [by_output[d] for d in reads(plan, p) if d in by_output]
    return seen


# ---------------------------------------------------------------- checks


def ddl_columns(ddl: str) -> list[str]:
    """The column names of a DDL schema string (``a INT, b DECIMAL(10,2), c STRUCT<x: INT>``)."""
    names, depth, part = [], 0, ""
    for ch in ddl + ",":
        depth += ch in "<(" and 1 or (ch in ">)" and -1 or 0)
        if ch == "," and depth == 0:
            word = part.strip().split(None, 1)[0] if part.strip() else ""
            names.append(word.strip("`").rstrip(":")) if word else None
            part = ""
        else:
            part += ch
    return names


def _spec_error(plan: Plan, message: str, path: tuple[Any, ...], code: str, hint: str | None = None,
                **params: Any) -> SpecError:
    line, column = plan.spec.line_of(*path)
    return SpecError(message, code=code, pipeline=plan.spec.name, line=line, column=column, hint=hint,
                     params=params)


def check_tests(plan: Plan) -> None:
    """Checks the ``tests:`` section against the steps; raises a ``SpecError`` naming the line."""
    steps = {p.step.name: p for p in plan.steps if p.step.name}
    extracts = [n for n, p in steps.items() if p.step.type == "extract"]
    seen: set[str] = set()
    for t, test in enumerate(plan.spec.tests):
        where = ("tests", t)
        if test.name in seen:
            raise _spec_error(plan, f"two tests are named '{test.name}'", where + ("name",), "TEST_DUPLICATE_NAME",
                              "give each test a different name")
        seen.add(test.name)
        if (test.expect is None) == (test.expectError is None):
            raise _spec_error(plan, f"test '{test.name}' needs exactly one of 'expect' or 'expectError'", where,
                              "TEST_NO_EXPECTATION", "expect: {STEP: [rows]} or expectError: 'text of the error'")
        for name, given in test.given.items():
            if name not in extracts:
                close = suggest(name, extracts)
                raise _spec_error(plan, f"test '{test.name}': given '{name}' is not an extract step" +
                                  (f" — did you mean '{close}'?" if close else ""), where + ("given", name),
                                  "TEST_UNKNOWN_GIVEN", "named extract steps: " + (", ".join(extracts) or "none"),
                                  name=name)
            _check_rows(plan, test, name, given, where + ("given", name))
        for name in test.expect or {}:
            if name not in steps:
                close = suggest(name, list(steps))
                raise _spec_error(plan, f"test '{test.name}': expects rows of '{name}', which is not a named step" +
                                  (f" — did you mean '{close}'?" if close else ""), where + ("expect", name),
                                  "TEST_UNKNOWN_STEP", "named steps: " + (", ".join(steps) or "none"), name=name)
            for index in sorted(upstream(plan, [steps[name].output])):
                needed = plan.steps[index].step
                if needed.type == "extract" and needed.name not in test.given:
                    label = step_label(index, needed.name)
                    raise _spec_error(plan, f"test '{test.name}': step '{name}' reads extract '{label}', which has "
                                      "no given rows", where + ("given",), "TEST_MISSING_GIVEN",
                                      f"add given: {{{label}: {{rows: [...]}}}} (a test reads no real source)"
                                      if needed.name else "name the extract step and give it rows",
                                      name=label, step=name)


def _check_rows(plan: Plan, test: SpecTest, name: str, given: GivenRows, path: tuple[Any, ...]) -> None:
    if not given.rows and not given.schema_:
        raise _spec_error(plan, f"test '{test.name}': given '{name}' has no rows and no schema", path,
                          "TEST_BAD_ROWS", "add schema: 'col TYPE, ...' to give an empty table")
    if given.schema_:
        columns = ddl_columns(given.schema_)
        lowered = {c.lower() for c in columns}
        for r, row in enumerate(given.rows):
            for key in row:
                if str(key).lower() not in lowered:
                    close = suggest(str(key), columns)
                    raise _spec_error(plan, f"test '{test.name}': row {r + 1} of given '{name}' has column '{key}', "
                                      "which its schema lacks" + (f" — did you mean '{close}'?" if close else ""),
                                      path + ("rows", r, key), "TEST_BAD_ROWS", "schema columns: " + ", ".join(columns))


# ---------------------------------------------------------------- the test plan


def _stand_in(planned: PlannedStep, func: Any, inputs: bool = True) -> PlannedStep:
    """``planned`` with ``func`` in place of its method and no settings to resolve (nor inputs, unless ``inputs``)."""
    method = dataclasses.replace(planned.method, func=func, config=_NoSettings)
    return dataclasses.replace(planned, step=planned.step.model_copy(update={"config": {}}), method=method,
                               inputs=planned.inputs if inputs else ())


def _skip(ctx: Any, cfg: Any) -> None:
    return None


def _giving(given: GivenRows | None) -> Any:
    """The stand-in of a given extract: its rows as a DataFrame."""
    return lambda ctx, cfg: given_frame(ctx.spark, given)


def given_frame(spark: Any, given: GivenRows) -> Any:
    """A DataFrame of the given rows (types from the schema, else from the values)."""
    from pyspark.sql.types import StructType, _parse_datatype_string

    rows = given.rows
    columns = list(dict.fromkeys(str(k) for row in rows for k in row))
    if given.schema_:
        schema = _parse_datatype_string(given.schema_)
        schema = schema if isinstance(schema, StructType) else StructType().add("value", schema)
        by_lower = {str(k).lower(): k for row in rows for k in row}
        data = [tuple(_coerce(row.get(by_lower.get(f.name.lower(), f.name)), f.dataType) for f in schema.fields)
                for row in rows]
        return spark.createDataFrame(data, schema)
    types = {c: _type_of([row.get(c) for row in rows]) for c in columns}
    data = [tuple(_coerce_plain(row.get(c), types[c]) for c in columns) for row in rows]
    if all(types.values()):
        return spark.createDataFrame(data, ", ".join(f"`{c}` {types[c]}" for c in columns))
    return spark.createDataFrame(data, columns)


_PLAIN_TYPES = ((bool, "BOOLEAN"), (int, "BIGINT"), (float, "DOUBLE"), (str, "STRING"), (dt.datetime, "TIMESTAMP"),
                (dt.date, "DATE"))


def _type_of(values: list[Any]) -> str | None:
    kinds = {next((t for cls, t in _PLAIN_TYPES if isinstance(v, cls)), None) for v in values if v is not None}
    if kinds <= {"BIGINT", "DOUBLE"} and kinds:
        return "DOUBLE" if "DOUBLE" in kinds else "BIGINT"
    return next(iter(kinds)) if len(kinds) == 1 and None not in kinds else ("STRING" if not kinds else None)


def _coerce_plain(value: Any, type_: str | None) -> Any:
    return float(value) if type_ == "DOUBLE" and isinstance(value, int) and not isinstance(value, bool) else value


def _coerce(value: Any, data_type: Any) -> Any:
    """A YAML value made acceptable to ``createDataFrame`` for a column of ``data_type``."""
    from pyspark.sql.types import DateType, DecimalType, FractionalType, IntegralType, TimestampType

    if value is None or isinstance(value, bool):
        return value
    if isinstance(data_type, DecimalType) and isinstance(value, (int, float, str)):
        return Decimal(str(value))
    if isinstance(data_type, FractionalType) and isinstance(value, (int, str)):
        return float(value)
    if isinstance(data_type, IntegralType) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(data_type, TimestampType) and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if isinstance(data_type, TimestampType) and type(value) is dt.date:
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(data_type, DateType) and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def plan_for_test(plan: Plan, test: SpecTest) -> Plan:
    """The plan a test runs: batch, given extracts, loads that write nothing, unneeded steps skipped."""
    by_name = {p.step.name: p for p in plan.steps if p.step.name}
    if test.expect is not None:
        needed = upstream(plan, [by_name[n].output for n in test.expect])
    else:
        needed = set(range(len(plan.steps)))
    runnable: set[str] = set()
    steps = []
    for p in plan.steps:
        if p.step.type == "extract":
            given = test.given.get(p.step.name or "")
            ok = given is not None and p.index in needed
            steps.append(_stand_in(p, _giving(given)) if ok else _stand_in(p, _skip))
        else:
            ok = p.index in needed and reads(plan, p) <= runnable
            if ok and p.step.type == "load":
                steps.append(_stand_in(p, lambda ctx, cfg: ctx.input))  # the rows it would write
            else:
                steps.append(p if ok else _stand_in(p, _skip, inputs=False))
        if ok:
            runnable.add(p.output)
    return Plan(plan.spec.model_copy(update={"mode": "batch"}), tuple(steps))


# ---------------------------------------------------------------- running


def run_tests(plan: Plan, spark: Any, names: Iterable[str] | None = None) -> TestReport:
    """Runs the spec's tests (or those named) on ``spark``; nothing is read from sources or written."""
    wanted = set(names or ())
    tests = [(i, t) for i, t in enumerate(plan.spec.tests) if not wanted or t.name in wanted]
    if not tests:
        raise _spec_error(plan, "this spec has no tests" + (f" named {', '.join(sorted(wanted))}" if wanted else ""),
                          ("tests",), "TEST_NONE", "add a 'tests:' section (see `%pipeline help tests`)")
    return TestReport(plan.spec.name, [run_test(plan, spark, i, t) for i, t in tests])


def run_test(plan: Plan, spark: Any, index: int, test: SpecTest) -> TestOutcome:
    """Runs one test; its outcome says what differed."""
    start = time.perf_counter()
    run = Run(plan_for_test(plan, test), spark, metrics_enabled=False)
    problems: list[str] = []
    try:
        try:
            execute(run)
            error: PipelineError | None = None
        except PipelineError as exc:
            error = exc
        if test.expectError is not None:
            if error is None:
                problems.append(f"expected an error containing '{test.expectError}', and the run succeeded")
            elif test.expectError.lower() not in str(error).lower():
                problems.append(f"expected an error containing '{test.expectError}', got: {str(error).splitlines()[0]}")
        elif error is not None:
            problems.append(f"the run failed: {str(error).splitlines()[0]}")
        else:
            for step, rows in (test.expect or {}).items():
                problems += compare_rows(plan, index, step, rows, run.frames)
    finally:
        release(run)
    seconds = time.perf_counter() - start
    if not problems:
        return TestOutcome(test.name, "passed", seconds)
    return TestOutcome(test.name, "failed", seconds, f"test '{test.name}' failed:\n" + "\n".join(problems))
