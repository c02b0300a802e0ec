"""Losses shared by several methods; importing this package registers the metric-learning losses in LOSSES."""
from fewshot.losses.base import MetricLoss
from fewshot.losses.contrastive import ContrastiveLoss, contrastive_loss
from fewshot.losses.contrastive_pairs import TripletPairsContrastiveLoss
from fewshot.losses.histogram import HistogramLoss
from fewshot.losses.quadruplet import QuadrupletLoss
from fewshot.losses.registry import LOSSES, build_loss
from fewshot.losses.softmax_ratio import SoftmaxRatioLoss
from fewshot.losses.symmetric_margin import SymmetricMarginLoss
from fewshot.losses.triplet_margin import TripletMarginLoss

__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "HistogramLoss",
    "MetricLoss",
    "QuadrupletLoss",
    "SoftmaxRatioLoss",
    "SymmetricMarginLoss",
    "TripletMarginLoss",
    "TripletPairsContrastiveLoss",
    "build_loss",
    "contrastive_loss",
]
