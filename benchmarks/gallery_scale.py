"""The gallery at scale: 10k, 100k, 1M stored drawings, and 659-way one-shot Omniglot.

Stored examples are real embeddings: every drawing of Omniglot (1,623 characters, 32,460
drawings, background and evaluation sets) under random Koch distortions (rotation, shear,
scale, translation; :mod:`fewshot.data.augment`), copy 0 undistorted, so a million stored
examples are a million different drawings of 1,623 classes. One gallery grows through the
sizes; at each it measures, in this one process (and a second for reopening):

- add throughput (examples per second through ``Gallery.add``: embedding, one SQLite
  transaction per class and copy, index update);
- recall@1 of the gallery's nearest-example search against exact search (a FAISS flat
  index over the same vectors), on fresh distorted drawings;
- single-query recognise latency from PNG bytes (decode, embed, search, decide), p50 and
  p99, by nearest example over all stored examples (the hard case) and by nearest prototype
  over the 1,623 classes, and exact flat search of one query beside them;
- a batch of 100 queries;
- registering one new class from one image (acknowledged, so durable), p50 and p99;
- saving the index, and reopening in a fresh process to its first answer, with that
  process's peak resident memory.

Then the product figure: the 659 evaluation characters registered from one drawing each,
the other 19 drawings of each recognised (659-way one-shot, top-1 and top-5), and the
open-set figures at 1% false accepts from ``Gallery.calibrate`` (characters held out).

Prints one JSON line.

    python benchmarks/gallery_scale.py --run runs/proto --data-dir $FEWSHOT_DATA --sizes 10000,100000,1000000
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fewshot.data.augment import KOCH_DISTORTION, random_affine
from fewshot.data.dataset import ImageDataset
from fewshot.data.sources import load_splits
from fewshot.gallery import Gallery, GalleryModel

QUERIES = 300
REGISTRATIONS = 100
REOPEN = """
import json, sys, time
t0 = time.perf_counter()
from fewshot.gallery import Gallery
t1 = time.perf_counter()
g = Gallery.open(sys.argv[1])
answer = g.recognise([open(sys.argv[2], "rb").read()])[0]
t2 = time.perf_counter()
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"import_s": t1 - t0, "reopen_to_first_answer_s": t2 - t1, "answer": answer.name,
                  "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
                  "rss_mb": int(status["VmRSS"].split()[0]) / 1024}))
"""


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels[0]).save(out, format="PNG")
    return out.getvalue()


def distorted(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A Koch-distorted copy of uint8 ``images`` (copy 0: the images themselves)."""
    if seed == 0:
        return images
    g = torch.Generator().manual_seed(seed)
    out = random_affine(images.float() / 255, g, **KOCH_DISTORTION)
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def omniglot_drawings(data_dir: str | None, size: int, channels: int
                      ) -> tuple[torch.Tensor, np.ndarray, list[str], ImageDataset]:
    """Every Omniglot drawing (uint8 model inputs), its class, the class names, and the evaluation set."""
    splits = load_splits("omniglot", "lake", data_dir=data_dir, image_size=size, channels=channels)
    train, test = splits["trainval"], splits["test"]
    images = torch.cat([train.images, test.images])
    labels = np.concatenate([train.labels.numpy(), test.labels.numpy() + train.num_classes])
    names = [f"bg/{n}" for n in train.class_names] + [f"ev/{n}" for n in test.class_names]
    return images, labels, names, test


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def measure(gallery: Gallery, images: torch.Tensor, names: list[str], labels: np.ndarray, size: int,
            rng: np.random.Generator) -> dict:
    """The figures at one gallery size (see the module doc)."""
    picks = rng.choice(len(images), QUERIES, replace=False)
    queries = distorted(images[picks], seed=10_000 + size % 9973).numpy()
    query_png = [png(q) for q in queries]
    truth = [names[labels[i]] for i in picks]
    embedded = gallery.model.embed(queries)
    index = gallery._examples  # the gallery's own example index, against exact search on its vectors
    live = index.keys[index.alive]
    exact = faiss.IndexFlatL2(index.dim)
    exact.add(index.vectors(live))
    _, exact_pos = exact.search(embedded, 1)
    found, _ = index.search(embedded, 1)
    recall = float((live[exact_pos[:, 0]] == found[:, 0]).mean())
    exact_single = timed(lambda i: exact.search(embedded[i:i + 1], 1), QUERIES)
    by_example = timed(lambda i: gallery.recognise([query_png[i]], match="example"), QUERIES)
    by_prototype = timed(lambda i: gallery.recognise([query_png[i]], match="prototype"), QUERIES)
    answers = gallery.recognise(query_png, match="example")
    accuracy = float(np.mean([a.name == t for a, t in zip(answers, truth)]))
    batch = timed(lambda i: gallery.recognise(query_png[100 * (i % 3):100 * (i % 3) + 100], match="example"), 5)
    new = distorted(images[rng.choice(len(images), REGISTRATIONS, replace=False)], seed=20_000 + size % 9973)
    new_png = [png(p) for p in new.numpy()]
    register = timed(lambda i: gallery.add(f"new-{size}-{i}", [new_png[i]]), REGISTRATIONS)
    for i in range(REGISTRATIONS):
        gallery.remove_class(f"new-{size}-{i}")
    return {
        "examples": len(live), "classes": gallery.info()["classes"], "index": gallery.info()["index"],
        "recall_at_1_vs_exact": recall, "top1_accuracy_nearest_example": accuracy,
        "recognise_nearest_example": percentiles(by_example),
        "recognise_nearest_prototype": percentiles(by_prototype),
        "exact_flat_search_one_query": percentiles(exact_single),
        "recognise_batch_100_ms": round(float(np.median(batch)) * 1e3, 2),
        "register_one_class": percentiles(register),
    }, query_png[0]


