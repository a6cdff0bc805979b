# pipeline_magics — set-up, demo and tests. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JARS := $(VENV)/share/pipeline_magics/jars
MVN := mvn -q -B -s jars/settings.xml -f jars/pom.xml
# Spark and every service stay on loopback.
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup venv jars system demo test test-fast lint clean services

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

# Java 17 and the PostgreSQL server (Debian packages) for the tests.
system:
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q openjdk-17-jdk-headless; }
	@command -v mvn >/dev/null || { apt-get update -q && apt-get install -y -q maven; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }

demo: setup
	$(PY) -m pipeline_magics run examples/quickstart.yaml --var data_dir=examples/data --var lake=/tmp/pipeline_magics_demo

test: setup system
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) spark-warehouse metastore_db derby.log .pytest_cache
