"""Two builds a month apart on hand-made Delta orders and profiles: tags, audiences, tier state and migration."""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest

from segmentation import pipelines
from segmentation.config import Settings
from tests.conftest import order_row

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

D1, D2 = dt.date(2026, 5, 31), dt.date(2026, 6, 30)

ORDERS = [
    # premium at D1 (top spender of four); at D2 two bigger spenders push it to the 5th of 7: it fails the keep
    # condition (amount_365d_pct > 0.8) but the 90-day grace holds the tier
    order_row("v1", "vip", "2026-05-01T10:00:00", 5000, channel="store"),
    order_row("v2", "vip", "2026-05-20T10:00:00", 5000, channel="store"),
    order_row("v3", "vip", "2026-05-25T10:00:00", 4000, channel="store"),
    order_row("s1", "steady", "2026-03-01T10:00:00", 300, channel="web"),
    order_row("s2", "steady", "2026-06-10T10:00:00", 300, channel="app"),
    order_row("o1", "single", "2026-05-15T10:00:00", 80, channel="web"),
    # two orders on the same day, with coupons
    order_row("d1", "same_day", "2026-05-30T09:00:00", 40, channel="app", category="beauty", coupon="C1"),
    order_row("d2", "same_day", "2026-05-30T19:00:00", 45, channel="app", category="beauty", coupon="C2"),
    # new big spenders in June only: they enter at D2
    order_row("r1", "riser1", "2026-06-05T10:00:00", 20000, channel="store", category="electronics"),
    order_row("r2", "riser1", "2026-06-12T10:00:00", 20000, channel="store", category="electronics"),
    order_row("r3", "riser1", "2026-06-20T10:00:00", 20000, channel="store", category="electronics"),
    order_row("q1", "riser2", "2026-06-02T10:00:00", 16000, channel="web", category="home"),
    order_row("q2", "riser2", "2026-06-09T10:00:00", 17000, channel="web", category="home"),
    order_row("q3", "riser2", "2026-06-16T10:00:00", 17000, channel="web", category="home"),
    # registered in May, first order in June: prospect at D1, new customer at D2
    order_row("c1", "convert", "2026-06-15T10:00:00", 100, channel="web"),
    # a row without customer: rejected, never a customer
    order_row("x1", None, "2026-05-10T10:00:00", 10),
]
PROFILES = [
    ("prospect", dt.datetime(2026, 5, 1, 8)),
    ("convert", dt.datetime(2026, 5, 10, 8)),
    ("single", dt.datetime(2026, 5, 2, 8)),
]


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory, conf_dir):
    """Run build for D1 then D2 once for the module; yields the settings."""
    from segmentation.config import load_settings
    from tests.conftest import ORDER_COLUMNS

    lake = tmp_path_factory.mktemp("playbook_lake")
    orders_path = str(lake / "input" / "orders")
    profiles_path = str(lake / "input" / "profiles")
    spark.createDataFrame(ORDERS, ORDER_COLUMNS).write.format("delta").save(orders_path)
    spark.createDataFrame(PROFILES, "customer_id string, registered_at timestamp").write.format("delta").save(
        profiles_path
    )
    settings = load_settings(
        [conf_dir / "local.yaml"],
        [
            f"inputs.orders.path={orders_path}",
            "inputs.identity_map=null",
            f"inputs.profiles.path={profiles_path}",
            f"outputs.path={lake / 'output'}",
            "spark.master=local[2]",
            "quality.max_rejected_share=1",  # June orders are in the future of D1
        ],
    )
    pipelines.run_build(spark, settings, D1)
    pipelines.run_build(spark, settings, D2)
    return settings


def _table(spark, settings, name):
    return spark.read.format("delta").load(settings.outputs.table_path(name))


def _rows(df, as_of):
    return [r.asDict() for r in df.where(F.col("as_of_date") == F.lit(as_of)).collect()]


def test_segments_one_row_per_customer_with_prospects(spark, built):
    seg = _table(spark, built, "customer_segments")
    d1 = {r["customer_id"]: r for r in _rows(seg, D1)}
    d2 = {r["customer_id"]: r for r in _rows(seg, D2)}
    assert set(d1) == {"vip", "steady", "single", "same_day", "prospect", "convert"}
    assert set(d2) == set(d1) | {"riser1", "riser2"}
    assert seg.count() == len(d1) + len(d2)
    prospect = d2["prospect"]
    assert (prospect["r_score"], prospect["rfm_cell"], prospect["rfm_segment"], prospect["lifecycle_stage"]) == (
        None,
        None,
        "prospect",
        "prospect",
    )
    assert (prospect["membership_tier"], prospect["value_segment"], prospect["rfm_grid"]) == (
        "registered",
        "prospect",
        "unscored",
    )
    assert d1["convert"]["lifecycle_stage"] == "prospect" and d2["convert"]["lifecycle_stage"] == "new"
    purchasers = [r for r in d2.values() if r["customer_id"] != "prospect"]
    assert all(r["r_score"] in range(1, 6) and r["rfm_segment"] != "prospect" for r in purchasers)


