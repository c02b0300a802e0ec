"""The commands of README.md and docs/*.md run as written, on tiny data; the figures of docs/results.md are in
docs/benchmarks.md.

A fenced ``bash`` block right after a line ``<!-- runnable -->`` is run here, command by command,
in a fresh folder. The other blocks train or benchmark for minutes to hours, start a server,
install or run the whole test suite, and the docs say so beside them. What differs from running
a marked block by hand, and nothing else:

- ``FEWSHOT_DATA`` (and ``/path/to/data``) is a small fake Omniglot: the drawings of
  ``conftest.write_omniglot``, 20 per character as in Omniglot, enough characters for the
  default 60-way training and 20-way test episodes;
- ``fewshot train ...`` gets ``--steps 2 --no-progress``; ``fewshot evaluate ...`` gets
  ``--episodes 5 --no-progress``; ``fewshot gallery calibrate ...`` gets ``--episodes 5``;
- the images and folders the commands name (``my_classes/``, ``a1.png``, ...) are drawings made
  in the folder first;
- ``fewshot ARGS`` runs as ``fewshot.cli.main.main(ARGS)``, the ``fewshot`` script's entry point,
  in this process, so torch is imported once for all the commands.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from conftest import omniglot_png, write_omniglot

from fewshot.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXTRA = {"train": ["--steps", "2", "--no-progress"], "evaluate": ["--episodes", "5", "--no-progress"],
         "calibrate": ["--episodes", "5"]}
IMAGES = ("a.png", "b.png", "a1.png", "a2.png", "q1.png", "q2.png")


def runnable_blocks() -> list[tuple[str, str]]:
    """``(file:line, text)`` of every block marked runnable."""
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for match in RUNNABLE.finditer(text):
            blocks.append((f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 2}", match[1]))
    return blocks


def commands(block: str) -> list[list[str]]:
    """The commands of a block: continuation lines joined, comments dropped, ``&&`` chains split."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        command: list[str] = []
        for token in shlex.split(line, comments=True):
            if token == "&&":
                commands.append(command)
                command = []
            else:
                command.append(os.path.expandvars(token))
        if command:
            commands.append(command)
    return commands


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_omniglot(tmp_path_factory.mktemp("data"), background={"Latin": 12, "Greek": 4, "Hebrew": 5},
                          evaluation={"Angelic": 12, "Keble": 12}, drawings=20)


def run(command: list[str], data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if command[0] == "export":
        name, value = command[1].split("=", 1)
        monkeypatch.setenv(name, str(data) if value == "/path/to/data" else value)
        return
    assert command[0] == "fewshot", f"not a fewshot command: {shlex.join(command)}"
    args = command[1:]
    extra = EXTRA.get(args[1] if args[:1] == ["gallery"] else args[0], [])
    assert main(args + extra) == 0, shlex.join(command)


@pytest.mark.parametrize("where, block", runnable_blocks(), ids=[where for where, _ in runnable_blocks()])
def test_runnable_block(where: str, block: str, fake_omniglot: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEWSHOT_DATA", str(fake_omniglot))
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEWSHOT_GALLERY", str(tmp_path / "default.gallery"))
    for i, name in enumerate(IMAGES):
        Path(name).write_bytes(omniglot_png(i))
    for c in range(3):
        (tmp_path / "my_classes" / f"class{c}").mkdir(parents=True)
        for i in range(2):
            (tmp_path / "my_classes" / f"class{c}" / f"{i}.png").write_bytes(omniglot_png(100 + 10 * c + i))
    for command in commands(block):
        run(command, fake_omniglot, monkeypatch)


def test_the_readme_and_docs_have_runnable_blocks() -> None:
    files = {where.split(":")[0] for where, _ in runnable_blocks()}
    assert {"README.md", "docs/training.md", "docs/gallery-and-service.md"} <= files


def test_commands_splits_continuations_comments_and_chains() -> None:
    block = "fewshot a --x 1 \\\n    --y 2   # note\n# only a comment\nfewshot b && fewshot c $NO_SUCH_VARIABLE_HERE\n"
    assert commands(block) == [["fewshot", "a", "--x", "1", "--y", "2"], ["fewshot", "b"],
                               ["fewshot", "c", "$NO_SUCH_VARIABLE_HERE"]]


def results_figures(page: str) -> list[str]:
    """The accuracies (two decimals) in the rows of the results table (docs/results.md)."""
    rows = [line.split("|")[3:8] for line in page.splitlines() if line.startswith("| ")]
    return [figure for row in rows for cell in row for figure in re.findall(r"\b\d+\.\d\d\b", cell)]


def test_every_results_figure_is_in_the_benchmarks() -> None:
    figures = results_figures((ROOT / "docs" / "results.md").read_text())
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    assert len(figures) > 30
    missing = [f for f in figures if not re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", benchmarks)]
    assert not missing, f"in docs/results.md but not in docs/benchmarks.md: {missing}"
