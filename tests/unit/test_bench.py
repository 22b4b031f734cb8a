"""The benchmark's references compute what the product computes, so their timings compare like with like."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segmentation import bench
from segmentation.bench.references import naive as naive_reference
from segmentation.transforms.rules import exclusive_column

FAMILIES = ("bgnbd", "mbgnbd", "pareto_nbd")

AS_OF = dt.date(2026, 6, 30)


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def _write_orders(folder: Path, rows: list[tuple]) -> list[str]:
    """Orders as Parquet in Delta's partition layout (channel=.../order_month=...), partition columns in the path."""
    files = []
    columns = [
        "order_id",
        "customer_id",
        "order_ts",
        "amount",
        "currency",
        "status",
        "category",
        "discount_amount",
        "coupon_code",
    ]
    for (channel, month), group in itertools.groupby(
        sorted(rows, key=lambda r: (r[0], r[3][:7])), key=lambda r: (r[0], r[3][:7])
    ):
        group = list(group)
        table = pa.table(
            {
                "order_id": [r[1] for r in group],
                "customer_id": [r[2] for r in group],
                "order_ts": pa.array([_ts(r[3]) for r in group], pa.timestamp("us", tz="UTC")),
                "amount": pa.array(
                    [None if r[4] is None else __import__("decimal").Decimal(str(r[4])) for r in group],
                    pa.decimal128(18, 2),
                ),
                "currency": [r[5] for r in group],
                "status": [r[6] for r in group],
                "category": ["apparel"] * len(group),
                "discount_amount": pa.array([__import__("decimal").Decimal("0")] * len(group), pa.decimal128(18, 2)),
                "coupon_code": pa.array([None] * len(group), pa.string()),
            }
        )
        assert table.column_names == columns
        path = folder / f"channel={channel}" / f"order_month={month}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        files.append(str(path))
    return files


@pytest.fixture()
def settings(conf_dir, tmp_path):
    from segmentation.config import load_settings

    return load_settings([conf_dir / "local.yaml"], [f"outputs.path={tmp_path / 'out'}"])


def test_duckdb_reference_applies_the_products_validity_rules_and_cut_semantics(settings, tmp_path):
    import duckdb

    rows = [
        # channel, order_id, customer, ts, amount, currency, status
        ("web", "o1", "c1", "2026-06-29T10:00:00", 100, "CNY", "completed"),
        ("web", "o1", "c1", "2026-06-29T10:00:00", 100, "CNY", "completed"),  # duplicate: rejected
        ("web", "o2", "c1", "2026-05-01T10:00:00", 50, "CNY", "completed"),
        ("app", "o3", "c2", "2026-01-01T10:00:00", 30, "CNY", "completed"),
        ("app", "o4", "c2", "2026-02-01T10:00:00", 30, "CNY", "refunded"),  # valid, not a sale
        ("app", "o5", "c3", "2026-07-01T10:00:00", 30, "CNY", "completed"),  # after the as-of date: rejected
        ("app", "o6", None, "2026-06-01T10:00:00", 30, "CNY", "completed"),  # null customer: rejected
        ("store", "o7", "c4", "2025-07-01T10:00:00", 10, "XXX", "completed"),  # unknown currency: rejected
        ("store", "o8", "c5", "2025-09-01T10:00:00", 10, "CNY", "completed"),
    ]
    files = _write_orders(tmp_path / "orders", rows)
    out = tmp_path / "duck"
    (out / "tmp").mkdir(parents=True)
    con = duckdb.connect()
    for _, sql in bench.duckdb_statements(files, AS_OF, settings, out, threads=1):
        con.execute(sql)
    segments = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT customer_id, recency_days, frequency, CAST(monetary AS DOUBLE), r_score, f_score, rfm_segment"
            f" FROM read_parquet('{out / 'customer_segments.parquet'}')"
        ).fetchall()
    }
    orders_30d = dict(
        con.execute(
            f"SELECT customer_id, orders_30d FROM read_parquet('{out / 'customer_features.parquet'}')"
        ).fetchall()
    )
    assert set(segments) == {"c1", "c2", "c5"}
    assert {c: v[:3] for c, v in segments.items()} == {"c1": (1, 2, 150.0), "c2": (180, 1, 30.0), "c5": (302, 1, 10.0)}
    assert orders_30d == {"c1": 1, "c2": 0, "c5": 0}
    # A value equal to a cut point falls in the lower bucket: single-order customers score f = 1 whatever cut
    # quantile_disc picks (every cut is an observed value >= 1); the most recent customer scores r = 5.
    assert segments["c1"][3] == 5 and segments["c1"][4] >= 4
    assert segments["c2"][4] == 1 and segments["c5"][4] == 1
    assert segments["c5"][5] == "hibernating"


