"""easyfsl 1.5.0 PrototypicalNetworks as an external baseline for the benchmark.

Run this only with the isolated environment made by ``benchmarks/setup_easyfsl.sh``
(``.bench-venv/bin/python``); easyfsl and torchvision are *not* dependencies of
``fewshot`` and must never become ones.

Two compatibility workarounds are applied when this module is imported. Neither
edits site-packages; both are local to this process.

1. torchvision import (``RuntimeError: operator torchvision::nms does not exist``).
   The only torchvision release that pins torch 2.13.0 on PyPI (0.28.0) is a CUDA
   build: its ``_C.so`` links against ``libtorch_cuda.so``/``libc10_cuda.so``, which
   the CPU torch wheel does not ship, so the extension silently fails to load. Then
   ``torchvision/_meta_registrations.py`` calls
   ``torch.library.register_fake("torchvision::nms")`` (and ``qnms``) at import
   time, which fails because those operators were never declared. We first try a
   plain ``import torchvision``; only if it fails with that error do we declare the
   two operator *schemas* ourselves with a ``torch.library.Library("torchvision",
   "DEF")`` (schema ``(Tensor dets, Tensor scores, float iou_threshold) -> Tensor``)
   and import again. The ops get no kernels, so ``torchvision.ops.nms`` would still
   raise if called; easyfsl's ProtoNet path never calls it. The ``Library`` object is
   kept alive in ``_TORCHVISION_SCHEMAS`` because dropping it would unregister the
   schemas.

2. ``easyfsl.samplers.TaskSampler.__init__`` calls
   ``Sampler.__init__(data_source=None)``; torch 2.13's ``Sampler`` no longer defines
   ``__init__`` and ``object.__init__`` rejects the argument (``TypeError``).
   ``CompatTaskSampler`` subclasses TaskSampler together with a tiny
   ``Sampler`` subclass whose ``__init__`` accepts and ignores ``data_source``. In
   the resulting MRO (CompatTaskSampler -> TaskSampler -> _AcceptsDataSource ->
   Sampler) TaskSampler's ``super().__init__(data_source=None)`` lands in that
   ``__init__``; everything else (sampling, ``episodic_collate_fn``) is easyfsl's
   code, unchanged. torch itself is not patched.

The backbone is the same Conv-4 as ``fewshot.nets.conv4`` (4 x [conv3x3 pad 1 -> 64,
BatchNorm, ReLU, maxpool 2], flatten), written with plain torch so this file does
not import the project. Note that easyfsl's PrototypicalNetworks scores queries by
``-torch.cdist`` (plain Euclidean distance), not squared Euclidean as in the paper.

Example (inside .bench-venv)::

    import torch
    from easyfsl_baseline import train_easyfsl, evaluate_easyfsl
    model, stats = train_easyfsl(images, labels, minutes=5)   # images [n,1,28,28] in [0,1]
    result = evaluate_easyfsl(model, test_images, test_labels, n_way=5, k_shot=1)

Run ``python benchmarks/easyfsl_baseline.py`` for a smoke test on random data.
"""
from __future__ import annotations

import math
import random
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

_TORCHVISION_SCHEMAS: torch.library.Library | None = None


def _import_torchvision():
    """Import torchvision, declaring the missing nms/qnms schemas if (and only if) needed."""
    global _TORCHVISION_SCHEMAS
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error) and "torchvision::qnms" not in str(error):
            raise
        # Drop the half-imported package so the second import starts clean.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_SCHEMAS = library
        import torchvision
    return torchvision


torchvision = _import_torchvision()

from easyfsl.datasets import FewShotDataset  # noqa: E402  (needs torchvision imported first)
from easyfsl.methods import PrototypicalNetworks  # noqa: E402
from easyfsl.samplers import TaskSampler  # noqa: E402
from easyfsl.utils import evaluate_on_one_task  # noqa: E402

__all__ = ["CompatTaskSampler", "TensorFewShotDataset", "conv4", "train_easyfsl", "evaluate_easyfsl"]


class _AcceptsDataSource(Sampler):
    """Restores the old ``Sampler.__init__(data_source)`` signature for TaskSampler's super() call."""

    def __init__(self, data_source=None) -> None:
        super().__init__()


class CompatTaskSampler(TaskSampler, _AcceptsDataSource):
    """easyfsl's TaskSampler, constructible under torch 2.13 (see workaround 2 in the module docstring)."""


