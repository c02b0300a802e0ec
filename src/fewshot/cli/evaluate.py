"""``fewshot evaluate RUN``: accuracy with 95% CIs on episodes of classes the model never saw."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.data.views import VIEW_COUNTS
from fewshot.distributed import Group, start_group
from fewshot.errors import FewShotError
from fewshot.evaluation.ensemble import Ensemble
from fewshot.evaluation.evaluator import EvaluationResult
from fewshot.evaluation.heads import HEADS, with_head
from fewshot.evaluation.instances import INSTANCES_FILE, evaluate_instance_views, markdown_table
from fewshot.evaluation.instances import save_results as save_instance_results
from fewshot.evaluation.sharded import ShardedEvaluator
from fewshot.files import atomic_write_json
from fewshot.methods.base import Method
from fewshot.plots.instances import plot_instance_accuracy
from fewshot.runs import EVALUATION_FILE, load_data, load_run
from fewshot.training.config import RunConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a trained run on N-way K-shot test episodes",
        description="Mean accuracy and 95% confidence interval (1.96 std / sqrt(n)) over a fixed, seeded list "
                    "of episodes from the test classes; the same seed gives the same episodes for every model. "
                    "Results are printed and saved to RUN/evaluation.json.",
    )
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `fewshot train`")
    parser.add_argument("--ways", type=int, nargs="+", default=[5, 20], help="N: classes per episode (default: 5 20)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5], help="K: support examples per class "
                        "(default: 1 5)")
    parser.add_argument("--queries", type=int, default=15, help="Q: queries per class (default: 15)")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per setting (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode list (default: 0)")
    parser.add_argument("--partition", default="test", help="partition to evaluate on (default: test)")
    parser.add_argument("--dataset", help="evaluate on another dataset than the run's (transfer)")
    parser.add_argument("--split", help="split of that dataset")
    parser.add_argument("--data-dir", help="data directory (default: the run's, else $FEWSHOT_DATA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast while embedding (faster on CPUs "
                        "with AVX-512 BF16 and on GPUs)")
    parser.add_argument("--within-alphabet", action="store_true",
                        help="draw all classes of an episode from one alphabet (Lake et al.'s one-shot test; "
                             "results are saved as 'N-way K-shot within-alphabet')")
    parser.add_argument("--head", choices=HEADS, help="classify with this rule on the run's trained embedding "
                        "instead of the method's own (mahalanobis: Simple CNAPS's shrunk class covariances)")
    parser.add_argument("--head-ridge", type=float, default=1.0, help="mahalanobis head: b, the multiple of the "
                        "identity added to every covariance (default: 1.0, the paper's)")
    parser.add_argument("--transductive-batch-norm", dest="transductive", action="store_true",
                        help="batch norm on each episode's own statistics, as Sung et al. (Relation Networks) and "
                             "Finn et al. (MAML) tested; slower (one episode at a time), saved as '... transductive'")
    parser.add_argument("--views", type=int, default=1, choices=VIEW_COUNTS,
                        help="average the class probabilities over 4 whole-episode rotations, support and queries "
                             "turned alike (or 8: and their mirror images), on the same episodes; saved as "
                             "'... 8 views' (mann runs: also reported beside 1 view) (default: 1, none)")
    parser.add_argument("--refine", type=int, default=0, metavar="N",
                        help="refine the prototypes by N soft k-means steps on each episode's unlabelled queries "
                             "(Ren et al. 2018; prototype methods: protonet, metric, triplet, transfer with "
                             "nearest_mean); transductive, saved as '... refined N steps' (default: 0, none)")
    parser.add_argument("--test-inner-steps", type=int, metavar="N",
                        help="methods with an inner loop (maml, meta_lstm): take N gradient steps (updates) on each "
                             "support set instead of the run's test_inner_steps; saved under '... N test steps'")
    parser.add_argument("--ensemble", nargs="+", metavar="RUN", default=[],
                        help="average the class probabilities of RUN and these runs (trained on the same dataset at "
                             "the same image size); saved as '... ensemble of N'")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never download missing data; fail with the list of files to fetch instead")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Under torchrun the episodes are shared out over the processes; rank 0 prints and saves the results."""
    group = start_group()
    try:
        with group.failures(), contextlib.nullcontext() if group.is_main else contextlib.redirect_stdout(io.StringIO()):
            return evaluate_run(args, group)
    finally:
        group.close()


