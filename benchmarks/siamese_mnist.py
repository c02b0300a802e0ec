"""Seed 000's Siamese progression on MNIST: four configurations, digits 0-6 seen, 7-9 never seen.

Each configuration of :mod:`fewshot.methods.siamese` is trained (config
``siamese_mnist.yaml``: the seed's dense tower, pairs of digits 0-6) on 70% of the
images of the seen digits, then measured on

- parameter count;
- verification (same digit or not?) on held-out pairs of seen digits and on pairs of the
  unseen digits 7-9: accuracy at the threshold best on validation pairs of held-out
  seen-digit images (15% of them; the other 15% make the seen test pairs), and ROC-AUC;
- 3-way 1-shot accuracy on the unseen digits (1,000 episodes, 15 queries per class,
  the shared evaluator).

Prints one JSON line. ``--minutes`` is the training budget shared by the four.

    FEWSHOT_DATA=data python benchmarks/siamese_mnist.py --minutes 2
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fewshot.data.sources import load_splits
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.verification import evaluate_verification
from fewshot.methods.siamese import VARIANTS
from fewshot.runs import build_method
from fewshot.training.config import resolve_config
from fewshot.training.trainer import Trainer

SPLIT = "0-6/7-9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget for all four configurations")
    parser.add_argument("--steps", type=int, help="training steps per configuration (default: the config's)")
    parser.add_argument("--data-dir", help="data folder (default: $FEWSHOT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=1000, help="3-way 1-shot test episodes")
    parser.add_argument("--pairs", type=int, default=2000, help="validation and test pairs per verification")
    args = parser.parse_args()

    splits = load_splits("mnist", SPLIT, data_dir=args.data_dir, progress=False)
    fit, held_out = splits["train"].split_images(0.7, args.seed, 0)
    val_seen, test_seen = held_out.split_images(0.5, args.seed, 1)
    unseen = splits["test"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            config = resolve_config("siamese", overrides={
                "dataset": "mnist", "split": SPLIT, "data_dir": args.data_dir, "seed": args.seed,
                "steps": args.steps, "time_limit": args.minutes / len(VARIANTS), "device": "cpu",
            }, option_overrides={"variant": variant})
            method = build_method(config, fit.image_shape)
            run_dir = Path(tmp) / variant
            run_dir.mkdir()
            summary = Trainer(method, config, fit, None, run_dir, progress=False).fit()
            method.eval()
            seen = evaluate_verification(method, val_seen, test_seen, args.pairs, args.seed)
            new = evaluate_verification(method, val_seen, unseen, args.pairs, args.seed)
            one_shot = evaluate(method, unseen, n_way=3, k_shot=1, n_query=15, n_episodes=args.episodes,
                                seed=args.seed, progress=False)
            results[variant] = {
                "parameters": sum(p.numel() for p in method.parameters()),
                "steps": summary["step"],
                "train_seconds": summary["elapsed_s"],
                "verification_seen": round(seen.accuracy, 4),
                "verification_seen_auc": round(seen.roc_auc, 4),
                "verification_unseen": round(new.accuracy, 4),
                "verification_unseen_auc": round(new.roc_auc, 4),
                "one_shot_3way_unseen": round(one_shot.mean, 4),
                "one_shot_3way_unseen_ci95": round(one_shot.ci95, 4),
            }
    print(json.dumps({
        "benchmark": "siamese_mnist", "split": SPLIT, "encoder": config.encoder, "minutes": args.minutes,
        "seed": args.seed, "torch_threads": torch.get_num_threads(),
        "fit_images": len(fit), "held_out_seen_images": len(held_out), "unseen_images": len(unseen),
        "results": results, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }))


if __name__ == "__main__":
    main()
