"""The rule engine: named rules whose conditions are Spark SQL boolean expressions.

An exclusive rule set becomes one CASE expression (first match wins; a condition that evaluates to null does not
match). A tag rule set becomes an array of the matching tags exploded into long rows. Rule sets are checked against
the schema of the columns they will see before any data is read, so a typo names its rule set, rule and column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.config import CATCH_ALL, ConfigError, RuleSet


def exclusive_column(rule_set: RuleSet) -> Column:
    """A CASE expression returning the name of the first matching rule."""
    *ordered, catch_all = rule_set.rules
    expr: Column = F.lit(catch_all.name)
    for rule in reversed(ordered):
        expr = F.when(F.expr(rule.condition), F.lit(rule.name)).otherwise(expr)
    return expr


def with_exclusive(df: DataFrame, column: str, rule_set: RuleSet) -> DataFrame:
    """Add ``column`` holding each row's segment from an exclusive rule set."""
    return df.withColumn(column, exclusive_column(rule_set))


def tag_rows(df: DataFrame, keys: Sequence[str], tag_group: str, rule_set: RuleSet) -> DataFrame:
    """Long rows ``(*keys, tag_group, tag)``: one per rule that matches a row (none when nothing matches)."""
    matches = F.array(*[F.when(F.expr(rule.condition), F.lit(rule.name)) for rule in rule_set.rules])
    return df.select(
        *keys, F.lit(tag_group).alias("tag_group"), F.explode(F.filter(matches, lambda t: t.isNotNull())).alias("tag")
    )


def check_rule_set(
    spark: SparkSession, schema: T.StructType, rule_set: RuleSet, where: str, source: str | None = None
) -> None:
    """Fail with a ConfigError if any condition does not parse, names an unknown column or is not boolean.

    Args:
        spark: a session used only for analysis: no data is read.
        schema: the columns the rule set will be evaluated on.
        rule_set: the rules.
        where: the dotted config key of the rule set (e.g. ``segments.rule_sets.lifecycle_stage``).
        source: the file (or command line) that set the rule set.
    """
    empty = spark.createDataFrame([], schema)
    conditions = [r.condition for r in rule_set.rules if r.condition.strip().lower() != CATCH_ALL]
    with contextlib.suppress(AnalysisException, ParseException):
        # One analysis for the whole set; rule by rule only to name what is wrong.
        fields = empty.select(*[F.expr(c).alias(f"c{i}") for i, c in enumerate(conditions)]).schema.fields
        if all(isinstance(f.dataType, (T.BooleanType, T.NullType)) for f in fields):
            return
    problems = []
    for rule in rule_set.rules:
        if rule.condition.strip().lower() == CATCH_ALL:
            continue
        try:
            dtype = empty.select(F.expr(rule.condition).alias("c")).schema["c"].dataType
        except (AnalysisException, ParseException) as exc:
            problems.append(f"rule '{rule.name}': {_first_line(exc)}")
            continue
        if not isinstance(dtype, (T.BooleanType, T.NullType)):
            problems.append(f"rule '{rule.name}': condition is {dtype.simpleString()}, not boolean")
    if problems:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}{where}: invalid rule condition\n  " + "\n  ".join(problems))


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "getMessage", lambda: str(exc))() or str(exc)
    return text.strip().splitlines()[0]


def display_names(rule_set: RuleSet) -> Mapping[str, tuple[str | None, str | None]]:
    """Rule name -> (English, Chinese) display names."""
    return {r.name: (r.display_name, r.display_name_zh) for r in rule_set.rules}
