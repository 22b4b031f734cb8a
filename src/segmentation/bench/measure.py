"""Measuring one implementation: wall time, per-stage times, peak memory, per-task skew, agreement of outputs.

Every use of :mod:`segmentation.pipelines` in the benchmark is one of the three small adapters at the top of this
module (``generate_orders``, ``read_orders``, ``timed_build``); the build's stage times come from a listener passed to
``run_build``, the run protocol's hook.

Only the standard library is imported at module level: the DuckDB worker imports this package and its start-up
time and memory must not include Spark, pandas or deltalake.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The build stages that produce what the references produce (features, scores, segments); the rest of build writes
# tables the references do not have (rejected rows, summary, migration, tags, audiences, the run manifest).
CORE_STAGES = frozenset(
    {
        "read orders",
        "find repeated order keys",
        "validate orders",
        "features",
        "scores and segments",
        "write customer_features",
        "write customer_segments",
    }
)
OUTSIDE_STAGES = "outside named stages (rule checks, reference tables, planning)"


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline, behind one adapter per use
# ----------------------------------------------------------------------------------------------------------------------
def generate_orders(spark, settings, as_of: dt.date) -> None:
    """Write the synthetic orders ``settings.generate`` describes to ``settings.inputs.orders``."""
    from segmentation import pipelines

    pipelines.run_generate(spark, settings, as_of)


def read_orders(spark, settings):
    """The orders table as the product reads it (a DataFrame), for the naive reference."""
    from segmentation.pipelines import common

    return common.read_orders(spark, settings).df


def timed_build(spark, settings, as_of: dt.date) -> tuple[Any, list[tuple[str, float]]]:
    """``pipelines.run_build`` and the seconds of each named stage, in the order the stages finished."""
    from segmentation import pipelines

    stages: list[tuple[str, float]] = []

    def listen(name: str, seconds: float, info: dict) -> None:
        stages.append((name, seconds))

    return pipelines.run_build(spark, settings, as_of, listeners=[listen]), stages


# ----------------------------------------------------------------------------------------------------------------------
# Peak memory
# ----------------------------------------------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` (peak resident set) of a process in MiB, None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5), so each implementation gets its own peak."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def jvm_pid(spark) -> int:
    """The driver JVM's process id (the Java child of this Python process)."""
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())


# ----------------------------------------------------------------------------------------------------------------------
# The three implementations
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    wall_s: float
    stages: list[tuple[str, float]] = field(default_factory=list)
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_product(spark, settings, as_of: dt.date, pid: int, label: str = "build") -> RunResult:
    """The product's build, timed as a whole and per stage, in the Spark job group ``label``."""
    shutil.rmtree(settings.outputs.path, ignore_errors=True)
    spark.catalog.clearCache()
    reset_peak_rss(pid)
    spark.sparkContext.setJobGroup(label, f"benchmark: {label}")
    start = time.perf_counter()
    result, stages = timed_build(spark, settings, as_of)
    wall = time.perf_counter() - start
    outside = wall - sum(t for _, t in stages)
    core = sum(seconds for name, seconds in stages if name in CORE_STAGES) + outside
    stages = [*stages, (OUTSIDE_STAGES, outside)]
    extra = {
        "input_rows": result.input_rows,
        "valid_rows": result.valid_rows,
        "customers": result.customers,
        "core_s": core,
        "load_average": os.getloadavg(),
    }
    return RunResult(label, wall, stages, peak_rss_mb(pid), extra)


def run_incremental(spark, settings, as_of: dt.date, pid: int, share: float) -> RunResult:
    """After ``run_product``: append one day of orders (``share`` of the table) and time the next day's build, which
    ingests only them and advances the customer state. The orders table is restored afterwards (Delta RESTORE), so
    the cached data set is what the next benchmark run finds."""
    from delta.tables import DeltaTable

    from segmentation.pipelines.generate import run_append_day

    table = DeltaTable.forPath(spark, settings.inputs.orders.path)
    before = int(table.history(1).select("version").first()["version"])
    next_day = as_of + dt.timedelta(days=1)
    run_append_day(spark, settings, next_day, share)
    try:
        spark.catalog.clearCache()
        reset_peak_rss(pid)
        spark.sparkContext.setJobGroup("incremental", "benchmark: incremental build")
        start = time.perf_counter()
        result, stages = timed_build(spark, settings, next_day)
        wall = time.perf_counter() - start
    finally:
        table.restoreToVersion(before)
    extra = {"mode": result.mode, "rows_read": result.rows_read, "state": result.state, "share": share}
    return RunResult("incremental", wall, stages, peak_rss_mb(pid), extra)


