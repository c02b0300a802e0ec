"""Evaluation: accuracy with confidence intervals over fixed, seeded episode lists."""
from fewshot.evaluation.evaluator import EvaluationResult, Evaluator, evaluate

__all__ = ["EvaluationResult", "Evaluator", "evaluate"]
