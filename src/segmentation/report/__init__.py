"""The analyst's view of a run: one self-contained HTML file with plots of the segments.

Every number in the report is aggregated in Spark (segment sizes, R×F cells, migration counts, funnel counts,
histogram bins); only those small aggregates reach the driver, where matplotlib draws them with the Agg backend and
the images are embedded as base64 PNG, so the file opens in any browser with no server and can be mailed around.

The report reads whatever the other jobs have written and degrades section by section: a table or column that is
missing or empty (``score`` has not run, no campaign is configured, there is no earlier snapshot) gives a note
"not available for this run" instead of a failure. This module never reads tables itself: ``pipeline.run_report``
passes the DataFrames in.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import pyspark.sql.functions as F
from matplotlib.figure import Figure
from pyspark.sql import Column, DataFrame

from segmentation.config import Settings

log = logging.getLogger(__name__)

NOT_AVAILABLE = "not available for this run"
NEW, GONE = "(new)", "(gone)"
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Noto Sans CJK JP",
)
FUNNEL_ORDER = ("prospect", "new", "active", "repeat", "churn_warning", "dormant")
HISTOGRAM_BINS = 25
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


# ----------------------------------------------------------------------------------------------------------------------
# Inputs and fonts
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportInputs:
    """The slices the report draws from; ``None`` where a table does not exist (yet)."""

    as_of: dt.date
    segments_df: DataFrame | None
    previous_as_of: dt.date | None = None
    previous_segments_df: DataFrame | None = None
    migration_df: DataFrame | None = None
    audiences_df: DataFrame | None = None
    table_versions: Mapping[str, int | None] = field(default_factory=dict)


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A font family that can draw the Chinese display names, or None (the report then uses English names).

    Fonts installed after matplotlib built its cache are not in the font manager yet, so the system folders are
    scanned once and any CJK face found there is registered.
    """
    from matplotlib import font_manager

    def known() -> str | None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in CJK_FAMILIES if n in names), None)

    family = known()
    if family is None:
        for path in font_manager.findSystemFonts():
            lowered = path.lower()
            if any(token in lowered for token in ("cjk", "wqy", "wenquanyi", "sourcehan", "simhei", "yahei")):
                try:
                    font_manager.fontManager.addfont(path)
                except (RuntimeError, OSError):  # an unreadable font file: skip it
                    continue
        family = known()
    log.info("report font for Chinese names: %s", family or "none found, using English display names")
    return family


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained", facecolor="white")


def _rc() -> dict[str, object]:
    """Matplotlib settings of the report: Latin glyphs from DejaVu Sans, Chinese ones from the CJK font."""
    family = cjk_font()
    return {"font.family": ["DejaVu Sans", family] if family else ["DejaVu Sans"], "axes.unicode_minus": False}


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Labels:
    """Display labels of segment names from the rule sets: Chinese and English when a CJK font exists."""

    def __init__(self, settings: Settings, use_chinese: bool) -> None:
        self._names: dict[tuple[str, str], str] = {}
        for dimension, rule_set in settings.segments.rule_sets.items():
            for rule in rule_set.rules:
                english = rule.display_name or rule.name
                if use_chinese and rule.display_name_zh:
                    self._names[(dimension, rule.name)] = f"{rule.display_name_zh} {english}"
                else:
                    self._names[(dimension, rule.name)] = english

    def __call__(self, dimension: str, name: str | None) -> str:
        if name is None:
            return "(none)"
        return self._names.get((dimension, name), str(name))


# ----------------------------------------------------------------------------------------------------------------------
# Aggregations (Spark -> small lists of rows)
# ----------------------------------------------------------------------------------------------------------------------
def has_values(df: DataFrame | None, column: str) -> bool:
    """Whether ``df`` exists, has ``column`` and at least one non-null value in it (one short Spark job)."""
    return df is not None and column in df.columns and df.where(F.col(column).isNotNull()).limit(1).count() > 0


