"""Tests inside the spec (``tests:``): given rows in, expected rows out, compared with pandas.

The given rows are random; what each step must produce is computed from them with pandas,
then written into the spec's ``expect:``. A test must pass with those rows and fail, naming
the step, its line and the rows, when one row is changed. No source or sink is touched.
"""
from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import yaml

from pipeline_magics.run import history
from pipeline_magics.__main__ import main
from pipeline_magics.errors import SpecTestError
from pipeline_magics.run.pipeline import Pipeline

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def orders(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"order_id": i, "amount": round(rng.uniform(-20, 200), 2), "country": rng.choice(["NL", "DE", "FR"])}
            for i in range(1, n + 1)]


def pandas_revenue(rows: list[dict], minimum: float) -> list[dict]:
    df = pd.DataFrame(rows)
    big = df[df.amount > minimum]
    out = big.groupby("country").agg(orders=("order_id", "count"), revenue=("amount", "sum")).reset_index()
    return [{"country": r.country, "orders": int(r.orders), "revenue": round(float(r.revenue), 2)}
            for r in out.itertuples()]


def spec_text(lake, tests: list[dict], mode: str = "batch", source: str | None = None) -> str:
    """A spec whose extract and sink must never be touched by a test: a missing file and a Delta table in ``lake``."""
    extract = source or "  - type: extract\n    method: fromCsv\n    name: orders\n" \
        f"    config: {{path: {lake}/no_such_input.csv, header: true}}\n"
    return (f"name: shop\nmode: {mode}\nsteps:\n{extract}"
            "  - type: transform\n    method: filterRows\n    name: big\n    config: {condition: 'amount > 10'}\n"
            "  - type: transform\n    method: aggregate\n    name: revenue\n"
            "    config: {groupBy: [country], aggregations: {orders: 'count(*)', revenue: 'round(sum(amount), 2)'}}\n"
            "  - type: load\n    method: toDelta\n    name: sink\n"
            f"    config: {{path: {lake}/revenue, mode: overwrite"
            + (f", checkpointLocation: {lake}/checkpoint" if mode == "streaming" else "") + "}\n"
            + yaml.safe_dump({"tests": tests}, sort_keys=False))


def test_expected_rows_from_pandas_pass_and_a_changed_row_fails(spark, lake):
    given = orders(40, seed=1)
    expected = pandas_revenue(given, 10)
    big = [{"order_id": r["order_id"]} for r in given if r["amount"] > 10]
    wrong = [dict(expected[0], revenue=round(expected[0]["revenue"] + 1, 2))] + expected[1:]
    text = spec_text(lake, [
        {"name": "revenue_per_country", "given": {"orders": {
            "schema": "order_id INT, amount DOUBLE, country STRING", "rows": given}},
         "expect": {"revenue": expected, "big": big, "sink": expected}},
        {"name": "off_by_one", "given": {"orders": {"rows": given}}, "expect": {"revenue": wrong}},
    ])
    report = Pipeline.from_yaml(text).test(spark)
    assert [(o.name, o.status) for o in report.outcomes] == [("revenue_per_country", "passed"), ("off_by_one", "failed")]
    message = report.failed[0].message
    step_line = text.splitlines().index("    name: revenue") + 1 - 2  # the step's '- type:' line
    assert f"step 'revenue' (line {step_line};" in message
    assert "1 missing row, 1 unexpected row" in message
    row = expected[0]
    assert f"{{country: '{row['country']}', orders: {row['orders']}, revenue: {round(row['revenue'] + 1, 2)}}}" in message
    assert f"{{country: '{row['country']}', orders: {row['orders']}, revenue: {row['revenue']}}}" in message
    assert not report.ok and "1 passed, 1 failed" in repr(report)
    with pytest.raises(SpecTestError) as info:
        report.raise_for_failures()
    assert "off_by_one" in str(info.value) and info.value.code == "SPEC_TEST_FAILED"
    assert sorted(os.listdir(lake)) == []  # neither the source nor the sink was touched


