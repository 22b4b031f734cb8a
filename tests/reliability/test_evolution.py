"""Configuration meets existing tables: outputs that evolve with it, and inputs that are not where it says.

Outputs that evolve with the configuration are tested on one real output path written date after date.

Real teams add a feature window, a category, a tag group or a segment dimension, or change the number of score bins,
after months of snapshots. Each later date is written with a changed configuration: new columns are added to the
tables (earlier snapshots read them as null) and the score-range constraints follow ``rfm.bins``. A change that would
break readers (a column no longer written, a changed type) stops before any table is written, saying what to do.
An input location that does not hold a readable Delta table (a missing path, a Parquet folder, a data file gone)
exits 3 through the command line with one line naming the table and the likely fix.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest

from segmentation import io, outputs
from segmentation.config import ConfigError, load_settings
from segmentation.pipelines import common
from segmentation.pipelines.build import BuildInputs, build_frames
from segmentation.runs import JobRun
from tests.conftest import ORDER_COLUMNS, order_row
from tests.conftest import ROOT as REPO
from tests.reliability.data import good_rows

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.slow, pytest.mark.timeout(2400)]

CONF_DIR = REPO / "conf"
DAY1, DAY2, DAY3 = dt.date(2026, 7, 1), dt.date(2026, 7, 2), dt.date(2026, 7, 3)  # after every order
ADDED = (
    "features.windows_days=[7, 30, 60, 90, 180, 365]",
    "features.categories=[apparel, beauty, electronics, grocery, home, sports, toys]",
    "tags.rule_sets.loyalty={kind: tags, rules: [{name: regular, condition: 'orders_total >= 2'}]}",
    "segments.rule_sets.spend_band={kind: exclusive, rules: [{name: high, condition: 'monetary >= 100'},"
    " {name: low, condition: 'true'}]}",
)


def snapshot_tables() -> list[str]:
    return [t for t, spec in outputs.OUTPUTS.items() if spec.kind == "snapshot"]


def frames_for(spark, settings, as_of):
    """The run and every snapshot frame the build computes for ``as_of`` (nothing written yet)."""
    run = JobRun(spark, settings, "build", as_of)
    orders = common.read_and_tag_orders(run)
    run.begin(orders.versions)
    rejected_df, _ = common.validate(run, orders)
    frames = build_frames(BuildInputs(orders.valid_df, rejected_df), settings, as_of, run.run_id)
    return run, {t: df for t, df in frames.items() if t in snapshot_tables()}


WRITTEN = ("customer_features", "customer_segments", "segment_summary", "customer_tags")


def write_date(spark, settings, as_of) -> dict[str, int]:
    """Check every frame against its table, then write (the tables these tests read): what a build does."""
    run, frames = frames_for(spark, settings, as_of)
    with run:
        run.check_schemas(frames)
        for table in WRITTEN:
            run.write(table, frames[table])
    return dict(run.versions)


def versions(spark, settings) -> dict[str, int | None]:
    return {t: io.table_version(spark, settings.outputs.table_path(t)) for t in (*WRITTEN, "segment_runs")}


@pytest.fixture(scope="module")
def scenario(spark, conf_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("evolution")
    orders_path = str(lake / "orders")
    rows = [*good_rows(order_row), order_row("o9", "c1", "2026-06-27T10:00:00", "30.00", category="toys")]
    spark.createDataFrame(rows, ORDER_COLUMNS).write.format("delta").save(orders_path)
    base = [
        f"inputs.orders.path={orders_path}",
        "inputs.identity_map=null",
        "inputs.profiles=null",
        f"outputs.path={lake / 'out'}",
        "spark.master=local[2]",
    ]

    def settings(*overrides):
        return load_settings([conf_dir / "local.yaml"], [*base, *overrides])

    out = {"settings": settings()}
    write_date(spark, settings(), DAY1)
    out["checks_day1"] = io.tables.table_checks(spark, out["settings"].outputs.table_path("customer_segments"))
    write_date(spark, settings(*ADDED, "rfm.bins=7"), DAY2)
    out["checks_day2"] = io.tables.table_checks(spark, out["settings"].outputs.table_path("customer_segments"))
    write_date(spark, settings(*ADDED, "rfm.bins=3"), DAY3)
    out["checks_day3"] = io.tables.table_checks(spark, out["settings"].outputs.table_path("customer_segments"))

    out["versions_before_refusal"] = versions(spark, out["settings"])
    removed = settings("rfm.bins=3")  # back to the base configuration: the window, category and dimension go
    run, frames = frames_for(spark, removed, DAY3)
    with pytest.raises(ConfigError) as refused, run:
        run.check_schemas(frames)
    out["refusal"] = str(refused.value)
    out["versions_after_refusal"] = versions(spark, out["settings"])
    retyped = {"customer_features": frames["customer_features"].withColumn("frequency", F.col("frequency") * 1.0)}
    with pytest.raises(ConfigError) as refused:
        run.check_schemas(retyped)
    out["type_refusal"] = str(refused.value)
    return out


def read(spark, scenario, table):
    return spark.read.format("delta").load(scenario["settings"].outputs.table_path(table))


def by_date(df, column):
    return {d: {r[column] for r in df.where(F.col("as_of_date") == d).collect()} for d in (DAY1, DAY2, DAY3)}


def test_a_new_feature_window_adds_columns_and_older_snapshots_read_null(spark, scenario):
    features = read(spark, scenario, "customer_features")
    assert {"orders_7d", "amount_7d"} <= set(features.columns)
    values = by_date(features, "orders_7d")
    assert values[DAY1] == {None}
    assert None not in values[DAY2] and max(values[DAY2]) == 2  # c1 ordered twice in the 7 days to DAY2


def test_a_new_category_adds_its_share_column(spark, scenario):
    features = read(spark, scenario, "customer_features")
    shares = by_date(features, "category_share_toys")
    assert shares[DAY1] == {None} and shares[DAY2] == shares[DAY3] == {0.0, 1 / 3}


def test_a_new_tag_group_writes_its_tags(spark, scenario):
    tags = read(spark, scenario, "customer_tags").where(F.col("tag_group") == "loyalty")
    assert by_date(tags, "customer_id") == {DAY1: set(), DAY2: {"c1", "c5"}, DAY3: {"c1", "c5"}}


def test_a_new_segment_dimension_adds_a_column_and_summary_rows(spark, scenario):
    segments = read(spark, scenario, "customer_segments")
    bands = by_date(segments, "spend_band")
    assert bands[DAY1] == {None} and bands[DAY2] == {"high", "low"}
    summary = read(spark, scenario, "segment_summary").where(F.col("dimension") == "spend_band")
    assert by_date(summary, "segment") == {DAY1: set(), DAY2: {"high", "low"}, DAY3: {"high", "low"}}


def test_score_range_constraints_follow_the_number_of_bins(spark, scenario):
    def spaced(expression):  # Delta re-spaces a constraint it stores through ALTER TABLE
        return "".join(expression.split())

    assert spaced(scenario["checks_day1"]["r_score_range"]) == spaced(
        "r_score IS NULL OR (r_score >= 1 AND r_score <= 5)"
    )
    assert spaced(scenario["checks_day2"]["r_score_range"]) == spaced(
        "r_score IS NULL OR (r_score >= 1 AND r_score <= 7)"
    )
    assert spaced(scenario["checks_day2"]["f_score_range"]) == spaced(
        "f_score IS NULL OR (f_score >= 1 AND f_score <= 7)"
    )
    # fewer bins later: earlier snapshots hold scores up to 7, so the wider range stays and still holds every row
    assert scenario["checks_day3"]["r_score_range"] == scenario["checks_day2"]["r_score_range"]
    scores = by_date(read(spark, scenario, "customer_segments"), "r_score")
    assert max(scores[DAY2]) > 3 and max(scores[DAY3]) <= 3


def test_a_change_readers_cannot_follow_stops_before_any_write(scenario):
    message = scenario["refusal"]
    assert message.startswith("the configuration no longer fits the existing output tables under ")
    assert "nothing was written" in message
    assert "customer_features: column 'orders_7d' (bigint) would no longer be written" in message
    assert "customer_features: column 'amount_7d' (decimal(18,2)) would no longer be written" in message
    assert "customer_features: column 'category_share_toys' (double) would no longer be written" in message
    assert "customer_segments: column 'spend_band' (string) would no longer be written" in message
    assert "restore the configuration that produced them, or write to new tables" in message
    assert scenario["versions_after_refusal"] == scenario["versions_before_refusal"]
    assert "customer_features: column 'frequency' would change type from bigint to double" in scenario["type_refusal"]


# -- input locations --------------------------------------------------------------------------------------------------
def build_cli(lake, orders_path, *extra):
    from segmentation.cli import main

    return main(
        [
            "build",
            "--conf",
            str(CONF_DIR / "local.yaml"),
            "--as-of",
            str(DAY1),
            f"inputs.orders.path={orders_path}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'output'}",
            f"outputs.log_dir={lake / 'logs'}",
            "spark.jars_dir=null",
            *extra,
        ]
    )


def missing_path(spark, lake):
    return str(lake / "no_such_table")


def parquet_folder(spark, lake):
    path = str(lake / "parquet_orders")
    spark.createDataFrame(good_rows(order_row), ORDER_COLUMNS).write.parquet(path)
    return path


def missing_data_file(spark, lake):
    path = lake / "orders"
    spark.createDataFrame(good_rows(order_row), ORDER_COLUMNS).repartition(2).write.format("delta").save(str(path))
    next(path.glob("*.parquet")).unlink()
    return str(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(missing_path, "orders table at {path} does not exist: check inputs.orders", id="missing-path"),
        pytest.param(
            parquet_folder,
            "orders table at {path} is a Parquet folder, not a Delta table (no _delta_log folder): set "
            "inputs.orders.format: parquet to read it as it is, or convert it once with CONVERT TO DELTA parquet.",
            id="parquet-folder",
        ),
        pytest.param(
            missing_data_file,
            "a data file of an input table is missing: the orders table at {path} lists 1 data file(s) at version 0"
            " that are gone (first: file:",
            id="missing-data-file",
        ),
    ],
)
def test_an_unreadable_input_location_exits_3_naming_the_table_and_the_fix(spark, lake, capsys, make, message):
    path = make(spark, lake)
    assert build_cli(lake, path) == 3
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("input error: ")]
    assert len(errors) == 1 and errors[0].startswith("input error: " + message.format(path=path)), err
    assert "Traceback" not in err and not (lake / "output").exists()
