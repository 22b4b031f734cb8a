"""segment_membership and segment_changes: MERGEd current state, its Change Data Feed and the change events.

The first part runs the membership transform and the MERGE on hand-made snapshots, dated one week apart; the second
runs the build job twice on hand-made orders and checks the changes against the two ``customer_segments`` slices
compared independently in pandas. Everything is read back with delta-rs (``deltalake``), as a downstream sync would:
the membership through its DataFusion ``QueryBuilder`` (the table has deletion vectors), the feed with ``load_cdf``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, QueryBuilder

from segmentation import io, outputs
from segmentation.transforms import membership

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
D1, D2 = dt.date(2026, 6, 23), dt.date(2026, 6, 30)
DIMENSIONS = ("rfm_segment", "lifecycle_stage", "audience_recall")
CARRIED = ("predicted_value_tier",)
CURRENT_COLUMNS = "customer_id string, rfm_segment string, lifecycle_stage string, audience_recall string"

WEEK_1 = [
    ("c1", "champions", "active", None),
    ("c2", "loyal", "repeat", "treatment"),  # unchanged next week
    ("c3", "loyal", "repeat", "treatment"),  # a tie with c2: unchanged too
    ("c4", "at_risk", "churn_warning", "control"),  # disappears next week
    ("c6", "hibernating", None, None),  # a null dimension; enters the audience next week
]
WEEK_2 = [
    ("c1", "at_risk", "active", None),  # moves segment
    ("c2", "loyal", "repeat", "treatment"),
    ("c3", "loyal", "repeat", "treatment"),
    ("c5", "one_time", "new", None),  # new customer
    ("c6", "hibernating", None, "control"),
]


def membership_rows(path) -> dict[str, dict]:
    """The whole membership table as delta-rs sees it (deletion vectors applied), by customer."""
    table = pa.table(QueryBuilder().register("m", DeltaTable(str(path))).execute("SELECT * FROM m"))
    return {r["customer_id"]: r for r in table.to_pylist()}


def feed(path, starting_version: int) -> list[dict]:
    """Change Data Feed rows from ``starting_version`` on, sorted."""
    rows = pa.table(DeltaTable(str(path)).load_cdf(starting_version=starting_version).read_all()).to_pylist()
    return sorted(rows, key=lambda r: (r["_commit_version"], r["customer_id"], r["_change_type"]))


class Lake:
    """One membership table and the change rows of each date, maintained the way the build does it."""

    def __init__(self, spark, root: Path) -> None:
        self.spark, self.path = spark, str(root / "segment_membership")
        self.changes: dict[dt.date, list[tuple]] = {}

    def state_df(self):
        if io.state_as_of(self.spark, self.path) is None:
            return None
        return io.read_table(self.spark, io_ref(self.path)).df

    def apply(self, as_of: dt.date, rows, run_id: str = "run", *, tiers: bool = False) -> io.MergeResult:
        """The build's step (``tiers``: score's step, the predicted-value tier of some current customers)."""
        if tiers:
            current_df = self.spark.createDataFrame(rows, "customer_id string, predicted_value_tier string")
            next_df = membership.next_state(
                current_df, self.state_df(), CARRIED, as_of, carried=DIMENSIONS, complete=False
            )
        else:
            current_df = self.spark.createDataFrame(rows, CURRENT_COLUMNS)
            next_df = membership.next_state(current_df, self.state_df(), DIMENSIONS, as_of, carried=CARRIED)
        next_df = next_df.cache()
        changes = membership.change_rows(next_df, as_of, run_id).collect()
        spec = outputs.spec("segment_membership")
        result = io.merge_state(
            membership.merge_source(next_df),
            self.path,
            spec.key,
            as_of,
            properties=spec.properties(),
            not_null=spec.constraints.not_null,
        )
        next_df.unpersist()
        self.changes[as_of] = sorted(tuple(r)[1:6] for r in changes)
        return result


def io_ref(path: str):
    from segmentation.config import TableRef

    return TableRef(path=path)


@pytest.fixture(scope="module")
def weeks(spark, tmp_path_factory):
    """Week 1, week 2, week 2 again (a rerun) and a backfill between them, with the versions each left."""
    lake = Lake(spark, tmp_path_factory.mktemp("membership"))
    first = lake.apply(D1, WEEK_1)
    second = lake.apply(D2, WEEK_2)
    changes_d2 = lake.changes[D2]
    rerun = lake.apply(D2, WEEK_2)
    return lake, first, second, changes_d2, rerun


def test_first_build_inserts_every_customer(weeks):
    lake, first, _, _, _ = weeks
    assert first.committed and not first.skipped
    rows = [r for r in feed(lake.path, 0) if r["_commit_version"] <= first.version]
    assert {r["_change_type"] for r in rows} == {"insert"}
    assert sorted(r["customer_id"] for r in rows) == ["c1", "c2", "c3", "c4", "c6"]
    entered = [c for c in lake.changes[D1] if c[2] == membership.ENTERED]
    # every non-null value enters: c1 two dimensions, c2 c3 c4 three, c6 one (null values do not enter)
    assert len(entered) == len(lake.changes[D1]) == 2 + 3 * 3 + 1


def test_a_moving_customer_gives_one_change_row_and_one_feed_update(weeks):
    lake, first, _, changes_d2, _ = weeks
    c1 = [c for c in changes_d2 if c[0] == "c1"]
    assert c1 == [("c1", "rfm_segment", "moved", "champions", "at_risk")]
    updates = [r for r in feed(lake.path, first.version + 1) if r["customer_id"] == "c1"]
    assert [r["_change_type"] for r in updates] == ["update_postimage", "update_preimage"]
    post, pre = updates
    assert (pre["rfm_segment"], pre["rfm_segment_since"]) == ("champions", D1)
    assert (post["rfm_segment"], post["previous_rfm_segment"]) == ("at_risk", "champions")
    assert post["rfm_segment_since"] == D2
    assert (post["previous_rfm_segment_since"], post["lifecycle_stage_since"], post["changed_on"]) == (D1, D1, D2)


def test_unchanged_customers_give_nothing(weeks):
    lake, first, _, changes_d2, _ = weeks
    assert not [c for c in changes_d2 if c[0] in ("c2", "c3")]
    assert not [r for r in feed(lake.path, first.version + 1) if r["customer_id"] in ("c2", "c3")]


def test_a_new_customer_is_an_insert(weeks):
    lake, first, _, changes_d2, _ = weeks
    rows = [r for r in feed(lake.path, first.version + 1) if r["customer_id"] == "c5"]
    assert [r["_change_type"] for r in rows] == ["insert"]
    assert (rows[0]["rfm_segment"], rows[0]["rfm_segment_since"], rows[0]["is_current"]) == ("one_time", D2, True)
    assert [c for c in changes_d2 if c[0] == "c5"] == [
        ("c5", "lifecycle_stage", "entered", None, "new"),
        ("c5", "rfm_segment", "entered", None, "one_time"),
    ]


def test_a_disappearing_customer_is_kept_as_left_with_its_last_values(weeks):
    """The documented outcome: an update to is_current=false, left_on, every dimension null, previous_* = last."""
    lake, first, _, changes_d2, _ = weeks
    rows = [r for r in feed(lake.path, first.version + 1) if r["customer_id"] == "c4"]
    assert [r["_change_type"] for r in rows] == ["update_postimage", "update_preimage"]
    post = rows[0]
    assert (post["is_current"], post["left_on"], post["rfm_segment"], post["previous_rfm_segment"]) == (
        False,
        D2,
        None,
        "at_risk",
    )
    assert (post["audience_recall"], post["previous_audience_recall"], post["audience_recall_since"]) == (
        None,
        "control",
        D2,
    )
    assert [c for c in changes_d2 if c[0] == "c4"] == [
        ("c4", "audience:recall", "exited", "control", None),
        ("c4", "lifecycle_stage", "exited", "churn_warning", None),
        ("c4", "rfm_segment", "exited", "at_risk", None),
    ]


def test_a_state_rebuilt_from_a_snapshot_seeds_every_customer(spark, tmp_path):
    """The first build after an upgrade: no membership table yet, so the state comes from the last ``customer_segments``
    and ``campaign_audiences`` slices; every customer is written, not only those who moved."""
    segments = spark.createDataFrame(
        [(c, r, s) for c, r, s, _ in WEEK_1], "customer_id string, rfm_segment string, lifecycle_stage string"
    )
    arms = spark.createDataFrame(
        [("recall", c, a) for c, _, _, a in WEEK_1 if a], "campaign_id string, customer_id string, arm string"
    )
    state_df = membership.state_from_snapshot(segments, arms, (*DIMENSIONS, *CARRIED))
    next_df = membership.next_state(
        spark.createDataFrame(WEEK_2, CURRENT_COLUMNS), state_df, DIMENSIONS, D2, carried=CARRIED
    ).cache()
    spec = outputs.spec("segment_membership")
    path = str(tmp_path / "segment_membership")
    io.merge_state(membership.merge_source(next_df), path, spec.key, D2, properties=spec.properties())
    changes = sorted(tuple(r)[1:6] for r in membership.change_rows(next_df, D2, "run").collect())
    next_df.unpersist()
    rows = membership_rows(path)
    assert sorted(rows) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert [(rows[c]["rfm_segment"], rows[c]["is_current"]) for c in ("c2", "c3")] == [("loyal", True)] * 2
    assert (rows["c4"]["is_current"], rows["c4"]["previous_rfm_segment"]) == (False, "at_risk")
    # the unchanged customers are written without a change row
    assert {c[0] for c in changes} == {"c1", "c4", "c5", "c6"}
    # once written, every row is stamped: a rerun commits nothing, and a week later nobody unchanged is a MERGE row
    week_2 = spark.createDataFrame(WEEK_2, CURRENT_COLUMNS)
    state_df = io.read_table(spark, io_ref(path)).df
    rerun = membership.merge_source(membership.next_state(week_2, state_df, DIMENSIONS, D2, carried=CARRIED))
    assert not io.merge_state(rerun, path, spec.key, D2, properties=spec.properties()).committed
    later = membership.next_state(week_2, state_df, DIMENSIONS, D2 + dt.timedelta(days=7), carried=CARRIED)
    assert membership.merge_source(later).count() == 0


def test_audience_entries_carry_the_arm(weeks):
    _, _, _, changes_d2, _ = weeks
    assert [c for c in changes_d2 if c[0] == "c6"] == [("c6", "audience:recall", "entered", None, "control")]


def test_rerun_of_the_same_date_commits_nothing_and_rewrites_the_same_changes(weeks):
    lake, _, second, changes_d2, rerun = weeks
    assert second.committed
    assert (rerun.committed, rerun.skipped, rerun.version) == (False, False, second.version)
    assert DeltaTable(lake.path).version() == second.version
    assert not [r for r in feed(lake.path, second.version) if r["_commit_version"] > second.version]
    assert lake.changes[D2] == changes_d2


def test_a_backfill_is_skipped_and_leaves_the_state(weeks, caplog):
    lake, _, second, _, _ = weeks
    before = membership_rows(lake.path)
    with caplog.at_level(logging.WARNING, logger="segmentation.io.merge"):
        result = lake.apply(D1 + dt.timedelta(days=3), WEEK_1)
    assert (result.skipped, result.committed, result.state_as_of) == (True, False, D2)
    assert "MERGE skipped" in caplog.text
    assert DeltaTable(lake.path).version() == second.version
    assert membership_rows(lake.path) == before
    assert DeltaTable(lake.path).metadata().configuration[io.STATE_PROPERTY] == D2.isoformat()


def test_score_sets_the_tier_of_current_customers_and_a_rebuild_of_the_date_keeps_it(weeks):
    """score owns predicted_value_tier, build the rest: each carries the other's values, so a rerun of the build after
    the score of the same date changes nothing, and customers who left are not scored back in."""
    lake, _, second, _, _ = weeks
    scored = lake.apply(D2, [("c1", "high"), ("c2", "low"), ("c3", "low"), ("c4", "high")], "score", tiers=True)
    assert scored.committed and scored.version == second.version + 1
    rows = feed(lake.path, scored.version)
    assert sorted((r["customer_id"], r["_change_type"]) for r in rows) == [
        (c, t) for c in ("c1", "c2", "c3") for t in ("update_postimage", "update_preimage")
    ]
    assert lake.changes[D2] == sorted(
        (c, "predicted_value_tier", "entered", None, tier) for c, tier in (("c1", "high"), ("c2", "low"), ("c3", "low"))
    )
    rerun = lake.apply(D2, WEEK_2)
    assert (rerun.committed, DeltaTable(lake.path).version()) == (False, scored.version)
    members = membership_rows(lake.path)
    assert {c: m["predicted_value_tier"] for c, m in members.items()} == {
        "c1": "high",
        "c2": "low",
        "c3": "low",
        "c4": None,
        "c5": None,
        "c6": None,
    }
    assert (members["c1"]["predicted_value_tier_since"], members["c1"]["rfm_segment"]) == (D2, "at_risk")


# ----------------------------------------------------------------------------------------------------------------------
# The build job, twice a week apart, on hand-made orders
# ----------------------------------------------------------------------------------------------------------------------
ORDERS_WEEK_1 = [
    ("o01", "c1", "2025-09-01T10:00:00", 100),
    ("o02", "c2", "2026-06-01T10:00:00", 50),
    ("o03", "c2", "2026-06-10T10:00:00", 50),
    ("o04", "c2", "2026-06-20T10:00:00", 50),
    ("o05", "c3", "2026-06-01T10:00:00", 50),  # c3 ties c2 order for order
    ("o06", "c3", "2026-06-10T10:00:00", 50),
    ("o07", "c3", "2026-06-20T10:00:00", 50),
    ("o08", "c4", "2026-05-01T10:00:00", 500),  # every order excluded in week 2: c4 disappears
    ("o09", "c4", "2026-05-20T10:00:00", 200),
    ("o10", "c6", "2025-01-15T10:00:00", 20),
    ("o11", "c7", "2026-03-03T10:00:00", 1000),
    ("o12", "c7", "2026-06-22T10:00:00", 80),
    ("o13", "c8", "2026-06-15T10:00:00", 60),
    ("o14", None, "2026-06-15T10:00:00", 60),  # no customer: rejected
    ("o15", "staff1", "2026-06-16T10:00:00", 10),  # excluded both weeks
]
ORDERS_WEEK_2 = [
    ("o21", "c1", "2026-06-25T10:00:00", 300),  # c1 comes back
    ("o22", "c5", "2026-06-28T10:00:00", 80),  # c5 is new
    ("o23", "c8", "2026-06-29T10:00:00", 70),
]
EXCLUSIONS = "customer_id string, channel string, reason string"
BACKFILL = D1 + dt.timedelta(days=3)


def _orders(spark, rows):
    from tests.conftest import ORDER_COLUMNS, order_row

    return spark.createDataFrame([order_row(o, c, ts, amount) for o, c, ts, amount in rows], ORDER_COLUMNS)


@pytest.fixture(scope="module")
def week_1(spark, conf_dir, tmp_path_factory):
    """The build of D1 on hand-made orders (each build is its own fixture: every test's timeout covers one build)."""
    from segmentation import pipelines
    from segmentation.config import load_settings

    lake = tmp_path_factory.mktemp("membership_builds")
    settings = load_settings(
        [conf_dir / "local.yaml"],
        [
            f"inputs.orders.path={lake / 'orders'}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"inputs.exclusions.path={lake / 'exclusions'}",
            f"outputs.path={lake / 'out'}",
            "quality.max_rejected_share=0.5",
            "spark.master=local[2]",
        ],
    )
    _orders(spark, ORDERS_WEEK_1).write.format("delta").save(settings.inputs.orders.path)
    spark.createDataFrame([("staff1", None, "staff")], EXCLUSIONS).write.format("delta").save(
        settings.inputs.exclusions.path
    )
    pipelines.run_build(spark, settings, D1)
    return settings, {"d1": DeltaTable(settings.outputs.table_path("segment_membership")).version()}


@pytest.fixture(scope="module")
def week_2(spark, week_1):
    """The build of D2 a week later: new orders (c1 back, c5 new), every order of c4 now excluded."""
    from segmentation import pipelines

    settings, versions = week_1
    _orders(spark, ORDERS_WEEK_2).write.format("delta").mode("append").save(settings.inputs.orders.path)
    excluded = [("staff1", None, "staff"), ("c4", None, "closed account")]
    spark.createDataFrame(excluded, EXCLUSIONS).write.format("delta").mode("overwrite").save(
        settings.inputs.exclusions.path
    )
    pipelines.run_build(spark, settings, D2)
    versions["d2"] = DeltaTable(settings.outputs.table_path("segment_membership")).version()
    return settings, versions


@pytest.fixture(scope="module")
def scored(spark, week_2):
    """score's step for D2: ``common.merge_predicted_value_tier`` on the D2 segments with a hand-made prediction."""
    from segmentation.pipelines import common
    from segmentation.runs import JobRun

    settings, versions = week_2
    segments_d2 = io.read_output(spark, settings.outputs.table_path("customer_segments"), D2)
    with JobRun(spark, settings, "score", D2) as run:
        run.begin({})
        scored_df = segments_d2.withColumn("clv", segments_d2["monetary"].cast("double"))
        tier_changes = [tuple(r) for r in common.merge_predicted_value_tier(run, scored_df).collect()]
    versions["score"] = DeltaTable(settings.outputs.table_path("segment_membership")).version()
    return settings, versions, tier_changes


@pytest.fixture(scope="module")
def backfill(spark, scored):
    """A build of a date between D1 and D2, after D2 and its score."""
    from segmentation import pipelines

    settings, versions, _ = scored
    result = pipelines.run_build(spark, settings, BACKFILL)
    versions["backfill"] = DeltaTable(settings.outputs.table_path("segment_membership")).version()
    return settings, versions, result


def read_slice(settings, table: str, as_of: dt.date) -> list[dict]:
    return (
        DeltaTable(settings.outputs.table_path(table))
        .to_pyarrow_table(filters=[("as_of_date", "=", as_of)])
        .to_pylist()
    )


def expected_changes(settings, before: dt.date | None, after: dt.date) -> list[tuple]:
    """The difference of two customer_segments slices (and campaign_audiences slices), computed in pandas."""
    import pandas as pd

    dims = membership.dimensions_of(settings)
    rule_dims = [d for d in dims.build if not d.startswith(membership.AUDIENCE_PREFIX)]

    def wide(as_of):
        if as_of is None:
            return pd.DataFrame(columns=["customer_id", *dims.build])
        segments = pd.DataFrame(read_slice(settings, "customer_segments", as_of))[["customer_id", *rule_dims]]
        arms = pd.DataFrame(
            read_slice(settings, "campaign_audiences", as_of), columns=["campaign_id", "customer_id", "arm"]
        )
        arms = arms.pivot(index="customer_id", columns="campaign_id", values="arm")
        arms.columns = [membership.audience_column(c) for c in arms.columns]
        # every dimension as a column, even an audience nobody is in on that date
        return segments.merge(arms.reset_index(), on="customer_id", how="left").reindex(
            columns=["customer_id", *dims.build]
        )

    joined = wide(before).merge(wide(after), on="customer_id", how="outer", suffixes=("_from", "_to"))
    rows = []
    for record in joined.to_dict("records"):
        for d in dims.build:
            source, target = (record.get(f"{d}_{side}") for side in ("from", "to"))
            source, target = (None if pd.isna(v) else v for v in (source, target))
            if source != target:
                rows.append((record["customer_id"], membership.change_dimension(d), source, target))
    return sorted(rows, key=str)


def actual_changes(settings, as_of: dt.date) -> list[tuple]:
    rows = read_slice(settings, "segment_changes", as_of)
    return sorted(((r["customer_id"], r["dimension"], r["from_value"], r["to_value"]) for r in rows), key=str)


@pytest.mark.e2e
def test_the_first_build_reports_every_customer_entered(week_1):
    settings, _ = week_1
    changes = actual_changes(settings, D1)
    assert changes == expected_changes(settings, None, D1)
    assert {c[2] for c in changes} == {None} and read_slice(settings, "segment_changes", D1)[0]["event"] == "entered"


@pytest.mark.e2e
def test_each_build_changes_equal_the_difference_of_two_segment_slices(week_2):
    settings, _ = week_2
    week = actual_changes(settings, D2)
    assert week == expected_changes(settings, D1, D2)
    assert ("c1", "rfm_segment") in {c[:2] for c in week}


@pytest.mark.e2e
def test_the_disappearing_customer_leaves_every_dimension(week_2):
    settings, _ = week_2
    c4 = [r for r in read_slice(settings, "segment_changes", D2) if r["customer_id"] == "c4"]
    assert {r["event"] for r in c4} == {membership.EXITED}
    assert {r["dimension"] for r in c4} >= set(settings.segments.rule_sets)
    row = membership_rows(settings.outputs.table_path("segment_membership"))["c4"]
    assert (row["is_current"], row["left_on"], row["rfm_segment"]) == (False, D2, None)
    assert row["previous_rfm_segment"] is not None


@pytest.mark.e2e
def test_the_snapshot_carries_previous_segment_and_since_from_the_membership(week_2):
    settings, _ = week_2
    members = membership_rows(settings.outputs.table_path("segment_membership"))
    segments = read_slice(settings, "customer_segments", D2)
    assert {r["customer_id"] for r in segments} == {c for c, m in members.items() if m["is_current"]}
    for row in segments:
        member = members[row["customer_id"]]
        for d in membership.SEGMENT_HISTORY:
            assert row[f"previous_{d}"] == member[f"previous_{d}"], (row["customer_id"], d)
            assert row[f"{d}_since"] == member[f"{d}_since"], (row["customer_id"], d)
    c1 = next(r for r in segments if r["customer_id"] == "c1")
    if (
        c1["rfm_segment"]
        != next(r for r in read_slice(settings, "customer_segments", D1) if r["customer_id"] == "c1")["rfm_segment"]
    ):
        assert c1["rfm_segment_since"] == D2 and c1["previous_rfm_segment"] is not None


@pytest.mark.e2e
def test_score_merges_the_predicted_value_tier_of_current_customers(scored):
    settings, versions, tier_changes = scored
    members = membership_rows(settings.outputs.table_path("segment_membership"))
    current = {c: m for c, m in members.items() if m["is_current"]}
    assert {m["predicted_value_tier"] for m in current.values()} == {"high", "medium", "low"}
    assert members["c4"]["predicted_value_tier"] is None  # left before it was scored
    assert sorted(r[1] for r in tier_changes) == sorted(current)
    assert {(r[2], r[3]) for r in tier_changes} == {("predicted_value_tier", "entered")}
    assert versions["score"] == versions["d2"] + 1


@pytest.mark.e2e
def test_a_backfill_build_skips_the_merge_and_compares_with_the_snapshot_before_it(backfill):
    settings, versions, result = backfill
    assert versions["backfill"] == versions["score"]
    assert "segment_membership" not in result.versions
    assert actual_changes(settings, BACKFILL) == expected_changes(settings, D1, BACKFILL)
    assert (
        DeltaTable(settings.outputs.table_path("segment_membership")).metadata().configuration[io.STATE_PROPERTY]
        == D2.isoformat()
    )


def sync_example(settings) -> dict:
    """The sync snippet of docs/activation.md, run as written against this lake."""
    text = (ROOT / "docs" / "activation.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- sync-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/activation.md", "exec"), namespace)
    namespace["OUTPUT"] = settings.outputs.path
    return namespace


