"""Batched, resumable prediction shared by all model families."""

from roadscene.predict.runner import Predictor, PredictSummary, predict_file

__all__ = ["PredictSummary", "Predictor", "predict_file"]
