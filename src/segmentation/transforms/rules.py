"""The rule engine: named rules whose conditions are Spark SQL boolean expressions.

An exclusive rule set becomes one CASE expression (first match wins; a condition that evaluates to null does not
match). A tag rule set becomes an array of the matching tags exploded into long rows. Rule sets are checked against
the schema of the columns they will see before any data is read, so a typo names its rule set, rule and column.

Conditions cannot fail at run time. Spark runs in ANSI mode, where ``x / 0`` raises instead of giving null; every
condition is therefore compiled by :func:`safe_condition` first: the divisor of ``/``, ``%`` and ``div`` becomes
``nullif(divisor, 0)`` and ``cast``, ``mod`` and ``element_at`` their ``try_`` forms, so a failing sub-expression is
null and the rule does not match, as documented. Everything else keeps ANSI semantics (a sum that overflows still
fails loudly). Every caller compiles a condition through :func:`condition`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.config import CATCH_ALL, ConfigError, RuleSet

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<quoted>`(?:[^`]|``)*`)
      | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*)
      | (?P<word>[A-Za-z_][A-Za-z_0-9]*)
      | (?P<op>::|<=>|<>|!=|<=|>=|==|\|\||[-+*/%<>=!~&|^(),.\[\]:;])
      | (?P<other>.)""",
    re.VERBOSE,
)
# Functions whose ANSI form raises on bad input, and the form that returns null instead.
_TRY_FUNCTIONS = {"cast": "try_cast", "mod": "try_mod", "element_at": "try_element_at"}
_DIVISION = frozenset({"/", "%", "div"})
_UNARY = frozenset({"-", "+", "~"})
_VALUES = ("string", "number")
_LITERAL_PREFIXES = frozenset({"date", "timestamp", "timestamp_ltz", "timestamp_ntz", "x", "interval"})


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(text)]


def _skip_ws(tokens: list[tuple[str, str]], i: int) -> int:
    while i < len(tokens) and tokens[i][0] == "ws":
        i += 1
    return i


def _kind_at(tokens: list[tuple[str, str]], i: int) -> str | None:
    return tokens[i][0] if i < len(tokens) else None


def _close(tokens: list[tuple[str, str]], i: int, opening: str, closing: str) -> int:
    """Index after the token closing the bracket (or CASE) opened at ``i``; the end when it is never closed."""
    depth = 0
    for j in range(i, len(tokens)):
        value = tokens[j][1].lower() if tokens[j][0] == "word" else tokens[j][1]
        if tokens[j][0] not in ("op", "word"):
            continue
        if value == opening:
            depth += 1
        elif value == closing:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def _operand_end(tokens: list[tuple[str, str]], i: int) -> int:
    """End of the operand starting at ``i``: unary signs, one primary expression and its postfix accessors.

    ``*``, ``/``, ``%`` and ``div`` share a precedence level and associate to the left, so the right operand of a
    division is exactly this span (``a / b * c`` is ``(a / b) * c``).
    """
    i = _skip_ws(tokens, i)
    while i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in _UNARY:
        i = _skip_ws(tokens, i + 1)
    if i >= len(tokens):
        return i
    kind, value = tokens[i]
    if kind == "op" and value == "(":
        i = _close(tokens, i, "(", ")")
    elif kind == "word" and value.lower() == "case":
        i = _close(tokens, i, "case", "end")
    elif kind == "word" and value.lower() in _LITERAL_PREFIXES and _kind_at(tokens, _skip_ws(tokens, i + 1)) in _VALUES:
        i = _skip_ws(tokens, i + 1) + 1  # a typed literal: DATE '2026-01-01', INTERVAL 3 DAYS (its unit follows)
    else:
        i += 1
    while True:  # postfix: a call's arguments, [index], .field, ::type
        j = _skip_ws(tokens, i)
        if j >= len(tokens) or tokens[j][0] != "op":
            return i
        if tokens[j][1] == "(" and tokens[i - 1][0] in ("word", "quoted"):
            i = _close(tokens, j, "(", ")")
        elif tokens[j][1] == "[":
            i = _close(tokens, j, "[", "]")
        elif tokens[j][1] in (".", "::"):
            k = _skip_ws(tokens, j + 1)
            i = k + 1 if k < len(tokens) else k
            if tokens[j][1] == "::" and _skip_ws(tokens, i) < len(tokens) and tokens[_skip_ws(tokens, i)][1] == "(":
                i = _close(tokens, _skip_ws(tokens, i), "(", ")")
        else:
            return i


