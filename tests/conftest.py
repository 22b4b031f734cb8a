"""One SparkSession for the whole test run: local[2], few shuffle partitions, UI off, real Delta.

Expressions are evaluated by Spark's interpreter instead of generated Java (``spark.sql.codegen.wholeStage=false``,
``spark.sql.codegen.factoryMode=NO_CODEGEN``, as Spark's own test suites run one of their modes): on test data of
tens of rows, compiling the generated code of every query was about a quarter of a build's CPU, and the interpreted
path gives the same results. Jobs the tests start as processes (the CLI, catalog, Spark Connect and cluster tests)
run with the shipped configuration, code generation included; in-process jobs read ``conf_dir``, the shipped folder
with the shuffle sized for this session (``TEST_SESSION_CONF``).

Delta's jars come from the cache ``make install`` fills (``$SEGMENTATION_JARS_DIR`` or ``.cache/jars``). Tables live
in a temporary folder per test (``tmp_path``); MLflow tests use a SQLite store in their own temporary folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEGMENTATION_JARS_DIR", str(ROOT / ".cache" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

# Sized for the shared session and tests of tens of rows: ``conf/local.yaml`` asks for 32 shuffle partitions (right
# for 100M orders), which every in-process job would set on the shared session, making each shuffle 32 tasks of nothing.
TEST_SESSION_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
# The same as a command-line override, for jobs the tests start as processes (a JSON object is a YAML mapping).
TEST_SESSION_OVERRIDE = "spark.conf=" + json.dumps(TEST_SESSION_CONF)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from segmentation.config import SparkSettings
    from segmentation.session import build_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    settings = SparkSettings(
        master="local[2]",
        app_name="segmentation-tests",
        driver_memory="4g",
        conf={
            **TEST_SESSION_CONF,
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
            # A run of a few thousand jobs: keep the status store's retained plans and tasks small on the driver heap.
            "spark.sql.ui.retainedExecutions": "20",
            "spark.ui.retainedJobs": "50",
            "spark.ui.retainedStages": "50",
            "spark.ui.retainedTasks": "500",
            "spark.databricks.delta.delta.log.cacheSize": "200",
            # No Python call site attached to every column expression (a few JVM round trips each).
            "spark.python.sql.dataFrameDebugging.enabled": "false",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        },
    )
    session = build_session(settings)
    _SESSION.append(session)
    _SESSION_CONF.update(session.conf.getAll)
    yield session
    session.stop()


_SESSION: list = []
_SESSION_CONF: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _session_settings_restored():
    """A test that runs a job in-process (``cli.main``) applies the job configuration's SQL settings to the shared
    session (``conf/local.yaml``: 32 shuffle partitions, 64 MB partitions); put the test session's back after it, so
    later tests run as configured here whatever ran before them."""
    yield
    if not _SESSION:
        return
    conf = _SESSION[0].conf
    now = conf.getAll
    for key in now:
        if key not in _SESSION_CONF and key.startswith("spark.sql.") and conf.isModifiable(key):
            conf.unset(key)
    for key, value in _SESSION_CONF.items():
        if now.get(key) != value and conf.isModifiable(key):
            conf.set(key, value)


@pytest.fixture(scope="session")
def conf_dir(tmp_path_factory) -> Path:
    """The shipped ``conf/`` folder, copied with ``local.yaml``'s session settings sized for test data.

    Every business rule, threshold and name is the shipped one (``base.yaml`` is copied as is); only the Spark
    settings in ``TEST_SESSION_CONF`` differ. Jobs started as processes read the shipped ``conf/local.yaml``.
    """
    import shutil

    import yaml

    folder = tmp_path_factory.mktemp("harness") / "conf"
    shutil.copytree(ROOT / "conf", folder)
    local = yaml.safe_load((folder / "local.yaml").read_text(encoding="utf-8"))
    local["spark"]["conf"].update(TEST_SESSION_CONF)
    (folder / "local.yaml").write_text(yaml.safe_dump(local, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture()
def lake(tmp_path) -> Path:
    """A fresh folder for the Delta tables of one test."""
    path = tmp_path / "lake"
    path.mkdir()
    return path


@pytest.fixture()
def settings_for(conf_dir, lake):
    """Settings from conf/local.yaml with every input and output path inside this test's lake.

    Usage: ``settings = settings_for("rfm.method=thresholds", ...)``; extra arguments are dotted overrides.
    The identity map and profiles are off unless a test turns them on (``identity_paths`` gives their locations).
    """
    from segmentation.config import load_settings

    def make(*overrides: str):
        paths = [
            f"inputs.orders.path={lake / 'input' / 'orders'}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'output'}",
            f"mlflow.tracking_uri=sqlite:///{lake / 'mlflow.db'}",
            "spark.master=local[2]",
        ]
        return load_settings([conf_dir / "local.yaml"], [*paths, *overrides])

    return make


ORDER_COLUMNS = (
    "order_id string, channel string, customer_id string, order_ts timestamp, amount decimal(18,2), currency string,"
    " status string, category string, discount_amount decimal(18,2), coupon_code string"
)


def order_row(
    order_id,
    customer_id,
    ts,
    amount,
    *,
    channel="web",
    currency="CNY",
    status="completed",
    category="apparel",
    discount="0.00",
    coupon=None,
):
    """One orders row as a tuple in ORDER_COLUMNS order; ``ts`` is an ISO string (UTC) or a datetime."""
    import datetime as dt
    from decimal import Decimal

    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts)
    return (
        order_id,
        channel,
        customer_id,
        ts,
        None if amount is None else Decimal(str(amount)),
        currency,
        status,
        category,
        None if discount is None else Decimal(str(discount)),
        coupon,
    )


@pytest.fixture()
def write_orders(spark):
    """Write hand-made order rows (see ``order_row``) as a Delta table and return its path."""

    def write(path, rows):
        df = spark.createDataFrame(rows, ORDER_COLUMNS)
        df.write.format("delta").mode("overwrite").save(str(path))
        return str(path)

    return write
