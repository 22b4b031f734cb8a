"""Tables by catalog name: inputs read by name, outputs created as managed catalog tables, then read in a new session.

The jobs (build, train, score, report) run in one process on Spark's own catalog (a Hive metastore in Derby,
warehouse in a temporary folder); a second process opens a new session on the same metastore and reads every table by
name, as a downstream reader would. Two processes because an embedded Derby metastore admits one JVM at a time, and the
shared test session keeps Spark's in-memory catalog. Nothing is written under ``outputs.path``: with ``outputs.schema``
set, the output tables live where the catalog puts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.config import ConfigError, Outputs, TableRef, load_settings
from segmentation.io import Location
from tests.conftest import TEST_SESSION_OVERRIDE

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-06-30"
OUTPUT_SCHEMA = "spark_catalog.marketing"
OUTPUT_TABLES = (
    "customer_features",
    "customer_segments",
    "customer_tags",
    "campaign_audiences",
    "segment_summary",
    "segment_migration",
    "orders_rejected",
    "segment_runs",
)

# The session both processes build: local[2], Spark's Hive catalog with its Derby metastore under ``root``.
SESSION = """
import json, sys
from pathlib import Path
from segmentation.config import SparkSettings
from segmentation.session import build_session

def session(root: Path):
    return build_session(SparkSettings(
        master="local[2]", app_name="catalog-test", driver_memory="2g",
        conf={
            "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false", "spark.sql.session.timeZone": "UTC",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(root / "warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        },
    ))
"""

# Process 1: inputs written by name, then the jobs by name.
JOBS = (
    SESSION
    + """
import datetime as dt
from segmentation import io, pipelines, synthetic
from segmentation.config import load_settings

root, conf, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
settings = load_settings([conf], overrides)
spark = session(root)
spark.sql("CREATE SCHEMA IF NOT EXISTS spark_catalog.shop")
tables = synthetic.generate(spark, settings.generate, dt.date.fromisoformat("2026-06-30"))
inputs = settings.inputs
io.overwrite_table(tables.orders, io.Location.of(inputs.orders), partition_by=("channel", "order_month"))
io.overwrite_table(tables.identity_map, io.Location.of(inputs.identity_map))
io.overwrite_table(tables.profiles, io.Location.of(inputs.profiles))
as_of = dt.date.fromisoformat("2026-06-30")
out = {"build": pipelines.run_build(spark, settings, as_of).__dict__}
pipelines.run_train(spark, settings, as_of)
out["score"] = pipelines.run_score(spark, settings, as_of).__dict__
out["report"] = pipelines.run_report(spark, settings, as_of).path
print("RESULT " + json.dumps(out, default=str))
"""
)

# Process 2: a new session on the same metastore reads every table by name.
READER = (
    SESSION
    + """
import pyspark.sql.functions as F

root, schema, tables = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
spark = session(root)
out = {"tables": sorted(r["tableName"] for r in spark.sql(f"SHOW TABLES IN {schema}").collect())}
for table in tables:
    name = f"{schema}.{table}"
    detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    out[table] = {
        "format": detail["format"],
        "location": detail["location"],
        "properties": detail["properties"],
        "version": spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()["version"],
        "type": spark.sql(f"DESCRIBE TABLE EXTENDED {name}").where("col_name = 'Type'").first()["data_type"],
        "nullable": {f.name: f.nullable for f in spark.table(name).schema.fields},
    }
segments = spark.table(f"{schema}.customer_segments").where(F.col("as_of_date") == F.lit("2026-06-30"))
out["segments_rows"] = segments.count()
out["segments_scored"] = segments.where(F.col("clv").isNotNull()).count()
out["segments_prospects"] = segments.where(F.col("rfm_segment") == "prospect").count()
out["segments_dates"] = sorted(str(r[0]) for r in spark.table(f"{schema}.customer_segments")
                               .select("as_of_date").distinct().collect())
changes = spark.read.option("readChangeFeed", "true").option("startingVersion", 0).table(f"{schema}.customer_segments")
out["change_types"] = sorted(r[0] for r in changes.select("_change_type").distinct().collect())
runs = spark.table(f"{schema}.segment_runs").where("status = 'complete'")
out["runs"] = sorted(f"{r['job']} {r['as_of_date']}" for r in runs.collect())
out["manifest_segments_version"] = max(
    r["table_versions"]["customer_segments"] for r in runs.collect() if "customer_segments" in r["table_versions"]
)
out["orders"] = spark.table("spark_catalog.shop.orders").count()
print("RESULT " + json.dumps(out, default=str))
"""
)


def _run(script: str, *args: str, timeout: int) -> dict:
    """Run ``script`` in a fresh Python (its own JVM) and return the JSON it prints after ``RESULT``."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


# -- configuration and naming (no Spark) ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["inputs.orders.name=main.sales.orders"], "set exactly one of path"),
        (["inputs.orders.path=null"], "set exactly one of path"),
        (["outputs.path=null"], "set path (a folder for the output tables) or schema"),
        (["outputs.catalog=main"], "catalog needs schema"),
    ],
    ids=["path-and-name", "neither", "no-output-location", "catalog-without-schema"],
)
def test_a_table_location_must_be_a_path_or_a_name(conf_dir, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_settings([conf_dir / "local.yaml"], overrides)
    assert message in str(err.value)
    assert "inputs.orders" in str(err.value) or "outputs" in str(err.value)


def test_output_tables_by_name_are_backquoted_catalog_names():
    named = Outputs.model_validate({"catalog": "main", "schema": "mar`keting", "path": None})
    assert named.table_path("customer_segments") == "`main`.`mar``keting`.`customer_segments`"
    assert Outputs.model_validate({"schema": "marketing"}).table_path("segment_runs") == "`marketing`.`segment_runs`"
    assert Outputs.model_validate({"path": "lake/out"}).table_path("segment_runs") == str(Path("lake/out/segment_runs"))


def test_a_location_is_a_name_or_a_path_never_a_guess():
    by_name = Location.of("`main`.`mar``keting`.`t`")
    assert by_name.is_name and by_name.parts == ("main", "mar`keting", "t")
    assert by_name.sql == "`main`.`mar``keting`.`t`"
    assert not Location.of("main.marketing.t").is_name  # a plain string is a path, even with dots
    assert Location.of(TableRef(name="main.sales.orders")).parts == ("main", "sales", "orders")
    parquet = Location.of(TableRef(path="/data/x", format="parquet"))
    assert (parquet.path, parquet.format, parquet.sql) == ("/data/x", "parquet", "parquet.`/data/x`")
    assert Location.table("main", "a.b", "t").parts == ("main", "a.b", "t")
    with pytest.raises(ValueError, match="exactly one"):
        Location(path="/x", name="a.b")
    with pytest.raises(ValueError, match="empty part"):
        Location(name="main..t")


# -- the jobs by name, read back in a new session -------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    overrides = [
        "inputs.orders.path=null",
        "inputs.orders.name=spark_catalog.shop.orders",
        "inputs.identity_map.path=null",
        "inputs.identity_map.name=spark_catalog.shop.identity_map",
        "inputs.profiles.path=null",
        "inputs.profiles.name='`spark_catalog`.`shop`.`profiles`'",  # YAML: a backquote starts no plain value
        f"outputs.path={root / 'unused'}",
        "outputs.catalog=spark_catalog",
        "outputs.schema=marketing",
        f"outputs.report_dir={root / 'reports'}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        f"mlflow.dfs_tmpdir={root / 'dfs_tmp'}",
        "generate.customers=1000",
        "generate.orders=6000",
        "generate.customers_per_partition=500",
        "models.churn.max_iter=3",
        "models.churn.max_depth=2",
        TEST_SESSION_OVERRIDE,
    ]
    jobs = _run(JOBS, str(root), str(ROOT / "conf" / "local.yaml"), *overrides, timeout=1500)
    read = _run(READER, str(root), OUTPUT_SCHEMA, *OUTPUT_TABLES, timeout=600)
    return root, jobs, read


