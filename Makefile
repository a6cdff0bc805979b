# pipeline_magics — set-up, demo and tests. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
# The development set: the newest Spark whose Delta Lake, Kafka-connector and JDBC jars all resolve
# (pipeline_magics/spark/versions.py has the table). `make SPARK=4.1.1 VENV=.venv-spark-4.1.1 ...`
# builds another environment beside it; `make test-matrix` does that for every other supported line.
SPARK ?= 4.2.0
MATRIX ?= 4.1.1 4.0.0 3.5.7
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA := $(VENV)/share/pipeline_magics/kafka
OPENLINEAGE := $(VENV)/share/pipeline_magics/openlineage
# Maven works in pipeline_magics' own local repository: ~/.m2 is neither read nor changed.
MVN := mvn -q -B -s pipeline_magics/spark/maven/settings.xml -Dmaven.repo.local=$(HOME)/.cache/pipeline_magics/maven
# Spark and every service stay on loopback.
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup setup-test venv venv-test jars kafka openlineage-spark java system client demo lab test test-matrix test-fast lint labextension clean services bench soak

setup: venv jars
setup-test: venv-test jars

# pyspark is pinned here, not in pyproject.toml: the package itself runs on whatever Spark the
# environment has and never replaces it. So are what a Spark line's own extras need:
# pyspark[connect] 3.5 wants NumPy 1, which pyarrow 26 and later refuse at import.
PINS_3.5 := "numpy<2" "pyarrow<26"
PINS := $(PINS_$(basename $(SPARK)))
venv: $(VENV)/.installed-$(SPARK)
$(VENV)/.installed-$(SPARK): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "pyspark[connect]==$(SPARK)" $(PINS) -e .
	# an editable install does not place the prebuilt labextension where JupyterLab looks
	mkdir -p $(VENV)/share/jupyter/labextensions && \
	  ln -sfn $(abspath pipeline_magics/labextension) $(VENV)/share/jupyter/labextensions/pipeline-magics
	touch $@

venv-test: $(VENV)/.installed-test-$(SPARK)
$(VENV)/.installed-test-$(SPARK): $(VENV)/.installed-$(SPARK)
	$(PY) -m pip install -q "pyspark[connect]==$(SPARK)" $(PINS) -e '.[test]'
	touch $@

# Delta Lake, the Spark-Kafka connector and the PostgreSQL JDBC driver for the installed pyspark,
# once, from Maven Central (python -m pipeline_magics jars); the jars Spark ships itself are left
# out. Spark then loads them with no network.
jars: $(VENV)/.jars-$(SPARK)
$(VENV)/.jars-$(SPARK): pipeline_magics/spark/maven/pom.xml pipeline_magics/spark/versions.py | venv
	$(PY) -m pipeline_magics jars
	touch $@

# A real Apache Kafka broker (KRaft) for the tests and `make services`: kafka_2.13 and its
# runtime jars, once, from Maven Central; tests/services/kafka.py runs it with `java -cp`.
kafka: $(KAFKA)/.fetched
$(KAFKA)/.fetched: services/kafka/pom.xml | venv
	rm -rf $(KAFKA) && mkdir -p $(KAFKA)
	$(MVN) -f services/kafka/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(abspath $(KAFKA))
	touch $@

# The openlineage-spark listener's jar (shaded: nothing else), once, from Maven Central: the reference
# tests/test_lineage_reference.py compares the column lineage of a pipeline with.
openlineage-spark: $(OPENLINEAGE)/.fetched
$(OPENLINEAGE)/.fetched: services/openlineage/pom.xml | venv
	rm -rf $(OPENLINEAGE) && mkdir -p $(OPENLINEAGE)
	$(MVN) -f services/openlineage/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(abspath $(OPENLINEAGE))
	touch $@

# A Kafka broker on 127.0.0.1:9092 in the foreground for local trials; Ctrl-C stops it.
services: venv-test kafka
	$(PY) tests/services/kafka.py --port 9092

# Java 17 and Maven, if missing: all the quickstart needs besides Python packages.
java:
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q openjdk-17-jdk-headless; }
	@command -v mvn >/dev/null || { apt-get update -q && apt-get install -y -q maven; }

# For the suite: the PostgreSQL server, Graphviz (pipeline pictures as SVG), Chromium (the browser
# tests, tests/test_browser.py, drive it with Playwright) and promtool, from Debian packages.
system: java
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }
	@command -v dot >/dev/null || { apt-get update -q && apt-get install -y -q graphviz; }
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v promtool >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus prometheus-pushgateway; }

demo: java setup
	$(PY) -m pipeline_magics run examples/quickstart.yaml --var data_dir=examples/data --var lake=/tmp/pipeline_magics_demo

