"""Stitching channel-scoped customer ids into one customer."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import DataFrame


def stitch_identities(orders_df: DataFrame, identity_df: DataFrame | None) -> DataFrame:
    """Replace each order's channel-scoped ``customer_id`` by the unified id of the identity map.

    Orders whose (channel, id) is not in the map keep their id: an unknown shopper is still a customer. The original
    id is kept in ``channel_customer_id``. A channel id mapped to several customers resolves to the smallest unified
    id, so reruns agree.
    """
    orders_df = orders_df.withColumn("channel_customer_id", F.col("customer_id"))
    if identity_df is None:
        return orders_df
    mapping = identity_df.groupBy(
        F.col("channel").alias("_map_channel"), F.trim("channel_customer_id").alias("_map_id")
    ).agg(F.min("customer_id").alias("_map_customer_id"))
    joined = orders_df.join(
        mapping,
        (orders_df["channel"] == mapping["_map_channel"]) & (orders_df["customer_id"] == mapping["_map_id"]),
        "left",
    )
    return joined.withColumn("customer_id", F.coalesce("_map_customer_id", "customer_id")).drop(
        "_map_channel", "_map_id", "_map_customer_id"
    )