@pytest.mark.e2e
def test_the_documented_sync_reads_the_feed_and_the_events(scored):
    settings, versions, tier_changes = scored
    example = sync_example(settings)
    everything, upto = example["membership_changes_since"](-1)
    assert upto == versions["score"]  # the latest complete run's membership version
    members = membership_rows(settings.outputs.table_path("segment_membership"))
    assert sorted(everything.column("customer_id").to_pylist()) == sorted(members)
    latest = {r["customer_id"]: r for r in everything.to_pylist()}
    for customer_id, member in members.items():
        assert (latest[customer_id]["rfm_segment"], latest[customer_id]["is_current"]) == (
            member["rfm_segment"],
            member["is_current"],
        )
    since_d1, _ = example["membership_changes_since"](versions["d1"])
    changed_d2 = {r["customer_id"] for r in read_slice(settings, "segment_changes", D2)} | {r[1] for r in tier_changes}
    assert set(since_d1.column("customer_id").to_pylist()) == changed_d2
    nothing, same = example["membership_changes_since"](upto)
    assert (nothing.num_rows, same) == (0, upto)

    entries = example["audience_entries"](D2.isoformat()).to_pylist()
    expected = sorted(
        (r["dimension"].removeprefix("audience:"), r["customer_id"])
        for r in read_slice(settings, "segment_changes", D2)
        if r["dimension"].startswith("audience:") and r["event"] == "entered" and r["to_value"] == "treatment"
    )
    assert [(r["campaign_id"], r["customer_id"]) for r in entries] == expected
    current = example["current_members"]()
    assert sorted(current.column("customer_id").to_pylist()) == sorted(c for c, m in members.items() if m["is_current"])


