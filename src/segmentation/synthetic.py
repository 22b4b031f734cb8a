"""A synthetic multi-channel order history, realistic enough to exercise the whole product.

Customers follow a buy-till-you-die process (the BG/NBD story): each registers on a day of the history, buys at once,
then buys at a personal Poisson rate drawn from a gamma distribution, and after every purchase drops out for good
with a personal probability drawn from a beta distribution. Each order's spend is gamma distributed around a personal
mean (the Gamma-Gamma story). On top: channel-scoped customer ids with an identity map (some customers shop on several
channels, some are never stitched), a favourite category per customer, price-sensitive customers who use discounts and
coupons, refund-prone customers, and a small share of dirty rows (null ids, bad amounts, unknown currency, future
timestamps, exact duplicate orders).

Generation is vectorised numpy inside ``mapInPandas``: it scales with the cluster, and every batch seeds its
generator from (seed, first customer index), so the same configuration gives the same tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from segmentation.config import GenerateSettings
from segmentation.transforms.columns import day_number

SECONDS_PER_DAY = 86_400
ID_MULTIPLIER = 2_654_435_761  # odd and not a multiple of 5: a bijection modulo 10**10, so channel ids never collide
ID_MODULUS = 10**10
MAX_ORDERS_PER_CUSTOMER = 5_000

CUSTOMER_SCHEMA = (
    "customer_idx long, customer_id string, registered_day double, rate double, dropout double, spend_scale double,"
    " favourite_category int, channels array<int>, is_price_sensitive boolean, refund_propensity double,"
    " is_identified boolean, is_prospect boolean"
)
RAW_ORDER_SCHEMA = (
    "order_id string, channel string, customer_id string, order_epoch double, amount double, currency string,"
    " status string, category string, discount_amount double, coupon_code string"
)
DIRT_KINDS = (
    "null_customer",
    "blank_customer",
    "negative_amount",
    "null_amount",
    "future_ts",
    "bad_currency",
    "duplicate",
)


@dataclass(frozen=True)
class GeneratedTables:
    orders: DataFrame
    identity_map: DataFrame
    profiles: DataFrame | None


def _rng(seed: int, stream: int, first_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, first_index])


def calibrate_rate_scale(settings: GenerateSettings, sample: int = 20_000) -> float:
    """Scale of the gamma purchase-rate prior so the expected orders per buying customer hit the target.

    Simulates the same process on a fixed sample and bisects the scale; a few hundred milliseconds on the driver.
    """
    buyers = settings.customers * (1 - settings.prospect_share)
    target = max(settings.orders / max(buyers, 1.0), 1.0)
    rng = np.random.default_rng([settings.seed, 99])
    life = settings.history_days * rng.random(sample) ** 1.25  # days from registration to the as-of date (as below)
    base_rate = rng.gamma(settings.purchase_rate_shape, 1.0, sample)
    dropout = rng.beta(settings.dropout_a, settings.dropout_b, sample)
    repeats_before_dropout = np.minimum(rng.geometric(dropout) - 1, MAX_ORDERS_PER_CUSTOMER - 1)

    def mean_orders(scale: float) -> float:
        # Expected Poisson count over the lifetime, capped by the purchases before dropout (a close, cheap proxy).
        return float(np.mean(1 + np.minimum(base_rate * scale * life, repeats_before_dropout)))

    low, high = 1e-6, 10.0
    for _ in range(60):
        mid = (low * high) ** 0.5
        if mean_orders(mid) < target:
            low = mid
        else:
            high = mid
    return (low * high) ** 0.5


def _customers(batches: Iterator[pd.DataFrame], settings: GenerateSettings, start_day: float) -> Iterator[pd.DataFrame]:
    shares = np.array([c.share for c in settings.channels], dtype=float)
    shares = shares / shares.sum()
    n_channels = len(settings.channels)
    n_categories = len(settings.categories)
    for batch in batches:
        idx = batch["id"].to_numpy()
        n = len(idx)
        if n == 0:
            continue
        rng = _rng(settings.seed, 1, int(idx[0]))
        registered = start_day + settings.history_days * (1 - rng.random(n) ** 1.25)
        home = rng.choice(n_channels, size=n, p=shares)
        multi = rng.random(n) < settings.multichannel_share
        second = (home + 1 + rng.integers(0, max(n_channels - 1, 1), n)) % n_channels
        channels = [[h, s] if m and n_channels > 1 else [h] for h, s, m in zip(home, second, multi, strict=True)]
        yield pd.DataFrame(
            {
                "customer_idx": idx,
                "customer_id": [f"C{i:09d}" for i in idx],
                "registered_day": registered,
                "rate": rng.gamma(settings.purchase_rate_shape, 1.0, n),
                "dropout": rng.beta(settings.dropout_a, settings.dropout_b, n),
                "spend_scale": 1.0 / rng.gamma(settings.spend_q, 1.0 / settings.spend_v, n),
                "favourite_category": rng.integers(0, n_categories, n).astype("int32"),
                "channels": channels,
                "is_price_sensitive": rng.random(n) < settings.discount_share * 1.6,
                "refund_propensity": np.where(rng.random(n) < 0.1, 5.0, 0.55),
                "is_identified": rng.random(n) < settings.identified_share,
                "is_prospect": rng.random(n) < settings.prospect_share,
            }
        )


def channel_customer_id(prefix: str, customer_idx: np.ndarray, salt: int) -> np.ndarray:
    """A channel's own id for a customer: a bijection of the index, so ids look unrelated across channels."""
    codes = (customer_idx.astype(np.int64) * ID_MULTIPLIER + salt * 7_919) % ID_MODULUS
    return np.array([f"{prefix}{c:010d}" for c in codes], dtype=object)


