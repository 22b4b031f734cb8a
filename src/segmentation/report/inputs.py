"""What the report is drawn from: the DataFrames ``pipelines.report.run_report`` reads, passed in as one value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.sql import DataFrame


@dataclass(frozen=True)
class ReportInputs:
    """The slices the report draws from; ``None`` where a table does not exist (yet)."""

    as_of: dt.date
    segments_df: DataFrame | None
    previous_as_of: dt.date | None = None
    previous_segments_df: DataFrame | None = None
    migration_df: DataFrame | None = None
    audiences_df: DataFrame | None = None
    changes_df: DataFrame | None = None  # segment_changes (at least the week up to as_of)
    table_versions: Mapping[str, int | None] = field(default_factory=dict)
