"""One as-of date built, rebuilt, refused, crashed and recovered, against real Spark and Delta.

The scenario runs once per module (builds are the expensive part); each test asserts one promise on what it left:
valid + rejected = input with every kind of bad row, FX conversion before aggregates, a refused run that writes
nothing, an identical rerun, a crash that leaves the previous versions readable and no complete manifest row, a rerun
that completes it, delta-rs reading every table and the change feed, and constraints that stop a bad write.
"""

from __future__ import annotations

from decimal import Decimal

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation import io, pipelines
from segmentation.config import load_settings
from segmentation.errors import InputError
from segmentation.runs import JobRun
from tests.conftest import ORDER_COLUMNS, order_row
from tests.reliability.data import AS_OF, EXCLUSION_COLUMNS, FX_COLUMNS, fx_rows, good_rows

# Four builds share one scenario; on a busy two-core machine its setup alone can pass the default 900 s timeout.
pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

BAD_ROWS = [
    # (row, expected reason); None = valid
    (order_row("o20", "c6", "2026-06-10T10:00:00", "10.00", currency="USD"), None),  # 7.2 from 06-01: 72.00
    (order_row("o21", "c6", "2025-12-31T10:00:00", "10.00", currency="USD"), "missing_fx_rate"),  # before any rate
    (order_row("o22", "c7", "2026-06-20T00:00:00", "20.00", currency="EUR", discount="1.00"), None),  # 156.00
    (order_row("o23", "c7", "2026-06-14T00:00:00", "5.00", currency="EUR"), "missing_fx_rate"),
    (order_row("o24", "c8", "2026-06-14T00:00:00", "5.00", currency="GBP"), "missing_fx_rate"),  # accepted, no rate
    (order_row("o30", None, "2026-06-01T00:00:00", "5.00"), "guest_order"),
    (order_row("o31", "\u3000", "2026-06-01T00:00:00", "5.00"), "guest_order"),  # an ideographic space is blank
    (order_row("o32", "c9", "2026-06-01T00:00:00", None), "invalid_amount"),
    (order_row("o33", "c9", "2026-06-01T00:00:00", "0.00"), "invalid_amount"),
    (order_row("o34", "c9", "2026-06-01T00:00:00", "-5.00"), "invalid_amount"),
    (order_row("o35", "c9", "2026-06-01T00:00:00", "5.00", currency="JPY"), "unknown_currency"),
    (order_row("o36", "c9", "2126-07-01T00:00:00", "5.00"), "future_order_ts"),  # after its file was written
    (order_row("o37", "staff1", "2026-06-01T00:00:00", "5.00", channel="store"), "excluded_customer"),
    (order_row("o38", "t9", "2026-06-01T00:00:00", "5.00", channel="app"), "excluded_customer"),
    (order_row("o39", "t9", "2026-06-01T00:00:00", "5.00", channel="web"), None),  # excluded on app only
    (order_row("", "c10", "2026-06-01T00:00:00", "5.00"), "missing_order_id"),
    (order_row("o41", "c10", "2026-06-01T00:00:00", "5.00", status="pending"), "unknown_status"),
    (order_row("o42", "c10", "2026-06-01T00:00:00", "5.00", discount="-1.00"), "invalid_discount"),
]
EXCLUSIONS = [("staff1", None, "staff"), ("t9", "app", "test account")]
TABLES = (
    "orders_rejected",
    "customer_features",
    "customer_segments",
    "segment_summary",
    "segment_migration",
    "customer_tags",
    "campaign_audiences",
)


def second_file(rows):
    """A second delivery appended to the table: exact replays of o1 and o3, and one new order."""
    return [rows[0], rows[2], order_row("o50", "c10", "2026-06-25T00:00:00", "60.00")]


def slice_at(spark, path, version):
    return spark.read.format("delta").option("versionAsOf", version).load(path).where(F.col("as_of_date") == AS_OF)