def safe_condition(text: str) -> str:
    """``text`` rewritten so that no sub-expression raises at run time where null is the documented answer.

    ``a / b``, ``a % b`` and ``a div b`` become ``a / nullif(b, 0)`` (null instead of DIVIDE_BY_ZERO in ANSI mode),
    and ``cast``, ``mod`` and ``element_at`` their ``try_`` forms. Strings and quoted identifiers are left alone. The
    result is a plain Spark SQL expression, so it works the same on a classic session and on Spark Connect.
    """
    tokens = _tokens(text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        lowered = value.lower()
        is_division = (kind == "op" and value in _DIVISION) or (kind == "word" and lowered == "div")
        if is_division:
            end = _operand_end(tokens, i + 1)
            start = _skip_ws(tokens, i + 1)
            operand = "".join(v for _, v in tokens[start:end])
            if operand:
                spacing = "".join(v for _, v in tokens[i + 1 : start]) or " "
                out.append(f"{value}{spacing}nullif({safe_condition(operand)}, 0)")
                i = end
                continue
        nxt = _skip_ws(tokens, i + 1)
        if kind == "word" and lowered in _TRY_FUNCTIONS and nxt < len(tokens) and tokens[nxt][1] == "(":
            previous = next((v for k, v in reversed(tokens[:i]) if k != "ws"), "")
            if previous != ".":
                out.append(_TRY_FUNCTIONS[lowered])
                i += 1
                continue
        out.append(value)
        i += 1
    return "".join(out)


def condition(text: str) -> Column:
    """A rule condition as a Column that never raises at run time (see :func:`safe_condition`)."""
    return F.expr(safe_condition(text))


def exclusive_column(rule_set: RuleSet) -> Column:
    """A CASE expression returning the name of the first matching rule."""
    *ordered, catch_all = rule_set.rules
    expr: Column = F.lit(catch_all.name)
    for rule in reversed(ordered):
        expr = F.when(condition(rule.condition), F.lit(rule.name)).otherwise(expr)
    return expr


def with_exclusive(df: DataFrame, column: str, rule_set: RuleSet) -> DataFrame:
    """Add ``column`` holding each row's segment from an exclusive rule set."""
    return df.withColumn(column, exclusive_column(rule_set))


def tag_rows(df: DataFrame, keys: Sequence[str], tag_group: str, rule_set: RuleSet) -> DataFrame:
    """Long rows ``(*keys, tag_group, tag)``: one per rule that matches a row (none when nothing matches)."""
    matches = F.array(*[F.when(condition(rule.condition), F.lit(rule.name)) for rule in rule_set.rules])
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
        fields = empty.select(*[condition(c).alias(f"c{i}") for i, c in enumerate(conditions)]).schema.fields
        if all(isinstance(f.dataType, (T.BooleanType, T.NullType)) for f in fields):
            return
    problems = []
    for rule in rule_set.rules:
        if rule.condition.strip().lower() == CATCH_ALL:
            continue
        try:
            dtype = empty.select(condition(rule.condition).alias("c")).schema["c"].dataType
        except (AnalysisException, ParseException) as exc:
            problems.append(f"rule '{rule.name}': {_first_line(exc)}")
            continue
        if not isinstance(dtype, (T.BooleanType, T.NullType)):
            problems.append(f"rule '{rule.name}': condition is {dtype.simpleString()}, not boolean")
    if problems:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}{where}: invalid rule condition\n  " + "\n  ".join(problems))


def check_column_name(
    name: str, existing: Collection[str], where: str, source: str | None = None, *, what: str = "rule set"
) -> None:
    """Fail with a ConfigError when a rule set would be written as a column that already exists.

    An exclusive rule set becomes a column of ``customer_segments``; named like a feature or score (``frequency``,
    ``value_class``, ``clv``) it would silently replace that column and break whatever reads it later, so it is refused
    before any data is read. Spark resolves column names case-insensitively, and so does this check.
    """
    taken = {c.lower(): c for c in existing}
    if name.lower() in taken:
        prefix = f"{source}: " if source else ""
        raise ConfigError(
            f"{prefix}{where}: the {what} '{name}' is named like the existing column '{taken[name.lower()]}', which "
            f"it would replace; rename the {what} (e.g. '{name}_segment')"
        )


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "getMessage", lambda: str(exc))() or str(exc)
    return text.strip().splitlines()[0]


def display_names(rule_set: RuleSet) -> Mapping[str, tuple[str | None, str | None]]:
    """Rule name -> (English, Chinese) display names."""
    return {r.name: (r.display_name, r.display_name_zh) for r in rule_set.rules}
