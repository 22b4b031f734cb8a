"""spark-submit entry point for `segmentation bench`: the same code as the CLI verb.

spark-submit jobs/bench.py --conf conf/local.yaml --as-of 2026-06-30 --sizes 1000000,20000000
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
