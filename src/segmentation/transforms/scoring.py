"""R/F/M scores, percentile ranks and ABC value classes without a global sort.

Cut points come from one ``approxQuantile`` pass over the customers for every column that needs them (score
boundaries and the percentile grid together) or from one min/max aggregation (equal width); they are a few numbers
per column, the only thing brought to the driver. Scores are then plain column expressions, so nothing moves all
customers into one partition the way ``ntile`` over an unpartitioned window does.

Boundary rule, the same for every method: a value equal to a cut point falls in the bucket of smaller values.
Higher scores are better: frequency and monetary score their bucket, recency scores the reverse.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import ConfigError, ScoreSettings, Settings, ValueClassSettings
from segmentation.transforms import population, segments

log = logging.getLogger(__name__)

RFM_METRICS: Mapping[str, str] = {"r_score": "recency_days", "f_score": "frequency", "m_score": "monetary"}
LOWER_IS_BETTER = frozenset({"recency_days"})


@dataclass(frozen=True)
class QuantileGrid:
    """Approximate quantiles of some columns at ``probabilities`` (ascending, within (0, 1))."""

    probabilities: tuple[float, ...]
    values: Mapping[str, tuple[float, ...]]

    def at(self, column: str, probability: float) -> float:
        index = min(range(len(self.probabilities)), key=lambda i: abs(self.probabilities[i] - probability))
        return self.values[column][index]


def quantile_grid(
    df: DataFrame, columns: Sequence[str], probabilities: Sequence[float], relative_error: float
) -> QuantileGrid:
    """One pass over ``df`` for the quantiles of every column (Greenwald-Khanna sketches per column)."""
    probs = tuple(sorted(set(round(p, 9) for p in probabilities)))
    if not columns:
        return QuantileGrid(probs, {})
    cast_df = df.select(*[F.col(c).cast("double").alias(c) for c in columns])
    result = cast_df.approxQuantile(list(columns), list(probs), relative_error)
    # No rows (or only nulls) gives no quantiles: a flat grid at 0 keeps every later expression well defined.
    return QuantileGrid(
        probs,
        {
            c: tuple(float(v) for v in vals) if vals else (0.0,) * len(probs)
            for c, vals in zip(columns, result, strict=True)
        },
    )


def score_probabilities(bins: int) -> list[float]:
    return [i / bins for i in range(1, bins)]


def grid_probabilities(resolution: int) -> list[float]:
    return [i / resolution for i in range(1, resolution)]


def equal_width_cuts(df: DataFrame, columns: Sequence[str], bins: int) -> dict[str, list[float]]:
    """Cut points splitting [min, max] of each column into ``bins`` equal intervals (one small aggregation)."""
    row = df.agg(*[F.min(c).alias(f"min_{c}") for c in columns], *[F.max(c).alias(f"max_{c}") for c in columns]).first()
    cuts: dict[str, list[float]] = {}
    for c in columns:
        low = float(row[f"min_{c}"] or 0.0)
        high = float(row[f"max_{c}"] or 0.0)
        step = (high - low) / bins
        cuts[c] = [low + i * step for i in range(1, bins)]
    return cuts


def score_cuts(df: DataFrame, settings: ScoreSettings, grid: QuantileGrid | None = None) -> dict[str, list[float]]:
    """Cut points of recency_days, frequency and monetary for the configured method."""
    metrics = list(RFM_METRICS.values())
    if settings.method == "thresholds":
        return {m: [float(v) for v in settings.thresholds[m]] for m in metrics}
    if settings.method == "equal_width":
        return equal_width_cuts(df, metrics, settings.bins)
    probs = score_probabilities(settings.bins)
    if grid is None or not all(m in grid.values for m in metrics):
        grid = quantile_grid(df, metrics, probs, settings.relative_error)
    return {m: [grid.at(m, p) for p in probs] for m in metrics}


def bucket(value: Column, cuts: Sequence[float]) -> Column:
    """1 + the number of cut points strictly below ``value``: equal values fall in the lower bucket; null stays null."""
    expr = F.lit(1)
    for cut in cuts:
        expr = expr + F.when(value > F.lit(cut), 1).otherwise(0)
    return F.when(value.isNotNull(), expr)


def score(value: Column, cuts: Sequence[float], lower_is_better: bool) -> Column:
    """A 1..len(cuts)+1 score where higher is better."""
    b = bucket(value, cuts)
    return (F.lit(len(cuts) + 2) - b if lower_is_better else b).cast("int")


def with_rfm_scores(df: DataFrame, cuts: Mapping[str, Sequence[float]]) -> DataFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` and the cell code ``rfm_cell`` (e.g. "545")."""
    for score_col, metric in RFM_METRICS.items():
        df = df.withColumn(score_col, score(F.col(metric), cuts[metric], metric in LOWER_IS_BETTER))
    return df.withColumn("rfm_cell", F.concat(*[F.col(c).cast("string") for c in RFM_METRICS]))


def _distinct_grid(grid_values: Sequence[float], probabilities: Sequence[float]) -> tuple[list[float], list[float]]:
    """Distinct grid values with, for each, the largest probability whose quantile equals it."""
    uniq: list[float] = []
    ranks: list[float] = []
    for v, p in zip(grid_values, probabilities, strict=True):
        if uniq and v == uniq[-1]:
            ranks[-1] = p
        else:
            uniq.append(v)
            ranks.append(p)
    return uniq, ranks


