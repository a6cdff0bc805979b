"""Parsing and planning errors (SPEC sections 2 and 4); pure Python, no SparkSession.

Every broken spec must fail in ``Pipeline.from_yaml`` with a ``SpecError``,
``DataFrameResolutionError`` or ``CredentialError`` that names the YAML line, the
step and (where there are any) the valid choices, before any Spark action.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline_magics.errors import (
    CredentialError,
    DataFrameResolutionError,
    PipelineError,
    SpecError,
)
from pipeline_magics.run.pipeline import Pipeline
from pipeline_magics.spec.plan import build_plan
from pipeline_magics.spec.model import parse_spec

ALLOWED = (SpecError, DataFrameResolutionError, CredentialError)
BAD_SPECS = Path(__file__).parent / "bad_specs"
EXPECT = re.compile(r"^#\s*expect:\s*(?P<code>[A-Z_]+)\s+line\s+(?P<line>\d+):\s*(?P<text>.+?)\s*$")


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    """The tests assume the default security policy, whatever the caller's environment says."""
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
                "PIPELINE_AUDIT_CREDENTIALS", "PIPELINE_AUDIT_LOG"):
        monkeypatch.delenv(var, raising=False)


def fails(text: str, cls: type = SpecError, **kw) -> PipelineError:
    """The error ``Pipeline.from_yaml(text)`` raises; it must be one of the planning error classes."""
    with pytest.raises(PipelineError) as info:
        Pipeline.from_yaml(text, **kw)
    exc = info.value
    assert isinstance(exc, ALLOWED), f"{type(exc).__name__} is not a planning error: {exc}"
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    return exc


VALID = """\
name: orders_daily
vars: {min_amount: 10}
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {path: data/orders.csv, header: true, inferSchema: true}
  - type: extract
    method: fromCsv
    name: customers
    config: {path: data/customers.csv}
  - type: transform
    method: filterRows
    input: orders
    config: {condition: "amount > ${min_amount}"}
  - type: load
    method: toDelta
    config: {path: /tmp/lake/orders_big, mode: overwrite}
"""


# ----------------------------------------------------------------- valid specs


def test_valid_spec_plans_without_spark():
    pipeline = Pipeline.from_yaml(VALID)
    assert pipeline.name == "orders_daily"
    assert pipeline.spec.mode == "batch"
    steps = pipeline.plan.steps
    assert [p.output for p in steps] == ["orders", "customers", "step3", "step4"]
    assert steps[2].inputs == ("orders",)
    assert steps[3].inputs == ("step3",)  # a load reads the previous step's output
    assert steps[2].step.config == {"condition": "amount > 10"}
    text = pipeline.explain()
    assert "orders_daily" in text and "transform.filterRows" in text


def test_parse_spec_and_build_plan_directly():
    spec = parse_spec(VALID)
    assert spec.line_of("steps", 2, "config", "condition")[0] == 15
    plan = build_plan(spec)
    assert len(plan.steps) == 4 and plan.steps[0].method.name == "fromCsv"


def test_name_and_mode_overrides():
    pipeline = Pipeline.from_yaml(VALID, name="renamed")
    assert pipeline.name == "renamed"
    exc = fails(VALID.replace("method: fromCsv\n    name: customers\n    config: {path: data/customers.csv}",
                              "method: fromPostgres\n    name: customers\n"
                              "    config: {url: 'jdbc:postgresql://h:5432/db', table: t}"), mode="streaming")
    assert exc.code == "MODE_UNSUPPORTED" and exc.step_index == 1
    assert "fromPostgres works only in batch mode" in str(exc)


# ----------------------------------------------------------------------- YAML


def test_yaml_syntax_error_names_the_line():
    text = """\
name: broken
steps:
  - type: extract
    method: fromCsv
    config: {path: data/orders.csv, header: true
  - type: load
    method: display
"""
    exc = fails(text)
    assert exc.code == "YAML_SYNTAX"
    assert exc.line == 6
    assert exc.column is not None
    assert str(exc).startswith("line 6")
    assert "YAML syntax error" in str(exc)


