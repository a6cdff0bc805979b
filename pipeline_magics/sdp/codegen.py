"""Python source for Spark Declarative Pipelines definitions, one step at a time.

Each extract or transform becomes a ``@dp.temporary_view``; each load a materialized
view (batch), a streaming table with an append flow (streaming) or a sink with an
append flow (Kafka). A step SDP cannot express gives a reason instead of code.
``${var}`` settings stay ``_v("...")`` calls that read the pipeline's configuration,
and credential references stay ``_secret(...)`` calls: no value is written out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..secrets.credentials import as_reference, placeholders
from ..spec.plan import PlannedStep

VAR_PREFIX = "pipeline.var."
#: Delta writer options that change no rows (the SDP table takes its schema from the query)
BENIGN_DELTA_OPTIONS = frozenset({"mergeSchema", "overwriteSchema"})

HEADER = '''"""Spark Declarative Pipelines definitions of the pipeline '{name}' ({mode}).

Written by `python -m pipeline_magics export --sdp` from the pipeline_magics spec; run with
`spark-pipelines run` (see README.md next to spark-pipeline.yml). ${{var}} settings are read
from the pipeline's configuration (keys `{prefix}NAME` in spark-pipeline.yml).
"""
import os
import re

from pyspark import pipelines as dp
from pyspark.sql import functions as F

_STREAMING = {streaming}
_VAR = re.compile(r"\\$\\$|\\$\\{{([A-Za-z_][A-Za-z0-9_.-]*)\\}}")


def _v(value):
    """A setting with ${{var}} references, filled in from the pipeline's configuration."""
    if isinstance(value, dict):
        return {{k: _v(x) for k, x in value.items()}}
    if isinstance(value, list):
        return [_v(x) for x in value]
    if not isinstance(value, str):
        return value
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else spark.conf.get("{prefix}" + m.group(1)), value)


def _secret(reference):
    """A credential read when the pipeline is defined; the project holds only the reference."""
    if isinstance(reference, dict) and set(reference) == {{"env"}}:
        return os.environ[reference["env"]]
    from pipeline_magics.secrets.credentials import Resolver, as_reference  # Vault: pipeline_magics' resolver
    return Resolver().value(as_reference(reference))


def _frame(name):
    """An earlier step's output: a stream in a streaming pipeline."""
    return spark.readStream.table(name) if _STREAMING else spark.read.table(name)


def _expect(df, rules, on_fail):
    """Expectation rules as a filter (drop), a check that fails the flow (fail) or nothing (warn)."""
    ok = F.lit(True)
    for condition in rules.values():
        ok = ok & F.coalesce(F.expr(condition), F.lit(False))
    if on_fail == "drop":
        return df.filter(ok)
    if on_fail == "fail":
        failed = ", ".join(rules)
        return df.filter(F.when(ok, F.lit(True)).otherwise(F.raise_error(F.lit("expectation failed: " + failed))))
    return df


def _failing_rows(df, rules):
    """One row: per rule, how many rows fail it (the counters of an expect step)."""
    return df.agg(*[F.count_if(~F.coalesce(F.expr(c), F.lit(False))).alias(r) for r, c in rules.items()])