# JupyterLab on the tutorials (examples/), in the development environment plus the [lab] extra; the
# labextension (YAML in %%pipeline cells) is the one the venv target links. JUPYTER_ARGS=--no-browser etc.
lab: java setup $(VENV)/.installed-lab-$(SPARK)
	cd examples && $(abspath $(PY)) -m jupyterlab $$(test "$$(id -u)" != 0 || echo --allow-root) $(JUPYTER_ARGS)
$(VENV)/.installed-lab-$(SPARK): $(VENV)/.installed-$(SPARK)
	$(PY) -m pip install -q "pyspark[connect]==$(SPARK)" -e '.[lab]'
	touch $@

# A Connect-only environment (pyspark-client: no JVM, no jars) for the suite's test of a notebook
# that has no Spark of its own.
CLIENT := .venv-client
client: $(CLIENT)/.installed-$(SPARK)
$(CLIENT)/.installed-$(SPARK): pyproject.toml
	test -x $(CLIENT)/bin/python || $(PYTHON) -m venv $(CLIENT)
	$(CLIENT)/bin/python -m pip install -q "pyspark-client==$(SPARK)" -e .
	touch $@

test: system setup-test kafka openlineage-spark client
	PIPELINE_TEST_CLIENT_PYTHON=$(abspath $(CLIENT))/bin/python $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# A representative subset on every other supported Spark, each in its own environment
# (.venv-spark-VERSION): every batch method against pandas, Delta merge, Kafka streaming with a
# restart, PostgreSQL, a failing expect, a cancelled batch, metrics counts, step rows read from the status
# store, scd2's kept deletes (Spark 4.0 resolves them without the count 4.1 gives), and Spark Connect. On 4.1 the
# Kafka restart after SIGKILL is left out: the 4.1.1 connector (the newest whose jars are all on Maven
# Central) can fail the replayed batch with a NullPointerException in KafkaMicroBatchStream.metrics.
MATRIX_TESTS := tests/test_batch_methods.py tests/test_everywhere.py tests/test_versions.py tests/test_step_rows.py \
  tests/test_streaming_kafka.py::test_exactly_once_into_delta_after_sigkill \
  tests/test_postgres.py::test_table_read_transform_and_overwrite \
  tests/test_metrics.py::test_batch_delta_append_overwrite_table_and_merge \
  tests/test_metrics.py::test_stream_kafka_into_delta_counts_every_batch \
  tests/test_cdc.py::test_scd2_keeps_aside_only_the_deletes_its_history_cannot_show \
  tests/test_cdc.py::test_changes_applied_again_after_a_failure_between_the_merge_and_the_kept_deletes
test-matrix: system
	@set -e; for v in $(MATRIX); do \
	  echo "== Spark $$v"; \
	  $(MAKE) --no-print-directory SPARK=$$v VENV=.venv-spark-$$v setup-test kafka; \
	  PYSPARK_PYTHON=$(CURDIR)/.venv-spark-$$v/bin/python .venv-spark-$$v/bin/python -m pytest -p no:cacheprovider -q \
	    -k 'not standalone' $(MATRIX_TESTS) $(PYTEST_ARGS) $$(case $$v in 4.1.*) \
	    echo --deselect tests/test_streaming_kafka.py::test_exactly_once_into_delta_after_sigkill;; esac); \
	done

# Everything but the notebooks, the Spark clusters, fault injection, load and browser tests.
test-fast: setup-test kafka openlineage-spark
	$(PY) -m pytest -p no:cacheprovider -m "not browser" --ignore=tests/test_everywhere.py \
	  --ignore=tests/test_faults.py --ignore=tests/test_load.py tests $(PYTEST_ARGS)

lint: venv-test
	$(PY) -m ruff check pipeline_magics tests

# The JupyterLab extension (YAML in %%pipeline cells), rebuilt from labextension/ with npm into
# pipeline_magics/labextension/, which is committed: users need no Node. Needs Node >= 18.
labextension: venv-test
	cd labextension && npm ci --no-audit --no-fund && PATH=$(abspath $(VENV))/bin:$$PATH npm run build

# The load tests in full: 50 batch pipelines one after another, 4 streaming pipelines at once for 5 minutes
# (then restarted); prints the memory, thread and listener figures and writes them to soak-figures.json.
soak: setup-test
	PIPELINE_LOAD=full PIPELINE_LOAD_REPORT=$(abspath soak-figures.json) \
	  $(PY) -m pytest -p no:cacheprovider -q tests/test_load.py $(PYTEST_ARGS)

# Pipeline.run against the same jobs by hand (batch: 20M Parquet rows; streaming: Kafka -> Delta),
# interleaved and repeated; writes bench/results/latest.json and prints a table. ~30 min on 2 cores.
bench: setup-test kafka
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-spark-* $(CLIENT) spark-warehouse metastore_db derby.log .pytest_cache
