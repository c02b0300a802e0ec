"""Accuracy by instance number, the way Santoro et al. (2016, table 1) report MANNs.

In a sequence episode each class appears ``instances`` times. The accuracy at the k-th
instance is the fraction of correct predictions on the k-th appearance of a class: at
the 1st it can only be chance (1/N), from the 2nd on it measures one-shot learning.
Each episode gives one accuracy per instance number (over its N classes); the table
reports the mean over episodes with a 95% confidence interval ``1.96 std / sqrt(n)``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from fewshot.data.dataset import ImageDataset
from fewshot.data.views import check_views
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import mean_and_ci95
from fewshot.files import atomic_write_json, atomic_write_text
from fewshot.methods.mann import accuracy_by_instance

TABLE_INSTANCES = (1, 2, 3, 4, 5, 10)
EVAL_BATCH = 100
INSTANCES_FILE = "instances"  # RUN/instances.{json,md,png}, written by `fewshot evaluate` for mann runs


@dataclass
class InstanceAccuracy:
    """Accuracy at each instance number 1 .. ``instances`` over ``n_episodes`` test episodes.

    ``mean[k-1]`` and ``ci95[k-1]`` are the accuracy at the k-th instance and its 95%
    confidence half-width; ``overall`` is the accuracy over all steps; ``views`` is the number of
    whole-episode views averaged (1: none; see :meth:`~fewshot.methods.mann.MANN.predict`).
    """

    model: str
    n_classes: int
    instances: int
    n_episodes: int
    seed: int
    mean: list[float]
    ci95: list[float]
    overall: float
    seconds: float
    episodes_per_second: float
    views: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at(self, k: int) -> tuple[float, float]:
        """``(mean, ci95)`` at the k-th instance."""
        return self.mean[k - 1], self.ci95[k - 1]

    def __str__(self) -> str:
        cells = ", ".join(f"{ordinal(k)} {100 * self.mean[k - 1]:.1f}%" for k in TABLE_INSTANCES
                          if k <= self.instances)
        return f"{self.model} ({self.n_classes} classes, {self.n_episodes} episodes): {cells}"


@torch.inference_mode()
def evaluate_instances(
    method: Any,
    dataset: ImageDataset,
    n_episodes: int = 1000,
    seed: int = 0,
    batch_size: int = EVAL_BATCH,
    name: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    views: int = 1,
) -> InstanceAccuracy:
    """Accuracy by instance number of a :class:`~fewshot.methods.mann.MANN` on test episodes.

    Episodes have the model's ``n_classes`` and ``instances``, no augmentation, and depend only
    on ``(seed, batch_size)``: models evaluated with the same seed see the same episodes.
    ``views = 4`` or ``8`` averages the model's class probabilities over whole-episode
    rotations (and mirror images) of each episode: test-time augmentation, ours, not the paper's.

    Example:
        >>> result = evaluate_instances(model, splits["test"], n_episodes=1000)
        >>> result.at(2)  # (mean, ci95) at the 2nd instance
        >>> evaluate_instances(model, splits["test"], n_episodes=1000, views=4).at(10)
    """
    device = torch.device(device) if device is not None else next(method.parameters()).device
    episodes = method.sequence_episodes(dataset, seed, batch_size)
    was_training = method.training
    method.eval()
    start = time.perf_counter()
    per_episode = []
    bar = tqdm(total=n_episodes, desc="instance accuracy", unit="episode", disable=not progress, leave=False,
               dynamic_ncols=True)
    for i in range((n_episodes + batch_size - 1) // batch_size):
        batch = episodes.batch(i).to(device)
        keep = min(batch_size, n_episodes - i * batch_size)
        logits = method.predict(batch, views)
        per_episode.append(accuracy_by_instance(logits[:keep].float(), batch.labels[:keep], method.instances).cpu())
        bar.update(keep)
    bar.close()
    method.train(was_training)
    seconds = time.perf_counter() - start
    accuracies = torch.cat(per_episode)
    stats = [mean_and_ci95(accuracies[:, k]) for k in range(method.instances)]
    return InstanceAccuracy(
        model=name or describe(method, views), n_classes=method.n_classes, instances=method.instances,
        n_episodes=n_episodes, seed=seed, mean=[s[0] for s in stats], ci95=[s[1] for s in stats],
        overall=accuracies.mean().item(), seconds=seconds, episodes_per_second=n_episodes / max(seconds, 1e-9),
        views=views,
    )


def describe(method: Any, views: int = 1) -> str:
    """A short model name such as ``MANN (LRUA, LSTM)``, ``MANN (LRUA, LSTM, add vectors)`` or ``LSTM``.

    With ``views > 1`` the name ends with the number of views, e.g. ``LSTM, 4 views``.
    """
    controller = {"lstm": "LSTM", "feedforward": "feed-forward"}[method.controller_kind]
    viewed = f", {views} views" if views > 1 else ""
    if method.memory_kind == "none":
        return controller + viewed
    extras = (", add vectors" if method.write == "add" else "") + (", key strength" if method.key_strength else "")
    return f"MANN ({method.memory_kind.upper()}, {controller}{extras}){viewed}"


def markdown_table(results: list[InstanceAccuracy], columns: tuple[int, ...] = TABLE_INSTANCES) -> str:
    """A Markdown table: one row per model, one column per instance number, ``mean ± ci95`` in percent."""
    shown = [k for k in columns if any(k <= r.instances for r in results)]
    lines = ["| model | classes | " + " | ".join(ordinal(k) for k in shown) + " |",
             "|---|---:|" + "---:|" * len(shown)]
    for r in results:
        cells = [f"{100 * r.mean[k - 1]:.1f} ± {100 * r.ci95[k - 1]:.1f}" if k <= r.instances else ""
                 for k in shown]
        lines.append(f"| {r.model} | {r.n_classes} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_results(results: list[InstanceAccuracy], json_path: str | Path, markdown_path: str | Path) -> None:
    """Write the results as JSON (every instance number) and as a Markdown table, atomically."""
    atomic_write_json(json_path, [r.to_dict() for r in results])
    atomic_write_text(markdown_path, markdown_table(results))


def load_results(source: str | Path) -> list[InstanceAccuracy]:
    """The results saved by :func:`save_results`: a JSON file, or a run directory holding ``instances.json``."""
    path = Path(source)
    if path.is_dir():
        path = path / f"{INSTANCES_FILE}.json"
    if not path.is_file():
        raise FewShotError(f"no instance-accuracy results at {path}; run `fewshot evaluate RUN` on a mann run first, "
                           f"or give the instances.json file that a benchmark wrote")
    try:
        return [InstanceAccuracy(**row) for row in json.loads(path.read_text())]
    except (ValueError, TypeError) as e:
        raise FewShotError(f"{path} is not an instance-accuracy file written by fewshot ({e}); "
                           f"write it again with `fewshot evaluate RUN`") from None


def ordinal(k: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` ..."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def evaluate_instance_views(method: Any, dataset: ImageDataset, n_episodes: int = 1000, seed: int = 0,
                            device: torch.device | str | None = None, progress: bool = True,
                            views: int = 1) -> list[InstanceAccuracy]:
    """What ``fewshot evaluate`` reports for a method that
    :attr:`~fewshot.methods.base.Method.evaluates_by_instance`: the results with one view, and with
    ``views > 1`` also with ``views`` views, on the same episodes."""
    check_views(views)
    return [evaluate_instances(method, dataset, n_episodes=n_episodes, seed=seed, device=device, progress=progress,
                               views=v) for v in sorted({1, views})]
