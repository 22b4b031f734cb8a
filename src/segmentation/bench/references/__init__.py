"""What the benchmark measures ``build`` against: ``duckdb`` (one SQL script in its own process) and ``naive`` (the
tutorial-style PySpark job). Nothing is imported here: the DuckDB worker must start without Spark."""
