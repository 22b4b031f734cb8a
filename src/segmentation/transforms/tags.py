"""Interest and behaviour tags as long rows: a customer carries as many tags as its features match.

Tags are not exclusive (a customer can prefer apparel, be coupon sensitive and shop on two channels), so they do not
fit a column of ``customer_segments``; CRM tools import them as ``(customer_id, tag_group, tag)`` rows. Every rule of
every tag rule set is evaluated in one pass over the customers: one array of the matching ``(group, tag)`` pairs per
customer, exploded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.config import RuleSet
from segmentation.transforms import rules

KEY = "customer_id"
TAG_COLUMNS = "as_of_date date, customer_id string, tag_group string, tag string, run_id string"


def customer_tags(df: DataFrame, rule_sets: Mapping[str, RuleSet], as_of: dt.date, run_id: str) -> DataFrame:
    """``(as_of_date, customer_id, tag_group, tag, run_id)``: one row per matching rule; ``tag_group`` is the set name.

    A condition that evaluates to null (e.g. a share of a customer without orders) does not tag.
    """
    matches = [
        F.when(
            rules.condition(rule.condition), F.struct(F.lit(group).alias("tag_group"), F.lit(rule.name).alias("tag"))
        )
        for group, rule_set in rule_sets.items()
        for rule in rule_set.rules
    ]
    if not matches:
        return df.sparkSession.createDataFrame([], TAG_COLUMNS)
    exploded = df.select(KEY, F.explode(F.filter(F.array(*matches), lambda m: m.isNotNull())).alias("m"))
    return exploded.select(
        F.lit(as_of).alias("as_of_date"),
        KEY,
        F.col("m.tag_group").alias("tag_group"),
        F.col("m.tag").alias("tag"),
        F.lit(run_id).alias("run_id"),
    )
