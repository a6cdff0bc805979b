"""toDelta mode: scd1 / scd2 against a plain-Python reference computed from the same change log:
late (out-of-order) changes, deletes, several changes to a key in one batch, duplicates, re-application."""
from __future__ import annotations

import json
import os
import random
import re

import pandas as pd
import pytest

from pipeline_magics import Pipeline, SpecError
from pipeline_magics.methods import cdc
from pipeline_magics.methods.cdc import Cdc, change_counts

KEYS = 12


def change_log(n: int = 120, seed: int = 7, null_key: bool = False) -> list[dict]:
    """Changes to ``KEYS`` keys with unique sequence numbers, about one in five a delete, shuffled
    (so later batches bring older changes); with ``null_key`` one of the keys is NULL."""
    rng = random.Random(seed)
    seqs = rng.sample(range(1, 10 * n), n)
    log = [{"id": rng.randrange(KEYS), "name": f"n{s % 13}", "value": s * 1.5, "seq": s,
            "op": "D" if rng.random() < 0.2 else "U"} for s in seqs]
    for change in log if null_key else ():
        if change["id"] == 5:  # inserted, then deleted, then a late change (seed 7)
            change["id"] = None
    return log


def batches(log: list[dict]) -> list[list[dict]]:
    """Three batches, the later ones repeating a few changes of the earlier ones (re-delivery)."""
    a, b, c = log[:50], log[50:90], log[90:]
    return [a, b + a[:5], c + b[-4:] + a[10:12]]


def ref_scd1(changes: list[dict]) -> pd.DataFrame:
    latest: dict[int, dict] = {}
    for ch in changes:
        if ch["id"] not in latest or ch["seq"] > latest[ch["id"]]["seq"]:
            latest[ch["id"]] = ch
    rows = [{k: v for k, v in ch.items() if k != "op"} for ch in latest.values() if ch["op"] != "D"]
    return frame(rows, ["id", "name", "value", "seq"])


def ref_scd2(changes: list[dict]) -> pd.DataFrame:
    rows = []
    for key in {ch["id"] for ch in changes}:
        events = sorted({ch["seq"]: ch for ch in changes if ch["id"] == key}.values(), key=lambda ch: ch["seq"])
        for i, ch in enumerate(events):
            if ch["op"] != "D":
                end = events[i + 1]["seq"] if i + 1 < len(events) else None
                rows.append({"id": key, "name": ch["name"], "value": ch["value"], "seq": ch["seq"],
                             "__START_AT": ch["seq"], "__END_AT": end})
    return frame(rows, ["id", "name", "value", "seq", "__START_AT", "__END_AT"])


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    df["id"] = df["id"].astype("Int64")  # a NULL key stays NULL
    if "__END_AT" in df:
        df["__END_AT"] = df["__END_AT"].astype("Int64")
    return df.sort_values(columns[:1] + (["__START_AT"] if "__START_AT" in columns else [])).reset_index(drop=True)


def table(spark, path, columns: list[str]) -> pd.DataFrame:
    df = spark.read.format("delta").load(str(path)).toPandas()[columns]
    if "__END_AT" in df:
        df["__END_AT"] = df["__END_AT"].astype("Int64")
    for c in ("seq", "__START_AT"):
        if c in df:
            df[c] = df[c].astype("int64")
    return frame(df.to_dict("records"), columns)