def test_yaml_syntax_error_with_unquoted_var_hints_at_quoting():
    exc = fails('vars: {base: data}\nsteps:\n  - {type: extract, method: fromCsv, config: {path: ${base}/o.csv}}\n')
    assert exc.code == "YAML_SYNTAX" and exc.line == 3
    assert 'quote values that use ${...}' in str(exc)


def test_duplicate_yaml_key():
    exc = fails("steps:\n  - type: extract\n    method: fromCsv\n    method: fromJson\n    config: {path: a}\n")
    assert exc.code == "YAML_DUPLICATE_KEY" and exc.line == 4
    assert "duplicate key 'method'" in str(exc)


@pytest.mark.parametrize("text, code", [
    ("", "SPEC_EMPTY"),
    ("# only a comment\n", "SPEC_EMPTY"),
    ("- a\n- b\n", "SPEC_NOT_MAPPING"),
    ("name: x\n", "SPEC_MISSING"),
    ("steps: []\n", "SPEC_TOO_SHORT"),
    ("vars: [a, b]\nsteps: []\n", "SPEC_VARS"),
])
def test_empty_or_shapeless_specs(text, code):
    exc = fails(text)
    assert exc.code == code
    assert exc.line == 1


# ------------------------------------------------------------ keys of the spec


def test_unknown_top_level_key():
    exc = fails("name: x\nstpes:\n  - {type: extract, method: fromCsv, config: {path: a}}\n")
    assert exc.code == "SPEC_EXTRA_FORBIDDEN"
    assert exc.line == 2 and exc.column == 1
    assert exc.step_index is None
    text = str(exc)
    assert "line 2" in text and "unknown key 'stpes'" in text and "did you mean 'steps'" in text
    assert "valid keys:" in text and "vars" in text


def test_unknown_step_key_with_did_you_mean():
    text = """\
steps:
  - type: extract
    method: fromCsv
    config: {path: data/orders.csv}
  - type: transform
    method: filterRows
    confg: {condition: "amount > 10"}
"""
    exc = fails(text)
    assert exc.code == "SPEC_EXTRA_FORBIDDEN"
    assert exc.line == 7 and exc.column == 5
    assert exc.step_index == 1 and exc.method == "filterRows" and exc.step_type == "transform"
    msg = str(exc)
    for words in ("line 7", "step 2", "transform.filterRows", "unknown key 'confg'", "did you mean 'config'",
                  "valid keys:", "cacheStorageLevel"):
        assert words in msg, (words, msg)


def test_unknown_retry_key_suggests_retry_settings():
    text = "steps:\n  - type: extract\n    method: fromCsv\n    retry: {attempts: 2, backof: 1}\n" \
           "    config: {path: a}\n"
    exc = fails(text)
    assert exc.code == "SPEC_EXTRA_FORBIDDEN" and exc.line == 4 and exc.step_index == 0
    assert "did you mean 'backoffSeconds'" in str(exc)
    assert "backoffSeconds" in (exc.hint or "") and "steps" not in (exc.hint or "")


def test_bad_step_type_lists_the_types():
    exc = fails("steps:\n  - type: extrct\n    method: fromCsv\n    config: {path: a}\n")
    assert exc.code == "SPEC_LITERAL_ERROR" and exc.line == 2 and exc.step_index == 0
    assert "extract, transform, load" in str(exc)


def test_bad_pipeline_name_and_mode():
    exc = fails("name: bad name\nsteps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n")
    assert exc.code == "SPEC_STRING_PATTERN_MISMATCH" and exc.line == 1 and "'name'" in str(exc)
    exc = fails("mode: stream\nsteps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n")
    assert exc.code == "SPEC_LITERAL_ERROR" and exc.line == 1
    assert "'batch' or 'streaming'" in str(exc)


def test_retry_out_of_range():
    exc = fails("steps:\n  - type: extract\n    method: fromCsv\n    retry: {attempts: 0}\n    config: {path: a}\n")
    assert exc.code == "SPEC_GREATER_THAN_EQUAL" and exc.line == 4 and exc.step_index == 0
    assert "'attempts'" in str(exc)


# -------------------------------------------------------------------- methods


