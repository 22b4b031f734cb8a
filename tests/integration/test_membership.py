"""segment_membership and segment_changes: MERGEd current state, its Change Data Feed and the change events.

The first part runs the membership transform and the MERGE on hand-made snapshots, dated one week apart; the second
runs the build job twice on hand-made orders and checks the changes against the two ``customer_segments`` slices
compared independently in pandas. Everything is read back with delta-rs (``deltalake``), as a downstream sync would:
the membership through its DataFusion ``QueryBuilder`` (the table has deletion vectors), the feed with ``load_cdf``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, QueryBuilder

from segmentation import io, outputs
from segmentation.transforms import membership

pytestmark = [pytest.mark.spark, pytest.mark.delta]

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

    def apply(self, as_of: dt.date, rows, run_id: str = "run") -> io.MergeResult:
        current_df = self.spark.createDataFrame(rows, CURRENT_COLUMNS)
        next_df = membership.next_state(current_df, self.state_df(), DIMENSIONS, as_of, run_id, carried=CARRIED)
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
