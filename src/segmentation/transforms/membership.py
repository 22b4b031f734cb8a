"""Segment membership as state: which segment of every dimension each customer holds, since when, and what changed.

``segment_membership`` has one row per customer ever seen. For every dimension ``d`` (each exclusive rule set,
``value_class``, one ``audience_<campaign_id>`` per campaign holding the arm, the predicted-value tier) it keeps four
columns: ``d`` (the value now), ``previous_d`` (the value it held before), ``d_since`` (the as-of date it took its
value) and ``previous_d_since``; plus ``is_current``, ``left_on``, ``changed_on`` (the latest ``*_since``) and
``run_id``. A job computes the next state of the dimensions it owns from one join of its customers with the state
(``next_state``); only rows that differ are MERGEd, so the table's Change Data Feed is exactly who entered, left or
moved, and the same pass gives the ``segment_changes`` rows (``change_rows``).

Rules that make a rerun change nothing:

- **Rewind.** The state may already hold this as-of date (a rerun, a retry): a value whose ``d_since`` is the as-of
  date is first put back to ``previous_d`` / ``previous_d_since``, so changes are always computed against the state
  *before* the date and a rerun finds the same changes and the same rows (which the MERGE then skips as equal).
- **Leaving.** A customer the job no longer sees (every order excluded, a deleted profile) keeps its row:
  ``is_current`` false, ``left_on`` the as-of date, every dimension null with its last value in ``previous_d``; each
  dimension gives an ``exited`` change. A returning customer ``entered`` again.
- **Ownership.** ``build`` owns every dimension but the predicted-value tier, which ``score`` owns; a job carries the
  dimensions it does not own as they are (nulling them only when the customer leaves), so neither undoes the other.

The state handed in must be as of a date on or before ``as_of`` (one date may be rewound, not several): a backfill
compares with a state rebuilt from the previous snapshot instead (``state_from_snapshot``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import CampaignSpec, ConfigError, Settings
from segmentation.transforms import audiences

KEY = "customer_id"
IS_CURRENT, LEFT_ON, CHANGED_ON, RUN_ID = "is_current", "left_on", "changed_on", "run_id"
ENTERED, EXITED, MOVED = "entered", "exited", "moved"
VALUE_CLASS = "value_class"
PREDICTED_VALUE_TIER = "predicted_value_tier"
AUDIENCE_PREFIX = "audience_"
CHANGES = "_changes"
SEGMENT_HISTORY = ("rfm_segment", "lifecycle_stage", "membership_tier")
CHANGE_COLUMNS = (
    "as_of_date date, customer_id string, dimension string, event string, from_value string, to_value string,"
    " run_id string"
)


def previous_of(dimension: str) -> str:
    return f"previous_{dimension}"


def since_of(dimension: str) -> str:
    return f"{dimension}_since"


def previous_since_of(dimension: str) -> str:
    return f"previous_{dimension}_since"


def audience_column(campaign_id: str) -> str:
    """The membership column of a campaign's audience: the arm while the customer is in it, null otherwise."""
    return f"{AUDIENCE_PREFIX}{campaign_id}"


def change_dimension(column: str) -> str:
    """The ``segment_changes.dimension`` of a membership column: ``audience:<campaign_id>`` for audiences."""
    if column.startswith(AUDIENCE_PREFIX):
        return f"audience:{column.removeprefix(AUDIENCE_PREFIX)}"
    return column


def state_columns(dimensions: Sequence[str]) -> list[str]:
    """Every column of ``segment_membership`` for these dimensions, in table order."""
    per_dimension = [c for d in dimensions for c in (d, previous_of(d), since_of(d), previous_since_of(d))]
    return [KEY, IS_CURRENT, LEFT_ON, *per_dimension, CHANGED_ON, RUN_ID]


@dataclass(frozen=True)
class Dimensions:
    """The membership dimensions of a configuration: those ``build`` owns and those ``score`` owns."""

    build: tuple[str, ...]
    score: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.build, *self.score)


