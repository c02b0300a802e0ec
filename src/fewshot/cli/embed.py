"""``fewshot embed RUN --out emb.npz``: embeddings of a run's images, for pictures and retrieval metrics."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.device import resolve_device
from fewshot.errors import FewShotError
from fewshot.evaluation.embeddings import EmbeddingSet, embed_partitions
from fewshot.evaluation.retrieval import retrieval_metrics
from fewshot.methods.base import Method
from fewshot.runs import load_data, load_run
from fewshot.training.config import RunConfig


def add_data_arguments(parser: argparse.ArgumentParser, several_partitions: bool = True) -> None:
    """The flags that say which images of which data a run is applied to."""
    if several_partitions:
        parser.add_argument("--partition", nargs="+", help="partitions to embed (default: the run's training "
                            "partition and test, so seen and unseen classes both appear)")
        parser.add_argument("--per-class", type=int, help="embed at most this many images of each class (default: all)")
    else:
        parser.add_argument("--partition", default="test", help="partition to draw from (default: test)")
    parser.add_argument("--dataset", help="another dataset than the run's (all its classes count as unseen)")
    parser.add_argument("--split", help="split of the dataset (default: the run's)")
    parser.add_argument("--data-dir", help="data directory (default: the run's, else $FEWSHOT_DATA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of any random choice (default: 0)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def run_with_data(args: argparse.Namespace, partitions: Sequence[str] | None
                  ) -> tuple[Method, RunConfig, dict[str, ImageDataset], list[str], torch.device]:
    """The run's method, its config, the requested partitions and the names of the classes it trained on."""
    device = resolve_device(args.device)
    method, config = load_run(args.run_dir, device)
    trained_on = dataclasses.replace(config)
    if args.dataset:
        config.dataset, config.split = args.dataset, args.split
    elif args.split:
        config.split = args.split
    if args.data_dir:
        config.data_dir = trained_on.data_dir = args.data_dir
    partitions = list(partitions or (trained_on.train_partition, "test"))
    same_data = (config.dataset, config.split) == (trained_on.dataset, trained_on.split)
    wanted = (*partitions, trained_on.train_partition) if same_data else tuple(partitions)
    splits = load_data(config, wanted, progress=args.progress)
    missing = [p for p in partitions if p not in splits]
    if missing:
        raise FewShotError(f"split {config.split!r} of {config.dataset} has no {', '.join(missing)} partition")
    seen: list[str] = []
    if same_data:
        seen = splits[trained_on.train_partition].class_names
    elif config.dataset == trained_on.dataset:
        seen = load_data(trained_on, (trained_on.train_partition,), progress=args.progress)[
            trained_on.train_partition].class_names
    return method, config, {p: splits[p] for p in partitions}, seen, device


def embed_run(args: argparse.Namespace) -> tuple[EmbeddingSet, Method]:
    """Embeddings of the partitions ``args`` names, with seen classes marked, and the run's method."""
    method, _, splits, seen, device = run_with_data(args, args.partition)
    return embed_partitions(method, splits, seen, device, args.per_class, args.seed), method


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="write the embeddings of a run's images to an .npz file",
        description="Embed the images of some partitions with a trained run and write embeddings, labels, class "
                    "names and which classes were seen in training to an .npz file (numpy.load reads it), for "
                    "`fewshot plot umap` and your own analysis.",
    )
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `fewshot train`")
    parser.add_argument("--out", required=True, help=".npz file to write")
    parser.add_argument("--metrics", action="store_true", help="also print retrieval metrics (precision@1, "
                        "R-precision, MAP@R, 5-NN accuracy, k-means NMI) of the seen and of the unseen classes")
    add_data_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    embeddings, method = embed_run(args)
    embeddings.save(args.out)
    n_seen = int(embeddings.seen.sum())
    print(f"wrote {args.out}: {len(embeddings)} embeddings ({embeddings.embeddings.shape[1]}-d) of "
          f"{len(embeddings.class_names)} classes, {n_seen} seen in training and "
          f"{len(embeddings.class_names) - n_seen} unseen")
    if args.metrics:
        distance = getattr(method, "distance", "euclidean")
        for group, chosen in (("seen", embeddings.seen), ("unseen", ~embeddings.seen)):
            keep = chosen[embeddings.labels]
            if keep.any():
                result = retrieval_metrics(torch.from_numpy(embeddings.embeddings[keep]),
                                           torch.from_numpy(embeddings.labels[keep]), distance, seed=args.seed)
                print(f"{group} classes: {result}")
    return 0
