"""The benchmark's targets as data: ``targets.yaml`` names them, this module checks them against one run.

A target is a name, a metric of :data:`METRICS`, the size it applies to (``at``, optionally divided by the same
metric at ``over``), a comparison and a threshold. Moving a threshold is an edit of the YAML file; a new kind of
target is one entry in :data:`METRICS` that reads the number from the results :func:`segmentation.bench.run`
returns. Only the standard library is imported at module level (the DuckDB worker imports this package).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
SYMBOLS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
# results key holding the rows, row key of `at`
SCOPES = {"size": ("sizes", "orders"), "clv": ("clv", "customers"), "membership": ("membership", "customers")}

Row = Mapping[str, Any]


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _memory_gb(text: str | None) -> float | None:
    """``spark.driver_memory`` ("4g", "4096m"; a bare number is MiB, as in Spark) in GiB."""
    if not text:
        return None
    value = str(text).strip().lower().removesuffix("b")
    scale = {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1.0, "t": 1024.0}
    return float(value[:-1]) * scale[value[-1]] if value[-1] in scale else float(value) / 1024


def _driver_detail(results: Row, size: Row) -> str:
    peak = size["build"].get("peak_rss_mb")
    return (
        f"; completed with spark.driver_memory={results.get('driver_memory')}, driver JVM peak resident"
        f" {'–' if peak is None else f'{peak:,.0f} MiB'} (heap capped, plus JVM overhead)"
    )


def _resolution(results: Row, clv: Row) -> str:
    return f" ({clv.get('resolution_days', 1)}-day times)"


@dataclass(frozen=True)
class Metric:
    """One number a benchmark run produces and how to read it from the run's results.

    ``read(results, row)`` gets the whole results and the row ``at`` selects (a ``results["sizes"]`` entry for scope
    ``size``, a ``results["clv"]`` entry for scope ``clv``) and returns None when the run did not measure it.
    """

    scope: str
    read: Callable[[Row, Row], float | None]
    fmt: Callable[[float], str]
    missing: str = "not measured"
    detail: Callable[[Row, Row], str] | None = None


def _times(v: float) -> str:
    return f"{v:.2f}×"


def _seconds(v: float) -> str:
    return f"{v:,.1f} s"


METRICS: dict[str, Metric] = {
    "build_over_duckdb": Metric("size", lambda r, s: s.get("ratio_build_over_duckdb"), _times),
    "build_core_over_duckdb": Metric(
        "size", lambda r, s: _div(s["build"]["extra"].get("core_s"), s["duckdb"]["wall_s"]), _times
    ),
    "naive_over_build": Metric("size", lambda r, s: s.get("ratio_naive_over_build"), _times, "naive not run"),
    "incremental_over_build": Metric(
        "size", lambda r, s: s.get("ratio_incremental_over_build"), _times, "incremental build not run"
    ),
    "train_over_build": Metric(
        "size", lambda r, s: s.get("ratio_train_over_build"), _times, "train not run at this size"
    ),
    "score_over_build": Metric(
        "size", lambda r, s: s.get("ratio_score_over_build"), _times, "score not run at this size"
    ),
    "build_job_s": Metric("size", lambda r, s: s["build"]["wall_s"], _seconds),
    "driver_memory_gb": Metric(
        "size", lambda r, s: _memory_gb(r.get("driver_memory")), lambda v: f"{v:g} GB", detail=_driver_detail
    ),
    "clv_collapsed_fit_s": Metric("clv", lambda r, c: c["collapsed_fit_s"], _seconds, detail=_resolution),
    "clv_speedup": Metric("clv", lambda r, c: c["speedup"], lambda v: f"{v:.1f}×", detail=_resolution),
    "clv_max_rel_param_diff": Metric("clv", lambda r, c: c["max_rel_param_diff"], lambda v: f"{v:.1e}"),
    "membership_merge_over_slice": Metric(
        "membership",
        lambda r, m: _div(m["merge_deletion_vectors"]["seconds"], m["snapshot_slice"]["seconds"]),
        _times,
        detail=lambda r, m: (
            f" ({m['merge_deletion_vectors']['seconds']:.1f} s for {m['merge_deletion_vectors']['rows_written']:,}"
            f" rows vs {m['snapshot_slice']['seconds']:.1f} s for {m['snapshot_slice']['rows_written']:,})"
        ),
    ),
}


@dataclass(frozen=True)
class Target:
    name: str
    metric: str
    at: int
    comparison: str
    threshold: float
    over: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric: {self.metric!r} is not a benchmark metric ({', '.join(METRICS)})")
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison: {self.comparison!r} is not one of {', '.join(COMPARISONS)}")

    @property
    def noun(self) -> str:
        return SCOPES[METRICS[self.metric].scope][1]

    def describe(self) -> str:
        """The metric and where it is read, e.g. ``build_job_s at 100,000,000 orders / at 20,000,000``."""
        over = f" / at {self.over:,}" if self.over is not None else ""
        return f"`{self.metric}` at {self.at:,} {self.noun}{over}"

    def describe_threshold(self) -> str:
        return f"{SYMBOLS[self.comparison]} {self.threshold:g}"


@dataclass(frozen=True)
class Outcome:
    """A target checked against one run: the value (None when not measured), whether it is met, the report text."""

    target: Target
    value: float | None
    met: bool | None
    text: str


_REQUIRED = ("name", "metric", "at", "comparison", "threshold")


def load_targets(path: str | Path | None = None) -> tuple[Target, ...]:
    """The targets of ``path``, by default the ``targets.yaml`` shipped in this package.

    Raises:
        ValueError: naming the file and the entry, for a missing or unknown key or an unknown metric or comparison.
    """
    import yaml

    source = Path(path) if path is not None else resources.files("segmentation.bench").joinpath("targets.yaml")
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) != {"targets"} or not isinstance(data["targets"], list):
        raise ValueError(f"{source}: expected exactly one key, targets, holding a list")
    targets = []
    for i, entry in enumerate(data["targets"]):
        where = f"{source}: targets[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with keys {', '.join(_REQUIRED)} and optionally over")
        unknown = sorted(set(entry) - {*_REQUIRED, "over"})
        missing = [k for k in _REQUIRED if k not in entry]
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        try:
            over = entry.get("over")
            targets.append(
                Target(
                    name=str(entry["name"]),
                    metric=str(entry["metric"]),
                    at=int(entry["at"]),
                    comparison=str(entry["comparison"]),
                    threshold=float(entry["threshold"]),
                    over=None if over is None else int(over),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} ({entry.get('name')!r}): {exc}") from exc
    return tuple(targets)


def _row(rows: Sequence[Row], key: str, value: int) -> Row | None:
    return next((r for r in rows if r.get(key) == value), None)


def evaluate(target: Target, results: Row) -> Outcome:
    """``target`` against ``results``; a size or a reference the run did not measure gives ``met`` None and says so."""
    metric = METRICS[target.metric]
    rows_key, key = SCOPES[metric.scope]
    rows = results.get(rows_key) or []
    row = _row(rows, key, target.at)
    if row is None:
        text = f"not measured ({target.at:,} {key} not run)"
        largest = max(rows, key=lambda r: r[key], default=None)
        if largest is not None and target.over is None:
            value = metric.read(results, largest)
            text += f"; at {largest[key]:,} {key}: {metric.missing if value is None else metric.fmt(value)}"
        return Outcome(target, None, None, text)
    value, fmt = metric.read(results, row), metric.fmt
    if value is not None and target.over is not None:
        base = _row(rows, key, target.over)
        if base is None:
            return Outcome(target, None, None, f"not measured ({target.over:,} {key} not run)")
        value, fmt = _div(value, metric.read(results, base)), _times
    if value is None:
        return Outcome(target, None, None, f"{metric.missing} at {target.at:,} {key} in this run")
    detail = metric.detail(results, row) if metric.detail else ""
    return Outcome(target, value, COMPARISONS[target.comparison](value, target.threshold), fmt(value) + detail)


def evaluate_all(results: Row, targets: Sequence[Target] | None = None) -> list[Outcome]:
    return [evaluate(t, results) for t in (load_targets() if targets is None else targets)]
