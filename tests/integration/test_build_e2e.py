"""The generate and build jobs end to end on a small synthetic history, read back with delta-rs.

delta-rs (``deltalake``) is what non-Spark downstream readers use, so the checks read the tables with it.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from segmentation import pipelines
from segmentation.config import load_settings

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e]

AS_OF = dt.date(2026, 6, 30)


@pytest.fixture(scope="module")
def built(spark, conf_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("e2e")
    settings = load_settings(
        [conf_dir / "local.yaml"],
        [
            f"inputs.orders.path={lake / 'orders'}",
            f"inputs.identity_map.path={lake / 'identity_map'}",
            f"inputs.profiles.path={lake / 'profiles'}",
            f"outputs.path={lake / 'out'}",
            "generate.customers=3000",
            "generate.orders=30000",
            "generate.customers_per_partition=1000",
            "generate.dirty_share=0.01",
        ],
    )
    pipelines.run_generate(spark, settings, AS_OF)
    first = pipelines.run_build(spark, settings, AS_OF)
    return settings, first


def table(settings, name) -> DeltaTable:
    return DeltaTable(settings.outputs.table_path(name))


def slice_of(settings, name):
    return table(settings, name).to_pyarrow_table(filters=[("as_of_date", "=", AS_OF)])


def test_input_rows_are_valid_plus_rejected(built):
    settings, result = built
    input_rows = DeltaTable(settings.inputs.orders.path).to_pyarrow_table(columns=["order_id"]).num_rows
    rejected = slice_of(settings, "orders_rejected")
    assert result.input_rows == input_rows
    assert result.valid_rows + rejected.num_rows == input_rows
    assert rejected.num_rows == result.rejected_rows > 0
    assert set(pc.unique(rejected["reject_reason"]).to_pylist()) >= {
        "guest_order",
        "invalid_amount",
        "duplicate_order",
        "future_order_ts",
        "unknown_currency",
    }


def test_one_row_per_customer_scores_in_range_no_null_segment(built):
    settings, result = built
    segments = slice_of(settings, "customer_segments")
    purchasers = (
        segments.filter(pc.greater(segments["frequency"], 0)) if "frequency" in segments.column_names else segments
    )
    ids = segments["customer_id"]
    assert len(ids) == len(pc.unique(ids)), "customer_id must be unique per as-of date"
    features = slice_of(settings, "customer_features")
    assert set(features["customer_id"].to_pylist()) <= set(ids.to_pylist())
    assert purchasers.num_rows == result.customers == features.num_rows
    for column in ("rfm_segment", "lifecycle_stage", "membership_tier", "value_class"):
        assert segments[column].null_count == 0, column
    for column in ("r_score", "f_score", "m_score"):
        values = purchasers[column]
        assert values.null_count == 0
        assert pc.min(values).as_py() >= 1 and pc.max(values).as_py() <= 5


@pytest.mark.parametrize("column", ["r_score", "m_score"])
def test_quantile_buckets_hold_a_fifth_each(built, column):
    # recency (days) and monetary (cents) are nearly tie-free at this size; frequency is tied by nature
    settings, _ = built
    segments = slice_of(settings, "customer_segments")
    scored = segments.filter(pc.is_valid(segments[column]))
    counts = pc.value_counts(scored[column]).to_pylist()
    shares = {c["values"]: c["counts"] / scored.num_rows for c in counts}
    assert set(shares) == {1, 2, 3, 4, 5}
    for score, share in shares.items():
        assert share == pytest.approx(0.2, abs=0.02), (column, score, share)


def test_summary_matches_segments(built):
    settings, _ = built
    summary = slice_of(settings, "segment_summary").to_pylist()
    segments = slice_of(settings, "customer_segments")
    rfm = {r["segment"]: r["customers"] for r in summary if r["dimension"] == "rfm_segment"}
    counted = {c["values"]: c["counts"] for c in pc.value_counts(segments["rfm_segment"]).to_pylist()}
    assert rfm == counted
    shares = [r["share"] for r in summary if r["dimension"] == "rfm_segment"]
    assert sum(shares) == pytest.approx(1.0)


def test_rerun_same_as_of_changes_nothing(built, spark):
    settings, first = built
    before = {n: slice_of(settings, n).sort_by([("customer_id", "ascending")]) for n in ("customer_segments",)}
    features_before = slice_of(settings, "customer_features").sort_by([("customer_id", "ascending")])
    second = pipelines.run_build(spark, settings, AS_OF)
    assert second.run_id == first.run_id
    after = slice_of(settings, "customer_segments").sort_by([("customer_id", "ascending")])
    assert after.equals(before["customer_segments"])
    assert slice_of(settings, "customer_features").sort_by([("customer_id", "ascending")]).equals(features_before)
    rejected = slice_of(settings, "orders_rejected")
    assert rejected.num_rows == first.rejected_rows


def test_ranking_every_row_gives_the_same_outputs(built, spark, tmp_path):
    """Above ``quality.broadcast_duplicate_keys_max`` duplicates are ranked by a window over every order row instead
    of over the repeated keys only: a speed choice, so every output must be the same."""
    settings, first = built
    windowed = settings.model_copy(
        update={
            "quality": settings.quality.model_copy(update={"broadcast_duplicate_keys_max": 0}),
            "outputs": settings.outputs.model_copy(update={"path": str(tmp_path / "out")}),
        }
    )
    second = pipelines.run_build(spark, windowed, AS_OF)
    assert (second.valid_rows, second.rejected_rows, second.reasons) == (
        first.valid_rows,
        first.rejected_rows,
        first.reasons,
    )
    keys = {
        "customer_features": [("customer_id", "ascending")],
        "customer_segments": [("customer_id", "ascending")],
        "orders_rejected": [
            (c, "ascending") for c in ("channel", "order_id", "reject_reason", "order_ts", "customer_id", "amount")
        ],
    }
    for name, order in keys.items():
        a = slice_of(settings, name).sort_by(order)
        b = slice_of(windowed, name).sort_by(order)
        columns = [c for c in a.column_names if c != "run_id"]
        assert a.select(columns).equals(b.select(columns)), name