def write_batch(folder, rows: list[dict], name: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


SCHEMA = "id INT, name STRING, value DOUBLE, seq BIGINT, op STRING"


def cdc_spec(src, out, mode: str, streaming: bool = False) -> str:
    trigger = ", trigger: {availableNow: true}" if streaming else ""
    return f"""
name: cdc_{mode}
mode: {"streaming" if streaming else "batch"}
steps:
  - {{type: extract, method: fromJson, name: changes, config: {{path: "{src}", schema: "{SCHEMA}"}}}}
  - type: load
    method: toDelta
    name: target
    config: {{path: "{out}", mode: {mode}, mergeKeys: [id], sequenceBy: seq, deleteWhen: "op = 'D'",
             exceptColumns: [op]{trigger}}}
"""


def check(spark, out, mode: str, applied: list[dict]) -> pd.DataFrame:
    want = ref_scd1(applied) if mode == "scd1" else ref_scd2(applied)
    got = table(spark, out, list(want.columns))
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    return got


def expected_counts(mode: str, before: list[dict], after: list[dict]) -> dict[str, int]:
    """What applying the new changes inserts, updates and deletes (Delta MERGE's own figures)."""
    if mode == "scd1":
        old, new = ref_scd1(before).set_index("id"), ref_scd1(after).set_index("id")
        both = old.index.intersection(new.index)
        return {"inserted": len(new.index.difference(old.index)), "deleted": len(old.index.difference(new.index)),
                "updated": int((old.loc[both, "seq"] != new.loc[both, "seq"]).sum())}
    old, new = ref_scd2(before), ref_scd2(after)
    keyed = old.merge(new, on=["id", "__START_AT"], how="outer", suffixes=("_old", "_new"), indicator=True)
    updated = keyed[(keyed._merge == "both") & (keyed["__END_AT_old"].fillna(-1) != keyed["__END_AT_new"].fillna(-1))]
    return {"inserted": int((keyed._merge == "right_only").sum()), "updated": len(updated), "deleted": 0}


@pytest.mark.parametrize("mode,null_key", [("scd1", False), ("scd2", False), ("scd1", True), ("scd2", True)])
def test_batches_with_late_changes_deletes_and_duplicates_match_the_reference(spark, lake, mode, null_key):
    """With ``null_key``, NULL is one of the keys: its changes are applied as any other key's."""
    out = lake / "target"
    applied: list[dict] = []
    settings = Cdc(mode, ("id",), "seq", "op = 'D'", ("op",))
    for i, rows in enumerate(batches(change_log(null_key=null_key))):
        src = write_batch(lake / f"b{i}", rows, "changes.json")
        changes = spark.read.schema(SCHEMA).json(src)
        want = expected_counts(mode, applied, applied + rows)
        if i:  # the preview's figures: nothing written
            version = spark.sql(f"DESCRIBE HISTORY delta.`{out}` LIMIT 1").first()["version"]
            assert change_counts(changes, str(out), None, settings) == want
            load = Pipeline.from_yaml(cdc_spec(src, out, mode)).run(spark, preview=True).loads[0]
            assert {k: load[k] for k in want} == want and load["action"] == mode
            assert spark.sql(f"DESCRIBE HISTORY delta.`{out}` LIMIT 1").first()["version"] == version
        result = Pipeline.from_yaml(cdc_spec(src, out, mode)).run(spark)
        applied += rows
        check(spark, out, mode, applied)
        step = result.metrics.step("target").extra
        # the commit's own figures (no commit at all when nothing changes)
        assert (step.get("numTargetRowsInserted", 0), step.get("numTargetRowsUpdated", 0),
                step.get("numTargetRowsDeleted", 0)) == (want["inserted"], want["updated"], want["deleted"])
    before = table(spark, out, list(check(spark, out, mode, applied).columns))
    everything = write_batch(lake / "all", change_log(null_key=null_key), "changes.json")
    Pipeline.from_yaml(cdc_spec(everything, out, mode)).run(spark)  # the whole log again: nothing changes
    pd.testing.assert_frame_equal(table(spark, out, list(before.columns)), before)


def test_several_changes_to_a_key_in_one_batch_are_ordered_not_lost(spark, lake):
    rows = [{"id": 1, "name": n, "value": 1.0, "seq": s, "op": "U"} for n, s in (("c", 30), ("a", 10), ("b", 20))]
    src = write_batch(lake / "in", rows, "c.json")
    Pipeline.from_yaml(cdc_spec(src, lake / "h", "scd2")).run(spark)
    got = table(spark, lake / "h", ["id", "name", "__START_AT", "__END_AT"])
    assert got[["name", "__START_AT"]].values.tolist() == [["a", 10], ["b", 20], ["c", 30]]
    assert got["__END_AT"].tolist()[:2] == [20, 30] and pd.isna(got["__END_AT"].tolist()[2])
    Pipeline.from_yaml(cdc_spec(src, lake / "l", "scd1")).run(spark)
    assert table(spark, lake / "l", ["id", "name"]).name.tolist() == ["c"]


def test_scd2_keeps_aside_only_the_deletes_its_history_cannot_show(spark, lake):
    """A delete that closes a row is in the history (its __END_AT); one that follows no row, or that a
    later delete hides, goes to the side table, and a late change still stops at it."""
    out, side = lake / "h", lake / "h__deletes"

    def change(key: int, seq: int, op: str = "U") -> dict:
        return {"id": key, "name": f"n{seq}", "value": float(seq), "seq": seq, "op": op}

    def side_table() -> list[tuple[int, int]]:
        if not (side / "_delta_log").exists():
            return []
        return sorted((r[0], r[1]) for r in spark.read.format("delta").load(str(side)).collect())

    steps = [([change(1, 30), change(1, 50, "D")], []),  # the delete closes [30, 50): nothing aside
             ([change(1, 45, "D"), change(2, 10, "D")], [(1, 50), (2, 10)]),  # 50 now follows a delete; 10 no row
             ([change(1, 47), change(2, 5)], [(1, 50), (2, 10)])]  # late rows stop at the kept deletes
    applied: list[dict] = []
    for i, (rows, aside) in enumerate(steps):
        Pipeline.from_yaml(cdc_spec(write_batch(lake / f"b{i}", rows, "c.json"), out, "scd2")).run(spark)
        applied += rows
        got = check(spark, out, "scd2", applied)
        assert side_table() == aside, i
    assert got[["id", "__START_AT", "__END_AT"]].values.tolist() == [[1, 30, 45], [1, 47, 50], [2, 5, 10]]


def test_changes_applied_again_after_a_failure_between_the_merge_and_the_kept_deletes(spark, lake, monkeypatch):
    """The driver dies after the MERGE that hid a delete (a delete after a delete) and before that delete
    was kept aside; the same changes under the same marker (a retry, a replayed micro-batch) keep it."""
    out, side = lake / "h", lake / "h__deletes"
    settings = Cdc("scd2", ("id",), "seq", "op = 'D'", ("op",))

    def change(key: int, seq: int, op: str = "U") -> dict:
        return {"id": key, "name": f"n{seq}", "value": float(seq), "seq": seq, "op": op}

    def apply(i: int, rows: list[dict], marker: str) -> None:
        cdc.apply(spark.read.schema(SCHEMA).json(write_batch(lake / f"b{i}", rows, "c.json")), str(out), None,
                  settings, marker)

    def version(path) -> int:
        return spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]

    merge = cdc._merge

    def merge_then_die(*args, **kwargs):
        merge(*args, **kwargs)
        raise RuntimeError("the driver died")

    apply(0, [change(1, 30), change(1, 50, "D")], "m0")  # history [30, 50)
    hiding = [change(1, 45, "D")]  # 50 now follows a delete: the history no longer shows it
    with monkeypatch.context() as m:
        m.setattr(cdc, "_merge", merge_then_die)
        with pytest.raises(RuntimeError, match="died"):
            apply(1, hiding, "m1")
    assert not (side / "_delta_log").exists()  # the MERGE is in, the deletes it hid are not
    apply(1, hiding, "m1")  # again
    kept = sorted((r[0], r[1]) for r in spark.read.format("delta").load(str(side)).collect())
    assert kept == [(1, 50)]
    versions = version(out), version(side)
    apply(1, hiding, "m1")  # once more: all of it is in, nothing is written
    assert (version(out), version(side)) == versions
    late = [change(1, 47)]
    apply(2, late, "m2")  # a late row stops at the kept delete
    got = check(spark, out, "scd2", [change(1, 30), change(1, 50, "D"), *hiding, *late])
    assert got[["id", "__START_AT", "__END_AT"]].values.tolist() == [[1, 30, 45], [1, 47, 50]]


