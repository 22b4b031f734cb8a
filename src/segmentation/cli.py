"""``segmentation <verb>``: one verb per job. Parses the configuration, builds the session, calls the job's pipeline.

Exit codes: 0 success, 2 bad configuration or arguments, 3 bad input data (nothing written), 1 internal error.

A problem the user can fix prints one screen on stderr: what is wrong, where (file, key, rule, column, rows) and what to
do. The full log of the run, Java stack traces included, goes to ``<outputs.log_dir>/segmentation_<verb>_<as-of>.log``
(``logs/`` under the working folder by default), whose path is printed; Spark's own log output is routed there too, so
no Java stack trace reaches the console.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from segmentation import console
from segmentation.config import ConfigError, Settings, load_settings, parse_as_of

log = logging.getLogger("segmentation")

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG, EXIT_INPUT, EXIT_RESOURCES = 0, 1, 2, 3, 4

EPILOG = """examples:
  segmentation generate --conf conf/local.yaml --as-of 2026-06-30 --customers 100000 --orders 1000000
  segmentation profile  --conf conf/local.yaml --as-of 2026-06-30 inputs.orders.path=/data/orders
  segmentation build    --conf conf/local.yaml --as-of 2026-06-30
  segmentation build    --conf conf/local.yaml --as-of 2026-06-30 rfm.method=thresholds inputs.orders.path=/data/orders
  segmentation report   --conf conf/local.yaml --as-of 2026-06-30 outputs.report_dir=/tmp/reports
  segmentation evaluate --conf conf/local.yaml --as-of 2026-06-30 inputs.campaign_responses.path=/data/responses

Configuration files merge in order (conf/base.yaml beside the first file comes first); key=value overrides win.
Exit codes: 0 ok, 2 bad configuration, 3 bad input data (nothing written), 1 internal error."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf", action="append", required=True, metavar="FILE", help="YAML configuration (repeatable, later wins)"
    )
    parser.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="snapshot date; no job reads the clock")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted configuration overrides")


# The log file of the running command (set by ``main``): Spark's own log output is routed into it.


def _spark(settings: Settings):
    from segmentation.session import build_session, route_jvm_logs

    spark = build_session(settings.spark)
    if console.LOG_FILE:
        route_jvm_logs(spark, console.LOG_FILE[-1])
    return spark


