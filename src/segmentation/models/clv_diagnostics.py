"""What a reviewer of a CLV run looks at besides the metrics: small tables and the pictures drawn from them.

- the holdout check by calibration frequency (actual, model, naive; the table comes from
  :func:`.clv_holdout.evaluate_holdout`);
- repeat buyers' P(alive) by days since their last purchase, from the patterns the fit ran on (no Spark job);
- the calibration customers' cumulative repeat purchases, actual and expected, through the holdout (one shuffle by
  customer, only ``(cohort, period)`` counts on the driver).

Each table is logged as ``tables/<name>.json`` and each picture as ``images/<name>.png`` (docs/models.md).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.models import clv_training as ct
from segmentation.models.clv.purchase import PurchaseModel
from segmentation.transforms.columns import day_number, utc_day
from segmentation.transforms.features import KEY


def p_alive_by_recency(
    purchase: PurchaseModel,
    patterns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    band_starts_days: Sequence[int],
    time_unit: str,
) -> list[dict[str, Any]]:
    """Repeat buyers' P(alive) at the calibration end by how long they had been silent, from the fit's patterns
    ``(x, t_x, T, weight)`` in ``time_unit`` periods.

    One row per band of days since the last purchase (``[0, s1), [s1, s2), ..., [sn, inf)``): the customers in it and
    the customer-weighted mean and 10th, 50th and 90th percentiles of P(alive) (None for an empty band). A sound fit
    falls as silence grows; a degenerate one ("nobody ever leaves") is flat at 1. One-time buyers are left out: the
    model holds them alive by construction (they have not yet had a purchase after which to drop out).
    """
    x, t_x, age, w = (np.asarray(a, dtype=float) for a in patterns)
    repeat = x > 0
    x, t_x, age, w = x[repeat], t_x[repeat], age[repeat], w[repeat]
    alive = np.asarray(purchase.p_alive(x, t_x, age), dtype=float).reshape(-1)
    silent_days = (age - t_x) * ct.DAYS_PER_PERIOD[time_unit]
    starts = [0, *band_starts_days]
    rows = []
    for low, high in zip(starts, [*starts[1:], math.inf], strict=True):
        inside = (silent_days >= low) & (silent_days < high)
        values, weights = alive[inside], w[inside]
        row: dict[str, Any] = {
            "silent_days": f"{low}-{high - 1}" if math.isfinite(high) else f"{low}+",
            "customers": int(weights.sum()),
        }
        summary = weighted_summary(values, weights)
        rows.append({**row, **summary})
    return rows


def weighted_summary(values: np.ndarray, weights: np.ndarray) -> dict[str, float | None]:
    """Mean and 10th/50th/90th percentiles of ``values`` counted ``weights`` times (the lower value at a tie)."""
    keys = ("mean", "p10", "p50", "p90")
    if weights.sum() <= 0:
        return dict.fromkeys(keys)
    order = np.argsort(values, kind="stable")
    ordered, cumulative = values[order], np.cumsum(weights[order])
    total = cumulative[-1]
    quantiles = [float(ordered[np.searchsorted(cumulative, q * total)]) for q in (0.1, 0.5, 0.9)]
    return dict(zip(keys, [float(np.average(values, weights=weights)), *quantiles], strict=True))


@dataclass(frozen=True)
class RepeatCurve:
    """Calibration customers' first purchases (``births``) and repeat purchases (``repeats``) per period, from
    ``first`` (the earliest first-purchase period) to the holdout's last; period 0 is the first after ``end``."""

    end: dt.date
    as_of: dt.date
    days_per_period: int
    first: int
    births: np.ndarray
    repeats: np.ndarray


def repeat_curve(orders_df: DataFrame, end: dt.date, as_of: dt.date, time_unit: str, sale_status: str) -> RepeatCurve:
    """Count, per period up to as-of, the first and the repeat purchase periods of the customers whose first purchase
    falls in the calibration window (counted like the fit: purchase periods, the first apart). One shuffle by
    customer; only ``(cohort, period)`` counts reach the driver. Customers first seen in the holdout are left out."""
    from pyspark.sql import Window

    days = ct.DAYS_PER_PERIOD[time_unit]
    last = ((as_of - end).days - 1) // days
    up_to_as_of = orders_df.where(utc_day(F.col("order_ts")) <= F.lit(day_number(as_of)))
    periods_df = ct.purchase_periods(up_to_as_of, end, time_unit, sale_status).where(F.col("period") <= F.lit(last))
    counts = (
        periods_df.select("period", F.min("period").over(Window.partitionBy(KEY)).alias("cohort"))
        .where(F.col("cohort") < 0)
        .groupBy("cohort", "period")
        .count()
        .collect()
    )
    first = min((r["cohort"] for r in counts), default=-1)
    births, repeats = np.zeros(last + 1 - first), np.zeros(last + 1 - first)
    for r in counts:
        (births if r["period"] == r["cohort"] else repeats)[r["period"] - first] += r["count"]
    return RepeatCurve(end, as_of, days, first, births, repeats)


