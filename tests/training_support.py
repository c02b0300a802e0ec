"""A few plain optimiser steps on a method's own training batches, for tests that a method learns."""
from __future__ import annotations

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.methods import Method


def train_briefly(model: Method, train: ImageDataset, steps: int, lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train ``model`` for ``steps`` Adam steps; the loss of each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr)
    batches = model.training_batches(train, steps, seed=seed)
    model.train()
    losses = []
    for step in range(steps):
        loss, _ = model.training_loss(batches(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