def evaluate_run(args: argparse.Namespace, group: Group) -> int:
    for name in ("ways", "shots"):
        if any(v < 1 for v in getattr(args, name)):
            raise FewShotError(f"--{name} must be positive integers, got {getattr(args, name)}")
    if args.queries < 1 or args.episodes < 1:
        raise FewShotError("--queries and --episodes must be at least 1")
    device = group.use_device(args.device)
    method, config = load_run(args.run_dir, device)
    if args.test_inner_steps is not None:
        set_test_inner_steps(method, args.test_inner_steps, args.run_dir)
    if args.dataset:
        config.dataset, config.split = args.dataset, args.split
    elif args.split:
        config.split = args.split
    if args.data_dir:
        config.data_dir = args.data_dir
    dataset = load_data(config, (args.partition,), progress=args.progress, download=args.download).get(args.partition)
    if dataset is None:
        raise FewShotError(f"split {config.split!r} of {config.dataset} has no {args.partition!r} partition")
    if method.evaluates_by_instance:  # sequence episodes, accuracy by instance number (Santoro et al. 2016)
        if args.within_alphabet or args.head or args.transductive or args.refine:
            raise FewShotError("mann runs are tested on sequence episodes by instance; --within-alphabet, --head, "
                               "--transductive-batch-norm and --refine apply to the other methods: leave them out")
        if group.distributed:
            raise FewShotError("mann runs are tested by instance in one process: run fewshot evaluate without torchrun")
        return report_instances(args, method, dataset, device)
    for n_way in args.ways:
        for k_shot in args.shots:
            EpisodeSampler(dataset, n_way, k_shot, args.queries, 1, within_alphabet=args.within_alphabet)  # checks
    if args.head:
        method = with_head(method, args.head, args.head_ridge)
    if args.ensemble:
        method = Ensemble([method, *ensemble_members(args, config, device)], dataset.image_shape)
    results: list[EvaluationResult] = []
    rule = f" with the {args.head} head" if args.head else ""
    print(f"{config.method}{rule} on {dataset} ({args.episodes} episodes per setting, {args.queries} queries per class)")
    width = 16 + 16 * args.within_alphabet + 13 * args.transductive + 8 * (args.views > 1) + 17 * bool(args.refine)
    print(f"{'setting':<{width}}{'accuracy':>10}{'95% CI':>10}{'episodes/s':>12}")
    evaluator = ShardedEvaluator(method, dataset, group, device, progress=args.progress, bf16=args.bf16,
                                 transductive=args.transductive, views=args.views, refine=args.refine)
    for n_way in args.ways:
        for k_shot in args.shots:
            result = evaluator.evaluate(n_way, k_shot, args.queries, args.episodes, args.seed, args.within_alphabet)
            results.append(result)
            print(f"{result.setting:<{width}}{100 * result.mean:>9.2f}%{100 * result.ci95:>9.2f}"
                  f"{result.episodes_per_second:>12.0f}", flush=True)
    key = f"{config.dataset}/{config.split}/{args.partition}"
    if args.head:
        key += f" {args.head} head" + (f" ridge {args.head_ridge:g}" if args.head_ridge != 1.0 else "")
    if args.test_inner_steps is not None:
        key += f" {args.test_inner_steps} test steps"
    if args.ensemble:
        key += f" ensemble of {1 + len(args.ensemble)}"
    if group.is_main:
        save_results(Path(args.run_dir) / EVALUATION_FILE, key, results)
    return 0


def report_instances(args: argparse.Namespace, method: Method, dataset: ImageDataset, device: torch.device) -> int:
    """Print the accuracy by instance number and write it to ``RUN/instances.{json,md,png}``.

    With ``--views`` 4 or 8 the table has two rows on the same episodes: one view, and that many.
    """
    results = evaluate_instance_views(method, dataset, args.episodes, args.seed, device, args.progress, args.views)
    print(f"{results[0].model} on {dataset} ({args.episodes} episodes of {method.n_classes} classes x "
          f"{method.instances} instances, seed {args.seed}); accuracy (%) by instance, 95% CI:")
    print(markdown_table(results), end="")
    base = Path(args.run_dir) / INSTANCES_FILE
    save_instance_results(results, base.with_suffix(".json"), base.with_suffix(".md"))
    plot_instance_accuracy(results, base.with_suffix(".png"))
    print(f"wrote {base}.json, {base}.md, {base}.png")
    return 0


def ensemble_members(args: argparse.Namespace, config: RunConfig, device: torch.device) -> list[Method]:
    """The runs of ``--ensemble``, each checked to take the images ``config``'s run takes."""
    members = []
    for run_dir in args.ensemble:
        member, member_config = load_run(run_dir, device)
        shape, expected = (member_config.channels, member_config.image_size), (config.channels, config.image_size)
        if shape != expected:
            raise FewShotError(f"{run_dir} takes {shape[0]}-channel {shape[1]}x{shape[1]} images and {args.run_dir} "
                               f"{expected[0]}-channel {expected[1]}x{expected[1]}: an ensemble's runs must take the "
                               f"same images")
        if args.test_inner_steps is not None:
            set_test_inner_steps(member, args.test_inner_steps, run_dir)
        if args.head:
            member = with_head(member, args.head, args.head_ridge)
        members.append(member)
    return members


def set_test_inner_steps(method: Method, steps: int, run_dir: str) -> None:
    """``--test-inner-steps``: the gradient steps an inner-loop method takes on each support set at test time."""
    if not hasattr(method, "set_test_inner_steps"):
        raise FewShotError(f"--test-inner-steps sets the gradient steps a method takes on each support set at test "
                           f"time (maml, meta_lstm); {run_dir} is a {method.name} run, which takes none: leave it out")
    method.set_test_inner_steps(steps)


def save_results(path: Path, key: str, results: list[EvaluationResult]) -> None:
    """Merge results into ``evaluation.json`` under ``key`` (atomically)."""
    existing = json.loads(path.read_text()) if path.exists() else {}
    section = existing.setdefault(key, {})
    for r in results:
        section[r.setting] = r.to_dict()
    atomic_write_json(path, existing)
