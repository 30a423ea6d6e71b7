"""Evaluation metrics: captions (pycocoevalcap, CLIPScore) and safety fields (compat, strict).

Library entry points (the CLI and the demo call these):

- :func:`roadscene.metrics.captions.evaluate_captions`
- :func:`roadscene.metrics.safety.evaluate_safety`
- :func:`roadscene.report.write_report_dir`

Both evaluations return an :class:`EvaluationResult` (report dict + per-sample details).
Heavy imports (pycocoevalcap, torch) happen inside the functions that need them.
"""

from roadscene.metrics.records import PredictionRecord
from roadscene.metrics.results import EvaluationResult

__all__ = ["EvaluationResult", "PredictionRecord"]
