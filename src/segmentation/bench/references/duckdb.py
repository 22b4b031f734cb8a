"""The DuckDB reference: the product's features, R/F/M scores and RFM segments as one DuckDB SQL script.

It reads the orders table's current Parquet files (the file list comes from the Delta log, so it reads exactly the
snapshot Spark reads) and runs in a subprocess (``_duckdb_worker``, started by
:func:`segmentation.bench.measure.run_duckdb_measured`) so its peak memory is its own. The worker imports this
module, so only the standard library is imported at module level.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path


def duckdb_statements(files: Sequence[str], as_of: dt.date, settings, out: Path, threads: int) -> list[tuple[str, str]]:
    """The DuckDB reference as named SQL statements: the same validity rules, features, cut semantics and rules.

    Cut points are ``quantile_disc`` (an observed value, like Spark's ``approxQuantile``); a value equal to a cut
    point falls in the lower bucket, as in the product.
    """
    from segmentation.transforms.columns import day_number, end_of_day_seconds

    q, f = settings.quality, settings.features
    today = day_number(as_of)

    def sql_list(values: Sequence[str]) -> str:
        return ", ".join("'" + v.replace("'", "''") + "'" for v in values)

    sale = f"status = '{q.sale_status.lower()}'"
    rfm_cond = sale if f.rfm_window_days is None else f"{sale} AND order_day > {today - f.rfm_window_days}"
    windows = []
    for d in f.windows_days:
        cond = f"{sale} AND order_day > {today - d}"
        windows.append(f"count(*) FILTER ({cond}) AS orders_{d}d")
        windows.append(f"CAST(coalesce(sum(amount) FILTER ({cond}), 0) AS DECIMAL(18,2)) AS amount_{d}d")
    shares = [
        f"count(*) FILTER ({sale} AND channel = '{c}') / count(*) FILTER ({sale}) AS channel_share_{c}"
        for c in f.channels
    ] + [
        f"count(*) FILTER ({sale} AND category = '{c}') / count(*) FILTER ({sale}) AS category_share_{c}"
        for c in f.categories
    ]
    zero_ok = "" if q.allow_zero_amount else " OR amount = 0"
    file_list = "[" + sql_list(files) + "]"
    features_sql = f"""
CREATE TEMP TABLE features AS
WITH raw AS (
  SELECT * FROM read_parquet({file_list}, hive_partitioning = true,
                             hive_types = {{'channel': VARCHAR, 'order_month': VARCHAR}})
), tagged AS (
  SELECT *, CASE
    WHEN customer_id IS NULL OR trim(customer_id) = '' THEN 'missing_customer_id'
    WHEN order_id IS NULL OR trim(order_id) = '' THEN 'missing_order_id'
    WHEN order_ts IS NULL THEN 'missing_order_ts'
    WHEN amount IS NULL OR amount < 0{zero_ok} THEN 'invalid_amount'
    WHEN discount_amount < 0 THEN 'invalid_discount'
    WHEN upper(trim(currency)) NOT IN ({sql_list([c.upper() for c in q.currencies])}) THEN 'unknown_currency'
    WHEN lower(trim(status)) NOT IN ({sql_list([s.lower() for s in q.statuses])}) THEN 'unknown_status'
    WHEN epoch(order_ts) >= {end_of_day_seconds(as_of)} THEN 'future_order_ts'
    WHEN row_number() OVER (PARTITION BY channel, order_id
                            ORDER BY order_ts, customer_id, amount, status, currency) > 1 THEN 'duplicate_order'
  END AS reject_reason
  FROM raw
), valid AS (
  SELECT trim(customer_id) AS customer_id, channel, category, amount, discount_amount, coupon_code, order_id,
         order_ts, lower(trim(status)) AS status, CAST(floor(epoch(order_ts) / 86400) AS INTEGER) AS order_day
  FROM tagged WHERE reject_reason IS NULL
), gaps AS (
  SELECT *, CASE WHEN {sale} THEN order_day END
            - max(CASE WHEN {sale} THEN order_day END) OVER (
                PARTITION BY customer_id ORDER BY order_day, order_ts, order_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS gap
  FROM valid
)
SELECT DATE '{as_of}' AS as_of_date, customer_id,
  {today} - max(order_day) FILTER ({sale}) AS recency_days,
  {today} - min(order_day) FILTER ({sale}) AS tenure_days,
  count(*) FILTER ({rfm_cond}) AS frequency,
  CAST(coalesce(sum(amount) FILTER ({rfm_cond}), 0) AS DECIMAL(18,2)) AS monetary,
  count(*) FILTER ({sale}) AS orders_total,
  CAST(coalesce(sum(amount) FILTER ({sale}), 0) AS DECIMAL(18,2)) AS amount_total,
  {", ".join(windows)},
  count(gap) FILTER (gap > 0) + 1 AS distinct_order_days,
  avg(gap) FILTER (gap > 0) AS mean_interval_days,
  stddev_samp(gap) FILTER (gap > 0) AS std_interval_days,
  mode(channel) FILTER ({sale}) AS preferred_channel,
  mode(category) FILTER ({sale}) AS top_category,
  count(DISTINCT channel) FILTER ({sale}) AS channel_count,
  {", ".join(shares)}
FROM gaps
GROUP BY customer_id
HAVING count(*) FILTER ({sale}) > 0
"""
    probs = [i / settings.rfm.bins for i in range(1, settings.rfm.bins)]
    cuts_sql = (
        "CREATE TEMP TABLE cuts AS SELECT "
        f"quantile_disc(recency_days, {probs}) AS r, quantile_disc(frequency, {probs}) AS f, "
        f"quantile_disc(monetary, {probs}) AS m FROM features"
    )

    def score(column: str, cut: str, reverse: bool) -> str:
        bucket = "1 + " + " + ".join(f"CAST({column} > {cut}[{i}] AS INTEGER)" for i in range(1, len(probs) + 1))
        return f"{settings.rfm.bins + 1} - ({bucket})" if reverse else f"({bucket})"

    rule_set = settings.segments.rule_sets["rfm_segment"]
    *ordered, catch_all = rule_set.rules
    case = "CASE " + " ".join(f"WHEN {r.condition} THEN '{r.name}'" for r in ordered) + f" ELSE '{catch_all.name}' END"
    segments_sql = f"""
COPY (
  SELECT as_of_date, customer_id, recency_days, frequency, monetary, r_score, f_score, m_score,
         CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR) AS rfm_cell,
         {case} AS rfm_segment
  FROM (
    SELECT features.*, {score("recency_days", "r", True)} AS r_score, {score("frequency", "f", False)} AS f_score,
           {score("monetary", "m", False)} AS m_score
    FROM features, cuts
  )
) TO '{out / "customer_segments.parquet"}' (FORMAT parquet)
"""
    return [
        (
            "settings",
            f"SET threads = {threads}; SET temp_directory = '{out / 'tmp'}'; SET preserve_insertion_order = false",
        ),
        ("read, validate, features", features_sql),
        ("write customer_features", f"COPY features TO '{out / 'customer_features.parquet'}' (FORMAT parquet)"),
        ("quantile cut points", cuts_sql),
        ("scores, segments and write", segments_sql),
    ]


def _duckdb_worker(spec_path: str) -> None:
    """Entry point of the DuckDB subprocess: run the statements, print per-statement seconds as JSON."""
    import duckdb

    spec = json.loads(Path(spec_path).read_text())
    con = duckdb.connect()
    timings = []
    for name, sql in spec["statements"]:
        start = time.perf_counter()
        con.execute(sql)
        timings.append((name, time.perf_counter() - start))
    customers = con.execute("SELECT count(*) FROM features").fetchone()[0]
    print(json.dumps({"stages": timings, "customers": customers}))
