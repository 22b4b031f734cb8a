"""FX conversion and exclusion matching as pure transforms: exact values on hand-made rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.transforms import currency, quality
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = [pytest.mark.spark]

TAGGED_COLUMNS = ORDER_COLUMNS + ", reject_reason string"
FX_COLUMNS = "currency string, rate_date date, rate_to_reporting decimal(18,8)"


def tagged(spark, rows):
    return spark.createDataFrame([(*r[0], r[1]) for r in rows], TAGGED_COLUMNS)


def test_amounts_use_the_latest_rate_on_or_before_the_order_day(spark):
    fx_df = spark.createDataFrame(
        [
            ("USD", dt.date(2026, 1, 1), Decimal("7.0")),
            ("USD", dt.date(2026, 6, 1), Decimal("7.2")),
            ("USD", dt.date(2026, 6, 1), Decimal("7.1")),  # tie on the same date: the larger rate, every run
            ("EUR", dt.date(2026, 6, 15), Decimal("7.8")),
            ("EUR", dt.date(2026, 6, 16), None),  # a null rate is no rate
        ],
        FX_COLUMNS,
    )
    tagged_df = tagged(
        spark,
        [
            (order_row("u1", "c1", "2026-05-31T23:59:59", "10.00", currency="USD", discount="1.00"), None),
            (order_row("u2", "c1", "2026-06-01T00:00:00", "10.00", currency="usd", discount="1.00"), None),
            (order_row("u3", "c2", "2025-12-31T12:00:00", "10.00", currency="USD"), None),  # before any rate
            (order_row("e1", "c2", "2026-06-20T08:00:00", "3.33", currency="EUR"), None),  # 25.974 -> 25.97
            (order_row("g1", "c3", "2026-06-20T08:00:00", "5.00", currency="GBP"), None),  # no GBP rate at all
            (order_row("r1", "c3", "2026-06-20T08:00:00", "5.00", currency="CNY"), None),  # reporting: no rate needed
            (order_row("x1", None, "2026-06-20T08:00:00", "-5.00", currency="USD"), "guest_order"),
        ],
    )
    result = currency.with_reporting_currency(tagged_df, fx_df, "CNY")
    expected = tagged(
        spark,
        [
            (order_row("u1", "c1", "2026-05-31T23:59:59", "70.00", currency="CNY", discount="7.00"), None),
            (order_row("u2", "c1", "2026-06-01T00:00:00", "72.00", currency="CNY", discount="7.20"), None),
            (order_row("u3", "c2", "2025-12-31T12:00:00", "10.00", currency="USD"), "missing_fx_rate"),
            (order_row("e1", "c2", "2026-06-20T08:00:00", "25.97", currency="CNY"), None),
            (order_row("g1", "c3", "2026-06-20T08:00:00", "5.00", currency="GBP"), "missing_fx_rate"),
            (order_row("r1", "c3", "2026-06-20T08:00:00", "5.00", currency="CNY"), None),
            (order_row("x1", None, "2026-06-20T08:00:00", "-5.00", currency="USD"), "guest_order"),
        ],
    )
    assertDataFrameEqual(result, expected)


def test_without_an_fx_table_foreign_orders_are_rejected_never_summed_at_par(spark):
    tagged_df = tagged(
        spark,
        [
            (order_row("u1", "c1", "2026-06-01T00:00:00", "10.00", currency="USD"), None),
            (order_row("r1", "c1", "2026-06-01T00:00:00", "10.00", currency="CNY"), None),
        ],
    )
    result = currency.with_reporting_currency(tagged_df, None, "CNY")
    assert sorted((r["order_id"], r["reject_reason"]) for r in result.collect()) == [
        ("r1", None),
        ("u1", "missing_fx_rate"),
    ]


def test_exclusions_match_channel_ids_and_unified_ids(spark, settings_for):
    exclusions_df = spark.createDataFrame(
        [("staff1", None, "staff"), ("T9", "app", "test account"), ("U1", None, "staff"), (" ", None, "blank")],
        "customer_id string, channel string, reason string",
    )
    identity_df = spark.createDataFrame(
        [("web", "W1", "U1"), ("app", "A1", "U1"), ("web", "W2", "U2")],
        "channel string, channel_customer_id string, customer_id string",
    )
    orders_df = spark.createDataFrame(
        [
            order_row("o1", "staff1", "2026-06-01T00:00:00", "1.00", channel="store"),  # any channel
            order_row("o2", "T9", "2026-06-01T00:00:00", "1.00", channel="app"),  # listed channel
            order_row("o3", "T9", "2026-06-01T00:00:00", "1.00", channel="web"),  # other channel: kept
            order_row("o4", "W1", "2026-06-01T00:00:00", "1.00", channel="web"),  # maps to excluded U1
            order_row("o5", "A1", "2026-06-01T00:00:00", "1.00", channel="app"),  # maps to excluded U1
            order_row("o6", "W2", "2026-06-01T00:00:00", "1.00", channel="web"),  # maps to U2: kept
            order_row("o7", None, "2026-06-01T00:00:00", "1.00"),  # null id: its own reason
        ],
        ORDER_COLUMNS,
    )
    keys_df = quality.exclusion_keys(exclusions_df, identity_df)
    result = quality.with_reject_reason(orders_df, dt.date(2026, 6, 30), settings_for().quality, keys_df)
    assert sorted((r["order_id"], r["reject_reason"]) for r in result.collect()) == [
        ("o1", "excluded_customer"),
        ("o2", "excluded_customer"),
        ("o3", None),
        ("o4", "excluded_customer"),
        ("o5", "excluded_customer"),
        ("o6", None),
        ("o7", "guest_order"),
    ]
