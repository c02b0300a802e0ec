"""The ``fewshot`` command: ``fewshot train|evaluate|datasets ...``.

Each sub-command is a module with ``add_parser(subparsers)`` and ``run(args) -> int``.
User mistakes (:class:`~fewshot.errors.FewShotError`) print one line, no traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fewshot import __version__
from fewshot.cli import datasets, embed, evaluate, gallery, plot, serve, train, verify
from fewshot.errors import FewShotError

COMMANDS = (train, evaluate, embed, datasets, plot, verify, gallery, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fewshot",
        description="Few-shot learning: train a method on background classes, evaluate it on classes it never saw.",
        epilog="Run `fewshot COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"fewshot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "images", None), list) and not any(e.startswith("-") for e in extra):
        args.images += extra  # images listed after an option, as in `gallery add G --name N a.png b.png`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args)
    except FewShotError as e:
        print(f"fewshot: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewshot: interrupted", file=sys.stderr)
        return 130