def cmd_profile(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines.profile import run_profile

    result = run_profile(_spark(settings), settings, as_of)
    print(result.markdown)
    print(f"profile: {result.markdown_path}\n         {result.html_path}\nsuggested conf: {result.conf_path}")
    if result.problems:
        print("\nbuild would refuse this table: " + "; ".join(result.problems), file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def cmd_generate(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines import run_generate

    if args.append_day is not None:
        from segmentation.pipelines.generate import run_append_day

        version = run_append_day(_spark(settings), settings, as_of, args.append_day)
        print(f"orders: {settings.inputs.orders.path} (version {version}): appended the orders of {as_of}")
        return EXIT_OK
    result = run_generate(_spark(settings), settings, as_of)
    print(f"orders: {result.orders_path} (version {result.orders_version})")
    if result.identity_map_path:
        print(f"identity map: {result.identity_map_path}")
    if result.profiles_path:
        print(f"profiles: {result.profiles_path}")
    return EXIT_OK


def _build_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="validate the whole orders table again and rebuild the clean layer and the customer state",
    )


def cmd_build(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines import run_build

    spark = _spark(settings)
    result = run_build(spark, settings, as_of, full_refresh=args.full_refresh)
    print(f"as-of {result.as_of}  run {result.run_id}")
    print(f"mode: {result.mode} ({result.mode_reason}), order rows read: {result.rows_read:,}; state {result.state}")
    print(
        f"orders in the table: {result.input_rows:,}  valid: {result.valid_rows:,}  rejected: {result.rejected_rows:,}"
        + (f"  ({', '.join(f'{k}={v:,}' for k, v in sorted(result.reasons.items()))})" if result.reasons else "")
    )
    print(f"customers: {result.customers:,}")
    print("tables:")
    for name, version in result.versions.items():
        print(f"  {settings.outputs.table_path(name)}  (version {version})")
    _print_segment_sizes(spark, settings, as_of)
    return EXIT_OK


def _print_segment_sizes(spark, settings: Settings, as_of: dt.date) -> None:
    import pyspark.sql.functions as F

    from segmentation import io

    summary_df = io.read_output(spark, settings.outputs.table_path("segment_summary"), as_of)
    if summary_df is None:
        return
    summary = summary_df.where(F.col("dimension") == "rfm_segment").orderBy(F.desc("customers")).collect()
    print("\nrfm_segment                      customers   share  revenue share")
    for row in summary:
        label = f"{row['segment']} ({row['display_name_zh'] or ''})"
        print(f"  {label:<30}{row['customers']:>10,}  {row['share']:>6.1%}  {row['revenue_share'] or 0:>12.1%}")


def cmd_evaluate(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    import pyspark.sql.functions as F

    from segmentation.pipelines import run_evaluate

    spark = _spark(settings)
    result = run_evaluate(spark, settings, as_of)
    print(f"as-of {result.as_of}  run {result.run_id}")
    print(f"uplift: {result.path}  (version {result.version})")
    from segmentation import io

    uplift_df = io.read_output(spark, result.path, as_of)
    rows = [] if uplift_df is None else uplift_df.where(F.col("dimension") == "all").orderBy("campaign_id").collect()
    print("\ncampaign                          treated  control  conversion uplift [95% CI]   revenue/customer uplift")
    for row in rows:
        print(
            f"  {row['campaign_id']:<32}{row['treatment_customers']:>8,}{row['control_customers']:>9,}  "
            f"{_pct(row['conversion_uplift'])} [{_pct(row['conversion_uplift_ci_low'])}, "
            f"{_pct(row['conversion_uplift_ci_high'])}]  {_num(row['revenue_uplift'])} "
            f"[{_num(row['revenue_uplift_ci_low'])}, {_num(row['revenue_uplift_ci_high'])}]"
        )
    return EXIT_OK


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:+6.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def cmd_report(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines import run_report

    result = run_report(_spark(settings), settings, as_of)
    if result.unavailable:
        print(f"sections not available for this run: {', '.join(result.unavailable)}")
    print(f"report: {result.path}")
    return EXIT_OK


def _generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, help="number of customers (generate.customers)")
    parser.add_argument("--orders", type=int, help="approximate number of orders (generate.orders)")
    parser.add_argument("--seed", type=int, help="random seed (generate.seed)")
    parser.add_argument(
        "--append-day",
        type=float,
        metavar="SHARE",
        help="instead of a new history, append the orders of the as-of day to the existing table: this share of its"
        " rows re-issued that day under new ids (a daily feed for trying incremental builds), e.g. 0.002",
    )


def cmd_bench(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation import bench

    command = "segmentation bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "segmentation bench"
    results = bench.run(
        args.conf,
        args.overrides,
        as_of,
        args.sizes,
        root=args.root,
        naive_max_size=args.naive_max_size,
        skew_base=args.skew_base,
        clv_customers=args.clv_customers,
        membership_customers=args.membership_customers,
        models_sizes=args.models_sizes,
        warmup_size=args.warmup_size,
        orders_per_customer=args.orders_per_customer,
        doc=args.doc,
        command=command,
    )
    print(bench.render(results))
    return EXIT_OK


def _int_list(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=_int_list, default=[1_000_000], help="order counts, comma-separated")
    parser.add_argument("--root", default=".cache/bench", help="where generated data and outputs live")
    parser.add_argument("--naive-max-size", type=int, help="skip the naive reference above this many orders")
    parser.add_argument("--skew-base", type=int, help="also run the skew scenario on this size (+1M orders)")
    parser.add_argument("--clv-customers", type=_int_list, default=[], help="customer counts for the CLV fit timing")
    parser.add_argument(
        "--membership-customers", type=_int_list, default=[], help="customer counts for the membership MERGE timing"
    )
    parser.add_argument(
        "--models-sizes", type=_int_list, default=[], help="order counts at which train and score are timed too"
    )
    parser.add_argument("--warmup-size", type=int, help="run one unmeasured build on this many orders first")
    parser.add_argument(
        "--orders-per-customer",
        type=int,
        default=20,
        help="orders per customer of the generated data sets (default 20: 100M orders for 5M customers)",
    )
    parser.add_argument("--doc", default="docs/benchmarks.md", help="Markdown report to write (empty: none)")


def cmd_train(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines import run_train

    result = run_train(_spark(settings), settings, as_of)
    print(f"as-of {result.as_of}  orders version {result.orders_version}  tracking {settings.mlflow.tracking_uri}")
    for o in result.outcomes:
        print(f"{o.name}: {o.window}, run {o.run_id}")
        if o.candidates:
            metric = o.candidates[0].selection_metric
            print(f"  {'candidate':<12}{metric:>14}{'guards':>8}  verdict")
            for c in o.candidates:
                value = c.metrics.get(metric, float("nan"))
                verdict = "selected" if c.selected else ", ".join(c.guards) or "not selected"
                print(f"  {c.name:<12}{value:>14.4f}{len(c.guards):>8}  {verdict}")
        if o.params:
            print("  " + "  ".join(f"{k}={v:.4g}" for k, v in o.params.items()))
        if o.baseline_metrics:
            print(f"  {'metric':<26}{'model':>12}{'baseline':>12}")
        for key in o.key_metrics:
            baseline = f"{o.baseline_metrics[key]:>12.4f}" if o.baseline_metrics else ""
            print(f"  {key:<26}{o.metrics[key]:>12.4f}{baseline}")
    for p in result.promotions:
        against = (
            f"champion v{p.champion_version} {p.champion_value:.4f} on the same holdout"
            if p.champion_version
            else "no champion yet"
        )
        verdict = (
            "-> @champion"
            if p.promoted
            else f"(guarded: {', '.join(p.guards)}; champion unchanged, see the log)"
            if p.guarded
            else "(champion unchanged)"
        )
        print(f"{p.registered_model} v{p.version}: {p.metric}={p.challenger_value:.4f} vs {against} {verdict}")
    return EXIT_OK


def cmd_score(args: argparse.Namespace, settings: Settings, as_of: dt.date) -> int:
    from segmentation.pipelines import run_score

    result = run_score(_spark(settings), settings, as_of)
    models = " and ".join(f"{name} v{version}" for name, version in result.versions.items())
    print(f"as-of {result.as_of}: scored {result.customers:,} customers with {models}")
    print(f"  {settings.outputs.table_path('customer_segments')}  (version {result.segments_version})")
    return EXIT_OK


Command = Callable[[argparse.Namespace, Settings, dt.date], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {
    "generate": ("write a synthetic multi-channel order history", cmd_generate, _generate_args),
    "profile": ("pre-flight of an orders table: schema, reasons, values vs conf, a suggested conf", cmd_profile, None),
    "build": ("orders -> features, segments, summary, rejected rows", cmd_build, _build_args),
    "bench": ("timings and ratios of build against DuckDB and naive PySpark references", cmd_bench, _bench_args),
    "report": ("output tables -> one self-contained HTML report with plots", cmd_report, None),
    "train": ("orders -> CLV and churn models in MLflow; @champion moves only on improvement", cmd_train, None),
    "score": ("@champion models -> clv, p_alive, churn_probability in the segments snapshot", cmd_score, None),
    "evaluate": ("campaign audiences + responses -> uplift per campaign and segment", cmd_evaluate, None),
}


def _epilog() -> str:
    """The examples, plus a plain one for any verb the hand-written list does not show, so --help covers every verb."""
    head, _, tail = EPILOG.partition("\n\n")
    missing = [v for v in COMMANDS if f"segmentation {v} " not in " ".join(head.split())]
    extra = "".join(f"\n  segmentation {v:<8} --conf conf/local.yaml --as-of 2026-06-30" for v in missing)
    return f"{head}{extra}\n\n{tail}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segmentation",
        description="Customer value segmentation for marketing activation on Spark and Delta Lake.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="verb", required=True, metavar="verb")
    for verb, (help_text, _, add_args) in COMMANDS.items():
        sp = sub.add_parser(verb, help=help_text, description=help_text)
        _common(sp)
        if add_args:
            add_args(sp)
    return p


def _extra_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for key in ("customers", "orders", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            out.append(f"generate.{key}={value}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from segmentation.errors import InputError
    from segmentation.schema import SchemaError

    with console.logging_to_file(args) as log_file:
        console.LOG_FILE[:] = [Path(log_file.baseFilename)]
        settings, log_start = None, 0
        try:
            settings = load_settings(args.conf, [*args.overrides, *_extra_overrides(args)])
            as_of = parse_as_of(args.as_of)
            log_file.baseFilename = str(console.log_path(args, settings.outputs.log_dir))  # nothing logged to it yet
            console.LOG_FILE[:] = [Path(log_file.baseFilename)]
            log_start = console.log_size(Path(log_file.baseFilename))
            return COMMANDS[args.verb][1](args, settings, as_of)
        except ConfigError as exc:
            console.fail("configuration error", exc, str(exc), console.CONFIG_HINT, log_file)
            return EXIT_CONFIG
        except (SchemaError, InputError, FileNotFoundError) as exc:  # FileNotFoundError: no input table at a path
            hint = "Check the inputs.*.path keys of the conf. " if isinstance(exc, FileNotFoundError) else ""
            console.fail("input error", exc, str(exc), hint + console.INPUT_HINT, log_file)
            return EXIT_INPUT
        except Exception as exc:  # a Spark error caused by the data is an input error; anything else is internal
            oom = console.out_of_memory(Path(log_file.baseFilename), log_start)
            if oom or console.driver_lost(exc):
                memory = settings.spark.driver_memory if settings is not None else None
                console.wait_for_driver()
                what, hint = console.driver_lost_message(oom, memory)
                console.fail("resources error", exc, what, hint, log_file)
                return EXIT_RESOURCES
            first = next((line.strip() for line in console.text(exc).splitlines() if line.strip()), type(exc).__name__)
            first = first[:400]
            condition = console.condition(exc)
            if condition is not None:
                what = f"{console.DATA_CONDITIONS[condition]} [{condition}]: {first}"
                console.fail(
                    "input error", exc, what, console.INPUT_HINT + " The log names the file and the query.", log_file
                )
                return EXIT_INPUT
            console.fail(
                "internal error", exc, f"{type(exc).__name__}: {first}", "Please report it with the log.", log_file
            )
            return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
