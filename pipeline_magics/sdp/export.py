"""``export --sdp``: a spec as a Spark Declarative Pipelines project.

The project is ``spark-pipeline.yml`` (``${vars}`` and the spec's ``spark:`` confs as its
configuration), ``transformations/<name>.py`` (the definitions, see :mod:`.codegen`),
``spark-conf/spark-defaults.conf`` (Delta and the jars for the server ``spark-pipelines``
starts) and a README. Every step SDP cannot express is named in one ``SpecError``
(code ``SDP_UNSUPPORTED``) before any file is written.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..secrets.credentials import as_reference, walk
from ..errors import SpecError
from ..run.pipeline import Pipeline
from ..spec.plan import PlannedStep
from ..secrets.redaction import is_secret_key
from ..spark.session import builder_confs
from ..spec.model import _VAR, parse_spec
from . import codegen
from .codegen import BENIGN_DELTA_OPTIONS, VAR_PREFIX, Setting

WHY_BATCH_APPEND = ("SDP recomputes a materialized view on every run; appending needs a streaming spec "
                    "(a streaming table), or use mode: overwrite")


@dataclass
class Project:
    """What ``export --sdp`` wrote."""

    path: Path
    name: str
    files: list[Path] = field(default_factory=list)
    #: table or sink name -> the load step it comes from
    targets: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SDP project '{self.name}' in {self.path}: " + ", ".join(
            str(f.relative_to(self.path)) for f in self.files)


def _literal_secret(p: PlannedStep) -> str | None:
    """A secret setting given as plain text (it would be written into the project)."""
    for path, value in walk(p.step.config):
        key = str(path[-1]) if path else ""
        if value not in (None, "") and is_secret_key(key) and as_reference(value) is None:
            return key
    return None


def unsupported(p: PlannedStep, s: Setting, streaming: bool) -> str | None:
    """Why SDP cannot express step ``p``, or None."""
    m, cfg = p.method.name, s.cfg
    secret = _literal_secret(p)
    if secret:
        return f"'{secret}' is a literal secret; the project may hold only references (vault: or env:)"
    if p.step.type == "extract":
        return None
    if p.step.type == "transform":
        if m == "expect" and getattr(cfg, "onFail", None) not in ("fail", "drop", "warn"):
            return f"onFail: {cfg.onFail} has no SDP equivalent (use fail, drop or warn)"
        if m == "expect" and streaming and cfg.onFail == "fail":
            return None
        return None
    if m == "toDelta":
        extra = sorted(set(cfg.options) - BENIGN_DELTA_OPTIONS)
        if extra:
            return f"Delta writer options {extra} have no SDP table equivalent"
        if not streaming:
            return None if cfg.mode == "overwrite" else (
                WHY_BATCH_APPEND if cfg.mode == "append" else
                f"mode: {cfg.mode} has no SDP materialized-view equivalent (only overwrite)")
        if cfg.mode not in ("append",) or (cfg.outputMode or "append") != "append":
            return "SDP streaming tables only append (mode: append, outputMode: append)"
        return None
    if m == "toKafka":
        return None if streaming else "SDP sinks take streaming flows only; export a streaming spec"
    if m in ("toPostgres",):
        return "SDP has no JDBC sink (its sinks are streaming Delta, Kafka and Python data sources)"
    if m in ("toParquet", "toCsv", "toJson"):
        return "SDP writes files only as catalog tables; use toDelta"
    return f"{m} has no SDP equivalent (SDP runs outside the notebook)"


def _load_name(p: PlannedStep, s: Setting, taken: set[str]) -> str:
    cfg = s.cfg
    if getattr(cfg, "table", None):
        name = cfg.table
    elif p.step.name:
        name = p.step.name
    elif getattr(cfg, "path", None):
        name = re.sub(r"\W", "_", os.path.basename(str(cfg.path).rstrip("/"))) or p.label
    else:
        name = p.label
    while name in taken:
        name += "_table"
    return name


def load_code(p: PlannedStep, s: Setting, streaming: bool, name: str) -> str:
    """The definitions of a load step: a table or sink and the flow that fills it."""
    fn = re.sub(r"\W", "_", f"{p.label}_flow")
    src = f"_frame({p.inputs[0]!r})"
    comment = f"step {p.index + 1} '{p.label}' ({p.step.label})"
    if p.method.name == "toKafka":
        opts = f"{{'kafka.bootstrap.servers': {s('bootstrapServers')}, 'topic': {s('topic')}, **{s('options')}}}"
        key = f"F.col({s('key')}).cast('string').alias('key'), " if s.given("key") else ""
        value = (f"F.col({s('value')}).cast('string')" if s.given("value")
                 else "F.to_json(F.struct(*[F.col(c) for c in df.columns]))")
        return (f"\n\ndp.create_sink({name!r}, format='kafka', options={opts})\n\n\n"
                f"@dp.append_flow(target={name!r}, name={p.label!r})\ndef {fn}():\n    df = {src}\n"
                f"    return df.select({key}{value}.alias('value'))\n")
    table = f"name={name!r}, comment={comment!r}"
    if s.given("path"):
        table += f", table_properties={{'location': {s('path')}}}"
    if s.given("partitionBy"):
        table += f", partition_cols={s('partitionBy')}"
    if not streaming:
        return f"\n\n@dp.materialized_view({table})\ndef {fn}():\n    return {src}\n"
    return (f"\n\ndp.create_streaming_table({table})\n\n\n"
            f"@dp.append_flow(target={name!r}, name={p.label!r})\ndef {fn}():\n    return {src}\n")


def _raw_steps(text: str, variables: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steps' settings with every ``${var}`` left in place."""
    keep = {k: "${" + k + "}" for k in variables}
    spec = parse_spec(text, keep, None, overrides)
    return [dict(step.config) for step in spec.steps]