def reopen(path: Path, query: bytes, work: Path) -> dict:
    query_file = work / "query.png"
    query_file.write_bytes(query)
    out = subprocess.run([sys.executable, "-c", REOPEN, str(path), str(query_file)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def product(model: GalleryModel, test, work: Path) -> dict:
    """659-way one-shot: one drawing of each evaluation character registered, the other 19 recognised."""
    path = work / "omniglot659.gallery"
    labels = test.labels.numpy()
    pixels = test.images.numpy()
    first = {c: np.flatnonzero(labels == c)[0] for c in range(test.num_classes)}
    t = time.perf_counter()
    with Gallery.create(path, model) as g:
        for c, i in first.items():
            g.add(test.class_names[c], [pixels[i]])
        register_s = time.perf_counter() - t
        rest = [i for i in range(len(labels)) if i not in set(first.values())]
        answers = g.recognise([pixels[i] for i in rest], top=5)
        truth = [test.class_names[labels[i]] for i in rest]
        top1 = float(np.mean([a.top[0].name == t for a, t in zip(answers, truth)]))
        top5 = float(np.mean([t in [m.name for m in a.top] for a, t in zip(answers, truth)]))
        calibration = g.calibrate(test, target=0.01, shot=1, episodes=600, progress=True)
    return {"classes": test.num_classes, "queries": len(rest), "register_all_s": round(register_s, 2),
            "top1": round(top1, 4), "top5": round(top5, 4), "open_set_at_1pct": calibration.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a trained Conv-4 run on Omniglot")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for the galleries (default: a temporary one, removed)")
    parser.add_argument("--skip-product", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="gallery_scale."))
    work.mkdir(parents=True, exist_ok=True)
    model = GalleryModel.from_run(args.run)
    size, channels = model.preprocessing.size, model.preprocessing.channels
    images, labels, names, test = omniglot_drawings(args.data_dir, size, channels)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    groups = np.split(order, starts[1:])
    result = {"benchmark": "gallery_scale", "run": args.run, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "torch": torch.__version__, "faiss": faiss.__version__,
              "drawings": len(images), "classes": len(names), "sizes": {}}
    rng = np.random.default_rng(0)
    path = work / "scale.gallery"
    gallery = Gallery.create(path, model, match="example")
    stored, copy, add_seconds, added_since = 0, 0, 0.0, 0
    bar = tqdm(total=sizes[-1], desc="adding", unit="ex")
    for target in sizes:
        while stored < target:
            batch = distorted(images, copy).numpy()
            for members in groups:
                if stored >= target:
                    break
                take = members[:target - stored]
                t = time.perf_counter()
                outcome = gallery.add(names[labels[take[0]]], list(batch[take]))
                add_seconds += time.perf_counter() - t
                stored += len(outcome.example_ids)
                added_since += len(outcome.example_ids)
                bar.update(len(outcome.example_ids))
            copy += 1
        figures, query = measure(gallery, images, names, labels, target, rng)
        figures["add_examples_per_s"] = round(added_since / add_seconds, 1)
        t = time.perf_counter()
        gallery.close()
        figures["save_index_s"] = round(time.perf_counter() - t, 2)
        index_files = [Path(str(path) + ".index"), *path.parent.glob(path.name + ".index.*.faiss")]
        figures["file_mb"] = {"sqlite": round(path.stat().st_size / 2**20, 1),
                              "index": round(sum(f.stat().st_size for f in index_files) / 2**20, 1)}
        figures["reopen"] = reopen(path, query, work)
        result["sizes"][str(target)] = figures
        print(json.dumps({str(target): figures}), file=sys.stderr, flush=True)
        gallery = Gallery.open(path)
        add_seconds, added_since = 0.0, 0
    bar.close()
    gallery.close()
    if not args.skip_product:
        result["omniglot_659_way_one_shot"] = product(model, test, work)
    print(json.dumps(result))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