@pytest.mark.parametrize("mode", ["scd1", "scd2"])
def test_streaming_each_micro_batch_matches_the_reference(spark, lake, mode, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    out, src = lake / "target", lake / "in"
    applied: list[dict] = []
    for i, rows in enumerate(batches(change_log(seed=11))):
        write_batch(src, rows, f"b{i}.json")
        result = Pipeline.from_yaml(cdc_spec(src, out, mode, streaming=True)).run(spark)
        assert result.status == "done"
        applied += rows
        check(spark, out, mode, applied)
    before = table(spark, out, list(check(spark, out, mode, applied).columns))
    Pipeline.from_yaml(cdc_spec(src, out, mode, streaming=True)).run(spark)  # a restart with nothing new
    pd.testing.assert_frame_equal(table(spark, out, list(before.columns)), before)
    # each micro-batch's commits name it (step, checkpoint, the query's id kept there, batch id): a restart
    # knows a micro-batch it replays
    tags = [r[0] for r in spark.sql(f"DESCRIBE HISTORY delta.`{out}`").filter("operation = 'MERGE'")
            .select("userMetadata").collect()]
    found = [re.fullmatch(rf"pipeline_magics:cdc_{mode}:target:{re.escape(str(lake / 'cp'))}/.+:([0-9a-f-]{{36}}):(\d+)",
                          tag) for tag in tags]
    assert all(found) and len({m.group(1) for m in found}) == 1, tags
    assert sorted({int(m.group(2)) for m in found}) == list(range(len(batches(change_log(seed=11))))), tags


def test_scd_settings_are_checked():
    base = "steps:\n  - {type: extract, method: fromJson, config: {path: /x, schema: 'id INT'}}\n"
    with pytest.raises(SpecError, match="sequenceBy"):
        Pipeline.from_yaml(base + "  - {type: load, method: toDelta, config: {path: /y, mode: scd2, mergeKeys: [id]}}")
    with pytest.raises(SpecError, match="only used with mode: scd1 or scd2"):
        Pipeline.from_yaml(base + "  - {type: load, method: toDelta, config: {path: /y, sequenceBy: id}}")


def test_streaming_scd2_exactly_once_after_sigkill(spark, lake, tmp_path):
    """SIGKILL the driver mid-stream (one change file a micro-batch), restart from the checkpoint:
    the history equals the reference over the whole log, and the rows a rule quarantined (in the same
    micro-batches) are in the quarantine table once each."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
    log = change_log(n=160, seed=5)
    src, out = lake / "in", lake / "target"
    for i in range(16):  # late changes arrive in later files
        write_batch(src, log[i * 10:(i + 1) * 10], f"part{i:02d}.json")
    spec = cdc_spec(src, out, "scd2").replace("mode: batch", "mode: streaming").replace(
        'schema: "' + SCHEMA + '"', 'schema: "' + SCHEMA + '", options: {maxFilesPerTrigger: 1}').replace(
        "  - type: load", "  - {type: transform, method: expect, name: checks, config: {rules: {small: 'value < 1800'}, "
        f"onFail: quarantine, quarantine: {{path: '{lake / 'rejected'}'}}}}}}\n  - type: load")
    slow = spec.replace("exceptColumns: [op]", "exceptColumns: [op], checkpointLocation: '"
                        + str(lake / "cp") + "', trigger: {processingTime: '1 second'}")
    (tmp_path / "scd.yaml").write_text(slow)
    env = {**os.environ, "PYTHONPATH": root, "SPARK_LOCAL_IP": "127.0.0.1", "PIPELINE_SPARK_MASTER": "local[1]"}
    driver = subprocess.Popen([sys.executable, "-m", "pipeline_magics", "run", str(tmp_path / "scd.yaml")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    commits = 0
    try:
        deadline = time.time() + 600
        while time.time() < deadline and driver.poll() is None:
            logs = out / "_delta_log"
            commits = len(list(logs.glob("*.json"))) if logs.exists() else 0
            if commits >= 3:  # the table's creation and two micro-batches
                break
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the Python driver and its JVM, no clean-up
        driver.wait(timeout=30)
    good = [c for c in log if c["value"] < 1800]
    bad = sorted(c["seq"] for c in log if c["value"] >= 1800)
    done = spark.read.format("delta").load(str(out)).count() if (out / "_delta_log").exists() else 0
    held = spark.read.format("delta").load(str(lake / "rejected")).count() if (lake / "rejected").exists() else 0
    assert commits >= 3 and done < len(ref_scd2(good)) and held < len(bad), "the kill should land mid-stream"
    # the restart replays the batch the kill interrupted, then takes the rest in one batch (a file a batch
    # would make it a dozen MERGEs and minutes more, and test nothing the first two do not)
    restart = spec.replace("exceptColumns: [op]", "exceptColumns: [op], checkpointLocation: '"
                           + str(lake / "cp") + "', trigger: {availableNow: true}").replace(
        "maxFilesPerTrigger: 1", "maxFilesPerTrigger: 100")
    assert Pipeline.from_yaml(restart).run(spark).status == "done"
    check(spark, out, "scd2", good)
    rejected = spark.read.format("delta").load(str(lake / "rejected")).toPandas()
    assert sorted(rejected.seq) == bad  # each failing change once: none lost, none twice
    assert set(map(tuple, rejected._failed_rules)) == {("small",)}