def _config_value(value: Any) -> str:
    """A configuration value; a relative path that exists here is made absolute (SDP runs elsewhere)."""
    if isinstance(value, str) and value and not os.path.isabs(value) and os.path.exists(value):
        return os.path.abspath(value)
    return str(value)


def build(text: str, variables: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None,
          name: str | None = None, mode: str | None = None, path: Path = Path("project"),
          ) -> tuple[Pipeline, dict[str, str], dict[str, str]]:
    """The project's files (relative path -> text) and its pipeline; SpecError lists what SDP cannot express."""
    overrides = {"name": name, "mode": mode}
    pipeline = Pipeline.from_yaml(text, variables, defaults=defaults, name=name, mode=mode)
    spec = pipeline.spec
    used = {m.group(1) for m in _VAR.finditer(text) if m.group(1)}
    merged = {**spec.vars, **{k: v for k, v in (defaults or {}).items() if k in used}, **dict(variables or {})}
    raw = _raw_steps(text, merged, overrides)
    streaming = spec.mode == "streaming"
    problems, blocks, targets = [], [], {}
    taken = {p.output for p in pipeline.plan.steps if p.step.type != "load"}
    for p in pipeline.plan.steps:
        s = codegen.setting(p, raw[p.index], streaming)
        why = unsupported(p, s, streaming)
        if why:
            line, _ = spec.line_of("steps", p.index)
            problems.append({"line": line, "step": p.label, "method": p.step.label, "reason": why})
            continue
        comment = f"step {p.index + 1} '{p.label}' ({p.step.label})"
        if p.step.type == "extract":
            blocks.append(codegen.view(p.output, codegen.extract_code(p, s), comment))
        elif p.step.type == "transform":
            blocks.append(codegen.view(p.output, codegen.transform_code(p, s), comment))
            if p.method.name == "expect" and not streaming:
                counter = f"{p.output}_expectations"
                taken.add(counter)
                where = {"location": str(path / "warehouse" / counter)}  # in the project, wherever it runs
                blocks.append(f"\n\n@dp.materialized_view(name={counter!r}, comment="
                              f"{'failing rows per rule of ' + comment!r}, table_properties={where!r})\n"
                              f"def {counter}():\n"
                              f"    return _failing_rows(_frame({p.inputs[0]!r}), {codegen.expect_rules(p, s)})\n")
        else:
            target = _load_name(p, s, taken)
            taken.add(target)
            targets[target] = p.label
            blocks.append(load_code(p, s, streaming, target))
    if problems:
        listed = "\n".join(f"  line {x['line']}, step '{x['step']}' ({x['method']}): {x['reason']}" for x in problems)
        raise SpecError(f"Spark Declarative Pipelines cannot express {len(problems)} step(s); nothing was written:\n"
                        f"{listed}", code="SDP_UNSUPPORTED", pipeline=spec.name,
                        params={"steps": problems},
                        hint="change or remove these steps (README: 'Spark Declarative Pipelines')")
    # Tables are Delta by default: SDP passes a table's `format` on to ALTER TABLE when the table
    # exists already, which Delta refuses ('provider' is reserved), so no format is named.
    configuration = {"spark.sql.sources.default": "delta"}
    configuration.update({VAR_PREFIX + k: _config_value(v) for k, v in merged.items()})
    configuration.update({str(k): _config_value(v) for k, v in spec.spark.items()})
    header = codegen.HEADER.format(name=spec.name, mode=spec.mode, streaming=streaming, prefix=VAR_PREFIX)
    files = {f"transformations/{spec.name}.py": header + "".join(blocks)}
    return pipeline, configuration, files | {"__targets__": yaml.safe_dump(targets)}


