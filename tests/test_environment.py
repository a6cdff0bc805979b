"""The analyst's own environment: jars that come without touching ~/.m2 or ~/.ivy2, environment failures as
one readable line, and ``doctor``."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_magics.__main__ import main
from pipeline_magics.errors import PipelineExecutionError
from pipeline_magics.run.pipeline import Pipeline
from pipeline_magics.spark import jars as spark_jars
from pipeline_magics.spark.environment import find_java, require_java
from pipeline_magics.spark.session import connect_session
from pipeline_magics.spark.versions import spark_home

from services import free_port

ROOT = Path(__file__).resolve().parent.parent
SPEC = "mode: streaming\nsteps:\n  - {type: extract, method: fromRate, config: {}}\n  - {type: load, method: toMemory, config: {}}\n"


def _user_caches() -> dict[str, list[str]]:
    """Every file under ~/.m2 and ~/.ivy2* (of the JVM's user.home, which is the passwd entry's)."""
    import pwd

    home = pwd.getpwuid(os.getuid()).pw_dir
    found = {}
    for name in os.listdir(home):
        if name == ".m2" or name.startswith(".ivy2"):
            found[name] = sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.join(home, name))
                                 for f in files)
    return found


def test_the_first_session_fetches_its_jars_once_and_leaves_the_users_caches_alone(tmp_path, monkeypatch):
    before = _user_caches()
    monkeypatch.setenv("PIPELINE_JARS_DIR", str(tmp_path / "jars"))
    said: list[str] = []
    confs = spark_jars.session_jars(said.append)
    jars = confs["spark.jars"].split(",")
    assert len(said) == 1 and "Maven Central (once)" in said[0]
    assert all(os.path.dirname(j) == str(tmp_path / "jars") for j in jars)
    assert any(os.path.basename(j).startswith("delta-spark_") for j in jars)
    assert any(os.path.basename(j).startswith("postgresql-") for j in jars)
    assert spark_jars.session_jars(said.append) == confs and len(said) == 1  # fetched once
    assert _user_caches() == before


RESOLVE = "print('resolved')\n"


def test_without_maven_sparks_ivy_resolves_from_maven_central_despite_a_broken_m2(tmp_path):
    """A ~/.m2 folder with a .pom and no .jar breaks Spark's default Ivy resolution, not ours."""
    home = tmp_path / "home"
    broken = home / ".m2" / "repository" / "org" / "checkerframework" / "checker-qual" / "3.49.5"
    broken.mkdir(parents=True)
    (broken / "checker-qual-3.49.5.pom").write_text(
        "<project><modelVersion>4.0.0</modelVersion><groupId>org.checkerframework</groupId>"
        "<artifactId>checker-qual</artifactId><version>3.49.5</version></project>")
    script = tmp_path / "resolve.py"
    script.write_text(RESOLVE)
    submit = os.path.join(spark_home(), "bin", "spark-submit")
    env = dict(os.environ, SPARK_SUBMIT_OPTS=f"-Duser.home={home}")

    def resolve(*confs: str) -> subprocess.CompletedProcess:
        return subprocess.run([submit, "--packages", "org.postgresql:postgresql:42.7.8", *confs, str(script)],
                              env=env, capture_output=True, text=True, timeout=300)

    default = resolve()
    assert default.returncode != 0 and "checker-qual" in default.stderr  # the trap is real
    ours = resolve("--conf", f"spark.jars.ivySettings={spark_jars.IVY_SETTINGS}",
                   "--conf", f"spark.jars.ivy={tmp_path / 'ivy'}")
    assert ours.returncode == 0 and ours.stdout.strip().endswith("resolved"), ours.stderr[-2000:]
    assert (tmp_path / "ivy" / "jars" / "org.checkerframework_checker-qual-3.49.5.jar").exists()


