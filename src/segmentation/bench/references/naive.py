"""The naive PySpark RFM job the benchmark measures the product against: the reference to beat.

This is how RFM segmentation usually looks in tutorials and first notebooks, kept here on purpose so the benchmark
and the plan test can show what the product's ``build`` avoids:

* one ``groupBy`` per metric (recency, frequency, monetary, each window's count and amount), joined back on
  ``customer_id``: one shuffle of the orders per metric instead of one for all of them;
* ``ntile(5)`` over a window ordered by the metric with **no** ``partitionBy``: Spark moves every customer into a
  single partition (``Exchange SinglePartition``) and sorts them on one core, once per score;
* a Python UDF mapping the three scores to a segment name, where a ``CASE`` expression would stay in the JVM.

It produces the same kind of output as ``build`` (features with recency, frequency, monetary and the window
counts and amounts; R/F/M scores 1..bins; the ``rfm_segment`` of the configured rules), from the same valid orders,
so the outputs can be compared. ``ntile`` splits ties across buckets where the product's quantile cut points keep
equal values together, so a few percent of customers get a different score by design.

Nothing in the product imports this module; it is used by ``segmentation.bench.measure`` and the plan test only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, Window

from segmentation.config import CATCH_ALL, QualitySettings, RuleSet, Settings
from segmentation.transforms.columns import day_number, end_of_day_seconds

KEY = "customer_id"
_ALLOWED_CONDITION = re.compile(r"^[\sA-Za-z_0-9<>=!().]*$")


def valid_orders(orders_df: DataFrame, as_of: dt.date, quality: QualitySettings) -> DataFrame:
    """The same validity rules as the product, written as one filter plus ``dropDuplicates``.

    The generator's duplicates are exact replays, so keeping any copy equals the product's "earliest copy" rule.
    """
    amount = F.col("amount")
    amount_ok = amount.isNotNull() & ((amount > 0) if not quality.allow_zero_amount else (amount >= 0))
    ok = (
        F.col("customer_id").isNotNull()
        & (F.trim("customer_id") != "")
        & F.col("order_id").isNotNull()
        & (F.trim("order_id") != "")
        & F.col("order_ts").isNotNull()
        & amount_ok
        & F.coalesce(F.col("discount_amount") >= 0, F.lit(True))
        & F.upper(F.trim("currency")).isin(*[c.upper() for c in quality.currencies])
        & F.lower(F.trim("status")).isin(*[s.lower() for s in quality.statuses])
        & (F.unix_seconds("order_ts") < F.lit(end_of_day_seconds(as_of)))
    )
    return (
        orders_df.where(ok)
        .dropDuplicates(["channel", "order_id"])
        .withColumn(KEY, F.trim(KEY))
        .withColumn("status", F.lower(F.trim("status")))
        .withColumn("order_day", F.floor(F.unix_seconds("order_ts") / 86_400).cast("int"))
    )


def naive_features(orders_df: DataFrame, as_of: dt.date, settings: Settings) -> DataFrame:
    """Recency, frequency, monetary and every window's count and amount, one ``groupBy`` + join per metric."""
    today = day_number(as_of)
    sales = valid_orders(orders_df, as_of, settings.quality).where(F.col("status") == settings.quality.sale_status)
    rfm_sales = sales
    if settings.features.rfm_window_days is not None:
        rfm_sales = sales.where(F.col("order_day") > F.lit(today - settings.features.rfm_window_days))
    recency = sales.groupBy(KEY).agg((F.lit(today) - F.max("order_day")).alias("recency_days"))
    orders_total = sales.groupBy(KEY).agg(F.count("*").alias("orders_total"))
    frequency = rfm_sales.groupBy(KEY).agg(F.count("*").alias("frequency"))
    monetary = rfm_sales.groupBy(KEY).agg(F.sum("amount").cast("decimal(18,2)").alias("monetary"))
    features_df = recency.join(frequency, KEY, "left").join(monetary, KEY, "left").join(orders_total, KEY, "left")
    for days in settings.features.windows_days:
        in_window = sales.where(F.col("order_day") > F.lit(today - days))
        counts = in_window.groupBy(KEY).agg(F.count("*").alias(f"orders_{days}d"))
        amounts = in_window.groupBy(KEY).agg(F.sum("amount").cast("decimal(18,2)").alias(f"amount_{days}d"))
        features_df = features_df.join(counts, KEY, "left").join(amounts, KEY, "left")
    fill = {c: 0 for c in features_df.columns if c not in (KEY, "recency_days")}
    return features_df.fillna(fill).withColumn("as_of_date", F.lit(as_of))


_KEYWORDS = frozenset({"and", "or", "not", "true", "false"})


def python_rule(rule_set: RuleSet) -> tuple[Callable[..., str], list[str]]:
    """The rule set as a plain Python function, as a tutorial would hand-write it, and the columns it takes.

    Only comparisons of columns with numbers, AND, OR and NOT are supported (the default ``rfm_segment`` rules);
    anything else raises, since this reference does not reimplement Spark SQL.

    Returns:
        ``(segment, columns)``: ``segment(*values)`` takes the values of ``columns`` in that order.
    """
    compiled: list[tuple[str, object]] = []
    columns: list[str] = []
    for rule in rule_set.rules:
        text = rule.condition.strip()
        if text.lower() == CATCH_ALL:
            compiled.append((rule.name, None))
            continue
        if not _ALLOWED_CONDITION.match(text):
            raise ValueError(f"rule {rule.name!r}: the naive reference only evaluates simple comparisons, got {text!r}")
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
            if name.lower() not in _KEYWORDS and name not in columns:
                columns.append(name)
        python = re.sub(r"\b(AND|OR|NOT)\b", lambda m: m.group(1).lower(), text)
        python = re.sub(r"(?<![<>!=])=(?!=)", "==", python).replace("<>", "!=")
        compiled.append((rule.name, compile(python, f"<rule {rule.name}>", "eval")))

    def segment(*values: object) -> str:
        scope = dict(zip(columns, values, strict=True))
        for name, code in compiled:
            if code is None or eval(code, {"__builtins__": {}}, dict(scope)):
                return name
        return compiled[-1][0]

    return segment, columns


def naive_scores(features_df: DataFrame, settings: Settings) -> DataFrame:
    """``ntile`` scores over global windows and a Python UDF for the segment: the patterns the product avoids."""
    bins = settings.rfm.bins
    # The only unpartitioned windows in the code base (noqa-style exception to "no window without partitionBy"):
    # they are the anti-pattern this reference exists to measure, and the plan test asserts they are caught.
    by_recency = Window.orderBy(F.col("recency_days").desc())  # unpartitioned on purpose: the reference to beat
    by_frequency = Window.orderBy("frequency")  # unpartitioned on purpose: the reference to beat
    by_monetary = Window.orderBy("monetary")  # unpartitioned on purpose: the reference to beat
    segment, rule_columns = python_rule(settings.segments.rule_sets["rfm_segment"])
    to_segment = F.udf(segment, "string")
    return (
        features_df.withColumn("r_score", F.ntile(bins).over(by_recency))
        .withColumn("f_score", F.ntile(bins).over(by_frequency))
        .withColumn("m_score", F.ntile(bins).over(by_monetary))
        .withColumn("rfm_cell", F.concat_ws("", "r_score", "f_score", "m_score"))
        .withColumn("rfm_segment", to_segment(*rule_columns))
        .select(
            "as_of_date",
            KEY,
            "recency_days",
            "frequency",
            "monetary",
            "r_score",
            "f_score",
            "m_score",
            "rfm_cell",
            "rfm_segment",
        )
    )
