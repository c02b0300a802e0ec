"""Prototypical Networks on Omniglot: accuracy within a CPU time budget, and speed beside easyfsl.

Trains fewshot's ProtoNet (configs/protonet_omniglot*.yaml: Conv-4, 60-way 5-shot 5-query,
Adam 1e-3 halved every 2,000 episodes) for ``--minutes`` of wall clock, evaluating the
best-on-validation model after ``--early-minutes`` and at the end on 1,000 test episodes
per setting (15 queries per class). With ``--easyfsl-minutes`` > 0 it then trains easyfsl
1.5.0's PrototypicalNetworks on the same training tensors, backbone and threads (in the
isolated environment of ``benchmarks/setup_easyfsl.sh``) and evaluates it on the same
test images, so that speed ratios are measured side by side in one run.

Prints one JSON line. Example:
    python benchmarks/omniglot_protonet.py --data-dir ../shared/data --minutes 30 --easyfsl-minutes 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--split", default="lake", choices=("lake", "vinyals"))
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget of fewshot's ProtoNet")
    parser.add_argument("--early-minutes", type=float, default=10.0, help="also evaluate after this many minutes")
    parser.add_argument("--easyfsl-minutes", type=float, default=10.0, help="easyfsl training budget (0: skip)")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bfloat16 autocast in training and while embedding test images (default: on)")
    parser.add_argument("--distort", action="store_true",
                        help="distort training images by random affine maps (protonet --distort)")
    parser.add_argument("--distort-until", type=int,
                        help="with --distort, distort only the episodes before this one; the rest are clean, as the "
                             "test images are (default: distort all)")
    parser.add_argument("--mirror-classes", action="store_true",
                        help="also train on each class mirrored left to right, as a new class "
                             "(fewshot train --mirror-classes)")
    parser.add_argument("--train-partition", default="train", choices=("train", "trainval"),
                        help="trainval: also train on the validation alphabets (then no validation)")
    parser.add_argument("--train-shot", type=int,
                        help="shots per class of fewshot's training episodes (default: the config's 5; the paper "
                             "trained its 1-shot models with 1)")
    parser.add_argument("--lr-step", type=int,
                        help="halve the learning rate every this many episodes (default: the config's 2,000, the "
                             "paper's; a longer budget in episodes may want a longer step)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (episodes and initial weights)")
    parser.add_argument("--test-seed", type=int, default=0,
                        help="seed of the test episodes: keep it to compare models of other training seeds")
    parser.add_argument("--out", default="runs/bench_protonet")
    parser.add_argument("--easyfsl-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.easyfsl_worker:
        easyfsl_worker(Path(args.easyfsl_worker), args)
        return

    from fewshot.evaluation import Evaluator
    from fewshot.files import atomic_write_text
    from fewshot.runs import CONFIG_FILE, build_method, config_yaml, load_data, load_run, training_set
    from fewshot.training.config import resolve_config
    from fewshot.training.trainer import Trainer

    config = resolve_config("protonet", overrides=dict(
        dataset="omniglot", split=args.split, data_dir=args.data_dir, seed=args.seed, bf16=args.bf16,
        steps=1_000_000, time_limit=args.early_minutes, device="cpu", train_partition=args.train_partition,
        lr_step=args.lr_step, mirror_classes=args.mirror_classes or None),
        option_overrides={"distort": args.distort, "distort_until": args.distort_until, "k_shot": args.train_shot})
    data = load_data(config, (config.train_partition, "val", "test"), progress=False)
    train_set = training_set(config, data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("checkpoint.pt", "metrics.jsonl", "model.safetensors"):
        (out / stale).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG_FILE, config_yaml(config))

    figures: dict = {"benchmark": "omniglot_protonet", "split": args.split, "threads": args.threads,
                     "seed": args.seed, "test_seed": args.test_seed,
                     "distort": args.distort, "distort_until": args.distort_until,
                     "mirror_classes": config.mirror_classes, "train_partition": args.train_partition,
                     "train_episodes": "{n_way}-way {k_shot}-shot {n_query}-query".format(**config.options),
                     "lr": config.lr, "lr_step": config.lr_step, "lr_gamma": config.lr_gamma,
                     "bf16": args.bf16, "channels_last": config.channels_last,
                     "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "torch": torch.__version__, "train_classes": train_set.num_classes, "test_classes": data["test"].num_classes}
    results = {}
    resume = False
    for label, minutes in (("early", args.early_minutes), ("final", args.minutes)):
        config.time_limit = minutes
        method = build_method(config, train_set.image_shape)
        summary = Trainer(method, config, train_set, data.get("val"), out, "cpu", progress=False).fit(resume=resume)
        resume = True
        model, _ = load_run(out)
        evaluator = Evaluator(model, data["test"], "cpu", progress=False, bf16=args.bf16)
        results[label] = {"minutes": round(summary["elapsed_s"] / 60, 2), "episodes": summary["step"],
                          "best_val": summary["best_val_accuracy"],
                          **{f"{n}w{k}s": _acc(evaluator.evaluate(n, k, args.queries, args.episodes, args.test_seed))
                             for n, k in SETTINGS}}
        print(json.dumps({label: results[label]}), file=sys.stderr, flush=True)
    figures["fewshot"] = results
    figures["fewshot_train_episodes_per_s"] = round(results["final"]["episodes"] / (60 * results["final"]["minutes"]), 3)
    figures["fewshot_eval_episodes_per_s"] = eval_speed(model, data["test"], args)
    if args.easyfsl_minutes > 0:
        figures["easyfsl"] = run_easyfsl(train_set, data["test"], args)
        for key in ("train_episodes_per_s", "eval_5w1s_episodes_per_s", "eval_20w1s_episodes_per_s"):
            ours = figures["fewshot_train_episodes_per_s"] if key.startswith("train") else \
                figures["fewshot_eval_episodes_per_s"][key.split("_")[1]]
            figures[f"speedup_{key}"] = round(ours / figures["easyfsl"][key], 1)
    print(json.dumps(figures))


def _acc(result) -> dict:
    return {"acc": round(100 * result.mean, 2), "ci95": round(100 * result.ci95, 2)}


def eval_speed(model, test_set, args) -> dict:
    """Evaluation throughput per setting, each from a fresh evaluator: the embedding time is included."""
    from fewshot.evaluation import Evaluator

    speeds = {}
    for n, k in ((5, 1), (20, 1)):
        evaluator = Evaluator(model, test_set, "cpu", progress=False, bf16=args.bf16)
        start = time.perf_counter()
        evaluator.evaluate(n, k, args.queries, args.episodes, args.test_seed)
        speeds[f"{n}w{k}s"] = round(args.episodes / (time.perf_counter() - start), 1)
    return speeds


def run_easyfsl(train_set, test_set, args) -> dict:
    python = ROOT / ".bench-venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit("easyfsl environment missing: run benchmarks/setup_easyfsl.sh, or pass --easyfsl-minutes 0")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, ds in (("train", train_set), ("test", test_set)):
            np.save(tmp / f"{name}_images.npy", ds.images.numpy())
            np.save(tmp / f"{name}_labels.npy", ds.labels.numpy())
        cmd = [str(python), __file__, "--easyfsl-worker", str(tmp), "--easyfsl-minutes", str(args.easyfsl_minutes),
               "--episodes", str(args.episodes), "--queries", str(args.queries), "--threads", str(args.threads),
               "--seed", str(args.seed)]
        subprocess.run(cmd, check=True)
        return json.loads((tmp / "easyfsl.json").read_text())


def easyfsl_worker(tmp: Path, args) -> None:
    """Runs inside .bench-venv: easyfsl's own training and evaluation loops on the same tensors."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from easyfsl_baseline import evaluate_easyfsl, train_easyfsl

    def load(name):
        images = torch.from_numpy(np.load(tmp / f"{name}_images.npy")).float().div_(255)
        return images, torch.from_numpy(np.load(tmp / f"{name}_labels.npy"))

    train_images, train_labels = load("train")
    model, stats = train_easyfsl(train_images, train_labels, minutes=args.easyfsl_minutes, seed=args.seed)
    test_images, test_labels = load("test")
    figures = {"minutes": round(stats["seconds"] / 60, 2), "episodes": stats["episodes"],
               "train_episodes_per_s": round(stats["episodes_per_s"], 3)}
    for n, k in ((5, 1), (5, 5), (20, 1)):
        r = evaluate_easyfsl(model, test_images, test_labels, n_way=n, k_shot=k, n_query=args.queries,
                             n_episodes=args.episodes, seed=args.seed)
        figures[f"{n}w{k}s"] = {"acc": round(100 * r["accuracy"], 2), "ci95": round(100 * r["ci95"], 2)}
        if k == 1:
            figures[f"eval_{n}w{k}s_episodes_per_s"] = round(r["episodes_per_s"], 1)
        print(json.dumps({f"easyfsl {n}w{k}s": figures[f"{n}w{k}s"]}), file=sys.stderr, flush=True)
    (tmp / "easyfsl.json").write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