def test_expect_error_and_an_empty_result(spark, lake):
    source = ("  - type: extract\n    method: fromCsv\n    name: orders\n"
              f"    config: {{path: {lake}/none.csv}}\n"
              "  - type: transform\n    method: expect\n    name: positive_amount\n"
              "    config: {condition: 'amount > 0'}\n")
    tests = [
        {"name": "negative_fails", "given": {"orders": {"rows": [{"order_id": 3, "amount": -1.0, "country": "DE"}]}},
         "expectError": "positive_amount"},
        {"name": "no_error_after_all", "given": {"orders": {"rows": [{"order_id": 3, "amount": 1.0, "country": "DE"}]}},
         "expectError": "positive_amount"},
        {"name": "small_orders_vanish", "given": {"orders": {"schema": "order_id INT, amount DOUBLE, country STRING",
                                                            "rows": [{"order_id": 4, "amount": 5, "country": "NL"}]}},
         "expect": {"revenue": []}},
    ]
    report = Pipeline.from_yaml(spec_text(lake, tests, source=source)).test(spark)
    status = {o.name: o.status for o in report.outcomes}
    assert status == {"negative_fails": "passed", "no_error_after_all": "failed", "small_orders_vanish": "passed"}
    assert "expected an error containing 'positive_amount'" in report.failed[0].message
    assert os.listdir(lake) == []


def test_a_streaming_spec_is_tested_as_a_batch_without_a_checkpoint(spark, lake):
    source = ("  - type: extract\n    method: fromKafka\n    name: orders\n"
              "    config: {bootstrapServers: '127.0.0.1:1', topic: orders, format: json,\n"
              "             schema: 'order_id INT, amount DOUBLE, country STRING'}\n")
    given = orders(12, seed=2)
    text = spec_text(lake, [{"name": "stream_as_batch", "given": {"orders": {"rows": given}},
                             "expect": {"revenue": pandas_revenue(given, 10)}}], mode="streaming", source=source)
    report = Pipeline.from_yaml(text).test(spark)
    assert report.ok, repr(report)
    assert os.listdir(lake) == []  # no checkpoint, no table
    assert [q for q in spark.streams.active] == []


def test_headless_test_command_exit_codes_and_junit(spark, lake, tmp_path, monkeypatch, capsys):
    given = orders(10, seed=3)
    good = {"name": "good", "given": {"orders": {"rows": given}}, "expect": {"revenue": pandas_revenue(given, 10)}}
    bad = {"name": "bad", "given": {"orders": {"rows": given}}, "expect": {"revenue": pandas_revenue(given, 0)}}
    path = tmp_path / "shop.yaml"
    path.write_text(spec_text(lake, [good, bad]))
    # in this process, on the active session (a child process would start a JVM of its own)
    monkeypatch.setenv("PIPELINE_HISTORY", "none")
    assert main(["test", str(path), "--test", "good"]) == 0
    junit = tmp_path / "junit.xml"
    capsys.readouterr()
    assert main(["test", str(path), "--junit-xml", str(junit)]) == 1
    assert "1 passed, 1 failed" in capsys.readouterr().out
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c.find("failure") for c in suite}
    assert cases["good"] is None and "step 'revenue'" in cases["bad"].text
    assert os.listdir(lake) == []


def test_cell_and_line_magic_run_the_tests(spark, lake, tmp_path, capsys):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "pipeline_magics")
    given = orders(8, seed=4)
    good = {"name": "good", "given": {"orders": {"rows": given}}, "expect": {"revenue": pandas_revenue(given, 10)}}
    report = ip.run_cell_magic("pipeline", "--test", spec_text(lake, [good]))
    assert report.ok and [o.name for o in report.outcomes] == ["good"]
    assert ip.run_line_magic("pipeline", "test shop").ok  # NAME: the last %%pipeline shop cell
    bad = dict(good, name="bad", expect={"big": [{"order_id": -1}]})
    path = tmp_path / "bad.yaml"
    path.write_text(spec_text(lake, [bad]))
    with pytest.raises(SpecTestError) as info:
        ip.run_line_magic("pipeline", f"test {path}")
    assert "unexpected row" in str(info.value) and "{order_id: -1}" in str(info.value)
    assert os.listdir(lake) == []
    history.flush()


def test_schema_help_and_completion_know_tests():
    from pipeline_magics.notebook import help as helptext
    from pipeline_magics.notebook.commands import complete
    from pipeline_magics.spec.schema import json_schema

    schema = json_schema()
    test_def = schema["$defs"]["SpecTest"]
    assert schema["properties"]["tests"]["items"] == {"$ref": "#/$defs/SpecTest"}
    assert set(test_def["properties"]) == {"name", "description", "given", "expect", "expectError"}
    assert set(schema["$defs"]["GivenRows"]["properties"]) == {"schema", "rows"}
    text = helptext.topic_help("tests")
    assert "expectError" in text and "given.NAME.schema" in text and "expect:" in text
    assert complete("%pipeline te") == ["test"]
    assert complete("%pipeline help tes") == ["test", "tests"]
    assert complete("%pipeline history ", pipelines=["shop"]) == ["--last", "shop"]
    assert complete("%%pipeline --pre") == ["--preview"]
