"""Identity resolution as a graph: chains to a fixed point, cycles, self-maps, conflicts and their policies."""

from __future__ import annotations

import datetime as dt

import pytest

from segmentation.errors import InputError
from segmentation.transforms import identity, quality
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)
MAP_COLUMNS = "channel string, channel_customer_id string, customer_id string, updated_at timestamp"


def identity_map(spark, rows):
    return spark.createDataFrame([(*r, None) if len(r) == 3 else r for r in rows], MAP_COLUMNS)


def resolved(resolution):
    return sorted(tuple(r) for r in resolution.map_df.collect())


def conflicts(resolution):
    return sorted(
        (r["channel"], r["channel_customer_id"], tuple(r["claimed_customer_ids"]), r["claims"], r["customer_id"])
        for r in resolution.conflicts_df.collect()
    )


def test_chains_cycles_and_self_maps_resolve_to_one_customer(spark, settings_for):
    rows = [
        ("web", "W6", "A6"),  # a chain: W6 -> A6 -> U6 -> U9 (an account merge)
        ("app", "A6", "U6"),
        ("store", "U6", "U9"),
        ("web", "W1", "U1"),
        ("web", "U1", "U1"),  # a self-map says nothing
        ("app", "C1", "C2"),  # a cycle with no way out: C1 -> C2 -> C3 -> C1, and a tail T1 -> C2
        ("app", "C2", "C3"),
        ("app", "C3", "C1"),
        ("web", "T1", "C2"),
        ("web", "W7", "A7"),  # two paths to one root are no conflict
        ("web", "W7", "U7"),
        ("app", "A7", "U7"),
        ("web", " ", "U8"),  # blank ids are dropped
        ("web", "W8", "\u3000"),
    ]
    result = identity.resolve_identities(identity_map(spark, rows), settings_for().quality)
    assert resolved(result) == [
        ("app", "A6", "U9"),
        ("app", "A7", "U7"),
        ("app", "C1", "C1"),
        ("app", "C2", "C1"),
        ("app", "C3", "C1"),
        ("store", "U6", "U9"),
        ("web", "T1", "C1"),
        ("web", "W1", "U1"),
        ("web", "W6", "U9"),
        ("web", "W7", "U7"),
    ]
    assert result.conflicts == 0 and conflicts(result) == []


def test_a_chain_longer_than_the_limit_stops_there(spark, settings_for, caplog):
    rows = [("web", f"N{i}", f"N{i + 1}") for i in range(5)]  # N0 -> N1 -> ... -> N5
    q = settings_for("quality.identity.max_chain_length=2").quality
    result = identity.resolve_identities(identity_map(spark, rows), q)
    assert dict((r[1], r[2]) for r in resolved(result))["N4"] == "N5"  # short enough
    assert "still on a chain after 2 hops" in caplog.text
    full = identity.resolve_identities(identity_map(spark, rows), settings_for().quality)
    assert {r[2] for r in resolved(full)} == {"N5"}


CONFLICTED = [
    ("web", "W3", "U2", dt.datetime(2026, 5, 1)),
    ("web", "W3", "U1", dt.datetime(2026, 4, 1)),
    ("web", "W4", "A4", dt.datetime(2026, 4, 1)),  # a conflict through a chain: A4 -> U4, and W4 -> U5
    ("app", "A4", "U4", dt.datetime(2026, 4, 1)),
    ("web", "W4", "U5", None),
    ("web", "W5", "U5", dt.datetime(2026, 4, 1)),
]


