"""The cost of a Relation Network episode's (query, class) pairs: one convolution per pair, or one per map.

The relation module's first convolution reads the concatenation ``[query map; class map]`` of every
pair. It is linear, so :class:`~fewshot.methods.relation.RelationModule` convolves each query map and
each class map once and adds them per pair. This script times a training step (forward and backward)
of the relation module both ways on the same pairs, alternating, and checks that they compute the same
relations. Prints one JSON line with median milliseconds and the ratio.

Example:
    python benchmarks/relation_pairs.py --ways 20 --queries 5 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ways", type=int, default=20)
    parser.add_argument("--queries", type=int, default=5, help="queries per class")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fewshot.methods.relation import RelationModule

    torch.manual_seed(0)
    module = RelationModule((64, 5, 5))
    weight = torch.cat([module.query_conv.weight, module.class_conv.weight], dim=1)
    n, q = args.ways, args.ways * args.queries
    query, classes = torch.randn(q, 1600).relu(), torch.randn(n, 1600).relu()

    def split() -> torch.Tensor:
        return module(query, classes)

    def per_pair() -> torch.Tensor:
        pairs = torch.cat([query.view(q, 1, 64, 5, 5).expand(q, n, 64, 5, 5),
                           classes.view(1, n, 64, 5, 5).expand(q, n, 64, 5, 5)], dim=2).reshape(q * n, 128, 5, 5)
        first = F.conv2d(pairs, weight, module.query_conv.bias, padding=1)
        return module.fc(module.second(module.first(first))).view(q, n)

    module.eval()
    with torch.no_grad():
        same = torch.allclose(split(), per_pair(), atol=1e-4)
    module.train()
    times: dict[str, list[float]] = {"split": [], "per_pair": []}
    for i in range(args.repeats + 3):
        for name, step in (("split", split), ("per_pair", per_pair)):
            start = time.perf_counter()
            step().sum().backward()
            if i >= 3:
                times[name].append(time.perf_counter() - start)
            module.zero_grad(set_to_none=True)
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(json.dumps({"benchmark": "relation_pairs", "ways": n, "queries": q, "pairs": q * n,
                      "threads": args.threads, "same_relations": same,
                      "median_ms": {k: round(v, 2) for k, v in medians.items()},
                      "speedup": round(medians["per_pair"] / medians["split"], 2),
                      "machine": f"{platform.machine()} {os.cpu_count()} cpus", "torch": torch.__version__}))


if __name__ == "__main__":
    main()
