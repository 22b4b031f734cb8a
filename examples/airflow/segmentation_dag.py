"""Daily segmentation run: generate → build → train → score → report, as of the run's logical date.

Each task is one ``spark-submit`` of a thin ``jobs/<verb>.py`` entry point with the project's wheel, so the Airflow
workers need only a Spark client, never the project's Python dependencies. The as-of date is the logical date
(``{{ ds }}``): no job reads the clock, so a backfill or a retry of an old date reproduces that date's snapshot, and
every output overwrites only its own as-of slice, so retries are safe.

Settings come from DAG params (editable when triggering a run) with defaults from environment variables:

* ``SEGMENTATION_SUBMIT``: the spark-submit prefix (master, deploy mode, resources, ``--py-files`` wheel, Delta jars).
* ``SEGMENTATION_HOME``: where ``jobs/`` and ``conf/`` are deployed on the Airflow worker.
* ``SEGMENTATION_CONF``: the environment configuration (``conf/cluster.example.yaml`` as a template).

Exit codes of every job: 0 ok, 2 bad configuration, 3 bad input data (nothing written), 1 internal error. A retry
only helps with 1 (a lost executor, a cluster hiccup); 2 and 3 fail again until a person fixes the configuration or
the input, and the task log shows the job's message saying which.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator

HOME = os.environ.get("SEGMENTATION_HOME", "/opt/segmentation")
SUBMIT = os.environ.get(
    "SEGMENTATION_SUBMIT",
    "spark-submit --master yarn --deploy-mode cluster --packages io.delta:delta-spark_4.2_2.13:4.4.0"
    f" --py-files {HOME}/dist/segmentation-0.1.0-py3-none-any.whl",
)
CONF = os.environ.get("SEGMENTATION_CONF", f"{HOME}/conf/cluster.example.yaml")
STEPS = ("generate", "build", "train", "score", "report")

COMMAND = (
    "{{ params.submit }} {{ params.home }}/jobs/%(verb)s.py --conf {{ params.conf }} --as-of {{ ds }}"
    " {{ params.overrides }}"
)


with DAG(
    dag_id="segmentation_daily",
    description="Customer value segmentation: features, segments, models, scores and the HTML report",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # train moves the champion alias: keep model promotion in date order
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=4)},
    params={
        "submit": Param(SUBMIT, type="string", description="spark-submit command prefix"),
        "home": Param(HOME, type="string", description="folder holding jobs/ and conf/"),
        "conf": Param(CONF, type="string", description="environment configuration file"),
        "overrides": Param("", type="string", description="extra dotted key=value overrides"),
    },
    tags=["segmentation", "marketing"],
) as dag:
    previous = None
    for verb in STEPS:
        task = BashOperator(task_id=verb, bash_command=COMMAND % {"verb": verb})
        if previous is not None:
            previous >> task
        previous = task
