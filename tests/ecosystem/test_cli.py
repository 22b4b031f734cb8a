"""The command line as orchestrators see it: every verb documented with an example, and exit codes that say whose
fault a failure is (2 configuration, 3 input data, 4 resources, 1 internal), so a scheduler can decide whether a retry
helps."""

from __future__ import annotations

import pytest

from segmentation import cli
from segmentation.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_INTERNAL, main

AS_OF = "2026-06-30"


def test_help_lists_every_verb_with_an_example(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    for verb in cli.COMMANDS:
        assert verb in text.split("examples:")[0], f"{verb} is not listed"
        assert f"segmentation {verb} " in " ".join(text.split("examples:")[1].split()), f"{verb} has no example"


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["segment-everything", "--conf", "conf/local.yaml", "--as-of", AS_OF])

    assert exited.value.code == EXIT_CONFIG
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["build", "--conf", "conf/missing.yaml", "--as-of", AS_OF], "not found", id="missing-file"),
        pytest.param(["build", "--conf", "conf/local.yaml", "--as-of", "30/06/2026"], "YYYY-MM-DD", id="bad-date"),
        pytest.param(["build", "--conf", "conf/local.yaml", "--as-of", AS_OF, "rfm.bnis=4"], "unknown key", id="typo"),
        pytest.param(["report", "--conf", "conf/local.yaml", "--as-of", AS_OF, "rfm.bins=99"], "rfm.bins", id="range"),
    ],
)
def test_bad_configuration_exits_2_naming_the_problem(argv, message, capsys, monkeypatch, conf_dir):
    monkeypatch.chdir(conf_dir.parent)

    assert main(argv) == EXIT_CONFIG
    assert message in capsys.readouterr().err


@pytest.mark.spark
@pytest.mark.delta
def test_orders_missing_a_column_exit_3(spark, lake, conf_dir, capsys):
    orders = lake / "input" / "orders"
    spark.createDataFrame(
        [("o1", "web", "c1", "CNY")], "order_id string, channel string, customer_id string, currency string"
    ).write.format("delta").save(str(orders))

    code = main(
        [
            "build",
            "--conf",
            str(conf_dir / "local.yaml"),
            "--as-of",
            AS_OF,
            f"inputs.orders.path={orders}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'output'}",
            "spark.jars_dir=null",
        ]
    )

    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "missing column 'amount'" in err and "missing column 'order_ts'" in err
    assert not (lake / "output").exists(), "nothing is written when the input does not fit its contract"


@pytest.mark.spark
@pytest.mark.delta
def test_an_unexpected_failure_exits_1_with_its_traceback(spark, lake, conf_dir, caplog):
    blocker = lake / "not-a-folder"
    blocker.write_text("a file where the report folder should be")

    code = main(
        [
            "report",
            "--conf",
            str(conf_dir / "local.yaml"),
            "--as-of",
            AS_OF,
            f"outputs.path={lake / 'output'}",
            f"outputs.report_dir={blocker / 'reports'}",
            "spark.jars_dir=null",
        ]
    )

    assert code == EXIT_INTERNAL
    assert [r for r in caplog.records if r.name == "segmentation" and r.exc_info], "the traceback is logged"


def test_a_driver_that_ran_out_of_memory_is_named_from_the_run_log(tmp_path):
    from segmentation import console

    log_file = tmp_path / "segmentation_build_2026-06-30.log"
    log_file.write_text("26/12/03 ERROR Executor: Exception in task 6.0\njava.lang.OutOfMemoryError: Java heap space\n")
    what, hint = console.driver_lost_message(console.out_of_memory(log_file), "4g")
    assert what == "Spark's driver ran out of memory (java.lang.OutOfMemoryError) and stopped"
    assert "spark.driver_memory (now 4g)" in hint

    start = console.log_size(log_file)  # the file is appended to: an earlier run's error is not this run's
    with log_file.open("a") as f:
        f.write("26/12/03 INFO segmentation.runs: validate orders ...\n")
    assert "killed, or the JVM crashed" in console.driver_lost_message(console.out_of_memory(log_file, start), None)[0]
    try:  # what py4j raises once the JVM is gone, as the cause of the Java error being read
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise RuntimeError("An error occurred while calling o1.save") from exc
    except RuntimeError as exc:
        assert console.driver_lost(exc)
    assert not console.driver_lost(RuntimeError("[DIVIDE_BY_ZERO] Division by zero"))