@pytest.mark.spark
def test_naive_python_rule_matches_the_products_case_expression_on_every_cell(spark, settings):
    rule_set = settings.segments.rule_sets["rfm_segment"]
    segment, columns = naive_reference.python_rule(rule_set)
    assert {"r_score", "f_score"} <= set(columns)
    cells = [dict(zip(columns, values, strict=True)) for values in itertools.product(range(6), repeat=len(columns))]
    df = spark.createDataFrame([tuple(c.values()) for c in cells], ", ".join(f"{c} int" for c in columns))
    expected = [r["s"] for r in df.select(exclusive_column(rule_set).alias("s")).collect()]
    assert [segment(*c.values()) for c in cells] == expected


def test_naive_python_rule_refuses_conditions_beyond_simple_comparisons():
    from segmentation.config import RuleSet

    rules = RuleSet.model_validate(
        {
            "kind": "exclusive",
            "rules": [{"name": "x", "condition": "recency_days IN (1, 2)"}, {"name": "y", "condition": "true"}],
        }
    )
    with pytest.raises(ValueError, match="simple comparisons"):
        naive_reference.python_rule(rules)


@pytest.mark.parametrize("resolution", [1, 7], ids=["days", "weeks"])
def test_simulated_bgnbd_triples_are_valid_patterns(resolution):
    x, t_x, age = bench.simulate_bgnbd(20_000, seed=1, resolution_days=resolution)
    assert np.all(t_x <= age) and np.all(age > 0)
    assert np.all(t_x[x == 0] == 0)
    days = age * 7
    assert np.allclose(days, np.round(days / resolution) * resolution)
    assert 0.3 < (x > 0).mean() < 0.7


def test_clv_timing_fits_the_same_parameters_on_patterns_as_on_customers():
    (row,) = bench.clv_fit_timings([30_000], seed=3)
    assert row["resolution_days"] == 7  # the shipped time unit: whole weeks
    assert row["patterns"] < row["customers"] / 3
    assert row["converged"] == [True, True]
    assert row["max_rel_param_diff"] < 1e-5


def test_clv_candidate_timing_fits_every_family_and_times_its_intervals():
    rows = bench.clv_candidate_timings([20_000], seed=3, draws=20)
    assert [r["family"] for r in rows] == list(FAMILIES)
    assert all(r["converged"] and r["draws"] == 20 and r["interval_patterns_s"] >= 0 for r in rows), rows
    assert len({r["patterns"] for r in rows}) == 1 and rows[0]["patterns"] < 20_000  # one collapse, shared


@pytest.fixture(scope="module")
def membership_row(spark, conf_dir, tmp_path_factory) -> dict:
    """The membership MERGE measurement on 1,500 customers with the shipped configuration's dimensions (copy-on-write,
    the same MERGE on a table without deletion vectors, left out)."""
    from segmentation.bench.membership import measure_membership_merge
    from segmentation.config import load_settings
    from segmentation.transforms.membership import dimensions_of

    dims = dimensions_of(load_settings([conf_dir / "local.yaml"])).all
    root = tmp_path_factory.mktemp("membership")
    return measure_membership_merge(spark, root, 1_500, 0.1, dimensions=dims, files=2, copy_on_write=False)


@pytest.mark.spark
@pytest.mark.delta
def test_membership_merge_measurement_writes_only_the_changed_rows_and_compares_whole_rewrites(membership_row):
    m = membership_row
    assert m["dimensions"] >= 10 and 100 < m["changed"] < 200  # 10% of 1,500 by a hash of the id
    dv = m["merge_deletion_vectors"]
    # The MERGE with deletion vectors writes exactly the changed customers and copies nothing.
    assert dv["rows_changed"] == dv["rows_written"] == m["changed"] and dv["rows_copied"] == 0
    assert dv["files_removed"] == 0 and "merge_copy_on_write" not in m
    assert m["state_overwrite"]["rows_written"] == m["snapshot_slice"]["rows_written"] == m["customers"]
    assert all(m[k]["seconds"] > 0 for k in ("merge_deletion_vectors", "state_overwrite", "snapshot_slice"))
    assert 0 < dv["merge_s"] <= dv["seconds"]


