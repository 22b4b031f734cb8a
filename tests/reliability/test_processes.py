"""What needs its own process: the CLI's configuration errors, machine time zones, and concurrent runs.

Each case runs ``python -m segmentation.cli`` as a user or a scheduler would, and checks the exit code, the message
and the tables left behind (read with delta-rs, as downstream systems do).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.conftest import ORDER_COLUMNS, ROOT, TEST_SESSION_OVERRIDE, order_row
from tests.reliability.data import AS_OF, good_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

LOCAL = str(ROOT / "conf" / "local.yaml")
SMALL_SPARK = ["spark.master=local[2]", "spark.driver_memory=1g", TEST_SESSION_OVERRIDE]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segmentation.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def lake_overrides(lake: Path) -> list[str]:
    return [
        f"inputs.orders.path={lake / 'orders'}",
        "inputs.identity_map=null",
        "inputs.profiles=null",
        f"outputs.path={lake / 'out'}",
        *SMALL_SPARK,
    ]


def read_slice(lake: Path, table: str, as_of: dt.date) -> list[dict]:
    rows = pa.table(DeltaTable(str(lake / "out" / table)).to_pyarrow_table()).to_pylist()
    return [r for r in rows if r["as_of_date"] == as_of]


# ----------------------------------------------------------------------------------------------------------------------
# configuration errors: exit code 2 and one message naming the file and the key or rule
# ----------------------------------------------------------------------------------------------------------------------
CONFIG_CASES = {
    "malformed_yaml": (
        "quality:\n  max_rejected_share: [0.1\n",
        ["malformed YAML", "(line 3, column 1)"],
    ),
    "unknown_key": (
        "quality:\n  max_rejectd_share: 0.1\n",
        ["invalid configuration:", "quality.max_rejectd_share: unknown key"],
    ),
    "wrong_type": (
        "quality:\n  max_rejected_share: plenty\n",
        ["invalid configuration:", "quality.max_rejected_share: Input should be a valid number"],
    ),
    "invalid_rule": (
        "segments:\n  rule_sets:\n    lifecycle_stage:\n      kind: exclusive\n      rules:\n"
        "        - {name: dormant, condition: 'recency_dayz > 180'}\n        - {name: active, condition: 'true'}\n",
        ["segments.rule_sets.lifecycle_stage: invalid rule condition", "rule 'dormant':", "recency_dayz"],
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES), ids=list(CONFIG_CASES))
def test_configuration_errors_exit_2_naming_file_and_key(case, tmp_path):
    text, expected = CONFIG_CASES[case]
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(text)
    code, _, err = finish(
        cli("build", "--conf", LOCAL, "--conf", str(bad), "--as-of", "2026-06-30", *lake_overrides(tmp_path))
    )
    assert code == 2, err
    message = err[err.index("configuration error:") :]
    assert message.startswith(f"configuration error: {bad}") or f"  {bad}: " in message, message
    for fragment in expected:
        assert fragment in message, message
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------------
# time zones: the machine in Los Angeles, the Spark session in Shanghai, the answer in UTC
# ----------------------------------------------------------------------------------------------------------------------
TEXT_COLUMNS = (
    "order_id string, channel string, customer_id string, order_ts string, amount string, currency string,"
    " status string, category string, discount_amount string, coupon_code string"
)


def text_order(order_id, customer_id, ts, amount):
    return (order_id, "web", customer_id, ts, amount, "CNY", "completed", "apparel", "0", None)


TZ_ORDERS = [
    text_order("a1", "ca", "2026-06-30T03:00:00", "10"),  # Shanghai-local reading: the 29th
    text_order("a2", "ca", "2026-06-01 00:30:00", "20"),  # Shanghai-local reading: outside the 30-day window
    text_order("b1", "cb", "2026-06-30T23:30:00+00:00", "30"),  # Los Angeles reading: July 1st, in the future
    text_order("b2", "cb", "2026-07-01T07:30:00+08:00", "40"),  # the same instant as b1, another order
    text_order("c1", "cc", "2026-05-31", "50"),  # exactly 30 days before: outside the 30-day window
    text_order("c2", "cc", "2026-05-31", "50"),  # a tie with c1 (same day, same amount)
    text_order("d1", "cd", "2026/06/15 12:00:00", "12,5"),
    text_order("e1", "ce", "yesterday", "5"),
    text_order("f1", "cf", "2126-07-01T00:00:00Z", "5"),  # a mistyped year: after the file was written
    text_order("n1", None, "2026-06-15", "5"),
]


def test_recency_and_windows_do_not_depend_on_the_machine_or_session_time_zone(spark, tmp_path):
    spark.createDataFrame(TZ_ORDERS, TEXT_COLUMNS).write.format("delta").save(str(tmp_path / "orders"))
    shanghai = tmp_path / "shanghai.yaml"
    shanghai.write_text("spark:\n  conf:\n    spark.sql.session.timeZone: Asia/Shanghai\n")
    code, _, err = finish(
        cli(
            "build",
            "--conf",
            LOCAL,
            "--conf",
            str(shanghai),
            "--as-of",
            str(AS_OF),
            *lake_overrides(tmp_path),
            "quality.parse_text_columns=true",
            "quality.max_rejected_share=0.5",
            env={"TZ": "America/Los_Angeles"},
        )
    )
    assert code == 0, err
    features = {r["customer_id"]: r for r in read_slice(tmp_path, "customer_features", AS_OF)}
    got = {
        c: (
            r["recency_days"],
            r["tenure_days"],
            r["orders_30d"],
            r["amount_30d"],
            r["orders_60d"],
            r["first_order_date"],
            r["last_order_date"],
        )
        for c, r in features.items()
    }
    assert got == {
        "ca": (0, 29, 2, Decimal("30.00"), 2, dt.date(2026, 6, 1), dt.date(2026, 6, 30)),
        "cb": (0, 0, 2, Decimal("70.00"), 2, dt.date(2026, 6, 30), dt.date(2026, 6, 30)),
        "cc": (30, 30, 0, Decimal("0.00"), 2, dt.date(2026, 5, 31), dt.date(2026, 5, 31)),
    }
    rejected = sorted((r["order_id"], r["reject_reason"]) for r in read_slice(tmp_path, "orders_rejected", AS_OF))
    assert rejected == [
        ("d1", "non_numeric_amount"),
        ("e1", "unparseable_order_ts"),
        ("f1", "future_order_ts"),
        ("n1", "guest_order"),
    ]


# ----------------------------------------------------------------------------------------------------------------------
# concurrent runs: different dates both land; the same date ends as one run's rows per table
# ----------------------------------------------------------------------------------------------------------------------
def test_concurrent_runs_for_different_and_same_dates(spark, tmp_path):
    from segmentation import io

    spark.createDataFrame(good_rows(order_row), ORDER_COLUMNS).write.format("delta").save(str(tmp_path / "orders"))
    common = [*lake_overrides(tmp_path), "quality.max_rejected_share=0.2"]
    day_before = AS_OF - dt.timedelta(days=1)
    processes = [
        cli("build", "--conf", LOCAL, "--as-of", str(day_before), *common),
        cli("build", "--conf", LOCAL, "--as-of", str(AS_OF), *common),
        cli("build", "--conf", LOCAL, "--as-of", str(AS_OF), *common, "rfm.method=equal_width"),
    ]
    results = [finish(p, timeout=900) for p in processes]
    for code, _, err in results:
        assert code == 0, err[-3000:]

    manifest = str(tmp_path / "out" / "segment_runs")
    runs = pa.table(DeltaTable(manifest).to_pyarrow_table()).to_pylist()
    assert sorted((r["as_of_date"], r["status"]) for r in runs) == [
        (day_before, "complete"),
        (AS_OF, "complete"),
        (AS_OF, "complete"),
    ]
    run_ids = {r["as_of_date"]: set() for r in runs}
    for r in runs:
        run_ids[r["as_of_date"]].add(r["run_id"])
    assert len(run_ids[AS_OF]) == 2  # different configuration, different run id

    # the other date's slice is intact: the 29th's customers, from its own run
    before = read_slice(tmp_path, "customer_segments", day_before)
    assert sorted(r["customer_id"] for r in before) == ["c1", "c2", "c3", "c4", "c5"]
    assert {r["run_id"] for r in before} == run_ids[day_before]
    # the contested date: every table's slice is exactly one run's rows, never a mix, never duplicated
    for table in ("customer_features", "customer_segments", "orders_rejected", "segment_summary"):
        rows = read_slice(tmp_path, table, AS_OF)
        if rows and "run_id" in rows[0]:
            assert len({r["run_id"] for r in rows}) == 1, table
            assert {r["run_id"] for r in rows} <= run_ids[AS_OF], table
    segments = read_slice(tmp_path, "customer_segments", AS_OF)
    assert sorted(r["customer_id"] for r in segments) == ["c1", "c2", "c3", "c4", "c5"]
    # a reader that follows the manifest gets the snapshot of the latest complete run, at its versions
    assert io.complete_as_of_dates(spark, manifest) == [day_before, AS_OF]
    latest = io.complete_runs(spark, manifest).where(f"as_of_date = DATE'{AS_OF}'").first()
    pinned = io.read_complete_snapshot(
        spark, manifest, "customer_segments", str(tmp_path / "out" / "customer_segments"), AS_OF
    )
    assert {r["run_id"] for r in pinned.collect()} == {latest["run_id"]}
    assert pinned.count() == 5


# ----------------------------------------------------------------------------------------------------------------------
# a driver JVM that dies half-way (killed, out of memory): a resources error naming it, no traceback, nothing half-done
# ----------------------------------------------------------------------------------------------------------------------
def _java_children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.with_name("comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == pid and comm == "java":
            found.append(int(stat.parent.name))
    return found


def test_a_driver_killed_half_way_exits_4_naming_it_and_leaves_tables_as_they_were(spark, tmp_path):
    spark.createDataFrame(good_rows(order_row), ORDER_COLUMNS).write.format("delta").save(str(tmp_path / "orders"))
    common = [*lake_overrides(tmp_path), "quality.max_rejected_share=0.2"]
    process = cli("build", "--conf", LOCAL, "--as-of", str(AS_OF), *common)
    seen = []
    for line in process.stderr:  # the console's progress lines; the JVM is up once orders are being read
        seen.append(line)
        if "validate orders ..." in line:
            break
    jvms = _java_children(process.pid)
    assert jvms, "".join(seen)
    for pid in jvms:
        os.kill(pid, 9)
    code, _, err = finish(process)
    err = "".join(seen) + err

    assert code == 4, err[-3000:]
    assert "resources error: Spark's driver stopped during the run (killed, or the JVM crashed)" in err
    assert "spark.driver_memory (now 1g)" in err
    assert "Traceback" not in err and "Py4J" not in err
    # the run never began: no output table, no manifest row claiming the date
    assert not (tmp_path / "out" / "customer_segments").exists()
    manifest = tmp_path / "out" / "segment_runs"
    if manifest.exists():
        runs = pa.table(DeltaTable(str(manifest)).to_pyarrow_table()).to_pylist()
        assert all(r["status"] != "complete" for r in runs)