def dimensions_of(settings: Settings) -> Dimensions:
    """Every exclusive rule set, ``value_class`` and every campaign (build); the predicted-value tier (score)."""
    clash = [name for name in settings.segments.rule_sets if name.startswith(AUDIENCE_PREFIX)]
    if clash:
        raise ConfigError(
            f"segments.rule_sets.{clash[0]}: a rule set name may not start with '{AUDIENCE_PREFIX}' "
            "(segment_membership names the campaign audience columns so)"
        )
    build = (
        *settings.segments.rule_sets,
        VALUE_CLASS,
        *(audience_column(c.id) for c in settings.audiences.campaigns),
    )
    score = (PREDICTED_VALUE_TIER,) if settings.activation.predicted_value_tier is not None else ()
    return Dimensions(tuple(dict.fromkeys(build)), score)


def current_values(
    population_df: DataFrame,
    rule_set_names: Sequence[str],
    campaigns: Sequence[CampaignSpec],
    as_of: dt.date,
    rotation_days: int | None = None,
) -> DataFrame:
    """``customer_id`` and the value of every build dimension, from the scored population (no join: the audience arms
    are expressions over the same rows)."""
    arms = audiences.arm_columns(campaigns, as_of, rotation_days)
    return population_df.select(
        KEY,
        *[F.col(c).cast("string").alias(c) for c in dict.fromkeys([*rule_set_names, VALUE_CLASS])],
        *[column.alias(audience_column(campaign_id)) for campaign_id, column in arms.items()],
    )


def _conformed(state_df: DataFrame | None, current_df: DataFrame, dimensions: Sequence[str]) -> DataFrame:
    """The state with every column of ``dimensions`` (null where the table predates a dimension); other columns of the
    table (a dimension no longer configured) pass through untouched."""
    spark = current_df.sparkSession
    if state_df is None:
        state_df = spark.createDataFrame([], f"{KEY} string")
    present = set(state_df.columns)
    types = {IS_CURRENT: "boolean", LEFT_ON: "date", CHANGED_ON: "date", RUN_ID: "string"}
    for d in dimensions:
        types.update({d: "string", previous_of(d): "string", since_of(d): "date", previous_since_of(d): "date"})
    added = [F.lit(None).cast(t).alias(c) for c, t in types.items() if c not in present]
    return state_df.select(*[F.col(c) for c in state_df.columns], *added)


def _rewound(dimension: str, rewind: Column) -> tuple[Column, Column, Column, Column]:
    """(value, previous, since, previous_since) of a dimension before the as-of date."""
    d, p, s, ps = (
        F.col(c) for c in (dimension, previous_of(dimension), since_of(dimension), previous_since_of(dimension))
    )
    return (
        F.when(rewind, p).otherwise(d),
        F.when(~rewind, p),
        F.when(rewind, ps).otherwise(s),
        F.when(~rewind, ps),
    )


def _change(dimension: str, before: Column, after: Column) -> Column:
    event = F.when(before.isNull(), F.lit(ENTERED)).when(after.isNull(), F.lit(EXITED)).otherwise(F.lit(MOVED))
    return F.when(
        ~after.eqNullSafe(before),
        F.struct(
            F.lit(change_dimension(dimension)).alias("dimension"),
            event.alias("event"),
            before.alias("from_value"),
            after.alias("to_value"),
        ),
    )


