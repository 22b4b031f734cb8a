"""Row validation: each bad row gets exactly one reason; valid + rejected = input."""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.transforms import quality
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)


@pytest.fixture(params=["window", "broadcast keys"])
def tagged(request, spark, settings_for):
    """The same rows tagged both ways duplicates can be ranked: every row through the window, or only the rows
    whose key repeats (the repeated keys broadcast)."""
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o2", None, "2026-06-01T10:00:00", 10),  # null customer
        order_row("o3", "   ", "2026-06-01T10:00:00", 10),  # blank customer
        order_row("o4", "c2", "2026-06-01T10:00:00", None),  # null amount
        order_row("o5", "c2", "2026-06-01T10:00:00", -5),  # negative amount
        order_row("o6", "c2", "2026-06-01T10:00:00", 0),  # zero amount
        order_row("o7", "c2", "2026-06-01T10:00:00", 10, currency="XXX"),
        order_row("o8", "c2", "2026-06-30T23:59:59", 10),  # last second of the as-of day: valid
        order_row("o9", "c2", "2026-07-01T00:00:00", 10),  # first second after: future
        order_row("o10", "c3", "2026-06-02T00:00:00", 20),
        order_row("o10", "c3", "2026-06-02T00:00:00", 20),  # exact replay
        order_row("o10", "c3", "2026-06-02T00:00:00", 20, channel="app"),  # same id, other channel: distinct order
        order_row("o11", "c3", "2026-06-02T00:00:00", 20, status="lost"),
        order_row(None, "c3", "2026-06-02T00:00:00", 20),  # missing order id
        order_row("o12", "c3", "2026-06-03T00:00:00", 20, status=" Refunded "),  # normalised, valid
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    keys_df = quality.duplicate_keys(orders_df) if request.param == "broadcast keys" else None
    return quality.with_reject_reason(orders_df, AS_OF, settings_for().quality, duplicate_keys_df=keys_df)


def test_reason_per_row(tagged, spark):
    actual = tagged.select("order_id", "channel", "customer_id", quality.REASON)
    expected = spark.createDataFrame(
        [
            ("o1", "web", "c1", None),
            ("o2", "web", None, "missing_customer_id"),
            ("o3", "web", "   ", "missing_customer_id"),
            ("o4", "web", "c2", "invalid_amount"),
            ("o5", "web", "c2", "invalid_amount"),
            ("o6", "web", "c2", "invalid_amount"),
            ("o7", "web", "c2", "unknown_currency"),
            ("o8", "web", "c2", None),
            ("o9", "web", "c2", "future_order_ts"),
            ("o10", "web", "c3", None),
            ("o10", "web", "c3", "duplicate_order"),
            ("o10", "app", "c3", None),
            ("o11", "web", "c3", "unknown_status"),
            (None, "web", "c3", "missing_order_id"),
            ("o12", "web", "c3", None),
        ],
        "order_id string, channel string, customer_id string, reject_reason string",
    )
    assertDataFrameEqual(actual, expected)


def test_valid_plus_rejected_is_input(tagged):
    valid = quality.valid_orders(tagged)
    rejected = quality.rejected_orders(tagged, AS_OF, "run-1")
    assert valid.count() + rejected.count() == tagged.count() == 15
    assert valid.count() == 5
    assert rejected.select(F.countDistinct("run_id"), F.min("as_of_date")).first() == (1, AS_OF)
    assert valid.where(F.col("order_id") == "o12").select("status").first()[0] == "refunded"


def test_zero_amount_accepted_when_configured(spark, settings_for):
    df = spark.createDataFrame([order_row("o1", "c1", "2026-06-01T00:00:00", 0)], ORDER_COLUMNS)
    tagged = quality.with_reject_reason(df, AS_OF, settings_for("quality.allow_zero_amount=true").quality)
    assert tagged.select(quality.REASON).first()[0] is None


def test_duplicate_keys_are_the_repeated_order_keys_only(spark):
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10, channel="app"),
        order_row("o2", "c2", "2026-06-01T10:00:00", 10),
        order_row("o3", "c2", "2026-06-01T10:00:00", 10),
        order_row("o3", "c9", "2026-06-02T10:00:00", 99),  # same key, other content: still a repeat
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    keys = {r[0] for r in quality.duplicate_keys(orders_df).collect()}
    hashes = {
        (r["channel"], r["order_id"]): r[quality.KEY_HASH]
        for r in orders_df.select("channel", "order_id", quality.order_key_hash()).collect()
    }
    assert keys == {hashes[("web", "o1")], hashes[("web", "o3")]}


def test_conflicting_versions_keep_the_earliest_either_way(spark, settings_for):
    rows = [
        order_row("o1", "c1", "2026-06-03T10:00:00", 30),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o1", "c1", "2026-06-02T10:00:00", 20),
        order_row("o2", "c2", "2026-06-02T10:00:00", 20),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    q = settings_for().quality
    kept = {
        way: sorted(
            (r["order_id"], float(r["amount"]))
            for r in quality.valid_orders(quality.with_reject_reason(orders_df, AS_OF, q, duplicate_keys_df=keys))
            .select("order_id", "amount")
            .collect()
        )
        for way, keys in (("window", None), ("broadcast", quality.duplicate_keys(orders_df)))
    }
    assert kept["window"] == kept["broadcast"] == [("o1", 10.0), ("o2", 20.0)]


def test_a_key_wrongly_flagged_as_repeated_still_ranks_first(spark, settings_for):
    """Two different keys with one hash only make extra candidates: the ranking window uses the real key."""
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10),
        order_row("o2", "c2", "2026-06-01T10:00:00", 20),
        order_row("o2", "c2", "2026-06-01T10:00:00", 20, channel="app"),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    flagged_too = orders_df.where("order_id = 'o2'").select(quality.order_key_hash())
    keys_df = quality.duplicate_keys(orders_df).unionByName(flagged_too)
    tagged = quality.with_reject_reason(orders_df, AS_OF, settings_for().quality, duplicate_keys_df=keys_df)
    reasons = sorted((r["channel"], r["order_id"], r[quality.REASON] or "") for r in tagged.collect())
    assert reasons == [("app", "o2", ""), ("web", "o1", ""), ("web", "o1", "duplicate_order"), ("web", "o2", "")]