class TensorFewShotDataset(FewShotDataset):
    """A FewShotDataset over preloaded tensors: item i is ``(images[i], int(labels[i]))``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [n, channels, height, width], got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images.float().contiguous()
        self.labels = [int(label) for label in labels.tolist()]

    def __getitem__(self, item: int):
        return self.images[item], self.labels[item]

    def __len__(self) -> int:
        return len(self.labels)

    def get_labels(self) -> list[int]:
        return self.labels


def conv4(in_channels: int = 1, hidden: int = 64) -> nn.Sequential:
    """Conv-4: 4 x [conv3x3 (pad 1) -> BatchNorm -> ReLU -> maxpool 2], then flatten (64-d for 28x28)."""
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [
            nn.Conv2d(in_channels if i == 0 else hidden, hidden, kernel_size=3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
    return nn.Sequential(*layers, nn.Flatten())


def _episode_loader(dataset: TensorFewShotDataset, n_way: int, k_shot: int, n_query: int, n_tasks: int,
                    num_workers: int) -> DataLoader:
    sampler = CompatTaskSampler(dataset, n_way=n_way, n_shot=k_shot, n_query=n_query, n_tasks=n_tasks)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=sampler.episodic_collate_fn)


def _seed(seed: int) -> None:
    # TaskSampler draws classes and items with Python's global ``random``.
    random.seed(seed)
    torch.manual_seed(seed)


def train_easyfsl(
    images: torch.Tensor,
    labels: torch.Tensor,
    minutes: float,
    n_way: int = 60,
    k_shot: int = 5,
    n_query: int = 5,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    num_workers: int = 0,
) -> tuple[PrototypicalNetworks, dict]:
    """Episodically train easyfsl's PrototypicalNetworks (Conv-4) for ``minutes`` of wall-clock time.

    easyfsl's own episodic loop: per episode ``model.process_support_set(support, labels)``,
    ``scores = model(query)``, cross-entropy on the query labels, Adam step; the learning
    rate is halved every 2,000 episodes. Episodes come from easyfsl's TaskSampler through a
    torch DataLoader (``episodic_collate_fn``). Seeds Python's ``random`` and torch globally.

    Returns the trained model (in eval mode) and
    ``{"episodes", "seconds", "episodes_per_s"}``; ``seconds`` covers the whole loop,
    episode sampling and collation included.
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    _seed(seed)
    dataset = TensorFewShotDataset(images, labels)
    model = PrototypicalNetworks(conv4(in_channels=dataset.images.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2000, gamma=0.5)
    loss_function = nn.CrossEntropyLoss()
    # The budget, not n_tasks, ends training: the sampler is lazy, so a huge n_tasks costs nothing.
    loader = _episode_loader(dataset, n_way, k_shot, n_query, n_tasks=2**62, num_workers=num_workers)

    budget = minutes * 60.0
    episodes = 0
    model.train()
    start = time.perf_counter()
    for support_images, support_labels, query_images, query_labels, _ in loader:
        optimizer.zero_grad()
        model.process_support_set(support_images, support_labels)
        scores = model(query_images)
        loss = loss_function(scores, query_labels)
        loss.backward()
        optimizer.step()
        scheduler.step()
        episodes += 1
        if time.perf_counter() - start >= budget:
            break
    seconds = time.perf_counter() - start
    model.eval()
    return model, {"episodes": episodes, "seconds": seconds, "episodes_per_s": episodes / seconds}


def evaluate_easyfsl(
    model: PrototypicalNetworks,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_way: int,
    k_shot: int,
    n_query: int = 15,
    n_episodes: int = 1000,
    seed: int = 0,
    *,
    num_workers: int = 0,
) -> dict:
    """Mean per-episode accuracy over ``n_episodes`` TaskSampler episodes, easyfsl's evaluate style.

    Each episode runs easyfsl's ``evaluate_on_one_task`` (``process_support_set`` then a
    forward on the queries) under ``model.eval()`` and ``torch.no_grad()``. Returns
    ``{"accuracy", "ci95", "episodes_per_s"}`` with ``ci95 = 1.96 * std / sqrt(n)``
    (sample std of the per-episode accuracies, as in ``fewshot.evaluation``).
    """
    _seed(seed)
    loader = _episode_loader(TensorFewShotDataset(images, labels), n_way, k_shot, n_query, n_episodes,
                             num_workers)
    accuracies = []
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for support_images, support_labels, query_images, query_labels, _ in loader:
            correct, total = evaluate_on_one_task(model, support_images, support_labels, query_images,
                                                  query_labels)
            accuracies.append(correct / total)
    seconds = time.perf_counter() - start
    values = torch.tensor(accuracies, dtype=torch.float64)
    n = len(accuracies)
    std = values.std(unbiased=True).item() if n > 1 else 0.0
    return {
        "accuracy": values.mean().item(),
        "ci95": 1.96 * std / math.sqrt(n),
        "episodes_per_s": n / seconds,
    }


def _smoke_test() -> None:
    """Random data (100 classes x 20 images, 28x28): train 0.2 min, evaluate 20 5-way 1-shot episodes."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(100 * 20, 1, 28, 28, generator=generator)
    labels = torch.arange(100).repeat_interleave(20)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"nms/qnms schemas declared here: {_TORCHVISION_SCHEMAS is not None}, threads {torch.get_num_threads()}")
    model, stats = train_easyfsl(images, labels, minutes=0.2)
    print("train (random data, 60-way 5-shot 5-query):", stats)
    result = evaluate_easyfsl(model, images, labels, n_way=5, k_shot=1, n_episodes=20)
    print("evaluate (random data, 5-way 1-shot 15-query, 20 episodes):", result)


if __name__ == "__main__":
    _smoke_test()
