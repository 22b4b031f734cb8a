"""Statistical models fitted on per-customer summaries: no table paths, no I/O, no experiment tracking."""