@pytest.mark.spark
@pytest.mark.delta
@pytest.mark.mlflow
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_jobs_by_name_write_catalog_tables_a_new_session_reads(catalog_run):
    root, jobs, read = catalog_run
    assert set(OUTPUT_TABLES) <= set(read["tables"])
    assert not (root / "unused").exists(), "with outputs.schema set nothing is written under outputs.path"
    for table in OUTPUT_TABLES:
        assert read[table]["format"] == "delta"
        assert read[table]["type"] == "MANAGED"
        assert read[table]["location"].startswith(f"file:{root / 'warehouse' / 'marketing.db'}")

    # The runs read the inputs by name, at their versions, and wrote the dates' slices (replaceWhere) by name.
    build = jobs["build"]
    assert build["input_rows"] == read["orders"] > 0
    assert read["segments_dates"] == [AS_OF]
    assert read["segments_rows"] == read["segments_scored"] + read["segments_prospects"]
    assert jobs["score"]["segments_version"] == build["versions"]["customer_segments"] + 1  # score replaced the slice
    assert read["segments_scored"] == jobs["score"]["customers"] > 0
    assert sorted(read["runs"]) == sorted([f"{job} {AS_OF}" for job in ("build", "train", "score", "report")])
    # The manifest's versions are the tables' versions: the scored snapshot is the latest commit.
    scored_version = jobs["score"]["segments_version"]
    assert read["manifest_segments_version"] == read["customer_segments"]["version"] == scored_version

    # Created as catalog tables with their contract: NOT NULL columns, CHECK constraints, Change Data Feed.
    segments = read["customer_segments"]
    assert segments["properties"]["delta.enableChangeDataFeed"] == "true"
    r_check = segments["properties"]["delta.constraints.r_score_range"]
    assert r_check == "r_score IS NULL OR (r_score >= 1 AND r_score <= 5)"
    assert not segments["nullable"]["customer_id"] and not segments["nullable"]["run_id"]
    assert segments["nullable"]["clv"]
    assert read["change_types"] == ["delete", "insert"]  # each replaceWhere of the slice: its rows out, new rows in
    assert read["segment_runs"]["properties"]["delta.constraints.status_values"] == "status IN ('complete', 'failed')"
    assert Path(jobs["report"]).is_file()
