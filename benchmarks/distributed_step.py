"""Step time of one process with 2 threads against 2 processes (torch.distributed, gloo) with 1 thread each.

Both do the same work per optimiser step: 2 ProtoNet episodes (60-way 5-shot 5-query Omniglot
size by default, Conv-4), as one process with ``episodes_per_step: 2`` or as two DDP processes
of one episode each, which the trainer makes the same arithmetic. Each configuration runs in
fresh processes spawned here (the two ranks on a free loopback port), ``--rounds`` times in
turn, so drift of the machine touches both alike; a round times ``--repeats`` steps after one
warm-up step of the trainer's own step (batches, forward, backward, gradient all-reduce, Adam).
The images are random: timing depends on shapes, not content, and no data set is needed.
Prints ONE JSON line: the median step time of each in milliseconds and their ratio
(``speedup`` > 1: the two processes are faster).

    python benchmarks/distributed_step.py
    python benchmarks/distributed_step.py --rounds 1 --repeats 2 --way 5   # a quick check that it runs
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fewshot.data.dataset import ImageDataset
from fewshot.distributed import start_group
from fewshot.runs import build_method
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_times(rank: int, world_size: int, port: int, threads: int, args: argparse.Namespace, out: Path) -> None:
    """One process: time ``args.repeats`` training steps; rank 0 writes the times (seconds) to ``out``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    group = start_group()
    try:
        torch.manual_seed(0)
        classes, size = max(args.way, 100), args.image_size
        images = torch.randint(0, 256, (classes * 20, 1, size, size), dtype=torch.uint8)
        dataset = ImageDataset(images, torch.arange(classes).repeat_interleave(20), [f"c{i}" for i in range(classes)],
                               "random")
        config = RunConfig(image_size=size, steps=args.repeats + 1, val_every=0, episodes_per_step=2 // world_size,
                           options=dict(n_way=args.way, k_shot=args.shot, n_query=args.query))
        trainer = Trainer(build_method(config), config, dataset, None, out.parent, progress=False, group=group)
        times = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            trainer._train_step()
            times.append(time.perf_counter() - start)
            trainer.step += 1
        if group.is_main:
            out.write_text(json.dumps(times[1:]))
    finally:
        group.close()


def measure(world_size: int, threads: int, args: argparse.Namespace) -> list[float]:
    """The step times of one round of ``world_size`` fresh processes of ``threads`` threads."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        out, port = Path(tmp) / "times.json", free_port()
        processes = [context.Process(target=step_times, args=(rank, world_size, port, threads, args, out))
                     for rank in range(world_size)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        if any(p.exitcode for p in processes):
            raise SystemExit(f"a process of the {world_size}-process round failed: {[p.exitcode for p in processes]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--way", type=int, default=60)
    parser.add_argument("--shot", type=int, default=5)
    parser.add_argument("--query", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each configuration, in turn")
    args = parser.parse_args()
    one, two = [], []
    for _ in range(args.rounds):
        one += measure(1, 2, args)
        two += measure(2, 1, args)
    one_ms, two_ms = 1000 * statistics.median(one), 1000 * statistics.median(two)
    print(json.dumps({
        "benchmark": "distributed_step", "method": "protonet", "encoder": "conv4",
        "episode": f"{args.way}-way {args.shot}-shot {args.query}-query {args.image_size}px",
        "episodes_per_step": 2, "steps_timed_each": len(one),
        "one_process_2_threads_ms": round(one_ms, 2), "two_processes_1_thread_ms": round(two_ms, 2),
        "speedup": round(one_ms / two_ms, 3), "backend": "gloo", "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
