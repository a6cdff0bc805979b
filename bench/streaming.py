"""Streaming: Kafka -> Delta through ``Pipeline.run`` against the same query written by hand.

One broker (tests/services/kafka.py), one topic filled once; every run reads all of
it from the earliest offset with ``availableNow`` into a fresh Delta table, in
micro-batches of ``maxOffsetsPerTrigger``. Throughput is records over the wall
time from the call until the query has ended.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid

from .common import GOALS, ROOT, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part

RECORDS = int(os.environ.get("PIPELINE_BENCH_STREAM_ROWS", "1000000"))
PER_BATCH = int(os.environ.get("PIPELINE_BENCH_STREAM_BATCH", "250000"))
PARTITIONS = 2
SCHEMA = "order_id BIGINT, customer_id INT, amount DOUBLE, status STRING, country STRING, ts TIMESTAMP"

SPEC = """
name: bench_stream
mode: streaming
steps:
  - type: extract
    method: fromKafka
    config:
      bootstrapServers: {bootstrap}
      topic: {topic}
      format: json
      schema: "{schema}"
      options: {{maxOffsetsPerTrigger: {per_batch}}}
  - type: load
    method: toDelta
    name: out
    config: {{path: "{out}", checkpointLocation: "{checkpoint}", trigger: {{availableNow: true}}}}
"""


def by_hand(spark, bootstrap: str, topic: str, out: str, checkpoint: str) -> None:
    """The same query, written in PySpark Structured Streaming."""
    from pyspark.sql import functions as F

    raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", bootstrap)
           .option("subscribe", topic).option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", PER_BATCH).load())
    parsed = (raw.select(F.from_json(F.col("value").cast("string"), SCHEMA).alias("v"), "timestamp")
              .select("v.*", F.col("timestamp").alias("kafka_timestamp")))
    query = (parsed.writeStream.format("delta").option("checkpointLocation", checkpoint)
             .trigger(availableNow=True).start(out))
    query.awaitTermination()


def fill_topic(spark, kafka, topic: str, records: int) -> None:
    """Writes ``records`` JSON orders to ``topic`` once (a Spark batch write: fast, and no Python loop)."""
    from pyspark.sql import functions as F

    kafka.create_topic(topic, partitions=PARTITIONS)
    (spark.range(records, numPartitions=PARTITIONS)
     .select(F.col("id").alias("order_id"), F.pmod(F.xxhash64("id"), F.lit(50_000)).cast("int").alias("customer_id"),
             F.round(F.rand(7) * 500, 2).alias("amount"), F.lit("paid").alias("status"),
             F.lit("DE").alias("country"), (F.lit(1_700_000_000) + F.col("id")).cast("timestamp").alias("ts"))
     .select(F.to_json(F.struct("*")).alias("value"))
     .write.format("kafka").mode("append").option("kafka.bootstrap.servers", kafka.bootstrap)
     .option("topic", topic).save())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "5")))
    parser.add_argument("--records", type=int, default=RECORDS)
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from services.kafka import kafka_service

    from pipeline_magics import Pipeline

    spark = session("bench_streaming")
    out = os.path.join(WORK, "stream_out")
    shutil.rmtree(out, ignore_errors=True)
    with kafka_service() as kafka:
        topic = f"bench_orders_{uuid.uuid4().hex[:6]}"
        started = time.time()
        fill_topic(spark, kafka, topic, args.records)
        print(f"topic {topic}: {args.records:,} records in {time.time() - started:.1f}s ({kafka.backend} broker "
              f"{kafka.bootstrap})")
        counted: dict[str, int] = {}

        def pipeline(r: int) -> None:
            path = os.path.join(out, f"pipeline_{r}")
            result = Pipeline.from_yaml(SPEC.format(bootstrap=kafka.bootstrap, topic=topic, schema=SCHEMA,
                                                    per_batch=PER_BATCH, out=path, checkpoint=path + "_cp")).run(spark)
            assert result.status == "done", result.metrics.error
            counted[f"pipeline_{r}"] = result.metrics.step("out").rows_out

        def hand(r: int) -> None:
            path = os.path.join(out, f"pyspark_{r}")
            by_hand(spark, kafka.bootstrap, topic, path, path + "_cp")

        started = time.time()
        wall, cpu = interleaved({"pyspark": hand, "pipeline": pipeline}, args.repeats, warmup=2, pid=jvm_pid(spark),
                                 more=undecided({("pipeline", "pyspark"): GOALS["streaming.pipeline_over_pyspark"]}))
        landed = {name: spark.read.format("delta").load(os.path.join(out, name)).count()
                  for name in (f"pyspark_{len(wall['pyspark']) - 1}", f"pipeline_{len(wall['pipeline']) - 1}")}
        assert set(landed.values()) == {args.records}, landed
        assert set(counted.values()) == {args.records}, counted  # the metrics count every record
    rates = {name: [args.records / s for s in times] for name, times in wall.items()}
    medians = {name: summary(r) for name, r in rates.items()}
    result = {
        "pipeline_over_pyspark": medians["pyspark"]["median"] / medians["pipeline"]["median"],
        "paired": {"pipeline_over_pyspark": paired_ratio(rates["pyspark"], rates["pipeline"])},
        "interval": {"pipeline_over_pyspark": interval(rates["pyspark"], rates["pipeline"])},
        "records_per_second": medians,
        "seconds": {name: summary(times) for name, times in wall.items()},
        "cpu": {"pipeline_over_pyspark": summary(cpu["pipeline"])["median"] / summary(cpu["pyspark"])["median"],
                "seconds": {name: summary(times) for name, times in cpu.items()}},
        "records": args.records, "records_per_batch": PER_BATCH, "partitions": PARTITIONS,
        "repeats": len(wall["pipeline"]), "wall_seconds": round(time.time() - started, 1),
        "machine": {**machine(spark), "kafka": kafka.backend},
    }
    print(f"streaming: pyspark/pipeline throughput {result['pipeline_over_pyspark']:.3f}")
    write_part("streaming", result)
    shutil.rmtree(out, ignore_errors=True)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