def segment_sizes(segments_df: DataFrame, dimension: str) -> list[dict]:
    """Customers, revenue and mean scores/predictions per segment of one dimension, largest first."""
    extras = [F.avg(c).alias(f"avg_{c}") for c in ("clv", "churn_probability") if c in segments_df.columns]
    rows = (
        segments_df.groupBy(F.col(dimension).cast("string").alias("segment"))
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(F.col("monetary").cast("double")).alias("revenue"),
            F.avg("r_score").alias("avg_r"),
            F.avg("f_score").alias("avg_f"),
            F.avg("m_score").alias("avg_m"),
            *extras,
        )
        .orderBy(F.desc("customers"), "segment")
        .collect()
    )
    out = [r.asDict() for r in rows]
    customers = sum(r["customers"] for r in out) or 1
    revenue = sum(r["revenue"] or 0.0 for r in out) or 1.0
    for r in out:
        r["share"] = r["customers"] / customers
        r["revenue_share"] = (r["revenue"] or 0.0) / revenue
    return out


def rf_cells(segments_df: DataFrame) -> list[dict]:
    """Customers and mean M score per (R, F) score cell."""
    rows = (
        segments_df.groupBy("r_score", "f_score")
        .agg(F.count(F.lit(1)).alias("customers"), F.avg("m_score").alias("mean_m"))
        .collect()
    )
    return [r.asDict() for r in rows if r["r_score"] is not None and r["f_score"] is not None]


def migration_from_table(migration_df: DataFrame, dimension: str) -> list[dict] | None:
    """From → to counts of ``segment_migration`` for one dimension; None when its layout is not recognised."""
    columns = set(migration_df.columns)
    source = next((c for c in ("from_segment", "previous_segment", "segment_from", "from") if c in columns), None)
    target = next((c for c in ("to_segment", "current_segment", "segment_to", "to") if c in columns), None)
    count = next((c for c in ("customers", "count", "n") if c in columns), None)
    if not (source and target and count):
        return None
    df = migration_df
    if "dimension" in columns:
        df = df.where(F.col("dimension") == dimension)
    rows = (
        df.groupBy(F.col(source).cast("string").alias("source"), F.col(target).cast("string").alias("target"))
        .agg(F.sum(count).cast("long").alias("customers"))
        .collect()
    )
    return [{"source": r["source"] or NEW, "target": r["target"] or GONE, "customers": r["customers"]} for r in rows]


def migration_between(current_df: DataFrame, previous_df: DataFrame, dimension: str) -> list[dict]:
    """From → to counts between two snapshots (customers only in one of them are new or gone), joined in Spark."""
    previous = previous_df.select("customer_id", F.col(dimension).cast("string").alias("source"))
    current = current_df.select("customer_id", F.col(dimension).cast("string").alias("target"))
    rows = (
        previous.join(current, "customer_id", "full_outer")
        .groupBy(F.coalesce("source", F.lit(NEW)).alias("source"), F.coalesce("target", F.lit(GONE)).alias("target"))
        .agg(F.count(F.lit(1)).alias("customers"))
        .collect()
    )
    return [r.asDict() for r in rows]


def log_value(column: str) -> Column:
    """``log10(1 + value)``: spreads a long-tailed money amount (CLV) over the histogram instead of one bar at zero."""
    return F.log10(F.lit(1.0) + F.greatest(F.col(column).cast("double"), F.lit(0.0)))


def histogram(segments_df: DataFrame, value: Column, by: str, low: float, high: float, bins: int) -> list[dict]:
    """Counts of ``value`` in equal-width bins over [low, high] per ``by`` group; outliers clip to the end bins."""
    width = (high - low) / bins if high > low else 1.0
    index = F.least(F.greatest(F.floor((value - F.lit(low)) / F.lit(width)), F.lit(0)), F.lit(bins - 1))
    rows = (
        segments_df.where(value.isNotNull())
        .groupBy(F.col(by).cast("string").alias("group"), index.cast("int").alias("bin"))
        .agg(F.count(F.lit(1)).alias("customers"))
        .collect()
    )
    return [r.asDict() for r in rows]


def value_range(segments_df: DataFrame, value: Column, upper_quantile: float = 0.99) -> tuple[float, float]:
    """The plotting range of a long-tailed value: its minimum up to a high quantile, in one pass."""
    row = segments_df.agg(
        F.min(value).cast("double").alias("low"),
        F.percentile_approx(value.cast("double"), upper_quantile, 1000).alias("high"),
    ).first()
    low, high = float(row["low"] or 0.0), float(row["high"] or 0.0)
    return (low, high) if high > low else (low, low + 1.0)


