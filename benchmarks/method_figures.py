"""Test figures of trained runs on the same episodes: the four settings, within-alphabet 20-way 1-shot, heads.

For each run: N-way K-shot accuracy with 95% CIs on ``--episodes`` seeded test episodes (the same
episodes for every run of a split), 20-way 1-shot on within-alphabet episodes (Lake et al.'s test),
and, with ``--heads``, the same settings with a test-time head on the run's embedding. Prints one
JSON line.

Example:
    python benchmarks/method_figures.py runs/matching_fce_vinyals runs/relation_vinyals --data-dir ../shared/data
    python benchmarks/method_figures.py runs/proto --heads mahalanobis --shots 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--ways", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", nargs="*", default=[], help="also evaluate with these test-time heads")
    parser.add_argument("--head-ridge", type=float, default=1.0, help="b of the mahalanobis head (the paper's 1)")
    parser.add_argument("--no-within-alphabet", dest="within", action="store_false")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fewshot.evaluation import Evaluator
    from fewshot.evaluation.heads import with_head
    from fewshot.runs import load_data, load_run

    out = {}
    for run in args.runs:
        method, config = load_run(run)
        if args.data_dir:
            config.data_dir = args.data_dir
        test = load_data(config, ("test",), progress=False)["test"]
        rules = {"own": method, **{head: with_head(method, head, args.head_ridge) for head in args.heads}}
        figures = {}
        for rule, model in rules.items():
            evaluator = Evaluator(model, test, progress=False)
            settings = [(n, k, False) for n in args.ways for k in args.shots] + ([(20, 1, True)] if args.within else [])
            for n_way, k_shot, within in settings:
                start = time.perf_counter()
                r = evaluator.evaluate(n_way, k_shot, args.queries, args.episodes, args.seed, within)
                figures[f"{rule}: {r.setting}"] = {"mean": round(100 * r.mean, 2), "ci95": round(100 * r.ci95, 2),
                                                   "seconds": round(time.perf_counter() - start, 1)}
        out[run] = {"method": config.method, "options": config.options, "split": config.split, "figures": figures}
    print(json.dumps({"benchmark": "method_figures", "episodes": args.episodes, "queries": args.queries,
                      "seed": args.seed, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                      "runs": out}))


if __name__ == "__main__":
    main()
