"""The transfer baseline on Omniglot (Chen et al. 2019), and refinement of ProtoNet's prototypes (Ren et al. 2018).

1. Trains ``configs/transfer_omniglot.yaml`` (Baseline++: cosine head, class-wise weight norm, scale 10;
   ``--head linear`` for Baseline) for ``--minutes`` of wall clock on the background classes of the split
   (``--split lake``: 813 characters x 4 rotations; ``vinyals``: the split's 4,112 classes), keeping the
   best model on the validation classes (``--lr-schedule cosine --steps N``: the rate annealed to 0 at N).
2. Evaluates it on the test classes, 1,000 episodes (15 queries per class, seed 0) at 5-way and 20-way,
   1-shot and 5-shot, with the nearest class mean and with a head fitted to each episode's support, on
   the same episodes.
3. Times fitting a head: ms per episode, all the episodes of a batch at once (as the evaluator does) and
   one episode at a time.
4. Compares ``--refine`` soft k-means steps on the queries with none, on the same episodes, for the
   ProtoNet run ``--protonet-run`` (default: the packaged model) and for the transfer model's nearest
   class mean: the paired gain with its 95% interval.

Prints one JSON line.

    FEWSHOT_DATA=data python benchmarks/transfer_omniglot.py --minutes 30
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fewshot.data.episodes import EpisodeSampler
from fewshot.evaluation.evaluator import Evaluator, mean_and_ci95
from fewshot.methods.base import Method
from fewshot.methods.transfer import TransferBaseline, default_scale, fit_cosine_head, fit_linear_head
from fewshot.pretrained import model_dir
from fewshot.runs import CONFIG_FILE, build_method, config_yaml, load_data, load_run, training_set
from fewshot.training.config import resolve_config
from fewshot.training.trainer import Trainer

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
TARGETS = {"5w1s": 95.4, "5w5s": 99.4}  # Chen et al. 2019, Baseline++ on Omniglot


def train(args: argparse.Namespace, run_dir: Path) -> dict:
    config = resolve_config("transfer", overrides={
        "dataset": "omniglot", "split": args.split, "data_dir": args.data_dir, "seed": args.seed,
        "steps": args.steps, "time_limit": args.minutes, "device": "cpu", "bf16": args.bf16,
        "lr_schedule": args.lr_schedule,
    }, option_overrides={"head": args.head})
    data = load_data(config, (config.train_partition, "val"), progress=False)
    train_set = training_set(config, data)
    method = build_method(config, train_set.image_shape)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config_yaml(config))
    summary = Trainer(method, config, train_set, data.get("val"), run_dir, progress=False).fit()
    return {"steps": summary["step"], "train_minutes": round(summary["elapsed_s"] / 60, 2),
            "best_val_accuracy": summary.get("best_val_accuracy"), "train_classes": train_set.num_classes}


def figures(accuracies: torch.Tensor) -> dict:
    mean, ci95, _ = mean_and_ci95(accuracies)
    return {"acc": round(100 * mean, 2), "ci95": round(100 * ci95, 2)}


def episode_accuracies(evaluator: Evaluator, n_way: int, k_shot: int, episodes: int, seed: int) -> torch.Tensor:
    """The accuracy of each of the seeded episodes, in order (the same episodes for every evaluator)."""
    sampler = EpisodeSampler(evaluator.dataset, n_way, k_shot, 15, episodes, seed)
    with torch.inference_mode():
        return evaluator.episode_accuracies(sampler, tqdm(disable=True))


def head_fitting_ms(model: TransferBaseline, evaluator: Evaluator, n_way: int, k_shot: int, episodes: int,
                    seed: int) -> dict:
    """Milliseconds per episode of fitting the model's head to the support: all episodes at once, and one by one."""
    embeddings, _ = evaluator.embeddings()
    sampler = EpisodeSampler(evaluator.dataset, n_way, k_shot, 15, episodes, seed)
    support = torch.stack([embeddings[sampler.indices(i)[0][:, :k_shot].flatten()] for i in range(episodes)])
    labels = torch.arange(n_way).repeat_interleave(k_shot)
    scale = model.scale or default_scale(n_way)

    def fit(s: torch.Tensor) -> None:
        if model.head == "linear":
            fit_linear_head(s, labels, n_way, model.head_steps, model.head_lr)
        else:
            fit_cosine_head(s, labels, n_way, model.head_steps, model.head_lr, scale)

    with torch.inference_mode():
        start = time.perf_counter()
        fit(support)
        batched = time.perf_counter() - start
        alone_episodes = min(episodes, 50)
        start = time.perf_counter()
        for s in support[:alone_episodes]:
            fit(s)
        alone = time.perf_counter() - start
    return {"batched_ms": round(1000 * batched / episodes, 3),
            "one_at_a_time_ms": round(1000 * alone / alone_episodes, 3)}