def next_state(
    current_df: DataFrame,
    state_df: DataFrame | None,
    dimensions: Sequence[str],
    as_of: dt.date,
    run_id: str,
    *,
    carried: Sequence[str] = (),
    complete: bool = True,
) -> DataFrame:
    """The membership rows after ``as_of`` for the owned ``dimensions``, with the changes found, in one join.

    Args:
        current_df: ``customer_id`` and one column per owned dimension, one row per customer the job evaluated.
        state_df: ``segment_membership`` as of a date on or before ``as_of`` (None: no state yet).
        dimensions: the dimensions this job owns (computed here); ``carried`` the other known ones (kept as they are,
            nulled when the customer leaves).
        complete: ``current_df`` is the whole population, so a current customer missing from it has left. False for a
            job that scores part of it: only current customers of the state that are in ``current_df`` are updated.

    Returns:
        Every column of ``state_columns`` (plus any other column of the table), ``_changes`` (array of
        ``dimension, event, from_value, to_value``) and ``_in_source``: whether the row goes into the MERGE (it changed
        now, or an earlier run of this date touched it).
    """
    today = F.lit(as_of).cast("date")
    owned, carried = list(dict.fromkeys(dimensions)), [c for c in dict.fromkeys(carried) if c not in dimensions]
    state = _conformed(state_df, current_df, [*owned, *carried])
    now = current_df.select(
        KEY, *[F.col(d).cast("string").alias(f"_now{i}") for i, d in enumerate(owned)], F.lit(True).alias("_present")
    )
    joined = now.join(state, KEY, "full") if complete else now.join(state.where(F.col(IS_CURRENT)), KEY, "inner")

    columns: dict[str, Column] = {}
    changes: list[Column] = []
    before_values = []
    for i, d in enumerate(owned):
        value, previous, since, previous_since = _rewound(d, F.coalesce(F.col(since_of(d)) == today, F.lit(False)))
        after = F.col(f"_now{i}")
        moved = ~after.eqNullSafe(value)
        columns[d] = after
        columns[previous_of(d)] = F.when(moved, value).otherwise(previous)
        columns[since_of(d)] = F.when(moved, today).otherwise(since)
        columns[previous_since_of(d)] = F.when(moved, since).otherwise(previous_since)
        changes.append(_change(d, value, after))
        before_values.append(value)

    if complete:
        present = F.coalesce(F.col("_present"), F.lit(False))
        # present before the date: any owned value (every exclusive rule set has a catch-all, so never all null)
        was_present = F.lit(False)
        for value in before_values:
            was_present = was_present | value.isNotNull()
        leaving = was_present & ~present
        left_today = F.coalesce(F.col(LEFT_ON) == today, F.lit(False))
        for d in carried:
            # a carried value this date's leave already nulled is rewound like an owned one
            rewind = F.coalesce(F.col(since_of(d)) == today, F.lit(False)) & left_today & F.col(d).isNull()
            value, previous, since, previous_since = _rewound(d, rewind)
            drop = leaving & value.isNotNull()
            columns[d] = F.when(~drop, value)
            columns[previous_of(d)] = F.when(drop, value).otherwise(previous)
            columns[since_of(d)] = F.when(drop, today).otherwise(since)
            columns[previous_since_of(d)] = F.when(drop, since).otherwise(previous_since)
            changes.append(_change(d, value, columns[d]))
        columns[IS_CURRENT] = present
        columns[LEFT_ON] = F.when(present, F.lit(None).cast("date")).when(was_present, today).otherwise(F.col(LEFT_ON))

    found = F.filter(F.array(*changes), lambda c: c.isNotNull()) if changes else F.array()
    updated = joined.withColumns(columns).withColumn(CHANGES, found)
    since_columns = [F.col(since_of(d)) for d in [*owned, *carried]]
    latest = F.greatest(*since_columns) if len(since_columns) > 1 else since_columns[0]
    touched = F.coalesce(F.col(CHANGED_ON) == today, F.lit(False))  # an earlier run of this date wrote the row
    in_source = (F.size(CHANGES) > 0) | touched
    extra = [c for c in state.columns if c not in state_columns([*owned, *carried])]
    return updated.select(
        *[F.col(c) for c in state_columns([*owned, *carried])[:-2]],
        F.coalesce(latest, F.col(CHANGED_ON)).alias(CHANGED_ON),
        F.when(in_source, F.lit(run_id)).otherwise(F.col(RUN_ID)).alias(RUN_ID),
        *[F.col(c) for c in extra],
        F.col(CHANGES),
        in_source.alias("_in_source"),
    )


def merge_source(next_df: DataFrame) -> DataFrame:
    """The rows of ``next_state`` the MERGE upserts: changed now, or touched by an earlier run of the same date."""
    return next_df.where(F.col("_in_source")).drop(CHANGES, "_in_source")


