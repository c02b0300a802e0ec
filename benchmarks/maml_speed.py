"""Meta-iterations per second of MAML, FOMAML, ANIL, Meta-SGD and Meta-LSTM at the 5-way Omniglot settings,
torch.func.vmap against the loop, and the time of a test episode's inner loop.

A meta-iteration is one optimiser step on a meta-batch: for the MAML variants, 32 5-way 1-shot episodes of
``configs/maml_omniglot_5way.yaml`` (or its ANIL and Meta-SGD variants), taken as one batch under
``torch.func.vmap`` (``vmap_tasks`` 32) or as 32 batches of one whose losses are averaged (the trainer's
``episodes_per_step`` loop). Meta-LSTM's is one episode of ``configs/meta_lstm_omniglot.yaml`` (5-way 1-shot,
15 queries per class, 12 updates); it has no vmap path. The variants take turns, one meta-iteration each,
so that drifts of a noisy machine fall on all of them alike. A test episode is 5-way 1-shot with 15 queries per
class, the inner loop at each config's ``test_inner_steps``, timed by the evaluator. Beside each wall-clock
figure, the process's CPU time (``time.process_time``), which on one thread is the work done and holds on a
machine shared with other jobs. Prints one JSON line.

Example:
    FEWSHOT_DATA=/path/to/data python benchmarks/maml_speed.py --iterations 5 --threads 1
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
    "maml": ("maml", "maml_omniglot_5way.yaml", {}),
    "fomaml": ("maml", "maml_omniglot_5way.yaml", {"first_order": True}),
    "anil": ("maml", "maml_anil_omniglot_5way.yaml", {}),
    "meta_sgd": ("maml", "maml_metasgd_omniglot_5way.yaml", {}),
    "meta_lstm": ("meta_lstm", "meta_lstm_omniglot.yaml", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--iterations", type=int, default=5, help="timed meta-iterations per variant and mode "
                                                                   "(after one warm-up)")
    parser.add_argument("--test-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fewshot.evaluation import evaluate
    from fewshot.runs import build_method, load_data, training_set
    from fewshot.training.config import CONFIG_DIR, resolve_config
    from fewshot.training.trainer import make_optimizer

    runs, data = {}, None
    for variant in args.variants:
        method, config_file, options = VARIANTS[variant]
        modes = {"vmap": options, "loop": {**options, "vmap_tasks": 1}} if method == "maml" else {"loop": options}
        for mode, mode_options in modes.items():
            config = resolve_config(method, CONFIG_DIR / config_file, overrides={"data_dir": args.data_dir},
                                    option_overrides=mode_options)
            if data is None:
                data = load_data(config, ("train", "test"), progress=False)
                train = training_set(config, data)
            model = build_method(config, train.image_shape).to(memory_format=torch.channels_last).train()
            per_batch = getattr(model, "vmap_tasks", 1)
            meta_batch = 32 if method == "maml" else 1
            runs[variant, mode] = (model, make_optimizer(model, config), model.training_batches(train, 10**5, 0),
                                   meta_batch // per_batch, [])
    for iteration in range(args.iterations + 1):
        for model, optimizer, batches, accumulate, times in runs.values():
            start, cpu = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=True)
            for j in range(accumulate):
                loss, _ = model.training_loss(batches(iteration * accumulate + j))
                (loss / accumulate).backward()
            optimizer.step()
            if iteration > 0:
                times.append((time.perf_counter() - start, time.process_time() - cpu))
    figures: dict[str, dict] = {}
    for (variant, mode), (model, _, _, _, times) in runs.items():
        entry = figures.setdefault(variant, {"options": VARIANTS[variant][2], "config": VARIANTS[variant][1]})
        entry[f"{mode}_iterations_per_s"] = round(1 / statistics.median(wall for wall, _ in times), 3)
        entry[f"{mode}_cpu_s_per_iteration"] = round(statistics.median(cpu for _, cpu in times), 2)
        if mode == "loop":
            cpu = time.process_time()
            result = evaluate(model, data["test"], n_way=5, k_shot=1, n_query=15, n_episodes=args.test_episodes,
                              progress=False)
            entry["test_episode_ms"] = round(1000 * result.seconds / args.test_episodes, 1)
            entry["test_episode_cpu_ms"] = round(1000 * (time.process_time() - cpu) / args.test_episodes, 1)
            entry["test_inner_steps"] = model.test_inner_steps
    for entry in figures.values():
        if "vmap_iterations_per_s" in entry:
            entry["vmap_speedup"] = round(entry["vmap_iterations_per_s"] / entry["loop_iterations_per_s"], 2)
            entry["vmap_cpu_speedup"] = round(entry["loop_cpu_s_per_iteration"] / entry["vmap_cpu_s_per_iteration"], 2)
    print(json.dumps({"benchmark": "maml_speed", "threads": args.threads, "iterations": args.iterations,
                      "load_average": [round(x, 2) for x in os.getloadavg()],
                      "meta_batch": {"maml": 32, "meta_lstm": 1},
                      "machine": f"{platform.machine()} {os.cpu_count()} cpus", "torch": torch.__version__,
                      "methods": figures}))


if __name__ == "__main__":
    main()
