"""Matplotlib figures of the small aggregates, returned as base64 PNG to embed in the HTML.

Figures are drawn with the object API (``Figure``, no pyplot state) so nothing needs a display; Chinese display
names are used only when a CJK font is found.
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