def change_rows(next_df: DataFrame, as_of: dt.date, run_id: str) -> DataFrame:
    """``segment_changes`` rows: one per customer and dimension whose value changed on ``as_of``."""
    return next_df.select(KEY, F.explode(CHANGES).alias("c")).select(
        F.lit(as_of).cast("date").alias("as_of_date"),
        KEY,
        F.col("c.dimension").alias("dimension"),
        F.col("c.event").alias("event"),
        F.col("c.from_value").alias("from_value"),
        F.col("c.to_value").alias("to_value"),
        F.lit(run_id).alias("run_id"),
    )


def with_segment_history(
    segments_df: DataFrame, next_df: DataFrame, dimensions: Sequence[str] = SEGMENT_HISTORY
) -> DataFrame:
    """``customer_segments`` plus ``previous_<d>`` and ``<d>_since`` of each dimension, read from the membership state,
    so a CRM can filter "moved down since last week" on one slice."""
    present = [d for d in dimensions if d in segments_df.columns and d in next_df.columns]
    if not present:
        return segments_df
    history = next_df.select(KEY, *[F.col(c) for d in present for c in (previous_of(d), since_of(d))])
    return segments_df.join(history, KEY, "left")


def state_from_snapshot(segments_df: DataFrame, audiences_df: DataFrame | None, dimensions: Sequence[str]) -> DataFrame:
    """A membership state rebuilt from a ``customer_segments`` slice and its ``campaign_audiences`` slice.

    For a backfill (the real state is ahead of the date) and for the first build after an upgrade. Values come from the
    snapshot; ``previous_d`` and ``d_since`` where the snapshot keeps them (rfm segment, lifecycle stage, tier),
    unknown (null) otherwise.
    """
    present = set(segments_df.columns)
    campaign_columns = [d for d in dimensions if d.startswith(AUDIENCE_PREFIX)]
    base = segments_df
    if campaign_columns and audiences_df is not None:
        arms = audiences_df.groupBy(KEY).agg(
            *[
                F.max(F.when(F.col("campaign_id") == F.lit(c.removeprefix(AUDIENCE_PREFIX)), F.col("arm"))).alias(c)
                for c in campaign_columns
            ]
        )
        base = base.join(arms, KEY, "left")
        present |= set(campaign_columns)

    def column(name: str, dtype: str) -> Column:
        return (F.col(name) if name in present else F.lit(None)).cast(dtype).alias(name)

    return base.select(
        KEY,
        F.lit(True).alias(IS_CURRENT),
        F.lit(None).cast("date").alias(LEFT_ON),
        *[
            c
            for d in dimensions
            for c in (
                column(d, "string"),
                column(previous_of(d), "string"),
                column(since_of(d), "date"),
                F.lit(None).cast("date").alias(previous_since_of(d)),
            )
        ],
        F.lit(None).cast("date").alias(CHANGED_ON),
        column(RUN_ID, "string"),
    )


def predicted_value_tier(
    scored_df: DataFrame, column: str, tiers: Sequence[str], top_shares: Sequence[float]
) -> DataFrame:
    """``customer_id, predicted_value_tier`` of every customer with a prediction in ``column``.

    The cut points are approximate quantiles of the predictions (one pass, no sort): the first tier holds the top
    ``top_shares[0]`` of customers, and so on; a customer without a prediction gets no tier.
    """
    value = F.col(column).cast("double")
    probabilities = [1.0 - s for s in top_shares]
    row = scored_df.where(value.isNotNull()).agg(F.percentile_approx(value, probabilities, 10_000).alias("q")).first()
    cuts = list(row["q"]) if row is not None and row["q"] is not None else []
    tier: Column = F.lit(tiers[-1])
    for name, cut in reversed(list(zip(tiers[:-1], cuts, strict=False))):
        tier = F.when(value >= F.lit(cut), F.lit(name)).otherwise(tier)
    return scored_df.where(value.isNotNull()).select(KEY, tier.alias(PREDICTED_VALUE_TIER))
