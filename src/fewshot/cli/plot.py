"""``fewshot plot KIND``: pictures of runs as PNG files.

Each kind is a function ``add_KIND(plots)`` that adds its parser to the ``plots``
sub-parsers and sets ``run``; :data:`KINDS` lists them.
"""
from __future__ import annotations

import argparse

from fewshot.plots.curves import plot_curves


def add_curves(plots: argparse._SubParsersAction) -> None:
    parser = plots.add_parser("curves", help="loss and accuracy over training, from the metrics log")
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.set_defaults(run=lambda args: _done(plot_curves(args.run_dir, args.out), args.out))


def _done(_: None, out: str) -> int:
    print(f"wrote {out}")
    return 0


KINDS = (add_curves,)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="draw a picture of a run (PNG)",
                                    description="Draw a picture of a run or of embeddings as a PNG file.")
    plots = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for add in KINDS:
        add(plots)
