"""The picture of a pipeline: nodes, edges, labels and colours, in DOT, Mermaid and text."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pipeline_magics.secrets.credentials import SecurityPolicy
from pipeline_magics.render.graph import KIND_COLOURS, build_graph, frame_rows, tables_read
from pipeline_magics.render.palette import NODE_STATUS_COLOURS
from pipeline_magics.metrics.model import PipelineMetrics, StepMetrics
from pipeline_magics.spec.plan import build_plan
from pipeline_magics.spec.model import parse_spec

BRANCHING = """
name: shop
steps:
  - {type: extract, method: fromCsv, name: orders, config: {path: data/orders.csv, inferSchema: true}}
  - {type: extract, method: fromCsv, name: customers, config: {path: data/customers.csv}}
  - type: transform
    method: join
    name: enriched
    input: orders
    config: {right: customers, on: customer_id, how: left}
  - {type: transform, method: expect, name: checked, config: {condition: "amount >= 0", onFail: drop}}
  - {type: extract, method: fromParquet, name: archive, config: {path: /data/old_orders.parquet}}
  - {type: transform, method: union, name: all_orders, inputs: [checked, archive]}
  - type: transform
    method: sql
    name: by_country
    config: {query: "SELECT country, sum(amount) AS revenue FROM all_orders GROUP BY country"}
  - {type: load, method: toDelta, config: {path: /tmp/lake/revenue, mode: overwrite}}
  - type: load
    method: toPostgres
    input: enriched
    config: {url: "jdbc:postgresql://db:5432/shop?password=hunter2", table: public.enriched,
             user: analyst, password: {env: PGPASSWORD}, mode: overwrite}
"""

EDGES = {("orders", "enriched"), ("customers", "enriched"), ("enriched", "checked"), ("checked", "all_orders"),
         ("archive", "all_orders"), ("all_orders", "by_country"), ("by_country", "step8"), ("enriched", "step9")}


def plan_of(text: str):
    return build_plan(parse_spec(text), SecurityPolicy.from_env({"PIPELINE_SECURITY_POLICY": "permissive"}))


@pytest.fixture(scope="module")
def plan():
    return plan_of(BRANCHING)


def test_branching_spec_nodes_and_edges(plan):
    g = build_graph(plan)
    assert [n.label for n in g.nodes] == ["orders", "customers", "enriched", "checked", "archive", "all_orders",
                                         "by_country", "step8", "step9"]
    assert [(n.type, n.method) for n in g.nodes][2] == ("transform", "join")
    assert g.links() == EDGES
    roles = {(g.nodes[int(e.source[1:]) - 1].label, g.nodes[int(e.target[1:]) - 1].label): e.role for e in g.edges}
    assert roles[("customers", "enriched")] == "right"  # the join's right side
    assert roles[("all_orders", "by_country")] == "sql"  # a view the query reads
    assert roles[("orders", "enriched")] == ""
    assert len(g.edges) == len(EDGES)


def test_labels_show_method_target_mode_and_expectations(plan):
    g = build_graph(plan)
    assert g.node("orders").detail == "data/orders.csv"
    assert g.node("step8").detail == "/tmp/lake/revenue (overwrite)"
    assert g.node("enriched").detail == "left join on customer_id"
    checked = g.node("checked")
    assert checked.kind == "expect" and checked.expectation == "amount >= 0 → drop"
    assert [n.label for n in g.nodes if n.kind == "expect"] == ["checked"]
    assert not any(n.streaming for n in g.nodes) and g.mode == "batch"
    assert g.node("step9").detail == "public.enriched @ db:5432/shop (overwrite)"  # no URL parameters
    for text in (g.to_dot(), g.to_mermaid(), g.to_text()):
        assert "hunter2" not in text and "public.enriched @" in text  # a password in a URL never shows


def test_sql_edges_come_from_the_tables_a_query_reads():
    assert tables_read("SELECT segment, count(*) AS orders FROM valid GROUP BY segment") == {"valid"}
    assert tables_read("select * from a, b x where a.id = x.id") == {"a", "b"}
    assert tables_read("SELECT * FROM orders o JOIN `Customers` c ON o.id = c.id") == {"orders", "customers"}
    assert tables_read("SELECT * FROM (SELECT * FROM inner_view) t") == {"inner_view"}
    g = build_graph(plan_of("""
