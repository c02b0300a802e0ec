"""``fewshot verify RUN IMAGE_A IMAGE_B``: are two images of the same class, says a Siamese run.

The images are decoded and resized as the run's training images were (grayscale or
RGB, ``image_size`` pixels; Omniglot's dark-on-light drawings inverted to the loader's
light-on-dark), scored by the run's head, and compared with the run's threshold (the
one most accurate on validation pairs when the run was validated, else probability
0.5 or distance m / 2).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from fewshot.data.imageio import read_image
from fewshot.device import resolve_device
from fewshot.errors import FewShotError
from fewshot.runs import load_run
from fewshot.training.config import RunConfig

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
INVERTED_DATASETS = frozenset({"omniglot"})
"""Data sets whose loader inverts the files (dark strokes on white become light on black)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="say whether two image files show the same class (Siamese runs)",
        description="Score a pair of image files with a trained Siamese run and decide same or different class. "
                    "Prints the similarity (for sigmoid heads the probability of the same class, for the "
                    "contrastive variant the embedding distance) and the decision at the run's threshold.",
    )
    parser.add_argument("run_dir", metavar="RUN", help="run directory of a `fewshot train siamese` run")
    parser.add_argument("image_a", metavar="IMAGE_A", help="first image file (PNG or JPEG)")
    parser.add_argument("image_b", metavar="IMAGE_B", help="second image file (PNG or JPEG)")
    parser.add_argument("--threshold", type=float, help="decision threshold on the printed similarity "
                        "(default: the run's own)")
    parser.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                        help="invert the images' gray levels (default: as the run's data set loader does: "
                             "yes for omniglot, no otherwise)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    parser.set_defaults(run=run)


def file_channels(path: Path) -> int:
    """1 if the file stores a grayscale image, else 3 (colour, palette)."""
    with Image.open(path) as image:
        return 1 if image.mode in GRAYSCALE_MODES else 3


def load_image(path: str, config: RunConfig, invert: bool) -> torch.Tensor:
    """One image file as the run's model takes it: float ``[1, channels, size, size]`` in [0, 1]."""
    pixels = read_image(path, config.image_size, config.channels)  # clear errors: missing, unreadable, not an image
    try:
        channels = file_channels(Path(path))
    except (OSError, UnidentifiedImageError) as error:
        raise FewShotError(f"cannot decode image {path}: {error}") from None
    if channels != config.channels:
        kind = {1: "grayscale (1 channel)", 3: "colour (3 channels)"}
        raise FewShotError(
            f"{path} is a {kind[channels]} image but the model of this run takes {kind[config.channels]} images; "
            f"convert the image to {'grayscale' if config.channels == 1 else 'RGB'} first"
        )
    image = torch.tensor(pixels, dtype=torch.float32).div_(255.0)
    return (1.0 - image if invert else image).unsqueeze(0)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    method, config = load_run(args.run_dir, device)
    if not method.scores_pairs:
        raise FewShotError(f"{args.run_dir} is a {config.method!r} run, which does not score pairs; `fewshot verify` "
                           f"needs a siamese run (train one with `fewshot train siamese`)")
    invert = config.dataset in INVERTED_DATASETS if args.invert is None else args.invert
    a, b = (load_image(p, config, invert).to(device) for p in (args.image_a, args.image_b))
    with torch.inference_mode():
        score = float(method.pair_scores(a, b)[0])
    threshold = float(method.threshold)
    if method.score_is_logit:  # compare logits, which do not saturate as probabilities do
        name, similarity = "similarity (probability of the same class)", _sigmoid(score)
        same = score > threshold if args.threshold is None else similarity > args.threshold
        rule = f"same if > {_sigmoid(threshold) if args.threshold is None else args.threshold:.4f}"
    else:
        name, similarity = "distance", -score
        cut = -threshold if args.threshold is None else args.threshold
        same, rule = similarity < cut, f"same if < {cut:.4f}"
    print(f"{name}: {similarity:.4f}")
    print(f"decision: {'same' if same else 'different'} class ({rule})")
    return 0


def _sigmoid(x: float) -> float:
    return float(torch.sigmoid(torch.tensor(x, dtype=torch.float64)))