def test_tier_held_through_grace(spark, built):
    seg = _table(spark, built, "customer_segments")
    cols = ("membership_tier", "tier_qualified", "tier_since", "tier_below_since")
    d1 = {r["customer_id"]: tuple(r[c] for c in cols) for r in _rows(seg, D1)}
    d2 = {r["customer_id"]: tuple(r[c] for c in cols) for r in _rows(seg, D2)}
    assert d1["vip"] == ("premium", "premium", D1, None)
    assert d2["vip"] == ("premium", "high_value", D1, D2)
    assert d2["riser1"] == ("premium", "premium", D2, None)
    assert d2["riser2"] == ("high_value", "high_value", D2, None)
    assert d1["convert"] == ("registered", "registered", D1, None)
    assert d2["convert"] == ("growth", "growth", D2, None)


def test_tags_written(spark, built):
    tags = _table(spark, built, "customer_tags")
    d1 = {(r["customer_id"], r["tag_group"], r["tag"]) for r in _rows(tags, D1)}
    d2 = {(r["customer_id"], r["tag_group"], r["tag"]) for r in _rows(tags, D2)}
    assert {
        ("same_day", "category_preference", "beauty"),
        ("same_day", "price_sensitivity", "coupon_sensitive"),
        ("same_day", "preferred_channel", "app"),
    } <= d1
    assert ("steady", "channel_behaviour", "multi_channel") in d2
    assert ("steady", "channel_behaviour", "multi_channel") not in d1
    assert not any(c == "prospect" for c, _, _ in d1 | d2)


def test_audiences_and_stable_arms(spark, built):
    aud = _table(spark, built, "campaign_audiences")
    d1 = {(r["campaign_id"], r["customer_id"]): r for r in _rows(aud, D1)}
    d2 = {(r["campaign_id"], r["customer_id"]): r for r in _rows(aud, D2)}
    acquire = "acquire_registered_no_order"
    assert {c for k, c in d1 if k == acquire} == {"prospect", "convert"}
    assert {c for k, c in d2 if k == acquire} == {"prospect"}
    assert ("retain_repeat_buyers", "same_day") in d1
    row = d1[(acquire, "prospect")]
    assert (row["objective"], row["channel"], row["trigger"]) == ("acquire", "sms", "daily")
    assert row["arm"] in {"treatment", "control"}
    for key in d1.keys() & d2.keys():
        assert d1[key]["arm"] == d2[key]["arm"]


def test_migration_adds_up(spark, built):
    mig = _table(spark, built, "segment_migration")
    assert _rows(mig, D1) == []
    rows = _rows(mig, D2)
    both = 6  # customers in both snapshots
    per_dimension: dict[str, int] = {}
    for r in rows:
        assert r["previous_as_of_date"] == D1
        if r["transition"] in ("stayed", "moved"):
            per_dimension[r["dimension"]] = per_dimension.get(r["dimension"], 0) + r["customers"]
    assert set(per_dimension) >= {"rfm_segment", "lifecycle_stage", "membership_tier", "value_class"}
    assert set(per_dimension.values()) == {both}
    entered: dict[str, int] = {}
    for r in rows:
        if r["transition"] == "entered":
            entered[r["dimension"]] = entered.get(r["dimension"], 0) + r["customers"]
    assert set(entered.values()) == {2}  # riser1 and riser2
    assert not any(r["transition"] == "left" for r in rows)
    lifecycle = {
        (r["from_segment"], r["to_segment"]): r["customers"] for r in rows if r["dimension"] == "lifecycle_stage"
    }
    assert lifecycle[("prospect", "new")] == 1


def test_summary_has_share_warnings(spark, built):
    summary = _table(spark, built, "segment_summary")
    d2 = {(r["dimension"], r["segment"]): r for r in _rows(summary, D2)}
    prospect = d2[("rfm_segment", "prospect")]
    assert prospect["previous_share"] == pytest.approx(2 / 6)
    assert prospect["share"] == pytest.approx(1 / 8)
    assert prospect["is_share_moved"] is True and "share_moved" in prospect["warning"]
    assert d2[("membership_tier", "premium")]["customers"] == 2


def test_evaluate_writes_uplift(spark, built, tmp_path):
    responses_path = str(tmp_path / "responses")
    spark.createDataFrame(
        [
            ("acquire_registered_no_order", "prospect", dt.datetime(2026, 6, 3), True, 120.0),
            ("retain_repeat_buyers", "same_day", None, False, 0.0),
        ],
        "campaign_id string, customer_id string, responded_at timestamp, converted boolean, revenue double",
    ).write.format("delta").save(responses_path)
    data = built.model_dump()
    data["inputs"]["campaign_responses"] = {"path": responses_path}
    settings = Settings.model_validate(data)
    result = pipelines.run_evaluate(spark, settings, D1)
    written = _rows(_table(spark, settings, "campaign_uplift"), D1)
    uplift = {(r["campaign_id"], r["dimension"], r["segment"]): r for r in written}
    audience = _rows(_table(spark, settings, "campaign_audiences"), D1)
    for campaign in {r["campaign_id"] for r in audience}:
        row = uplift[(campaign, "all", "all")]
        arms = [r["arm"] for r in audience if r["campaign_id"] == campaign]
        assert (row["treatment_customers"], row["control_customers"]) == (
            arms.count("treatment"),
            arms.count("control"),
        )
    acquire = uplift[("acquire_registered_no_order", "rfm_segment", "prospect")]
    assert acquire["treatment_customers"] + acquire["control_customers"] == 2
    assert acquire["treatment_conversions"] + acquire["control_conversions"] == 1
    assert result.version >= 0
