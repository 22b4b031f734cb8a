"""The Airflow example DAG imports cleanly in a DagBag and chains the jobs on the logical date.

Airflow lives in its own venv (``make airflow-venv`` → ``.cache/airflow-venv``) so its many pins never touch the
product's; the check runs there in a subprocess and reports back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = ROOT / ".cache" / "airflow-venv" / "bin" / "python"

CHECK = textwrap.dedent(
    """
    import json, sys
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
        bag = DagBag(dag_folder=sys.argv[1])
    except ImportError:
        from airflow.models import DagBag
        bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    dag = bag.dags.get("segmentation_daily")
    out = {"errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
    if dag is not None:
        params = {k: dag.params[k] for k in dag.params}
        env = dag.get_template_env()
        out["edges"] = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
        out["commands"] = {
            t.task_id: env.from_string(t.bash_command).render(ds="2026-06-30", params=params) for t in dag.tasks
        }
        out["catchup"] = dag.catchup
    print("RESULT " + json.dumps(out))
    """
)


def test_dag_imports_and_chains_generate_build_train_score_report(tmp_path):
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} is missing: run `make airflow-venv` (make test does)")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "SEGMENTATION_HOME": "/opt/segmentation",
        "SEGMENTATION_CONF": "/opt/segmentation/conf/prod.yaml",
    }
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", CHECK, str(ROOT / "examples" / "airflow")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))

    assert out["errors"] == {}
    assert out["dag_ids"] == ["segmentation_daily"]
    assert out["edges"] == {
        "generate": ["build"],
        "build": ["train"],
        "train": ["score"],
        "score": ["report"],
        "report": [],
    }
    for verb, command in out["commands"].items():
        assert f"/opt/segmentation/jobs/{verb}.py" in command
        assert "--conf /opt/segmentation/conf/prod.yaml --as-of 2026-06-30" in command
        assert command.startswith("spark-submit ")
