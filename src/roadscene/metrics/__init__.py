"""Evaluation metrics: captions (pycocoevalcap, CLIPScore) and safety fields (compat, strict).

Library entry points (the CLI and the demo call these):

- :func:`evaluate_captions` (roadscene.metrics.captions)
- :func:`evaluate_safety` (roadscene.metrics.safety)
- :func:`roadscene.report.write_report_dir`

Both evaluations return an :class:`EvaluationResult` (report dict + per-sample details).
Heavy imports (pycocoevalcap, torch, transformers) happen inside the functions that need them.
"""

from roadscene.metrics.captions import evaluate_captions
from roadscene.metrics.records import PredictionRecord
from roadscene.metrics.results import EvaluationResult
from roadscene.metrics.safety import evaluate_safety

__all__ = ["EvaluationResult", "PredictionRecord", "evaluate_captions", "evaluate_safety"]