def lifecycle_funnel(segments_df: DataFrame, settings: Settings) -> list[dict]:
    """Customers per lifecycle stage in lifecycle order (prospect → dormant), not in rule priority order."""
    stages = segment_sizes(segments_df, "lifecycle_stage")
    rule_set = settings.segments.rule_sets.get("lifecycle_stage")
    configured = [r.name for r in rule_set.rules] if rule_set else []
    by_name = {s["segment"]: s for s in stages}
    return [by_name[n] for n in _ordered(set(by_name), [*FUNNEL_ORDER, *configured])]


def audience_arms(audiences_df: DataFrame) -> list[dict]:
    """Treatment and control counts per campaign, with the control share each campaign got."""
    keys = ["campaign_id"] + (["objective"] if "objective" in audiences_df.columns else [])
    rows = (
        audiences_df.groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(F.when(F.col("arm") == "control", 1).otherwise(0)).alias("control"),
        )
        .orderBy(*keys)
        .collect()
    )
    out = [r.asDict() for r in rows]
    for r in out:
        r.setdefault("objective", None)
        r["treatment"] = r["customers"] - r["control"]
        r["control_share"] = r["control"] / r["customers"] if r["customers"] else 0.0
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Plots (small aggregates -> PNG as base64)
# ----------------------------------------------------------------------------------------------------------------------
def plot_segment_sizes(sizes: Sequence[dict], label) -> str:
    """Customer share next to revenue share: where the money is versus where the heads are."""
    names = [label(r["segment"]) for r in sizes][::-1]
    shares = [r["share"] for r in sizes][::-1]
    revenue = [r["revenue_share"] for r in sizes][::-1]
    fig = _new_figure(10, 0.55 * len(names) + 1.6)
    ax = fig.add_subplot()
    positions = range(len(names))
    height = 0.38
    ax.barh([p + height / 2 for p in positions], shares, height, label="share of customers", color=PALETTE[0])
    ax.barh([p - height / 2 for p in positions], revenue, height, label="share of revenue", color=PALETTE[1])
    for p, (s, v) in enumerate(zip(shares, revenue, strict=True)):
        ax.text(s, p + height / 2, f" {s:.1%}", va="center", fontsize=8)
        ax.text(v, p - height / 2, f" {v:.1%}", va="center", fontsize=8)
    ax.set_yticks(list(positions), names)
    ax.set_xlim(0, max([*shares, *revenue, 0.01]) * 1.18)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.legend(loc="lower right")
    ax.set_title("Segment sizes and revenue shares")
    return _png(fig)


