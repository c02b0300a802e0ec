"""``fewshot datasets``: where each data set is looked for, which files are there, which are missing."""
from __future__ import annotations

import argparse

from fewshot.data.sources import data_root, describe_datasets

_SHOWN = 12


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets", help="list the data sets, the files found and the files missing (with their URLs)",
        description="For each data set: the folder it is read from, the files found there, and each missing file "
                    "with the URL it is downloaded from (or where to get it). The data folder is --data-dir, else "
                    "$FEWSHOT_DATA, else ~/.cache/fewshot/data.",
    )
    parser.add_argument("--data-dir", help="data folder to inspect "
                        "(default: $FEWSHOT_DATA, else ~/.cache/fewshot/data)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(f"data folder: {data_root(args.data_dir)}")
    for info in describe_datasets(args.data_dir):
        print(f"\n{info['name']}: {info['summary']}")
        if info["directory"]:
            print(f"  looked in  {info['directory']}")
        if info.get("note"):
            print(f"  note       {info['note']}")
        for name in info["found"][:_SHOWN]:
            print(f"  found      {name}")
        if len(info["found"]) > _SHOWN:
            print(f"  found      ... and {len(info['found']) - _SHOWN} more")
        for missing in info["missing"]:
            print(f"  missing    {missing['file']}")
            for url in missing["urls"]:
                print(f"               {url}")
            if missing["note"]:
                print(f"               {missing['note']}")
        if not info["found"] and not info["missing"] and not info.get("note"):
            print("  nothing found")
    return 0