def _orders(
    batches: Iterator[pd.DataFrame], settings: GenerateSettings, as_of_day: int, rate_scale: float
) -> Iterator[pd.DataFrame]:
    prefixes = [c.id_prefix for c in settings.channels]
    names = [c.name for c in settings.channels]
    categories = np.array(settings.categories, dtype=object)
    end = float(as_of_day + 1)
    extra = list(settings.extra_currencies.items())
    for batch in batches:
        batch = batch[~batch["is_prospect"]]
        if batch.empty:
            continue
        rng = _rng(settings.seed, 2, int(batch["customer_idx"].iloc[0]))
        n = len(batch)
        idx = batch["customer_idx"].to_numpy()
        rate = batch["rate"].to_numpy() * rate_scale
        # Purchases: the first at registration, then Poisson(rate) gaps until dropout or the as-of date.
        repeats = np.minimum(rng.geometric(batch["dropout"].to_numpy()) - 1, MAX_ORDERS_PER_CUSTOMER - 1)
        owner = np.repeat(np.arange(n), repeats + 1)
        gaps = rng.exponential(1.0, len(owner)) / rate[owner]
        starts = np.concatenate([[0], np.cumsum(repeats + 1)[:-1]])
        gaps[starts] = 0.0
        csum = np.cumsum(gaps)
        elapsed = csum - np.repeat(csum[starts], repeats + 1)
        when = batch["registered_day"].to_numpy()[owner] + elapsed
        keep = when < end
        owner, when = owner[keep], when[keep]
        m = len(owner)
        seq = np.arange(m) - np.repeat(
            np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))[:-1]]), np.bincount(owner, minlength=n)
        )
        # Channel: home channel mostly, the second channel for multi-channel shoppers.
        chan_lists = batch["channels"].to_numpy()
        home = np.array([c[0] for c in chan_lists])[owner]
        other = np.array([c[-1] for c in chan_lists])[owner]
        channel = np.where(rng.random(m) < 0.65, home, other)
        # Category: favourite with probability `category_affinity`, otherwise uniform.
        fav = batch["favourite_category"].to_numpy()[owner]
        category = np.where(rng.random(m) < settings.category_affinity, fav, rng.integers(0, len(categories), m))
        # Spend: gamma(p, scale) around the customer's mean (Gamma-Gamma).
        amount = np.maximum(np.round(rng.gamma(settings.spend_p, batch["spend_scale"].to_numpy()[owner]), 2), 0.01)
        sensitive = batch["is_price_sensitive"].to_numpy()[owner]
        has_discount = rng.random(m) < np.where(sensitive, 0.6, 0.08)
        discount = np.where(has_discount, np.round(amount * rng.uniform(0.05, 0.3, m), 2), 0.0)
        coupon = np.where(
            has_discount & (rng.random(m) < np.where(sensitive, 0.7, 0.3) * settings.coupon_share / 0.15),
            np.array([f"CPN{c:04d}" for c in rng.integers(0, 500, m)], dtype=object),
            None,
        )
        u = rng.random(m)
        refund_p = settings.refund_share * batch["refund_propensity"].to_numpy()[owner]
        status = np.where(
            u < refund_p, "refunded", np.where(u < refund_p + settings.cancel_share, "cancelled", "completed")
        )
        currency = np.full(m, settings.currency, dtype=object)
        if extra:
            v = rng.random(m)
            acc = 0.0
            for code, share in extra:
                currency = np.where((v >= acc) & (v < acc + share), code, currency)
                acc += share
        cust_ids = np.empty(m, dtype=object)
        order_ids = np.empty(m, dtype=object)
        for ch, prefix in enumerate(prefixes):
            sel = channel == ch
            if sel.any():
                cust_ids[sel] = channel_customer_id(prefix, idx[owner[sel]], ch)
                order_ids[sel] = [f"{prefix}O{i:09d}-{s:04d}" for i, s in zip(idx[owner[sel]], seq[sel], strict=True)]
        df = pd.DataFrame(
            {
                "order_id": order_ids,
                "channel": np.array(names, dtype=object)[channel],
                "customer_id": cust_ids,
                "order_epoch": np.floor(when * SECONDS_PER_DAY),
                "amount": amount,
                "currency": currency,
                "status": status,
                "category": categories[category],
                "discount_amount": discount,
                "coupon_code": coupon,
            }
        )
        yield _dirty(df, rng, settings.dirty_share, as_of_day)