def refinement(method: Method, test_set, steps: int, episodes: int, seed: int) -> dict:
    """Accuracy without and with ``steps`` refinement steps on the same episodes, and the paired gain."""
    plain, refined = Evaluator(method, test_set, progress=False), Evaluator(method, test_set, progress=False,
                                                                            refine=steps)
    out = {}
    for n_way, k_shot in SETTINGS:
        a = episode_accuracies(plain, n_way, k_shot, episodes, seed)
        b = episode_accuracies(refined, n_way, k_shot, episodes, seed)
        gain = figures(b - a)
        out[f"{n_way}w{k_shot}s"] = {"plain": figures(a), "refined": figures(b), "gain": gain["acc"],
                                     "gain_ci95": gain["ci95"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget")
    parser.add_argument("--split", choices=("vinyals", "lake"), default="vinyals")
    parser.add_argument("--head", choices=("cosine", "linear"), default="cosine",
                        help="cosine: Baseline++ (default); linear: Baseline")
    parser.add_argument("--lr-schedule", choices=("step", "cosine"), default="step",
                        help="step: the config's halvings; cosine: from the config's rate down to 0 at --steps")
    parser.add_argument("--steps", type=int, default=1_000_000,
                        help="training batches at most (with --lr-schedule cosine: about what --minutes allows)")
    parser.add_argument("--data-dir", help="data folder (default: $FEWSHOT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bfloat16 autocast for the encoder in training (default: on)")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--timing-episodes", type=int, default=500, help="episodes whose heads are timed")
    parser.add_argument("--protonet-run", default=str(model_dir()),
                        help="ProtoNet run directory for the refinement comparison (default: the packaged model)")
    parser.add_argument("--refine", type=int, default=1, help="soft k-means steps (Ren et al. use 1)")
    parser.add_argument("--out", help="keep the transfer run directory here (default: discard it)")
    args = parser.parse_args()
    if args.lr_schedule == "cosine" and args.steps == parser.get_default("steps"):
        parser.error("--lr-schedule cosine anneals to 0 at --steps: pass --steps, about the batches --minutes "
                     "allows (300 to 450 a minute on one thread of a 2-core Xeon)")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.out or tmp) / "transfer"
        training = train(args, run_dir)
        print(json.dumps({"training": training}), file=sys.stderr, flush=True)
        model, config = load_run(run_dir)
    test_set = load_data(config, ("test",), progress=False)["test"]
    evaluator = Evaluator(model, test_set, progress=False)
    evaluator.embeddings()  # embedded once, before any timing
    results: dict = {}
    for classifier in ("nearest_mean", "fit_head"):
        model.classifier = classifier
        results[classifier] = {}
        for n_way, k_shot in SETTINGS:
            start = time.perf_counter()
            accuracies = episode_accuracies(evaluator, n_way, k_shot, args.episodes, args.seed)
            results[classifier][f"{n_way}w{k_shot}s"] = {
                **figures(accuracies), "episodes_per_second": round(args.episodes / (time.perf_counter() - start))}
        print(json.dumps({classifier: results[classifier]}), file=sys.stderr, flush=True)
    fitting = {f"{n}w{k}s": head_fitting_ms(model, evaluator, n, k, args.timing_episodes, args.seed)
               for n, k in SETTINGS}
    model.classifier = "nearest_mean"
    refined_transfer = refinement(model, test_set, args.refine, args.episodes, args.seed)
    protonet, protonet_config = load_run(args.protonet_run)
    protonet_test = load_data(protonet_config, ("test",), progress=False)["test"]
    refined_protonet = refinement(protonet, protonet_test, args.refine, args.episodes, args.seed)
    best = {s: max(results[c][s]["acc"] for c in results) for s in TARGETS}
    print(json.dumps({
        "benchmark": "transfer_omniglot", "split": args.split, "head": args.head, "minutes": args.minutes,
        "lr_schedule": args.lr_schedule, "steps": args.steps, "seed": args.seed,
        "torch_threads": torch.get_num_threads(), "bf16": args.bf16, "training": training,
        "options": config.options, "test_classes": test_set.num_classes, "episodes": args.episodes,
        "results": results, "head_fitting_ms_per_episode": fitting, "refine_steps": args.refine,
        "refinement_transfer_nearest_mean": refined_transfer,
        "refinement_protonet": {"run": args.protonet_run, "split": protonet_config.split, **refined_protonet},
        "targets": TARGETS, "target_met": all(best[s] >= TARGETS[s] for s in TARGETS),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }))


if __name__ == "__main__":
    main()
