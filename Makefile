# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JARS_DIR := .cache/jars
STAMP_VENV := $(VENV)/.installed
STAMP_JARS := $(JARS_DIR)/.fetched
AS_OF ?= 2026-06-30
CONF ?= conf/local.yaml
CUSTOMERS ?= 100000
ORDERS ?= 1000000
SEG := $(VENV)/bin/segmentation

export SEGMENTATION_JARS_DIR := $(abspath $(JARS_DIR))
export PYSPARK_PYTHON := $(abspath $(PY))
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo next-day generate build train score report test test-fast lint bench bench-models mlflow-ui clean browser airflow-venv

install: $(STAMP_VENV) $(STAMP_JARS)

$(STAMP_VENV): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Delta's JVM jars are not in the pip package; fetch them once from Maven Central into a cache we own.
$(STAMP_JARS): build/delta-jars.pom.xml
	mkdir -p $(JARS_DIR)
	mvn -q -B -f build/delta-jars.pom.xml dependency:copy-dependencies -DoutputDirectory=$(abspath $(JARS_DIR))
	touch $@

demo: install browser   # browser: the CJK font the report draws the Chinese segment names with (and Chromium)
	$(SEG) generate --conf $(CONF) --as-of $(AS_OF) --customers $(CUSTOMERS) --orders $(ORDERS)
	$(SEG) build --conf $(CONF) --as-of $(AS_OF)
	$(SEG) train --conf $(CONF) --as-of $(AS_OF)
	$(SEG) score --conf $(CONF) --as-of $(AS_OF)
	$(SEG) report --conf $(CONF) --as-of $(AS_OF)

# A daily run after the demo: append one day of orders (0.3% of the table, new ids) and build that day; the build
# prints which mode ran (incremental) and how many order rows it read.
NEXT_DAY ?= 2026-07-01
next-day: install
	$(SEG) generate --conf $(CONF) --as-of $(NEXT_DAY) --append-day 0.003
	$(SEG) build --conf $(CONF) --as-of $(NEXT_DAY)

generate: install
	$(SEG) generate --conf $(CONF) --as-of $(AS_OF) --customers $(CUSTOMERS) --orders $(ORDERS)

build: install
	$(SEG) build --conf $(CONF) --as-of $(AS_OF)

train: install
	$(SEG) train --conf $(CONF) --as-of $(AS_OF)

score: install
	$(SEG) score --conf $(CONF) --as-of $(AS_OF)

# The MLflow UI on the local tracking store (runs side by side, registry, champion alias): http://127.0.0.1:5000
mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# One self-contained HTML file under reports/ (outputs.report_dir); the command prints its path.
report: install
	$(SEG) report --conf $(CONF) --as-of $(AS_OF)

# Benchmark: build vs DuckDB vs naive PySpark on generated data under .cache/bench (reused while unchanged).
# Sizes are order counts (100M orders: 5M customers, about 2 GB of Parquet; generating 20M and 100M takes about 25 minutes and
# the whole run about 70 minutes on 2 cores, plus 10 to 20 for the membership MERGE on 5M customers); the report goes to
# docs/benchmarks.md (train and score are timed once the 100M build is done). Quick look: make bench BENCH_SIZES=1000000 BENCH_ARGS=
BENCH_SIZES ?= 1000000,20000000,100000000
BENCH_ARGS ?= --naive-max-size 20000000 --warmup-size 100000 --skew-base 1000000 --clv-customers 1000000,5000000 --membership-customers 5000000 --models-sizes 100000000
bench: install
	$(SEG) bench --conf $(CONF) --as-of $(AS_OF) --sizes $(BENCH_SIZES) $(BENCH_ARGS)

# Train and score at 5M customers without generating 100M orders: 20M orders, 4 per customer (about 45 minutes on 2 cores).
bench-models: install
	$(SEG) bench --conf $(CONF) --as-of $(AS_OF) --sizes 20000000 --orders-per-customer 4 --models-sizes 20000000 \
		--naive-max-size 1 --warmup-size 100000 --doc docs/benchmarks-5m-customers.md

test: install browser airflow-venv
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not e2e and not slow"

lint: install
	$(VENV)/bin/ruff check src tests jobs examples
	$(VENV)/bin/ruff format --check src tests jobs examples

# The report test renders the HTML in headless Chromium, and the report draws the Chinese segment names with a CJK
# font: both come from Debian packages, installed only where missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ ! -x /usr/bin/chromium ] || ! (command -v fc-list >/dev/null && fc-list :lang=zh | grep -q .); then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium fonts-noto-cjk; \
	fi

# Airflow (for the example DAG's DagBag test) in its own venv, so its pins never touch the product's.
AIRFLOW_VENV := .cache/airflow-venv
AIRFLOW_VERSION ?= 3.3.2
airflow-venv: $(AIRFLOW_VENV)/.installed
$(AIRFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

clean:
	rm -rf lake mlflow.db mlartifacts reports spark-warehouse