def _band(df: DataFrame, column: str, edges: Sequence[float], output: str) -> DataFrame:
    """Add ``output``: 0 below ``edges[0]``, k when edges[k-1] <= value < edges[k] (binary search in the JVM)."""
    from pyspark.ml.feature import Bucketizer

    splits = [float("-inf"), *edges, float("inf")]
    tmp = f"_{output}_input"
    bucketed = Bucketizer(splits=splits, inputCol=tmp, outputCol=output, handleInvalid="keep").transform(
        df.withColumn(tmp, F.col(column).cast("double"))
    )
    return bucketed.drop(tmp).withColumn(output, F.col(output).cast("int"))


def with_percentiles(df: DataFrame, columns: Sequence[str], grid: QuantileGrid) -> DataFrame:
    """Add ``<column>_pct``: approximate share of customers at or below the value (0..1), from the quantile grid.

    A value's rank is the largest grid probability whose quantile it reaches; resolution is the grid step.
    """
    for c in columns:
        uniq, ranks = _distinct_grid(grid.values[c], grid.probabilities)
        lookup = F.array(F.lit(0.0), *[F.lit(r) for r in ranks])
        rank = F.when(F.col(c).isNotNull(), F.element_at(lookup, F.col("_band") + 1))
        df = _band(df, c, uniq, "_band").withColumn(f"{c}_pct", rank).drop("_band")
    return df


def value_class_boundaries(
    df: DataFrame, grid: QuantileGrid, settings: ValueClassSettings, column: str = "monetary"
) -> list[float]:
    """Monetary thresholds of the ABC classes: customers at or above boundary k hold the first share k of revenue.

    Revenue is summed per band of the monetary quantile grid in one small aggregation (a band count's rows come to the
    driver, never customers); walking the bands from the top finds where each cumulative share is crossed.
    """
    uniq = sorted(set(grid.values[column]))
    banded = _band(df.select(column), column, uniq, "band")
    rows = banded.groupBy("band").agg(F.sum(column).cast("double").alias("revenue")).collect()
    revenue = {int(r["band"]): float(r["revenue"] or 0.0) for r in rows}
    total = sum(revenue.values())
    lower_edge = {0: float("-inf"), **{i + 1: v for i, v in enumerate(uniq)}}
    boundaries: list[float] = []
    cumulative = 0.0
    targets = list(settings.cumulative_revenue_shares)
    for b in sorted(revenue, reverse=True):
        cumulative += revenue[b]
        while targets and total > 0 and cumulative / total >= targets[0] - 1e-12:
            boundaries.append(lower_edge[b])
            targets.pop(0)
    boundaries += [float("-inf")] * len(targets)
    return boundaries


def with_value_class(df: DataFrame, boundaries: Sequence[float], settings: ValueClassSettings) -> DataFrame:
    """Add ``value_class``: the first class whose boundary the customer's monetary value reaches."""
    expr: Column = F.lit(settings.classes[-1])
    for label, boundary in reversed(list(zip(settings.classes[:-1], boundaries, strict=True))):
        if boundary == float("-inf"):
            expr = F.lit(label)
        else:
            expr = F.when(F.col("monetary") >= F.lit(boundary), F.lit(label)).otherwise(expr)
    return df.withColumn("value_class", expr)


def score_customers(
    features_df: DataFrame,
    settings: Settings,
    registrations_df: DataFrame | None = None,
    as_of: dt.date | None = None,
    check: segments.RuleCheck | None = None,
) -> DataFrame:
    """Percentiles, R/F/M scores, value class and every exclusive rule set, with one quantile pass.

    With ``registrations_df`` (from the profiles table) every customer gets its registration date, and registered
    customers without a completed order join as prospects after the scores, so percentiles and score cut points
    describe purchasers only and prospects carry null scores. ``check`` sees each rule set before it is applied.
    """
    pct_columns = list(settings.features.percentiles)
    missing = [c for c in pct_columns if c not in features_df.columns]
    if missing:
        raise ConfigError(f"features.percentiles: unknown feature column(s): {', '.join(missing)}")
    score_metrics = list(RFM_METRICS.values()) if settings.rfm.method == "quantile" else []
    probabilities = grid_probabilities(settings.features.percentile_resolution)
    grid_columns = sorted(set(score_metrics) | set(pct_columns) | {"monetary"})
    all_probabilities = probabilities + score_probabilities(settings.rfm.bins)
    if check is None:
        grid = quantile_grid(features_df, grid_columns, all_probabilities, settings.rfm.relative_error)
        cuts = score_cuts(features_df, settings.rfm, grid)
        log.info("rfm cut points (%s): %s", settings.rfm.method, {k: [round(v, 2) for v in c] for k, c in cuts.items()})
        boundaries = value_class_boundaries(features_df, grid, settings.value_class)
    else:  # the pre-flight check analyses the plan only: a flat grid instead of a pass over the customers
        probs = tuple(sorted(set(round(p, 9) for p in all_probabilities)))
        grid = QuantileGrid(probs, {c: (0.0,) * len(probs) for c in grid_columns})
        cuts = {m: [0.0] * (settings.rfm.bins - 1) for m in RFM_METRICS.values()}
        boundaries = [float("-inf")] * (len(settings.value_class.classes) - 1)
    scored = (
        features_df.transform(population.with_registration, registrations_df)
        .transform(with_percentiles, pct_columns, grid)
        .transform(with_rfm_scores, cuts)
    )
    if registrations_df is not None:
        if as_of is None:
            raise ValueError("score_customers needs as_of to add prospects")
        scored = scored.unionByName(population.prospect_rows(registrations_df, scored, as_of))
    return scored.transform(with_value_class, boundaries, settings.value_class).transform(
        segments.with_rule_sets, settings.segments.rule_sets, check
    )
