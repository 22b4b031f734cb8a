"""Segment membership as state: which segment of every dimension each customer holds, since when, and what changed.

``segment_membership`` has one row per customer ever seen. For every dimension ``d`` (each exclusive rule set,
``value_class``, one ``audience_<campaign_id>`` per campaign holding the arm, the predicted-value tier) it keeps four
columns: ``d`` (the value now), ``previous_d`` (the value it held before), ``d_since`` (the as-of date it took its
value) and ``previous_d_since``; plus ``is_current``, ``left_on`` and ``changed_on`` (the latest ``*_since``, or the
date the row was first written when none is known). No run id: two jobs (build, score) write the same rows on one
date, and a row must not differ by who wrote it last; the run of a change is in ``segment_changes`` and the
manifest. A job computes the next state of the dimensions it owns from one join of its customers with the state
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
IS_CURRENT, LEFT_ON, CHANGED_ON = "is_current", "left_on", "changed_on"
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
    return [KEY, IS_CURRENT, LEFT_ON, *per_dimension, CHANGED_ON]


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
    types = {IS_CURRENT: "boolean", LEFT_ON: "date", CHANGED_ON: "date"}
    for d in dimensions:
        types.update({d: "string", previous_of(d): "string", since_of(d): "date", previous_since_of(d): "date"})
    added = [F.lit(None).cast(t).alias(c) for c, t in types.items() if c not in present]
    return state_df.select(*[F.col(c) for c in state_df.columns], *added)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _str(text: str) -> str:
    """A Spark SQL string literal (dimension names are plain identifiers, but quote them safely anyway)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rewound(dimension: str, rewind: str, prefix: str) -> list[str]:
    """SQL of (value, previous, since, previous_since) of a dimension before the as-of date, as ``<prefix>v`` etc."""
    names = (dimension, previous_of(dimension), since_of(dimension), previous_since_of(dimension))
    d, p, s, ps = (_q(c) for c in names)
    return [
        f"CASE WHEN {rewind} THEN {p} ELSE {d} END AS {prefix}v",
        f"CASE WHEN {rewind} THEN NULL ELSE {p} END AS {prefix}p",
        f"CASE WHEN {rewind} THEN {ps} ELSE {s} END AS {prefix}s",
        f"CASE WHEN {rewind} THEN NULL ELSE {ps} END AS {prefix}ps",
    ]


def _change(dimension: str, changed: str, before: str, after: str) -> str:
    event = f"CASE WHEN {before} IS NULL THEN '{ENTERED}' WHEN {after} IS NULL THEN '{EXITED}' ELSE '{MOVED}' END"
    return (
        f"CASE WHEN {changed} THEN named_struct('dimension', {_str(change_dimension(dimension))}, 'event', {event},"
        f" 'from_value', {before}, 'to_value', {after}) END"
    )


