"""spark-submit entry point for `segmentation evaluate`: the same code as the CLI verb.

spark-submit jobs/evaluate.py --conf conf/cluster.example.yaml --as-of 2026-06-30
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
