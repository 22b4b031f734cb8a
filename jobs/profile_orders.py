"""spark-submit entry point for `segmentation profile`: the same code as the CLI verb.

spark-submit jobs/profile_orders.py --conf conf/cluster.example.yaml --as-of 2026-06-30

Not named ``profile.py``: spark-submit puts this folder first on ``sys.path``, and a ``profile`` module here would
shadow the standard library's, which pyspark imports (through ``cProfile``) in every job of the folder.
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["profile", *sys.argv[1:]]))