def test_unknown_method_suggests_and_lists_methods():
    exc = fails("steps:\n  - type: extract\n    method: fromCvs\n    config: {path: a.csv}\n")
    assert exc.code == "UNKNOWN_METHOD"
    assert exc.line == 3 and exc.column == 5
    assert exc.step_index == 0 and exc.method == "fromCvs"
    msg = str(exc)
    assert "line 3" in msg and "step 1" in msg
    assert "unknown extract method 'fromCvs'" in msg and "did you mean 'fromCsv'" in msg
    for name in ("fromCsv", "fromJson", "fromParquet", "fromDelta", "fromTable", "fromPostgres", "fromKafka",
                 "fromRate"):
        assert name in exc.hint
    assert "fromCsv" in exc.params["choices"]


def test_unknown_transform_method_without_close_match_lists_all():
    text = "steps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n" \
           "  - {type: transform, method: qqqqzzzz}\n"
    exc = fails(text)
    assert exc.code == "UNKNOWN_METHOD" and exc.line == 3 and exc.step_index == 1
    assert "did you mean" not in exc.message
    for name in ("sql", "filterRows", "selectColumns", "withColumn", "renameColumns", "dropColumns",
                 "dropDuplicates", "join", "union", "aggregate", "withWatermark", "window", "repartition",
                 "coalesce", "expect"):
        assert name in exc.hint, name


def test_method_of_the_wrong_type():
    text = "steps:\n  - type: extract\n    method: fromCsv\n    config: {path: a}\n" \
           "  - type: transform\n    method: toDelta\n    config: {path: /tmp/x}\n"
    exc = fails(text)
    assert exc.code == "UNKNOWN_METHOD"
    assert exc.line == 6 and exc.step_index == 1
    msg = str(exc)
    assert "step 2" in msg and "'toDelta'" in msg and "load method" in msg and "not a transform method" in msg
    assert "type: load" in exc.hint


def test_transform_without_any_input():
    exc = fails("steps:\n  - type: transform\n    method: filterRows\n    config: {condition: 'x > 1'}\n")
    assert exc.code == "NO_INPUT" and exc.line == 2 and exc.step_index == 0
    assert "needs an input" in str(exc)


# ------------------------------------------------------------------- settings


def test_missing_required_setting():
    exc = fails("steps:\n  - type: extract\n    method: fromCsv\n    config: {header: true}\n")
    assert exc.code == "INVALID_SETTING"
    assert exc.line == 4 and exc.step_index == 0
    assert "missing required setting 'path'" in str(exc) and "step 1" in str(exc)
    assert "required: path" in exc.hint and "example" in exc.hint


def test_missing_config_block_is_a_missing_setting():
    exc = fails("steps:\n  - type: extract\n    method: fromCsv\n")
    assert exc.code == "INVALID_SETTING" and exc.line == 2
    assert "missing required setting 'path'" in str(exc)


def test_unknown_setting_with_suggestion():
    text = "steps:\n  - type: extract\n    method: fromCsv\n    config:\n      path: a.csv\n      heder: true\n"
    exc = fails(text)
    assert exc.code == "INVALID_SETTING"
    assert exc.line == 6 and exc.column == 7
    msg = str(exc)
    assert "line 6" in msg and "step 1" in msg and "extract.fromCsv" in msg
    assert "unknown setting 'heder'" in msg and "did you mean 'header'" in msg
    assert "fromCsv settings:" in exc.hint and "inferSchema" in exc.hint


@pytest.mark.parametrize("method, config, setting", [
    ("fromCsv", "{path: a.csv, header: maybe}", "header"),
    ("fromCsv", "{path: a.csv, sep: [1]}", "sep"),
    ("fromJson", "{path: 42}", "path"),
])
def test_wrong_type_of_an_extract_setting(method, config, setting):
    exc = fails(f"steps:\n  - type: extract\n    method: {method}\n    config: {config}\n")
    assert exc.code == "INVALID_SETTING" and exc.line == 4 and exc.step_index == 0
    assert f"setting '{setting}" in str(exc)


def test_wrong_type_of_a_transform_setting_points_at_its_line():
    text = """\
steps:
  - type: extract
    method: fromCsv
    config: {path: a.csv}
  - type: transform
    method: repartition
    config:
      numPartitions: many
"""
    exc = fails(text)
    assert exc.code == "INVALID_SETTING"
    assert exc.line == 8 and exc.step_index == 1
    assert "setting 'numPartitions'" in str(exc) and "valid integer" in str(exc) and "'many'" in str(exc)


