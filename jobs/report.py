"""spark-submit entry point for `segmentation report`: the same code as the CLI verb.

spark-submit jobs/report.py --conf conf/cluster.example.yaml --as-of 2026-06-30
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
