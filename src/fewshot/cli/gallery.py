"""``fewshot gallery create|add|recognise|calibrate|list|info|remove|reembed``: a persistent gallery.

Thin wrappers over :class:`fewshot.gallery.Gallery`; every command takes the gallery file first.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from fewshot.data.folder import class_files
from fewshot.data.sources import load_splits
from fewshot.device import resolve_device
from fewshot.errors import FewShotError
from fewshot.gallery import AddResult, Gallery, Recognition


def _open(args: argparse.Namespace) -> Gallery:
    return Gallery.open(args.gallery, getattr(args, "run_dir", None), device=resolve_device(args.device))


def _create(args: argparse.Namespace) -> int:
    with Gallery.create(args.gallery, args.run_dir, match=args.match, device=resolve_device(args.device)) as g:
        print(f"created {g.path}: {g.model.describe()}, matching by {g.match}")
        print(f"add classes with: fewshot gallery add {g.path} --name NAME IMAGE...")
    return 0


def _print_added(result: AddResult) -> None:
    ids = result.example_ids
    span = f" (example ids {ids[0]}-{ids[-1]})" if len(ids) > 1 else f" (example id {ids[0]})" if ids else ""
    verb = "created with" if result.created else "added"
    print(f"{result.name}: {verb} {len(ids)} example{'s' * (len(ids) != 1)}{span}")
    for source, example_id, owner in result.duplicates:
        where = f"example {example_id} of {owner!r}" if example_id >= 0 else owner
        print(f"  {source}: already stored as {where}; kept once")
    for source, notes in result.notes.items():
        print(f"  {source}: {'; '.join(notes)}")


def _add(args: argparse.Namespace) -> int:
    if bool(args.folder) == bool(args.name):
        raise FewShotError("pass either --name NAME with images, or --folder DIR with one sub-folder per class")
    with _open(args) as gallery:
        if args.name:
            if not args.images:
                raise FewShotError(f"no images given for class {args.name!r}; list them after --name")
            results = [gallery.add(args.name, args.images)]
        else:
            if args.images:
                raise FewShotError("with --folder, the images are the folder's; do not list others")
            results = []
            for name, files in tqdm(class_files(Path(args.folder)), desc="adding classes", unit="class",
                                    disable=not args.progress or args.json):
                results.append(gallery.add(name, files))
        if args.json:
            print(json.dumps([r.to_dict() for r in results]))
        else:
            for result in results:
                _print_added(result)
    return 0


def _describe(r: Recognition) -> str:
    if r.known:
        bound = f" <= threshold {r.threshold:.4g}" if r.calibrated else ""
        second = f"; margin {r.margin:.4g} to the next class" if r.margin is not None else ""
        return f"{r.name}  (distance {r.distance:.4g}{bound}{second})"
    return f"unknown  (nearest {r.top[0].name!r} at distance {r.distance:.4g} > threshold {r.threshold:.4g})"


def _recognise(args: argparse.Namespace) -> int:
    with _open(args) as gallery:
        answers = gallery.recognise(args.images, top=args.top, match=args.match)
    if args.json:
        print(json.dumps([a.to_dict() for a in answers]))
        return 0
    common = [n for n in answers[0].notes if all(n in a.notes for a in answers)]
    for a in answers:
        print(f"{a.source}: {_describe(a)}")
        if args.top > 1:
            print("  top: " + ", ".join(f"{m.name} {m.distance:.4g}" for m in a.top))
        for note in a.notes:
            if note not in common:
                print(f"  note: {note}")
    for note in common:
        print(f"note: {note}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    with _open(args) as gallery:
        config, pre = gallery.model.config, gallery.model.preprocessing
        dataset = args.dataset or config.dataset
        same = dataset == config.dataset
        split = args.split or (config.split if same else None)
        data_dir = args.data_dir or (config.data_dir if same else None)
        splits = load_splits(dataset, split, data_dir=data_dir, image_size=pre.size, channels=pre.channels,
                             progress=args.progress)
        if args.partition not in splits:
            raise FewShotError(f"{dataset} split {split!r} has no {args.partition!r} partition; it has "
                               f"{', '.join(splits)}")
        if same and split == config.split and args.partition in ("train", "trainval", config.train_partition):
            raise FewShotError(f"the model trained on the {args.partition!r} partition; calibrate on classes it never "
                               f"saw (--partition test)")
        result = gallery.calibrate(splits[args.partition], target=args.false_accept, way=args.way, shot=args.shot,
                                   queries=args.queries, unknown=args.unknown, episodes=args.episodes,
                                   seed=args.seed, match=args.match, progress=args.progress)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    r = result.report
    print(f"threshold {result.threshold:.6g}: at most {result.target_false_accept:.2%} false accepts, chosen on "
          f"{result.calibration_classes} classes of {result.dataset}")
    print(f"on {result.episodes} episodes of {result.report_classes} other unseen classes ({result.n_way}-way "
          f"{result.k_shot}-shot galleries, {result.n_unknown} classes held out, {result.n_query} queries each):")
    for label, e in (("known accuracy", r.known_accuracy), ("false rejects", r.false_reject),
                     ("false accepts", r.false_accept), ("closed-set accuracy", r.closed_set_accuracy)):
        print(f"  {label:20s} {100 * e.mean:6.2f}% +- {100 * e.ci95:.2f}")
    print(f"  {'AUROC':20s} {r.auroc.mean:.4f} +- {r.auroc.ci95:.4f}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _open(args) as gallery:
        classes = gallery.classes()
        examples = {c.name: gallery.examples(c.name) for c in classes} if args.examples else {}
    if args.json:
        print(json.dumps([{"name": c.name, "examples": c.examples, "added": c.added,
                           **({"example_ids": [e[0] for e in examples[c.name]]} if args.examples else {})}
                          for c in classes]))
        return 0
    for c in classes:
        print(f"{c.name}\t{c.examples} example{'s' * (c.examples != 1)}")
        for example_id, _, source in examples.get(c.name, []):
            print(f"  {example_id}\t{source}")
    if not classes:
        print(f"no classes yet; add some with: fewshot gallery add {args.gallery} --name NAME IMAGE...")
    return 0


def _info(args: argparse.Namespace) -> int:
    with _open(args) as gallery:
        info = gallery.info()
    if args.json:
        print(json.dumps(info))
        return 0
    for key in ("path", "model", "match", "classes", "examples", "index"):
        print(f"{key}: {info[key]}")
    calibration = info["calibration"]
    if calibration:
        report = calibration["report"]
        print(f"calibration: threshold {calibration['threshold']:.6g} for {calibration['target_false_accept']:.2%} "
              f"false accepts ({calibration['n_way']}-way {calibration['k_shot']}-shot, {calibration['dataset']}); "
              f"known accuracy {100 * report['known_accuracy']['mean']:.2f}%, AUROC {report['auroc']['mean']:.4f}")
    else:
        print("calibration: none")
    for note in info["notes"]:
        print(f"note: {note}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.example is None):
        raise FewShotError("pass either --name NAME (a class) or --example ID (one example)")
    with _open(args) as gallery:
        if args.name is not None:
            n = gallery.remove_class(args.name)
            print(f"removed class {args.name!r} and its {n} example{'s' * (n != 1)}")
        else:
            name, last = gallery.remove_example(args.example)
            print(f"removed example {args.example} of {name!r}" + (f"; it was the last, so {name!r} is gone" * last))
    return 0


def _reembed(args: argparse.Namespace) -> int:
    with Gallery.open(args.gallery, device=resolve_device(args.device)) as gallery:
        n = gallery.reembed(args.run_dir, device=resolve_device(args.device))
        print(f"embedded {n} examples with {gallery.model.describe()}")
        print(f"the old calibration was for the old model: run `fewshot gallery calibrate {args.gallery}`")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gallery", help="register classes from a few images, recognise them later",
        description="A gallery file holds classes registered from one or a few images each, embedded by one "
                    "trained model, and recognises new images as one of them or as unknown.")
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=help)
        p.add_argument("gallery", metavar="GALLERY", help="the gallery file")
        p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
        p.set_defaults(run=run)
        return p

    p = command("create", _create, "create an empty gallery bound to a trained run")
    p.add_argument("--run", dest="run_dir", metavar="RUN",
                   help="run directory of `fewshot train` (default: the packaged Omniglot model)")
    p.add_argument("--match", help="prototype (nearest class mean, default) or example (nearest stored example), "
                                   "for protonet, metric and triplet runs; siamese runs match by pairs")

    p = command("add", _add, "register images of a class (or a folder of classes)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files of the class")
    p.add_argument("--name", help="the class name")
    p.add_argument("--folder", help="a folder with one sub-folder of images per class (the names)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    p = command("recognise", _recognise, "say which class each image shows, or that it is unknown")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--top", type=int, default=1, help="also list this many nearest classes (default: 1)")
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    p.add_argument("--run", dest="run_dir", metavar="RUN", help="refuse the gallery unless bound to this run's model")
    p.add_argument("--match", help="prototype or example, for this call (default: the gallery's)")

    p = command("calibrate", _calibrate, "choose the unknown threshold on classes the model never trained on")
    p.add_argument("--dataset", help="omniglot, mnist or folder (default: the model's)")
    p.add_argument("--split", help="split of the dataset (default: the model's, for its own dataset)")
    p.add_argument("--partition", default="test", help="partition of never-trained classes (default: test)")
    p.add_argument("--data-dir", help="data directory (default: the model's, else $FEWSHOT_DATA)")
    p.add_argument("--false-accept", type=float, default=0.01, help="target false-accept rate (default: 0.01)")
    p.add_argument("--way", type=int, help="classes per calibration gallery (default: this gallery's, capped)")
    p.add_argument("--shot", type=int, help="examples per class (default: this gallery's mean)")
    p.add_argument("--queries", type=int, default=5, help="queries per class (default: 5)")
    p.add_argument("--unknown", type=int, default=5, help="classes held out of each gallery (default: 5)")
    p.add_argument("--episodes", type=int, default=600, help="episodes, each for choosing and reporting (default: 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (default: 0)")
    p.add_argument("--match", help="the match mode to calibrate (default: the gallery's)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    p = command("list", _list, "list the classes")
    p.add_argument("--examples", action="store_true", help="also list each class's example ids and sources")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command("info", _info, "describe the gallery: model, sizes, index, calibration")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command("remove", _remove, "remove a class, or one example")
    p.add_argument("--name", help="the class to remove, with all its examples")
    p.add_argument("--example", type=int, help="the id of one example to remove")

    p = command("reembed", _reembed, "bind the gallery to another trained model, embedding every example again")
    p.add_argument("--run", dest="run_dir", required=True, metavar="RUN", help="run directory of the new model")
