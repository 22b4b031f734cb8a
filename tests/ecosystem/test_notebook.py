"""`notebooks/segment_explorer.ipynb` runs top to bottom on a generated run, so it never rots.

The notebook runs in the venv's own ipykernel (``kernel_name="python3"``, nothing registered globally) and reads its
parameters from ``SEGMENTATION_*`` environment variables, which the kernel inherits from this process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import AS_OF

# The budget covers the shared generated run (generate + two builds) on a busy 2-core machine.
pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "segment_explorer.ipynb"


def test_segment_explorer_executes_top_to_bottom(generated_run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    overrides = [*generated_run.overrides, "spark.driver_memory=1g"]
    monkeypatch.setenv("SEGMENTATION_CONF", str(ROOT / "conf" / "local.yaml"))
    monkeypatch.setenv("SEGMENTATION_AS_OF", str(AS_OF))
    monkeypatch.setenv("SEGMENTATION_OVERRIDES", " ".join(overrides))
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6, "sizes, heatmap, value classes, migration, funnel and the segment profile are drawn"
    text = "".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "customer_segments" in text