def plot_rf_heatmap(cells: Sequence[dict], bins: int) -> str:
    """R score down, F score across, colour = mean M score; each cell shows its customers."""
    import numpy as np

    mean_m = np.full((bins, bins), np.nan)
    counts = np.zeros((bins, bins), dtype=int)
    for c in cells:
        r, f = int(c["r_score"]), int(c["f_score"])
        if 1 <= r <= bins and 1 <= f <= bins:
            mean_m[bins - r, f - 1] = c["mean_m"]
            counts[bins - r, f - 1] = c["customers"]
    fig = _new_figure(8, 6.5)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(mean_m), cmap="viridis", vmin=1, vmax=bins, aspect="auto")
    ax.set_facecolor("#eeeeee")
    for i in range(bins):
        for j in range(bins):
            if counts[i, j]:
                dark = mean_m[i, j] < (1 + bins) / 2
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:,}\nM̄ {mean_m[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    ax.set_xticks(range(bins), [str(f) for f in range(1, bins + 1)])
    ax.set_yticks(range(bins), [str(r) for r in range(bins, 0, -1)])
    ax.set_xlabel("F score (frequency)")
    ax.set_ylabel("R score (recency)")
    ax.set_title("R × F cells, coloured by mean M score (customers and mean M in each cell)")
    fig.colorbar(image, ax=ax, label="mean M score")
    return _png(fig)


def _ordered(names: set[str], preferred: Sequence[str]) -> list[str]:
    first = list(dict.fromkeys(n for n in preferred if n in names))
    return first + sorted(n for n in names if n not in first)


def plot_migration(moves: Sequence[dict], order: Sequence[str], label, previous: str, current: str) -> str:
    """From → to matrix: colour is the share of the row (where last snapshot's segment went), text the count."""
    import numpy as np

    sources = _ordered({m["source"] for m in moves}, [*order, NEW])
    targets = _ordered({m["target"] for m in moves}, [*order, GONE])
    matrix = np.zeros((len(sources), len(targets)), dtype=float)
    for m in moves:
        matrix[sources.index(m["source"]), targets.index(m["target"])] += m["customers"]
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = _new_figure(11, 0.6 * len(sources) + 2.8)
    ax = fig.add_subplot()
    image = ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(sources)):
        for j in range(len(targets)):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(matrix[i, j]):,}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if row_share[i, j] > 0.55 else "black",
                )
    ax.set_xticks(range(len(targets)), [label(t) for t in targets], rotation=30, ha="right")
    ax.set_yticks(range(len(sources)), [label(s) for s in sources])
    ax.set_xlabel(f"segment on {current}")
    ax.set_ylabel(f"segment on {previous}")
    ax.set_title("Segment migration (colour: share of the previous segment)")
    fig.colorbar(image, ax=ax, label="share of row")
    return _png(fig)


def plot_funnel(stages: Sequence[dict], label) -> str:
    """Lifecycle stages as a centred funnel in lifecycle order."""
    names = [label(s["segment"]) for s in stages][::-1]
    counts = [s["customers"] for s in stages][::-1]
    total = sum(counts) or 1
    widest = max(counts or [1])
    fig = _new_figure(10, 0.6 * len(names) + 1.5)
    ax = fig.add_subplot()
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(names))][::-1]
    ax.barh(range(len(names)), counts, left=[(widest - c) / 2 for c in counts], color=colours)
    for p, c in enumerate(counts):
        ax.text(widest / 2, p, f"{c:,} ({c / total:.1%})", ha="center", va="center", fontsize=9, color="black")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks([])
    ax.set_title("Lifecycle funnel (customers per stage)")
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return _png(fig)


@dataclass(frozen=True)
class Panel:
    """One histogram: bin counts per group over [low, high]; ``is_log`` when the bins are of ``log10(1 + value)``."""

    title: str
    counts: list[dict]
    low: float
    high: float
    is_log: bool = False


