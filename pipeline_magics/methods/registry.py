"""The method registry: one function per method, registered by type and name with its config model."""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from pydantic import BaseModel, ConfigDict

from ..metrics.model import StepRecord

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ..spec.model import Step


class Config(BaseModel):
    """Base of every method's settings: strict, immutable, documented fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def step_label(index: int, name: str | None = None) -> str:
    """How step ``index`` (from 0) is called: its name, else ``step{N}`` (N from 1), the key of its frame."""
    return name or f"step{index + 1}"


def is_default_label(label: str) -> bool:
    """True for a ``step{N}`` label, the one a step without a name gets."""
    return re.fullmatch(r"step\d+", label) is not None


@dataclass
class StepContext:
    """What a method gets besides its settings: the session, its inputs, and where to report."""

    spark: "SparkSession"
    pipeline: str
    run_id: str
    step: "Step"
    index: int
    mode: str
    inputs: list["DataFrame"]
    frames: Mapping[str, "DataFrame"]
    checkpoint_root: str = ""
    #: the same for every attempt of one run and larger for each later run (Delta txnVersion)
    run_version: int = 0
    #: what the method knows of its step (rows_out, bytes_written, failed_rows, its target, …) for the metrics
    record: StepRecord = field(default_factory=StepRecord)
    #: called with (kind, payload) for output meant for the notebook, e.g. ("display", pandas frame)
    emit: Callable[[str, Any], None] = lambda kind, payload: None
    #: post-run callbacks (e.g. reading an Observation once the action has run)
    after: list[Callable[[], None]] = field(default_factory=list)
    #: False (``run(collect_metrics=False)``): add no Observations or other counting; checks still run
    metrics_enabled: bool = True
    #: DataFrames the method persisted; unpersisted with the run's other caches
    cached: list[Any] = field(default_factory=list)

    @property
    def input(self) -> "DataFrame":
        return self.inputs[0]

    @property
    def step_name(self) -> str:
        return step_label(self.index, self.step.name)

    def frame(self, name: str) -> "DataFrame":
        return self.frames[name]


@dataclass(frozen=True)
class Method:
    """A registered method: its function, settings model and where it may be used."""

    type: str
    name: str
    func: Callable[[StepContext, Any], Any]
    config: type[Config]
    modes: frozenset[str] = frozenset({"batch", "streaming"})
    #: settings whose values name other DataFrames of the pipeline (checked at planning)
    frame_settings: tuple[str, ...] = ()
    #: how many inputs the method takes: 0 (extract), 1, or "many" (inputs: [...])
    arity: int | str = 1
    example: str = ""
    #: batch mode retries it by default (it opens its own connections, or its write is idempotent)
    retried: bool = False
    #: with no input named, it takes the previous step's output (sql and union take none)
    default_input: bool = True
    #: fewest inputs it takes
    min_inputs: int = 0
    #: it reads the temp views its query names (sql)
    reads_views: bool = False
    #: loads: where the rows go (delta, files, jdbc, kafka, memory: a table in the session, display)
    sink: str | None = None
    #: how Spark's executed plan counts its output rows: "scan" (an extract's read), "filter",
    #: "aggregate", "join", "same" (it changes columns only), "observed" (its Observation's node marks where
    #: it ends: a query of its own), or None (no count of its own)
    plan_rows: str | None = None
    #: batch runs count its rows with an Observation on its output: Spark's plan would count them only after
    #: the filters it pushes into the parsing (CSV, JSON), or has no operator of its own to count (sql)
    observed: bool = False

    @property
    def summary(self) -> str:
        doc = (self.func.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


METHODS: dict[tuple[str, str], Method] = {}


@contextlib.contextmanager
def session_conf(spark: "SparkSession", key: str, value: str) -> Iterator[None]:
    """Sets a runtime SQL conf for the block, then restores what was there."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def register(
    type: str,
    name: str,
    config: type[Config],
    *,
    modes: tuple[str, ...] = ("batch", "streaming"),
    frame_settings: tuple[str, ...] = (),
    arity: int | str | None = None,
    example: str = "",
    retried: bool = False,
    default_input: bool = True,
    min_inputs: int = 0,
    reads_views: bool = False,
    sink: str | None = None,
    plan_rows: str | None = None,
    observed: bool = False,
) -> Callable[[Callable[[StepContext, Any], Any]], Callable[[StepContext, Any], Any]]:
    """Registers a method function under ``type`` and ``name``, with the facts the planner and the engine read."""

    def decorate(func: Callable[[StepContext, Any], Any]) -> Callable[[StepContext, Any], Any]:
        METHODS[(type, name)] = Method(
            type, name, func, config, frozenset(modes), frame_settings,
            arity if arity is not None else (0 if type == "extract" else 1), example,
            retried, default_input, min_inputs, reads_views, sink, plan_rows, observed,
        )
        return func

    return decorate


def methods_of(type: str) -> list[str]:
    """The method names of one step type, sorted."""
    return sorted(name for t, name in METHODS if t == type)
