"""Matplotlib figures of the small aggregates, returned as base64 PNG to embed in the HTML.

Figures are drawn with the object API (``Figure``, no pyplot state) so nothing needs a display; Chinese display
names are used only when a CJK font is found. A segment has one colour in every chart (``segment_colours``, from the
rule order), legends sit outside the plotting area so they never hide a bar or a label, and every amount carries the
reporting currency.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from matplotlib.figure import Figure

from segmentation.config import Settings
from segmentation.report.aggregates import GONE, HISTOGRAM_BINS, NEW, _ordered

log = logging.getLogger(__name__)

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
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


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


def segment_colours(order: Sequence[str]) -> dict[str, str]:
    """One colour per segment, by its position in the rule set: the same in every chart of the report."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(order)}


def _colour(colours: dict[str, str], name: str) -> str:
    return colours.get(name, "#555555")


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


def plot_segment_sizes(sizes: Sequence[dict], label, colours: dict[str, str] | None = None, currency: str = "") -> str:
    """Customer share next to revenue share: where the money is versus where the heads are.

    Each segment's two bars are in its colour: solid for customers, hatched for revenue; the legend sits below.
    """
    from matplotlib.patches import Patch

    colours = colours or segment_colours([r["segment"] for r in sizes])
    names = [label(r["segment"]) for r in sizes][::-1]
    fills = [_colour(colours, r["segment"]) for r in sizes][::-1]
    shares = [r["share"] for r in sizes][::-1]
    revenue = [r["revenue_share"] for r in sizes][::-1]
    fig = _new_figure(10, 0.6 * len(names) + 2.0)
    ax = fig.add_subplot()
    positions = range(len(names))
    height = 0.38
    ax.barh([p + height / 2 for p in positions], shares, height, color=fills)
    ax.barh([p - height / 2 for p in positions], revenue, height, color="white", edgecolor=fills, hatch="////")
    for p, (s, v) in enumerate(zip(shares, revenue, strict=True)):
        ax.text(s, p + height / 2, f" {s:.1%}", va="center", fontsize=8)
        ax.text(v, p - height / 2, f" {v:.1%} rev.", va="center", fontsize=8)
    ax.set_yticks(list(positions), names)
    ax.set_xlim(0, max([*shares, *revenue, 0.01]) * 1.25)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    legend = [
        Patch(facecolor="#777777", label="share of customers"),
        Patch(facecolor="white", edgecolor="#777777", hatch="////", label=f"share of revenue ({currency})"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=2, frameon=False)
    ax.set_title("Segment sizes and revenue shares" + (f" (revenue in {currency})" if currency else ""))
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
    """One histogram: bin counts per group over [low, high].

    ``is_log``: the bins are equal on a log axis, i.e. of ``log10(value)`` over [log10(low), log10(high)], and the axis
    is drawn in log scale with the values themselves. Bins -1 and ``HISTOGRAM_BINS`` hold the customers below and above
    the range: they are not drawn, and the panel says what share of customers they are.
    """

    title: str
    counts: list[dict]
    low: float
    high: float
    is_log: bool = False
    unit: str = ""


def _outside_note(counts: Sequence[dict], panel: Panel) -> str:
    total = sum(c["customers"] for c in counts) or 1
    above = sum(c["customers"] for c in counts if c["bin"] >= HISTOGRAM_BINS) / total
    below = sum(c["customers"] for c in counts if c["bin"] < 0) / total
    notes = []
    if below:
        notes.append(f"{below:.1%} below {panel.low:,.0f}{' ' + panel.unit if panel.unit else ''}")
    if above:
        notes.append(f"{above:.1%} above {panel.high:,.0f}{' ' + panel.unit if panel.unit else ''}")
    return ("not drawn: " + ", ".join(notes)) if notes else "every customer drawn"


def plot_distributions(
    panels: Sequence[Panel], order: Sequence[str], label, colours: dict[str, str] | None = None
) -> str:
    """One panel per scored value: the share of each segment's customers per bin, as step lines, one legend below."""
    import numpy as np

    colours = colours or segment_colours(order)
    fig = _new_figure(5 * len(panels) + 1, 5.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn: dict[str, object] = {}
    for ax, panel in zip(axes, panels, strict=True):
        counts = panel.counts
        groups = _ordered({c["group"] for c in counts}, order)
        if panel.is_log:
            edges = np.logspace(np.log10(panel.low), np.log10(panel.high), HISTOGRAM_BINS + 1)
        else:
            edges = np.linspace(panel.low, panel.high, HISTOGRAM_BINS + 1)
        for group in groups:
            values = np.zeros(HISTOGRAM_BINS)
            everyone = 0
            for c in counts:
                if c["group"] == group:
                    everyone += c["customers"]
                    if 0 <= c["bin"] < HISTOGRAM_BINS:
                        values[c["bin"]] += c["customers"]
            share = values / max(everyone, 1)
            drawn[group] = ax.stairs(share, edges, color=_colour(colours, group), linewidth=1.6)
        if panel.is_log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
        ax.set_title(f"{panel.title}\n({_outside_note(counts, panel)})", fontsize=10)
        ax.set_xlabel(panel.unit or "probability")
        ax.set_ylabel("share of the segment's customers")
    ordered = _ordered(set(drawn), order)
    fig.legend(
        [drawn[g] for g in ordered], [label(g) for g in ordered], loc="outside lower center", ncols=4, frameon=False
    )
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
    ax.set_xlim(0, max([a["customers"] for a in arms] or [1]) * 1.3)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    ax.set_title("Campaign audiences: treatment and control customers")
    return _png(fig)


def plot_entries_exits(rows: Sequence[dict], order: Sequence[str], label, start: str, end: str) -> str:
    """Entries to the right, exits to the left of each segment, with the net change written beside."""
    by_segment = {r["segment"]: r for r in rows}
    segments = _ordered(set(by_segment), order)[::-1]
    entered = [by_segment[s]["entered"] for s in segments]
    exited = [-by_segment[s]["exited"] for s in segments]
    fig = _new_figure(10, 0.55 * len(segments) + 1.6)
    ax = fig.add_subplot()
    ax.barh(range(len(segments)), entered, color=PALETTE[2], label="entered")
    ax.barh(range(len(segments)), exited, color=PALETTE[3], label="exited")
    widest = max([*entered, *(-e for e in exited), 1])
    for p, s in enumerate(segments):
        ax.text(widest * 1.02, p, f"net {by_segment[s]['net']:+,}", va="center", fontsize=8)
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_yticks(range(len(segments)), [label(s) for s in segments])
    ax.set_xlim(-widest * 1.1, widest * 1.3)
    ax.xaxis.set_major_formatter(lambda x, _: f"{abs(x):,.0f}")
    ax.set_xlabel("customers")
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    ax.set_title(f"Entries and exits per segment, {start} to {end}")
    return _png(fig)
