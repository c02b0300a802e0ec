"""Where a MANN training step's time goes, and whether a larger batch buys throughput.

For each memory (``lrua``, ``ntm``, ``none`` = the LSTM baseline) and each batch size, times
building a batch of sequence episodes (Santoro's augmentation included) and one training
step on it (forward, backward, Adam), with the architecture of ``configs/mann_omniglot.yaml``
(LSTM of 200 units, 128 slots x 40, 4 heads, 20x20 images, 5 classes x 10 instances; ``--classes``
changes the class count, and with it the episode length). The
images are random: timing depends on shapes, not content, and no data set is needed.
Reports the median over ``--repeats`` steps after one warm-up step, in milliseconds, and
episodes per second of the whole step (batch + training). With ``--compile`` the loss is
compiled as ``compile: true`` does in the trainer, and the warm-up step's time (the compile)
is reported too. Prints ONE JSON line.

    python benchmarks/mann_step.py --threads 1
    python benchmarks/mann_step.py --threads 1 --batch-sizes 16 --compile
    python benchmarks/mann_step.py --threads 1 --batch-sizes 16 --compile --classes 15 --memories ntm
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.methods.mann import MANN
from fewshot.nets import build_encoder


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--memories", nargs="+", default=["lrua", "ntm", "none"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--classes", type=int, default=5, help="classes per episode (10 instances each)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (50 * 20, 1, 20, 20), dtype=torch.uint8)
    dataset = ImageDataset(images, torch.arange(50).repeat_interleave(20), [f"c{i}" for i in range(50)], "random")

    results = {}
    for memory in args.memories:
        for batch_size in args.batch_sizes:
            model = MANN(build_encoder("flatten", 1, 20), memory=memory, n_classes=args.classes, batch_size=batch_size)
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)
            episodes = model.sequence_episodes(dataset, 0, batch_size, model.augmentation)
            batch = episodes.batch(0)
            training_loss = torch.compile(model.training_loss, dynamic=False) if args.compile else model.training_loss

            def step() -> None:
                loss, _ = training_loss(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            start = time.perf_counter()
            step()
            first_s = time.perf_counter() - start
            batch_ms = median_ms(lambda: episodes.batch(1), args.repeats)
            step_ms = median_ms(step, args.repeats)
            results[f"{memory}/{batch_size}"] = {
                "batch_ms": round(batch_ms, 1), "step_ms": round(step_ms, 1),
                "episodes_per_s": round(1000 * batch_size / (batch_ms + step_ms), 1),
                "first_step_s": round(first_s, 1),
            }
            print(f"{memory:>5} batch {batch_size:>4}: {results[f'{memory}/{batch_size}']}", flush=True)
    print(json.dumps({"benchmark": "mann_step", "threads": args.threads, "compile": args.compile,
                      "classes": args.classes,
                      "torch": torch.__version__,
                      "machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results}))


if __name__ == "__main__":
    main()
