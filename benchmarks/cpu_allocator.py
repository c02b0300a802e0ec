"""Training throughput with and without fewshot's glibc allocator tuning, one after the other.

Trains the ProtoNet of ``configs/protonet_omniglot.yaml`` (with ``--train-shot`` shots, Koch's
distortions, all background alphabets) for ``--seconds`` in a fresh process per setting, alternating
the two settings ``--repeats`` times, and reports the median episodes per second and the peak
memory of each. The untuned process sets ``MALLOC_ARENA_MAX``, a malloc setting of its own, which
:func:`fewshot.device.tune_cpu_allocator` leaves alone.

Prints one JSON line. Example:
    python benchmarks/cpu_allocator.py --data-dir ../shared/data --seconds 60 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per setting, alternated")
    parser.add_argument("--train-shot", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[str, list[dict]] = {"tuned": [], "untuned": []}
    for _ in range(args.repeats):
        for setting in runs:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
            if setting == "untuned":
                env["MALLOC_ARENA_MAX"] = "8"
            command = [sys.executable, __file__, "--worker", "--seconds", str(args.seconds), "--threads",
                       str(args.threads), "--train-shot", str(args.train_shot)]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(json.dumps({setting: runs[setting][-1]}), file=sys.stderr, flush=True)
    figures: dict = {"benchmark": "cpu_allocator", "seconds": args.seconds, "repeats": args.repeats,
                     "threads": args.threads, "machine": f"{platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} cores", "runs": runs}
    for setting, results in runs.items():
        if any(r["applied"] != (setting == "tuned") for r in results):
            raise SystemExit(f"the {setting} processes did not get the allocator setting asked for; is this glibc?")
        figures[f"{setting}_episodes_per_s"] = statistics.median(r["episodes_per_s"] for r in results)
        figures[f"{setting}_peak_mib"] = max(r["peak_mib"] for r in results)
    figures["speedup"] = round(figures["tuned_episodes_per_s"] / figures["untuned_episodes_per_s"], 2)
    print(json.dumps(figures))


def worker(args: argparse.Namespace) -> None:
    import resource

    import torch

    from fewshot.device import tune_cpu_allocator
    from fewshot.runs import build_method, load_data
    from fewshot.training.config import resolve_config
    from fewshot.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    config = resolve_config("protonet", overrides=dict(
        dataset="omniglot", split="lake", data_dir=args.data_dir, steps=1_000_000, time_limit=args.seconds / 60,
        device="cpu", train_partition="trainval"), option_overrides={"distort": True, "k_shot": args.train_shot})
    train_set = load_data(config, ("trainval",), progress=False)["trainval"].with_rotated_classes()
    method = build_method(config, train_set.image_shape)
    with tempfile.TemporaryDirectory() as tmp:
        summary = Trainer(method, config, train_set, None, Path(tmp), "cpu", progress=False).fit()
    print(json.dumps({"applied": tune_cpu_allocator(), "episodes": summary["step"],
                      "episodes_per_s": round(summary["step"] / summary["elapsed_s"], 2),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
