"""Training speed of every episodic method beside ProtoNet's, measured side by side in one run.

Each method takes its own Omniglot config (``configs/METHOD_omniglot[_SPLIT].yaml``) and trains for
``--steps`` steps on the same threads; the methods take turns, one step each, so that drifts of a
noisy machine fall on all of them alike. Prints one JSON line: median seconds per step, episodes/s
and the ratio to ProtoNet's episodes/s.

Example:
    python benchmarks/method_speed.py --data-dir ../shared/data --steps 30 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

VARIANTS = {
    "protonet": ("protonet", {}),
    "matching": ("matching", {"fce": False}),
    "matching_fce": ("matching", {"fce": True}),
    "relation": ("relation", {}),
    "mahalanobis": ("mahalanobis", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--split", default="vinyals", choices=("lake", "vinyals"))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fewshot.runs import build_method, load_data, training_set
    from fewshot.training.config import resolve_config
    from fewshot.training.trainer import autocast, make_optimizer

    device = torch.device("cpu")
    runs = {}
    for variant in args.methods:
        method, options = VARIANTS[variant]
        config = resolve_config(method, overrides={"dataset": "omniglot", "split": args.split,
                                                   "data_dir": args.data_dir}, option_overrides=options)
        train = training_set(config, load_data(config, ("train",), progress=False))
        model = build_method(config, train.image_shape).to(memory_format=torch.channels_last).train()
        runs[variant] = (config, model, make_optimizer(model, config), model.training_batches(train, 10**6, 0), [])
    for step in range(args.steps + 3):
        for variant, (config, model, optimizer, batches, times) in runs.items():
            batch = batches(step)
            start = time.perf_counter()
            with autocast(config, device):
                loss, _ = model.training_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 3:
                times.append(time.perf_counter() - start)
    figures = {}
    for variant, (config, model, _, _, times) in runs.items():
        median = statistics.median(times)
        figures[variant] = {"episode": f"{model.n_way}-way {model.k_shot}-shot {model.n_query}-query",
                            "bf16": config.bf16, "median_step_s": round(median, 4),
                            "episodes_per_s": round(1 / median, 2)}
    if "protonet" in figures:
        for f in figures.values():
            f["ratio_to_protonet"] = round(f["episodes_per_s"] / figures["protonet"]["episodes_per_s"], 2)
    print(json.dumps({"benchmark": "method_speed", "split": args.split, "threads": args.threads,
                      "steps": args.steps, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                      "torch": torch.__version__, "methods": figures}))


if __name__ == "__main__":
    main()
