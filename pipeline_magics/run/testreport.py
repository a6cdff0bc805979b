"""The outcome of a spec's tests: comparing a step's rows with the expected ones, and the report."""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections import Counter
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import quoteattr

from ..errors import SpecTestError
from ..render.palette import STATUS_COLOURS
from ..spec.plan import Plan


@dataclasses.dataclass
class TestOutcome:
    """One test's result: passed or failed, its time, and what differed."""

    __test__ = False  # not a pytest class

    name: str
    status: str
    seconds: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclasses.dataclass
class TestReport:
    """The outcome of a spec's tests: a table of tests (passed, failed, time)."""

    __test__ = False

    pipeline: str
    outcomes: list[TestOutcome]

    @property
    def ok(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failed(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if not o.passed]

    def summary(self) -> str:
        passed = len(self.outcomes) - len(self.failed)
        return f"{self.pipeline}: {passed} passed, {len(self.failed)} failed"

    def __repr__(self) -> str:
        lines = [self.summary()] + [f"  {o.status:<6}  {o.name}  ({o.seconds:.1f}s)" for o in self.outcomes]
        return "\n".join(lines + [o.message for o in self.failed])

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(o.name)}</td><td style='color:{STATUS_COLOURS[o.status]}'>{o.status}</td>"
                       f"<td style='text-align:right'>{o.seconds:.1f}s</td>"
                       f"<td><pre style='margin:0'>{html.escape(o.message)}</pre></td></tr>" for o in self.outcomes)
        return (f"<b>tests of {html.escape(self.pipeline)}</b>: {html.escape(self.summary().split(': ', 1)[1])}"
                "<table><thead><tr><th>test</th><th>status</th><th>time</th><th>detail</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(o) for o in self.outcomes], columns=["name", "status", "seconds",
                                                                                      "message"])

    def junit_xml(self) -> str:
        """The report as JUnit XML (one testsuite, one testcase per test)."""
        cases = []
        for o in self.outcomes:
            body = "" if o.passed else f"<failure message={quoteattr(o.message.splitlines()[-1 if len(o.message.splitlines()) < 2 else 1].strip())}>" \
                f"{html.escape(o.message)}</failure>"
            cases.append(f"  <testcase classname={quoteattr(self.pipeline)} name={quoteattr(o.name)} "
                         f"time=\"{o.seconds:.3f}\">{body}</testcase>")
        return (f"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuite name={quoteattr(self.pipeline)} "
                f"tests=\"{len(self.outcomes)}\" failures=\"{len(self.failed)}\">\n" + "\n".join(cases) +
                "\n</testsuite>\n")

    def raise_for_failures(self) -> None:
        """Raises ``SpecTestError`` (carrying this report) when a test failed."""
        if not self.ok:
            names = ", ".join(o.name for o in self.failed)
            error = SpecTestError(f"{len(self.failed)} of {len(self.outcomes)} tests failed ({names})\n" +
                                  "\n".join(o.message for o in self.failed), pipeline=self.pipeline,
                                  params={"failed": [o.name for o in self.failed]})
            error.report = self  # type: ignore[attr-defined]
            raise error



def compare_rows(plan: Plan, t: int, step: str, expected: list[dict[str, Any]], frames: dict[str, Any]) -> list[str]:
    """What differs between test ``t``'s expected rows of ``step`` and the frame it produced (nothing: [])."""
    planned = next(p for p in plan.steps if p.step.name == step)
    line = plan.spec.line_of("steps", planned.index)[0]
    expect_line = plan.spec.line_of("tests", t, "expect", step)[0]
    where = f"  step '{step}' (line {line}; expected rows on line {expect_line})"
    df = frames.get(planned.output)
    if df is None:
        return [f"{where}: produced no rows"]
    columns = list(dict.fromkeys(str(k) for row in expected for k in row))
    actual_columns = {c.lower(): c for c in df.columns}
    absent = [c for c in columns if c.lower() not in actual_columns]
    if absent:
        return [f"{where}: has no column {', '.join(repr(c) for c in absent)} (its columns: {', '.join(df.columns)})"]
    chosen = [actual_columns[c.lower()] for c in columns]
    actual = [tuple(_canon(r[c]) for c in chosen) for r in (df.select(*[f"`{c}`" for c in chosen]).collect()
                                                            if chosen else df.collect())]
    wanted = [tuple(_canon(row.get(c)) for c in columns) for row in expected]
    missing = Counter(wanted) - Counter(actual)
    unexpected = Counter(actual) - Counter(wanted)
    if not missing and not unexpected:
        return []
    out = [f"{where}: {_count(missing, 'missing row')}, {_count(unexpected, 'unexpected row')}"]
    for title, rows in (("missing (expected, not produced)", missing), ("unexpected (produced, not expected)",
                                                                          unexpected)):
        if rows:
            out.append(f"    {title}:")
            out += ["      " + _row_text(columns, row) for row in rows.elements()]
    return out


def _count(rows: Counter, noun: str) -> str:
    n = sum(rows.values())
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _row_text(columns: list[str], row: tuple[Any, ...]) -> str:
    return "{" + ", ".join(f"{c}: {_shown(v)}" for c, v in zip(columns, row)) + "}"


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("b", "n", "s", "t"):
        return repr(value[1]) if value[0] == "s" else str(value[1])
    return "null" if value is None else str(value)


def _canon(value: Any) -> Any:
    """A hashable, comparable form: 50 == 50.0 == Decimal('50.00'); a date equals its ISO text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
        if number.is_integer() and abs(number) < 2 ** 53:
            return ("n", int(number))
        return ("n", float(f"{number:.12g}"))
    if isinstance(value, dt.datetime):
        return ("t", value.isoformat(sep=" "))
    if isinstance(value, dt.date):
        return ("t", value.isoformat())
    if isinstance(value, str):
        iso = re.fullmatch(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?", value)
        return ("t", dt.datetime.fromisoformat(value).isoformat(sep=" ")) if iso else (
            ("t", value) if re.fullmatch(r"\d{4}-\d\d-\d\d", value) else ("s", value))
    if hasattr(value, "asDict"):
        value = value.asDict(recursive=False)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    return ("s", str(value))
