"""Streaming with a real Kafka broker: JSON into Delta, toKafka read back, exactly-once after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pandas as pd

from pipeline_magics import Pipeline

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def topic_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def events(start: int, count: int) -> list[str]:
    return [json.dumps({"id": i, "user": f"u{i % 5}", "amount": round(i * 1.5, 2)}) for i in range(start, start + count)]


KAFKA_TO_DELTA = """
name: {name}
mode: streaming
steps:
  - type: extract
    method: fromKafka
    config:
      bootstrapServers: {bootstrap}
      topic: {topic}
      format: json
      schema: "id INT, user STRING, amount DOUBLE"
      options: {{maxOffsetsPerTrigger: {per_batch}}}
  - type: transform
    method: withColumn
    config: {{column: amount_cents, expr: "CAST(round(amount * 100) AS BIGINT)"}}
  - type: load
    method: toDelta
    name: sink
    config:
      path: {out}
      checkpointLocation: {checkpoint}
      trigger: {trigger}
"""


def spec_text(kafka, topic, lake, trigger="{availableNow: true}", per_batch=10000, name="kafka_to_delta"):
    return KAFKA_TO_DELTA.format(name=name, bootstrap=kafka.bootstrap, topic=topic, out=lake / "out",
                                 checkpoint=lake / "checkpoint", trigger=trigger, per_batch=per_batch)


def test_json_messages_land_parsed_in_delta(spark, kafka, lake):
    topic = topic_name("orders")
    kafka.create_topic(topic, partitions=2)
    kafka.produce(topic, events(0, 250))
    result = Pipeline.from_yaml(spec_text(kafka, topic, lake)).run(spark)
    assert result.status == "done"
    got = spark.read.format("delta").load(str(lake / "out")).toPandas().sort_values("id")
    want = pd.DataFrame([json.loads(e) for e in events(0, 250)])
    assert list(got.id) == list(want.id) and list(got.user) == list(want.user)
    assert (got.amount_cents == (want.amount * 100).round().astype("int64").values).all()
    assert "kafka_timestamp" in got.columns
    assert result.metrics.step("sink").rows_out == 250


def test_raw_format_and_batch_read(spark, kafka, lake):
    topic = topic_name("raw")
    kafka.create_topic(topic)
    kafka.produce(topic, ["a", "b", "c"], keys=["k1", "k2", "k3"])
    spec = f"""
steps:
  - {{type: extract, method: fromKafka, config: {{bootstrapServers: {kafka.bootstrap}, topic: {topic}}}}}
  - {{type: load, method: toMemory, config: {{queryName: raw_rows}}}}
"""
    Pipeline.from_yaml(spec).run(spark)
    rows = spark.sql("SELECT key, value, topic, partition, offset FROM raw_rows ORDER BY offset").collect()
    assert [(r.key, r.value, r.topic, r.offset) for r in rows] == [
        ("k1", "a", topic, 0), ("k2", "b", topic, 1), ("k3", "c", topic, 2)]


def test_to_kafka_batch_and_stream_read_back_with_a_client(spark, kafka, lake, data_dir):
    out_topic = topic_name("orders_out")
    kafka.create_topic(out_topic)
    spec = f"""
steps:
  - {{type: extract, method: fromCsv, config: {{path: "{os.path.abspath(data_dir)}/customers.csv", inferSchema: true}}}}
  - {{type: load, method: toKafka, name: publish, config: {{bootstrapServers: {kafka.bootstrap}, topic: {out_topic}, key: customer_id}}}}
"""
    result = Pipeline.from_yaml(spec).run(spark)
    messages = kafka.consume(out_topic, expect=40, decode=True)
    customers = pd.read_csv(os.path.join(data_dir, "customers.csv"))
    assert sorted(int(k) for k, _ in messages) == sorted(customers.customer_id)
    assert {json.loads(v)["name"] for _, v in messages} == set(customers.name)
    assert result.metrics.step("publish").rows_out == 40

    # streaming: Kafka -> filter -> Kafka, value taken from one column
    src, dst = topic_name("src"), topic_name("dst")
    kafka.create_topic(src)
    kafka.create_topic(dst)
    kafka.produce(src, events(0, 60))
    spec = f"""
name: relay
mode: streaming
steps:
  - {{type: extract, method: fromKafka, config: {{bootstrapServers: {kafka.bootstrap}, topic: {src}, format: json, schema: "id INT, user STRING, amount DOUBLE"}}}}
  - {{type: transform, method: filterRows, config: {{condition: "user = 'u1'"}}}}
  - {{type: load, method: toKafka, config: {{bootstrapServers: {kafka.bootstrap}, topic: {dst}, key: id, value: user, checkpointLocation: "{lake}/relay_cp", trigger: {{availableNow: true}}}}}}
"""
    Pipeline.from_yaml(spec).run(spark)
    relayed = kafka.consume(dst, expect=12, decode=True)
    assert sorted(int(k) for k, _ in relayed) == [i for i in range(60) if i % 5 == 1]
    assert {v for _, v in relayed} == {"u1"}


def test_exactly_once_into_delta_after_sigkill(spark, kafka, lake, tmp_path):
    """Kill the driver mid-stream with SIGKILL, restart from the checkpoint: every message exactly once."""
    n = 2400
    topic = topic_name("exactly_once")
    kafka.create_topic(topic, partitions=2)
    kafka.produce(topic, events(0, n))
    slow = spec_text(kafka, topic, lake, trigger='{processingTime: "1 second"}', per_batch=150, name="eo")
    spec_file = tmp_path / "eo.yaml"
    spec_file.write_text(slow)
    env = {**os.environ, "PYTHONPATH": ROOT, "SPARK_LOCAL_IP": "127.0.0.1", "PIPELINE_SPARK_MASTER": "local[1]"}
    driver = subprocess.Popen([sys.executable, "-m", "pipeline_magics", "run", str(spec_file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = str(lake / "out")
    landed = 0
    try:
        deadline = time.time() + 180
        while time.time() < deadline and driver.poll() is None:
            try:
                landed = spark.read.format("delta").load(out).count()
            except Exception:  # noqa: BLE001 - the table does not exist yet
                landed = 0
            if landed > 0:
                break
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the Python driver and its JVM, no clean-up
        driver.wait(timeout=30)
    assert 0 < landed < n, f"the kill should land mid-stream, {landed} of {n} rows were in"

    result = Pipeline.from_yaml(spec_text(kafka, topic, lake, name="eo")).run(spark)
    assert result.status == "done"
    ids = [r.id for r in spark.read.format("delta").load(out).select("id").collect()]
    assert len(ids) == n and len(set(ids)) == n and set(ids) == set(range(n))
