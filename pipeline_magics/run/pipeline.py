"""The Python API: ``Pipeline.from_yaml(...).run(spark) -> PipelineResult``."""
from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import history, lineage as run_lineage
from .engine import Run, execute, ignore_update, release
from ..errors import DiffError, IterateError, PipelineError
from ..render.graph import build_graph, frame_rows
from ..render.palette import STATUS_COLOURS
from ..metrics.model import PipelineMetrics, StepMetrics, fmt_count, fmt_rules, fmt_seconds, fmt_took
from ..metrics.exporters import export
from ..methods.registry import is_default_label
from ..spec.plan import Plan, build_plan
from ..secrets.policy import SecurityPolicy
from ..render.svg import GRAPHVIZ_HINT, svg_img
from ..spark.session import active_session, get_session
from .diff import DiffSet
from .iterate import Iteration, KeptOutputs
from .preview import diffs_of, loads_of, preview_plan
from .preview import render_html as loads_html
from ..spec.model import PipelineSpec, parse_spec
from .spectests import check_tests, run_tests
from .testreport import TestReport
from .streaming import REGISTRY, StreamingRun


@dataclass
class PipelineResult:
    """What a run produced: status, metrics, the named DataFrames, streaming queries."""

    name: str
    metrics: PipelineMetrics
    frames: dict[str, Any] = field(default_factory=dict)
    queries: list[Any] = field(default_factory=list)
    error: PipelineError | None = None
    displays: list[tuple[str, Any]] = field(default_factory=list)
    preview_rows: int = 10
    stream: StreamingRun | None = None
    #: how a notebook's live view shows this run: "" (it does not), "table" (its widgets go on showing the step
    #: table, the streaming queries running: the cell's value leaves the table out), "static" (it was replaced by
    #: this result's own output: the cell's value is not shown again)
    live: str = ""
    plan: Plan | None = field(default=None, repr=False)
    #: the run's OpenLineage events (None when lineage is off): its ``columns`` are the column lineage sent
    lineage: Any = field(default=None, repr=False)
    #: a preview (``run(preview=True)``): per load step what it would write; None for a real run
    loads: list[dict[str, Any]] | None = None
    _previews: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def diff(self) -> DiffSet | None:
        """A preview with ``diff=True``: per table load, the rows it would add, remove and change."""
        return diffs_of(self.loads)

    def await_termination(self, timeout: float | None = None) -> bool:
        """Streaming: waits for the queries to end (True) or ``timeout`` seconds (False)."""
        if self.stream is None:
            return True
        done = self.stream.await_termination(timeout)
        if done:
            self.stream.record()
        return done

    def stop(self) -> None:
        """Streaming: cancels the run and stops its queries."""
        if self.stream is not None:
            self.stream.stop()

    @property
    def status(self) -> str:
        """The run's status, as its ``RunStatus`` set it (``metrics.status``); never worked out here."""
        return self.metrics.status

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def to_pandas(self, name: str | None = None, limit: int | None = 1000) -> Any:
        """A named frame (default: the last) as pandas, at most ``limit`` rows."""
        if name is not None and name not in self.frames:
            raise KeyError(f"no frame '{name}'; frames are {list(self.frames)}")
        df = self.frames[name] if name else self.last_frame
        if df is None:
            raise KeyError("this run produced no DataFrame")
        return (df.limit(limit) if limit else df).toPandas()

    def graph(self) -> Any:
        """The pipeline's picture, each step coloured by its status and annotated with its row count."""
        if self.plan is None:
            raise ValueError("this result carries no plan to draw")
        return build_graph(self.plan, self.metrics)

    def frame_rows(self) -> dict[str, int]:
        """Row counts of the frames, from the run's metrics (nothing is counted again)."""
        if self.plan is None:
            return {s.step: s.rows_out for s in self.metrics.steps if s.type != "load" and s.rows_out is not None}
        return frame_rows(self.plan, self.metrics)

    def named_frames(self) -> dict[str, Any]:
        """The frames of the steps the spec names (``--export`` binds these), by name."""
        if self.plan is None:
            return {k: v for k, v in self.frames.items() if not is_default_label(k)}
        named = {p.step.name for p in self.plan.steps if p.step.name}
        return {k: v for k, v in self.frames.items() if k in named}

    @property
    def last_frame(self) -> Any:
        return next(reversed(self.frames.values()), None) if self.frames else None

    def __repr__(self) -> str:
        return f"<PipelineResult {self.name}: {self.status}, {len(self.metrics.steps)} steps, " \
               f"{fmt_count(self.metrics.rows_written)} rows written>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.metrics.to_text())

    def _repr_html_(self) -> str:
        return render_html(self)


