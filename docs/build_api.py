"""Build the API reference (HTML, pdoc) and check the docstrings it is made of.

    python docs/build_api.py --out build/api

Exits 1, listing every problem, when pdoc warns (an annotation it cannot resolve, an ``__all__``
name that does not exist, a module that fails to import), when a docstring names a
``fewshot.…`` object that does not exist, or when a public name has no example: an ``Example:``
section with at least one ``>>>`` line. Public names are the classes and functions of each
module's ``__all__``, and in a module without one its own whose names do not start with ``_``
(constants and registries are described, not exemplified).
The command line (``fewshot.cli``) is documented by ``fewshot --help`` instead.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.doc
import pdoc.extract
import pdoc.render

MODULES = ("fewshot", "!fewshot.cli", "!fewshot.cli.*")
PDOC_DIR = Path(pdoc.__file__).parent
EXAMPLE = re.compile(r"^\s*Examples?:\s*\n(?:\s*\n)*\s*>>> ", re.MULTILINE)
REFERENCE = re.compile(r"`~?(fewshot(?:\.\w+)+)`")


def documented_modules(specs: tuple[str, ...]) -> list[pdoc.doc.Module]:
    """The modules the reference has a page for."""
    return [pdoc.doc.Module.from_name(name) for name in pdoc.extract.walk_specs(specs)]


def public_names(module: pdoc.doc.Module) -> list[pdoc.doc.Doc]:
    """The names of ``module`` that need an example (see the module docstring).

    Example:
        >>> [d.name for d in public_names(pdoc.doc.Module.from_name("fewshot.evaluation"))]
        ['EvaluationResult', 'Evaluator', 'evaluate']
    """
    names = vars(module.obj).get("__all__")
    return [doc for doc in module.members.values() if isinstance(doc, pdoc.doc.Class | pdoc.doc.Function)
            and (doc.name in names if names is not None
                 else not doc.name.startswith("_") and doc.taken_from[0] == module.modulename)]


def missing_examples(modules: list[pdoc.doc.Module]) -> list[str]:
    """Public names whose docstring has no ``Example:`` section with a ``>>>`` line."""
    return [f"{doc.fullname}: no example (an 'Example:' section with '>>>' lines)"
            for module in modules for doc in public_names(module) if not EXAMPLE.search(doc.docstring)]


def resolves(name: str) -> bool:
    """Whether the dotted ``name`` is an importable module or an attribute reached from one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def broken_references(modules: list[pdoc.doc.Module]) -> list[str]:
    """Docstrings that name, in backquotes, a ``fewshot.…`` object that does not exist."""
    problems = []
    for module in modules:
        for doc in [module, *module.flattened_own_members]:
            for name in REFERENCE.findall(doc.docstring):
                if not resolves(name):
                    problems.append(f"{doc.fullname}: docstring names {name}, which does not exist")
    return problems


def build(out: Path, specs: tuple[str, ...] = MODULES) -> list[str]:
    """Write the reference for ``specs`` (pdoc module specifications) under ``out``; return its problems."""
    pdoc.render.configure(docformat="google")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*specs, output_directory=out)
    problems = [f"pdoc: {w.message}" for w in caught if Path(w.filename).is_relative_to(PDOC_DIR)]
    modules = documented_modules(specs)
    return problems + broken_references(modules) + missing_examples(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/api"), help="output folder (default build/api)")
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problems; the reference in {args.out} is incomplete", file=sys.stderr)
        return 1
    print(f"API reference: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
