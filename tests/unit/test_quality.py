"""Row validation: each bad row gets exactly one reason; valid + rejected = input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.errors import InputError
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
            ("o2", "web", None, "guest_order"),
            ("o3", "web", "   ", "guest_order"),
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


# -- one normalisation for keys and codes ---------------------------------------------------------------------------
BLANKS = ["\t", "\u00a0", "\u3000", "\u200b", " \ufeff ", "\r\n"]


@pytest.mark.parametrize("blank", BLANKS, ids=["tab", "nbsp", "ideographic", "zero-width", "bom", "crlf"])
def test_any_unicode_whitespace_is_blank(spark, settings_for, blank):
    rows = [
        order_row("o1", blank, "2026-06-01T10:00:00", 10),  # a guest
        order_row(blank, "c1", "2026-06-01T10:00:00", 10),  # no order id
        order_row(f"{blank}o3{blank}", f"{blank}c1{blank}", "2026-06-01T10:00:00", 10, currency=f"{blank}cny"),
    ]
    tagged = quality.with_reject_reason(spark.createDataFrame(rows, ORDER_COLUMNS), AS_OF, settings_for().quality)
    assert sorted(r[quality.REASON] or "" for r in tagged.collect()) == ["", "guest_order", "missing_order_id"]
    valid = quality.valid_orders(tagged).first()
    assert (valid["order_id"], valid["customer_id"], valid["currency"]) == ("o3", "c1", "CNY")


@pytest.mark.parametrize("keys", [None, "broadcast"])
def test_channel_case_and_spaces_are_one_order_key(spark, settings_for, keys):
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", 10, channel="Web\u00a0"),
        order_row(" o1", "c1", "2026-06-01T10:00:00", 10, channel="web"),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10, channel="APP", status="COMPLETED ", currency="cny"),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    q = settings_for().quality
    keys_df = quality.duplicate_keys(orders_df, q) if keys else None
    tagged = quality.with_reject_reason(orders_df, AS_OF, q, duplicate_keys_df=keys_df)
    got = sorted((r["channel"], r["order_id"], r[quality.REASON] or "") for r in tagged.collect())
    # the two web copies are identical but for the raw key: the order over every column keeps " o1" (space first)
    assert got == [("APP", "o1", ""), ("Web\u00a0", "o1", "duplicate_order"), ("web", " o1", "")]
    valid = sorted((r["channel"], r["status"], r["currency"]) for r in quality.valid_orders(tagged, q).collect())
    assert valid == [("app", "completed", "CNY"), ("web", "completed", "CNY")]


def test_case_folding_is_configurable(spark, settings_for):
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", 10, channel="Web"),
        order_row("o1", "c1", "2026-06-01T10:00:00", 10, channel="web"),
        order_row("o2", "c1", "2026-06-01T10:00:00", 10, status="Completed"),
    ]
    q = settings_for("quality.case_insensitive=[currency]").quality
    tagged = quality.with_reject_reason(spark.createDataFrame(rows, ORDER_COLUMNS), AS_OF, q)
    got = sorted((r["channel"], r["order_id"], r[quality.REASON] or "") for r in tagged.collect())
    assert got == [("Web", "o1", ""), ("web", "o1", ""), ("web", "o2", "unknown_status")]


def test_null_codes_are_unknown_not_valid(spark, settings_for):
    rows = [order_row("o1", "c1", "2026-06-01T10:00:00", 10, currency=None), order_row("o2", "c1", "2026-06-01", 10)]
    rows[1] = (*rows[1][:6], None, *rows[1][7:])
    tagged = quality.with_reject_reason(spark.createDataFrame(rows, ORDER_COLUMNS), AS_OF, settings_for().quality)
    assert sorted(r[quality.REASON] for r in tagged.collect()) == ["unknown_currency", "unknown_status"]


# -- duplicates: a total order, valid copies first -----------------------------------------------------------------
@pytest.mark.parametrize("keys", [None, "broadcast"])
def test_a_corrected_order_keeps_the_valid_copy(spark, settings_for, keys):
    rows = [
        order_row("o1", "c1", "2026-06-01T10:00:00", "-5.00"),
        order_row("o1", "c1", "2026-06-01T10:00:00", "50.00"),
        order_row("o2", None, "2026-06-01T10:00:00", "5.00"),  # a guest copy loses to a valid one too
        order_row("o2", "c2", "2026-06-01T11:00:00", "5.00"),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    q = settings_for().quality
    tagged = quality.with_reject_reason(
        orders_df, AS_OF, q, duplicate_keys_df=quality.duplicate_keys(orders_df, q) if keys else None
    )
    got = sorted((r["order_id"], str(r["amount"]), r[quality.REASON] or "") for r in tagged.collect())
    assert got == [
        ("o1", "-5.00", "invalid_amount"),
        ("o1", "50.00", ""),
        ("o2", "5.00", ""),
        ("o2", "5.00", "guest_order"),
    ]


def test_copies_differing_in_any_column_keep_the_same_one(spark, settings_for):
    base = dict(ts="2026-06-01T10:00:00", amount="10.00")
    variants = [
        order_row("o1", "c1", base["ts"], base["amount"], category="beauty"),
        order_row("o1", "c1", base["ts"], base["amount"], category="apparel"),
        order_row("o1", "c1", base["ts"], base["amount"], category="apparel", discount="1.00"),
        order_row("o1", "c1", base["ts"], base["amount"], category="apparel", coupon="X"),
    ]
    q = settings_for().quality
    kept = set()
    for order in (variants, variants[::-1], variants[2:] + variants[:2]):
        tagged = quality.with_reject_reason(spark.createDataFrame(order, ORDER_COLUMNS).repartition(3), AS_OF, q)
        kept.add(tuple(quality.valid_orders(tagged).select("category", "discount_amount", "coupon_code").first()))
    assert kept == {("apparel", Decimal("0.00"), "X")}  # category, then discount, then coupon (nulls last)


def test_latest_version_column_wins_among_valid_copies(spark, settings_for):
    ddl = ORDER_COLUMNS + ", updated_at timestamp"
    rows = [
        (*order_row("o1", "c1", "2026-06-01T10:00:00", "10.00"), dt.datetime(2026, 6, 2)),
        (*order_row("o1", "c1", "2026-06-01T10:00:00", "12.00"), dt.datetime(2026, 6, 3)),  # re-sent, changed
        (*order_row("o1", "c1", "2026-06-01T10:00:00", "-1.00"), dt.datetime(2026, 6, 4)),  # latest, but invalid
        (*order_row("o2", "c1", "2026-06-01T10:00:00", "20.00"), None),
        (*order_row("o2", "c1", "2026-06-01T09:00:00", "21.00"), dt.datetime(2026, 6, 1)),  # dated beats undated
    ]
    q = settings_for("quality.latest_version_column=updated_at").quality
    tagged = quality.with_reject_reason(spark.createDataFrame(rows, ddl), AS_OF, q)
    kept = sorted((r["order_id"], str(r["amount"])) for r in quality.valid_orders(tagged, q).collect())
    assert kept == [("o1", "12.00"), ("o2", "21.00")]


# -- row values -----------------------------------------------------------------------------------------------------
def test_amounts_decimal_cannot_hold_are_rejected_rows(spark, settings_for):
    ddl = ORDER_COLUMNS.replace("decimal(18,2)", "double")
    base = order_row("o", "c1", "2026-06-01T10:00:00", None)

    def row(order_id, amount, discount=0.0):
        return (order_id, *base[1:4], amount, *base[5:8], discount, None)

    raw = spark.createDataFrame(
        [
            row("nan", float("nan")),
            row("inf", float("inf")),
            row("big", 1e20),
            row("bound", 1e16),
            row("above_max", 2e12),  # fits decimal(18,2) but is above quality.max_order_amount
            row("ok", 12.345),
            row("bad_discount", 10.0, float("-inf")),
        ],
        ddl,
    )
    from segmentation import schema

    q = settings_for().quality
    conformed = schema.conform(
        quality.with_parsed_text(raw, q.timestamp_formats), schema.ORDERS, (quality.PARSE_REASON,)
    )
    got = {
        r["order_id"]: (r[quality.REASON], r["amount"])
        for r in quality.with_reject_reason(conformed, AS_OF, q).collect()
    }
    assert {k: v[0] for k, v in got.items()} == {
        "nan": "non_numeric_amount",
        "inf": "amount_out_of_range",
        "big": "amount_out_of_range",
        "bound": "amount_out_of_range",
        "above_max": "amount_out_of_range",
        "ok": None,
        "bad_discount": "invalid_discount",
    }
    assert str(got["ok"][1]) == "12.35"


def test_conversion_beyond_the_bound_is_a_rejected_row(spark):
    from segmentation.transforms import currency

    tagged_df = spark.createDataFrame(
        [
            (*order_row(o, "c1", "2026-06-20T08:00:00", a, currency="USD"), None)
            for o, a in (("u1", "9000000000000000.00"), ("u2", "200000000000.00"), ("u3", "10.00"))
        ],
        ORDER_COLUMNS + ", reject_reason string",
    )
    fx_df = spark.createDataFrame(
        [("USD", dt.date(2026, 6, 1), Decimal("7.2"))],
        "currency string, rate_date date, rate_to_reporting decimal(18,8)",
    )
    result = currency.with_reporting_currency(tagged_df, fx_df, "CNY", Decimal("1000000000000"))
    got = sorted((r["order_id"], str(r["amount"]), r["currency"], r[quality.REASON]) for r in result.collect())
    assert got == [
        ("u1", "9000000000000000.00", "USD", "amount_out_of_range"),  # beyond decimal(18,2) once converted
        ("u2", "200000000000.00", "USD", "amount_out_of_range"),  # 1.44e12 CNY: above max_order_amount
        ("u3", "72.00", "CNY", None),
    ]


def test_a_customer_sum_beyond_the_bound_stops_with_a_message(spark, settings_for):
    from segmentation.transforms import features

    settings = settings_for()
    rows = [order_row(f"o{i}", "whale", "2026-06-01T10:00:00", "6000000000000000.00") for i in range(2)]
    df = features.customer_features(
        spark.createDataFrame(rows, ORDER_COLUMNS), AS_OF, settings.features, settings.quality
    )
    with pytest.raises(
        Exception, match=r"(monetary|amount_\w+) of customer whale is 12000000000000000\.00, beyond decimal"
    ):
        df.collect()


# -- guest orders -----------------------------------------------------------------------------------------------------
def test_guest_orders_are_reported_but_not_counted_by_default(settings_for):
    counts = {None: 80, "guest_order": 15, "invalid_amount": 4, "excluded_customer": 1}
    q = settings_for().quality
    quality.check_rejected_share(counts, 0.05, "orders", quality.not_counted_reasons(q))  # 4 of 84: passes
    strict = settings_for("quality.guest_orders_count_as_rejected=true").quality
    with pytest.raises(InputError) as refused:
        quality.check_rejected_share(counts, 0.05, "orders", quality.not_counted_reasons(strict))
    assert str(refused.value).startswith("19 of 99 order rows (19.19%) are invalid (1 excluded rows not counted)")
    with pytest.raises(InputError) as refused:
        quality.check_rejected_share(counts, 0.04, "orders", quality.not_counted_reasons(q))
    assert str(refused.value).startswith("4 of 84 order rows (4.76%) are invalid (1 excluded rows, 15 guest orders not")
