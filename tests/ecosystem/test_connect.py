"""``build`` over Spark Connect writes what a classic session writes.

The test starts a Spark Connect server from the pyspark distribution (``spark-submit --class
org.apache.spark.sql.connect.service.SparkConnectServer``; pyspark ships the ``spark-connect`` jar) with Delta's jars on
a free localhost port, runs ``segmentation build`` through it in a separate process (``spark.remote=sc://...``; a
Connect client has no JVM), builds the same input on the classic test session, and compares ``customer_segments``
(run ids aside). The server is stopped when the module ends, whatever happened.

Delta's Connect plugin (``DeltaRelationPlugin``/``DeltaCommandPlugin``, artifact ``delta-connect-server``) is enabled
when its jar is in the jars folder: the jobs do not need it (the io layer is SQL and DataFrame reads and writes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation import io, pipelines
from segmentation.config import load_settings

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2700)]

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 6, 30)
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DELTA_PLUGINS = {
    "spark.connect.extensions.relation.classes": "org.apache.spark.sql.connect.delta.DeltaRelationPlugin",
    "spark.connect.extensions.command.classes": "org.apache.spark.sql.connect.delta.DeltaCommandPlugin",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jars() -> list[str]:
    folder = os.environ.get("SEGMENTATION_JARS_DIR", str(ROOT / ".cache" / "jars"))
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    assert jars, f"no Delta jars in {folder}: run make install"
    return jars


def _wait_until_serving(proc: subprocess.Popen, port: int, log: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark Connect server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            if "Spark Connect server started" in log.read_text(errors="replace"):
                return
        time.sleep(1)
    raise RuntimeError(f"Spark Connect server not serving on {port} after {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """A local Spark Connect server with Delta; yields its ``sc://`` URL and stops it (its process group) at the end."""
    root = tmp_path_factory.mktemp("connect_server")
    port = _free_port()
    jars = _jars()
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.network.timeout": "600s",  # a busy machine must not time out the server's own RPCs
    }
    if any("delta-connect-server" in Path(j).name for j in jars):
        conf.update(DELTA_PLUGINS)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    command = [str(submit), "--class", SERVER_CLASS, "--name", "segmentation-connect-test", "--master", "local[2]"]
    command += ["--driver-memory", "2g", "--jars", ",".join(jars)]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    log = root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable},
            start_new_session=True,  # its own process group: teardown stops the JVM and its Python workers
        )
    try:
        _wait_until_serving(proc, port, log)
        yield f"sc://localhost:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory, conf_dir):
    """A small generated order history (by path), written with the classic session."""
    lake = tmp_path_factory.mktemp("connect") / "lake"
    settings = _settings(conf_dir, lake, "classic")
    pipelines.run_generate(spark, settings, AS_OF)
    return lake


def _settings(conf_dir, lake, name, *overrides):
    return load_settings([conf_dir / "local.yaml"], _overrides(lake, name, *overrides))


def _overrides(lake, name, *extra):
    return [
        f"inputs.orders.path={lake / 'input' / 'orders'}",
        f"inputs.identity_map.path={lake / 'input' / 'identity_map'}",
        f"inputs.profiles.path={lake / 'input' / 'profiles'}",
        f"outputs.path={lake / name}",
        f"mlflow.tracking_uri=sqlite:///{lake / 'mlflow.db'}",
        "spark.master=local[2]",
        "generate.customers=1000",
        "generate.orders=6000",
        "generate.customers_per_partition=500",
        *extra,
    ]


def test_build_over_spark_connect_writes_what_a_classic_build_writes(spark, connect_server, lake, conf_dir):
    classic = _settings(conf_dir, lake, "classic")
    pipelines.run_build(spark, classic, AS_OF)

    command = [sys.executable, "-c", "import sys; from segmentation.cli import main; sys.exit(main())", "build"]
    command += ["--conf", str(conf_dir / "local.yaml"), "--as-of", str(AS_OF)]
    command += _overrides(lake, "connect", f"spark.remote={connect_server}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert "over Spark Connect at sc://localhost" in done.stderr

    remote = _settings(conf_dir, lake, "connect")
    segments = {
        name: io.read_output(spark, settings.outputs.table_path("customer_segments"), AS_OF).drop("run_id")
        for name, settings in (("classic", classic), ("connect", remote))
    }
    assert segments["classic"].count() > 0
    assertDataFrameEqual(segments["connect"], segments["classic"], checkRowOrder=False)

    # The Connect run kept the protocol: a complete manifest row, tables created with their contract.
    runs = io.read_output(spark, remote.outputs.table_path("segment_runs"), AS_OF).collect()
    assert [(r["job"], r["status"]) for r in runs] == [("build", "complete")]
    properties = {
        r["key"]: r["value"]
        for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{remote.outputs.table_path('customer_segments')}`").collect()
    }
    assert properties["delta.enableChangeDataFeed"] == "true"
    assert "delta.constraints.r_score_range" in properties
