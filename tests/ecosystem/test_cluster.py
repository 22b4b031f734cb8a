"""`spark-submit jobs/build.py` on a real Spark standalone cluster: one master and two workers, each its own JVM.

The project ships as a wheel (``pip wheel . --no-deps``) passed with ``--py-files``, the way docs/deploy.md tells
users to. The driver and executors run a Python that has every dependency but *not* the project (the test venv
installs the project in editable mode, so a fresh venv is layered on its site-packages without the editable hook):
the job can only import ``segmentation`` from the shipped wheel.

Done when the Delta output holds the snapshot and the master reports that the application's executors ran on both
workers, with task-running executor logs in each worker's work folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A long budget: the first test builds a small run from scratch, slow on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.delta, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 6, 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait(predicate, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what} (last: {last})")


@dataclass
class Cluster:
    url: str
    web_url: str
    work_dirs: list[Path]
    logs: Path
    env: dict[str, str]


def _python_without_project(base: Path) -> Path:
    """A venv that sees the test venv's packages but not the editable install of this project."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base)], check=True)
    site = next(base.glob("lib/python*/site-packages"))
    parent_site = next(Path(sys.prefix).glob("lib/python*/site-packages"))
    (site / "parent.pth").write_text(f"{parent_site}\n")  # a plain path line: the parent's .pth hooks do not run
    python = base / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('segmentation'), u.find_spec('pyspark'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith("None ") and "pyspark" in probe.stdout, probe.stdout
    return python


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    import pyspark

    base = tmp_path_factory.mktemp("standalone")
    spark_home = Path(pyspark.__file__).parent
    python = _python_without_project(base / "venv")
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "PYSPARK_PYTHON": str(python),
        "PYSPARK_DRIVER_PYTHON": str(python),
        "SPARK_NO_DAEMONIZE": "1",
    }
    env.pop("PYTHONPATH", None)
    env.pop("SEGMENTATION_JARS_DIR", None)  # Delta comes with --jars, as on a cluster
    port, web_port = _free_port(), _free_port()
    url, web_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}"
    logs = base / "logs"
    logs.mkdir()
    spark_class = str(spark_home / "bin" / "spark-class")
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "wb") as out:
            processes.append(
                subprocess.Popen(
                    [spark_class, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    work_dirs = [base / f"worker{i}" for i in (1, 2)]
    try:
        start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(web_port),
        )
        _wait(lambda: _json(f"{web_url}/json")["status"] == "ALIVE", "the master")
        for i, work_dir in enumerate(work_dirs, start=1):
            start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "1g",
                "--webui-port",
                str(_free_port()),
                "--work-dir",
                str(work_dir),
                url,
            )
        _wait(lambda: _json(f"{web_url}/json")["aliveworkers"] == 2, "two workers to register")
        yield Cluster(url, web_url, work_dirs, logs, env)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)], check=True, cwd=ROOT
    )
    return next(dist.glob("segmentation-*.whl"))


@pytest.fixture(scope="module")
def small_orders(spark, tmp_path_factory, conf_dir) -> tuple[Path, list[str]]:
    """~600 customers generated in local mode: the cluster test is about submission, not generation."""
    from segmentation import pipelines
    from segmentation.config import load_settings

    lake = tmp_path_factory.mktemp("cluster-lake")
    overrides = [
        f"inputs.orders.path={lake / 'input' / 'orders'}",
        f"inputs.identity_map.path={lake / 'input' / 'identity_map'}",
        f"inputs.profiles.path={lake / 'input' / 'profiles'}",
        f"outputs.path={lake / 'output'}",
        "generate.customers=600",
        "generate.orders=5000",
        "generate.customers_per_partition=300",
    ]
    pipelines.run_generate(spark, load_settings([conf_dir / "local.yaml"], overrides), AS_OF)
    return lake, overrides


def test_build_runs_on_a_standalone_cluster(cluster, wheel, small_orders, spark, tmp_path):
    lake, overrides = small_orders
    jars = sorted((ROOT / ".cache" / "jars").glob("*.jar"))
    spark_submit = Path(cluster.env["SPARK_HOME"]) / "bin" / "spark-submit"
    command = [
        str(spark_submit),
        "--master", cluster.url,
        "--driver-memory", "1g",
        "--executor-memory", "512m",
        "--total-executor-cores", "2",
        "--conf", "spark.executor.cores=1",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
        "--jars", ",".join(str(j) for j in jars),
        "--py-files", str(wheel),
        str(ROOT / "jobs" / "build.py"),
        "--conf", str(ROOT / "conf" / "local.yaml"),
        "--as-of", str(AS_OF),
        *overrides,
        "spark.master=null",
        "spark.jars_dir=null",
        "spark.driver_memory=null",
    ]  # fmt: skip
    log_path = tmp_path / "spark-submit.log"
    with open(log_path, "wb") as out:
        result = subprocess.run(
            command,
            env=cluster.env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            start_new_session=True,
        )
    log = log_path.read_text(errors="replace")
    assert result.returncode == 0, log[-5000:]
    assert f"master {cluster.url}" in log, "the job ran against the standalone master, not local mode"

    import pyspark.sql.functions as F

    segments_df = spark.read.format("delta").load(str(lake / "output" / "customer_segments"))
    features_df = spark.read.format("delta").load(str(lake / "output" / "customer_features"))
    segments_df = segments_df.where(F.col("as_of_date") == F.lit(AS_OF))
    assert features_df.count() > 0
    assert features_df.join(segments_df, "customer_id", "left_anti").count() == 0, "every buyer has a segment"
    assert segments_df.groupBy("customer_id").count().where("count > 1").count() == 0

    def finished_apps() -> list[dict]:
        return _json(f"{cluster.web_url}/json")["completedapps"]

    apps = _wait(finished_apps, "the application to be listed as completed by the master", timeout=60)
    assert len(apps) == 1, "this cluster ran exactly the submitted build"
    app = apps[0]
    app_id = app["id"]
    executor_logs = [list((w / app_id).glob("*/stderr")) for w in cluster.work_dirs]
    assert all(executor_logs), f"each worker ran an executor of {app_id}: {executor_logs}"
    for logs in executor_logs:
        text = "".join(p.read_text(errors="replace") for p in logs)
        assert "Running task" in text or "Finished task" in text, "tasks ran on every worker"
