"""The API reference (docs/build_api.py) builds without a problem, and each of its checks fires."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BUILD_API = Path(__file__).resolve().parent.parent / "docs" / "build_api.py"


def load_build_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_api", BUILD_API)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_builds_with_no_problem(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(BUILD_API), "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for page in ("index.html", "fewshot.html", "fewshot/data.html", "fewshot/methods.html", "fewshot/evaluation.html",
                 "fewshot/gallery.html", "fewshot/training/trainer.html", "fewshot/runs.html"):
        assert (tmp_path / page).is_file(), page
    assert not (tmp_path / "fewshot" / "cli.html").exists()


BROKEN = '''"""A module whose reference has three problems."""
__all__ = ["documented", "absent"]


def documented() -> None:
    """Says nothing of use and names `fewshot.no_such_module`."""
'''


def test_warnings_broken_references_and_missing_examples_are_problems(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_api_module.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        problems = load_build_api().build(tmp_path / "out", ("broken_api_module",))
    finally:
        sys.modules.pop("broken_api_module", None)
    assert len(problems) == 3, problems
    pdoc_warning, reference, example = problems
    assert pdoc_warning.startswith("pdoc: Found 'absent' in broken_api_module.__all__")
    assert reference == "broken_api_module.documented: docstring names fewshot.no_such_module, which does not exist"
    assert example.startswith("broken_api_module.documented: no example")


def test_an_example_needs_a_doctest_line() -> None:
    example = load_build_api().EXAMPLE
    assert example.search('"""Add.\n\n    Example:\n        >>> add(1, 2)\n        3\n    """')
    assert not example.search('"""Add.\n\n    Example: add(1, 2) is 3.\n    """')
