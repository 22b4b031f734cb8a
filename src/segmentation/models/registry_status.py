"""What the registry holds, for the report: each family's newest trained version next to its champion.

Read-only: a SQLite store that does not exist is reported as such and never created by reading it. Writing runs and
moving the ``champion`` alias belong to :mod:`segmentation.models.tracking`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow.exceptions import MlflowException

from segmentation.config import MlflowSettings
from segmentation.models.tracking import CHAMPION, sqlite_file


@dataclass(frozen=True)
class ModelStatus:
    """The newest trained version of one registered model next to the current champion, read from the registry.

    ``metric`` is the promotion metric the newest run was judged on; ``champion_value`` is the champion's value on
    that run's holdout (logged as ``champion_<metric>``), ``baseline_value`` the family's baseline on it.
    ``candidates`` are the rows of the run's ``tables/candidates.json`` (empty for a family that fits one model),
    ``images`` its diagnostic pictures (``images/<name>.png``) as ``(name, PNG bytes)`` in name order.
    """

    family: str
    registered_model: str
    latest_version: str
    run_name: str
    metric: str
    latest_value: float | None
    baseline_value: float | None
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    beats_champion: bool
    guards: dict[str, str]
    candidates: tuple[dict[str, Any], ...] = ()
    images: tuple[tuple[str, bytes], ...] = ()


def store_exists(settings: MlflowSettings) -> bool:
    """False when the tracking store is a SQLite file that does not exist (nothing trained here; reading would
    create it); any other store is assumed to exist and answers for itself."""
    store = sqlite_file(settings.tracking_uri)
    return store is None or store.exists()


def model_status(settings: MlflowSettings, family: str, registered_model: str) -> ModelStatus | None:
    """The newest version of ``registered_model`` and its run's verdict; None when no version is registered.

    Raises:
        MlflowException: the store cannot be read (other than the model not existing).
    """
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    try:
        versions = client.search_model_versions(f"name = '{registered_model}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    run = client.get_run(latest.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    metric = tags.get("promotion_metric", "")
    try:
        champion: str | None = str(client.get_model_version_by_alias(registered_model, CHAMPION).version)
    except MlflowException:
        champion = None
    # The newest version is the champion: its own value; else the champion's re-evaluation on the same holdout.
    champion_value = metrics.get(metric if champion == str(latest.version) else f"champion_{metric}")
    return ModelStatus(
        family=family,
        registered_model=registered_model,
        latest_version=str(latest.version),
        run_name=tags.get("mlflow.runName", run.info.run_name or ""),
        metric=metric,
        latest_value=metrics.get(metric),
        baseline_value=metrics.get(f"baseline_{metric}"),
        champion_version=champion,
        champion_value=champion_value,
        promoted=tags.get("promoted") == "true",
        beats_champion=tags.get("beats_champion") == "true",
        guards={k.removeprefix("guard."): v for k, v in sorted(tags.items()) if k.startswith("guard.")},
        candidates=tuple(_run_table(client, latest.run_id, "candidates")),
        images=_run_images(client, latest.run_id),
    )


def _run_table(client: mlflow.MlflowClient, run_id: str, name: str) -> list[dict[str, Any]]:
    """The rows of ``tables/<name>.json`` of a run; [] when the run has no such table."""
    if not any(a.path == f"tables/{name}.json" for a in client.list_artifacts(run_id, "tables")):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, f"tables/{name}.json", tmp)
        return list(json.loads(Path(path).read_text(encoding="utf-8"))["rows"])


def _run_images(client: mlflow.MlflowClient, run_id: str) -> tuple[tuple[str, bytes], ...]:
    """Every ``images/<name>.png`` of a run as ``(name, bytes)``, in name order."""
    pictures = sorted(a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png"))
    with tempfile.TemporaryDirectory() as tmp:
        return tuple((Path(p).stem, Path(client.download_artifacts(run_id, p, tmp)).read_bytes()) for p in pictures)
