"""Prediction shared by all model families: settings, the loaded predictor, grammar-constrained
decoding, few-shot demonstrations, batched resumable files and single-image descriptions.
Layer 6: imports `train` (saved run files), `models`, `data`, `targets` and `schema` below it."""

from roadscene.predict.predictor import ModelCard, Predictor
from roadscene.predict.runner import PredictSummary, predict_file
from roadscene.predict.settings import Decoding, PredictSettings

__all__ = [
    "Decoding",
    "ModelCard",
    "PredictSettings",
    "PredictSummary",
    "Predictor",
    "predict_file",
]
