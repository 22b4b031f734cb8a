"""One module per job, each a short list of named steps over the run protocol (``runs.JobRun``).

``common`` holds what jobs share (reading inputs held to their contracts, validating orders, previous snapshots).
"""

from segmentation.pipelines.build import BuildResult, build_frames, check_rules, run_build
from segmentation.pipelines.evaluate import EvaluateResult, run_evaluate
from segmentation.pipelines.generate import GenerateResult, run_generate
from segmentation.pipelines.report import ReportResult, run_report
from segmentation.pipelines.score import ScoreResult, run_score
from segmentation.pipelines.train import TrainResult, run_train

__all__ = [
    "BuildResult",
    "EvaluateResult",
    "GenerateResult",
    "ReportResult",
    "ScoreResult",
    "TrainResult",
    "build_frames",
    "check_rules",
    "run_build",
    "run_evaluate",
    "run_generate",
    "run_report",
    "run_score",
    "run_train",
]
