"""spark-submit entry point for `segmentation profile`: the same code as the CLI verb.

spark-submit jobs/profile.py --conf conf/cluster.example.yaml --as-of 2026-06-30
"""

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main(["profile", *sys.argv[1:]]))