def _dirty(df: pd.DataFrame, rng: np.random.Generator, share: float, as_of_day: int) -> pd.DataFrame:
    """Corrupt a share of rows the way real feeds are corrupted; duplicates are exact replays appended."""
    if share <= 0 or df.empty:
        return df
    pick = np.flatnonzero(rng.random(len(df)) < share)
    kinds = rng.integers(0, len(DIRT_KINDS), len(pick))
    df = df.copy()
    for k, name in enumerate(DIRT_KINDS):
        rows = df.index[pick[kinds == k]]
        if name == "null_customer":
            df.loc[rows, "customer_id"] = None
        elif name == "blank_customer":
            df.loc[rows, "customer_id"] = "  "
        elif name == "negative_amount":
            df.loc[rows, "amount"] = -df.loc[rows, "amount"]
        elif name == "null_amount":
            df.loc[rows, "amount"] = np.nan
        elif name == "future_ts":  # a mistyped year: a timestamp no export can hold yet, whenever it is loaded
            days = as_of_day + 36_525 + rng.integers(0, 30, len(rows))
            df.loc[rows, "order_epoch"] = days * SECONDS_PER_DAY + 3600.0
        elif name == "bad_currency":
            df.loc[rows, "currency"] = "XXX"
        elif name == "duplicate":
            df = pd.concat([df, df.loc[rows]], ignore_index=True)
    return df


def generate(spark: SparkSession, settings: GenerateSettings, as_of: dt.date) -> GeneratedTables:
    """Build the synthetic orders, identity map and profiles as DataFrames (writing is the caller's job)."""
    as_of_day = day_number(as_of)
    start_day = float(as_of_day - settings.history_days)
    partitions = max(1, -(-settings.customers // settings.customers_per_partition))
    rate_scale = calibrate_rate_scale(settings)
    customers = (
        spark.range(0, settings.customers, 1, partitions)
        .mapInPandas(lambda it: _customers(it, settings, start_day), CUSTOMER_SCHEMA)
        .persist()
    )
    raw = customers.mapInPandas(lambda it: _orders(it, settings, as_of_day, rate_scale), RAW_ORDER_SCHEMA)
    orders = raw.select(
        "order_id",
        "channel",
        "customer_id",
        F.timestamp_seconds(F.col("order_epoch").cast("long")).alias("order_ts"),
        F.col("amount").cast("decimal(18,2)").alias("amount"),
        "currency",
        "status",
        "category",
        F.col("discount_amount").cast("decimal(18,2)").alias("discount_amount"),
        "coupon_code",
    ).withColumn("order_month", F.date_format(F.col("order_ts"), "yyyy-MM"))
    names = F.array(*[F.lit(c.name) for c in settings.channels])
    prefixes = F.array(*[F.lit(c.id_prefix) for c in settings.channels])
    code = (F.col("customer_idx") * F.lit(ID_MULTIPLIER) + F.col("ch") * F.lit(7_919)) % F.lit(ID_MODULUS)
    identity = (
        customers.where(F.col("is_identified") & ~F.col("is_prospect"))
        .select("customer_idx", "customer_id", F.explode("channels").alias("ch"))
        .select(
            F.element_at(names, F.col("ch") + 1).alias("channel"),
            F.concat(F.element_at(prefixes, F.col("ch") + 1), F.lpad(code.cast("string"), 10, "0")).alias(
                "channel_customer_id"
            ),
            "customer_id",
        )
    )
    profiles = None
    if settings.write_profiles:
        profiles = customers.where(F.col("is_identified") | F.col("is_prospect")).select(
            "customer_id",
            F.timestamp_seconds((F.col("registered_day") * SECONDS_PER_DAY).cast("long")).alias("registered_at"),
            F.element_at(names, F.element_at("channels", 1) + 1).alias("home_channel"),
        )
    return GeneratedTables(orders=orders, identity_map=identity, profiles=profiles)


def next_day_orders(orders_df: DataFrame, day: dt.date, share: float, seed: int) -> DataFrame:
    """A new day of orders for a table that already holds a history: a ``share`` of its rows, picked by a seeded hash,
    re-issued on ``day`` (same time of day) under new order ids, so repeat customers come back and a daily build has
    something to ingest. A sample of the existing rows keeps the table's mix of channels, categories and dirt."""

    picked = orders_df.where(
        (F.abs(F.xxhash64(F.lit(seed), F.lit(str(day)), "order_id", "channel")) % F.lit(1_000_000))
        < F.lit(int(share * 1_000_000))
    )
    seconds = F.unix_seconds("order_ts") % F.lit(86_400)
    start = F.unix_seconds(F.lit(dt.datetime.combine(day, dt.time(), dt.timezone.utc)).cast("timestamp"))
    shifted = picked.withColumn("order_id", F.concat(F.lit(f"D{day:%Y%m%d}-"), F.col("order_id"))).withColumn(
        "order_ts", F.timestamp_seconds(start + seconds)
    )
    if "order_month" in orders_df.columns:
        shifted = shifted.withColumn("order_month", F.date_format(F.col("order_ts"), "yyyy-MM"))
    return shifted
