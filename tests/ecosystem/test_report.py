"""`segmentation report`: a self-contained HTML file whose every chart decodes and renders in a real browser.

The browser check uses headless Chromium (Debian's ``chromium``, installed by ``make test`` where missing): the
screenshot must exist and not be blank. A copy is kept under ``reports/test-screenshots/`` for a human to look at.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from segmentation import pipelines, report
from segmentation.cli import EXIT_OK, main
from segmentation.config import load_settings

from .conftest import AS_OF, AS_OF_PREVIOUS

# The budget covers the shared generated run (generate + two builds) on a busy 2-core machine.
pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("sizes", "heatmap", "migration", "changes", "funnel", "scores", "audiences", "models")


class _Page(HTMLParser):
    """Collects what a self-contained page must not have (remote references) and every embedded image."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.remote: list[str] = []
        self.section_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append((values.get("alt") or "", values.get("src") or ""))
        if tag == "section":
            self.section_ids.append(values.get("id") or "")
        for key in ("src", "href"):
            value = values.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.remote.append(value)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def report_path(generated_run, conf_dir) -> Path:
    """The report of the latest snapshot, written through the CLI verb exactly as a user runs it."""
    code = main(["report", "--conf", str(conf_dir / "local.yaml"), "--as-of", str(AS_OF), *generated_run.overrides])
    assert code == EXIT_OK
    return generated_run.lake / "reports" / f"segmentation_{AS_OF}.html"


def _rfm_changes_in_the_week(lake: Path) -> int:
    """Read independently (delta-rs + DuckDB): rfm_segment rows of segment_changes in the report's week."""
    import duckdb
    from deltalake import DeltaTable

    changes = DeltaTable(str(lake / "output" / "segment_changes")).to_pyarrow_table()  # noqa: F841 - read by DuckDB
    start = AS_OF - dt.timedelta(days=6)
    return duckdb.sql(
        f"SELECT count(*) FROM changes WHERE dimension = 'rfm_segment' AND as_of_date BETWEEN '{start}' AND '{AS_OF}'"
    ).fetchall()[0][0]


def test_report_embeds_every_chart_as_a_decodable_png(report_path, generated_run):
    page = parse(report_path)
    # A month without new orders moves nobody's RFM segment (the scores are ranks): then, and only then, the week's
    # entries and exits section says it has nothing to draw.
    quiet = {"changes"} if _rfm_changes_in_the_week(generated_run.lake) == 0 else set()
    quiet.add("models")  # this run fills the predictions without training (tests/integration/test_train_score.py)

    assert page.section_ids == list(SECTIONS)
    assert page.remote == [], "the report must not fetch anything"
    assert len(page.images) == len(SECTIONS) - len(quiet), [alt for alt, _ in page.images]
    for alt, src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), alt
        data = base64.b64decode(src[len(prefix) :], validate=True)
        width, height = _png_size(data)
        assert len(data) > 10_000, alt
        assert width >= 600 and height >= 300, (alt, width, height)
    text = report_path.read_text(encoding="utf-8")
    assert text.count(report.NOT_AVAILABLE) == len(quiet)
    if report.cjk_font():
        assert "高价值客户" in text, "Chinese display names are shown when a CJK font exists"


def test_report_renders_in_headless_chromium(report_path, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from PIL import Image, ImageStat

    screenshot = tmp_path / "report.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={screenshot}",
        "--window-size=1400,4000",
        report_path.as_uri(),
    ]
    subprocess.run(command, check=True, timeout=180, capture_output=True, start_new_session=True)

    assert screenshot.exists()
    image = Image.open(screenshot).convert("L")
    assert image.size == (1400, 4000)
    stddev = ImageStat.Stat(image).stddev[0]
    non_white = sum(image.point(lambda v: 255 if v < 240 else 0).convert("1").getdata()) / 255
    assert stddev > 20, f"the screenshot looks blank (pixel spread {stddev:.1f})"
    assert non_white / (image.size[0] * image.size[1]) > 0.05
    for top in range(0, 4000, 1000):  # charts fill the page all the way down, not only the header
        band = image.crop((0, top, 1400, top + 1000))
        assert ImageStat.Stat(band).stddev[0] > 10, f"blank band at {top}px"
    keep = ROOT / "reports" / "test-screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, keep / f"segmentation_{AS_OF}.png")


def test_sections_without_data_say_not_available(generated_run, spark):
    """The first snapshot has no earlier one and no predictions: those sections say so, the others are drawn."""
    result = pipelines.run_report(spark, generated_run.settings, AS_OF_PREVIOUS)

    assert "migration" in result.unavailable
    assert "scores" in result.unavailable
    # the first build reports every customer as entered: the week's changes are read and drawn
    assert {"sizes", "heatmap", "changes", "funnel"}.isdisjoint(result.unavailable)
    assert report.NOT_AVAILABLE in Path(result.path).read_text(encoding="utf-8")


def test_report_on_an_empty_lake_renders_every_section_as_not_available(spark, conf_dir, tmp_path):
    store = tmp_path / "mlflow.db"
    overrides = [f"outputs.path={tmp_path / 'nothing'}", f"outputs.report_dir={tmp_path}"]
    settings = load_settings([conf_dir / "local.yaml"], [*overrides, f"mlflow.tracking_uri=sqlite:///{store}"])
    result = pipelines.run_report(spark, settings, AS_OF)

    assert result.unavailable == list(SECTIONS)
    assert not store.exists()  # the report reads the registry, it never creates a tracking store
    page = parse(Path(result.path))
    assert page.images == []
    assert Path(result.path).read_text(encoding="utf-8").count(report.NOT_AVAILABLE) == len(SECTIONS)
