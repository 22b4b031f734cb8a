"""spark-submit entry point for `segmentation build`: the same code as the CLI verb.

spark-submit jobs/build.py --conf conf/cluster.example.yaml --as-of 2026-06-30
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
