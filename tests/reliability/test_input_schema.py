"""Schema problems stop the job before any write; text columns are parsed only when configured."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from segmentation import pipelines
from segmentation.pipelines import common
from segmentation.runs import JobRun
from segmentation.schema import SchemaError
from tests.reliability.data import AS_OF

pytestmark = [pytest.mark.spark, pytest.mark.delta]

TEXT_ORDER_COLUMNS = (
    "order_id string, channel string, customer_id string, order_ts string, amount string, currency string,"
    " status string, category string, discount_amount string, coupon_code string"
)


def text_order(order_id, customer_id, ts, amount, discount="0"):
    return (order_id, "web", customer_id, ts, amount, "CNY", "completed", "apparel", discount, None)


def write(spark, path, rows, ddl):
    spark.createDataFrame(rows, ddl).write.format("delta").mode("overwrite").save(str(path))


def test_missing_and_mistyped_columns_are_all_named_and_nothing_is_written(spark, settings_for, lake):
    settings = settings_for()
    ddl = (
        "order_id string, channel string, customer_id bigint, order_ts string, amount string, currency string,"
        " status string, category string, discount_amount decimal(18,2)"
    )
    write(
        spark, settings.inputs.orders.path, [("o1", "web", 1, "2026-06-01", "10.5", "CNY", "completed", "x", None)], ddl
    )
    with pytest.raises(SchemaError) as info:
        pipelines.run_build(spark, settings, AS_OF)
    message = str(info.value)
    assert message.startswith(f"orders table at {settings.inputs.orders.path} does not fit its contract:")
    assert "column 'customer_id' is bigint, expected string" in message
    assert (
        "column 'order_ts' is string, expected timestamp (text is parsed row by row only with "
        "quality.parse_text_columns: true)" in message
    )
    assert "column 'amount' is string, expected decimal(18,2) (text is parsed" in message
    assert "missing column 'coupon_code' (expected string)" in message
    assert not os.path.exists(settings.outputs.path)


def test_a_reference_table_with_a_wrong_type_is_named(spark, settings_for, lake, write_orders):
    from tests.conftest import order_row

    fx_path = lake / "input" / "fx"
    settings = settings_for(f"inputs.fx_rates.path={fx_path}", "quality.currencies=[CNY,USD]")
    write_orders(settings.inputs.orders.path, [order_row("o1", "c1", "2026-06-01T00:00:00", "1.00")])
    write(spark, fx_path, [("USD", "2026-06-01", 7.1)], "currency string, rate_date string, rate_to_reporting double")
    with pytest.raises(
        SchemaError,
        match=r"fx_rates table at .*fx does not fit its contract:\n  column 'rate_date' is "
        r"string, expected date",
    ):
        pipelines.run_build(spark, settings, AS_OF)
    assert not os.path.exists(settings.outputs.path)


def test_text_columns_parse_in_several_formats_whatever_the_session_time_zone(spark, settings_for, lake):
    settings = settings_for("quality.parse_text_columns=true", "quality.currencies=[CNY,USD]")
    rows = [
        text_order("t1", "c1", "2026-06-30T23:30:00Z", "10.50"),
        text_order("t2", "c1", "2026-07-01T07:30:00+08:00", " 20 "),  # 2026-06-30T23:30Z: not in the future
        text_order("t3", "c2", "2026-06-30 23:30:00", "1e2"),  # no zone: UTC
        text_order("t4", "c2", "2026-06-30", "3"),
        text_order("t5", "c3", "2026/06/30 23:30:00", "4.00", discount="abc"),
        text_order("t6", "c3", "30.06.2026", "5.00"),
        text_order("t7", "c4", "2026-06-29T10:00:00", "12,50"),
        text_order("t8", "c4", None, "6.00"),
        text_order("t9", "c4", "2026-06-29T10:00:00", "  "),
        text_order("t10", "c5", "2126-07-01T00:00:00", "7.00"),  # later than its file was written: impossible
        text_order("t11", "c5", "2026-06-29T10:00:00", "7.00"),  # tie with t7's timestamp, different customer
    ]
    write(spark, settings.inputs.orders.path, rows, TEXT_ORDER_COLUMNS)
    previous = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "Asia/Shanghai")
        run = JobRun(spark, settings, "build", AS_OF)
        tagged = common.read_and_tag_orders(run).tagged_df
        import pyspark.sql.functions as F

        got = {
            r["order_id"]: (r["epoch"], None if r["amount"] is None else str(r["amount"]), r["reject_reason"])
            for r in tagged.select(
                "order_id", F.unix_seconds("order_ts").alias("epoch"), "amount", "reject_reason"
            ).collect()
        }
        run.release()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    late = int(dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.timezone.utc).timestamp())
    day = int(dt.datetime(2026, 6, 30, tzinfo=dt.timezone.utc).timestamp())
    t7 = int(dt.datetime(2026, 6, 29, 10, tzinfo=dt.timezone.utc).timestamp())
    assert got == {
        "t1": (late, "10.50", None),
        "t2": (late, "20.00", None),
        "t3": (late, "100.00", None),
        "t4": (day, "3.00", None),
        "t5": (late, "4.00", "invalid_discount"),
        "t6": (None, "5.00", "unparseable_order_ts"),
        "t7": (t7, None, "non_numeric_amount"),
        "t8": (None, "6.00", "missing_order_ts"),
        "t9": (t7, None, "invalid_amount"),
        "t10": (int(dt.datetime(2126, 7, 1, tzinfo=dt.timezone.utc).timestamp()), "7.00", "future_order_ts"),
        "t11": (t7, "7.00", None),
    }
