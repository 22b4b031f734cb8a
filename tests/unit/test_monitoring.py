"""Segment migration between two snapshots and share warnings on the summary."""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.config import MonitoringSettings
from segmentation.transforms.monitoring import segment_migration, with_share_warnings

pytestmark = pytest.mark.spark

PREV, CUR = dt.date(2026, 5, 31), dt.date(2026, 6, 30)
SEGMENTS_DDL = "customer_id string, rfm_segment string, membership_tier string"


def test_migration_counts_add_up(spark):
    previous = spark.createDataFrame(
        [
            ("a", "champions", "premium"),
            ("b", "champions", "premium"),  # a tie with a: same move
            ("c", "at_risk", "growth"),
            ("d", "loyal", "growth"),
            ("gone", "hibernating", "registered"),
            ("nulls", None, None),
        ],
        SEGMENTS_DDL,
    )
    current = spark.createDataFrame(
        [
            ("a", "loyal", "premium"),
            ("b", "loyal", "premium"),
            ("c", "at_risk", "high_value"),
            ("d", "loyal", "growth"),
            ("nulls", None, None),
            ("new", "one_time", "growth"),
        ],
        SEGMENTS_DDL,
    )
    actual = segment_migration(current, previous, ["rfm_segment", "membership_tier"], CUR, PREV, "run")
    expected = spark.createDataFrame(
        [
            (CUR, PREV, "rfm_segment", "champions", "loyal", "moved", 2, "run"),
            (CUR, PREV, "rfm_segment", "at_risk", "at_risk", "stayed", 1, "run"),
            (CUR, PREV, "rfm_segment", "loyal", "loyal", "stayed", 1, "run"),
            (CUR, PREV, "rfm_segment", None, None, "stayed", 1, "run"),
            (CUR, PREV, "rfm_segment", None, "one_time", "entered", 1, "run"),
            (CUR, PREV, "rfm_segment", "hibernating", None, "left", 1, "run"),
            (CUR, PREV, "membership_tier", "premium", "premium", "stayed", 2, "run"),
            (CUR, PREV, "membership_tier", "growth", "high_value", "moved", 1, "run"),
            (CUR, PREV, "membership_tier", "growth", "growth", "stayed", 1, "run"),
            (CUR, PREV, "membership_tier", None, None, "stayed", 1, "run"),
            (CUR, PREV, "membership_tier", None, "growth", "entered", 1, "run"),
            (CUR, PREV, "membership_tier", "registered", None, "left", 1, "run"),
        ],
        "as_of_date date, previous_as_of_date date, dimension string, from_segment string, to_segment string,"
        " transition string, customers bigint, run_id string",
    )
    assertDataFrameEqual(actual, expected)
    in_both = current.join(previous, "customer_id").count()
    totals = (
        actual.where(F.col("transition").isin("stayed", "moved")).groupBy("dimension").agg(F.sum("customers")).collect()
    )
    assert {r[0]: r[1] for r in totals} == {"rfm_segment": in_both, "membership_tier": in_both}


SUMMARY_DDL = "dimension string, segment string, customers long, share double"


def test_share_warnings(spark):
    settings = MonitoringSettings(max_segment_share=0.5, min_segment_share=0.05, max_share_change=0.1)
    previous = spark.createDataFrame(
        [
            ("rfm_segment", "champions", 20, 0.20),
            ("rfm_segment", "loyal", 25, 0.25),
            ("rfm_segment", "at_risk", 55, 0.55),
            ("value_class", None, 3, 0.03),
        ],
        SUMMARY_DDL,
    )
    current = spark.createDataFrame(
        [
            ("rfm_segment", "champions", 35, 0.35),  # +15 points: moved
            ("rfm_segment", "loyal", 30, 0.30),  # +5 points: fine
            ("rfm_segment", "at_risk", 31, 0.31),  # -24 points: moved
            ("rfm_segment", "lost", 4, 0.04),  # new and tiny: low, not moved (no previous share)
            ("value_class", "A", 60, 0.60),  # extreme share: high
            ("value_class", None, 3, 0.03),  # a null segment is matched to its previous row: low, not moved
            ("value_class", "B", 50, 0.50),  # exactly at the limit: no warning
        ],
        SUMMARY_DDL,
    )
    actual = with_share_warnings(current, previous, settings).select(
        "dimension", "segment", "previous_share", "is_share_high", "is_share_low", "is_share_moved", "warning"
    )
    expected = spark.createDataFrame(
        [
            ("rfm_segment", "champions", 0.20, False, False, True, "share_moved"),
            ("rfm_segment", "loyal", 0.25, False, False, False, None),
            ("rfm_segment", "at_risk", 0.55, False, False, True, "share_moved"),
            ("rfm_segment", "lost", None, False, True, False, "share_low"),
            ("value_class", "A", None, True, False, False, "share_high"),
            ("value_class", None, 0.03, False, True, False, "share_low"),
            ("value_class", "B", None, False, False, False, None),
        ],
        "dimension string, segment string, previous_share double, is_share_high boolean, is_share_low boolean,"
        " is_share_moved boolean, warning string",
    )
    assertDataFrameEqual(actual, expected)
    first_run = with_share_warnings(current, None, settings).where(F.col("is_share_moved")).count()
    assert first_run == 0
