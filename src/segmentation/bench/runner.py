"""The whole benchmark: every size side by side over one Delta snapshot, then skew, then the CLV fit timing.

For each size the data set is generated or reused (:mod:`~segmentation.bench.datasets`), then build, DuckDB and
the naive PySpark job run one after another in one Spark session (:mod:`~segmentation.bench.measure`), and after
every size the results are saved and the report rewritten (:mod:`~segmentation.bench.render`), so a long run that
stops early still leaves what it measured.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segmentation.bench.clv_timing import clv_candidate_timings, clv_fit_timings
from segmentation.bench.datasets import (
    DEFAULT_ROOT,
    ORDERS_PER_CUSTOMER,
    Dataset,
    dataset_for,
    delta_files,
    ensure_orders,
    ensure_skewed_orders,
)
from segmentation.bench.measure import (
    RunResult,
    agreement,
    jvm_pid,
    peak_rss_mb,
    run_duckdb_measured,
    run_incremental,
    run_models,
    run_naive,
    run_product,
    task_time_skew,
)
from segmentation.bench.render import render

INCREMENTAL_SHARE = 0.01  # the daily append the incremental build is timed on: 1% of the table's orders

log = logging.getLogger(__name__)


def machine() -> dict[str, Any]:
    """CPU model, cores and memory: the context every number in the report needs."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


@dataclass
class SizeResult:
    dataset: str
    orders: int
    customers_generated: int
    input_rows: int
    customers: int
    parquet_files: int
    input_bytes: int
    generated_now: bool
    generate_s: float | None
    build: RunResult
    duckdb: RunResult
    naive: RunResult | None
    agreement: dict[str, Any]
    incremental: RunResult | None = None
    models: list[RunResult] | None = None  # train, then score, when this size times them


def _bytes(files: Sequence[str]) -> int:
    return sum(os.path.getsize(f) for f in files)


def bench_size(
    spark, settings, dataset: Dataset, as_of: dt.date, pid: int, with_naive: bool, with_models: bool = False
) -> SizeResult:
    """Generate or reuse one size, then run build (then train and score, then the next day's incremental build),
    DuckDB and naive over the same snapshot."""
    start = time.perf_counter()
    generated = ensure_orders(spark, settings, dataset, as_of)
    generate_s = time.perf_counter() - start if generated else None
    files = delta_files(dataset.orders_path)
    threads = os.cpu_count() or 1
    log.info("bench %s: %d files, %.1f MB", dataset.label, len(files), _bytes(files) / 1e6)
    build = run_product(spark, settings, as_of, pid)
    models = run_models(spark, settings, as_of, pid) if with_models else None
    incremental = run_incremental(spark, settings, as_of, pid, INCREMENTAL_SHARE)
    duck = run_duckdb_measured(files, as_of, settings, dataset.out / "duckdb", threads)
    naive = None
    agree: dict[str, Any] = {}
    if with_naive:
        try:
            naive = run_naive(spark, settings, as_of, dataset.out / "naive", pid)
            agree = agreement(
                Path(settings.outputs.table_path("customer_segments")),
                dataset.out / "duckdb" / "customer_segments.parquet",
                dataset.out / "naive" / "customer_segments",
                as_of,
            )
        except Exception as exc:  # a failing reference must not lose the measurements already taken
            log.exception("naive reference or agreement failed on %s", dataset.label)
            agree = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return SizeResult(
        dataset.label,
        dataset.orders,
        dataset.customers,
        build.extra["input_rows"],
        build.extra["customers"],
        len(files),
        _bytes(files),
        generated,
        generate_s,
        build,
        duck,
        naive,
        agree,
        incremental,
        models,
    )


def bench_skew(spark, conf_files, overrides, root: Path, as_of: dt.date, pid: int, base_size: int) -> dict[str, Any]:
    """Build on the base data set plus one customer with ``SKEW_ORDERS`` orders, with per-stage task times.

    The comparison is the base build of the same session (the same data without that customer): the question is
    whether one customer's orders make one task run for most of the job, which the max / median task time of each
    stage answers directly.
    """
    from segmentation.config import load_settings

    base = dataset_for(root, base_size)
    skewed = dataset_for(root, base_size, skewed=True)
    base_settings = load_settings(conf_files, [*overrides, *base.overrides()])
    ensure_orders(spark, base_settings, base, as_of)
    skew_settings = load_settings(conf_files, [*overrides, *skewed.overrides()])
    ensure_skewed_orders(spark, base_settings, base, skewed, as_of)
    # Both builds back to back in the same JVM state, each one's task times read right after it.
    base_run = run_product(spark, base_settings, as_of, pid, label="build-skew-base")
    base_stages = task_time_skew(spark, "build-skew-base")
    skew_run = run_product(spark, skew_settings, as_of, pid, label="build-skewed")
    stages = task_time_skew(spark, "build-skewed")
    longest = max((s["max_task_s"] for s in stages), default=0.0)
    return {
        "base_orders": base_size,
        "base": asdict(base_run),
        "skewed": asdict(skew_run),
        "ratio_skewed_over_base": skew_run.wall_s / base_run.wall_s,
        "task_times_skewed": stages,
        "task_times_base": base_stages,
        "longest_task_s": longest,
        "longest_task_share_of_build": longest / skew_run.wall_s,
    }