def output_versions(spark, settings):
    return {t: io.table_version(spark, settings.outputs.table_path(t)) for t in (*TABLES, "segment_runs")}


@pytest.fixture(scope="module")
def scenario(spark, conf_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("reliability")
    orders_path = str(lake / "orders")
    overrides = [
        f"inputs.orders.path={orders_path}",
        "inputs.identity_map=null",
        "inputs.profiles=null",
        f"inputs.fx_rates.path={lake / 'fx_rates'}",
        f"inputs.exclusions.path={lake / 'exclusions'}",
        f"outputs.path={lake / 'out'}",
        "spark.master=local[2]",
        "quality.currencies=[CNY,USD,EUR,GBP]",
        "quality.max_rejected_share=0.6",
    ]
    settings = load_settings([conf_dir / "local.yaml"], overrides)
    good = good_rows(order_row)
    spark.createDataFrame([*good, *[r for r, _ in BAD_ROWS]], ORDER_COLUMNS).write.format("delta").save(orders_path)
    spark.createDataFrame(second_file(good), ORDER_COLUMNS).write.format("delta").mode("append").save(orders_path)
    spark.createDataFrame(fx_rows(), FX_COLUMNS).write.format("delta").save(str(lake / "fx_rates"))
    spark.createDataFrame(EXCLUSIONS, EXCLUSION_COLUMNS).write.format("delta").save(str(lake / "exclusions"))

    out = {"settings": settings}
    out["first"] = pipelines.run_build(spark, settings, AS_OF)
    out["rerun"] = pipelines.run_build(spark, settings, AS_OF)

    strict = load_settings([conf_dir / "local.yaml"], [*overrides, "quality.max_rejected_share=0.5"])
    out["versions_before_refusal"] = output_versions(spark, settings)
    with pytest.raises(InputError) as refused:
        pipelines.run_build(spark, strict, AS_OF)
    out["refusal"] = str(refused.value)
    out["versions_after_refusal"] = output_versions(spark, settings)

    late_order = order_row("o51", "c1", "2026-06-30T08:00:00", "25.00")
    spark.createDataFrame([late_order], ORDER_COLUMNS).write.format("delta").mode("append").save(orders_path)
    real_write = io.write_snapshot

    def crash_before_segments(df, path, as_of, **options):
        if path.endswith("customer_segments"):
            raise RuntimeError("injected failure before customer_segments")
        return real_write(df, path, as_of, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(io, "write_snapshot", crash_before_segments)
        with pytest.raises(RuntimeError, match="injected failure") as crashed:
            pipelines.run_build(spark, settings, AS_OF)
    out["crash"] = str(crashed.value)
    out["versions_after_crash"] = output_versions(spark, settings)
    out["runs_after_crash"] = [
        r.asDict() for r in spark.read.format("delta").load(settings.outputs.table_path("segment_runs")).collect()
    ]
    out["features_read_after_crash"] = io.read_complete_snapshot(
        spark,
        settings.outputs.table_path("segment_runs"),
        "customer_features",
        settings.outputs.table_path("customer_features"),
        AS_OF,
    ).collect()
    out["recovered"] = pipelines.run_build(spark, settings, AS_OF)
    return out


def test_valid_plus_rejected_is_the_input_with_every_kind_of_bad_row(spark, scenario):
    first = scenario["first"]
    settings = scenario["settings"]
    rejected = slice_at(spark, settings.outputs.table_path("orders_rejected"), first.versions["orders_rejected"])
    got = sorted((r["order_id"], r["channel"], r["reject_reason"], r["run_id"]) for r in rejected.collect())
    expected = sorted(
        [(r[0], r[1], reason, first.run_id) for r, reason in BAD_ROWS if reason is not None]
        + [("o1", "web", "duplicate_order", first.run_id), ("o3", "web", "duplicate_order", first.run_id)]
    )
    assert got == expected
    assert first.input_rows == 8 + len(BAD_ROWS) + 3 == 29
    assert first.valid_rows + len(got) == first.input_rows
    assert first.reasons == {
        "missing_fx_rate": 3,
        "guest_order": 2,
        "invalid_amount": 3,
        "unknown_currency": 1,
        "future_order_ts": 1,
        "excluded_customer": 2,
        "missing_order_id": 1,
        "unknown_status": 1,
        "invalid_discount": 1,
        "duplicate_order": 2,
    }
    assert first.input_versions == {"orders": 1, "identity_map": None, "fx_rates": 0, "exclusions": 0}


def test_foreign_amounts_are_converted_before_aggregates(spark, scenario):
    first, settings = scenario["first"], scenario["settings"]
    features = slice_at(spark, settings.outputs.table_path("customer_features"), first.versions["customer_features"])
    rows = {r["customer_id"]: r for r in features.where(F.col("customer_id").isin("c6", "c7", "c1")).collect()}
    assert rows["c6"]["monetary"] == Decimal("72.00")  # 10 USD at the 06-01 rate 7.2, not 10 and not 70
    assert rows["c7"]["monetary"] == Decimal("156.00")  # 20 EUR at 7.8
    assert rows["c7"]["discount_share"] == pytest.approx(7.80 / (7.80 + 156.00))
    assert rows["c1"]["monetary"] == Decimal("150.00")  # the replayed o1 counts once
    assert "c9" not in {r["customer_id"] for r in features.collect()}  # only rejected orders


def test_above_the_rejected_share_the_run_fails_and_writes_nothing(scenario):
    assert scenario["refusal"] == (
        "13 of 25 order rows (52.00%) are invalid (2 excluded rows, 2 guest orders not counted), above "
        "quality.max_rejected_share=50.00%; no output was written. Reasons: duplicate_order=2, excluded_customer=2, "
        "future_order_ts=1, guest_order=2, invalid_amount=3, invalid_discount=1, "
        "missing_fx_rate=3, missing_order_id=1, unknown_currency=1, unknown_status=1"
    )
    assert scenario["versions_after_refusal"] == scenario["versions_before_refusal"]


def test_a_rerun_of_the_same_date_leaves_identical_rows(spark, scenario):
    first, rerun, settings = scenario["first"], scenario["rerun"], scenario["settings"]
    assert rerun.run_id == first.run_id
    for table in TABLES:
        path = settings.outputs.table_path(table)
        assert rerun.versions[table] >= first.versions[table], table
        assertDataFrameEqual(slice_at(spark, path, rerun.versions[table]), slice_at(spark, path, first.versions[table]))
    segments = slice_at(spark, settings.outputs.table_path("customer_segments"), rerun.versions["customer_segments"])
    assert segments.count() == segments.select("customer_id").distinct().count() == first.customers == 9


def test_a_crash_leaves_previous_versions_readable_and_no_complete_row(spark, scenario):
    rerun, settings = scenario["rerun"], scenario["settings"]
    before, after = scenario["versions_before_refusal"], scenario["versions_after_crash"]
    assert scenario["crash"] == "injected failure before customer_segments"
    # written before the failure: new versions; from the failure on: untouched
    assert after["orders_rejected"] == before["orders_rejected"] + 1
    assert after["customer_features"] == before["customer_features"] + 1
    for table in ("customer_segments", "segment_summary", "segment_migration", "customer_tags", "campaign_audiences"):
        assert after[table] == before[table], table
    crash_runs = [r for r in scenario["runs_after_crash"] if r["run_id"] != rerun.run_id]
    assert [(r["status"], r["job"], r["as_of_date"]) for r in crash_runs] == [("failed", "build", AS_OF)]
    assert crash_runs[0]["message"] == "RuntimeError: injected failure before customer_segments"
    # a reader that follows the manifest still gets the last complete snapshot, not the half-written one
    path = settings.outputs.table_path("customer_features")
    complete = slice_at(spark, path, rerun.versions["customer_features"])
    assertDataFrameEqual(spark.createDataFrame(scenario["features_read_after_crash"], complete.schema), complete)
    for table in TABLES:  # every table readable at the version the last complete run recorded
        slice_at(spark, settings.outputs.table_path(table), rerun.versions[table]).count()


def test_a_rerun_after_the_crash_completes_the_snapshot(spark, scenario):
    settings, recovered = scenario["settings"], scenario["recovered"]
    manifest = settings.outputs.table_path("segment_runs")
    runs = spark.read.format("delta").load(manifest).where(F.col("run_id") == recovered.run_id)
    assert sorted(r["status"] for r in runs.collect()) == ["complete", "failed"]
    assert io.complete_as_of_dates(spark, manifest) == [AS_OF]
    latest = io.complete_runs(spark, manifest).collect()
    assert [(r["run_id"], r["table_versions"]) for r in latest] == [
        (recovered.run_id, {k: v for k, v in recovered.versions.items() if k != "segment_runs"})
    ]
    features = io.read_complete_snapshot(
        spark, manifest, "customer_features", settings.outputs.table_path("customer_features"), AS_OF
    )
    c1 = features.where(F.col("customer_id") == "c1").first()
    assert (c1["orders_total"], c1["monetary"]) == (3, Decimal("175.00"))


def test_delta_rs_reads_every_output_table_and_the_change_feed(spark, scenario):
    import pyarrow as pa
    from deltalake import DeltaTable

    settings, rerun, recovered = scenario["settings"], scenario["rerun"], scenario["recovered"]
    for table in (*TABLES, "segment_runs"):
        path = settings.outputs.table_path(table)
        dt_table = DeltaTable(path)
        assert dt_table.protocol().min_reader_version == 1, table
        arrow = dt_table.to_pyarrow_table()
        assert arrow.num_rows == spark.read.format("delta").load(path).count(), table
    segments_path = settings.outputs.table_path("customer_segments")
    start = rerun.versions["customer_segments"] + 1
    changes = pa.table(DeltaTable(segments_path).load_cdf(starting_version=start).read_all()).to_pylist()
    by_type = {kind: [r for r in changes if r["_change_type"] == kind] for kind in ("insert", "delete")}
    assert {r["_change_type"] for r in changes} == {"insert", "delete"}
    assert {r["run_id"] for r in by_type["delete"]} == {rerun.run_id}
    assert {r["run_id"] for r in by_type["insert"]} == {recovered.run_id}
    inserted = {r["customer_id"]: r for r in by_type["insert"]}
    assert len(inserted) == len(by_type["insert"]) == len(by_type["delete"]) == recovered.customers
    assert inserted["c1"]["frequency"] == 3


def test_output_constraints_stop_a_bad_write(spark, scenario):
    settings, recovered = scenario["settings"], scenario["recovered"]
    segments_path = settings.outputs.table_path("customer_segments")
    version = io.table_version(spark, segments_path)
    bad_scores = io.read_output(spark, segments_path, AS_OF).withColumn(
        "r_score", F.when(F.col("customer_id") == "c1", F.lit(9)).otherwise(F.col("r_score"))
    )
    run = JobRun(spark, settings, "build", AS_OF)
    run.begin({})
    with pytest.raises(Exception, match="r_score_range"):
        run.write("customer_segments", bad_scores)
    audiences_path = settings.outputs.table_path("campaign_audiences")
    audiences = io.read_output(spark, audiences_path, AS_OF)
    bad_arm = audiences.limit(1).withColumn("arm", F.lit("maybe"))
    with pytest.raises(Exception, match="arm_values"):
        run.write("campaign_audiences", bad_arm)
    missing_id = io.read_output(spark, segments_path, AS_OF).withColumn("customer_id", F.lit(None).cast("string"))
    with pytest.raises(Exception, match="NOT NULL constraint violated for column: customer_id"):
        run.write("customer_segments", missing_id)
    assert io.table_version(spark, segments_path) == version
    assert io.table_version(spark, audiences_path) == recovered.versions["campaign_audiences"]