steps:
  - {type: extract, method: fromCsv, name: orders, config: {path: a.csv}}
  - {type: extract, method: fromCsv, name: customers, config: {path: b.csv}}
  - {type: transform, method: sql, name: counts, config: {query: "SELECT count(*) AS orders FROM Customers"}}
"""))
    assert g.links() == {("customers", "counts")}  # 'orders' is only a column alias here


def test_long_pipelines_are_drawn_top_to_bottom(plan):
    assert build_graph(plan).depth == 6 and build_graph(plan).direction == "TB"
    assert "rankdir=TB" in build_graph(plan).to_dot() and build_graph(plan).to_mermaid().startswith("flowchart TD")
    short = build_graph(plan_of("steps:\n  - {type: extract, method: fromCsv, config: {path: a.csv}}\n"))
    assert short.depth == 1 and "rankdir=LR" in short.to_dot()


def test_streaming_nodes_are_marked():
    g = build_graph(plan_of("""
mode: streaming
steps:
  - {type: extract, method: fromRate, name: ticks}
  - {type: load, method: toDelta, config: {path: /tmp/lake/ticks, trigger: {availableNow: true}}}
"""))
    assert all(n.streaming for n in g.nodes)
    assert g.node("step2").detail == "/tmp/lake/ticks, available now"
    assert "(streaming)" in g.node("ticks").lines()[1]
    assert "dashed" in g.to_dot() and "stroke-dasharray" in g.to_mermaid()


def test_dot_source(plan):
    dot = build_graph(plan).to_dot()
    assert dot.startswith("digraph pipeline {") and dot.rstrip().endswith("}")
    assert 's2 -> s3 [label="right"];' in dot and "s1 -> s3;" in dot
    assert "shape=hexagon" in dot  # the expectation
    assert dot.count("shape=cylinder") == 2  # the two loads
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count('class="node"') == 9 and done.stdout.count('class="edge"') == len(EDGES)


def test_mermaid_source(plan):
    mermaid = build_graph(plan).to_mermaid()
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart TD"  # six steps deep: top to bottom
    assert '  s1(["<b>orders</b><br/>extract.fromCsv<br/>data/orders.csv"])' in lines
    assert "  s2 -->|right| s3" in lines and "  s6 -->|sql| s7" in lines
    assert any(line.startswith("  s4{{") for line in lines)  # expectations are hexagons
    assert "amount #gt;= 0" in mermaid  # label text is escaped
    assert sum("-->" in line for line in lines) == len(EDGES)


def test_text_picture(plan):
    text = build_graph(plan).to_text()
    assert text.splitlines()[0] == "pipeline shop (batch), 9 steps"
    assert "← orders, customers (right)" in text
    assert "← checked, archive" in text
    assert "expect amount >= 0 → drop" in text


def metrics_of(plan, statuses, rows):
    m = PipelineMetrics(plan.spec.name, "r1", status="failed")
    m.steps = [StepMetrics(p.index, p.label, p.step.type, p.step.method, status=statuses.get(p.label, "done"),
                           rows_out=rows.get(p.label)) for p in plan.steps]
    return m


def test_coloured_by_status_and_annotated_with_rows(plan):
    m = metrics_of(plan, {"by_country": "failed", "step8": "pending"}, {"checked": 180, "step9": 195})
    m.steps[3].failed_rows = 3
    g = build_graph(plan, m)
    assert g.status == "failed" and g.title.endswith(": failed")
    assert g.node("by_country").colours == NODE_STATUS_COLOURS["failed"]
    assert g.node("step8").colours == NODE_STATUS_COLOURS["pending"]
    assert g.node("orders").colours == NODE_STATUS_COLOURS["done"]
    assert g.node("checked").outcome == "done · 180 rows · 3 failing"
    assert g.node("step9").outcome == "done · wrote 195 rows"
    # the rows step9 wrote are the rows of its input frame: no second count needed
    assert g.node("enriched").rows_out == 195 and frame_rows(plan, m)["enriched"] == 195
    dot = g.to_dot()
    assert f'fillcolor="{NODE_STATUS_COLOURS["failed"][0]}"' in dot and "penwidth=2" in dot
    assert "done · wrote 195 rows" in g.to_mermaid() and "— failed" in g.to_text()
    before = build_graph(plan)
    assert before.node("orders").colours == KIND_COLOURS["extract"]
    assert before.node("checked").colours == KIND_COLOURS["expect"]


def test_display_chooses_svg_mermaid_or_text(plan, monkeypatch):
    g = build_graph(plan)
    monkeypatch.setenv("PIPELINE_GRAPH", "mermaid")
    bundle = g._repr_mimebundle_()
    assert bundle["text/markdown"].startswith("```mermaid\nflowchart TD") and bundle["text/plain"] == g.to_text()
    monkeypatch.setenv("PIPELINE_GRAPH", "text")
    bundle = g.mimebundle(details="the settings", note="dry run")
    assert set(bundle) == {"text/plain", "text/html"} and "<pre class='pipeline-graph'>" in bundle["text/html"]
    assert bundle["text/plain"].endswith("the settings\ndry run")
    monkeypatch.setenv("PIPELINE_GRAPH", "auto")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Graphviz: Mermaid
    assert "text/markdown" in g._repr_mimebundle_() and g.svg() is None
    monkeypatch.setenv("PIPELINE_GRAPH", "svg")  # a picture asked for, none to be had: text, and how to get it
    assert "<pre class='pipeline-graph'>" in g._repr_mimebundle_()["text/html"]
    assert "apt-get install graphviz" in g._repr_mimebundle_()["text/html"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (make system)")
def test_svg_where_graphviz_exists(plan, monkeypatch):
    monkeypatch.setenv("PIPELINE_GRAPH", "auto")
    import base64
    import re

    bundle = build_graph(plan).mimebundle(details="settings here")
    # an <img> with a data: URI, not inline <svg>: JupyterLab's sanitizer drops <svg> in untrusted notebooks
    assert bundle["text/html"].startswith("<div class='pipeline-graph'><img style='max-width:100%;height:auto' alt=")
    assert "<svg" not in bundle["text/html"] and "settings here" in bundle["text/html"] and "text/markdown" not in bundle
    picture = base64.b64decode(re.search(r"src='data:image/svg\+xml;base64,([^']+)'", bundle["text/html"]).group(1))
    assert picture.startswith(b"<svg ") and b"by_country" in picture
    assert "alt='pipeline shop (batch), 9 steps" in bundle["text/html"]  # the graph as text, for readers without it


# ------------------------------------------------------------- in the notebook


@pytest.mark.usefixtures("spark")  # the magic runs on the suite's session
def test_dry_run_draws_the_plan(ip, monkeypatch):
    monkeypatch.setenv("PIPELINE_GRAPH", "mermaid")
    view = ip.run_cell_magic("pipeline", "--dry-run", BRANCHING.replace("?password=hunter2", ""))
    assert view.graph.links() == EDGES
    bundle = view._repr_mimebundle_()
    assert "```mermaid" in bundle["text/markdown"] and "dry run: nothing was executed" in bundle["text/markdown"]
    assert "9 steps" in bundle["text/plain"]


@pytest.mark.usefixtures("spark")
def test_a_run_is_drawn_by_status_with_counts_from_metrics(ip, data_dir, lake, capsys, monkeypatch):
    data = os.path.abspath(data_dir)
    result = ip.run_cell_magic("pipeline", "graph_run", f"""
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{data}/orders.csv", inferSchema: true}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{data}/customers.csv", inferSchema: true}}}}
  - {{type: transform, method: join, name: enriched, input: orders, config: {{right: customers, on: customer_id}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/enriched", mode: overwrite}}}}
""")
    written = result.metrics.step("step4").rows_out
    assert result.ok and written > 0
    g = result.graph()
    assert all(n.status == "done" for n in g.nodes)
    assert g.node("enriched").rows_out == written and g.node("orders").rows_out == 200  # every row of the CSV
    html = result._repr_html_()
    for name in ("orders", "customers", "enriched"):  # every named frame: schema, count, first rows
        assert f"<summary><b>{name}</b>:" in html
    assert f"<b>enriched</b>: {written:,} rows" in html and "<b>orders</b>: 200 rows" in html
    assert "<td>customer_id</td>" in html and "first 10 rows" in html
    assert len(result.to_pandas("enriched", limit=3)) == 3
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Graphviz: the graph section is text, with the fix
    assert "<summary>graph</summary><pre>pipeline graph_run (batch): done" in result._repr_html_()
    assert "apt-get install graphviz" in result._repr_html_()
    with pytest.raises(KeyError, match="frames are"):
        result.to_pandas("nosuch")
    monkeypatch.setenv("PIPELINE_GRAPH", "text")
    ip.run_line_magic("pipeline", "explain graph_run")
    out = capsys.readouterr().out
    assert "pipeline graph_run (batch): done" in out and f"wrote {written:,} rows" in out
