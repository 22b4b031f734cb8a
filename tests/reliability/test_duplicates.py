"""Same orders, same answer: which copy of a duplicate is kept never depends on file order or partitioning.

The same rows are written as Delta tables laid out in different ways (one commit; several commits in reverse order;
partitioned by channel with the rows shuffled over several files) and validated both ways duplicates can be ranked
(only the repeated keys, or every row through the window). Every copy of a duplicate differs from the others in some
column, so any dependence on the order rows arrive in would show in the outputs.
"""

from __future__ import annotations

import random

import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.pipelines import common
from segmentation.pipelines.build import BuildInputs, build_frames
from segmentation.runs import JobRun
from tests.conftest import ORDER_COLUMNS, order_row
from tests.reliability.data import AS_OF

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.slow, pytest.mark.timeout(2400)]

TS = "2026-06-01T10:00:00"
ROWS = [
    # copies that differ in one column each: category, discount, coupon, status, customer, amount, timestamp
    order_row("o1", "c1", TS, "10.00", category="beauty"),
    order_row("o1", "c1", TS, "10.00", category="apparel"),
    order_row("o2", "c1", TS, "20.00", discount="2.00"),
    order_row("o2", "c1", TS, "20.00"),
    order_row("o3", "c2", TS, "30.00", coupon="SUMMER"),
    order_row("o3", "c2", TS, "30.00"),
    order_row("o4", "c2", TS, "40.00", status="refunded"),
    order_row("o4", "c2", TS, "40.00"),
    order_row("o5", "c3", TS, "50.00"),
    order_row("o5", "c4", TS, "50.00"),
    order_row("o6", "c3", TS, "60.00"),
    order_row("o6", "c3", TS, "61.00"),
    order_row("o7", "c4", "2026-05-01T10:00:00", "70.00"),
    order_row("o7", "c4", TS, "70.00"),
    # a corrected order: the broken first copy loses to the valid one, whatever comes first
    order_row("o8", "c5", TS, "-5.00"),
    order_row("o8", "c5", TS, "50.00"),
    # one key written differently: channel case and spaces, a no-break space in the order id
    order_row("o9", "c5", TS, "90.00", channel="Web "),
    order_row("o9\u00a0", "c5", TS, "91.00", channel="WEB"),
    order_row("o9", "c6", TS, "92.00", channel="app"),
    # an exact replay and a guest copy
    order_row("o10", "c6", TS, "15.00"),
    order_row("o10", "c6", TS, "15.00"),
    order_row("o11", None, TS, "25.00"),
    order_row("o11", "c6", TS, "25.00"),
    # single orders, so every customer has some history
    order_row("o12", "c1", "2026-04-01T10:00:00", "12.00", channel="app"),
    order_row("o13", "c2", "2026-03-01T10:00:00", "13.00", channel="store"),
    order_row("o14", "c3", "2026-06-20T10:00:00", "14.00", category="home"),
]
TABLES = ("orders_rejected", "customer_features", "customer_segments", "customer_tags")


def write_layout(spark, path: str, layout: str) -> None:
    """The same rows as a Delta table laid out one way."""
    if layout == "one commit":
        spark.createDataFrame(ROWS, ORDER_COLUMNS).write.format("delta").save(path)
        return
    if layout == "reversed commits":
        backwards = ROWS[::-1]
        for part in (backwards[:9], backwards[9:18], backwards[18:]):
            spark.createDataFrame(part, ORDER_COLUMNS).write.format("delta").mode("append").save(path)
        return
    shuffled = random.Random(7).sample(ROWS, len(ROWS))
    df = spark.createDataFrame(shuffled, ORDER_COLUMNS).repartition(4)
    df.write.format("delta").partitionBy("channel").save(path)


def outputs(spark, settings) -> dict:
    """The frames the build would write, from the shared reading and validation and the build's own function."""
    run = JobRun(spark, settings, "build", AS_OF)
    orders = common.read_and_tag_orders(run)
    run.begin(orders.versions)
    rejected_df, counts = common.validate(run, orders)
    frames = build_frames(BuildInputs(orders.valid_df, rejected_df), settings, AS_OF, "permutation")
    result = {name: spark.createDataFrame(frames[name].collect(), frames[name].schema) for name in TABLES}
    run.release()
    return {"frames": result, "counts": counts}


@pytest.fixture(scope="module")
def layouts(spark, conf_dir, tmp_path_factory):
    from segmentation.config import load_settings

    lake = tmp_path_factory.mktemp("duplicates")
    results = {}
    for layout, ranking in (
        ("one commit", "repeated keys"),
        ("reversed commits", "repeated keys"),
        ("partitioned, shuffled", "repeated keys"),
        ("reversed commits", "every row"),
    ):
        path = str(lake / layout.replace(" ", "_").replace(",", ""))
        if ranking == "repeated keys":
            write_layout(spark, path, layout)
        overrides = [
            f"inputs.orders.path={path}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'out'}",
            "spark.master=local[2]",
            "quality.max_rejected_share=0.9",
        ]
        if ranking == "every row":
            overrides.append("quality.broadcast_duplicate_keys_max=0")
        results[(layout, ranking)] = outputs(spark, load_settings([conf_dir / "local.yaml"], overrides))
    return results


@pytest.mark.parametrize("table", TABLES)
def test_outputs_do_not_depend_on_file_order_or_partitioning(layouts, table):
    reference = layouts[("one commit", "repeated keys")]["frames"][table]
    for key, result in layouts.items():
        try:
            assertDataFrameEqual(result["frames"][table], reference)
        except AssertionError as error:
            raise AssertionError(f"{table} differs for {key}: {error}") from None


def test_the_kept_copies_follow_the_documented_order(layouts):
    result = layouts[("partitioned, shuffled", "repeated keys")]
    rejected = sorted(
        (r["order_id"], r["channel"], str(r["amount"]), r["reject_reason"])
        for r in result["frames"]["orders_rejected"].collect()
    )
    assert rejected == [
        ("o1", "web", "10.00", "duplicate_order"),  # beauty lost to apparel
        ("o10", "web", "15.00", "duplicate_order"),
        ("o11", "web", "25.00", "guest_order"),
        ("o2", "web", "20.00", "duplicate_order"),  # the 2.00 discount lost to 0.00
        ("o3", "web", "30.00", "duplicate_order"),  # SUMMER sorts before null: the coupon-less copy lost
        ("o4", "web", "40.00", "duplicate_order"),  # refunded lost to completed
        ("o5", "web", "50.00", "duplicate_order"),  # c4 lost to c3
        ("o6", "web", "61.00", "duplicate_order"),
        ("o7", "web", "70.00", "duplicate_order"),  # the later copy lost to the earlier one
        ("o8", "web", "-5.00", "invalid_amount"),
        ("o9\u00a0", "WEB", "91.00", "duplicate_order"),  # the same key as "Web " / o9
    ]
    assert result["counts"] == {None: 15, "duplicate_order": 9, "guest_order": 1, "invalid_amount": 1}
    features = {r["customer_id"]: r for r in result["frames"]["customer_features"].collect()}
    assert (features["c1"]["top_category"], features["c1"]["discount_share"]) == ("apparel", 0.0)
    assert features["c2"]["coupon_share"] == pytest.approx(1 / 3)
    assert features["c5"]["monetary"] == 140  # the corrected 50.00 and the first o9 copy (90.00)
