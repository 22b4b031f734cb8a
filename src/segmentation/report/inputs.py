"""What the report is drawn from: the DataFrames ``pipelines.report.run_report`` reads, passed in as one value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame

if TYPE_CHECKING:
    from segmentation.models.registry_status import ModelStatus

WEEK_DAYS = 7  # the entries-and-exits section covers the as-of date and the six days before it


def week_start(as_of: dt.date) -> dt.date:
    """The first day of the week of changes the report shows for ``as_of``."""
    return as_of - dt.timedelta(days=WEEK_DAYS - 1)


@dataclass(frozen=True)
class ReportInputs:
    """The slices the report draws from; ``None`` where a table does not exist (yet)."""

    as_of: dt.date
    segments_df: DataFrame | None
    previous_as_of: dt.date | None = None
    previous_segments_df: DataFrame | None = None
    migration_df: DataFrame | None = None
    audiences_df: DataFrame | None = None
    changes_df: DataFrame | None = None  # segment_changes (at least ``week_start(as_of)`` to as_of)
    table_versions: Mapping[str, int | None] = field(default_factory=dict)
    models: list[ModelStatus] | None = None  # newest version of each trained model family; None: none trained here
    models_note: str | None = None  # why ``models`` is None (no tracking store, store unreadable)