@pytest.mark.e2e
def test_the_report_shows_the_weeks_entries_and_exits(backfill, spark):
    from segmentation import report

    settings, *_ = backfill
    changes_df = io.read_output(spark, settings.outputs.table_path("segment_changes"))
    rows = {r["segment"]: r for r in report.entries_and_exits(changes_df, "rfm_segment", D2 - dt.timedelta(6), D2)}
    week = [r for r in read_slice(settings, "segment_changes", D2) if r["dimension"] == "rfm_segment"]
    week += [r for r in read_slice(settings, "segment_changes", BACKFILL) if r["dimension"] == "rfm_segment"]
    for segment, counts in rows.items():
        assert counts["entered"] == sum(r["to_value"] == segment for r in week)
        assert counts["exited"] == sum(r["from_value"] == segment for r in week)
        assert counts["left"] == sum(r["from_value"] == segment and r["to_value"] is None for r in week)
        assert counts["net"] == counts["entered"] - counts["exited"]
    inputs = report.ReportInputs(as_of=D2, segments_df=None, changes_df=changes_df)
    section = report.changes_section(inputs, "rfm_segment", ["champions", "at_risk"], str)
    assert section.image is not None and "of which gone" in section.table
    empty = report.changes_section(report.ReportInputs(as_of=D2, segments_df=None), "rfm_segment", [], str)
    assert empty.image is None and report.NOT_AVAILABLE in empty.note
