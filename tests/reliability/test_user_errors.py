"""What a user sees when the configuration or the data is wrong: one readable screen, the right exit code, no output
table touched, and the Java stack traces in the log file whose path is printed (issue 15).

Every case runs the real command (``cli.main``) on hand-made Delta tables with the shared Spark session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation import io
from segmentation.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, main
from tests.conftest import order_row

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.timeout(1200)]

AS_OF = "2026-06-30"
ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("orders_rejected", "customer_features", "customer_segments", "segment_summary", "segment_runs")
JAVA_FRAME = "\tat org.apache"


def rows():
    return [
        order_row("o1", "c1", "2026-06-01T10:00:00", "10.00"),
        order_row("o2", "c1", "2026-06-20T10:00:00", "30.00", category="beauty"),
        order_row("o3", "c2", "2026-05-02T10:00:00", "20.00", channel="app"),
        order_row("o4", "c3", "2026-06-02T10:00:00", "20.00", status="refunded"),
        order_row("o5", None, "2026-06-03T10:00:00", "5.00"),  # a null customer id: rejected, not fatal
    ]


def command(verb: str, lake: Path, conf_dir: Path, *overrides: str) -> list[str]:
    return [
        verb,
        "--conf",
        str(conf_dir / "local.yaml"),
        "--as-of",
        AS_OF,
        f"inputs.orders.path={lake / 'input' / 'orders'}",
        "inputs.identity_map=null",
        "inputs.profiles=null",
        f"outputs.path={lake / 'output'}",
        f"outputs.report_dir={lake / 'reports'}",
        f"outputs.log_dir={lake / 'logs'}",
        "spark.jars_dir=null",
        "spark.master=local[2]",
        "quality.max_rejected_share=0.5",
        *overrides,
    ]


def versions(spark, lake: Path) -> dict[str, int | None]:
    return {t: io.table_version(spark, str(lake / "output" / t)) for t in OUTPUTS}


def assert_one_screen(err: str, *expected: str) -> None:
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    assert "Traceback" not in err and JAVA_FRAME not in err, err
    assert len(err.splitlines()) <= 25, f"more than one screen:\n{err}"


@pytest.fixture()
def orders(lake, write_orders):
    return write_orders(lake / "input" / "orders", rows())


def test_a_rule_that_divides_by_zero_does_not_match(spark, lake, conf_dir, orders, capsys):
    ratio = (
        "segments.rule_sets.value_segment.rules=[{name: ratio, condition: 'monetary / (frequency - frequency) > 1'},"
        " {name: other, condition: 'true'}]"
    )

    assert main(command("build", lake, conf_dir, ratio)) == EXIT_OK

    segments = spark.read.format("delta").load(str(lake / "output" / "customer_segments"))
    assert sorted(r["value_segment"] for r in segments.collect()) == ["other", "other"]


@pytest.mark.parametrize(
    ("name", "column"),
    [
        pytest.param("frequency", "frequency", id="a-feature"),
        pytest.param("Value_Class", "value_class", id="a-score-any-case"),
        pytest.param("clv", "clv", id="a-prediction-added-later"),
    ],
)
def test_a_rule_set_named_like_a_column_is_refused_before_reading(spark, lake, conf_dir, orders, capsys, name, column):
    rule_set = f"segments.rule_sets.{name}={{kind: exclusive, rules: [{{name: all, condition: 'true'}}]}}"
    before = versions(spark, lake)

    code = main(command("build", lake, conf_dir, rule_set))

    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert_one_screen(err, f"segments.rule_sets.{name}", f"existing column '{column}'", "rename the rule set")
    assert versions(spark, lake) == before == dict.fromkeys(OUTPUTS)


def test_a_rule_naming_an_unknown_column_is_one_screen_with_the_log_path(spark, lake, conf_dir, orders, capsys):
    typo = "tags.rule_sets.order_value.rules=[{name: toys, condition: 'category_share_toys >= 0.5'}]"

    assert main(command("build", lake, conf_dir, typo)) == EXIT_CONFIG

    err = capsys.readouterr().err
    assert_one_screen(err, "tags.rule_sets.order_value", "rule 'toys'", "category_share_toys", "Full log: ")
    log_file = Path(err.split("Full log: ")[1].strip())
    assert log_file.parent == lake / "logs" and log_file.name == f"segmentation_build_{AS_OF}.log"
    assert "Traceback" in log_file.read_text(), "the traceback goes to the log file"
    assert versions(spark, lake) == dict.fromkeys(OUTPUTS)


def test_a_missing_orders_table_is_an_input_error(spark, lake, conf_dir, capsys):
    assert main(command("build", lake, conf_dir)) == EXIT_INPUT

    assert_one_screen(capsys.readouterr().err, "input error: orders table at", "does not exist: check inputs.orders")
    assert versions(spark, lake) == dict.fromkeys(OUTPUTS)


def _remove_a_data_file(lake: Path) -> Path:
    data = sorted((lake / "input" / "orders").rglob("*.parquet"))
    data[0].unlink()
    return data[0]


def test_a_corrupt_delta_table_is_an_input_error_and_touches_nothing(spark, lake, conf_dir, orders, capsys):
    assert main(command("build", lake, conf_dir)) == EXIT_OK
    before = versions(spark, lake)
    capsys.readouterr()
    _remove_a_data_file(lake)

    code = main(command("build", lake, conf_dir))

    assert code == EXIT_INPUT
    assert_one_screen(capsys.readouterr().err, "input error: a data file of an input table is missing", "Full log:")
    assert versions(spark, lake) == before


def test_profile_of_a_table_without_a_completed_sale_exits_3(spark, lake, conf_dir, write_orders, capsys):
    write_orders(lake / "input" / "orders", [order_row("o1", "c1", "2026-06-01T10:00:00", "10.00", status="refunded")])

    assert main(command("profile", lake, conf_dir)) == EXIT_INPUT

    captured = capsys.readouterr()
    assert "no valid order with status 'completed'" in captured.err
    assert "## Reject reasons" in captured.out
    assert versions(spark, lake)["customer_segments"] is None


@pytest.mark.slow
def test_no_java_stack_trace_reaches_the_console_of_a_fresh_process(lake, conf_dir, orders, tmp_path):
    """A new process starts its own JVM: Spark's log4j output and PySpark's error loggers go to the log file.

    A data file overwritten with bytes that are not Parquet passes the up-front checks (it is listed and present) and
    fails in the JVM when a stage reads it.
    """
    _remove_a_data_file(lake).write_bytes(b"not a parquet file")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = command("build", lake, conf_dir)
    argv[argv.index("spark.jars_dir=null")] = f"spark.jars_dir={os.environ['SEGMENTATION_JARS_DIR']}"

    done = subprocess.run(
        [sys.executable, "-m", "segmentation.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )

    assert done.returncode == EXIT_INPUT, done.stderr[-3000:]
    assert JAVA_FRAME not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "a data file of an input table is missing or unreadable" in done.stderr
    log_text = (lake / "logs" / f"segmentation_build_{AS_OF}.log").read_text()
    assert JAVA_FRAME in log_text, "the Java stack trace is kept in the log file"
