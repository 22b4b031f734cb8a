"""The report as HTML: one section per view, each degrading to a note on its own, rendered to a single file."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyspark.sql.functions as F

from segmentation.config import Settings
from segmentation.models.clv.guards import GuardFinding
from segmentation.report.aggregates import (
    GONE,
    HISTOGRAM_BINS,
    NEW,
    audience_arms,
    entries_and_exits,
    has_values,
    histogram,
    lifecycle_funnel,
    log_range,
    migration_between,
    migration_from_table,
    rf_cells,
    segment_sizes,
)
from segmentation.report.inputs import ReportInputs, week_start
from segmentation.report.plots import (
    Labels,
    Panel,
    _rc,
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

NOT_AVAILABLE = "not available for this run"


@dataclass
class Section:
    """One part of the report: a title, an optional image (base64 PNG) and table, or a note why it is missing."""

    anchor: str
    title: str
    description: str
    image: str | None = None
    table: str | None = None
    note: str | None = None
    gallery: tuple[tuple[str, str], ...] = ()  # (caption, base64 PNG) shown after the table


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _unavailable(anchor: str, title: str, description: str, reason: str) -> Section:
    return Section(anchor, title, description, note=f"{title}: {NOT_AVAILABLE} ({reason}).")


def _fmt(value: float | None, pattern: str) -> str:
    return "" if value is None else format(value, pattern)


def segments_section(
    sizes: list[dict] | None, label, currency: str = "", colours: dict[str, str] | None = None
) -> Section:
    title = "Segment sizes and revenue"
    about = f"Customers and revenue per RFM segment; revenue is monetary value in {currency or 'the orders currency'}."
    if not sizes:
        return _unavailable("sizes", title, about, "no customer_segments snapshot for this date")
    unit = f" ({currency})" if currency else ""
    headers = ["segment", "customers", "share", f"revenue{unit}", "revenue share", "mean R", "mean F", "mean M"]
    scored = "avg_clv" in sizes[0]
    if scored:
        headers += [f"mean CLV{unit}", "mean churn probability"]
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
    return Section("sizes", title, about, plot_segment_sizes(sizes, label, colours, currency), _table(headers, rows))


def changes_section(inputs: ReportInputs, dimension: str, order: Sequence[str], label) -> Section:
    """The week's entries and exits per segment (``segment_changes``), next to the migration matrix."""
    start = week_start(inputs.as_of)
    title = "Entries and exits this week"
    about = (
        f"Customers who entered or left each segment between {start} and {inputs.as_of} (segment_changes): a move "
        "counts as an exit from one segment and an entry into another; new customers and customers gone are apart."
    )
    rows = [] if inputs.changes_df is None else entries_and_exits(inputs.changes_df, dimension, start, inputs.as_of)
    if not rows:
        return _unavailable("changes", title, about, f"no {dimension} changes in segment_changes for the week")
    rows = sorted(rows, key=lambda r: order.index(r["segment"]) if r["segment"] in order else len(order))
    table = _table(
        ["segment", "entered", "of which new", "exited", "of which gone", "net"],
        [
            [
                label(r["segment"]),
                f"{r['entered']:,}",
                f"{r['new']:,}",
                f"{r['exited']:,}",
                f"{r['left']:,}",
                f"{r['net']:+,}",
            ]
            for r in rows
        ],
    )
    image = plot_entries_exits(rows, order, label, str(start), str(inputs.as_of))
    return Section("changes", title, about, image, table)


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
    colours = segment_colours(segment_order)
    currency = settings.quality.reporting_currency or settings.quality.currencies[0]

    def seg_label(name: str | None) -> str:
        return labels(dimension, name)

    segments_df = inputs.segments_df
    present = segments_df is not None and segments_df.limit(1).count() > 0
    sections: list[Section] = []

    sizes = segment_sizes(segments_df, dimension) if present else None
    sections.append(segments_section(sizes, seg_label, currency, colours))

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
    sections.append(changes_section(inputs, dimension, segment_order, seg_label))

    title, about = "Lifecycle funnel", "Customers per lifecycle stage, from first contact to dormancy."
    if present and has_values(segments_df, "lifecycle_stage"):
        image = plot_funnel(lifecycle_funnel(segments_df, settings), lambda n: labels("lifecycle_stage", n))
        sections.append(Section("funnel", title, about, image))
    else:
        sections.append(_unavailable("funnel", title, about, "no lifecycle_stage column"))

    title = "CLV, P(alive) and churn risk"
    about = (
        f"Distribution of predicted customer lifetime value ({currency}, log axis up to its 99th percentile), of the"
        " probability of being alive and of churn probability per segment; each panel states whom it leaves out."
    )
    panels = []
    if present:
        if has_values(segments_df, "clv"):
            low, high = log_range(segments_df, "clv")
            value = F.log10(F.when(F.col("clv") > 0, F.col("clv").cast("double")).otherwise(F.lit(low / 10)))
            counts = histogram(
                segments_df, value, dimension, float(np.log10(low)), float(np.log10(high)), HISTOGRAM_BINS, clip=False
            )
            panels.append(Panel(f"predicted CLV ({currency}, log scale)", counts, low, high, True, currency))
        for column, name in (("p_alive", "P(alive)"), ("churn_probability", "churn probability")):
            if has_values(segments_df, column):
                counts = histogram(segments_df, F.col(column), dimension, 0.0, 1.0, HISTOGRAM_BINS)
                panels.append(Panel(name, counts, 0.0, 1.0))
    if panels:
        image = plot_distributions(panels, segment_order, seg_label, colours)
        sections.append(Section("scores", title, about, image))
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
    sections.append(models_section(inputs))
    return sections


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def models_section(inputs: ReportInputs) -> Section:
    """The newest version of each model next to its champion and baseline, and why a version was kept from champion."""
    from segmentation.models import guarding

    title = "Models"
    about = (
        "The newest trained version of each model, judged on its holdout against its own baseline and against the"
        " champion that scores customers (re-evaluated on the same holdout). A version a guard refused is registered"
        " but never becomes champion, and a CLV purchase model a guard refused is not selected; docs/models.md says"
        " what to do about each guard. The pictures are the newest version's diagnostics, as logged in MLflow."
    )
    if not inputs.models:
        return _unavailable("models", title, about, inputs.models_note or "no model trained yet")
    rows, refusals, gallery = [], [], []
    for m in inputs.models:
        for c in m.candidates:
            if not c.get("selected") and c.get("guards"):
                reasons = c["guards"].split(",")
                words = "; ".join(guarding.meaning(m.family, r) for r in reasons)
                refusals.append(
                    f"{m.family} v{m.latest_version}: candidate {c['candidate']} was not selected: {words}"
                    f" [guard {', '.join(reasons)}; its nested MLflow run has the numbers]."
                )
        selected = next((c["candidate"] for c in m.candidates if c.get("selected")), None)
        gallery += [
            (f"{m.family} v{m.latest_version}: {name.replace('_', ' ')}", base64.b64encode(png).decode("ascii"))
            for name, png in m.images
        ]
        if m.guards:
            verdict = "refused by guard: " + ", ".join(m.guards)
            refusals += [
                guarding.refusal_message(m.family, m.registered_model, m.latest_version, GuardFinding(r, d))
                for r, d in m.guards.items()
            ]
        elif m.promoted:
            verdict = "champion"
        else:
            verdict = f"did not beat champion v{m.champion_version}" if m.champion_version else "not promoted"
        champion = f"v{m.champion_version}" if m.champion_version else "none"
        rows.append(
            [
                f"{m.family} ({m.registered_model})",
                f"v{m.latest_version} ({m.run_name}{f', {selected}' if selected else ''})",
                m.metric,
                _value(m.latest_value),
                _value(m.baseline_value),
                champion,
                _value(m.champion_value),
                verdict,
            ]
        )
    headers = [
        "model",
        "newest version",
        "metric",
        "newest",
        "baseline",
        "champion",
        "champion, same holdout",
        "verdict",
    ]
    note = " ".join(refusals) or None
    return Section("models", title, about, table=_table(headers, rows), note=note, gallery=tuple(gallery))


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
figure { margin: 12px 0; } figcaption { color: #555; font-size: 0.9em; }
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
            css = "note" if s.image is None else "info"  # a missing view, or a refused model, stands out
            parts.append(f'<p class="{css}">{html.escape(s.note)}</p>')
        if s.table:
            parts.append(s.table)
        for caption, picture in s.gallery:
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{picture}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(inputs: ReportInputs, settings: Settings) -> str:
    """Aggregate, draw and render the report for ``inputs.as_of``; returns the HTML text."""
    return render_html(build_sections(inputs, settings), inputs, settings)
