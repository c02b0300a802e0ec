"""``fewshot train METHOD``: train a method into a run directory, in one process or under ``torchrun``.

Under ``torchrun`` every process runs this command; rank 0 reads the run directory (and sends
what it read to the others), loads (and downloads) the data before them, and alone writes.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

import torch
import yaml

from fewshot.cli.options import add_config_flags, add_method_flags
from fewshot.distributed import Group, start_group
from fewshot.errors import FewShotError
from fewshot.files import atomic_write_text
from fewshot.methods import METHODS
from fewshot.runs import CONFIG_FILE, build_method, config_yaml, load_config, load_data, training_set
from fewshot.training.config import RunConfig, available_configs, config_differences, resolve_config
from fewshot.training.trainer import Trainer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a few-shot method",
        description="Train a method on the background classes of a dataset. The paper's settings come from "
                    f"configs/METHOD_DATASET.yaml (available: {', '.join(available_configs()) or 'none'}); "
                    "every setting can be overridden by its flag.",
    )
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name in METHODS.names():
        cls = METHODS.get(name)
        sub = methods.add_parser(name, help=(cls.__doc__ or "").strip().splitlines()[0],
                                 description=(cls.__doc__ or "").strip().split("\n\n")[0])
        sub.add_argument("--config", help="YAML config file (default: the method's config for the dataset)")
        sub.add_argument("--out", help="run directory to create (default: runs/METHOD_DATASET)")
        mode = sub.add_mutually_exclusive_group()
        mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        mode.add_argument("--overwrite", action="store_true", help="delete an existing run in --out and start anew")
        sub.add_argument("--allow-different-episodes", action="store_true",
                         help="with --resume: continue a run checkpointed by another number of processes or "
                              "--episodes-per-step (it then sees other episodes than an uninterrupted run)")
        sub.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
        sub.add_argument("--no-download", dest="download", action="store_false",
                         help="never download missing data; fail with the list of files to fetch instead")
        sub.set_defaults(run=run, config_flags=add_config_flags(sub), method_flags=add_method_flags(sub, cls))


def requested_config(args: argparse.Namespace) -> RunConfig:
    return resolve_config(
        args.method, args.config,
        overrides={k: getattr(args, k) for k in args.config_flags},
        option_overrides={k: getattr(args, k) for k in args.method_flags},
    )


def resumed_config(args: argparse.Namespace, out: Path, group: Group) -> RunConfig:
    """The saved config of ``out`` (read by rank 0) with the flags given now; only resumable settings may change."""
    saved = RunConfig.from_dict(yaml.safe_load(group.from_main(lambda: config_yaml(load_config(out)).encode())))
    if saved.method != args.method:
        raise FewShotError(f"{out} holds a {saved.method!r} run; it cannot be resumed as {args.method!r}")
    values = saved.to_dict()
    values.update({k: getattr(args, k) for k in args.config_flags if getattr(args, k) is not None})
    values["options"] = {**saved.options,
                         **{k: getattr(args, k) for k in args.method_flags if getattr(args, k) is not None}}
    config = RunConfig.from_dict(values)
    differences = config_differences(saved, config)
    if differences:
        raise FewShotError(f"{out} was trained with other settings ({'; '.join(differences)}); resume with "
                           "the same settings, or start a new run in another --out")
    return config


def new_run_dir(out: Path, overwrite: bool) -> None:
    """Create ``out``; an existing run is replaced only with ``--overwrite``."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FewShotError(f"run directory {out} already exists; pass --resume to continue it, --overwrite "
                               "to replace it, or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace) -> int:
    group = start_group()
    try:
        with group.failures():
            return train(args, group)
    finally:
        group.close()


def train(args: argparse.Namespace, group: Group) -> int:
    out = Path(args.out) if args.out else None
    if args.resume:
        if out is None:
            raise FewShotError("--resume needs --out RUN_DIR: the run to continue")
        config = resumed_config(args, out, group)
    else:
        config = requested_config(args)
        out = out or Path(f"runs/{config.method}_{config.dataset}")
    device = group.use_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if not group.is_main:
        group.barrier()  # rank 0 downloads and decodes the data first
    data = load_data(config, (config.train_partition, "val"), progress=args.progress and group.is_main,
                     download=args.download)
    if group.is_main:
        group.barrier()
    train_set = training_set(config, data)
    method = build_method(config, train_set.image_shape)
    trainer = Trainer(method, config, train_set, data.get("val"), out, device, args.progress,
                      group)  # checks, writes nothing
    if not args.resume:
        group.from_main(lambda: new_run_dir(out, args.overwrite) or b"")
    if group.is_main:
        atomic_write_text(out / CONFIG_FILE, config_yaml(config))
        processes = f", {group.world_size} processes" if group.distributed else ""
        print(f"training {config.method} on {train_set} -> {out} ({device}{processes})", file=sys.stderr)
    previous = {sig: signal.signal(sig, lambda signum, frame: trainer.request_stop())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = trainer.fit(args.resume, args.allow_different_episodes)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if summary["interrupted"]:
        if group.is_main:
            launcher = "torchrun ... -m fewshot" if group.distributed else "fewshot"
            print(f"interrupted at step {summary['step']}; the checkpoint is saved. Continue with:\n"
                  f"  {launcher} train {config.method} --out {out} --resume", file=sys.stderr)
        return 130
    if not group.is_main:
        return 0
    best = summary["best_val_accuracy"]
    print(f"done: {summary['step']} steps in {summary['elapsed_s']:.0f} s"
          + (f", best validation accuracy {100 * best:.2f}%" if best is not None else "")
          + f"\nevaluate with: fewshot evaluate {out}")
    return 0
