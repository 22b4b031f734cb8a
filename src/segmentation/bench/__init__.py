"""``segmentation bench``: how ``build`` scales, measured against the engines users would otherwise pick.

For every size the benchmark generates synthetic orders once (reused while the parameters are unchanged), then runs
over the same Delta snapshot, side by side in one process:

* **build**: the product's ``pipelines.run_build``, Delta to Delta, timed per stage;
* **duckdb**: the same features, R/F/M quantile scores and RFM segments as one DuckDB SQL script over the table's
  current Parquet files (the file list comes from the Delta log through ``deltalake``, so it reads exactly the
  snapshot Spark reads), in a subprocess so its peak memory is its own;
* **naive**: the tutorial-style PySpark job of :mod:`segmentation.bench.references.naive`.

It reports wall times, per-stage times, rows per second, the ratios between them, peak memory (the driver JVM's
``VmHWM`` and the DuckDB process's maximum RSS), how many customers get the same segment in each implementation, a
skew scenario (one customer with a million orders), the CLV fit on collapsed versus per-customer rows, and the
targets of ``targets.yaml``. Every figure that compares two things comes from one run on one machine, because the
absolute times on a shared machine move with the load; the ratios move much less.

Modules: ``datasets`` (the inputs under ``.cache/bench``), ``references`` (DuckDB and naive PySpark), ``measure``
(timing, memory, skew, agreement; the only module that calls :mod:`segmentation.pipelines`), ``clv_timing``,
``targets`` (``targets.yaml``), ``render`` (the Markdown report) and ``runner`` (the whole run).

Spark, pandas and deltalake are imported inside functions throughout: the DuckDB worker imports this package and
its start-up time and memory must not include them.
"""

from segmentation.bench.clv_timing import clv_candidate_timings, clv_fit_timings, simulate_bgnbd
from segmentation.bench.references.duckdb import duckdb_statements
from segmentation.bench.render import render
from segmentation.bench.runner import run
from segmentation.bench.targets import load_targets

__all__ = [
    "clv_candidate_timings",
    "clv_fit_timings",
    "duckdb_statements",
    "load_targets",
    "render",
    "run",
    "simulate_bgnbd",
]
