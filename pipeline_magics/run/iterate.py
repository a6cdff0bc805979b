"""Iterating on one step (SPEC 12): ``--until``, ``--from``, ``--sample`` and ``--sandbox``.

``Iteration.prepare`` turns a plan into the plan of such a run before anything runs: the steps that run
(``--until STEP``: STEP and what it reads, through the step graph; ``--from STEP``: STEP and every later
step), the steps whose kept outputs stand in for them (what the steps that run read from above STEP),
extracts that read a sample, loads that write to the sandbox. A streaming spec runs as a bounded batch
over what its sources hold now under ``--until``, ``--from`` or ``--sample`` (no checkpoint is read or
written). The ``--until`` step caches what the run computed in the kernel's ``KeptOutputs``, each
with the fingerprint of its step and every step above it; ``--from`` reuses one only while that
fingerprint is unchanged, else it names the step that changed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import IterateError
from ..spark.cache import held_bytes, hold, release
from ..spec.model import suggest
from ..spec.plan import Plan, PlannedStep
from .sandbox import sandbox_root, sandboxed
from .spectests import reads, upstream

SEED = 42  # a percentage sample is the same rows from one run to the next


def parse_sample(text: str | int | None) -> tuple[str, float] | None:
    """``--sample``'s value: ``("rows", N)`` or ``("fraction", N/100)`` for ``N%``; None when not given."""
    if text is None:
        return None
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            value = float(raw[:-1])
            if 0 < value <= 100:
                return "fraction", value / 100
        elif int(raw) > 0:
            return "rows", int(raw)
    except ValueError:
        pass
    raise IterateError(f"--sample {raw}: not a number of rows or a percentage", code="ITERATE_BAD_SAMPLE",
                       hint="--sample 1000 (at most 1000 rows per extract) or --sample 5% (about 5% of each)")


def step_print(planned: PlannedStep) -> str:
    """A step's fingerprint: its resolved settings (variables substituted; its description aside)."""
    data = planned.step.model_dump(mode="json", exclude={"description"}, by_alias=True)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(plan: Plan, index: int, sample: tuple[str, float] | None) -> dict[str, str]:
    """Step ``index``'s output depends on these: each step above it (and itself) by label, the run's Spark
    settings and the sample."""
    prints = {plan.steps[i].label: step_print(plan.steps[i])
              for i in sorted(upstream(plan, [plan.steps[index].output]))}
    prints["spark:"] = json.dumps(plan.spec.spark, sort_keys=True, default=str)
    prints["--sample"] = "" if sample is None else f"{sample[0]}={sample[1]}"
    return prints


@dataclass
class Kept:
    """One kept output: a cached DataFrame, the fingerprint it was computed under, when, its rows and bytes."""

    frame: Any
    prints: dict[str, str]
    at: float
    rows: int | None = None
    bytes: int | None = None

    @property
    def when(self) -> str:
        return dt.datetime.fromtimestamp(self.at).strftime("%H:%M:%S")