def next_state(
    current_df: DataFrame,
    state_df: DataFrame | None,
    dimensions: Sequence[str],
    as_of: dt.date,
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
        now, an earlier run of this date touched it, or no run has stamped it yet).

    The expressions are SQL over named intermediate columns, step by step, so each rewound value is computed once per
    row rather than repeated inside every expression that reads it (dozens of dimensions make large plans otherwise).
    """
    today = f"DATE'{as_of.isoformat()}'"
    owned = list(dict.fromkeys(dimensions))
    others = [c for c in dict.fromkeys(carried) if c not in owned]
    known = [*owned, *others]
    passed = others if complete else []  # nulled when the customer leaves; in a partial update they pass through
    state = _conformed(state_df, current_df, known)
    now = current_df.select(
        KEY, *[F.col(d).cast("string").alias(f"_now{i}") for i, d in enumerate(owned)], F.lit(True).alias("_present")
    )
    joined = now.join(state, KEY, "full") if complete else now.join(state.where(F.col(IS_CURRENT)), KEY, "inner")
    extra = [c for c in state.columns if c not in state_columns(known)]

    # 1. every value as it was before the date (a value taken on the date itself is put back)
    rewound = []
    for i, d in enumerate(owned):
        rewound += _rewound(d, f"coalesce({_q(since_of(d))} = {today}, false)", f"_o{i}")
    for j, d in enumerate(passed):  # a carried value this date's leave nulled is put back too
        rewind = f"coalesce({_q(since_of(d))} = {today}, false) AND coalesce({_q(LEFT_ON)} = {today}, false)"
        rewound += _rewound(d, f"{rewind} AND {_q(d)} IS NULL", f"_c{j}")
    step = joined.selectExpr("*", *rewound, *(["coalesce(_present, false) AS _is_present"] if complete else []))
    # 2. what moved, who was there before
    flags = [f"NOT (_now{i} <=> _o{i}v) AS _o{i}m" for i in range(len(owned))]
    if complete:
        flags.append("(" + " OR ".join(f"_o{i}v IS NOT NULL" for i in range(len(owned))) + ") AS _was_present")
    step = step.selectExpr("*", *flags)
    if complete:
        step = step.selectExpr(
            "*",
            *[f"(_was_present AND NOT _is_present AND _c{j}v IS NOT NULL) AS _c{j}m" for j in range(len(passed))],
        )
    # 3. the next row and its changes
    columns: dict[str, str] = {}
    changes = []
    for i, d in enumerate(owned):
        m, v = f"_o{i}m", f"_o{i}v"
        columns[d] = f"_now{i}"
        columns[previous_of(d)] = f"CASE WHEN {m} THEN {v} ELSE _o{i}p END"
        columns[since_of(d)] = f"CASE WHEN {m} THEN {today} ELSE _o{i}s END"
        columns[previous_since_of(d)] = f"CASE WHEN {m} THEN _o{i}s ELSE _o{i}ps END"
        changes.append(_change(d, m, v, f"_now{i}"))
    for j, d in enumerate(passed):
        m, v = f"_c{j}m", f"_c{j}v"
        columns[d] = f"CASE WHEN {m} THEN NULL ELSE {v} END"
        columns[previous_of(d)] = f"CASE WHEN {m} THEN {v} ELSE _c{j}p END"
        columns[since_of(d)] = f"CASE WHEN {m} THEN {today} ELSE _c{j}s END"
        columns[previous_since_of(d)] = f"CASE WHEN {m} THEN _c{j}s ELSE _c{j}ps END"
        changes.append(_change(d, m, v, "CAST(NULL AS STRING)"))
    if complete:
        columns[IS_CURRENT] = "_is_present"
        columns[LEFT_ON] = f"CASE WHEN _is_present THEN NULL WHEN _was_present THEN {today} ELSE {_q(LEFT_ON)} END"
    # ``filter`` is a higher-order function, evaluated row by row outside generated code: only a row with a change
    # builds the array (a few percent of the rows on a daily run), the others get an empty one.
    moved = " OR ".join([f"_o{i}m" for i in range(len(owned))] + [f"_c{j}m" for j in range(len(passed))])
    step = step.selectExpr(
        *[f"{columns[c]} AS {_q(c)}" if c in columns else _q(c) for c in state_columns(known)[:-1]],
        _q(CHANGED_ON),
        *[_q(c) for c in extra],
        f"CASE WHEN {moved or 'false'} THEN filter(array({', '.join(changes)}), c -> c IS NOT NULL)"
        f" ELSE CAST(array() AS ARRAY<STRUCT<dimension: STRING, event: STRING, from_value: STRING,"
        f" to_value: STRING>>) END AS {CHANGES}",
        f"coalesce({moved or 'false'}, false) AS _moved",
        # an earlier run of this date wrote the row, or no run stamped it yet: a new customer, a state rebuilt from a
        # snapshot (the first build after an upgrade writes every customer, not only those who moved)
        f"coalesce({_q(CHANGED_ON)} = {today}, true) AS _touched",
    )
    since = [_q(since_of(d)) for d in known]
    latest = f"greatest({', '.join(since)})" if len(since) > 1 else since[0]
    return step.selectExpr(
        *[_q(c) for c in state_columns(known)[:-1]],
        # the latest ``_since``; a row written without any (its values' dates unknown) is stamped with this date
        f"coalesce({latest}, {_q(CHANGED_ON)}, CASE WHEN _moved OR _touched THEN {today} END) AS {CHANGED_ON}",
        *[_q(c) for c in extra],
        CHANGES,
        "(_moved OR _touched) AS _in_source",
    )


def merge_source(next_df: DataFrame) -> DataFrame:
    """The rows of ``next_state`` the MERGE upserts: changed now, touched by an earlier run of the same date, or not
    stamped by any run yet (the MERGE skips those equal to the table's row)."""
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
