"""Command-line flags generated from the run config and from each method's ``__init__``.

Every config value and every method option is a flag, so the YAML files under
``configs/`` hold the papers' settings and any of them can be overridden at the
command line. Flags default to ``None`` so that only the ones given override.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from fewshot.training.config import RunConfig

NOT_FLAGS = {"method", "options", "encoder_options"}
DEFAULTS_NOTE = ("The defaults shown are the built-in ones; the method's YAML config for the dataset "
                 "(configs/METHOD_DATASET.yaml) may set others, and a flag overrides both.")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        annotation = eval(annotation, {"dict": dict, "list": list, "tuple": tuple})  # noqa: S307 (our own hints)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _add(parser: argparse.ArgumentParser | Any, name: str, kind: Any, default: Any, help_text: str,
         choices: Any = None) -> None:
    shown = "" if default is None else f" (default: {default})"
    if kind is bool:
        parser.add_argument(flag(name), dest=name, default=None, action=argparse.BooleanOptionalAction,
                            help=help_text + shown)
    else:
        parser.add_argument(flag(name), dest=name, type=kind, default=None, choices=choices,
                            metavar=name.upper() if choices is None else None, help=help_text + shown)


def add_config_flags(parser: argparse.ArgumentParser) -> list[str]:
    """One flag per :class:`RunConfig` field; returns their ``dest`` names."""
    group = parser.add_argument_group("run settings (override the YAML config)", DEFAULTS_NOTE)
    names = []
    for f in dataclasses.fields(RunConfig):
        if f.name in NOT_FLAGS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        _add(group, f.name, _base_type(f.type), default, f.metadata.get("help", ""))
        names.append(f.name)
    return names


def docstring_args(obj: Any) -> dict[str, str]:
    """``name -> description`` from the ``Args:`` section of a Google-style docstring."""
    doc = inspect.getdoc(obj) or ""
    match = re.search(r"^Args:\n(.*?)(?:\n\S|\Z)", doc, re.S | re.M)
    if not match:
        return {}
    helps: dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        m = re.match(r"\s{4}(\w+)(?: \(.*?\))?:\s*(.*)", line)
        if m:
            current = m.group(1)
            helps[current] = m.group(2)
        elif current and line.strip():
            helps[current] += " " + line.strip()
    return helps


def add_method_flags(parser: argparse.ArgumentParser, cls: type) -> list[str]:
    """One flag per keyword argument of the method's ``__init__`` (except ``encoder``)."""
    group = parser.add_argument_group(f"{cls.name} options", DEFAULTS_NOTE)
    helps = {name: text for klass in reversed(cls.__mro__) for name, text in docstring_args(klass).items()}
    hints = typing.get_type_hints(cls.__init__)
    names = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "encoder") or param.default is param.empty:
            continue
        choices = getattr(cls, "option_choices", {}).get(name)
        _add(group, name, _base_type(hints.get(name, str)), param.default, helps.get(name, ""), choices)
        names.append(name)
    return names
