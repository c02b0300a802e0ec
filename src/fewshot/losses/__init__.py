"""Losses shared by several methods."""
from fewshot.losses.contrastive import ContrastiveLoss, contrastive_loss

__all__ = ["ContrastiveLoss", "contrastive_loss"]
