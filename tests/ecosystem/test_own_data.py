"""The README's "Run it on your own orders" works as written: its YAML snippet, copied literally from README.md, on a
small hand-made euro table with guest checkouts and untidy text, through the same command a user types (issue 15).

Only the snippet's example paths (/data/...) are pointed at this test's folder, with key=value overrides as the README
shows; everything else comes from the snippet and conf/local.yaml.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from segmentation.cli import EXIT_OK, main
from segmentation.config import load_settings
from tests.conftest import order_row

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-06-30"


def readme_snippet() -> str:
    """The first YAML block of the README's own-data section, as it is printed there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Run it on your own orders", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "the own-data section has no YAML snippet"
    return match.group(1)


def euro_orders() -> list[tuple]:
    """24 orders in euros from a shop export: untidy case and spaces, a tie, a refund, one guest checkout (4%)."""
    rows = []
    for i in range(1, 8):  # seven customers, one to three orders each
        for k in range(1 + i % 3):
            rows.append(
                order_row(
                    f"E{i}-{k}",
                    f" cust{i} " if k == 0 else f"cust{i}",  # the same customer with and without spaces
                    f"2026-0{3 + k}-{10 + i}T12:00:00",
                    f"{20 + 5 * i}.50",
                    currency=" eur" if i % 2 else "EUR",
                    status="Completed " if k == 1 else "completed",
                    category=("apparel", "home", "beauty")[i % 3],
                    channel="web" if i % 2 else "app",
                )
            )
    rows.append(order_row("E8-0", "cust8", "2026-06-01T09:00:00", "45.50", currency="EUR"))  # a tie with E8-1
    rows.append(order_row("E8-1", "cust8", "2026-06-01T09:00:00", "45.50", currency="EUR"))
    rows.append(order_row("E9-0", "cust9", "2026-06-02T09:00:00", "15.00", currency="EUR", status="refunded"))
    rows.append(order_row("G-1", None, "2026-06-03T09:00:00", "12.00", currency="EUR"))  # a guest checkout
    while len(rows) < 24:
        n = len(rows)
        rows.append(
            order_row(f"F{n}", f"cust{n % 5 + 1}", f"2026-06-{n % 20 + 1:02d}T08:00:00", "33.30", currency="EUR")
        )
    return rows


@pytest.fixture()
def own_table(lake, write_orders, tmp_path):
    write_orders(lake / "input" / "orders", euro_orders())
    mine = tmp_path / "mine.yaml"
    mine.write_text(readme_snippet(), encoding="utf-8")
    return mine


def _argv(verb: str, conf_dir: Path, mine: Path, lake: Path) -> list[str]:
    return [
        verb,
        "--conf",
        str(conf_dir / "local.yaml"),
        "--conf",
        str(mine),
        "--as-of",
        AS_OF,
        f"inputs.orders.path={lake / 'input' / 'orders'}",
        f"outputs.path={lake / 'output'}",
        f"outputs.report_dir={lake / 'reports'}",
        f"outputs.log_dir={lake / 'logs'}",
        "spark.jars_dir=null",
        "spark.master=local[2]",
    ]


def test_the_snippet_sets_the_reporting_currency_with_the_currencies():
    snippet = yaml.safe_load(readme_snippet())

    assert snippet["quality"]["reporting_currency"] in snippet["quality"]["currencies"]
    assert snippet["quality"]["currencies"] != ["CNY"], "the example is for a non-default currency"


def test_the_readme_example_builds_segments_on_a_euro_table(spark, lake, conf_dir, own_table, capsys):
    code = main(_argv("build", conf_dir, own_table, lake))

    assert code == EXIT_OK, capsys.readouterr().err
    segments = spark.read.format("delta").load(str(lake / "output" / "customer_segments")).collect()
    assert sorted(r["customer_id"] for r in segments) == [f"cust{i}" for i in range(1, 9)]
    assert all(r["rfm_segment"] for r in segments)
    rejected = spark.read.format("delta").load(str(lake / "output" / "orders_rejected")).collect()
    assert [r["order_id"] for r in rejected] == ["G-1"], "only the guest checkout is set aside"


def test_profile_of_the_euro_table_suggests_a_conf_that_builds(spark, lake, conf_dir, own_table, capsys):
    code = main(_argv("profile", conf_dir, own_table, lake))

    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "| guest_order | 1 | 4.2% |" in out, out
    assert "configured category 'electronics' never occurs" in (lake / "reports" / f"profile_{AS_OF}.md").read_text()
    assert (lake / "reports" / f"profile_{AS_OF}.html").exists()
    suggested = lake / "reports" / f"profile_{AS_OF}.yaml"
    conf = yaml.safe_load(suggested.read_text())
    assert conf["quality"] == {"currencies": ["EUR"], "reporting_currency": "EUR"}
    assert sorted(conf["features"]["channels"]) == ["app", "web"]
    assert sorted(conf["features"]["categories"]) == ["apparel", "beauty", "home"]
    tag_rules = conf["tags"]["rule_sets"]["category_preference"]["rules"]
    assert [r["name"] for r in tag_rules] == conf["features"]["categories"]

    settings = load_settings([conf_dir / "local.yaml", own_table, suggested], [f"outputs.path={lake / 'output'}"])
    from segmentation import pipelines

    pipelines.check_rules(
        spark, settings, dt.date(2026, 6, 30)
    )  # the suggested layer's rules fit the renamed feature columns
