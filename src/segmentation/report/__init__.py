"""The analyst's view of a run: one self-contained HTML file with plots of the segments.

Every number in the report is aggregated in Spark (segment sizes, R×F cells, migration counts, funnel counts,
histogram bins); only those small aggregates reach the driver, where matplotlib draws them with the Agg backend and
the images are embedded as base64 PNG, so the file opens in any browser with no server and can be mailed around.

The report reads whatever the other jobs have written and degrades section by section: a table or column that is
missing or empty (``score`` has not run, no campaign is configured, there is no earlier snapshot) gives a note
"not available for this run" instead of a failure. This module never reads tables itself:
``pipelines.report.run_report`` passes the DataFrames in.
"""

from __future__ import annotations

from segmentation.report.aggregates import (
    FUNNEL_ORDER,
    GONE,
    HISTOGRAM_BINS,
    NEW,
    audience_arms,
    entries_and_exits,
    has_values,
    histogram,
    lifecycle_funnel,
    log_range,
    log_value,
    migration_between,
    migration_from_table,
    rf_cells,
    segment_sizes,
    value_range,
)
from segmentation.report.html import (
    CSS,
    NOT_AVAILABLE,
    Section,
    build_report,
    build_sections,
    changes_section,
    models_section,
    render_html,
    segments_section,
)
from segmentation.report.inputs import ReportInputs
from segmentation.report.plots import (
    CJK_FAMILIES,
    PALETTE,
    Labels,
    Panel,
    cjk_font,
    plot_audiences,
    plot_distributions,
    plot_entries_exits,
    plot_funnel,
    plot_migration,
    plot_rf_heatmap,
    plot_segment_sizes,
    segment_colours,
)

__all__ = [
    "CJK_FAMILIES",
    "CSS",
    "FUNNEL_ORDER",
    "GONE",
    "HISTOGRAM_BINS",
    "NEW",
    "NOT_AVAILABLE",
    "PALETTE",
    "Labels",
    "Panel",
    "ReportInputs",
    "Section",
    "audience_arms",
    "build_report",
    "build_sections",
    "changes_section",
    "cjk_font",
    "entries_and_exits",
    "has_values",
    "histogram",
    "lifecycle_funnel",
    "log_range",
    "log_value",
    "migration_between",
    "migration_from_table",
    "models_section",
    "plot_audiences",
    "plot_distributions",
    "plot_entries_exits",
    "plot_funnel",
    "plot_migration",
    "plot_rf_heatmap",
    "plot_segment_sizes",
    "render_html",
    "rf_cells",
    "segment_colours",
    "segment_sizes",
    "segments_section",
    "value_range",
]