def steps_table(metrics: PipelineMetrics) -> str:
    """The step table as HTML: status, rows in and out, time (the live view shows the same)."""
    rows = "".join(
        f"<tr><td>{s.index + 1}</td><td>{html.escape(s.step)}{_note(s)}</td><td>{s.type}.{s.method}</td>"
        f"<td style='color:{STATUS_COLOURS.get(s.status, '#000')}'>{s.status}</td>"
        f"<td style='text-align:right'{_why(s, 'rows_in')}>{fmt_count(s.rows_in)}</td>"
        f"<td style='text-align:right'{_why(s, 'rows_out')}>{fmt_count(s.rows_out)}</td>"
        f"<td style='text-align:right'>{'' if s.failed_rows is None else fmt_count(s.failed_rows)}"
        f"{html.escape(fmt_rules(s))}</td>"
        f"<td style='text-align:right'>{fmt_seconds(s.duration)}</td></tr>" for s in metrics.steps)
    return ("<table><thead><tr><th>#</th><th>step</th><th>method</th><th>status</th><th>rows in</th>"
            f"<th>rows out</th><th>failed</th><th>time</th></tr></thead><tbody>{rows}</tbody></table>")


def _note(step: StepMetrics) -> str:
    """What an iterating run did with the step (reused, kept, sampled, where it wrote), under its name."""
    note = step.note
    return f"<br><small>{html.escape(note)}</small>" if note else ""


def _why(step: StepMetrics, figure: str) -> str:
    """A cell's tooltip: where its figure came from, or why Spark counted none."""
    why = step.sources.get(figure) or (step.rows_note if getattr(step, figure) is None else None)
    return f" title='{html.escape(why, quote=True)}'" if why else ""


def render_html(result: PipelineResult, preview: bool = True) -> str:
    """A compact step table (unless the live view already shows it), the coloured graph, then each named frame."""
    m = result.metrics
    out = "<div class='pipeline-result'>"
    if result.live != "table":
        out += status_html(m)
    if m.error:
        out += f"<pre style='color:{STATUS_COLOURS['failed']}'>{html.escape(m.error)}</pre>"
    if result.loads is not None:
        out += loads_html(result.loads)
    if result.plan is not None:
        graph = build_graph(result.plan, m)
        svg = graph.svg()
        picture = svg_img(svg, graph.to_text()) if svg else (
            f"<pre>{html.escape(graph.to_text())}</pre><i>{html.escape(GRAPHVIZ_HINT)}</i>")
        out += f"<details><summary>graph</summary>{picture}</details>"
    if preview:
        out += render_frames(result)
    return out + "</div>"


def status_html(metrics: PipelineMetrics) -> str:
    """The run's name, state and time (the Spark start apart), then the step table."""
    colour = STATUS_COLOURS.get(metrics.status, "#000")
    return (f"<b>pipeline {html.escape(metrics.pipeline)}</b>: <span style='color:{colour}' "
            f"class='pipeline-status'>{metrics.status}</span> in {html.escape(fmt_took(metrics))}"
            f"{steps_table(metrics)}")


