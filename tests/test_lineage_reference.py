"""pipeline_magics' column lineage against the ``openlineage-spark`` listener's on the same job written by hand
(issue 30: "the column lineage equals what the openlineage-spark listener reports"). The listener is the
jar of ``make openlineage-spark`` (io.openlineage:openlineage-spark_2.13, services/openlineage/pom.xml).
That the same pipeline on Spark Connect sends the same facets is tests/test_lineage.py's
``test_same_facets_on_spark_connect``."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from pipeline_magics import Pipeline
from test_lineage import DATA, ROOT, SEGMENTS, read_events

#: The SEGMENTS pipeline (join, rename, aggregate, sql, Parquet) written by hand in PySpark, run in its own
#: local Spark with the listener as its documented configuration attaches it (spark.extraListeners); its JVM
#: compiles with C1 alone and collects serially, half the CPU of the defaults for this short job.
BY_HAND = """
import sys
from pyspark.sql import SparkSession, functions as F
jar, events, data, out = sys.argv[1:]
spark = (SparkSession.builder.master("local[1]").appName("segments").config("spark.jars", jar)
         .config("spark.extraListeners", "io.openlineage.spark.agent.OpenLineageSparkListener")
         .config("spark.openlineage.transport.type", "file")
         .config("spark.openlineage.transport.location", events)
         .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
orders = spark.read.csv(data + "/orders.csv", header=True,
                        schema="order_id INT, customer_id INT, country STRING, amount DOUBLE, order_date DATE")
customers = spark.read.csv(data + "/customers.csv", header=True, schema="customer_id INT, name STRING, segment STRING")
(orders.join(customers, "customer_id").withColumnRenamed("amount", "amt").groupBy("segment")
 .agg(F.sum("amt").alias("revenue"), F.countDistinct("name").alias("buyers")).createOrReplaceTempView("by_segment"))
spark.sql("SELECT upper(segment) AS segment, revenue * 100 AS cents, buyers FROM by_segment") \\
    .write.mode("overwrite").parquet(out)
spark.stop()
"""

#: output column -> (our subtype, the listener's) where the two vocabularies differ: the listener reports
#: ``cents = revenue * 100`` over ``revenue = sum(amount)`` as IDENTITY (it does not carry the aggregation
#: through the arithmetic above it); ours keeps the strongest transformation on the path, AGGREGATION.
KNOWN_SUBTYPES = {"cents": ("AGGREGATION", "IDENTITY")}


def listener_jar() -> str:
    """The openlineage-spark jar of ``make openlineage-spark`` ($PIPELINE_OPENLINEAGE_SPARK_DIR, else the venv's)."""
    folder = os.environ.get("PIPELINE_OPENLINEAGE_SPARK_DIR") or os.path.join(
        sys.prefix, "share", "pipeline_magics", "openlineage")
    jars = glob.glob(os.path.join(folder, "openlineage-spark_2.13-*.jar"))
    if not jars:
        pytest.skip(f"no openlineage-spark jar in {folder}: run `make openlineage-spark`")
    return jars[0]


def dataset(d: dict) -> tuple[str, str]:
    """A dataset's (namespace, name) in one form: OpenLineage names a local file or Delta path ``file`` + its
    absolute path; a ``file://host`` namespace or a ``file:`` scheme or trailing slash in the name is dropped."""
    namespace = "file" if d["namespace"].startswith("file") else d["namespace"]
    name = d["name"].removeprefix("file:") if namespace == "file" else d["name"]
    return namespace, os.path.normpath(name) if namespace == "file" else name


def lineage(output: dict) -> tuple[dict, dict, dict]:
    """An output's column lineage: {column: {input field}}, {column: {(type, subtype)}}, {input field: {(type,
    subtype)}} of the dataset-wide (INDIRECT) part; an input field is (namespace, name, column)."""
    facet = output["facets"]["columnLineage"]
    fields = {col: {(*dataset(f), f["field"]) for f in spec["inputFields"]} for col, spec in facet["fields"].items()}
    kinds = {col: {(t["type"], t["subtype"]) for f in spec["inputFields"] for t in f["transformations"]}
             for col, spec in facet["fields"].items()}
    indirect: dict = {}
    for f in facet.get("dataset", []):
        indirect.setdefault((*dataset(f), f["field"]), set()).update((t["type"], t["subtype"]) for t in f["transformations"])
    return fields, kinds, indirect


def test_column_lineage_equals_the_openlineage_spark_listeners(spark, lake, tmp_path):
    """For each output column, the input (namespace, name, column) set is the listener's, exactly; so is the
    input field set of the dataset-wide part (join keys, group-by keys).

    Transformation types are compared where both vocabularies agree: DIRECT/INDIRECT everywhere; the DIRECT
    subtypes everywhere but the columns in KNOWN_SUBTYPES (asserted as they are, so a change on either side
    shows); each INDIRECT subtype of ours must be among the listener's, which adds FILTER on the join keys
    (it reads the optimized plan, where Spark puts ``isnotnull(customer_id)`` under an inner join; ours is
    the analyzed plan, without it). ``masking`` is not compared: ours is always false, the listener sets it
    for ``count(DISTINCT name)``. Input datasets are the same CSV files on both sides and are compared as
    names after :func:`dataset`; the outputs are two folders (both jobs run at once), each checked to be
    named ``file`` + its path.

    The hand-written job runs in a child process with its own local Spark (the listener is attached at
    start-up, as its documentation says), while the pipeline runs in the suite's session.
    """
    jar = listener_jar()
    reference, by_hand = tmp_path / "listener.jsonl", lake / "by_hand"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYSPARK_GATEWAY", "PIPELINE_SPARK")) and k not in ("SPARK_REMOTE", "PYSPARK_SUBMIT_ARGS")}
    with open(tmp_path / "by_hand.log", "w+", encoding="utf-8") as log:
        child = subprocess.Popen([sys.executable, "-c", BY_HAND, jar, str(reference), DATA, str(by_hand)],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ours_file = tmp_path / "ours.jsonl"
            result = Pipeline.from_yaml(SEGMENTS.format(data=DATA, out=lake / "out")).run(
                spark, lineage=f"file:{ours_file}")
            assert result.ok
            assert child.wait(timeout=300) == 0, log.seek(0) or log.read()[-3000:]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    ours = read_events(ours_file)[-1]
    assert ours["eventType"] == "COMPLETE" and len(ours["outputs"]) == 1
    theirs = [e for e in read_events(reference) if e["eventType"] == "COMPLETE" and e.get("outputs")]
    assert len(theirs) == 1, [(e["eventType"], e["job"]["name"]) for e in read_events(reference)]
    theirs = theirs[0]
    assert [dataset(d) for d in ours["outputs"]] == [("file", str(lake / "out"))]
    assert [dataset(d) for d in theirs["outputs"]] == [("file", str(by_hand))]
    assert sorted(dataset(d) for d in ours["inputs"]) == sorted(dataset(d) for d in theirs["inputs"]) == [
        ("file", os.path.join(DATA, "customers.csv")), ("file", os.path.join(DATA, "orders.csv"))]

    our_fields, our_kinds, our_indirect = lineage(ours["outputs"][0])
    their_fields, their_kinds, their_indirect = lineage(theirs["outputs"][0])
    assert our_fields == their_fields
    assert set(our_fields) == {"segment", "cents", "buyers"}
    assert {c: {t for t, _ in k} for c, k in our_kinds.items()} == {c: {t for t, _ in k} for c, k in their_kinds.items()}
    differ = {c: (*(s for _, s in our_kinds[c]), *(s for _, s in their_kinds[c]))
              for c in our_kinds if our_kinds[c] != their_kinds[c]}
    assert differ == KNOWN_SUBTYPES
    assert set(our_indirect) == set(their_indirect)
    assert all(our_indirect[f] <= their_indirect[f] for f in our_indirect), (our_indirect, their_indirect)
