"""Shared fixtures: tiny synthetic data sets built in tmp_path, a private decode cache, a local HTTP server."""
from __future__ import annotations

import gzip
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny Omniglot: alphabet -> number of characters. "Hebrew" is one of the lake split's validation alphabets.
BACKGROUND_ALPHABETS = {"Latin": 3, "Greek": 2, "Hebrew": 2}
EVALUATION_ALPHABETS = {"Angelic": 2, "Keble": 1}
DRAWINGS = 4
VINYALS = {
    "train": ["Latin/character01/rot000", "Latin/character01/rot090", "Greek/character02/rot180"],
    "val": ["Hebrew/character01/rot270"],
    "test": ["Angelic/character01/rot000", "Keble/character01/rot090"],
    "trainval": ["Latin/character01/rot000", "Latin/character01/rot090", "Greek/character02/rot180",
                 "Hebrew/character01/rot270"],
}


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def omniglot_png(seed: int, size: int = 35) -> bytes:
    """A 1-bit, black-on-white drawing with an asymmetric stroke (so rotations differ)."""
    pixels = np.ones((size, size), dtype=bool)
    rng = np.random.default_rng(seed)
    row = int(rng.integers(2, size // 3))
    pixels[row:row + 3, 2:size - 4] = False
    pixels[row:size - 2, 2:5] = False
    return png_bytes(Image.fromarray(pixels).convert("1"))


def write_omniglot(root: Path, *, zipped: bool = True, splits: bool = True, background: dict[str, int] | None = None,
                   evaluation: dict[str, int] | None = None, drawings: int = DRAWINGS) -> Path:
    """A data root with omniglot/images_{background,evaluation}(.zip) and the vinyals split files.

    ``background`` and ``evaluation`` (alphabet -> characters) and ``drawings`` per character
    default to the tiny set above.
    """
    directory = root / "omniglot"
    directory.mkdir(parents=True, exist_ok=True)
    number = 0
    for part, alphabets in (("images_background", background or BACKGROUND_ALPHABETS),
                            ("images_evaluation", evaluation or EVALUATION_ALPHABETS)):
        members = {}
        for alphabet, count in alphabets.items():
            for c in range(1, count + 1):
                number += 1
                for drawer in range(1, drawings + 1):
                    name = f"{part}/{alphabet}/character{c:02d}/{number:04d}_{drawer:02d}.png"
                    members[name] = omniglot_png(number * 100 + drawer)
        if zipped:
            with zipfile.ZipFile(directory / f"{part}.zip", "w") as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
        else:
            for name, data in members.items():
                (directory / name).parent.mkdir(parents=True, exist_ok=True)
                (directory / name).write_bytes(data)
    if splits:
        (directory / "splits" / "vinyals").mkdir(parents=True, exist_ok=True)
        for name, lines in VINYALS.items():
            (directory / "splits" / "vinyals" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, *, prefix: str = "t10k", per_digit: int = 3, compress: bool = True) -> Path:
    """IDX files ``<prefix>-images-idx3-ubyte(.gz)`` / ``<prefix>-labels-idx1-ubyte(.gz)``; image i is filled with i."""
    directory = root / "mnist"
    directory.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(10), per_digit)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 8:20, 8:20] = (np.arange(len(labels)) * 7 % 256)[:, None, None]
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return root


def write_folder(root: Path, classes: dict[str, int]) -> Path:
    """One sub-folder per class with PNG and JPEG colour images of assorted sizes."""
    rng = np.random.default_rng(0)
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = int(rng.integers(10, 60)), int(rng.integers(10, 60))
            pixels = np.zeros((h, w, 3), dtype=np.uint8)
            pixels[..., c % 3] = 200
            fmt, suffix = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
            (root / name / f"{i:03d}.{suffix}").write_bytes(png_bytes(Image.fromarray(pixels), fmt))
    return root


@pytest.fixture
def decode_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty FEWSHOT_CACHE for the test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("FEWSHOT_CACHE", str(path))
    return path


@pytest.fixture
def omniglot_root(tmp_path: Path, decode_cache: Path) -> Path:
    return write_omniglot(tmp_path / "data")


@pytest.fixture
def http_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A stdlib HTTP server on 127.0.0.1 serving ``files`` (path -> bytes); yields ``(base URL, files)``."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is fastest, and leaves the other cores to other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 16 classes of 8 small images each (see gallery_support)."""
    from gallery_support import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def proto_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ProtoNet trained briefly on classes 0-9 of ``shapes``."""
    from gallery_support import train_run

    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(runs / "cache"))
        return train_run(shapes, runs / "proto", "protonet", "--n-way", "5", "--k-shot", "1", "--n-query", "3")
