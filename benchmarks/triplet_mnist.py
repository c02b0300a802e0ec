"""Seed 003's triplet network on MNIST: trained on digits 0-6, judged on the unseen digits 7-9.

Trains ``configs/triplet_mnist.yaml`` (random triplets, softmax-ratio loss on L1
distances, the seed's convnet with a 100-d embedding, 450 batches of 64 triplets) on
80% of the images of digits 0-6, then embeds the unseen digits 7-9 and the held-out
20% of the seen digits and reports, for each group, k-NN accuracy (k = 5), k-means
NMI, precision@1 and MAP@R, plus 3-way 1-shot accuracy on the unseen digits (1,000
episodes, nearest prototype). It draws the UMAP picture of all ten digits (seed 003's
settings) to ``--umap`` (default ``docs/umap_mnist.png``).

Prints one JSON line.

    FEWSHOT_DATA=data python benchmarks/triplet_mnist.py --minutes 10
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fewshot.data.sources import load_splits
from fewshot.evaluation.embeddings import embed_partitions
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.retrieval import retrieval_metrics
from fewshot.plots.umap import plot_umap
from fewshot.runs import build_method
from fewshot.training.config import resolve_config
from fewshot.training.trainer import Trainer

SPLIT = "0-6/7-9"
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget (the config's 450 steps "
                        "usually end first)")
    parser.add_argument("--steps", type=int, help="training steps (default: the config's, 450)")
    parser.add_argument("--data-dir", help="data folder (default: $FEWSHOT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--episodes", type=int, default=1000, help="3-way 1-shot test episodes")
    parser.add_argument("--umap", default=str(ROOT / "docs" / "umap_mnist.png"), help="UMAP picture to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_splits("mnist", SPLIT, data_dir=args.data_dir, progress=False)
    fit, seen = splits["train"].split_images(0.8, args.seed)
    unseen = splits["test"]
    config = resolve_config("triplet", overrides={"dataset": "mnist", "split": SPLIT, "data_dir": args.data_dir,
                                                  "seed": args.seed, "steps": args.steps,
                                                  "time_limit": args.minutes, "device": "cpu"})
    method = build_method(config, fit.image_shape)
    with tempfile.TemporaryDirectory() as run_dir:
        summary = Trainer(method, config, fit, None, Path(run_dir), progress=False).fit()
    method.eval()
    embeddings = embed_partitions(method, {"seen": seen, "unseen": unseen}, seen.class_names)
    groups = {}
    for group, classes in (("unseen_7_9", ~embeddings.seen), ("seen_0_6_held_out", embeddings.seen)):
        keep = torch.from_numpy(classes[embeddings.labels])
        result = retrieval_metrics(torch.from_numpy(embeddings.embeddings)[keep],
                                   torch.from_numpy(embeddings.labels)[keep], method.distance, k=5, seed=args.seed)
        groups[group] = {"knn_accuracy": round(result.knn_accuracy, 4), "nmi": round(result.nmi, 4),
                         "precision_at_1": round(result.precision_at_1, 4), "map_at_r": round(result.map_at_r, 4),
                         "images": result.queries}
    one_shot = evaluate(method, unseen, n_way=3, k_shot=1, n_query=15, n_episodes=args.episodes, seed=args.seed,
                        progress=False)
    plot_umap(embeddings, args.umap, width=1000, height=800, seed=args.seed,
              title=f"Seed 003's triplet network on MNIST: UMAP of {len(embeddings)} test embeddings "
                    f"(digits 0-6 seen in training: circles; 7-9 never seen: triangles)")
    print(json.dumps({
        "benchmark": "triplet_mnist", "split": SPLIT, "loss": config.options["loss"], "encoder": config.encoder,
        "embedding_dim": method.encoder[0].out_features, "seed": args.seed, "torch_threads": torch.get_num_threads(),
        "steps": summary["step"], "train_seconds": summary["elapsed_s"], "fit_images": len(fit),
        **groups,
        "one_shot_3way_unseen": round(one_shot.mean, 4), "one_shot_3way_unseen_ci95": round(one_shot.ci95, 4),
        "umap": args.umap, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }))


if __name__ == "__main__":
    main()
