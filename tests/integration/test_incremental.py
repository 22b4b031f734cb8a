"""An incremental build writes exactly what a full rebuild of the same input writes.

Two output lakes read the SAME orders table: ``inc`` builds each date the way a daily job does (incremental where it
can), ``ref`` rebuilds every date with ``--full-refresh``. After every step of a history that exercises each way
incremental ingestion can be invalidated, every output slice of the date is compared (run ids and the ingestion
version aside), and the mode each build chose is checked. A second test builds past dates on one history and compares
them with builds on the history cut at each date.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation import io, pipelines
from segmentation.pipelines.build import BUILD_TABLES
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

IGNORED = ("run_id", "ingested_version")
D1 = dt.date(2026, 6, 30)


def _history() -> list[tuple]:
    return [
        order_row("o1", "c1", "2026-06-29T10:00:00", "100.00"),
        order_row("o2", "c1", "2026-05-01T09:00:00", "50.00", category="beauty"),
        order_row("o3", "c2", "2026-06-01T12:00:00", "80.00"),
        order_row("o4", "c3", "2026-06-01T12:00:00", "80.00", channel="app"),  # a tie with o3
        order_row("o5", "c4", "2026-01-15T08:00:00", "20.00", channel="store"),
        order_row("o6", "c4", "2026-03-15T08:00:00", "30.00", channel="store", status="refunded"),
        order_row("o7", "c5", "2026-06-30T23:59:59", "15.50", coupon="SUMMER"),
        order_row("o8", "c5", "2026-06-10T00:00:00", "40.00", discount="5.00"),
        order_row("o9", "c6", "2025-07-05T00:00:00", "60.00"),  # leaves the 365-day window in early July
        order_row("o10", None, "2026-06-10T00:00:00", "10.00"),  # rejected
        order_row("o11", "c7", "2026-07-01T10:00:00", "25.00"),  # after D1: waits for a later date
    ]


def _append(spark, path, rows):
    spark.createDataFrame(rows, ORDER_COLUMNS).write.format("delta").mode("append").save(path)


def _slices(spark, settings, as_of):
    out = {}
    for table in (*BUILD_TABLES, "orders_clean"):
        df = io.read_output(spark, settings.outputs.table_path(table))
        if "as_of_date" in df.columns:  # a snapshot: this date's slice; otherwise the current state of the table
            df = df.where(F.col("as_of_date") == F.lit(as_of))
        out[table] = df.drop(*[c for c in IGNORED if c in df.columns])
    return out


def _assert_same(spark, inc, ref, as_of):
    got, want = _slices(spark, inc, as_of), _slices(spark, ref, as_of)
    for table in want:
        assertDataFrameEqual(got[table], want[table], checkRowOrder=False)


@pytest.fixture(scope="module")
def lakes(spark, conf_dir, tmp_path_factory):
    from segmentation.config import load_settings

    root = tmp_path_factory.mktemp("incremental")

    def settings(name, *extra):
        return load_settings(
            [conf_dir / "local.yaml"],
            [
                f"inputs.orders.path={root / 'orders'}",
                f"inputs.identity_map.path={root / 'identity'}",
                "inputs.profiles=null",
                f"outputs.path={root / name}",
                "spark.master=local[2]",
                "quality.max_rejected_share=1",
                *extra,
            ],
        )

    spark.createDataFrame(
        [("web", "c6", "u6")], "channel string, channel_customer_id string, customer_id string"
    ).write.format("delta").save(str(root / "identity"))
    spark.createDataFrame(_history(), ORDER_COLUMNS).write.format("delta").save(str(root / "orders"))
    return root, settings("inc"), settings("ref")


def _step(spark, lakes, as_of):
    _, inc, ref = lakes
    got = pipelines.run_build(spark, inc, as_of)
    pipelines.run_build(spark, ref, as_of, full_refresh=True)
    _assert_same(spark, inc, ref, as_of)
    return got


def test_incremental_builds_equal_full_rebuilds(spark, lakes):
    root, _, _ = lakes
    orders = str(root / "orders")
    first = _step(spark, lakes, D1)
    assert first.mode == "full"

    # A new day of orders, one of them a replay of an order already ingested (the same row: a duplicate).
    _append(
        spark,
        orders,
        [
            order_row("o12", "c1", "2026-07-01T09:00:00", "70.00", channel="app"),
            order_row("o13", "c8", "2026-07-01T11:00:00", "35.00"),
            order_row("o3", "c2", "2026-06-01T12:00:00", "80.00"),
        ],
    )
    second = _step(spark, lakes, D1 + dt.timedelta(days=1))
    assert (second.mode, second.rows_read, second.reasons.get("duplicate_order")) == ("incremental", 3, 1)
    assert second.state.startswith("advanced")

    # The build skipped for nine days: o9 (2025-07-05) leaves the 365-day window, o11 (07-01) is long in.
    _append(
        spark,
        orders,
        [
            order_row("o15", "c3", "2026-07-05T08:00:00", "22.00", channel="app"),
            order_row("o16", "c9", "2026-07-09T08:00:00", "18.00", channel="store", category="home"),
        ],
    )
    third = _step(spark, lakes, D1 + dt.timedelta(days=10))
    assert (third.mode, third.rows_read) == ("incremental", 2)
    assert third.state.startswith("advanced")

    # A late order for a day before c2's last purchase: ingested incrementally, the state aggregated again.
    _append(spark, orders, [order_row("o14", "c2", "2026-05-20T08:00:00", "15.00")])
    fourth = _step(spark, lakes, D1 + dt.timedelta(days=11))
    assert fourth.mode == "incremental" and "late orders" in fourth.state


def test_what_cannot_be_applied_incrementally_reingests_with_its_reason(spark, lakes):
    """After the equivalence history: each change that invalidates the clean layer is detected before anything is
    written (the decision alone is checked here; a full ingestion is what the reference lake does every time)."""
    from delta.tables import DeltaTable

    from segmentation.pipelines import ingest
    from segmentation.runs import JobRun

    root, inc, _ = lakes
    orders, as_of = str(root / "orders"), D1 + dt.timedelta(days=12)

    def decide():
        run = JobRun(spark, inc, "build", as_of)
        ingested = ingest.ingest(run)
        run.release()
        return ingested.mode, ingested.reason

    assert decide()[0] == "incremental"
    # A copy of o1 that differs (an earlier timestamp): the duplicate rule must see both copies.
    _append(spark, orders, [order_row("o1", "c1", "2026-06-28T10:00:00", "100.00")])
    mode, reason = decide()
    assert mode == "full" and "differs" in reason
    # A row of the input is deleted.
    DeltaTable.forPath(spark, orders).delete(F.col("order_id") == "o13")
    mode, reason = decide()
    assert mode == "full" and "removed" in reason
    # The identity map changes.
    spark.createDataFrame(
        [("web", "c6", "u6"), ("web", "c5", "u6")], "channel string, channel_customer_id string, customer_id string"
    ).write.format("delta").mode("overwrite").save(str(root / "identity"))
    mode, reason = decide()
    assert mode == "full" and "identity" in reason
    # A full refresh on request.
    run = JobRun(spark, inc, "build", as_of)
    assert ingest.ingest(run, full_refresh=True).mode == "full"
    run.release()
    # Built after all three changes: the daily lake re-ingests (the last reason it finds) and equals the full rebuild.
    rebuilt = _step(spark, lakes, as_of)
    assert rebuilt.mode == "full" and rebuilt.state.startswith("aggregated")


def test_backfills_equal_builds_on_the_history_cut_at_their_date(spark, conf_dir, tmp_path_factory):
    from segmentation.config import load_settings

    root = tmp_path_factory.mktemp("backfill")
    rows = _history()
    spark.createDataFrame(rows, ORDER_COLUMNS).write.format("delta").save(str(root / "orders"))

    def settings(orders, out):
        return load_settings(
            [conf_dir / "local.yaml"],
            [
                f"inputs.orders.path={orders}",
                "inputs.identity_map=null",
                "inputs.profiles=null",
                f"outputs.path={out}",
                "spark.master=local[2]",
                "quality.max_rejected_share=1",
            ],
        )

    history = settings(root / "orders", root / "out")
    latest = pipelines.run_build(spark, history, dt.date(2026, 7, 2))
    assert latest.mode == "full"
    # Newest first, so no backfill has an earlier snapshot (tier state and migration then start afresh, as in a cut).
    for as_of in (dt.date(2026, 6, 30), dt.date(2026, 6, 1), dt.date(2026, 3, 31)):
        past = pipelines.run_build(spark, history, as_of)
        assert past.mode == "incremental" and "backfill" in past.state
        cut_rows = [r for r in rows if r[3] < dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())]
        cut_path = root / f"cut_{as_of}"
        spark.createDataFrame(cut_rows, ORDER_COLUMNS).write.format("delta").save(str(cut_path))
        cut = settings(cut_path, root / f"out_{as_of}")
        pipelines.run_build(spark, cut, as_of)
        for table in ("customer_features", "customer_segments", "segment_summary", "customer_tags"):
            got = io.read_output(spark, history.outputs.table_path(table), as_of).drop("run_id")
            want = io.read_output(spark, cut.outputs.table_path(table), as_of).drop("run_id")
            assertDataFrameEqual(got, want, checkRowOrder=False)