def test_bad_enum_setting_lists_the_choices():
    text = "steps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n" \
           "  - {type: transform, method: expect, config: {condition: 'x > 0', onFail: explode}}\n"
    exc = fails(text)
    assert exc.code == "INVALID_SETTING" and exc.line == 3 and exc.step_index == 1
    assert "'fail', 'drop', 'warn' or 'quarantine'" in str(exc)


def test_rule_across_settings():
    exc = fails("steps:\n  - type: extract\n    method: fromDelta\n    config: {path: /a, table: b}\n")
    assert exc.code == "INVALID_SETTING" and exc.line == 4
    assert "exactly one of 'path' or 'table'" in str(exc)


def test_to_delta_merge_without_merge_keys():
    text = "steps:\n  - type: extract\n    method: fromCsv\n    config: {path: a}\n" \
           "  - type: load\n    method: toDelta\n    config: {path: /tmp/x, mode: merge}\n"
    exc = fails(text)
    assert exc.code == "INVALID_SETTING"
    assert exc.line == 7 and exc.step_index == 1 and exc.method == "toDelta"
    assert "mode: merge needs 'mergeKeys'" in str(exc) and "step 2" in str(exc)


def test_merge_keys_without_merge_mode():
    text = "steps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n" \
           "  - {type: load, method: toDelta, config: {path: /tmp/x, mergeKeys: [id]}}\n"
    exc = fails(text)
    assert exc.code == "INVALID_SETTING" and "only used with mode: merge" in str(exc)


def test_bad_cache_storage_level():
    text = "steps:\n  - type: extract\n    method: fromCsv\n    cache: true\n" \
           "    cacheStorageLevel: MEMORY_AND_DSK\n    config: {path: a}\n"
    exc = fails(text)
    assert exc.code == "INVALID_SETTING"
    assert exc.line == 5 and exc.step_index == 0
    assert "unknown storage level 'MEMORY_AND_DSK'" in str(exc) and "did you mean 'MEMORY_AND_DISK'" in str(exc)
    assert "DISK_ONLY" in exc.hint and "OFF_HEAP" in exc.hint


@pytest.mark.parametrize("level", ["MEMORY_ONLY", "MEMORY_AND_DISK", "DISK_ONLY", "MEMORY_AND_DISK_2", "OFF_HEAP"])
def test_valid_cache_storage_levels(level):
    pipeline = Pipeline.from_yaml(f"steps:\n  - type: extract\n    method: fromCsv\n    cache: true\n"
                                  f"    cacheStorageLevel: {level}\n    config: {{path: a}}\n")
    assert pipeline.plan.steps[0].step.cacheStorageLevel == level
    from pyspark import StorageLevel

    assert hasattr(StorageLevel, level)


# ---------------------------------------------------------- inputs and names


def test_unknown_input_lists_known_names():
    text = """\
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {path: a.csv}
  - type: extract
    method: fromCsv
    name: customers
    config: {path: c.csv}
  - type: transform
    method: filterRows
    input: ordres
    config: {condition: "x > 1"}
"""
    exc = fails(text, DataFrameResolutionError)
    assert exc.code == "UNKNOWN_INPUT"
    assert exc.line == 12 and exc.step_index == 2
    msg = str(exc)
    assert "line 12" in msg and "step 3" in msg and "unknown input 'ordres'" in msg and "did you mean 'orders'" in msg
    assert "known names: orders, customers" in exc.hint
    assert exc.params["known"] == ["orders", "customers"]


def test_unknown_name_in_inputs_list_and_join_right():
    text = "steps:\n  - {type: extract, method: fromCsv, name: a, config: {path: a}}\n" \
           "  - {type: transform, method: union, inputs: [a, bb]}\n"
    exc = fails(text, DataFrameResolutionError)
    assert exc.code == "UNKNOWN_INPUT" and exc.line == 3 and "'bb'" in str(exc)
    text = "steps:\n  - {type: extract, method: fromCsv, name: orders, config: {path: a}}\n" \
           "  - type: transform\n    method: join\n    config: {right: custmers, 'on': id}\n"
    exc = fails(text, DataFrameResolutionError)
    assert exc.code == "UNKNOWN_INPUT" and exc.line == 5 and exc.step_index == 1
    assert "unknown input 'custmers'" in str(exc) and "known names: orders" in exc.hint


