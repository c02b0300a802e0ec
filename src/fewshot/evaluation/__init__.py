"""Evaluation: accuracy with confidence intervals over fixed, seeded episode lists."""
from fewshot.evaluation.evaluator import EvaluationResult, evaluate

__all__ = ["EvaluationResult", "evaluate"]
