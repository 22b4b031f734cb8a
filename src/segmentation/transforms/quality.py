"""Row-level validation of orders: every row is either valid or carries a reason code, never dropped.

``valid + rejected = input`` holds by construction: one ``reject_reason`` column is computed for every input row and
the two outputs are its null and non-null halves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window

from segmentation.config import QualitySettings
from segmentation.errors import InputError
from segmentation.transforms.columns import clean_text, end_of_day_seconds, is_blank, parse_utc_timestamp

REASON = "reject_reason"
PARSE_REASON = "_parse_reason"
EXCLUDED = "_excluded"
DUP_RANK = "_dup_rank"
WRITTEN_AT = "_written_at"
_REPEATED = "_repeated_key"
DUPLICATE_KEY = ("channel", "order_id")
KEY_HASH = "_order_key_hash"
AMOUNT_TYPE = "decimal(18,2)"

_ROW_REASON = "_row_reason"

# Reason codes, in priority order: a row with several problems gets the first.
EXCLUDED_CUSTOMER = "excluded_customer"
MISSING_ORDER_ID = "missing_order_id"
UNPARSEABLE_ORDER_TS = "unparseable_order_ts"
MISSING_ORDER_TS = "missing_order_ts"
NON_NUMERIC_AMOUNT = "non_numeric_amount"  # also NaN in a floating-point column
AMOUNT_OUT_OF_RANGE = "amount_out_of_range"  # infinite, beyond decimal(18,2) or above quality.max_order_amount
INVALID_AMOUNT = "invalid_amount"
INVALID_DISCOUNT = "invalid_discount"
UNKNOWN_CURRENCY = "unknown_currency"
UNKNOWN_STATUS = "unknown_status"
FUTURE_ORDER_TS = "future_order_ts"
GUEST_ORDER = "guest_order"  # no customer id (a guest checkout): not bad data, see not_counted_reasons
DUPLICATE_ORDER = "duplicate_order"

# Rows set aside on purpose (staff, test accounts): reported in orders_rejected, not counted as bad input.
INTENTIONAL_REASONS = frozenset({EXCLUDED_CUSTOMER})
# What the rejected share leaves out with the default configuration (guest orders not counted).
DEFAULT_NOT_COUNTED = frozenset({EXCLUDED_CUSTOMER, GUEST_ORDER})
_NOT_COUNTED_LABELS = {EXCLUDED_CUSTOMER: "excluded rows", GUEST_ORDER: "guest orders"}

# The case each code column folds to when ``quality.case_insensitive`` names it.
_CASE_FOLDS = {"channel": (F.lower, str.lower), "status": (F.lower, str.lower), "currency": (F.upper, str.upper)}
KEY_AND_CODE_COLUMNS = ("order_id", "channel", "customer_id", "status", "currency")


def _folds(column: str, quality: QualitySettings | None) -> bool:
    return column in _CASE_FOLDS and (quality is None or column in quality.case_insensitive)


def normalised(column: str, quality: QualitySettings | None = None) -> Column:
    """The one normalisation of a key or code column, used by every check, the duplicate key and every join.

    Trimmed of Unicode whitespace and invisible characters (``columns.clean_text``); channel and status folded to lower
    case and currency to upper case when ``quality.case_insensitive`` names them (all three without ``quality``).
    """
    value = clean_text(F.col(column))
    return _CASE_FOLDS[column][0](value) if _folds(column, quality) else value


def _normalised_values(column: str, values: Collection[str], quality: QualitySettings | None) -> list[str]:
    """Configured codes normalised like the column they are compared with."""
    stripped = [v.strip() for v in values]
    return [_CASE_FOLDS[column][1](v) for v in stripped] if _folds(column, quality) else stripped


def _not_one_of(column: str, values: Collection[str], quality: QualitySettings) -> Column:
    """The normalised column is null or not among ``values``."""
    return ~F.coalesce(normalised(column, quality).isin(*_normalised_values(column, values, quality)), F.lit(False))


def not_counted_reasons(quality: QualitySettings) -> frozenset[str]:
    """Reasons left out of the rejected share: exclusions always, guest orders unless configured to count."""
    return INTENTIONAL_REASONS | (frozenset() if quality.guest_orders_count_as_rejected else {GUEST_ORDER})


def _impossible_ts(as_of: dt.date | None, quality: QualitySettings, written: bool) -> Column:
    """A timestamp that cannot be true. With an as-of date (a row-level check of one snapshot): after that day.
    Without one (ingestion, which does not depend on the as-of date): later than the row's data file was written
    (``_written_at``, from the file metadata) plus ``quality.future_tolerance_hours``; rows without it are not checked.
    """
    if as_of is not None:
        return F.unix_seconds(F.col("order_ts")) >= F.lit(end_of_day_seconds(as_of))
    if not written:
        return F.lit(False)
    limit = F.unix_seconds(F.col(WRITTEN_AT)) + F.lit(int(quality.future_tolerance_hours * 3600))
    return F.coalesce(F.unix_seconds(F.col("order_ts")) > limit, F.lit(False))


def reject_reason(
    as_of: dt.date | None,
    quality: QualitySettings,
    *,
    parsed: bool = False,
    excluded: bool = False,
    written: bool = False,
) -> Column:
    """The first problem of a row on its own, or null: every reason but ``duplicate_order`` (``with_reject_reason``).

    ``parsed``: the row carries ``_parse_reason`` from ``with_parsed_text``. ``excluded``: it carries the boolean
    ``_excluded`` from ``with_exclusion_flag``. Keys and codes are compared normalised (:func:`normalised`); a blank
    customer id is a guest order, which comes after every real problem so a broken guest row counts as broken.
    """
    amount = F.col("amount")
    bad_amount = amount.isNull() | (amount < 0) | ((amount == 0) if not quality.allow_zero_amount else F.lit(False))
    checks: list[tuple[Column, Column]] = [(F.col(EXCLUDED), F.lit(EXCLUDED_CUSTOMER))] if excluded else []
    checks.append((is_blank(F.col("order_id")), F.lit(MISSING_ORDER_ID)))
    if parsed:
        checks.append((F.col(PARSE_REASON).isNotNull(), F.col(PARSE_REASON)))
    checks += [
        (F.col("order_ts").isNull(), F.lit(MISSING_ORDER_TS)),
        (bad_amount, F.lit(INVALID_AMOUNT)),
        (amount > F.lit(quality.max_order_amount), F.lit(AMOUNT_OUT_OF_RANGE)),
        (F.col("discount_amount") < 0, F.lit(INVALID_DISCOUNT)),
        (_not_one_of("currency", quality.currencies, quality), F.lit(UNKNOWN_CURRENCY)),
        (_not_one_of("status", quality.statuses, quality), F.lit(UNKNOWN_STATUS)),
        (_impossible_ts(as_of, quality, written), F.lit(FUTURE_ORDER_TS)),
        (is_blank(F.col("customer_id")), F.lit(GUEST_ORDER)),
    ]
    reason = F.when(*checks[0])
    for failed, code in checks[1:]:
        reason = reason.when(failed, code)
    return reason


def order_key_hash(quality: QualitySettings | None = None) -> Column:
    """A 64-bit hash of the normalised ``(channel, order_id)``: what the duplicate check groups and joins on."""
    return F.xxhash64(normalised("channel", quality), normalised("order_id", quality)).alias(KEY_HASH)


def duplicate_keys(orders_df: DataFrame, quality: QualitySettings | None = None) -> DataFrame:
    """Hashes of the ``(channel, order_id)`` keys found on more than one row (column ``_order_key_hash``).

    A hash aggregate of one long per order: the shuffle carries eight bytes per order, not the order rows, and the
    result is as small as the input is clean. Two different keys with the same hash only make a few more rows
    candidates; the window that ranks candidates is partitioned by the real key, so they still rank 1 each.
    """
    return orders_df.groupBy(order_key_hash(quality)).count().where(F.col("count") > 1).drop("count")


def kept_copy_order(columns: Sequence[str], quality: QualitySettings | None = None) -> list[Column]:
    """The total order of the copies of one order key; the first is kept.

    Valid copies first (when the row reason is there), then the latest ``quality.latest_version_column`` if one is
    configured, then the earliest ``order_ts``, then every other column ascending (nulls last). Only copies identical
    in every column can tie, so which one is kept never depends on file order or partitioning. The time a row's file
    was written (``_written_at``) is left out for the same reason.
    """
    latest = quality.latest_version_column if quality is not None else None
    order = [F.col(_ROW_REASON).isNotNull().asc()] if _ROW_REASON in columns else []
    if latest:
        order.append(F.col(latest).desc_nulls_last())
    rest = [c for c in columns if c not in {_ROW_REASON, WRITTEN_AT, "order_ts", latest}]
    return [*order, *(F.col(c).asc_nulls_last() for c in ("order_ts", *rest))]


def with_duplicate_rank(
    orders_df: DataFrame, duplicate_keys_df: DataFrame | None = None, quality: QualitySettings | None = None
) -> DataFrame:
    """Add ``_dup_rank``: 1 for the copy of an order that is kept (see :func:`kept_copy_order`), 2, 3, ... for the rest.

    Copies share the normalised ``(channel, order_id)``. Without ``duplicate_keys_df`` every row goes through one
    window partitioned by that key (a shuffle and sort of every order row). With it (see :func:`duplicate_keys`,
    small enough to broadcast) rows whose key is not repeated get rank 1 on the spot, and only the repeated ones are
    ranked by the window; the result is the same.
    """
    key = [normalised("channel", quality), normalised("order_id", quality)]
    w = Window.partitionBy(*key).orderBy(*kept_copy_order(orders_df.columns, quality))
    if duplicate_keys_df is None:
        return orders_df.withColumn(DUP_RANK, F.row_number().over(w))
    keys = duplicate_keys_df.select(KEY_HASH, F.lit(True).alias(_REPEATED))
    hashed = orders_df.withColumn(KEY_HASH, order_key_hash(quality))
    flagged = hashed.join(F.broadcast(keys), KEY_HASH, "left").drop(KEY_HASH)
    singles = flagged.where(F.col(_REPEATED).isNull()).withColumn(DUP_RANK, F.lit(1))
    repeated = flagged.where(F.col(_REPEATED)).withColumn(DUP_RANK, F.row_number().over(w))
    return singles.unionByName(repeated).drop(_REPEATED)


def with_reject_reason(
    orders_df: DataFrame,
    as_of: dt.date | None,
    quality: QualitySettings,
    excluded_df: DataFrame | None = None,
    duplicate_keys_df: DataFrame | None = None,
) -> DataFrame:
    """Tag every order with ``reject_reason`` (null when valid).

    A duplicate is another row with the same normalised (channel, order_id): exact replays across files and
    conflicting versions alike. Among the copies a valid one is kept over invalid ones (a corrected re-send wins
    over the broken first copy), then the order of :func:`kept_copy_order` decides; a valid copy not kept is
    ``duplicate_order``, an invalid one keeps its own reason.

    Args:
        orders_df: conformed orders, optionally with ``_parse_reason`` (see ``with_parsed_text``).
        as_of: orders after this date (UTC) are in the future; None (ingestion): only timestamps later than their
            data file's ``_written_at`` (plus the tolerance) are.
        quality: accepted currencies, statuses, amount rules.
        excluded_df: the ids to set aside (see ``exclusion_keys``); their rows get ``excluded_customer``.
        duplicate_keys_df: the repeated order keys (see :func:`duplicate_keys`), when small enough to broadcast:
            then only their rows are ranked by a window. None: every row is (same result, one more full shuffle).
    """
    parsed, written = PARSE_REASON in orders_df.columns, WRITTEN_AT in orders_df.columns
    if excluded_df is not None:
        orders_df = with_exclusion_flag(orders_df, excluded_df, quality)
    row_reason = reject_reason(as_of, quality, parsed=parsed, excluded=excluded_df is not None, written=written)
    duplicate = F.when(F.col(DUP_RANK) > 1, F.lit(DUPLICATE_ORDER))
    return (
        with_duplicate_rank(orders_df.withColumn(_ROW_REASON, row_reason), duplicate_keys_df, quality)
        .withColumn(REASON, F.coalesce(F.col(_ROW_REASON), duplicate))
        .drop(DUP_RANK, PARSE_REASON, EXCLUDED, WRITTEN_AT, _ROW_REASON)
    )


def with_parsed_text(raw_df: DataFrame, timestamp_formats: list[str]) -> DataFrame:
    """Parse text ``order_ts``, ``amount`` and ``discount_amount`` columns and note rows that do not parse.

    A blank or null text is simply missing (its usual reason applies); a text that does not parse sets
    ``_parse_reason`` (``unparseable_order_ts``, ``non_numeric_amount`` or ``invalid_discount``) and the value becomes
    null. Text timestamps without a zone are UTC. Amounts of another numeric type (double, bigint, a wider decimal) are
    converted here too, so a value decimal(18,2) cannot hold is a rejected row instead of an error: NaN is
    ``non_numeric_amount``, an infinite or too large amount ``amount_out_of_range``, such a discount
    ``invalid_discount``.
    """
    types = dict(raw_df.dtypes)
    checks: list[tuple[Column, str]] = []
    df = raw_df
    for column, kind, reason in (
        ("order_ts", "timestamp", UNPARSEABLE_ORDER_TS),
        ("amount", "decimal", NON_NUMERIC_AMOUNT),
        ("discount_amount", "decimal", INVALID_DISCOUNT),
    ):
        dtype = types.get(column)
        if dtype == "string":
            text = F.when(~is_blank(F.col(column)), clean_text(F.col(column)))
            value = parse_utc_timestamp(text, timestamp_formats) if kind == "timestamp" else text.try_cast(AMOUNT_TYPE)
            checks.append((text.isNotNull() & value.isNull(), reason))
        elif kind == "decimal" and dtype is not None and dtype != AMOUNT_TYPE:
            raw = F.col(column)
            value = raw.try_cast(AMOUNT_TYPE)  # null for NaN, infinities and values beyond decimal(18,2)
            if dtype in ("double", "float"):
                checks.append((F.isnan(raw), reason))
            checks.append((raw.isNotNull() & value.isNull(), AMOUNT_OUT_OF_RANGE if column == "amount" else reason))
        else:
            continue
        df = df.withColumn(f"_parsed_{column}", value)
    if not checks:
        return df.withColumn(PARSE_REASON, F.lit(None).cast("string"))
    reason: Column = F.lit(None).cast("string")
    for failed, code in reversed(checks):
        reason = F.when(failed, F.lit(code)).otherwise(reason)
    df = df.withColumn(PARSE_REASON, reason)
    for column in ("order_ts", "amount", "discount_amount"):
        if f"_parsed_{column}" in df.columns:
            df = df.withColumn(column, F.col(f"_parsed_{column}")).drop(f"_parsed_{column}")
    return df


def exclusion_keys(
    exclusions_df: DataFrame, identity_df: DataFrame | None = None, quality: QualitySettings | None = None
) -> DataFrame:
    """The ids whose orders are set aside, one row per id: ``(_excl_id, _excl_all_channels, _excl_channels)``.

    An exclusion names a ``customer_id`` and optionally a ``channel``. Without a channel it matches that id on any
    channel, so both a channel-scoped id and a unified id work; with the identity map (best resolved, see
    ``identity.resolve_identities``), a unified id also excludes every channel id mapped to it. Ids and channels are
    normalised like the orders'. One row per id keeps the join from multiplying orders.
    """
    no_channel = F.lit(None).cast("string")
    channel = F.when(~is_blank(F.col("channel")), normalised("channel", quality))
    direct = exclusions_df.select(
        clean_text(F.col("customer_id")).alias("_excl_id"),
        (channel if "channel" in exclusions_df.columns else no_channel).alias("_excl_channel"),
    ).where(~is_blank(F.col("_excl_id")))
    keys = direct
    if identity_df is not None:
        unified = direct.select(F.col("_excl_id").alias("_unified")).distinct()
        mapped = identity_df.join(unified, clean_text(identity_df["customer_id"]) == unified["_unified"]).select(
            clean_text(F.col("channel_customer_id")).alias("_excl_id"),
            normalised("channel", quality).alias("_excl_channel"),
        )
        keys = direct.unionByName(mapped)
    return keys.groupBy("_excl_id").agg(
        F.max(F.col("_excl_channel").isNull()).alias("_excl_all_channels"),
        F.collect_set("_excl_channel").alias("_excl_channels"),
    )


def with_exclusion_flag(orders_df: DataFrame, keys_df: DataFrame, quality: QualitySettings | None = None) -> DataFrame:
    """Add the boolean ``_excluded``: the order's customer id (on its channel) is on the exclusion list."""
    joined = orders_df.join(F.broadcast(keys_df), clean_text(orders_df["customer_id"]) == keys_df["_excl_id"], "left")
    on_channel = F.array_contains(F.col("_excl_channels"), normalised("channel", quality))
    flag = F.coalesce(F.col("_excl_all_channels") | on_channel, F.lit(False))
    return joined.withColumn(EXCLUDED, flag).drop("_excl_id", "_excl_all_channels", "_excl_channels")