def test_a_load_output_is_not_an_input():
    text = "steps:\n  - {type: extract, method: fromCsv, name: a, config: {path: a}}\n" \
           "  - {type: load, method: toParquet, name: out, config: {path: /tmp/a}}\n" \
           "  - {type: transform, method: filterRows, input: out, config: {condition: x}}\n"
    exc = fails(text, DataFrameResolutionError)
    assert exc.code == "UNKNOWN_INPUT" and exc.line == 4


def test_duplicate_step_names():
    text = """\
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {path: a.csv}
  - type: extract
    method: fromCsv
    name: orders
    config: {path: b.csv}
"""
    exc = fails(text)
    assert exc.code == "DUPLICATE_NAME"
    assert exc.line == 8 and exc.step_index == 1 and exc.step_name == "orders"
    assert "step 2 'orders'" in str(exc) and "already used by an earlier step" in str(exc)


def test_duplicate_load_step_names():
    text = "steps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n" \
           "  - {type: load, method: toParquet, name: out, config: {path: /tmp/a}}\n" \
           "  - {type: load, method: toCsv, name: out, config: {path: /tmp/b}}\n"
    exc = fails(text)
    assert exc.code == "DUPLICATE_NAME" and exc.line == 4


def test_input_and_inputs_together_and_inputs_on_single_input_method():
    text = "steps:\n  - {type: extract, method: fromCsv, name: a, config: {path: a}}\n" \
           "  - {type: extract, method: fromCsv, name: b, config: {path: a}}\n" \
           "  - {type: transform, method: filterRows, inputs: [a, b], config: {condition: x}}\n"
    exc = fails(text)
    assert exc.code == "INPUTS" and exc.line == 4 and "takes one input" in str(exc)
    text = text.replace("inputs: [a, b]", "input: a, inputs: [a, b]")
    exc = fails(text)
    assert exc.code == "INPUTS" and "not both" in str(exc)


def test_extract_takes_no_input():
    text = "steps:\n  - {type: extract, method: fromCsv, name: a, config: {path: a}}\n" \
           "  - {type: extract, method: fromCsv, input: a, config: {path: a}}\n"
    exc = fails(text)
    assert exc.code == "INPUTS" and exc.line == 3 and exc.step_index == 1


def test_union_needs_two_inputs():
    text = "steps:\n  - {type: extract, method: fromCsv, name: a, config: {path: a}}\n" \
           "  - {type: transform, method: union, inputs: [a]}\n"
    exc = fails(text)
    assert exc.code == "INPUTS" and exc.line == 3 and "at least two inputs" in str(exc)


def test_join_on_key_needs_no_quotes():
    text = "steps:\n  - {type: extract, method: fromCsv, name: orders, config: {path: a}}\n" \
           "  - {type: extract, method: fromCsv, name: customers, config: {path: c}}\n" \
           "  - type: transform\n    method: join\n    input: orders\n" \
           "    config: {right: customers, on: customer_id, how: left}\n"
    pipeline = Pipeline.from_yaml(text)
    assert pipeline.plan.steps[2].step.config["on"] == "customer_id"


# ---------------------------------------------------------------- interpolation

VARS_SPEC = """\
vars: {base: /spec, n: 4, min_amount: 10, flag: false, cols: [a, b]}
steps:
  - type: extract
    method: fromCsv
    config: {path: "${base}/orders.csv", inferSchema: "${flag}"}
  - type: transform
    method: repartition
    config: {numPartitions: "${n}", columns: "${cols}"}
  - type: transform
    method: filterRows
    config: {condition: "amount > ${min_amount} AND note <> '$$x'"}
"""


def test_vars_from_the_spec():
    spec = Pipeline.from_yaml(VARS_SPEC).spec
    assert spec.steps[0].config == {"path": "/spec/orders.csv", "inferSchema": False}
    assert spec.steps[1].config == {"numPartitions": 4, "columns": ["a", "b"]}
    assert spec.steps[2].config == {"condition": "amount > 10 AND note <> '$x'"}
    assert spec.vars["base"] == "/spec"  # the defaults themselves are kept as written