@pytest.mark.parametrize(
    ("policy", "w3", "w4"),
    [
        pytest.param("smallest_id", "U1", "U4", id="smallest_id"),
        pytest.param("latest", "U2", "U4", id="latest"),  # an undated mapping loses to a dated one
        pytest.param("reject", None, None, id="reject"),
    ],
)
def test_conflicts_are_reported_and_resolved_by_the_policy(spark, settings_for, policy, w3, w4):
    overrides = [f"quality.identity.conflict_policy={policy}"]
    if policy == "latest":
        overrides.append("quality.identity.timestamp_column=updated_at")
    result = identity.resolve_identities(identity_map(spark, CONFLICTED), settings_for(*overrides).quality)
    assert result.conflicts == 2
    assert conflicts(result) == [
        ("web", "W3", ("U1", "U2"), 2, w3),
        ("web", "W4", ("U4", "U5"), 2, w4),
    ]
    mapped = dict(((r[0], r[1]), r[2]) for r in resolved(result))
    assert mapped.get(("web", "W3")) == w3 and mapped.get(("web", "W4")) == w4
    assert mapped[("web", "W5")] == "U5" and mapped[("app", "A4")] == "U4"
    table_rows = identity.conflict_rows(result, AS_OF, "run-1").collect()
    assert {(r["policy"], r["as_of_date"], r["run_id"]) for r in table_rows} == {(policy, AS_OF, "run-1")}


def test_latest_needs_the_timestamp_column_in_the_map(spark, settings_for):
    q = settings_for("quality.identity.conflict_policy=latest", "quality.identity.timestamp_column=mapped_at").quality
    with pytest.raises(InputError, match="identity map has no column 'mapped_at'"):
        identity.resolve_identities(identity_map(spark, CONFLICTED), q)


def test_orders_stitch_across_channel_case_and_reject_policy_rejects_conflicted_orders(spark, settings_for):
    rows = [
        ("WEB ", "W6", "A6"),  # channel in another case and with a trailing space
        ("App", "A6", "U6"),
        ("web", "W3", "U1"),
        ("web", "W3", "U2"),
    ]
    orders = [
        order_row("o1", "W6", "2026-06-01T10:00:00", 10),
        order_row("o2", "A6\u00a0", "2026-06-01T10:00:00", 10, channel="app"),
        order_row("o3", "W3", "2026-06-01T10:00:00", 10),
        order_row("o4", "X9", "2026-06-01T10:00:00", 10),  # not in the map: keeps its id
    ]
    q = settings_for("quality.identity.conflict_policy=reject").quality
    result = identity.resolve_identities(identity_map(spark, rows), q)
    tagged = quality.with_reject_reason(spark.createDataFrame(orders, ORDER_COLUMNS), AS_OF, q)
    tagged = identity.with_conflicts_rejected(tagged, result, q)
    assert tagged.columns == [*ORDER_COLUMNS_NAMES, quality.REASON]
    assert sorted((r["order_id"], r[quality.REASON]) for r in tagged.collect()) == [
        ("o1", None),
        ("o2", None),
        ("o3", "identity_conflict"),
        ("o4", None),
    ]
    stitched = identity.stitch_identities(quality.valid_orders(tagged, q), result, q)
    got = sorted((r["order_id"], r["channel_customer_id"], r["customer_id"]) for r in stitched.collect())
    assert got == [("o1", "W6", "U6"), ("o2", "A6", "U6"), ("o4", "X9", "X9")]


def test_a_raw_map_is_resolved_when_stitching(spark, settings_for):
    orders_df = spark.createDataFrame([order_row("o1", "W6", "2026-06-01T10:00:00", 10)], ORDER_COLUMNS)
    raw = identity_map(spark, [("web", "W6", "A6"), ("app", "A6", "U6")])
    stitched = identity.stitch_identities(orders_df, raw, settings_for().quality)
    assert [tuple(r) for r in stitched.select("customer_id", "channel_customer_id").collect()] == [("U6", "W6")]


def test_exclusions_follow_the_resolved_chain(spark, settings_for):
    q = settings_for().quality
    result = identity.resolve_identities(identity_map(spark, [("web", "W6", "A6"), ("app", "A6", "U6")]), q)
    exclusions_df = spark.createDataFrame([("U6", None)], "customer_id string, channel string")
    keys_df = quality.exclusion_keys(exclusions_df, result.map_df, q)
    orders_df = spark.createDataFrame([order_row("o1", "W6 ", "2026-06-01T10:00:00", 10, channel="Web")], ORDER_COLUMNS)
    tagged = quality.with_reject_reason(orders_df, AS_OF, q, keys_df)
    assert [r[quality.REASON] for r in tagged.collect()] == ["excluded_customer"]


ORDER_COLUMNS_NAMES = [c.split()[0] for c in ORDER_COLUMNS.split(", ")]