def _size_row(orders: int, build_s: float, duckdb_s: float, naive_s: float | None) -> dict:
    """One size's results as ``run`` records them, from hand-made measurements."""
    from segmentation.bench.measure import RunResult
    from segmentation.bench.runner import SizeResult, _size_dict

    customers = orders // 20
    load = (1.0, 1.0, 1.0)
    extra = {"input_rows": orders, "valid_rows": orders, "customers": customers, "core_s": build_s * 0.8}
    build = RunResult("build", build_s, [("features", build_s / 2)], 4_000.0, {**extra, "load_average": load})
    duck = RunResult("duckdb", duckdb_s, [("read, validate, features", duckdb_s)], 900.0, {"load_average": load})
    naive = RunResult("naive", naive_s, [], 4_100.0, {"load_average": load}) if naive_s else None
    inc = {"mode": "incremental", "rows_read": orders // 100, "state": "advanced", "load_average": load}
    incremental = RunResult("incremental", build_s / 20, [("customer state", build_s / 40)], 4_000.0, inc)
    models = [
        RunResult("train", build_s / 2, [("read clean orders", build_s / 10), ("fit churn", build_s / 4)], 4_000.0, {}),
        RunResult("score", build_s / 4, [("write scored customer_segments", build_s / 8)], 4_000.0, {}),
    ]
    size = SizeResult(
        str(orders),
        orders,
        customers,
        orders,
        customers,
        4,
        10**6,
        False,
        None,
        build,
        duck,
        naive,
        {},
        incremental,
        models,
    )
    return _size_dict(size, session_start_s=5.0)


def test_targets_file_loads_and_every_target_reads_a_metric_the_benchmark_produces(tmp_path, membership_row):
    from segmentation.bench import targets as bench_targets

    loaded = bench.load_targets()
    assert {t.metric for t in loaded} >= {"build_over_duckdb", "naive_over_build", "build_job_s", "driver_memory_gb"}
    assert all(t.metric in bench_targets.METRICS for t in loaded)
    # Results shaped by the benchmark's own code: every size and customer count a target names was run.
    orders = sorted({n for t in loaded if bench_targets.METRICS[t.metric].scope == "size" for n in (t.at, t.over) if n})
    (clv_row,) = bench.clv_fit_timings([2_000], seed=3)
    results = {
        "driver_memory": "4g",
        "sizes": [_size_row(n, build_s=n / 1e5, duckdb_s=n / 5e5, naive_s=n / 2e4) for n in orders],
        "clv": [{**clv_row, "customers": t.at} for t in loaded if bench_targets.METRICS[t.metric].scope == "clv"],
        "clv_candidates": bench.clv_candidate_timings([2_000], seed=3, draws=5),
        "membership": [
            {**membership_row, "customers": t.at}
            for t in loaded
            if bench_targets.METRICS[t.metric].scope == "membership"
        ],
    }
    outcomes = bench_targets.evaluate_all(results, loaded)
    assert [o.met is not None and o.value is not None for o in outcomes] == [True] * len(loaded), outcomes
    by_metric = {o.target.metric: o for o in outcomes}
    assert by_metric["build_over_duckdb"].value == pytest.approx((1_000 + 5) / 200)  # build whole process / DuckDB
    assert by_metric["build_over_duckdb"].met is False  # threshold 4
    assert by_metric["naive_over_build"].value == pytest.approx(5.0) and by_metric["naive_over_build"].met
    assert by_metric["build_job_s"].value == pytest.approx(5.0)  # 100M over 20M: 1,000 s / 200 s
    assert by_metric["driver_memory_gb"].value == 4.0 and by_metric["driver_memory_gb"].met
    assert by_metric["train_over_build"].value == pytest.approx(0.5) and by_metric["train_over_build"].met
    assert by_metric["score_over_build"].value == pytest.approx(0.25) and by_metric["score_over_build"].met
    merge = by_metric["membership_merge_over_slice"]
    assert merge.value == pytest.approx(
        membership_row["merge_deletion_vectors"]["seconds"] / membership_row["snapshot_slice"]["seconds"]
    )
    report = bench.render({**results, "machine": _machine(), "as_of": str(AS_OF), "command": "test"})
    assert "## Membership MERGE" in report and "MERGE, deletion vectors (shipped)" in report
    candidates = report.split("## CLV candidates at scale", 1)[1].split("\n## ", 1)[0]
    assert all(f"| 2,000 | {results['clv_candidates'][0]['patterns']:,} | {f} |" in candidates for f in FAMILIES)
    models_section = report.split("## Train and score", 1)[1].split("\n## ", 1)[0]
    assert "| 100,000,000 | 5,000,000 | 1,000.0 s | 500.0 s | 0.50× | 250.0 s | 0.25× |" in models_section
    assert "**train** at 100,000,000 orders (500.0 s): read clean orders 100.0 s; fit churn 250.0 s" in models_section
    targets_section = report.split("## Targets", 1)[1]
    assert all(f"| {t.name} |" in targets_section for t in loaded)
    # Without the 100M size a target says it was not measured instead of failing.
    (small,) = bench_targets.evaluate_all({"sizes": [_size_row(10**6, 50.0, 2.0, None)]}, loaded[:1])
    assert small.met is None and "100,000,000 orders not run" in small.text and "1,000,000 orders: 27.50×" in small.text
    bad = tmp_path / "targets.yaml"
    bad.write_text("targets:\n  - {name: x, metric: nope, at: 1, comparison: '<', threshold: 1}\n")
    with pytest.raises(ValueError, match=r"targets\[0\].*not a benchmark metric"):
        bench.load_targets(bad)


def _machine() -> dict:
    return {"cpu": "test", "nproc": 2, "memory_gb": 1.0, "os": "test", "python": "3", "load_average": (0.0, 0.0, 0.0)}


def test_data_sets_with_fewer_orders_per_customer_are_their_own_data_set(tmp_path):
    from segmentation.bench.datasets import dataset_for

    default = dataset_for(tmp_path, 20_000_000)
    many = dataset_for(tmp_path, 20_000_000, orders_per_customer=4)
    assert (default.customers, many.customers) == (1_000_000, 5_000_000)
    assert default.root != many.root  # reusing one for the other would time the wrong customer count
    assert f"generate.customers={many.customers}" in many.overrides()
