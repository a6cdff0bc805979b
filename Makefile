# pipeline_magics — set-up, demo and tests. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JARS := $(VENV)/share/pipeline_magics/jars
KAFKA := $(VENV)/share/pipeline_magics/kafka
MVN := mvn -q -B -s jars/settings.xml -f jars/pom.xml
# Spark and every service stay on loopback.
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup venv jars kafka system demo test test-fast lint clean services bench soak

setup: venv jars

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Delta Lake, the Spark-Kafka connector and the PostgreSQL JDBC driver, once, from
# Maven Central; the jars Spark ships itself are left out. Spark then loads them with no network.
jars: $(JARS)/.fetched
$(JARS)/.fetched: jars/pom.xml | venv
	mkdir -p $(JARS)
	$(MVN) dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(JARS)) \
	  -DexcludeArtifactIds=$(shell paste -sd, jars/provided-by-spark.txt)
	touch $@

# A real Apache Kafka broker (KRaft) for the tests and `make services`: kafka_2.13 and its
# runtime jars, once, from Maven Central; tests/kafka_service.py runs it with `java -cp`.
kafka: $(KAFKA)/.fetched
$(KAFKA)/.fetched: services/kafka/pom.xml | venv
	rm -rf $(KAFKA) && mkdir -p $(KAFKA)
	mvn -q -B -s jars/settings.xml -f services/kafka/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(abspath $(KAFKA))
	touch $@

# A Kafka broker on 127.0.0.1:9092 in the foreground for local trials; Ctrl-C stops it.
services: venv kafka
	$(PY) tests/kafka_service.py --port 9092

# Java 17, the PostgreSQL server, Graphviz (pipeline pictures as SVG) and Chromium (the browser tests,
# tests/test_browser.py, drive it with Playwright) from Debian packages.
system:
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q openjdk-17-jdk-headless; }
	@command -v mvn >/dev/null || { apt-get update -q && apt-get install -y -q maven; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }
	@command -v dot >/dev/null || { apt-get update -q && apt-get install -y -q graphviz; }
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v promtool >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus prometheus-pushgateway; }

demo: system setup
	$(PY) -m pipeline_magics run examples/quickstart.yaml --var data_dir=examples/data --var lake=/tmp/pipeline_magics_demo

test: system setup kafka
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The load tests in full: 50 batch pipelines one after another, 4 streaming pipelines at once for 5 minutes
# (then restarted); prints the memory, thread and listener figures and writes them to soak-figures.json.
soak: setup
	PIPELINE_LOAD=full PIPELINE_LOAD_REPORT=$(abspath soak-figures.json) \
	  $(PY) -m pytest -p no:cacheprovider -q tests/test_load.py $(PYTEST_ARGS)

# Pipeline.run against the same jobs by hand (batch: 20M Parquet rows; streaming: Kafka -> Delta),
# interleaved and repeated; writes bench/results/latest.json and prints a table. ~10 min on 2 cores.
bench: setup kafka
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) spark-warehouse metastore_db derby.log .pytest_cache