def server_confs(project: Path) -> dict[str, str]:
    """Spark confs for the server ``spark-pipelines`` starts: Delta, the jars, a warehouse in the project."""
    confs = {k: v for k, v in builder_confs().items() if k != "spark.driver.extraJavaOptions"}
    if "spark.jars" in confs:
        # The local Connect server loads classes from the driver's class path, not from spark.jars alone.
        confs["spark.driver.extraClassPath"] = confs["spark.jars"].replace(",", os.pathsep)
    confs["spark.sql.warehouse.dir"] = str(project / "warehouse")
    return confs


README = """# {name}: a Spark Declarative Pipelines project

Exported by pipeline_magics from the spec '{name}' ({mode}). Run it with the `spark-pipelines`
of pyspark >= 4.1 (the Spark confs it needs, Delta Lake and the jars, are in spark-conf/):

    SPARK_CONF_DIR={path}/spark-conf spark-pipelines run --spec {path}/spark-pipeline.yml

or from a notebook: `%pipeline sdp run {path}`. The spec's variables are the `{prefix}*`
keys under `configuration:` in spark-pipeline.yml; edit them there.
"""


def export(text: str, out_dir: str | os.PathLike[str], variables: Mapping[str, Any] | None = None,
           defaults: Mapping[str, Any] | None = None, name: str | None = None, mode: str | None = None) -> Project:
    """Writes the SDP project for a spec into ``out_dir``; raises ``SpecError`` (SDP_UNSUPPORTED) first."""
    path = Path(out_dir).resolve()
    pipeline, configuration, files = build(text, variables, defaults, name, mode, path)
    targets = yaml.safe_load(files.pop("__targets__")) or {}
    spec = {
        "name": pipeline.name,
        "storage": (path / "storage").as_uri(),
        "configuration": configuration,
        "libraries": [{"glob": {"include": "transformations/**"}}],
    }
    files["spark-pipeline.yml"] = yaml.safe_dump(spec, sort_keys=False)
    files["spark-conf/spark-defaults.conf"] = "".join(f"{k} {v}\n" for k, v in server_confs(path).items())
    files["README.md"] = README.format(name=pipeline.name, mode=pipeline.spec.mode, path=path, prefix=VAR_PREFIX)
    project = Project(path, pipeline.name, targets=targets)
    for rel, body in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
        project.files.append(target)
    return project


def export_pipeline(pipeline: Pipeline, out_dir: str | os.PathLike[str]) -> Project:
    """Exports a pipeline parsed earlier (``%%pipeline NAME``) from the text and variables it came from."""
    source = getattr(pipeline, "source", None)
    if source is None:
        raise SpecError(f"pipeline '{pipeline.name}' has no spec text to export", code="SDP_NO_SOURCE",
                        pipeline=pipeline.name)
    text, variables, defaults, name, mode = source
    return export(text, out_dir, variables, defaults, name, mode)