def valid_orders(tagged_df: DataFrame, quality: QualitySettings | None = None) -> DataFrame:
    """Valid rows with their keys and codes normalised (:func:`normalised`): what every later step sees."""
    valid = tagged_df.where(F.col(REASON).isNull()).drop(REASON)
    return valid.withColumns({c: normalised(c, quality) for c in KEY_AND_CODE_COLUMNS})


def rejected_orders(tagged_df: DataFrame, as_of: dt.date, run_id: str) -> DataFrame:
    """Rejected rows with their reason, the run that rejected them and the as-of date of that run."""
    return (
        tagged_df.where(F.col(REASON).isNotNull())
        .withColumn("run_id", F.lit(run_id))
        .withColumn("as_of_date", F.lit(as_of))
    )


def reason_counts(tagged_df: DataFrame) -> DataFrame:
    """One row per reason (null = valid) with its count: small, safe to collect."""
    return tagged_df.groupBy(REASON).count()


def count_reasons(rejected_df: DataFrame, input_rows: int) -> dict[str | None, int]:
    """Rows per reason with the valid rows under ``None``, from the rejected rows and the input row count.

    Every input row is either valid or rejected, so the valid count is the difference: the large valid half is
    never scanned for this.
    """
    counts: dict[str | None, int] = {r[REASON]: int(r["count"]) for r in reason_counts(rejected_df).collect()}
    counts[None] = input_rows - sum(counts.values())
    return counts


