"""``profile``: a pre-flight of an orders table before its first build. Reads, never writes a table.

Steps: read the orders (and the optional tables) and check every contract, listing every problem -> tag every order
with the product's own reject reason (the same steps as build: text parsing, exclusions, duplicates, FX) -> one
aggregation over the tagged orders (``transforms.profiling.value_counts``) -> compare the values found with the
configuration -> write ``profile_<as-of>.md``, ``profile_<as-of>.html`` and ``profile_<as-of>.yaml`` (a suggested
configuration layer to pass with ``--conf``) under ``outputs.report_dir``. The run is recorded in the manifest like
every job's; ``problems`` lists what would make ``build`` refuse the table.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pyspark.sql import DataFrame, SparkSession

from segmentation import io, schema
from segmentation.config import Settings
from segmentation.errors import InputError
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener
from segmentation.transforms import currency, profiling, quality

OPTIONAL = {
    "identity_map": schema.IDENTITY_MAP,
    "profiles": schema.PROFILES,
    "fx_rates": schema.FX_RATES,
    "exclusions": schema.EXCLUSIONS,
}
COMPARED = ("currency", "status", "channel", "category")


@dataclass
class Block:
    """One section of the profile: a title, lines of text and an optional table."""

    title: str
    lines: list[str] = field(default_factory=list)
    headers: Sequence[str] = ()
    rows: list[Sequence[object]] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileResult:
    markdown: str
    markdown_path: str
    html_path: str
    conf_path: str
    problems: list[str]
    warnings: list[str]


def _schema_problems(spark: SparkSession, settings: Settings, orders: io.ReadResult) -> tuple[list[str], dict]:
    """Every contract problem of the orders and the optional tables (never stops at the first), and their row counts."""
    problems, rows = [], {"orders": None}
    text = schema.TEXT_PARSED_ORDER_COLUMNS if settings.quality.parse_text_columns else ()
    try:
        schema.check_columns(orders.df, schema.ORDERS, settings.inputs.orders.path, text)
    except schema.SchemaError as exc:
        problems.append(str(exc))
    for name, contract in OPTIONAL.items():
        ref = getattr(settings.inputs, name)
        if ref is None:
            continue
        try:
            table = io.read_table(spark, ref)
            schema.check_columns(table.df, contract, ref.path)
            rows[name] = table.df.count()
        except FileNotFoundError as exc:
            problems.append(f"inputs.{name}: {exc}")
        except schema.SchemaError as exc:
            problems.append(str(exc))
    return problems, rows


def _tagged(run: JobRun, raw_df: DataFrame) -> DataFrame:
    """Every order with its reject reason, exactly as build decides it."""
    spark, settings, q = run.spark, run.settings, run.settings.quality
    df = quality.with_parsed_text(raw_df, q.timestamp_formats) if q.parse_text_columns else raw_df
    orders_df = schema.conform(df, schema.ORDERS, (quality.PARSE_REASON,) if q.parse_text_columns else ())
    identity = common.read_optional(spark, settings.inputs.identity_map, schema.IDENTITY_MAP)
    fx = common.read_optional(spark, settings.inputs.fx_rates, schema.FX_RATES)
    exclusions = common.read_optional(spark, settings.inputs.exclusions, schema.EXCLUSIONS)
    keys_df = quality.exclusion_keys(exclusions.df, identity.df if identity else None) if exclusions else None
    duplicates_df = run.persist(quality.duplicate_keys(orders_df))
    broadcast = duplicates_df.count() <= q.broadcast_duplicate_keys_max
    tagged = quality.with_reject_reason(orders_df, run.as_of, q, keys_df, duplicates_df if broadcast else None)
    if q.reporting_currency is not None:
        tagged = currency.with_reporting_currency(tagged, fx.df if fx else None, q.reporting_currency)
    return tagged


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _shown(value: object) -> str:
    if value is None:
        return "(null)"
    text = str(value)
    return repr(text) if text != text.strip() or not text else text


def profile_blocks(run: JobRun, tagged_df: DataFrame) -> tuple[list[Block], list[str], list[str], dict]:
    """The sections of the profile from one aggregation over the tagged orders; also problems, warnings, the conf."""
    settings, q = run.settings, run.settings.quality
    counts_df = run.persist(profiling.value_counts(tagged_df, q))
    values = [r.asDict() for r in profiling.capped_values(counts_df).collect()]
    buckets = profiling.orders_per_customer(counts_df).collect()
    stats = profiling.customer_stats(counts_df)
    total = next((v for v in values if v["dimension"] == profiling.TOTAL), None) or {"rows": 0, "valid_rows": 0}
    rows, valid = total["rows"], total["valid_rows"]
    by_dim: dict[str, list[dict]] = {}
    for v in values:
        by_dim.setdefault(v["dimension"], []).append(v)
    reasons = {v["value"]: v["rows"] for v in by_dim.get(quality.REASON, [])}
    problems, warnings = [], []
    try:
        quality.check_rejected_share(reasons, q.max_rejected_share, settings.inputs.orders.path)
    except InputError as exc:
        problems.append(str(exc))
    if rows and not stats["customers"]:
        problems.append(f"no valid order with status '{q.sale_status}': build has no customer to segment")
    blocks = [
        Block(
            "Rows",
            [
                f"{rows:,} order rows; {valid:,} valid ({_share(valid, rows)}), {rows - valid:,} rejected.",
                f"Order timestamps (UTC): {total.get('first_ts')} to {total.get('last_ts')}; valid orders: "
                f"{total.get('first_valid_ts')} to {total.get('last_valid_ts')}. As-of date: {run.as_of}.",
            ],
        ),
        Block(
            "Reject reasons (as build would decide them)",
            [f"Gate: build refuses the table above quality.max_rejected_share = {q.max_rejected_share:.1%}."],
            ("reason", "rows", "share"),
            [(k or "(valid)", f"{n:,}", _share(n, rows)) for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])],
        ),
    ]
    found: dict[str, dict] = {}
    for dim in COMPARED:
        entries = by_dim.get(dim, [])
        found[dim] = {e["value"]: e["rows"] for e in entries}
        configured = profiling.configured_values(dim, q, settings.features)
        split = profiling.compare(dim, found[dim], configured)
        known = {profiling.normalise(dim, c) for c in configured}
        block = Block(f"Values of {dim}", headers=(dim, "rows", "valid rows", "configured"))
        block.rows = [
            (_shown(e["value"]), f"{e['rows']:,}", f"{e['valid_rows']:,}",
             "yes" if profiling.normalise(dim, e["value"]) in known else "no")
            for e in entries
        ]  # fmt: skip
        distinct = entries[0]["distinct_values"] if entries else 0
        if distinct > len(entries):
            block.lines.append(f"{distinct:,} distinct values; the {len(entries)} most frequent are shown.")
        for value in split["never_found"]:
            warnings.append(f"configured {dim} '{value}' never occurs in the orders")
        if split["never_found"]:
            block.lines.append("Configured but never found: " + ", ".join(split["never_found"]) + ".")
        if split["not_configured"]:
            block.lines.append("Found but not configured: " + ", ".join(v for v, _ in split["not_configured"]) + ".")
        blocks.append(block)
    blocks.append(
        Block(
            "Customers",
            [
                f"{stats['customers']:,} customers with a valid completed order; orders per customer: median "
                f"{stats['p50']}, 90th percentile {stats['p90']}, 99th percentile {stats['p99']}, "
                f"maximum {stats['max']}.",
            ],
            ("orders per customer", "customers", "orders"),
            [(b["orders"], f"{b['customers']:,}", f"{b['sales']:,}") for b in buckets],
        )
    )
    return blocks, problems, warnings, profiling.suggested_conf(found, q, settings.features)


def render_markdown(title: str, blocks: Iterable[Block]) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        out += [f"## {b.title}", "", *[f"{line}  " for line in b.lines]]
        if b.headers:
            out += ["", "| " + " | ".join(b.headers) + " |", "|" + "---|" * len(b.headers)]
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in b.rows]
        out.append("")
    return "\n".join(out)


def render_html(title: str, blocks: Iterable[Block]) -> str:
    css = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:20px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "pre{background:#f5f5f5;padding:8px}"
    )
    out = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>']
    out.append(f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>")
    for b in blocks:
        out.append(f"<h2>{html.escape(b.title)}</h2>")
        for line in b.lines:
            tag = "pre" if "\n" in line else "p"
            out.append(f"<{tag}>{html.escape(line.strip('`'))}</{tag}>")
        if b.headers:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.headers) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b.rows]
            out.append("</table>")
    return "\n".join([*out, "</body></html>"])


def run_profile(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> ProfileResult:
    """Profile the orders table for ``as_of``; write the Markdown, HTML and suggested conf under the report folder."""
    source = settings.inputs.orders.path
    folder = Path(settings.outputs.report_dir)
    conf_path = folder / f"profile_{as_of}.yaml"
    with JobRun(spark, settings, "profile", as_of, listeners) as run:
        with run.stage("read and check the inputs") as info:
            orders = io.read_table(spark, settings.inputs.orders)
            problems, table_rows = _schema_problems(spark, settings, orders)
            info["problems"] = len(problems)
        run.begin({"orders": orders.version})
        schema_block = Block("Schema", problems or ["Every input table fits its contract."])
        blocks, warnings, suggestion = [schema_block], [], {}
        if not any(p.startswith("orders table") for p in problems):
            with run.stage("profile the orders"):
                more, found_problems, warnings, suggestion = profile_blocks(run, _tagged(run, orders.df))
            blocks += more
            problems += found_problems
        optional = [(n, getattr(settings.inputs, n).path, f"{r:,}") for n, r in table_rows.items() if r is not None]
        if optional:
            blocks.append(Block("Optional tables", [], ("table", "path", "rows"), optional))
        conf_text = f"# Suggested by `segmentation profile --as-of {as_of}` for {source}: pass with --conf after "
        conf_text += "the environment file.\n" + yaml.safe_dump(suggestion, allow_unicode=True, sort_keys=False)
        blocks.append(Block("Warnings", warnings or ["none"]))
        blocks.append(Block("Problems (build would refuse the table)", problems or ["none"]))
        blocks.append(Block(f"Suggested configuration ({conf_path})", [f"```yaml\n{conf_text}```"]))
        title = f"Profile of {source} (version {orders.version}) as of {as_of}"
        markdown = render_markdown(title, blocks)
        md_path = io.write_text(str(folder / f"profile_{as_of}.md"), markdown)
        html_path = io.write_text(str(folder / f"profile_{as_of}.html"), render_html(title, blocks))
        io.write_text(str(conf_path), conf_text)
        profiling.log_warnings(warnings)
        run.message = f"profile: {md_path}"
    return ProfileResult(markdown, md_path, html_path, str(conf_path), problems, warnings)
