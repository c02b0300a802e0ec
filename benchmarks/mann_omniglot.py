"""Memory-augmented networks on Omniglot sequence episodes (Santoro et al. 2016, table 1).

Trains four models through the shared trainer, each for at most ``--minutes`` (wall clock,
one torch thread, so also at most that much CPU time) on episodes from all 964 background
characters (20x20, Santoro's augmentation), then measures each on ``--episodes`` test
episodes from the 659 evaluation characters (no augmentation; the same episodes for
every model of a class count), as accuracy by instance number with 95% CIs:

- 5 classes, one-hot labels, 10 instances: MANN (LRUA, LSTM controller) and the LSTM
  baseline with the same budget (paper: 82.8 / 98.1 at the 2nd / 10th instance for the
  MANN, 49.5 / 62.5 for the LSTM; targets here: MANN >= 85 and >= 98);
- 15 classes: MANN (LRUA) and the same network with NTM memory (paper at the 2nd
  instance: 62.6 vs 35.4).

Everything else comes from ``configs/mann_omniglot.yaml`` (the paper's architecture, batch of
16 episodes, gradient clipping), except the optimizer: Adam at 1e-3 by default, as public
reimplementations use, instead of the paper's RMSprop at 1e-4, whose ten times smaller steps
suit a 100,000-episode run more than a one-hour one (``--optimizer rmsprop --lr 1e-4`` runs
the paper's). The training loss is compiled, as the config says (``--no-compile``: eager steps);
the compile, minutes at the start, counts in the budget. ``--lr-step N`` halves the learning rate
every N steps. ``--write add`` makes the LRUA heads write separate add vectors instead of their
keys; ``--key-strength`` gives their reads a learned key strength, as NTM heads have; ``--slots N``
changes the memory size (paper: 128). ``--encoder conv4`` puts a Conv-4 before the controller
instead of raw pixels, ``--encoder dense`` one ReLU layer of ``--dense-units`` (``--dense-skip``: beside
the pixels; both encoders ours, not the paper's). ``--max-rotation`` / ``--max-shift`` change the
per-image augmentation (0 turns it off; the whole-class rotations by multiples of 90 degrees stay).
``--min-classes 5`` trains the 15-class models on a mix of 5- to 15-class episodes (ours, not the
paper's: easier episodes to start from); it needs ``--no-compile``, as a compiled loss fits one length.
``--batch-size`` changes the episodes per step (paper: 16).
Each model is tested twice on the same episodes: as the paper tests, and with ``--views 4``
test-time augmentation (class probabilities averaged over the episode rotated as a whole by 0, 90,
180 and 270 degrees; ``--views 8`` adds mirror images, ``--views 1`` skips it; ours, not the paper's).
Also reports training throughput (episodes per second). Prints ONE JSON line; with
``--out DIR`` keeps the run directories and writes ``DIR/instances.{json,md,png}``.

    FEWSHOT_DATA=data python benchmarks/mann_omniglot.py --minutes 60
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fewshot.data.views import VIEW_COUNTS
from fewshot.evaluation.instances import TABLE_INSTANCES, InstanceAccuracy, evaluate_instances, ordinal, save_results
from fewshot.files import atomic_write_text
from fewshot.nets.lrua import WRITES
from fewshot.plots.instances import plot_instance_accuracy
from fewshot.runs import CONFIG_FILE, build_method, config_yaml, load_data, training_set
from fewshot.training.config import RunConfig, resolve_config
from fewshot.training.trainer import Trainer

MODELS = {  # name -> mann options
    "mann_lrua_5": {"memory": "lrua", "controller": "lstm", "n_classes": 5},
    "lstm_5": {"memory": "none", "controller": "lstm", "n_classes": 5},
    "mann_lrua_15": {"memory": "lrua", "controller": "lstm", "n_classes": 15},
    "mann_ntm_15": {"memory": "ntm", "controller": "lstm", "n_classes": 15},
}
PAPER = {  # Santoro et al. (2016), table 1: accuracy at the 2nd and 10th instance
    "mann_lrua_5": {"2nd": 0.828, "10th": 0.981},
    "lstm_5": {"2nd": 0.495, "10th": 0.625},
    "mann_lrua_15": {"2nd": 0.626},
    "mann_ntm_15": {"2nd": 0.354},
}
TARGETS = {"mann_lrua_5": {"2nd": 0.85, "10th": 0.98}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per model (wall clock)")
    parser.add_argument("--data-dir", help="data folder (default: $FEWSHOT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=1000, help="test episodes per model")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="models to run")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "rmsprop"),
                        help="adam (default: fastest start within a CPU budget) or rmsprop (the paper's)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3; the paper's "
                        "RMSprop used 1e-4)")
    parser.add_argument("--lr-step", type=int, help="halve (--lr-gamma) the learning rate every LR_STEP steps "
                        "(default: the config's, a constant rate)")
    parser.add_argument("--lr-gamma", type=float, default=0.5, help="learning-rate decay factor with --lr-step")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the training loss (the config's default; --no-compile: eager steps)")
    parser.add_argument("--min-classes", type=int,
                        help="train the models of more classes on episodes of MIN_CLASSES .. their classes "
                             "(fewshot train mann --min-classes; ours, not the paper's); default: their classes only")
    parser.add_argument("--batch-size", type=int,
                        help="episodes per training step (default: the config's, 16, the paper's)")
    parser.add_argument("--write", choices=WRITES, default="key",
                        help="what the LRUA heads write: key (the paper's eq. 23, default) or add (separate add "
                             "vectors)")
    parser.add_argument("--key-strength", action="store_true",
                        help="give the LRUA read heads a learned key strength (sharper reads; not in the paper)")
    parser.add_argument("--slots", type=int, help="memory slots of the LRUA and NTM models (default: the config's, "
                        "128, the paper's)")
    parser.add_argument("--encoder", choices=("flatten", "dense", "conv4"), default="flatten",
                        help="image encoder before the controller: flatten (raw pixels, the paper's; default), dense "
                             "(one ReLU layer) or conv4")
    parser.add_argument("--conv-channels", type=int, default=64,
                        help="channels of each conv4 block (with --encoder conv4)")
    parser.add_argument("--dense-units", type=int, default=256,
                        help="units of the dense encoder's layer (with --encoder dense)")
    parser.add_argument("--dense-skip", action="store_true",
                        help="pass the raw pixels on beside the dense encoder's units (with --encoder dense)")
    parser.add_argument("--max-rotation", type=float,
                        help="largest per-image rotation of the augmentation, degrees (default: the config's, 10)")
    parser.add_argument("--max-shift", type=float,
                        help="largest per-image translation of the augmentation, pixels (default: the config's, 2)")
    parser.add_argument("--mirror-classes", action="store_true",
                        help="add each training character mirrored left to right as a new class (not in the paper)")
    parser.add_argument("--ema-decay", type=float,
                        help="test an exponential moving average of the weights with this decay (e.g. 0.9995); "
                             "the last weights are tested too, on the same episodes")
    parser.add_argument("--views", type=int, default=4, choices=VIEW_COUNTS,
                        help="also test each model with its class probabilities averaged over whole-episode "
                             "rotations: 4 (0, 90, 180, 270 degrees; default), 8 (and their mirror images) or 1 "
                             "(no second test); on the same episodes (ours, not the paper's)")
    parser.add_argument("--out", help="keep run directories and write the table and plot here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    figures, results = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        configs = {name: model_config(name, args) for name in args.models}
        data = load_data(configs[args.models[0]], ("trainval", "test"), progress=False)
        train_set = training_set(configs[args.models[0]], data)
        trainers = {name: Trainer(build_method(config, train_set.image_shape), config, train_set, None,
                                  out / "runs" / name, progress=False)
                    for name, config in configs.items()}  # every model's checks pass before the first hour starts
        for name, trainer in trainers.items():
            config = configs[name]
            trainer.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(trainer.run_dir / CONFIG_FILE, config_yaml(config))  # so `fewshot evaluate RUN` works
            cpu = time.process_time()
            summary = trainer.fit()
            cpu = time.process_time() - cpu
            method = trainer.trained_method
            result = evaluate_instances(method, data["test"], n_episodes=args.episodes, seed=args.seed, progress=False)
            results.append(result)
            episodes = summary["step"] * method.batch_size
            figures[name] = {
                "model": result.model, "classes": method.n_classes, "min_classes": method.min_classes,
                "slots": getattr(method.memory, "slots", None),
                "steps": summary["step"],
                "train_episodes": episodes, "train_minutes": round(summary["elapsed_s"] / 60, 2),
                "train_cpu_minutes": round(cpu / 60, 2),
                "train_episodes_per_s": round(episodes / max(summary["elapsed_s"], 1e-9), 1),
                **by_instance(result),
                "paper": PAPER[name],
                "test_episodes_per_s": round(result.episodes_per_second, 1),
            }
            if trainer.average is not None:
                last = evaluate_instances(trainer.method, data["test"], n_episodes=args.episodes, seed=args.seed,
                                          progress=False)
                figures[name]["last_weights"] = by_instance(last)
            if args.views > 1:
                viewed = evaluate_instances(method, data["test"], n_episodes=args.episodes, seed=args.seed,
                                            progress=False, views=args.views)
                results.append(viewed)
                figures[name]["views"] = {"views": args.views, **by_instance(viewed)}
            if name in TARGETS:
                figures[name]["targets"] = TARGETS[name]
                figures[name]["targets_met"] = targets_met(result, TARGETS[name])
                if args.views > 1:
                    figures[name]["targets_met_with_views"] = targets_met(viewed, TARGETS[name])
        if args.out:
            save_results(results, out / "instances.json", out / "instances.md")
            plot_instance_accuracy(results, out / "instances.png")
    print(json.dumps({
        "benchmark": "mann_omniglot", "minutes_per_model": args.minutes, "seed": args.seed,
        "test_episodes": args.episodes, "torch_threads": torch.get_num_threads(),
        "optimizer": config.optimizer, "lr": config.lr, "lr_step": config.lr_step, "lr_gamma": config.lr_gamma,
        "compile": config.compile, "batch_size": method.batch_size,
        "encoder": config.encoder, "encoder_options": config.encoder_options,
        "write": args.write, "key_strength": args.key_strength, "ema_decay": config.ema_decay,
        "mirror_classes": config.mirror_classes, "training_classes": train_set.num_classes,
        "max_rotation": method.augmentation.max_rotation, "max_shift": method.augmentation.max_shift,
        "models": figures, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }))


def model_config(name: str, args: argparse.Namespace) -> RunConfig:
    """The run config of model ``name``: ``configs/mann_omniglot.yaml`` with the benchmark's options."""
    return resolve_config("mann", overrides={
        "dataset": "omniglot", "split": "lake", "data_dir": args.data_dir, "seed": args.seed,
        "train_partition": "trainval", "val_every": 0, "steps": 10**9, "time_limit": args.minutes,
        "checkpoint_every": 1000, "device": "cpu", "optimizer": args.optimizer, "lr": args.lr,
        "compile": args.compile, "encoder": args.encoder, "ema_decay": args.ema_decay,
        "mirror_classes": args.mirror_classes,
        "encoder_options": encoder_options(args),
        **({"lr_step": args.lr_step, "lr_gamma": args.lr_gamma} if args.lr_step else {}),
    }, option_overrides={**MODELS[name], **augmentation(args),
                         **({"batch_size": args.batch_size} if args.batch_size is not None else {}),
                         **({"slots": args.slots}
                            if args.slots is not None and MODELS[name]["memory"] != "none" else {}),
                         **({"write": args.write, "key_strength": args.key_strength}
                            if MODELS[name]["memory"] == "lrua" else {}),
                         "min_classes": mixed_in(args.min_classes, MODELS[name]["n_classes"])})


