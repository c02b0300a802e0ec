"""The packages of ``fewshot`` form layers: each imports only the layers below it.

Every import counts, at module level or inside a function. The order, lowest first, is the
README's (Layout); a package added to ``src/fewshot`` must be placed in it.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fewshot"

LAYERS = (
    ("fewshot", "errors", "files", "registry", "seeding", "device", "distances", "pretrained"),
    ("miners",),
    ("losses",),
    ("data",),
    ("nets",),
    ("methods",),
    ("distributed",),
    ("evaluation",),
    ("training",),
    ("runs",),
    ("gallery",),
    ("plots",),
    ("serving",),
    ("cli", "__main__"),
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """``fewshot.methods.base`` -> ``methods``; ``fewshot`` itself (``__version__``) -> ``fewshot``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported_modules(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(fewshot module, line)`` of every import in ``tree``, module-level or not; ``from fewshot import x``
    names ``fewshot.x`` when ``x`` is a module or package of its own."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / target.replace(".", "/")).is_dir() or \
                    (PACKAGE.parent / (target.replace(".", "/") + ".py")).is_file()
                found.append((target if is_module else base, node.lineno))
    return [(name, line) for name, line in found if name == "fewshot" or name.startswith("fewshot.")]


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """One line per import of ``module`` from a layer above its own, or from a package in no layer."""
    own = layer_of(module)
    if own not in LEVEL:
        return [f"{module}: package {own!r} is in no layer; place it in LAYERS (tests/test_layers.py) and the README"]
    problems = []
    for target, line in imported_modules(ast.parse(source), module, is_package):
        other = layer_of(target)
        if other not in LEVEL:
            problems.append(f"{module} (line {line}) imports {target}, whose package {other!r} is in no layer")
        elif LEVEL[other] > LEVEL[own]:
            problems.append(f"{module} (line {line}) imports {target}: {own} is below {other}, so it may not")
    return problems


def test_every_package_imports_only_the_layers_below_it():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += violations(module_name(path), path.read_text(), path.name == "__init__.py")
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, line, target", [
    ("from fewshot.evaluation.evaluator import evaluate\n", 1, "fewshot.evaluation.evaluator"),
    ("def f():\n    from fewshot.evaluation import evaluator\n", 2, "fewshot.evaluation.evaluator"),
    ("import fewshot.training.trainer\n", 1, "fewshot.training.trainer"),
    ("from ..evaluation import evaluator\n", 1, "fewshot.evaluation.evaluator"),
])
def test_an_import_from_above_is_named(source, line, target):
    layer = target.split(".")[1]
    assert violations("fewshot.methods.base", source) == [
        f"fewshot.methods.base (line {line}) imports {target}: methods is below {layer}, so it may not"]


def test_imports_from_below_or_within_pass_and_a_new_package_must_be_placed():
    assert violations("fewshot.evaluation.instances", "from fewshot.methods.mann import MANN\n"
                                                      "from fewshot.evaluation import evaluator\n") == []
    assert "in no layer" in violations("fewshot.newpackage.thing", "")[0]