def render_frames(result: PipelineResult) -> str:
    """Each named frame (else the last one): its row count from the metrics, its schema, its first rows."""
    names = list(result.named_frames()) or list(result.frames)[-1:]
    counted = result.frame_rows()
    out = ""
    for name in names:
        df = result.frames[name]
        try:
            fields = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
            streaming = bool(df.isStreaming)
        except Exception:  # noqa: BLE001 - a frame that cannot be analysed is skipped, not fatal
            continue
        rows = "streaming" if streaming else (
            f"{fmt_count(counted[name])} rows" if name in counted else "rows not counted")
        schema = "".join(f"<tr><td>{html.escape(c)}</td><td><code>{html.escape(t)}</code></td></tr>" for c, t in fields)
        schema = f"<table><thead><tr><th>column</th><th>type</th></tr></thead><tbody>{schema}</tbody></table>"
        preview = "" if streaming or not result.ok else _preview(result, name)
        out += (f"<details{' open' if name == names[-1] else ''}><summary><b>{html.escape(name)}</b>: {rows}, "
                f"{len(fields)} columns</summary><div style='display:flex;gap:2em;align-items:flex-start'>"
                f"{schema}{preview}</div></details>")
    return out


def _preview(result: PipelineResult, name: str) -> str:
    """The first ``preview_rows`` rows of a frame as HTML, computed once per result."""
    if name not in result._previews:
        try:
            table = result.frames[name].limit(result.preview_rows).toPandas().to_html(index=False, max_cols=30)
            result._previews[name] = f"<div><i>first {result.preview_rows} rows</i>{table}</div>"
        except Exception:  # noqa: BLE001 - a preview never hides the result
            result._previews[name] = ""
    return result._previews[name]


