"""The Spark adapter: the version table, the jars it chooses, and installs that keep the user's Spark."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyspark
import pytest

from pipeline_magics.errors import PipelineExecutionError
from pipeline_magics.metrics.sources import drain_listener_bus
from pipeline_magics.spark.causes import condition, root_cause
from pipeline_magics.spark.observation import observed
from pipeline_magics.spark.session import builder_confs, get_session
from pipeline_magics.spark import jars as spark_jars
from pipeline_magics.spark.versions import LINES, check_session, local_line, spark_line

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


PG = "org.postgresql:postgresql:42.7.8"


@pytest.mark.parametrize("version, scala, jars", [
    ("4.2.0", None, ("io.delta:delta-spark_4.2_2.13:4.4.0", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0", PG)),
    ("4.1.1", "2.13", ("io.delta:delta-spark_4.1_2.13:4.3.1", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1", PG)),
    ("4.1.4", None, ("io.delta:delta-spark_4.1_2.13:4.3.1", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1", PG)),
    ("4.0.3", None, ("io.delta:delta-spark_2.13:4.0.0", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0", PG)),
    # 3.5's wheel has no Spark Connect server: its jar is fetched with the others
    ("3.5.7", "2.12", ("io.delta:delta-spark_2.12:3.3.2", "org.apache.spark:spark-sql-kafka-0-10_2.12:3.5.7", PG,
                       "org.apache.spark:spark-connect_2.12:3.5.7")),
])
def test_each_line_has_its_jars(version, scala, jars):
    assert spark_line(version, scala).packages(version) == jars


@pytest.mark.parametrize("version, scala", [("4.3.0", None), ("3.4.4", None), ("4.2.0", "2.12"), ("3.5.7", "2.13")])
def test_an_unsupported_version_fails_at_once_naming_the_supported(version, scala):
    with pytest.raises(PipelineExecutionError) as info:
        spark_line(version, scala)
    assert info.value.code == "SPARK_VERSION_UNSUPPORTED"
    assert version in str(info.value) and "4.2.x, 4.1.x, 4.0.x, 3.5.x" in str(info.value)


def test_the_table_is_newest_first_and_the_default_is_installed_here():
    assert [tuple(map(int, line.line.split("."))) for line in LINES] == \
        sorted((tuple(map(int, line.line.split("."))) for line in LINES), reverse=True)
    assert local_line() is spark_line(pyspark.__version__)


def test_a_created_session_loads_the_jars_of_its_version():
    confs = builder_confs()
    jars = confs.get("spark.jars", "")
    if jars:  # fetched by `make jars`: the folder of this very version
        assert os.path.dirname(jars.split(",")[0]) == spark_jars.jars_dir(pyspark.__version__)
        delta = local_line().delta.split(":")
        assert any(os.path.basename(j) == f"{delta[1]}-{delta[2]}.jar" for j in jars.split(","))
    else:
        assert confs["spark.jars.packages"].split(",") == list(local_line().packages(pyspark.__version__))


def test_the_running_session_is_checked(spark):
    assert check_session(spark) is local_line()
    assert get_session(spark) is spark


def test_a_session_of_another_version_is_refused(spark):
    class Older:  # what a session of an unsupported Spark reports; only its version is read
        version = "3.3.2"

    with pytest.raises(PipelineExecutionError) as info:
        get_session(Older())
    assert info.value.code == "SPARK_VERSION_UNSUPPORTED" and "3.3.2" in str(info.value)


def test_an_observation_is_read_without_waiting_and_then_filled(spark):
    """Before its action an Observation reads as empty at once (a 3.5 ``get`` would wait forever)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    obs = Observation("versions_probe")
    df = spark.range(7).observe(obs, F.count(F.lit(1)).alias("rows"))
    assert observed(obs) == {}
    df.collect()
    drain_listener_bus(spark)
    assert observed(obs) == {"rows": 7}


def test_a_failure_reads_its_condition_and_one_line_cause(spark):
    """Spark 3.5 names it an error class and keeps its fields public; the reading is the same."""
    with pytest.raises(Exception) as info:
        spark.sql("SELECT nosuch FROM range(1)").collect()
    assert condition(info.value) == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    line, detail = root_cause(info.value)
    assert line.startswith("[UNRESOLVED_COLUMN.WITH_SUGGESTION]") and "`nosuch`" in line
    assert "at org.apache.spark" in detail


def test_installing_keeps_the_installed_spark(tmp_path):
    """`pip install -e .` into this environment would install nothing but pipeline_magics itself."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--report", str(report), "-e", ROOT],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert names == ["pipeline_magics".replace("_", "-")] or names == ["pipeline_magics"]
    deps = subprocess.run([sys.executable, "-m", "pip", "show", "pipeline_magics"], capture_output=True, text=True)
    assert "pyspark" not in deps.stdout.split("Requires:")[1].split("\n")[0]


CLIENT_SCRIPT = """
import sys
from pipeline_magics.run.pipeline import Pipeline
from pipeline_magics.spark.session import get_session, is_connect
spark = get_session()
assert is_connect(spark), type(spark)
spec = '''
name: client_only
steps:
  - {type: extract, method: fromCsv, name: orders, config: {path: %(csv)r, header: true, inferSchema: true}}
  - {type: transform, method: filterRows, config: {condition: "amount > 20"}}
  - {type: load, method: toDelta, config: {path: %(target)r, mode: overwrite}}
'''
result = Pipeline.from_yaml(spec).run(spark)
print(result.metrics.status, sorted(r.order_id for r in spark.read.format("delta").load(%(target)r).collect()))
"""


def test_a_pyspark_client_only_notebook_runs_on_a_connect_server(tmp_path, connect_server):
    """An environment with only `pyspark-client` (no JVM) runs a pipeline on a Connect server."""
    client = os.environ.get("PIPELINE_TEST_CLIENT_PYTHON")
    if not client:
        pytest.skip("set PIPELINE_TEST_CLIENT_PYTHON to a Python with only pyspark-client (make test does)")
    import pandas as pd

    check = subprocess.run([client, "-c", "import os, pyspark; "
                            "print(os.path.isdir(os.path.join(os.path.dirname(pyspark.__file__), 'jars')))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "False", "the client environment must have no Spark jars"
    csv = os.path.join(ROOT, "examples", "data", "orders.csv")
    target = str(tmp_path / "client_only")
    env = {**os.environ, "PIPELINE_SPARK_REMOTE": connect_server.url, "PYTHONPATH": ROOT}
    script = tmp_path / "client_only.py"  # a file: pyspark's Connect takes `python -c` for its doctests
    script.write_text(CLIENT_SCRIPT % {"csv": csv, "target": target})
    done = subprocess.run([client, str(script)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    status, ids = done.stdout.strip().splitlines()[-1].split(" ", 1)
    expected = sorted(pd.read_csv(csv).query("amount > 20").order_id.tolist())
    assert status == "done" and json.loads(ids) == expected
