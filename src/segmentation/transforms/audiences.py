"""Campaign audiences with a stable treatment/control split.

Each configured campaign selects customers by a condition and holds out ``control_share`` of them as a control group,
so its effect can be measured (``segmentation evaluate``). The arm must not change between runs: a customer who was
held out yesterday and treated today would contaminate both groups. It is therefore a pure function of
``(campaign_id, customer_id)``: the first 52 bits of ``sha2("<campaign_id>:<customer_id>", 256)`` as a number in
[0, 1), control when below ``control_share``. Any system can recompute it (SQL, Python ``hashlib``), and campaigns
split independently of each other because the campaign id is part of the hashed text.

A control group kept for years drifts: the same customers never get any campaign, and they end up unlike the treated
ones. ``audiences.control_rotation_days`` (off by default) re-draws it: the hashed text becomes
``"<campaign_id>:<period>:<customer_id>"`` with ``period = (as_of - 1970-01-01).days // control_rotation_days``, so
arms are stable within a period and independent between periods; every campaign re-draws on the same dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import CampaignSpec
from segmentation.transforms import rules

KEY = "customer_id"
TREATMENT, CONTROL = "treatment", "control"
HASH_HEX_DIGITS = 13  # 52 bits: exact in a double
AUDIENCE_COLUMNS = (
    "as_of_date date, campaign_id string, objective string, customer_id string, arm string, channel string,"
    " trigger string, run_id string"
)


EPOCH = dt.date(1970, 1, 1)


def rotation_period(as_of: dt.date, rotation_days: int | None) -> int | None:
    """The number of the ``rotation_days``-long period ``as_of`` falls in (None without rotation)."""
    return None if rotation_days is None else (as_of - EPOCH).days // rotation_days


def assignment_unit(campaign_id: Column, customer_id: Column, period: int | None = None) -> Column:
    """A uniform number in [0, 1) fixed by ``(campaign_id, customer_id)``, and by the rotation period if any."""
    parts = [campaign_id, customer_id] if period is None else [campaign_id, F.lit(str(period)), customer_id]
    digest = F.sha2(F.concat_ws(":", *parts), 256)
    return F.conv(F.substring(digest, 1, HASH_HEX_DIGITS), 16, 10).cast("double") / F.lit(float(16**HASH_HEX_DIGITS))


def arm(campaign_id: Column, customer_id: Column, control_share: Column, period: int | None = None) -> Column:
    unit = assignment_unit(campaign_id, customer_id, period)
    return F.when(unit < control_share, F.lit(CONTROL)).otherwise(F.lit(TREATMENT))


def arm_columns(
    campaigns: Sequence[CampaignSpec], as_of: dt.date, rotation_days: int | None = None
) -> dict[str, Column]:
    """Per campaign id, the customer's arm when its condition selects the customer, else null (a null condition does
    not select). The same assignment as ``campaign_audiences``, as one column per campaign."""
    period = rotation_period(as_of, rotation_days)
    return {
        c.id: F.when(
            rules.condition(c.condition), arm(F.lit(c.id), F.col(KEY), F.lit(c.control_share).cast("double"), period)
        )
        for c in campaigns
    }


def campaign_audiences(
    df: DataFrame,
    campaigns: Sequence[CampaignSpec],
    as_of: dt.date,
    run_id: str,
    rotation_days: int | None = None,
) -> DataFrame:
    """``(as_of_date, campaign_id, objective, customer_id, arm, channel, trigger, run_id)`` for every campaign member.

    All campaigns are evaluated in one pass: each customer gets the array of the campaigns it matches, exploded. A
    customer can be in several campaigns; a condition that evaluates to null does not select. ``rotation_days`` salts
    the arm with the as-of date's period (see the module docstring).
    """
    if not campaigns:
        return df.sparkSession.createDataFrame([], AUDIENCE_COLUMNS)
    specs = [
        F.when(
            rules.condition(c.condition),
            F.struct(
                F.lit(c.id).alias("campaign_id"),
                F.lit(c.objective).alias("objective"),
                F.lit(c.control_share).cast("double").alias("control_share"),
                F.lit(c.channel).alias("channel"),
                F.lit(c.trigger).alias("trigger"),
            ),
        )
        for c in campaigns
    ]
    members = df.select(KEY, F.explode(F.filter(F.array(*specs), lambda s: s.isNotNull())).alias("c"))
    return members.select(
        F.lit(as_of).alias("as_of_date"),
        F.col("c.campaign_id").alias("campaign_id"),
        F.col("c.objective").alias("objective"),
        KEY,
        arm(F.col("c.campaign_id"), F.col(KEY), F.col("c.control_share"), rotation_period(as_of, rotation_days)).alias(
            "arm"
        ),
        F.col("c.channel").alias("channel"),
        F.col("c.trigger").alias("trigger"),
        F.lit(run_id).alias("run_id"),
    )