'''


@dataclass
class Setting:
    """One step's settings: the validated values, and the spec's own text with ${var} kept."""

    cfg: Any
    raw: dict[str, Any]
    streaming: bool = False

    @property
    def reader(self) -> str:
        return "spark.readStream" if self.streaming else "spark.read"

    def __call__(self, key: str, alias: str | None = None) -> str:
        """Python source for the setting ``key`` (its model field; ``alias`` its YAML name)."""
        raw = self.raw.get(alias or key)
        if raw is not None and as_reference(raw) is not None:
            return f"_secret({raw!r})"
        if _has_var(raw):
            return f"_v({raw!r})"
        value = getattr(self.cfg, key)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if hasattr(value, "model_dump"):
            value = value.model_dump(exclude_none=True)
        return repr(value)

    def given(self, key: str) -> bool:
        value = getattr(self.cfg, key, None)
        return value not in (None, {}, [], "")


def _has_var(value: Any) -> bool:
    if isinstance(value, str):
        return bool(re.search(r"\$\{", value))
    if isinstance(value, dict):
        return any(_has_var(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_var(v) for v in value)
    return False


def setting(p: PlannedStep, raw_config: dict[str, Any], streaming: bool) -> Setting:
    """The settings of ``p`` (references as stand-ins for validation; their text kept in ``raw``)."""
    cfg = p.method.config.model_validate(placeholders(p.step.config, p.method.config))
    return Setting(cfg, raw_config, streaming)


def _options(s: Setting, names: tuple[str, ...]) -> str:
    parts = [f"{n}={str(getattr(s.cfg, n)).lower()!r}" if isinstance(getattr(s.cfg, n), bool) and n not in s.raw
             or isinstance(s.raw.get(n), bool) else f"{n}={s(n)}" for n in names]
    return ", ".join(parts)


def _reader(s: Setting, fmt: str, opts: tuple[str, ...]) -> str:
    code = f"{s.reader}.format({fmt!r})"
    if opts:
        code += f".options({_options(s, opts)})"
    if s.given("options"):
        code += f".options(**{s('options')})"
    if s.given("schema_"):
        code += f".schema({s('schema_', 'schema')})"
    path = s("path")
    if isinstance(s.cfg.path, list) and s.streaming:
        path = f"{path}[0]"
    return code + f".load({path})"


def extract_code(p: PlannedStep, s: Setting) -> str:
    """The DataFrame expression of an extract step."""
    m = p.method.name
    if m == "fromCsv":
        return _reader(s, "csv", ("header", "inferSchema", "sep"))
    if m == "fromJson":
        return _reader(s, "json", ("multiLine",))
    if m == "fromParquet":
        return _reader(s, "parquet", ())
    if m == "fromDelta":
        code = f"{s.reader}.format('delta')"
        code += f".options(**{s('options')})" if s.given("options") else ""
        for opt in ("versionAsOf", "timestampAsOf"):
            code += f".option({opt!r}, {s(opt)})" if s.given(opt) else ""
        return code + (f".table({s('table')})" if s.given("table") else f".load({s('path')})")
    if m == "fromTable":
        return f"{s.reader}.table({s('table')})"
    if m == "fromPostgres":
        url = s("url") if s.given("url") else f"'jdbc:postgresql://' + {s('host')} + ':' + str({s('port')}) + '/' + {s('database')}"
        opts = [f"'url': {url}", "'driver': 'org.postgresql.Driver'"]
        opts += [f"'user': {s('user')}"] if s.given("user") else []
        opts += [f"'password': {s('password')}"] if s.given("password") else []
        opts += [f"'dbtable': {s('table')}"] if s.given("table") else [f"'query': {s('query')}"]
        for key in ("partitionColumn", "lowerBound", "upperBound", "numPartitions", "fetchSize"):
            if s.given(key):
                opts.append(f"{key if key != 'fetchSize' else 'fetchsize'!r}: str({s(key)})")
        extra = f".options(**{{k: str(v) for k, v in {s('options')}.items()}})" if s.given("options") else ""
        return f"spark.read.format('jdbc').options(**{{{', '.join(opts)}}}){extra}.load()"
    if m == "fromKafka":
        sub = f".option('subscribe', {s('topic')})" if s.given("topic") else \
            f".option('subscribePattern', {s('subscribePattern')})"
        code = (f"{s.reader}.format('kafka')"
                f".option('kafka.bootstrap.servers', {s('bootstrapServers')}){sub}"
                f".option('startingOffsets', {s('startingOffsets')})")
        if s.given("endingOffsets") and not s.streaming:
            code += f".option('endingOffsets', {s('endingOffsets')})"
        code += f".options(**{s('options')})" if s.given("options") else ""
        code += ".load()"
        if s.cfg.format == "raw":
            return (f"{code}.selectExpr('CAST(key AS STRING) AS key', 'CAST(value AS STRING) AS value', "
                    "'topic', 'partition', 'offset', 'timestamp')")
        return (f"{code}.select(F.from_json(F.col('value').cast('string'), {s('schema_', 'schema')}).alias('v'), "
                "'timestamp').select('v.*', F.col('timestamp').alias('kafka_timestamp'))")
    if m == "fromRate":
        code = f"spark.readStream.format('rate').option('rowsPerSecond', {s('rowsPerSecond')})"
        return code + (f".option('numPartitions', {s('numPartitions')})" if s.given("numPartitions") else "") \
            + ".load()"
    raise KeyError(m)


def _agg(s: Setting) -> str:
    return f"*[F.expr(e).alias(a) for a, e in {s('aggregations')}.items()]"


def transform_code(p: PlannedStep, s: Setting) -> str:
    """The DataFrame expression of a transform step (its inputs read with ``_frame``)."""
    m = p.method.name
    src = f"_frame({p.inputs[0]!r})" if p.inputs else ""
    simple: dict[str, Callable[[], str]] = {
        "sql": lambda: f"spark.sql({s('query')})",
        "filterRows": lambda: f"{src}.filter({s('condition')})",
        "selectColumns": lambda: f"{src}.selectExpr(*{s('columns')})",
        "withColumn": lambda: f"{src}.withColumn({s('column')}, F.expr({s('expr')}))",
        "renameColumns": lambda: f"{src}.withColumnsRenamed({s('mapping')})",
        "dropColumns": lambda: f"{src}.drop(*{s('columns')})",
        "dropDuplicates": lambda: f"{src}.dropDuplicates({s('columns')})" if s.given("columns")
        else f"{src}.dropDuplicates()",
        "aggregate": lambda: f"{src}.groupBy(*{s('groupBy')}).agg({_agg(s)})",
        "withWatermark": lambda: f"{src}.withWatermark({s('column')}, {s('delay')})",
        "coalesce": lambda: f"{src}.coalesce({s('numPartitions')})",
    }
    if m in simple:
        return simple[m]()
    if m == "join":
        on = s.cfg.on
        if isinstance(on, list) or on.isidentifier():
            return f"{src}.join(_frame({s('right')}), {s('on')}, {s('how')})"
        return f"{src}.alias('left').join(_frame({s('right')}).alias('right'), F.expr({s('on')}), {s('how')})"
    if m == "union":
        frames = "[" + ", ".join(f"_frame({n!r})" for n in p.inputs) + "]"
        if s.cfg.byName:
            return (f"__import__('functools').reduce(lambda a, b: a.unionByName(b, allowMissingColumns="
                    f"{s('allowMissingColumns')}), {frames})")
        return f"__import__('functools').reduce(lambda a, b: a.union(b), {frames})"
    if m == "repartition":
        cols = f"*{s('columns')}" if s.given("columns") else ""
        args = ", ".join(a for a in (s("numPartitions") if s.given("numPartitions") else "", cols) if a)
        return f"{src}.repartition({args})"
    if m == "window":
        w = f"F.window({s('timeColumn')}, {s('duration')}" + (f", {s('slide')})" if s.given("slide") else ")")
        return (f"(lambda g: g.select(F.col('window.start').alias('window_start'), "
                f"F.col('window.end').alias('window_end'), *[c for c in g.columns if c != 'window']))"
                f"({src}.groupBy({w}.alias('window'), *{s('groupBy')}).agg({_agg(s)}))")
    if m == "expect":
        return f"_expect({src}, {expect_rules(p, s)}, {s('onFail')})"
    raise KeyError(m)


def expect_rules(p: PlannedStep, s: Setting) -> str:
    """The rules of an expect step as Python source: ``{name: condition}``."""
    if getattr(s.cfg, "rules", None):
        return s("rules")
    name = getattr(s.cfg, "name", None) or p.label
    return f"{{{name!r}: {s('condition')}}}"


def view(name: str, code: str, comment: str) -> str:
    """A temporary view definition."""
    fn = re.sub(r"\W", "_", name)
    return f"\n\n@dp.temporary_view(name={name!r}, comment={comment!r})\ndef {fn}():\n    return {code}\n"
