"""One SparkSession for the whole test run: local[2], few shuffle partitions, UI off, real Delta.

Delta's jars come from the cache ``make install`` fills (``$SEGMENTATION_JARS_DIR`` or ``.cache/jars``). Tables live
in a temporary folder per test (``tmp_path``); MLflow tests use a SQLite store in their own temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEGMENTATION_JARS_DIR", str(ROOT / ".cache" / "jars"))
os.environ.setdefault("PYSPARK_PYTHON", shutil.which("python") or "python3")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from segmentation.config import SparkSettings
    from segmentation.session import build_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    settings = SparkSettings(
        master="local[2]",
        app_name="segmentation-tests",
        driver_memory="3g",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        },
    )
    session = build_session(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return ROOT / "conf"


@pytest.fixture()
def lake(tmp_path) -> Path:
    """A fresh folder for the Delta tables of one test."""
    path = tmp_path / "lake"
    path.mkdir()
    return path