def test_whole_value_var_keeps_its_type():
    spec = Pipeline.from_yaml(VARS_SPEC, defaults={"n": 8, "flag": True}).spec
    assert spec.steps[1].config["numPartitions"] == 8 and isinstance(spec.steps[1].config["numPartitions"], int)
    assert spec.steps[0].config["inferSchema"] is True
    assert spec.steps[1].config["columns"] == ["a", "b"]
    # inside a longer string it is text
    assert spec.steps[2].config["condition"].startswith("amount > 10 ")


def test_var_precedence_spec_lt_notebook_lt_cli():
    only_spec = Pipeline.from_yaml(VARS_SPEC).spec
    notebook = Pipeline.from_yaml(VARS_SPEC, defaults={"base": "/nb", "min_amount": 20}).spec
    cli = Pipeline.from_yaml(VARS_SPEC, {"base": "/cli"}, defaults={"base": "/nb", "min_amount": 20}).spec
    assert only_spec.steps[0].config["path"] == "/spec/orders.csv"
    assert notebook.steps[0].config["path"] == "/nb/orders.csv"
    assert notebook.steps[2].config["condition"].startswith("amount > 20 ")
    assert cli.steps[0].config["path"] == "/cli/orders.csv"
    assert cli.steps[2].config["condition"].startswith("amount > 20 ")  # not overridden by --var
    # --var values arrive as strings; the settings model still accepts them
    pipeline = Pipeline.from_yaml(VARS_SPEC, {"n": "16"})
    assert pipeline.plan.steps[1].config(pipeline.spec.steps[1].config).numPartitions == 16


def test_var_via_parse_spec_keywords():
    spec = parse_spec(VARS_SPEC, variables={"base": "/v"}, defaults={"base": "/d"})
    assert spec.steps[0].config["path"] == "/v/orders.csv"
    spec = parse_spec("name: ${who}\nsteps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n",
                      defaults={"who": "nightly"}, overrides={"mode": "streaming"})
    assert spec.name == "nightly" and spec.mode == "streaming"


def test_unknown_variable():
    text = """\
vars: {min_amount: 10}
steps:
  - type: extract
    method: fromCsv
    config: {path: data/orders.csv}
  - type: transform
    method: filterRows
    config: {condition: "amount > ${min_amont}"}
"""
    exc = fails(text)
    assert exc.code == "UNKNOWN_VARIABLE"
    assert exc.line == 8
    assert exc.params == {"name": "min_amont"}
    msg = str(exc)
    assert "line 8" in msg and "unknown variable '${min_amont}'" in msg and "did you mean 'min_amount'" in msg
    assert "--var min_amont=VALUE" in exc.hint and "known: min_amount" in exc.hint


def test_unknown_variable_with_no_vars_at_all():
    exc = fails('steps:\n  - {type: extract, method: fromCsv, config: {path: "${base}/a.csv"}}\n')
    assert exc.code == "UNKNOWN_VARIABLE" and exc.line == 2 and "known: none" in exc.hint


def test_vars_must_be_a_mapping():
    exc = fails("vars: 3\nsteps:\n  - {type: extract, method: fromCsv, config: {path: a}}\n")
    assert exc.code == "SPEC_VARS" and exc.line == 1


# ------------------------------------------------------------------- modes


def test_batch_only_methods_in_streaming_mode():
    text = "mode: streaming\nsteps:\n  - type: extract\n    method: fromPostgres\n" \
           "    config: {url: 'jdbc:postgresql://localhost:5432/shop', table: public.orders}\n"
    exc = fails(text)
    assert exc.code == "MODE_UNSUPPORTED"
    assert exc.line == 4 and exc.step_index == 0
    assert "fromPostgres works only in batch mode" in str(exc) and "step 1" in str(exc)
    assert "mode: batch" in exc.hint


def test_streaming_settings_refused_in_batch_mode():
    text = "steps:\n  - {type: extract, method: fromCsv, config: {path: x}}\n" \
           "  - type: load\n    method: toDelta\n" \
           "    config: {path: /tmp/x, checkpointLocation: /tmp/cp}\n"
    exc = fails(text)
    assert exc.code == "STREAMING_ONLY_SETTING" and exc.line == 5 and exc.step_index == 1
    assert "'checkpointLocation' applies to streaming pipelines only" in str(exc)