def check_rejected_share(
    counts: Mapping[str | None, int],
    max_share: float,
    source: str,
    not_counted: Collection[str] = DEFAULT_NOT_COUNTED,
) -> None:
    """Stop (``InputError``) when the table is empty or the share of invalid rows is above ``max_share``.

    Rows rejected for a reason in ``not_counted`` (excluded customers; guest orders unless configured to count, see
    :func:`not_counted_reasons`) are not broken data: neither invalid nor part of the base the share is taken of.
    """
    total = sum(counts.values())
    set_aside = {k: v for k, v in counts.items() if k in not_counted and v}
    intentional = sum(set_aside.values())
    rejected = total - counts.get(None, 0) - intentional
    share = rejected / (total - intentional) if total > intentional else 0.0
    if total == 0:
        raise InputError(f"the orders table {source} is empty")
    if share > max_share:
        detail = ", ".join(f"{k}={v:,}" for k, v in sorted((k, v) for k, v in counts.items() if k is not None))
        aside = ", ".join(f"{v:,} {_NOT_COUNTED_LABELS.get(k, k)}" for k, v in sorted(set_aside.items()))
        raise InputError(
            f"{rejected:,} of {total - intentional:,} order rows ({share:.2%}) are invalid"
            + (f" ({aside} not counted)" if aside else "")
            + f", above quality.max_rejected_share={max_share:.2%}; no output was written. Reasons: {detail}"
        )
