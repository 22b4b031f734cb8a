"""Campaign audiences with a stable treatment/control split.

Each configured campaign selects customers by a condition and holds out ``control_share`` of them as a control group,
so its effect can be measured (``segmentation evaluate``). The arm must not change between runs: a customer who was
held out yesterday and treated today would contaminate both groups. It is therefore a pure function of
``(campaign_id, customer_id)``: the first 52 bits of ``sha2("<campaign_id>:<customer_id>", 256)`` as a number in
[0, 1), control when below ``control_share``. Any system can recompute it (SQL, Python ``hashlib``), and campaigns
split independently of each other because the campaign id is part of the hashed text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import CampaignSpec

KEY = "customer_id"
TREATMENT, CONTROL = "treatment", "control"
HASH_HEX_DIGITS = 13  # 52 bits: exact in a double
AUDIENCE_COLUMNS = (
    "as_of_date date, campaign_id string, objective string, customer_id string, arm string, channel string,"
    " trigger string, run_id string"
)


def assignment_unit(campaign_id: Column, customer_id: Column) -> Column:
    """A uniform number in [0, 1) fixed by ``(campaign_id, customer_id)``."""
    digest = F.sha2(F.concat_ws(":", campaign_id, customer_id), 256)
    return F.conv(F.substring(digest, 1, HASH_HEX_DIGITS), 16, 10).cast("double") / F.lit(float(16**HASH_HEX_DIGITS))


def arm(campaign_id: Column, customer_id: Column, control_share: Column) -> Column:
    return F.when(assignment_unit(campaign_id, customer_id) < control_share, F.lit(CONTROL)).otherwise(F.lit(TREATMENT))


def campaign_audiences(df: DataFrame, campaigns: Sequence[CampaignSpec], as_of: dt.date, run_id: str) -> DataFrame:
    """``(as_of_date, campaign_id, objective, customer_id, arm, channel, trigger, run_id)`` for every campaign member.

    All campaigns are evaluated in one pass: each customer gets the array of the campaigns it matches, exploded. A
    customer can be in several campaigns; a condition that evaluates to null does not select.
    """
    if not campaigns:
        return df.sparkSession.createDataFrame([], AUDIENCE_COLUMNS)
    specs = [
        F.when(
            F.expr(c.condition),
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
        arm(F.col("c.campaign_id"), F.col(KEY), F.col("c.control_share")).alias("arm"),
        F.col("c.channel").alias("channel"),
        F.col("c.trigger").alias("trigger"),
        F.lit(run_id).alias("run_id"),
    )
