"""A retried toDelta write never appends twice (Delta's txnAppId/txnVersion)."""
from __future__ import annotations

from pipeline_magics.methods.load import DeltaSink, to_delta
from pipeline_magics.methods.registry import StepContext
from pipeline_magics.spec.model import Step


def context(spark, df, version):
    step = Step(type="load", method="toDelta", name="sink")
    return StepContext(spark=spark, pipeline="idem", run_id="r1", step=step, index=0, mode="batch",
                       inputs=[df], frames={}, run_version=version)


def test_same_run_writes_once_next_run_writes_again(spark, lake):
    cfg = DeltaSink(path=str(lake / "t"), mode="append")
    df = spark.range(7)
    first = context(spark, df, 1000)
    to_delta(first, cfg)
    to_delta(context(spark, df, 1000), cfg)  # the retry of the same run: skipped by Delta
    assert spark.read.format("delta").load(str(lake / "t")).count() == 7
    to_delta(context(spark, df, 2000), cfg)  # a later run appends
    assert spark.read.format("delta").load(str(lake / "t")).count() == 14
    assert first.record.rows_out == 7