def run_models(spark, settings, as_of: dt.date, pid: int) -> list[RunResult]:
    """After ``run_product``: ``train`` every model family on the build's clean orders, then ``score`` the date's
    slice with the champions, each timed as a whole and per stage. ``settings.mlflow`` should point at a tracking
    store of the data set's own (the runner's ``models_settings``), so the benchmark never registers versions in the
    project's store. Neither job validates orders: both read ``orders_clean``, which the stage names show."""
    from segmentation import pipelines

    results = []
    for name, job in (("train", pipelines.run_train), ("score", pipelines.run_score)):
        stages: list[tuple[str, float]] = []

        def listen(stage: str, seconds: float, info: dict, sink=stages) -> None:
            sink.append((stage, seconds))

        spark.catalog.clearCache()
        reset_peak_rss(pid)
        spark.sparkContext.setJobGroup(name, f"benchmark: {name}")
        start = time.perf_counter()
        job(spark, settings, as_of, listeners=[listen])
        wall = time.perf_counter() - start
        stages.append((OUTSIDE_STAGES, wall - sum(t for _, t in stages)))
        results.append(RunResult(name, wall, stages, peak_rss_mb(pid), {"load_average": os.getloadavg()}))
    return results


def run_naive(spark, settings, as_of: dt.date, out: Path, pid: int) -> RunResult:
    """The tutorial-style job: features written to Delta, read back, scored with global ``ntile``, written."""
    from segmentation import io
    from segmentation.bench.references import naive
    from segmentation.config import TableRef

    shutil.rmtree(out, ignore_errors=True)
    spark.catalog.clearCache()
    reset_peak_rss(pid)
    spark.sparkContext.setJobGroup("naive", "benchmark: naive")
    stages: list[tuple[str, float]] = []
    start = time.perf_counter()
    orders_df = read_orders(spark, settings)
    t = time.perf_counter()
    io.overwrite_table(naive.naive_features(orders_df, as_of, settings), str(out / "customer_features"))
    stages.append(("features (groupBy per metric + joins) and write", time.perf_counter() - t))
    t = time.perf_counter()
    features_df = io.read_table(spark, TableRef(path=str(out / "customer_features"))).df
    io.overwrite_table(naive.naive_scores(features_df, settings), str(out / "customer_segments"))
    stages.append(("ntile scores, Python UDF segments and write", time.perf_counter() - t))
    wall = time.perf_counter() - start
    return RunResult("naive", wall, stages, peak_rss_mb(pid), {"load_average": os.getloadavg()})


