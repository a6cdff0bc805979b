"""The test Kafka broker works: messages go in and come back, Spark's Kafka source reads them, and it restarts."""
from __future__ import annotations

import uuid

N = 100


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_produce_then_consume_exactly(kafka):
    topic = _topic("roundtrip")
    kafka.create_topic(topic)
    values = [f"message {i}" for i in range(N)]
    keys = [f"key-{i % 7}" for i in range(N)]

    assert kafka.produce(topic, values, keys=keys) == N

    got = kafka.consume(topic)
    assert got == [(k.encode(), v.encode()) for k, v in zip(keys, values)]
    assert kafka.consume(topic, decode=True) == list(zip(keys, values))
    assert topic in kafka.topics()


def test_spark_batch_reads_the_topic(kafka, spark):
    topic = _topic("spark")
    kafka.create_topic(topic, partitions=2)
    values = [f"row {i}" for i in range(N)]
    kafka.produce(topic, values, keys=[str(i) for i in range(N)])

    df = (spark.read.format("kafka")
          .options(**kafka.spark_options())
          .option("subscribe", topic)
          .option("startingOffsets", "earliest")
          .option("endingOffsets", "latest")
          .load())

    assert df.count() == N
    read = sorted(r.value for r in df.selectExpr("CAST(value AS STRING) AS value").collect())
    assert read == sorted(values)


def test_kill_and_restart_keep_address_and_data(kafka):
    topic = _topic("restart")
    kafka.produce(topic, ["before"])  # auto-created
    address = kafka.bootstrap

    kafka.kill()
    assert not kafka.running
    kafka.restart()

    assert kafka.running and kafka.bootstrap == address
    kafka.produce(topic, ["after"])
    assert kafka.consume(topic, decode=True) == [(None, "before"), (None, "after")]
