"""Membership tiers as state: upgrades at once, downgrades only after a grace period.

A tier is a promise to the member: once reached, it is not taken away the first day the spend dips. So today's tier
depends on two things: the tier the features earn today (the qualification, an exclusive rule set) and the tier
held in the previous ``customer_segments`` snapshot with the date it was reached (``tier_since``) and the date the
member first failed to keep it (``tier_below_since``).

For each customer, with ``held`` the previous tier and ``qualified`` today's:

- no previous tier (new customer, first run, or a tier name no longer configured): the qualified tier;
- qualified at or above the held tier: the qualified tier (an upgrade applies at once);
- below, but the held tier's keep condition holds: the held tier, and the failing streak is reset;
- below and failing the keep condition: the held tier until ``grace_days`` have passed since ``tier_below_since``,
  then one level down (``one_level``, never below the qualified tier) or straight to the qualified tier
  (``to_qualified``). When the member still fails the new tier's keep condition, its grace starts on that day.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame
from pyspark.sql import types as T

from segmentation.config import TierSettings
from segmentation.transforms import rules

KEY = "customer_id"
QUALIFIED = "tier_qualified"
SINCE = "tier_since"
BELOW_SINCE = "tier_below_since"
STATE_COLUMNS = (QUALIFIED, SINCE, BELOW_SINCE)
STATE_TYPES = {QUALIFIED: T.StringType(), SINCE: T.DateType(), BELOW_SINCE: T.DateType()}

_PREV, _PREV_SINCE, _PREV_BELOW = "_prev_tier", "_prev_tier_since", "_prev_tier_below_since"


def _rank(settings: TierSettings, tier: Column) -> Column:
    """1 for the lowest tier upwards; 0 for null or a name that is not a configured tier."""
    return F.coalesce(F.array_position(F.array(*[F.lit(t) for t in settings.levels]), tier), F.lit(0)).cast("int")


def keeps_tier(settings: TierSettings, tier: Column, qualified: Column) -> Column:
    """Whether the customer keeps ``tier``: its keep condition, or (without one) qualifying for it today.

    The lowest tier is always kept; a keep condition that evaluates to null does not keep the tier.
    """
    qualified_rank = _rank(settings, qualified)
    expr: Column = F.lit(True)
    for level in reversed(settings.levels[1:]):
        keep = settings.keep.get(level)
        if keep is not None and keep.condition is not None:
            holds = F.coalesce(rules.condition(keep.condition), F.lit(False))
        else:
            holds = qualified_rank >= _rank(settings, F.lit(level))
        expr = F.when(tier == F.lit(level), holds).otherwise(expr)
    return expr


def _grace_days(settings: TierSettings, tier: Column) -> Column:
    expr: Column = F.lit(0)
    for level, keep in settings.keep.items():
        expr = F.when(tier == F.lit(level), F.lit(keep.grace_days)).otherwise(expr)
    return expr


def previous_state(previous_df: DataFrame | None, settings: TierSettings) -> DataFrame | None:
    """The previous snapshot reduced to ``(customer_id, tier, since, below_since)``; tolerant of older snapshots."""
    if previous_df is None:
        return None
    columns = set(previous_df.columns)

    def column(name: str, dtype: T.DataType) -> Column:
        return F.col(name).cast(dtype) if name in columns else F.lit(None).cast(dtype)

    return previous_df.select(
        KEY,
        column(settings.rule_set, T.StringType()).alias(_PREV),
        column(SINCE, T.DateType()).alias(_PREV_SINCE),
        column(BELOW_SINCE, T.DateType()).alias(_PREV_BELOW),
    )


def with_membership_tier(
    df: DataFrame, previous_df: DataFrame | None, settings: TierSettings, as_of: dt.date
) -> DataFrame:
    """Replace the qualification column ``settings.rule_set`` by the tier held, adding the state columns.

    Args:
        df: one row per customer with the qualification column (today's upgrade rule set) and the features the keep
            conditions read.
        previous_df: the previous ``customer_segments`` snapshot (or None on the first run).
        settings: tier order, keep conditions, grace periods, downgrade mode.
        as_of: the snapshot date; dates in the state are as-of dates.

    Returns:
        ``df`` with ``settings.rule_set`` holding the tier after upgrades and downgrades, ``tier_qualified`` (today's
        qualification), ``tier_since`` (first snapshot in the current tier) and ``tier_below_since`` (first snapshot of
        the current failing streak, null while the tier is kept).
    """
    column = settings.rule_set
    today = F.lit(as_of).cast("date")
    previous = previous_state(previous_df, settings)
    if previous is None:
        joined = df.select(
            "*",
            F.lit(None).cast("string").alias(_PREV),
            F.lit(None).cast("date").alias(_PREV_SINCE),
            F.lit(None).cast("date").alias(_PREV_BELOW),
        )
    else:
        joined = df.join(previous, KEY, "left")

    qualified = F.col(column)
    held = F.col(_PREV)
    qualified_rank = _rank(settings, qualified)
    held_rank = _rank(settings, held)
    levels = F.array(*[F.lit(t) for t in settings.levels])

    takes_qualified = (held_rank == 0) | (qualified_rank >= held_rank)
    keeps_held = keeps_tier(settings, held, qualified)
    streak_start = F.coalesce(F.col(_PREV_BELOW), today)
    grace_over = F.datediff(today, streak_start) >= _grace_days(settings, held)
    if settings.downgrade == "one_level":
        lowered = F.element_at(levels, F.greatest(held_rank - F.lit(1), qualified_rank, F.lit(1)))
    else:
        lowered = qualified
    tier = F.when(takes_qualified, qualified).when(keeps_held, held).when(grace_over, lowered).otherwise(held)
    with_tier = joined.withColumn(QUALIFIED, qualified).withColumn("_tier", tier)
    new_tier = F.col("_tier")
    still_failing = (_rank(settings, F.col(QUALIFIED)) < _rank(settings, new_tier)) & ~keeps_tier(
        settings, new_tier, F.col(QUALIFIED)
    )
    below_since = (
        F.when(takes_qualified | keeps_held, F.lit(None).cast("date"))
        .when(grace_over, F.when(still_failing, today))
        .otherwise(streak_start)
    )
    since = F.when(held.isNotNull() & (new_tier == held), F.coalesce(F.col(_PREV_SINCE), today)).otherwise(today)
    return (
        with_tier.withColumn(SINCE, since)
        .withColumn(BELOW_SINCE, below_since)
        .withColumn(column, new_tier)
        .drop("_tier", _PREV, _PREV_SINCE, _PREV_BELOW)
    )