def _run_child_measured(args: list[str]) -> tuple[int, float, float, bytes, bytes]:
    """Run a child process; return (returncode, wall seconds, peak RSS MiB, stdout, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []

    def drain(stream, sink: list[bytes]) -> None:
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.append(chunk)

    threads = [
        threading.Thread(target=drain, args=(proc.stdout, out_chunks)),
        threading.Thread(target=drain, args=(proc.stderr, err_chunks)),
    ]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024, b"".join(out_chunks), b"".join(err_chunks)


def run_duckdb_measured(files: Sequence[str], as_of: dt.date, settings, out: Path, threads: int) -> RunResult:
    """The DuckDB reference in its own process: wall time from spawn to exit, peak RSS from ``wait4``."""
    from segmentation.bench.references.duckdb import duckdb_statements

    shutil.rmtree(out, ignore_errors=True)
    (out / "tmp").mkdir(parents=True)
    spec = out / "spec.json"
    spec.write_text(json.dumps({"statements": duckdb_statements(files, as_of, settings, out, threads)}))
    code = f"from segmentation.bench.references.duckdb import _duckdb_worker; _duckdb_worker({str(spec)!r})"
    returncode, wall, rss, stdout, stderr = _run_child_measured([sys.executable, "-c", code])
    if returncode != 0:
        raise RuntimeError(f"duckdb reference failed: {stderr.decode()[-2000:]}")
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    extra = {"customers": report["customers"], "load_average": os.getloadavg()}
    return RunResult("duckdb", wall, [tuple(s) for s in report["stages"]], rss, extra)


# ----------------------------------------------------------------------------------------------------------------------
# Agreement between the outputs
# ----------------------------------------------------------------------------------------------------------------------
def agreement(build_segments: Path, duckdb_segments: Path, naive_segments: Path, as_of: dt.date) -> dict[str, Any]:
    """Shares of customers on which the implementations agree (computed by DuckDB, only aggregates returned)."""
    import duckdb

    from segmentation.bench.datasets import delta_files

    def snapshot(path: Path) -> str:
        files = [f for f in delta_files(path) if f"as_of_date={as_of}" in f or "as_of_date" not in f]
        return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"

    con = duckdb.connect()
    build = snapshot(build_segments)
    naive = "read_parquet([" + ", ".join(f"'{f}'" for f in delta_files(naive_segments)) + "])"
    duck = f"read_parquet('{duckdb_segments}')"
    out: dict[str, Any] = {}
    for name, other in (("duckdb", duck), ("naive", naive)):
        row = con.execute(
            f"""
            SELECT count(*) AS customers,
                   count(b.customer_id) AS in_build, count(o.customer_id) AS in_other,
                   avg(CAST(b.rfm_segment = o.rfm_segment AS DOUBLE)) AS same_segment,
                   avg(CAST(b.r_score = o.r_score AS DOUBLE)) AS same_r,
                   avg(CAST(b.f_score = o.f_score AS DOUBLE)) AS same_f,
                   avg(CAST(b.m_score = o.m_score AS DOUBLE)) AS same_m,
                   avg(CAST(b.recency_days = o.recency_days AND b.frequency = o.frequency
                            AND b.monetary = o.monetary AS DOUBLE)) AS same_rfm_values
            FROM {build} b FULL OUTER JOIN {other} o ON b.customer_id = o.customer_id
            """
        ).fetchone()
        keys = ("customers", "in_build", "in_other", "same_segment", "same_r", "same_f", "same_m", "same_rfm_values")
        out[name] = dict(zip(keys, row, strict=True))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Skew: per-stage task times from the Spark UI's REST API
# ----------------------------------------------------------------------------------------------------------------------
def task_time_skew(spark, job_group: str, min_stage_seconds: float = 1.0) -> list[dict[str, Any]]:
    """Max and median task run time of every stage run by ``job_group`` (needs ``spark.ui.enabled``)."""
    import urllib.error
    import urllib.request

    sc = spark.sparkContext
    base = sc.uiWebUrl
    if not base:
        return []

    def get(path: str) -> Any:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/applications/{sc.applicationId}/{path}", timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the UI keeps spark.ui.retainedStages stages; older ones are gone
                return []
            raise

    stage_ids = sorted({s for job in get("jobs") if job.get("jobGroup") == job_group for s in job["stageIds"]})
    rows = []
    for sid in stage_ids:
        for attempt in get(f"stages/{sid}"):
            if attempt.get("status") != "COMPLETE" or attempt.get("numCompleteTasks", 0) == 0:
                continue
            summary = get(f"stages/{sid}/{attempt['attemptId']}/taskSummary?quantiles=0.5,1.0")
            median_ms, max_ms = summary["executorRunTime"]
            total_s = attempt.get("executorRunTime", 0) / 1000
            if total_s < min_stage_seconds:
                continue
            rows.append(
                {
                    "stage": sid,
                    "name": attempt.get("name", "")[:60],
                    "tasks": attempt.get("numCompleteTasks"),
                    "total_task_s": round(total_s, 2),
                    "median_task_s": round(median_ms / 1000, 2),
                    "max_task_s": round(max_ms / 1000, 2),
                }
            )
    return rows
