"""Who is segmented: purchasers from the orders, plus registered prospects from the optional profiles table.

A prospect (registered, never completed an order) has no recency, no scores and no percentiles, but it is a
customer a CRM wants to address ("注册未购用户"), so it gets a row in ``customer_segments`` like every purchaser. Its
order counts and amounts are zero (true: it ordered nothing) and everything measured on orders is null, so a rule
such as ``orders_total = 0`` finds prospects and a rule on ``monetary_pct`` or ``r_score`` never matches them by
accident.
"""

from __future__ import annotations

import datetime as dt
import re

import pyspark.sql.functions as F
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from segmentation.transforms.columns import day_number, end_of_day_seconds, utc_day

KEY = "customer_id"
REGISTRATION_COLUMNS = {"registered_date": T.DateType(), "registered_days": T.IntegerType()}
_ZERO_COLUMNS = re.compile(r"^(frequency|monetary|orders_total|amount_total|orders_\d+d|amount_\d+d)$")


def registrations(profiles_df: DataFrame, as_of: dt.date) -> DataFrame:
    """One row per registered customer up to ``as_of``: ``customer_id``, ``registered_date``, ``registered_days``.

    Profiles registered after the as-of date do not exist yet for this snapshot; a customer with several profile rows
    counts from its earliest registration; rows without a customer id are ignored.
    """
    customer = F.trim(F.col(KEY))
    registered = profiles_df.where(
        customer.isNotNull()
        & (customer != "")
        & F.col("registered_at").isNotNull()
        & (F.unix_seconds(F.col("registered_at").cast("timestamp")) < F.lit(end_of_day_seconds(as_of)))
    )
    return (
        registered.groupBy(customer.alias(KEY))
        .agg(F.min(utc_day(F.col("registered_at").cast("timestamp"))).alias("_day"))
        .select(
            KEY,
            F.date_from_unix_date("_day").alias("registered_date"),
            (F.lit(day_number(as_of)) - F.col("_day")).cast("int").alias("registered_days"),
        )
    )


def with_registration(customers_df: DataFrame, registrations_df: DataFrame | None) -> DataFrame:
    """Add ``registered_date`` and ``registered_days`` (null when the customer has no profile or none is configured)."""
    if registrations_df is None:
        return customers_df.select("*", *[F.lit(None).cast(t).alias(c) for c, t in REGISTRATION_COLUMNS.items()])
    return customers_df.join(registrations_df, KEY, "left")


def prospect_rows(registrations_df: DataFrame, purchasers_df: DataFrame, as_of: dt.date) -> DataFrame:
    """Rows shaped like ``purchasers_df`` for registered customers without a completed order.

    Order counts and amounts are zero, the as-of date and registration are set, every other column is null.
    """
    prospects = registrations_df.join(purchasers_df.select(KEY), KEY, "left_anti")
    columns = []
    for field in purchasers_df.schema.fields:
        name = field.name
        if name == KEY or name in REGISTRATION_COLUMNS:
            columns.append(F.col(name).cast(field.dataType).alias(name))
        elif name == "as_of_date":
            columns.append(F.lit(as_of).cast(field.dataType).alias(name))
        elif _ZERO_COLUMNS.match(name):
            columns.append(F.lit(0).cast(field.dataType).alias(name))
        else:
            columns.append(F.lit(None).cast(field.dataType).alias(name))
    return prospects.select(*columns)