MEMBERSHIP_CHANGED = 0.03  # share of customers whose segment moves between the two weeks of the MERGE measurement


def run(
    conf_files: Sequence[str],
    overrides: Sequence[str],
    as_of: dt.date,
    sizes: Sequence[int],
    *,
    root: str = DEFAULT_ROOT,
    naive_max_size: int | None = None,
    skew_base: int | None = None,
    clv_customers: Sequence[int] = (),
    membership_customers: Sequence[int] = (),
    models_sizes: Sequence[int] = (),
    warmup_size: int | None = None,
    orders_per_customer: int = ORDERS_PER_CUSTOMER,
    doc: str | None = "docs/benchmarks.md",
    command: str = "",
) -> dict[str, Any]:
    """Run the benchmark for every size and write the JSON results and the Markdown report."""
    from segmentation.config import load_settings
    from segmentation.session import build_session

    root_path = Path(root).resolve()
    root_path.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides)
    if not any(o.startswith("spark.driver_memory=") for o in overrides):
        overrides.append("spark.driver_memory=4g")
    results: dict[str, Any] = {
        "machine": machine(),
        "as_of": str(as_of),
        "command": command,
        "orders_per_customer": orders_per_customer,
        "sizes": [],
    }

    first = load_settings(
        conf_files, [*overrides, *dataset_for(root_path, sizes[0], orders_per_customer=orders_per_customer).overrides()]
    )
    start = time.perf_counter()
    # The UI's REST API gives the per-task times of the skew section; keep enough stages for a long run.
    ui = {"spark.ui.enabled": "true", "spark.ui.retainedStages": "20000", "spark.ui.retainedJobs": "20000"}
    spark = build_session(first.spark, ui)
    results["session_start_s"] = time.perf_counter() - start
    results["driver_memory"] = first.spark.driver_memory
    results["spark_conf"] = dict(first.spark.conf)
    pid = jvm_pid(spark)
    runs: list[SizeResult] = []
    try:
        if warmup_size:
            # The first build in a JVM also pays class loading and JIT compilation; a build on a small data set
            # first keeps that out of the measured runs (the references then start as warm as build does).
            warm = dataset_for(root_path, warmup_size)
            warm_settings = load_settings(conf_files, [*overrides, *warm.overrides()])
            ensure_orders(spark, warm_settings, warm, as_of)
            results["warmup"] = asdict(run_product(spark, warm_settings, as_of, pid, label="warmup"))
        for size in sizes:
            dataset = dataset_for(root_path, size, orders_per_customer=orders_per_customer)
            settings = load_settings(conf_files, [*overrides, *dataset.overrides()])
            with_naive = naive_max_size is None or size <= naive_max_size
            result = bench_size(spark, settings, dataset, as_of, pid, with_naive, with_models=size in models_sizes)
            runs.append(result)
            results["sizes"].append(_size_dict(result, results["session_start_s"]))
            _save(root_path, results, doc)
        if skew_base:
            results["skew"] = bench_skew(spark, conf_files, overrides, root_path, as_of, pid, skew_base)
            _save(root_path, results, doc)
        if membership_customers:
            from segmentation.bench.membership import measure_membership_merge
            from segmentation.transforms.membership import dimensions_of

            dimensions = dimensions_of(first).all
            results["membership"] = [
                measure_membership_merge(spark, root_path / "membership", n, MEMBERSHIP_CHANGED, dimensions=dimensions)
                for n in membership_customers
            ]
            _save(root_path, results, doc)
        results["jvm_peak_rss_mb_overall"] = peak_rss_mb(pid)
    finally:
        spark.stop()
    if clv_customers:
        from segmentation.models.clv_training import DAYS_PER_PERIOD

        results["clv"] = clv_fit_timings(clv_customers, resolutions_days=(DAYS_PER_PERIOD[first.models.clv.time_unit],))
        results["clv_candidates"] = clv_candidate_timings(
            clv_customers,
            resolution_days=DAYS_PER_PERIOD[first.models.clv.time_unit],
            draws=first.models.clv.interval_draws,
        )
    _save(root_path, results, doc)
    return results


def _size_dict(r: SizeResult, session_start_s: float) -> dict[str, Any]:
    out = asdict(r)
    build_whole = r.build.wall_s + session_start_s
    out["build_whole_process_s"] = build_whole
    out["ratio_build_over_duckdb"] = build_whole / r.duckdb.wall_s
    out["ratio_build_job_over_duckdb"] = r.build.wall_s / r.duckdb.wall_s
    if r.naive:
        out["ratio_naive_over_build"] = r.naive.wall_s / r.build.wall_s
    if r.incremental:
        out["ratio_incremental_over_build"] = r.incremental.wall_s / r.build.wall_s
    for m in r.models or ():
        out[f"ratio_{m.name}_over_build"] = m.wall_s / r.build.wall_s
    out["rows_per_s"] = {
        "build": r.input_rows / build_whole,
        "duckdb": r.input_rows / r.duckdb.wall_s,
        **({"naive": r.input_rows / r.naive.wall_s} if r.naive else {}),
    }
    return out


def _save(root: Path, results: Mapping[str, Any], doc: str | None) -> None:
    (root / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if doc:
        Path(doc).parent.mkdir(parents=True, exist_ok=True)
        Path(doc).write_text(render(results))
