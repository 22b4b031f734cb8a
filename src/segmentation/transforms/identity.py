"""Stitching channel-scoped customer ids into one customer: the identity map resolved as a graph.

Each row of the map is an edge ``(channel, channel_customer_id) -> customer_id``. A target may itself be the source of
another row (an account merged into another: ``web W6 -> A6`` and ``app A6 -> U6``), so targets are followed along
the edges to a fixed point. Where a chain ends, at an id no row maps further, is the customer: its *root*.

Resolution runs in Spark with a bounded number of joins and collects nothing on the driver:

1. Normalise like the orders (``quality.normalised``): ids trimmed of Unicode whitespace, the channel trimmed and
   case-folded, so ``WEB`` in the map matches orders on ``web``. Rows with a blank id and self-maps (``x -> x``,
   which say nothing) are dropped; repeated rows collapse.
2. Follow chains: from every target that is itself mapped, hop along the edges (after the first hop the channel no
   longer matters: an id is an id) until no new id is reached, at most ``max_chain_length`` hops. The roots of a
   target are the ids it reaches that map nowhere; a target caught in a cycle with no way out resolves to the
   smallest id the cycle reaches, so every member of the cycle agrees.
3. Conflicts: a channel id whose targets resolve to more than one root is claimed by several customers. Each one is
   reported (``identity_conflicts``, and counted in the log) and resolved by ``quality.identity.conflict_policy``:
   ``smallest_id``; ``latest``, the root of its most recently dated mapping (``timestamp_column``; ties and undated
   rows go to the smallest id); or ``reject``, whose orders become rejected rows (``identity_conflict``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.config import QualitySettings
from segmentation.config.orders import IdentitySettings
from segmentation.errors import InputError
from segmentation.transforms.columns import clean_text, is_blank
from segmentation.transforms.quality import REASON, normalised

log = logging.getLogger(__name__)

IDENTITY_CONFLICT = "identity_conflict"
CONFLICT_COLUMNS = (
    "as_of_date",
    "channel",
    "channel_customer_id",
    "claimed_customer_ids",
    "claims",
    "customer_id",
    "policy",
    "run_id",
)
# Used only by callers that pass no settings (``quality``); conf/base.yaml holds the configured values.
_UNCONFIGURED = IdentitySettings(conflict_policy="smallest_id", timestamp_column=None, max_chain_length=10)
_LAST = 2**62  # sorts undated mappings after every dated one


@dataclass(frozen=True)
class Resolution:
    """A resolved identity map.

    Attributes:
        map_df: ``(channel, channel_customer_id, customer_id)``, one row per channel id, chains followed and conflicts
            resolved; channel ids of ``reject`` conflicts are left out (their orders are rejected instead).
        conflicts_df: one row per conflicted channel id: ``channel, channel_customer_id, claimed_customer_ids``
            (sorted), ``claims``, ``customer_id`` (the one chosen; null under ``reject``) and ``policy``.
        policy: the conflict policy applied.
        conflicts: how many channel ids are conflicted.
    """

    map_df: DataFrame
    conflicts_df: DataFrame
    policy: str
    conflicts: int


def _edges(identity_df: DataFrame, settings: IdentitySettings, quality: QualitySettings | None) -> DataFrame:
    """``(channel, src, dst, _ts)``: distinct normalised edges, self-maps and blank ids dropped, latest date kept."""
    ts = settings.timestamp_column
    if settings.conflict_policy == "latest" and ts not in identity_df.columns:
        raise InputError(
            f"the identity map has no column '{ts}' (quality.identity.timestamp_column), which conflict_policy "
            f"'latest' needs to date mappings: name one of {', '.join(identity_df.columns)}, or choose another policy"
        )
    dated = F.col(ts).cast("timestamp") if ts and ts in identity_df.columns else F.lit(None).cast("timestamp")
    edges = identity_df.select(
        normalised("channel", quality).alias("channel"),
        clean_text(F.col("channel_customer_id")).alias("src"),
        clean_text(F.col("customer_id")).alias("dst"),
        dated.alias("_ts"),
    ).where(~is_blank(F.col("src")) & ~is_blank(F.col("dst")) & (F.col("src") != F.col("dst")))
    return edges.groupBy("channel", "src", "dst").agg(F.max("_ts").alias("_ts"))


def _reach(links_df: DataFrame, sources_df: DataFrame, max_hops: int) -> DataFrame:
    """``(start, node)``: every id reachable from each mapped target, one join per hop until nothing new is reached.

    Semi-naive: each hop extends only the pairs found by the previous one, and each step is checkpointed so the plan
    does not grow with the hops. Stops after ``max_hops`` hops with a warning naming how many ids were still moving.
    """
    starts = links_df.select(F.col("dst").alias("start")).distinct().join(sources_df, F.col("start") == F.col("src"))
    reach = starts.join(links_df, "src").select("start", F.col("dst").alias("node")).distinct().localCheckpoint()
    frontier = reach
    for hop in range(2, max_hops + 1):
        step = frontier.join(links_df.withColumnRenamed("src", "node"), "node").select(
            "start", F.col("dst").alias("node")
        )
        frontier = step.distinct().join(reach, ["start", "node"], "left_anti").localCheckpoint()
        if frontier.isEmpty():
            log.info("identity map: chains resolved in %d hops", hop - 1)
            return reach
        reach = reach.unionByName(frontier).localCheckpoint()
    moving = frontier.join(sources_df, F.col("node") == F.col("src"), "left_semi").select("start").distinct().count()
    if moving:
        log.warning(
            "identity map: %d ids are still on a chain after %d hops (quality.identity.max_chain_length); they resolve "
            "to the smallest id reached so far",
            moving,
            max_hops,
        )
    return reach


def _roots(links_df: DataFrame, max_hops: int) -> DataFrame:
    """``(dst, root)`` for every target of the map: itself when it maps nowhere, else the roots its chains reach."""
    sources = links_df.select("src").distinct()
    reach = _reach(links_df, sources, max_hops)
    terminal = F.when(F.col("src").isNull(), F.col("node"))
    chained = (
        reach.join(sources, reach["node"] == sources["src"], "left")
        .groupBy("start")
        .agg(F.collect_set(terminal).alias("_terminals"), F.min("node").alias("_smallest"))
        .select(
            F.col("start").alias("dst"),
            F.explode(
                F.when(F.size("_terminals") > 0, F.col("_terminals")).otherwise(F.array(F.col("_smallest")))
            ).alias("root"),
        )
    )
    unchained = (
        links_df.select("dst")
        .distinct()
        .join(sources, F.col("dst") == F.col("src"), "left_anti")
        .select("dst", F.col("dst").alias("root"))
    )
    return unchained.unionByName(chained)


def resolve_identities(identity_df: DataFrame, quality: QualitySettings | None = None) -> Resolution:
    """Resolve the identity map (see the module docstring) with ``quality.identity``; logs the conflicts found.

    Runs a few small Spark jobs now (one per hop, then the conflict count); the frames it returns are checkpointed.
    """
    settings = quality.identity if quality is not None else _UNCONFIGURED
    edges = _edges(identity_df, settings, quality).localCheckpoint()
    links = edges.select("src", "dst").distinct()
    claims = edges.join(_roots(links, settings.max_chain_length), "dst")
    latest_first = F.struct(F.coalesce(-F.unix_micros(F.col("_ts")), F.lit(_LAST)), F.col("root"))
    by_id = claims.groupBy("channel", "src").agg(
        F.sort_array(F.collect_set("root")).alias("claimed_customer_ids"),
        F.min_by("root", latest_first).alias("_latest"),
    )
    claimed = F.col("claimed_customer_ids")
    chosen = {
        "smallest_id": claimed[0],
        "latest": F.col("_latest"),
        "reject": F.when(F.size(claimed) == 1, claimed[0]),
    }[settings.conflict_policy]
    resolved = by_id.select(
        "channel",
        F.col("src").alias("channel_customer_id"),
        "claimed_customer_ids",
        F.size(claimed).alias("claims"),
        chosen.alias("customer_id"),
        F.lit(settings.conflict_policy).alias("policy"),
    ).localCheckpoint()
    conflicts_df = resolved.where(F.col("claims") > 1).localCheckpoint()
    count = conflicts_df.count()
    if count:
        log.warning(
            "identity map: %d channel ids are claimed by several customers (policy %s; see identity_conflicts)",
            count,
            settings.conflict_policy,
        )
    map_df = resolved.where(F.col("customer_id").isNotNull()).select("channel", "channel_customer_id", "customer_id")
    return Resolution(map_df, conflicts_df, settings.conflict_policy, count)


def conflict_rows(resolution: Resolution, as_of: dt.date, run_id: str) -> DataFrame:
    """The ``identity_conflicts`` rows of a run: its conflicts with the as-of date and run id."""
    df = resolution.conflicts_df.withColumn("as_of_date", F.lit(as_of)).withColumn("run_id", F.lit(run_id))
    return df.select(*CONFLICT_COLUMNS)


def _keyed(orders_df: DataFrame, quality: QualitySettings | None) -> DataFrame:
    return orders_df.withColumns(
        {"_map_channel": normalised("channel", quality), "_map_id": clean_text(F.col("customer_id"))}
    )


def with_conflicts_rejected(
    tagged_df: DataFrame, resolution: Resolution, quality: QualitySettings | None = None
) -> DataFrame:
    """Under policy ``reject``: valid orders of a conflicted channel id become ``identity_conflict`` rows."""
    if resolution.policy != "reject":
        return tagged_df
    keys = resolution.conflicts_df.select(
        F.col("channel").alias("_map_channel"), F.col("channel_customer_id").alias("_map_id"), F.lit(True).alias("_hit")
    )
    joined = _keyed(tagged_df, quality).join(F.broadcast(keys), ["_map_channel", "_map_id"], "left")
    reason = F.when(F.col(REASON).isNull() & F.col("_hit"), F.lit(IDENTITY_CONFLICT)).otherwise(F.col(REASON))
    return joined.withColumn(REASON, reason).select(*tagged_df.columns)


def stitch_identities(
    orders_df: DataFrame, identity: Resolution | DataFrame | None, quality: QualitySettings | None = None
) -> DataFrame:
    """Replace each order's channel-scoped ``customer_id`` by the customer it resolves to.

    Orders whose (channel, id) is not in the map keep their id: an unknown shopper is still a customer. The original
    id is kept in ``channel_customer_id``. ``identity`` is a :class:`Resolution` (see :func:`resolve_identities`) or a
    raw map, which is resolved here with ``quality.identity``; the join compares normalised channels and ids.
    """
    orders_df = orders_df.withColumn("channel_customer_id", F.col("customer_id"))
    if identity is None:
        return orders_df
    if isinstance(identity, DataFrame):
        identity = resolve_identities(identity, quality)
    mapping = identity.map_df.select(
        F.col("channel").alias("_map_channel"),
        F.col("channel_customer_id").alias("_map_id"),
        F.col("customer_id").alias("_map_customer_id"),
    )
    joined = _keyed(orders_df, quality).join(mapping, ["_map_channel", "_map_id"], "left")
    stitched = joined.withColumn("customer_id", F.coalesce("_map_customer_id", "customer_id"))
    return stitched.select(*orders_df.columns)
