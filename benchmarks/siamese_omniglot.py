"""Koch et al.'s Siamese network on Omniglot, and its transfer to MNIST without MNIST training.

Trains ``siamese --variant koch-l1`` with the settings of ``siamese_omniglot.yaml``
(background alphabets, affine distortions, stroke thickening, hard negatives, validation
on held-out background alphabets, best model kept) for ``--minutes``, then reports, on the shared evaluator's
episodes (1,000 per setting, 15 queries per class, the same episodes ``fewshot evaluate``
and every other method get with the same seed):

- 20-way and 5-way 1-shot accuracy on the evaluation alphabets, on episodes drawn across all
  of them, and 20-way 1-shot on within-alphabet episodes (all 20 characters from one alphabet:
  the test Koch et al.'s 92.0% at 105x105 comes from);
- 10-way 1-shot accuracy on all ten MNIST digits with the Omniglot-trained model
  (Koch et al.: 70.3%), through the test-only split ``0-9``: the same as
  ``fewshot evaluate RUN --dataset mnist --split 0-9 --ways 10 --shots 1``.

Prints one JSON line. ``--thicken 0 --no-hard-negatives`` gives the recipe before both changes.

    FEWSHOT_DATA=data python benchmarks/siamese_omniglot.py --minutes 30
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
from fewshot.files import atomic_write_text
from fewshot.runs import CONFIG_FILE, MODEL_FILE, build_method, config_yaml, load_data, load_weights, training_set
from fewshot.training.config import resolve_config
from fewshot.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    parser.add_argument("--steps", type=int, default=10**9,
                        help="stop after this many steps if the budget has not run out first; runs are deterministic "
                             "at a given thread count, so a recorded run's step count trains its model again on a "
                             "busy machine, if the code is the same as that run's")
    parser.add_argument("--data-dir", help="data folder (default: $FEWSHOT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per setting")
    parser.add_argument("--out", help="keep the run directory here (default: a temporary one)")
    parser.add_argument("--pairing", choices=("koch", "all"),
                        help="training pairs: koch (each anchor with one same and one different partner) or all "
                             "(every two images of a P x K batch); default: the config's")
    parser.add_argument("--thicken", type=float,
                        help="probability that a training image's strokes are thickened (fewshot train siamese "
                             "--thicken); default: the config's")
    parser.add_argument("--hard-negatives", action=argparse.BooleanOptionalAction,
                        help="train same pairs against each image's hardest different pair only, or against all "
                             "(fewshot train siamese --[no-]hard-negatives); default: the config's")
    parser.add_argument("--mirror-classes", action="store_true",
                        help="also train on each class mirrored left to right, as a new class "
                             "(fewshot train --mirror-classes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = resolve_config("siamese", overrides={
        "dataset": "omniglot", "split": "lake", "data_dir": args.data_dir, "seed": args.seed,
        "time_limit": args.minutes, "steps": args.steps, "device": "cpu", "mirror_classes": args.mirror_classes or None,
    }, option_overrides={"variant": "koch-l1", "pairing": args.pairing, "thicken": args.thicken,
                         "hard_negatives": args.hard_negatives})
    data = load_data(config, (config.train_partition, "val", "test"), progress=False)
    train_set = training_set(config, data)
    method = build_method(config, train_set.image_shape)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.out or tmp)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config_yaml(config))  # so that `fewshot evaluate` reads the run
        summary = Trainer(method, config, train_set, data.get("val"), run_dir, progress=False).fit()
        load_weights(method, run_dir / MODEL_FILE, config)  # the best on validation
    method.eval()

    test = data["test"]
    omniglot = {f"{n}-way 1-shot": evaluate(method, test, n, 1, 15, args.episodes, args.seed, progress=False)
                for n in (20, 5)}
    omniglot["20-way 1-shot within-alphabet"] = evaluate(method, test, 20, 1, 15, args.episodes, args.seed,
                                                         progress=False, within_alphabet=True)
    verification = evaluate_verification(method, data["val"], test, seed=args.seed)
    digits = load_splits("mnist", "0-9", data_dir=args.data_dir, image_size=config.image_size, progress=False)["test"]
    transfer = evaluate(method, digits, 10, 1, 15, args.episodes, args.seed, progress=False)
    print(json.dumps({
        "benchmark": "siamese_omniglot", "variant": "koch-l1", "options": config.options,
        "rotate_classes": config.rotate_classes, "mirror_classes": config.mirror_classes,
        "train_classes": train_set.num_classes, "encoder": config.encoder,
        "encoder_options": config.encoder_options, "image_size": config.image_size, "minutes": args.minutes,
        "seed": args.seed, "torch_threads": torch.get_num_threads(), "steps": summary["step"],
        "train_seconds": summary["elapsed_s"], "best_val_accuracy": summary["best_val_accuracy"],
        "omniglot": {k: {"accuracy": round(r.mean, 4), "ci95": round(r.ci95, 4)} for k, r in omniglot.items()},
        "omniglot_verification": {"accuracy": round(verification.accuracy, 4),
                                  "roc_auc": round(verification.roc_auc, 4)},
        "mnist_transfer": {"10-way 1-shot": {"accuracy": round(transfer.mean, 4), "ci95": round(transfer.ci95, 4)}},
        "targets": {"omniglot 20-way 1-shot within-alphabet": 0.92, "mnist 10-way 1-shot": 0.75},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }))


if __name__ == "__main__":
    main()
