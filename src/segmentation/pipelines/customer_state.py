"""The customer state of the as-of date: advanced from the last one when it can be, else aggregated from orders.

The state (``transforms.state``) is kept in ``customer_state`` with, in its commit, the as-of date, the orders version
and a fingerprint of what shaped it (the clean layer's fingerprint, the windows, the sale and refund statuses). A daily
build reads the last state, the orders that enter it (new days, and late arrivals ingested since) and the days that
leave each window, all by partition of ``orders_clean``; it aggregates the clean orders instead when there is no
usable state, after a full ingest, when the windows changed, when a purchase arrived for a day before a customer's last
purchase, and for a backfill (an as-of date before the state's), which leaves the state as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation import io
from segmentation.pipelines.ingest import PARTITION, VERSION, Ingested
from segmentation.runs import JobRun
from segmentation.transforms import state

log = logging.getLogger(__name__)

STATE_TABLE = "customer_state"


@dataclass
class State:
    """The state of the as-of date and how it was obtained; ``write`` is False for a backfill."""

    df: DataFrame
    how: str
    write: bool
    fingerprint: str


def _fingerprint(run: JobRun, ingest_fp: str) -> str:
    s = run.settings
    payload = {
        "ingest": ingest_fp,
        "windows": state.windows(s.features),
        "statuses": [s.quality.sale_status, s.quality.refund_status],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _previous(run: JobRun, ingested: Ingested) -> tuple[DataFrame, dict] | None:
    """The state the last complete build that wrote one recorded, with its commit metadata (as_of, orders_version,
    fp); a backfill in between kept it."""
    last = io.latest_complete_run(run.spark, run.settings.outputs.table_path("segment_runs"), "build", STATE_TABLE)
    if last is None:
        return None
    version = last["table_versions"][STATE_TABLE]
    path = run.settings.outputs.table_path(STATE_TABLE)
    meta = io.commit_metadata(run.spark, path, version)
    if not meta:
        return None
    return io.read_version(run.spark, path, version), meta


def _facts(run: JobRun, df: DataFrame) -> DataFrame:
    return state.order_facts(df, run.settings.quality)


def customer_state(run: JobRun, ingested: Ingested, clean_df: DataFrame, ingest_fp: str) -> State:
    """The state of ``run.as_of`` (see the module docstring for when it is advanced and when aggregated)."""
    as_of, features = run.as_of, run.settings.features
    fp = _fingerprint(run, ingest_fp)
    previous = None if ingested.mode == "full" else _previous(run, ingested)
    with run.stage("customer state") as info:
        reason = _blocker(previous, fp, as_of)
        if not reason:
            old_df, meta = previous
            state_as_of = dt.date.fromisoformat(meta["as_of"])
            entering, leaving = _entering_and_leaving(
                clean_df, state_as_of, as_of, int(meta["orders_version"]), state.windows(features)
            )
            entering = run.persist(_facts(run, entering))
            late = state.late_purchases(old_df, entering).count()
            if late:
                reason = f"{late:,} customers have a purchase before their last purchase day (late orders)"
            else:
                info["how"] = "advanced"
                advanced = state.advance(old_df, entering, _facts(run, leaving), state_as_of, as_of, features)
                return State(advanced, f"advanced from {state_as_of}", True, fp)
        backfill = previous is not None and reason.startswith("backfill")
        clean_df = clean_df.where(F.col(PARTITION) <= F.lit(as_of))
        info["how"] = "aggregated"
        log.info("customer state: aggregated from orders_clean (%s)", reason)
        return State(
            state.from_orders(_facts(run, clean_df), as_of, features), f"aggregated: {reason}", not backfill, fp
        )


def _blocker(previous, fp: str, as_of: dt.date) -> str:
    if previous is None:
        return "no usable state (first build, full ingest or a state from before this version)"
    _, meta = previous
    if meta.get("fp") != fp:
        return "the windows, statuses or the clean layer changed"
    state_as_of = dt.date.fromisoformat(meta["as_of"])
    if as_of < state_as_of:
        return f"backfill: {as_of} is before the state's {state_as_of}; the state is kept"
    return ""


def _entering_and_leaving(
    clean_df: DataFrame, state_as_of: dt.date, as_of: dt.date, state_version: int, spans: dict[str, int | None]
) -> tuple[DataFrame, DataFrame]:
    """Orders entering the state (new days; late arrivals since the state) and the counted orders of the days that
    leave a window, each read by partition of ``orders_clean`` (and late arrivals by ``ingested_version`` stats)."""
    day, counted = F.col(PARTITION), F.col(VERSION) <= F.lit(state_version)
    new_days = clean_df.where((day > F.lit(state_as_of)) & (day <= F.lit(as_of)))
    late = clean_df.where((day <= F.lit(state_as_of)) & ~counted)
    leaving_days = F.lit(False)
    for days in spans.values():
        if days is None:
            continue
        first = state_as_of - dt.timedelta(days=days)  # exclusive: the oldest day in the window on the state's day
        last = min(state_as_of, as_of - dt.timedelta(days=days))  # inclusive: the newest day out of it on as_of
        if last > first:
            leaving_days = leaving_days | ((day > F.lit(first)) & (day <= F.lit(last)))
    return new_days.unionByName(late), clean_df.where(counted & leaving_days)


def write_state(run: JobRun, current: State, ingested: Ingested) -> None:
    """Keep the state of this as-of date for the next build (not after a backfill)."""
    if not current.write:
        return
    with run.stage("write customer_state"):
        version = io.replace_rows(
            current.df,
            run.settings.outputs.table_path(STATE_TABLE),
            "true",
            metadata={"as_of": str(run.as_of), "orders_version": ingested.orders_version, "fp": current.fingerprint},
            retries=run.settings.outputs.commit_retries,
        )
        run.wrote(STATE_TABLE, version)