def cumulative_purchases(curve: RepeatCurve, purchase: PurchaseModel) -> list[dict[str, Any]]:
    """Cumulative repeat purchases of the calibration customers, actual and as the model expects, period by period.

    A cohort of ``n`` customers whose first purchase is in period ``c`` is expected to have made ``n * E[X(p - c)]``
    repeat purchases by the end of period ``p`` (:func:`clv.unconditional_expected_purchases`), so the expected curve
    is the births convolved with ``E[X(age)]``: a model that tracks the actual curve through the calibration window and
    on into the holdout has the aggregate purchase rhythm right.

    Returns:
        Rows ``period`` (0 = the first after the calibration end), ``period_end`` (its last day, at most as-of),
        ``actual`` and ``expected`` (both cumulative; ``expected`` None for the naive rate, which has no forecast for
        a customer without a past); empty without a calibration customer.
    """
    if not curve.births.sum():
        return []
    ages = np.arange(len(curve.births), dtype=float)
    by_age = purchase.unconditional_expected_purchases(ages)
    expected = [None] * len(ages) if by_age is None else np.convolve(curve.births, by_age)[: len(ages)]
    actual = np.cumsum(curve.repeats)
    days = curve.days_per_period
    return [
        {
            "period": curve.first + i,
            "period_end": str(min(curve.end + dt.timedelta(days=(curve.first + i + 1) * days), curve.as_of)),
            "actual": float(a),
            "expected": None if e is None else float(e),
        }
        for i, (a, e) in enumerate(zip(actual, expected, strict=True))
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------------------
def _axes() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    return fig, fig.add_subplot()


def _finish(fig: Any, ax: Any, title: str, xlabel: str, ylabel: str, legend: str = "best") -> Any:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend)
    fig.tight_layout()
    return fig


def calibration_figure(rows: list[dict[str, Any]]) -> Any:
    """Mean holdout purchases per customer by calibration frequency: actual, the model's and the naive forecast's
    (the check of Fader, Hardie & Lee 2005), with the customers behind each point under the axis."""
    fig, ax = _axes()
    x = np.arange(len(rows))
    ax.plot(x, [r["actual_mean"] for r in rows], "o-", color="#222222", label="actual")
    ax.plot(x, [r["expected_mean"] for r in rows], "s--", color="#1f77b4", label="model")
    if all("naive_mean" in r for r in rows):
        ax.plot(x, [r["naive_mean"] for r in rows], "^:", color="#d62728", label="naive (own past rate)")
    ax.set_xticks(x, [f"{r['frequency']}\n{r['customers']:,}" for r in rows])
    return _finish(
        fig,
        ax,
        "Holdout purchases by calibration frequency",
        "repeat purchases in calibration (customers below)",
        "mean holdout purchases per customer",
    )


def p_alive_figure(rows: list[dict[str, Any]]) -> Any:
    """Repeat buyers' P(alive) by days since their last purchase: the 10th-90th percentile range, the median and the
    mean per band, with the customers behind each band under the axis. A sound fit falls from left to right."""
    fig, ax = _axes()
    shown = [(i, r) for i, r in enumerate(rows) if r["customers"]]
    xs = [i for i, _ in shown]
    ax.vlines(
        xs,
        [r["p10"] for _, r in shown],
        [r["p90"] for _, r in shown],
        color="#1f77b4",
        lw=6,
        alpha=0.35,
        label="10th-90th percentile",
    )
    ax.plot(xs, [r["p50"] for _, r in shown], "_", color="#1f77b4", ms=22, mew=2, label="median")
    ax.plot(xs, [r["mean"] for _, r in shown], "D", color="#222222", ms=5, label="mean")
    ax.set_xticks(range(len(rows)), [f"{r['silent_days']}\n{r['customers']:,}" for r in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(-0.02, 1.05)
    return _finish(
        fig,
        ax,
        "P(alive) of repeat buyers by recency",
        "days since the last purchase at the calibration end (repeat buyers below)",
        "P(alive)",
        legend="lower left",
    )


def cumulative_figure(rows: list[dict[str, Any]]) -> Any:
    """Cumulative repeat purchases of the calibration customers, actual and expected, through the calibration window
    and the holdout (the calibration end marked): where the model's line bends away shows when it loses the rhythm."""
    fig, ax = _axes()
    days = [dt.date.fromisoformat(r["period_end"]) for r in rows]
    ax.plot(days, [r["actual"] for r in rows], "-", color="#222222", label="actual")
    if all(r["expected"] is not None for r in rows):
        ax.plot(days, [r["expected"] for r in rows], "--", color="#1f77b4", label="model")
    holdout = [d for d, r in zip(days, rows, strict=True) if r["period"] == -1]
    if holdout:
        ax.axvline(holdout[0], color="#888888", ls=":", label="calibration end")
    fig.autofmt_xdate()
    return _finish(
        fig,
        ax,
        "Repeat purchases of the calibration customers over time",
        "end of period",
        "cumulative repeat purchases",
        legend="upper left",
    )
