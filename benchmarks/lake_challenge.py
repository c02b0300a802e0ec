"""Lake et al.'s one-shot challenge: within-alphabet 20-way 1-shot on Omniglot's evaluation alphabets.

All 20 characters of an episode come from one alphabet, and a character's support drawing and
its queries are by different people (Omniglot's 20 drawings of a character are by 20 drawers).
People score 95.5%, Bayesian Program Learning 96.7%, Koch et al.'s Siamese network 92.0%.

Trains one recipe (``--recipe``) on the Lake split's ``train`` alphabets for ``--minutes``, keeps
the best model on validation, then reports within-alphabet 20-way 1-shot accuracy with 95% CIs on
the validation alphabets (to choose recipes by) and on the evaluation alphabets (the test), each
with one view and with the probabilities averaged over the 8 whole-episode views
(``fewshot evaluate --views 8``). With ``--ensemble RUN ...`` it trains nothing and reports the
ensemble of those runs (``fewshot evaluate --ensemble``), its minutes the sum of theirs.

Recipes (ProtoNet, Conv-4, rotated and mirrored training classes, Koch's distortions, Adam 1e-3):
- ``base``: the packaged model's recipe, 60-way 1-shot 5-query episodes across alphabets, 28x28;
- ``within``: 20-way 1-shot 17-query episodes within one alphabet (the test's kind, the same
  360 images per episode), 28x28;
- ``res56``: ``base`` at 56x56 (3x3x64 embeddings), paid for with fewer episodes;
- ``within56``: ``within`` at 56x56.

Prints one JSON line. Example:
    python benchmarks/lake_challenge.py --data-dir ../shared/data --recipe within --minutes 20 --out runs/lake_within
    python benchmarks/lake_challenge.py --data-dir ../shared/data --ensemble runs/lake_base runs/lake_within
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

RECIPES = {
    "base": dict(config={}, options={"n_way": 60, "k_shot": 1, "n_query": 5}),
    "within": dict(config={}, options={"n_way": 20, "k_shot": 1, "n_query": 17, "within_alphabet": True}),
    "res56": dict(config={"image_size": 56}, options={"n_way": 60, "k_shot": 1, "n_query": 5}),
    "within56": dict(config={"image_size": 56},
                     options={"n_way": 20, "k_shot": 1, "n_query": 17, "within_alphabet": True}),
}
SUMMARY_FILE = "lake_challenge.json"
REFERENCES = {"people": 95.5, "bpl": 96.7, "koch_siamese": 92.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="base")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget (wall clock)")
    parser.add_argument("--lr-step", type=int, default=4000, help="halve the learning rate every this many episodes")
    parser.add_argument("--distort-until", type=int, default=14000,
                        help="distort the training episodes before this one, then train on clean images")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bfloat16 autocast in training, as the packaged model's recipe (CPUs with AVX-512 BF16)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per figure")
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--test-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/lake_challenge")
    parser.add_argument("--ensemble", nargs="+", metavar="RUN", help="report the ensemble of these runs instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fewshot.evaluation.ensemble import Ensemble
    from fewshot.runs import load_data, load_run

    figures: dict = {"benchmark": "lake_challenge", "threads": args.threads,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
                     "commit": _commit(), "references": REFERENCES}
    if args.ensemble:
        members = [load_run(run) for run in args.ensemble]
        summaries = [json.loads((Path(run) / SUMMARY_FILE).read_text()) for run in args.ensemble]
        config = members[0][1]
        model = Ensemble([m for m, _ in members], (config.channels, config.image_size, config.image_size))
        figures.update(recipe="ensemble of " + ", ".join(s["recipe"] for s in summaries), runs=args.ensemble,
                       train_minutes=round(sum(s["train_minutes"] for s in summaries), 2),
                       train_episodes=sum(s["train_episodes"] for s in summaries))
    else:
        config, summary = train(args)
        model, config = load_run(args.out)
        figures.update(run=args.out, seed=args.seed, **summary)
    config.data_dir = args.data_dir
    data = load_data(config, ("val", "test"), progress=False)
    figures.update(test_figures(model, data, args))
    figures["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(json.dumps(figures), flush=True)


def train(args: argparse.Namespace) -> tuple[object, dict]:
    """Train ``args.recipe`` into ``args.out`` for ``args.minutes``; the run's summary is saved beside it."""
    from fewshot.files import atomic_write_json, atomic_write_text
    from fewshot.runs import CONFIG_FILE, build_method, config_yaml, load_data, training_set
    from fewshot.training.config import resolve_config
    from fewshot.training.trainer import Trainer

    recipe = RECIPES[args.recipe]
    config = resolve_config("protonet", overrides=dict(
        dataset="omniglot", split="lake", data_dir=args.data_dir, seed=args.seed, bf16=args.bf16, steps=1_000_000,
        time_limit=args.minutes, device="cpu", train_partition="train", lr_step=args.lr_step, mirror_classes=True,
        val_way=20, val_shot=1, val_query=5, val_episodes=300, val_every=500, **recipe["config"]),
        option_overrides={"distort": True, "distort_until": args.distort_until, **recipe["options"]})
    data = load_data(config, ("train", "val"), progress=False)
    train_set = training_set(config, data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("checkpoint.pt", "metrics.jsonl", "model.safetensors", SUMMARY_FILE):
        (out / stale).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG_FILE, config_yaml(config))
    method = build_method(config, train_set.image_shape)
    result = Trainer(method, config, train_set, data["val"], out, "cpu", progress=False).fit()
    summary = {"recipe": args.recipe, "image_size": config.image_size, "options": config.options,
               "train_classes": train_set.num_classes, "train_minutes": round(result["elapsed_s"] / 60, 2),
               "train_episodes": result["step"], "best_val_20w1s_across": round(100 * result["best_val_accuracy"], 2)}
    atomic_write_json(out / SUMMARY_FILE, summary)
    return config, summary


def test_figures(model, data: dict, args: argparse.Namespace) -> dict:
    """Within-alphabet 20-way 1-shot on the validation and evaluation alphabets, 1 and 8 views, and the test's
    20-way 1-shot across alphabets for reference."""
    from fewshot.evaluation import Evaluator

    figures = {}
    for partition in ("val", "test"):
        for views in (1, 8):
            result = Evaluator(model, data[partition], "cpu", progress=False, views=views).evaluate(
                20, 1, args.queries, args.episodes, args.test_seed, within_alphabet=True)
            figures[f"{partition} within-alphabet 20w1s, {views} view{'s' * (views > 1)}"] = {
                "acc": round(100 * result.mean, 2), "ci95": round(100 * result.ci95, 2)}
    across = Evaluator(model, data["test"], "cpu", progress=False).evaluate(20, 1, args.queries, args.episodes,
                                                                           args.test_seed)
    figures["test across-alphabet 20w1s, 1 view"] = {"acc": round(100 * across.mean, 2),
                                                     "ci95": round(100 * across.ci95, 2)}
    return figures


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