def test_no_pyspark_is_one_line_with_the_fix(ip, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` fails as in an environment without it
    with pytest.raises(PipelineExecutionError) as info:
        ip.run_cell_magic("pipeline", "--no-widgets", SPEC)
    lines = info.value._render_traceback_()
    assert info.value.code == "PYSPARK_MISSING" and len(lines) == 1
    assert "no pyspark" in lines[0] and "pip install" in lines[0] and "Traceback" not in lines[0]
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline.from_yaml(SPEC).run()
    assert info.value.code == "PYSPARK_MISSING"


def test_java_that_is_missing_or_too_old_is_named(tmp_path):
    with pytest.raises(PipelineExecutionError) as info:
        find_java({"JAVA_HOME": str(tmp_path / "nowhere"), "PATH": os.environ["PATH"]})
    assert info.value.code == "JAVA_MISSING" and str(tmp_path / "nowhere" / "bin" / "java") in info.value.message
    assert "JAVA_HOME" in info.value.message
    with pytest.raises(PipelineExecutionError) as info:
        require_java(99, "9.9.9")
    java = find_java()
    assert info.value.code == "JAVA_TOO_OLD" and java.path in info.value.message and java.version in info.value.message
    assert "Java 99" in info.value.message


@pytest.mark.parametrize("env, code, cause", [
    ({"JAVA_HOME": "/nowhere"}, "JAVA_MISSING", "/nowhere/bin/java (from JAVA_HOME=/nowhere)"),
    ({"PYSPARK_SUBMIT_ARGS": "--driver-memory 1k pyspark-shell"}, "JVM_START_FAILED", "Too small"),
])
def test_a_jvm_that_cannot_start_is_one_line_naming_why(tmp_path, env, code, cause):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_magics", "run", str(ROOT / "examples" / "quickstart.yaml"),
         "--var", f"data_dir={ROOT / 'examples' / 'data'}", "--var", f"lake={tmp_path}"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and code not in done.stdout
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("PipelineExecutionError: ") and cause in first, done.stderr
    assert not os.listdir(tmp_path)  # nothing written


def test_a_connect_server_that_does_not_answer_and_a_port_in_use():
    port = free_port()
    with pytest.raises(PipelineExecutionError) as info:
        connect_session(f"sc://127.0.0.1:{port}")
    assert info.value.code == "SERVER_UNREACHABLE" and f"127.0.0.1:{port}" in info.value.message
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 15002))
            holder.listen()
        except OSError:
            pass  # already taken by something else: just as good
        with pytest.raises(PipelineExecutionError) as info:
            connect_session("local")
    assert info.value.code == "PORT_IN_USE" and "15002" in info.value.message


def test_doctor_passes_here_and_shows_each_failure_as_its_row(monkeypatch, capsys, tmp_path):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for row in ("python", "packages", "pyspark", "java", "jars"):
        assert next(ln for ln in out.splitlines() if ln[2:].startswith(row + " ")).startswith("✔"), out
    assert "everything required is in place" in out

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PIPELINE_SPARK_REMOTE", f"sc://127.0.0.1:{free_port()}")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    java = next(ln for ln in out.splitlines() if ln[2:].startswith("java "))
    assert java.startswith("✘") and "JAVA_MISSING" in java and "nowhere" in java
    assert next(ln for ln in out.splitlines() if ln[2:].startswith("spark connect")).startswith("✘")
    assert "fix: install Java 17" in out

    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.delenv("PIPELINE_SPARK_REMOTE")
    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert main(["doctor"]) == 1
    assert "PYSPARK_MISSING" in capsys.readouterr().out


def test_doctor_in_the_notebook_adds_the_widget_frontend(ip):
    report = ip.run_line_magic("pipeline", "doctor")
    names = [c.name for c in report.checks]
    assert names[-1] == "widget frontend" and "pyspark" in names and report.ok
    assert "<table>" in report._repr_html_()


def test_offline_with_nothing_fetched_is_one_line_naming_the_command(tmp_path):
    """No network (a network namespace of its own) and no jars: the first session says how to get them."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n (a network namespace) needs root here")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "pipeline_magics", "run", str(ROOT / "examples" / "quickstart.yaml"),
         "--var", f"data_dir={ROOT / 'examples' / 'data'}", "--var", f"lake={tmp_path / 'lake'}"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_JARS_DIR": str(tmp_path / "jars"),
             "PIPELINE_JARS_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "from Maven Central (once)" in done.stdout
    first, hint = done.stderr.strip().splitlines()[:2]
    assert first.startswith("PipelineExecutionError: Maven could not fetch the jars for Spark"), done.stderr
    assert "python -m pipeline_magics jars" in hint
    assert not (tmp_path / "jars").exists() and not (tmp_path / "lake").exists()