def test_from_rate_in_batch_mode():
    exc = fails("steps:\n  - type: extract\n    method: fromRate\n    config: {rowsPerSecond: 5}\n")
    assert exc.code == "MODE_UNSUPPORTED"
    assert exc.line == 3 and exc.step_index == 0
    assert "fromRate works only in streaming mode" in str(exc) and "this pipeline is batch" in str(exc)


def test_from_rate_in_streaming_mode_plans():
    pipeline = Pipeline.from_yaml("mode: streaming\nsteps:\n  - {type: extract, method: fromRate}\n")
    assert pipeline.plan.steps[0].method.name == "fromRate"


# ---------------------------------------------------------- security policy


def test_strict_policy_refuses_a_literal_password(monkeypatch):
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "strict")
    text = "steps:\n  - type: extract\n    method: fromPostgres\n    config:\n" \
           "      url: 'jdbc:postgresql://localhost:5432/shop'\n      table: t\n      password: hunter2\n"
    exc = fails(text, CredentialError)
    assert exc.code == "POLICY_REFUSED" and exc.line == 7 and exc.step_index == 0
    assert "hunter2" not in str(exc) and "hunter2" not in repr(exc.config)


# ---------------------------------------------- robustness: only planning errors


def _paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, path + (i,))


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


MUTABLE = {
    "name": "p", "mode": "batch", "vars": {"m": 10}, "spark": {"spark.sql.shuffle.partitions": 2},
    "steps": [
        {"type": "extract", "method": "fromCsv", "name": "orders", "config": {"path": "a.csv", "header": True}},
        {"type": "extract", "method": "fromCsv", "name": "customers", "config": {"path": "c.csv"}},
        {"type": "transform", "method": "join", "input": "orders", "cache": True, "cacheStorageLevel": "MEMORY_ONLY",
         "retry": {"attempts": 2}, "config": {"right": "customers", "on": "customer_id", "how": "left"}},
        {"type": "transform", "method": "union", "inputs": ["orders", "orders"]},
        {"type": "transform", "method": "aggregate", "config": {"groupBy": ["country"], "aggregations": {"n": "count(*)"}}},
        {"type": "load", "method": "toDelta", "config": {"path": "/tmp/x", "mode": "merge", "mergeKeys": ["country"]}},
    ],
}


def test_mangled_specs_raise_only_planning_errors():
    Pipeline.from_yaml(yaml.safe_dump(MUTABLE))  # the base is valid
    seen = set()
    for path in list(_paths(MUTABLE)):
        if not path:
            continue
        for value in (None, 123, [], {}, "x y", [1], {"a": 1}, True, "${nope}"):
            data = copy.deepcopy(MUTABLE)
            _set(data, path, value)
            try:
                Pipeline.from_yaml(yaml.safe_dump(data))
            except ALLOWED as exc:
                assert exc.line is not None, (path, value, str(exc))
                seen.add(type(exc))
            except Exception as exc:  # noqa: BLE001 - this is what the test looks for
                pytest.fail(f"{path}={value!r}: {type(exc).__name__}: {exc}")
    assert SpecError in seen and DataFrameResolutionError in seen


# -------------------------------------------------------------- tests/bad_specs


def _bad_specs():
    files = sorted(BAD_SPECS.glob("*.yaml"))
    assert len(files) >= 10
    return files


@pytest.mark.parametrize("path", _bad_specs(), ids=lambda p: p.stem)
def test_bad_spec_files(path):
    text = path.read_text(encoding="utf-8")
    match = EXPECT.match(text.splitlines()[0])
    assert match, f"{path.name}: first line must be '# expect: CODE line N: text'"
    with pytest.raises(PipelineError) as info:
        Pipeline.from_yaml(text)
    exc = info.value
    assert isinstance(exc, ALLOWED), f"{type(exc).__name__}: {exc}"
    assert exc.code == match["code"], str(exc)
    assert exc.line == int(match["line"]), str(exc)
    assert str(exc).startswith(f"line {exc.line}"), str(exc)
    assert match["text"] in str(exc), str(exc)