class Pipeline:
    """A validated pipeline spec, ready to run on a SparkSession."""

    def __init__(self, spec: PipelineSpec, policy: SecurityPolicy | None = None) -> None:
        self.spec = spec
        self.policy = policy or SecurityPolicy.from_env()
        self.plan: Plan = build_plan(spec, self.policy)
        check_tests(self.plan)
        self._run: Run | None = None
        self.stream: StreamingRun | None = None
        #: outputs ``run(until=...)`` kept, for a later ``run(from_step=...)`` (the magic passes the kernel's)
        self.kept = KeptOutputs()
        #: (text, vars, defaults, name, mode) it was parsed from, for ``export --sdp``
        self.source: tuple[str, dict[str, Any], dict[str, Any], str | None, str | None] | None = None

    @classmethod
    def from_yaml(cls, text: str, vars: Mapping[str, Any] | None = None, *, defaults: Mapping[str, Any] | None = None,
                  name: str | None = None, mode: str | None = None) -> "Pipeline":
        """Parses and checks a YAML spec; raises ``SpecError`` before anything runs."""
        pipeline = cls(parse_spec(text, vars, defaults, {"name": name, "mode": mode}))
        pipeline.source = (text, dict(vars or {}), dict(defaults or {}), name, mode)
        return pipeline

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], vars: Mapping[str, Any] | None = None, **kw: Any) -> "Pipeline":
        """Reads a YAML spec file."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_yaml(fh.read(), vars, **kw)

    @property
    def name(self) -> str:
        return self.spec.name

    def explain(self) -> str:
        """The plan as text; nothing runs."""
        return self.plan.text()

    def run(self, spark: Any = None, collect_metrics: bool = True, *, metrics: list[str] | tuple[str, ...] = (),
            on_update: Callable[[Run], None] | None = None, emit: Callable[[str, Any], None] | None = None,
            raise_on_error: bool = True, timeout: float | None = None, preview: bool = False,
            spark_start: float | None = None, lineage: str | None = None, diff: bool = False,
            until: str | None = None, from_step: str | None = None, sample: str | int | None = None,
            sandbox: str | bool | None = None, kept: KeptOutputs | None = None) -> PipelineResult:
        """Runs the pipeline; on failure raises the ``PipelineError`` (its result is ``error.result``).

        Streaming: the queries keep running after this returns, unless every load has a
        finite trigger (``availableNow``/``once``: it waits for them) or ``timeout``
        seconds are given (it waits at most that long).
        ``preview``: reads and transforms run, nothing is written; ``result.loads`` says what
        each load would do (a streaming spec is read as a batch); with ``diff``, ``result.diff`` also
        compares each table with what its load would leave, row by row.
        ``spark_start``: seconds the caller spent starting ``spark`` for this run; without ``spark`` and
        with no session running, the time this call takes to start one. The run's time includes it.
        ``lineage``: console or file:PATH sends OpenLineage events (default: the ``lineage`` setting,
        else the OpenLineage client's own configuration; off when there is none).
        ``until``/``from_step``/``sample``/``sandbox``: iterate on one step (SPEC 12, ``run/iterate.py``):
        ``until`` keeps what it computed in ``kept`` (default: this pipeline's own), ``from_step`` reuses it.
        """
        if diff and not preview:
            raise DiffError("--diff compares the tables with what a preview would write", code="DIFF_NEEDS_PREVIEW",
                            hint="add --preview (after a run: %pipeline diff NAME)")
        iteration = Iteration.prepare(self.plan, self.kept if kept is None else kept, until, from_step, sample, sandbox)
        if preview and iteration is not None and iteration.sandbox is not None:
            raise IterateError("--preview looks at the real targets, and --sandbox (or --sample) writes elsewhere",
                               code="ITERATE_PREVIEW", hint="drop --preview, or --sandbox and --sample")
        plan = iteration.plan if iteration is not None else self.plan
        plan = preview_plan(plan, diff) if preview else plan
        began, starting = time.time(), spark is None and active_session() is None
        run = Run(plan, get_session(spark), policy=self.policy, emit=emit, metrics_enabled=collect_metrics,
                  on_update=on_update or ignore_update,
                  # the analyst waited for the session too: the run's time includes its start, shown apart
                  spark_start=time.time() - began if starting else spark_start)
        if iteration is not None:
            iteration.attach(run)
        self._run = run
        events = None if preview else run_lineage.attach(run, lineage)
        stream = REGISTRY.claim(self.name, run) if run.plan.spec.mode == "streaming" else None
        self.stream = stream
        error: PipelineError | None = None
        try:
            execute(run)
            if events is not None and stream is not None:
                events.prepare()  # the plans are read once, before the micro-batches report
            if stream is not None and run.queries:
                finite = all(run.metrics.steps[i].finite for i, _ in run.queries)
                if timeout is not None or finite:
                    stream.await_termination(timeout)
                stream.refresh()
        except PipelineError as exc:
            error = exc
            if stream is not None:
                run.state.fail(str(exc), cancelled=run.cancelled.is_set())
                stream.stop(str(exc))
        finally:
            if stream is None or not stream.active:
                release(run)
        result = PipelineResult(self.name, run.metrics, dict(run.frames), [q for _, q in run.queries], error,
                                run.displays, stream=stream, plan=self.plan, lineage=events,
                                loads=loads_of(run.metrics) if preview else None)
        if stream is not None and not preview:
            stream.record()  # again when the run ends
        elif not preview:
            history.record(run)  # written by a background thread
        if collect_metrics and not preview:
            for target in metrics:
                export(run.metrics, target)
        if error is not None:
            error.result = result
            if raise_on_error:
                raise error
        return result

    def test(self, spark: Any = None, names: Any = None) -> TestReport:
        """Runs the spec's tests (``tests:``); nothing is read from sources or written to sinks."""
        return run_tests(self.plan, get_session(spark), names)

    def cancel(self) -> None:
        """Cancels the current run: running Spark jobs are interrupted."""
        if self._run is not None:
            self._run.cancel()


class PlanView:
    """The plan of a dry run: a picture of the steps (SVG, Mermaid or text), the settings folded below."""

    def __init__(self, pipeline: "Pipeline", note: str = "dry run: nothing was executed") -> None:
        self.pipeline = pipeline
        self.graph = build_graph(pipeline.plan)
        self.note = note

    def __repr__(self) -> str:
        return self.pipeline.explain()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = self.graph.mimebundle(details=self.pipeline.explain(), note=self.note)
        bundle["text/plain"] = f"{self.pipeline.explain()}\n{self.note}"
        return bundle
