"""``fewshot plot KIND``: pictures of runs as PNG files.

Each kind is a function ``add_KIND(plots)`` that adds its parser to the ``plots``
sub-parsers and sets ``run``; :data:`KINDS` lists them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fewshot.cli.embed import add_data_arguments, embed_run, run_with_data
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError
from fewshot.evaluation.embeddings import EmbeddingSet
from fewshot.evaluation.instances import load_results, markdown_table
from fewshot.plots.curves import plot_curves
from fewshot.plots.episode import plot_episode, predict_episode
from fewshot.plots.instances import plot_instance_accuracy
from fewshot.plots.memory import plot_episode_memory
from fewshot.plots.umap import plot_umap


def add_curves(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser("curves", help="loss and accuracy over training, from the metrics log")
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.set_defaults(run=lambda args: _done(plot_curves(args.run_dir, args.out), args.out))


def _done(_: None, out: str) -> int:
    print(f"wrote {out}")
    return 0


def add_umap(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser(
        "umap", help="2-D UMAP scatter of embeddings, one colour per class, seen and unseen classes marked",
        description="Project embeddings to 2-D with UMAP (seed 003's settings by default) and draw one colour per "
                    "class: circles for classes seen in training, triangles for unseen ones. RUN_OR_NPZ is a run "
                    "directory (its images are embedded first) or an .npz file from `fewshot embed`.")
    parser.add_argument("source", metavar="RUN_OR_NPZ")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors (default: 15)")
    parser.add_argument("--min-dist", type=float, default=0.3, help="UMAP min_dist (default: 0.3)")
    parser.add_argument("--metric", default="correlation", help="UMAP metric (default: correlation)")
    parser.add_argument("--max-classes", type=int, default=20, help="draw at most this many classes, half seen and "
                        "half unseen when there are more (default: 20)")
    parser.add_argument("--width", type=int, default=1000, help="picture width in pixels (default: 1000)")
    parser.add_argument("--height", type=int, default=800, help="picture height in pixels (default: 800)")
    add_data_arguments(parser)
    parser.set_defaults(run=_umap)


def _umap(args: argparse.Namespace) -> int:
    args.run_dir = args.source
    data = embed_run(args)[0] if Path(args.source).is_dir() else EmbeddingSet.load(args.source)
    plot_umap(data, args.out, args.width, args.height, args.neighbors, args.min_dist, args.metric,
              args.max_classes, args.seed)
    return _done(None, args.out)


def add_episode(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser(
        "episode", help="one test episode as an image grid: support, queries, predictions, mistakes",
        description="Draw episode number --episode of the seeded list `fewshot evaluate` uses: a row per class "
                    "with its support images, then its queries titled with the predicted class; mistakes in red.")
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--ways", type=int, default=5, help="N: classes in the episode (default: 5)")
    parser.add_argument("--shots", type=int, default=1, help="K: support images per class (default: 1)")
    parser.add_argument("--queries", type=int, default=5, help="queries per class (default: 5)")
    parser.add_argument("--episode", type=int, default=0, help="which episode of the list (default: 0)")
    add_data_arguments(parser, several_partitions=False)
    parser.set_defaults(run=_episode)


def _episode(args: argparse.Namespace) -> int:
    if args.episode < 0:
        raise FewShotError(f"--episode must be >= 0, got {args.episode}")
    method, config, splits, _, device = run_with_data(args, [args.partition])
    dataset = splits[args.partition]
    sampler = EpisodeSampler(dataset, args.ways, args.shots, args.queries, args.episode + 1, args.seed)
    episode = sampler.episode(args.episode)
    accuracy = plot_episode(episode, predict_episode(method, episode, device), dataset.class_names, args.out,
                            title=f"{config.method} on {dataset.name}, episode {args.episode}")
    print(f"episode {args.episode}: {100 * accuracy:.0f}% right")
    return _done(None, args.out)


def add_memory(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser(
        "memory", help="a mann's read and write weights by slot over one test episode, classes marked",
        description="Run a trained mann on episode --episode of the seeded list `fewshot evaluate` uses and draw "
                    "its read and write weights (summed over heads) by memory slot and time step, with the class "
                    "of every step marked above and its wrong predictions crossed.")
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--episode", type=int, default=0, help="which episode of the list (default: 0)")
    add_data_arguments(parser, several_partitions=False)
    parser.set_defaults(run=_memory)


def _memory(args: argparse.Namespace) -> int:
    method, _, splits, _, device = run_with_data(args, [args.partition])
    accuracy = plot_episode_memory(method, splits[args.partition], args.out, args.episode, args.seed, device)
    print(f"episode {args.episode}: {100 * accuracy:.0f}% right")
    return _done(None, args.out)


def add_instances(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser(
        "instances", help="accuracy by instance number of several mann runs, one line per model",
        description="Draw the accuracy at the 1st, 2nd, ... appearance of a class, with 95% confidence bands, of "
                    "every model in SOURCE (a mann run directory after `fewshot evaluate`, or an instances.json "
                    "file), in one picture, and print their table.")
    parser.add_argument("sources", metavar="SOURCE", nargs="+")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.set_defaults(run=_instances)


def _instances(args: argparse.Namespace) -> int:
    results = [r for source in args.sources for r in load_results(source)]
    print(markdown_table(results), end="")
    plot_instance_accuracy(results, args.out)
    return _done(None, args.out)


KINDS = (add_curves, add_umap, add_episode, add_memory, add_instances)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="draw a picture of a run (PNG)",
                                    description="Draw a picture of a run or of embeddings as a PNG file.")
    plots = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for add in KINDS:
        add(plots)