def by_instance(result: InstanceAccuracy) -> dict[str, dict[str, float]]:
    """Accuracy and 95% CI at each table instance, as the JSON line gives them."""
    return {"accuracy": {ordinal(k): round(result.at(k)[0], 4) for k in TABLE_INSTANCES},
            "ci95": {ordinal(k): round(result.at(k)[1], 4) for k in TABLE_INSTANCES}}


def targets_met(result: InstanceAccuracy, targets: dict[str, float]) -> bool:
    """Whether ``result`` reaches every target, e.g. ``{"2nd": 0.85, "10th": 0.98}``."""
    return all(result.at(int(k[:-2]))[0] >= v for k, v in targets.items())


def encoder_options(args: argparse.Namespace) -> dict[str, int | bool]:
    """The options of the ``--encoder`` given on the command line."""
    if args.encoder == "dense":
        return {"hidden": args.dense_units, **({"skip": True} if args.dense_skip else {})}
    return {"hidden": args.conv_channels} if args.encoder == "conv4" else {}


def augmentation(args: argparse.Namespace) -> dict[str, float]:
    """The per-image augmentation options given on the command line (the rest come from the config)."""
    return {k: v for k, v in {"max_rotation": args.max_rotation, "max_shift": args.max_shift}.items() if v is not None}


def mixed_in(min_classes: int | None, n_classes: int) -> int | None:
    """The ``min_classes`` option of a model of ``n_classes``: only for models of more classes than that."""
    return min_classes if min_classes is not None and min_classes < n_classes else None


if __name__ == "__main__":
    main()