class KeptOutputs:
    """The outputs ``--until`` kept, by pipeline and step; one per kernel (the magic holds it)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Kept] = {}

    def get(self, pipeline: str, step: str) -> Kept | None:
        return self._items.get((pipeline, step))

    def put(self, pipeline: str, step: str, kept: Kept) -> None:
        self._items[(pipeline, step)] = kept

    def drop(self, pipeline: str | None = None, step: str | None = None) -> Any:
        """Frees the kept outputs of ``pipeline`` (None: all; ``step``: that one); returns what was freed (``table``)."""
        chosen = [k for k in self._items if pipeline in (None, k[0]) and step in (None, k[1])]
        freed = self.table(pipeline)
        freed = freed[freed.step.isin([s for _, s in chosen])] if step is not None else freed
        for key in chosen:
            release(self._items.pop(key).frame)
        return freed

    def table(self, pipeline: str | None = None) -> Any:
        """The kept outputs as pandas: pipeline, step, rows, bytes cached, kept at."""
        import pandas as pd

        rows = [{"pipeline": p, "step": s, "rows": k.rows, "bytes": k.bytes, "kept at": k.when}
                for (p, s), k in self._items.items() if pipeline is None or p == pipeline]
        return pd.DataFrame(rows, columns=["pipeline", "step", "rows", "bytes", "kept at"])

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Iteration:
    """What one ``--until``/``--from``/``--sample``/``--sandbox`` run does differently."""

    plan: Plan
    kept: KeptOutputs
    until: PlannedStep | None = None
    start: PlannedStep | None = None
    sample: tuple[str, float] | None = None
    sandbox: str | None = None
    #: step index -> (the kept output standing in for it, or None: not run) and the note the step table shows
    skip: dict[int, tuple[Any, str]] = field(default_factory=dict)
    reused: dict[int, Kept] = field(default_factory=dict)
    _metrics: Any = field(default=None, repr=False)

    @classmethod
    def prepare(cls, plan: Plan, kept: KeptOutputs, until: str | None = None, start: str | None = None,
                sample: str | int | None = None, sandbox: str | bool | None = None) -> "Iteration | None":
        """The iteration these options ask for (None: none asked); raises ``IterateError`` before anything runs."""
        if until is None and start is None and sample is None and sandbox in (None, False):
            return None
        parsed = parse_sample(sample)
        if parsed is not None and sandbox in (None, False):
            sandbox = True  # a sample never reaches a real target
        folder = sandbox_root(sandbox if isinstance(sandbox, str) else None) if sandbox not in (None, False) else None
        it = cls(plan, kept, _step(plan, until, "--until"), _step(plan, start, "--from"), parsed, folder)
        it.plan = it._rewrite()
        return it

    def _rewrite(self) -> Plan:
        plan, spec = self.plan, self.plan.spec
        if self.until is not None and self.until.step.type == "load" and self.sandbox is None:
            raise IterateError(f"--until {self.until.label}: a load writes nothing under --until",
                               code="ITERATE_UNTIL_LOAD", hint="name the step before it, or add --sandbox")
        if self.until is not None and self.start is not None and self.until.index < self.start.index:
            raise IterateError(f"--from {self.start.label} comes after --until {self.until.label}",
                               code="ITERATE_ORDER", hint="--from names an earlier step than --until")
        running = set(range(len(plan.steps)))
        if self.until is not None:
            running &= upstream(plan, [self.until.output])
        if self.start is not None:
            running = {i for i in running if i >= self.start.index}
        by_output = {p.output: p for p in plan.steps}
        needed = {by_output[d].index for i in running for d in reads(plan, plan.steps[i]) if d in by_output}
        for i in sorted(needed - running):
            self.reused[i] = self._reusable(plan.steps[i])
        batch = spec.mode == "streaming" and any(x is not None for x in (self.until, self.start, self.sample))
        steps = []
        for p in plan.steps:
            if p.index in self.reused:
                k = self.reused[p.index]
                self.skip[p.index] = (k.frame, f"reused: kept at {k.when}" + (f", {k.rows:,} rows" if k.rows
                                                                               is not None else ""))
            elif p.index not in running:
                self.skip[p.index] = (None, f"not needed (--from {self.start.label})" if self.start is not None
                                      and p.index < self.start.index else f"not run (--until {self.until.label})"
                                      if self.until is not None else "not run")
            elif p.step.type == "extract" and self.sample is not None:
                p = dataclasses.replace(p, method=dataclasses.replace(  # observed: a scan's count would not stop
                    p.method, func=functools.partial(self._sampled, func=p.method.func), observed=True))
            elif p.step.type == "load" and self.sandbox is not None:
                p = sandboxed(p, self.sandbox, spec.name, streaming=spec.mode == "streaming" and not batch)
            if self.until is not None and p.index == self.until.index:
                p = dataclasses.replace(p, method=dataclasses.replace(
                    p.method, func=functools.partial(self._keeping, func=p.method.func)))
            steps.append(p)
        return Plan(spec.model_copy(update={"mode": "batch"}) if batch else spec, tuple(steps))

    def _reusable(self, planned: PlannedStep) -> Kept:
        """The kept output of a step ``--from`` reads, checked against the spec as it is now."""
        name, label = self.plan.spec.name, planned.label
        kept = self.kept.get(name, label)
        start = self.start.label if self.start is not None else label
        if kept is None:
            raise IterateError(f"--from {start} reads '{label}', and no output of it is kept in this kernel",
                               code="ITERATE_NOT_KEPT", pipeline=name, params={"step": label},
                               hint=f"run --until {label} (or --until {start}) first")
        now = fingerprint(self.plan, planned.index, self.sample)
        changed = next((k for k in now if kept.prints.get(k) != now[k]), None) or next(
            (k for k in kept.prints if k not in now), None)
        if changed is None:
            return kept
        what = {"spark:": "the spec's spark: settings", "--sample": "--sample"}.get(changed, f"step '{changed}'")
        by_label = {p.label: p for p in self.plan.steps}
        line = self.plan.spec.line_of("steps", by_label[changed].index)[0] if changed in by_label else None
        raise IterateError(f"{what} changed since the output of '{label}' was kept at {kept.when}",
                           code="ITERATE_STEP_CHANGED", pipeline=name, line=line,
                           params={"step": changed, "kept": label},
                           hint=f"run --until {label} again" + (" (with the same --sample)" if changed == "--sample"
                                                                 else "") + f", then --from {start}")

    def attach(self, run: Any) -> None:
        """Puts the left-out steps and the reused outputs' figures into ``run`` (before it executes)."""
        run.skip = self.skip
        self._metrics = run.metrics
        for i, kept in self.reused.items():
            sm = run.metrics.steps[i]
            sm.rows_out = kept.rows
            sm.extra["reused_from"] = kept.at
            sm.sources["rows_out"] = f"kept by --until at {kept.when}"

    def _keeping(self, ctx: Any, cfg: Any, *, func: Any) -> Any:
        """The ``--until`` step: its output (a load: its input) and every output above it are computed and held
        in the executors, and kept; the step goes on with its held output."""
        out = None if ctx.step.type == "load" else func(ctx, cfg)
        frames = {**ctx.frames, **({ctx.step_name: out} if out is not None else {})}
        chosen = [p for p in self.plan.steps if p.step.type != "load" and p.index not in self.skip
                  and frames.get(p.output) is not None and not frames[p.output].isStreaming]
        for p in chosen:  # what was kept before goes first: it may hold the same rows
            self.kept.drop(self.plan.spec.name, p.label)
        held = hold(ctx.spark, [frames[p.output] for p in chosen])
        for p, df in zip(chosen, held):
            rows = df.count()  # read from what is held: no job over the sources
            kept = Kept(df, fingerprint(self.plan, p.index, self.sample), time.time(), rows, held_bytes(ctx.spark, df))
            self.kept.put(self.plan.spec.name, p.label, kept)
            sm = self._metrics.steps[p.index]
            note = "kept" + (f" ({_size(kept.bytes)})" if kept.bytes is not None else "")
            if p.index == ctx.index:  # the engine fills the step's figures from its record
                ctx.record.rows_out, ctx.record.sources["rows_out"] = rows, "counted when kept"
                ctx.record.note = "; ".join(filter(None, (sm.note, note)))
                out = df
                continue
            if sm.rows_out is None:
                sm.rows_out = rows
                sm.sources["rows_out"] = "counted when kept"
            sm.note = "; ".join(filter(None, (sm.note, note)))
        return func(ctx, cfg) if ctx.step.type == "load" else out


    def _sampled(self, ctx: Any, cfg: Any, *, func: Any) -> Any:
        """An extract reading at most N rows (or a fraction of its rows)."""
        df = func(ctx, cfg)
        kind, value = self.sample or ("rows", 0)
        # the step's note, not its record: the record is read again when the step's Observation reports
        self._metrics.steps[ctx.index].note = (f"sample: at most {int(value):,} rows" if kind == "rows"
                                               else f"sample: {value:.0%}")
        return df.limit(int(value)) if kind == "rows" else df.sample(fraction=value, seed=SEED)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


def _step(plan: Plan, label: str | None, option: str) -> PlannedStep | None:
    if label is None:
        return None
    by_label = {p.label: p for p in plan.steps}
    if label in by_label:
        return by_label[label]
    close = suggest(label, list(by_label))
    raise IterateError(f"{option} {label}: no such step" + (f" — did you mean '{close}'?" if close else ""),
                       code="ITERATE_UNKNOWN_STEP", pipeline=plan.spec.name, params={"step": label},
                       hint="steps: " + ", ".join(by_label))