def plot_distributions(panels: Sequence[Panel], order: Sequence[str], label) -> str:
    """One panel per scored value: the share of each segment's customers per bin, as step lines."""
    import numpy as np

    fig = _new_figure(12, 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        counts = panel.counts
        groups = _ordered({c["group"] for c in counts}, order)
        edges = np.linspace(panel.low, panel.high, HISTOGRAM_BINS + 1)
        for k, group in enumerate(groups):
            values = np.zeros(HISTOGRAM_BINS)
            for c in counts:
                if c["group"] == group:
                    values[c["bin"]] += c["customers"]
            share = values / max(values.sum(), 1)
            ax.stairs(share, edges, label=label(group), color=PALETTE[k % len(PALETTE)], linewidth=1.6)
        if panel.is_log:  # label the log10(1 + value) axis with the values themselves
            ticks = [v for v in (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000) if np.log10(1 + v) <= panel.high]
            ax.set_xticks([np.log10(1 + v) for v in ticks], [f"{v:,}" for v in ticks])
        ax.set_title(panel.title)
        ax.set_ylabel("share of the segment's customers")
    axes[-1].legend(fontsize=8)
    return _png(fig)


def plot_audiences(arms: Sequence[dict]) -> str:
    """Treatment and control per campaign, with the control share written at the end of each bar."""
    names = [f"{a['campaign_id']}" + (f" ({a['objective']})" if a["objective"] else "") for a in arms][::-1]
    treatment = [a["treatment"] for a in arms][::-1]
    control = [a["control"] for a in arms][::-1]
    fig = _new_figure(10, 0.55 * len(names) + 1.6)
    ax = fig.add_subplot()
    ax.barh(range(len(names)), treatment, color=PALETTE[0], label="treatment")
    ax.barh(range(len(names)), control, left=treatment, color=PALETTE[1], label="control")
    for p, a in enumerate(arms[::-1]):
        ax.text(a["customers"], p, f" control {a['control_share']:.1%}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, max([a["customers"] for a in arms] or [1]) * 1.25)
    ax.legend(loc="lower right")
    ax.set_title("Campaign audiences: treatment and control customers")
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class Section:
    """One part of the report: a title, an optional image (base64 PNG) and table, or a note why it is missing."""

    anchor: str
    title: str
    description: str
    image: str | None = None
    table: str | None = None
    note: str | None = None


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _unavailable(anchor: str, title: str, description: str, reason: str) -> Section:
    return Section(anchor, title, description, note=f"{title}: {NOT_AVAILABLE} ({reason}).")


def _fmt(value: float | None, pattern: str) -> str:
    return "" if value is None else format(value, pattern)


def segments_section(sizes: list[dict] | None, label) -> Section:
    title, about = "Segment sizes and revenue", "Customers and revenue per RFM segment; revenue is monetary value."
    if not sizes:
        return _unavailable("sizes", title, about, "no customer_segments snapshot for this date")
    headers = ["segment", "customers", "share", "revenue", "revenue share", "mean R", "mean F", "mean M"]
    scored = "avg_clv" in sizes[0]
    if scored:
        headers += ["mean CLV", "mean churn probability"]
    rows = []
    for r in sizes:
        row = [
            label(r["segment"]),
            f"{r['customers']:,}",
            f"{r['share']:.1%}",
            f"{r['revenue'] or 0:,.0f}",
            f"{r['revenue_share']:.1%}",
            _fmt(r["avg_r"], ".2f"),
            _fmt(r["avg_f"], ".2f"),
            _fmt(r["avg_m"], ".2f"),
        ]
        if scored:
            row += [_fmt(r.get("avg_clv"), ",.0f"), _fmt(r.get("avg_churn_probability"), ".1%")]
        rows.append(row)
    return Section("sizes", title, about, plot_segment_sizes(sizes, label), _table(headers, rows))


def build_sections(inputs: ReportInputs, settings: Settings) -> list[Section]:
    """Aggregate in Spark and draw every section, each degrading on its own when its data is missing."""
    from matplotlib import rc_context

    with rc_context(_rc()):
        return _sections(inputs, settings)


def _sections(inputs: ReportInputs, settings: Settings) -> list[Section]:
    label_zh = cjk_font() is not None
    labels = Labels(settings, label_zh)
    dimension = "rfm_segment"
    segment_order = [r.name for r in settings.segments.rule_sets[dimension].rules]

    def seg_label(name: str | None) -> str:
        return labels(dimension, name)

    segments_df = inputs.segments_df
    present = segments_df is not None and segments_df.limit(1).count() > 0
    sections: list[Section] = []

    sizes = segment_sizes(segments_df, dimension) if present else None
    sections.append(segments_section(sizes, seg_label))

    title = "R × F heatmap"
    about = "Where customers sit on recency and frequency scores, coloured by mean monetary score."
    if present and has_values(segments_df, "r_score"):
        sections.append(Section("heatmap", title, about, plot_rf_heatmap(rf_cells(segments_df), settings.rfm.bins)))
    else:
        sections.append(_unavailable("heatmap", title, about, "no scored customers"))

    title = "Segment migration"
    about = "Where the customers of the previous snapshot are now (rows: previous segment, columns: current segment)."
    moves = None
    if present and inputs.migration_df is not None:
        moves = migration_from_table(inputs.migration_df, dimension)
    if not moves and present and inputs.previous_segments_df is not None:
        moves = migration_between(segments_df, inputs.previous_segments_df, dimension)
    if moves:
        previous = str(inputs.previous_as_of) if inputs.previous_as_of else "previous snapshot"
        image = plot_migration(moves, segment_order, seg_label, previous, str(inputs.as_of))
        stay = sum(m["customers"] for m in moves if m["source"] == m["target"])
        both = sum(m["customers"] for m in moves if m["source"] != NEW and m["target"] != GONE)
        kept = f"{stay:,} of {both:,} customers in both snapshots kept their segment ({stay / both:.1%})."
        sections.append(Section("migration", title, about, image, note=kept if both else None))
    else:
        sections.append(_unavailable("migration", title, about, "no earlier snapshot to compare with"))

    title, about = "Lifecycle funnel", "Customers per lifecycle stage, from first contact to dormancy."
    if present and has_values(segments_df, "lifecycle_stage"):
        image = plot_funnel(lifecycle_funnel(segments_df, settings), lambda n: labels("lifecycle_stage", n))
        sections.append(Section("funnel", title, about, image))
    else:
        sections.append(_unavailable("funnel", title, about, "no lifecycle_stage column"))

    title = "CLV and churn risk"
    about = "Distribution of predicted customer lifetime value and churn probability within each segment."
    panels = []
    if present:
        if has_values(segments_df, "clv"):
            value = log_value("clv")
            low, high = value_range(segments_df, value)
            counts = histogram(segments_df, value, dimension, low, high, HISTOGRAM_BINS)
            panels.append(Panel("predicted CLV (log scale)", counts, low, high, is_log=True))
        if has_values(segments_df, "churn_probability"):
            counts = histogram(segments_df, F.col("churn_probability"), dimension, 0.0, 1.0, HISTOGRAM_BINS)
            panels.append(Panel("churn probability", counts, 0.0, 1.0))
    if panels:
        sections.append(Section("scores", title, about, plot_distributions(panels, segment_order, seg_label)))
    else:
        sections.append(_unavailable("scores", title, about, "customers are not scored yet: run `segmentation score`"))

    title = "Campaign audiences"
    about = "Customers per campaign and arm; the control group is held out to measure uplift."
    audiences_df = inputs.audiences_df
    if audiences_df is not None and "arm" in audiences_df.columns and audiences_df.limit(1).count() > 0:
        arms = audience_arms(audiences_df)
        rows = [
            [
                a["campaign_id"],
                a["objective"] or "",
                f"{a['customers']:,}",
                f"{a['control']:,}",
                f"{a['control_share']:.1%}",
            ]
            for a in arms
        ]
        table = _table(["campaign", "objective", "customers", "control", "control share"], rows)
        sections.append(Section("audiences", title, about, plot_audiences(arms), table))
    else:
        sections.append(_unavailable("audiences", title, about, "no campaign_audiences for this date"))
    return sections


CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1240px; padding: 24px; color: #222; background: #fff; }
h1 { margin-bottom: 4px; } .meta { color: #666; margin-top: 0; }
nav a { margin-right: 14px; }
section { border-top: 1px solid #ddd; padding: 12px 0 20px; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; }
.note { background: #fff7e0; border-left: 4px solid #f0b400; padding: 8px 12px; }
.info { color: #555; }
"""


def render_html(sections: Sequence[Section], inputs: ReportInputs, settings: Settings) -> str:
    """The whole report as one HTML string: inline CSS, images as data URIs, nothing fetched from anywhere."""
    versions = ", ".join(f"{k} v{v}" for k, v in inputs.table_versions.items() if v is not None) or "none"
    previous = str(inputs.previous_as_of) if inputs.previous_as_of else "none"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Customer segmentation report {inputs.as_of}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Customer segmentation, as of {inputs.as_of}</h1>",
        f'<p class="meta">Tables under {html.escape(settings.outputs.path)} ({html.escape(versions)}); '
        f"previous snapshot: {previous}.</p>",
        "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections) + "</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        parts.append(f'<p class="info">{html.escape(s.description)}</p>')
        if s.image:
            parts.append(f'<img alt="{html.escape(s.title)}" src="data:image/png;base64,{s.image}">')
        if s.note:
            css = "note" if s.image is None else "info"
            parts.append(f'<p class="{css}">{html.escape(s.note)}</p>')
        if s.table:
            parts.append(s.table)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(inputs: ReportInputs, settings: Settings) -> str:
    """Aggregate, draw and render the report for ``inputs.as_of``; returns the HTML text."""
    return render_html(build_sections(inputs, settings), inputs, settings)
