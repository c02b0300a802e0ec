"""Load on ``fewshot serve``: concurrent clients, 90% recognise and 10% register, then restarts and a SIGKILL.

A gallery of ``--examples`` distorted Omniglot drawings (as ``gallery_scale.py`` makes them) is
served by a real ``fewshot serve`` (uvicorn, one process); this process is the load generator:
``--clients`` asyncio clients with httpx on loopback for ``--seconds``, each sending one request
at a time, 90% ``POST /recognise`` with one PNG drawing, 10% ``POST /classes/{name}/examples``
registering a new class from one. It reports throughput, p50/p99 latency per endpoint and
errors; then restarts the server and checks that every acknowledged registration is there.
Then a second round, the server killed with SIGKILL halfway: requests cut off by the kill are
counted apart, and after a restart every acknowledged registration must be there again.

Prints one JSON line.

    python benchmarks/service_load.py --run runs/proto --data-dir $FEWSHOT_DATA --examples 100000
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from gallery_scale import distorted, omniglot_drawings, png

from fewshot.gallery import Gallery, GalleryModel
from fewshot.pretrained import model_dir


def drawing_png(pixels: np.ndarray) -> bytes:
    """A model input as a person draws it: dark strokes on light."""
    return png(255 - pixels)


def build_gallery(path: Path, model: GalleryModel, images: torch.Tensor, labels: np.ndarray, names: list[str],
                  examples: int) -> None:
    order = np.argsort(labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(labels[order]))[0:] + 1)
    stored, copy = 0, 0
    with Gallery.create(path, model) as gallery:
        while stored < examples:
            batch = distorted(images, copy).numpy()
            for members in groups:
                take = members[:examples - stored]
                if not len(take):
                    break
                stored += len(gallery.add(names[labels[take[0]]], list(batch[take])).example_ids)
            copy += 1


class Server:
    def __init__(self, gallery: Path, port: int, workers: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "fewshot", "serve", "--gallery", str(gallery),
                                         "--port", str(port), "--workers", str(workers)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)

    def kill(self) -> None:
        """SIGKILL the server and, with --workers, its worker processes (its process group's other members)."""
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)
        self.process.kill()
        self.process.wait(60)


async def load(url: str, clients: int, seconds: float, queries: list[bytes], news: list[bytes], tag: str,
               kill_after: float | None = None, server: Server | None = None) -> dict:
    latencies: dict[str, list[float]] = {"recognise": [], "register": []}
    errors: list[str] = []
    cut_off = [0]
    acknowledged: dict[str, list[int]] = {}
    start = time.monotonic()
    stop = start + seconds
    killed = [False]

    async def client(k: int) -> None:
        rng = np.random.default_rng(k)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = 0
            while time.monotonic() < stop:
                i += 1
                register = rng.random() < 0.1
                t = time.perf_counter()
                try:
                    if register:
                        name = f"{tag}-{k}-{i}"
                        image = news.pop()  # each registration a drawing of its own
                        r = await http.post(f"/classes/{name}/examples", files=[("images", ("d.png", image, "image/png"))])
                    else:
                        image = queries[int(rng.integers(len(queries)))]
                        r = await http.post("/recognise", files=[("images", ("q.png", image, "image/png"))])
                except httpx.HTTPError as error:
                    if killed[0]:
                        cut_off[0] += 1
                        return
                    errors.append(repr(error))
                    continue
                latencies["register" if register else "recognise"].append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                elif register and r.json()["example_ids"]:
                    acknowledged[name] = r.json()["example_ids"]

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        killed[0] = True
        server.kill()

    tasks = [client(k) for k in range(clients)] + ([killer()] if kill_after is not None else [])
    await asyncio.gather(*tasks)
    elapsed = min(time.monotonic() - start, seconds) if kill_after is None else kill_after

    def summary(values: list[float]) -> dict:
        ms = np.array(values) * 1e3 if values else np.zeros(1)
        return {"requests": len(values), "per_s": round(len(values) / elapsed, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}

    return {"seconds": round(elapsed, 1), "clients": clients, "recognise": summary(latencies["recognise"]),
            "register": summary(latencies["register"]), "errors": len(errors), "error_examples": errors[:3],
            "cut_off_by_kill": cut_off[0], "acknowledged": acknowledged}


def lost(url: str, acknowledged: dict[str, list[int]]) -> int:
    """Acknowledged example ids missing from the restarted server."""
    missing = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for name, ids in acknowledged.items():
            r = http.get(f"/classes/{name}")
            stored = {e["id"] for e in r.json()["examples"]} if r.status_code == 200 else set()
            missing += len(set(ids) - stored)
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="the run to serve (default: the packaged model)")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1, help="fewshot serve --workers")
    parser.add_argument("--kill-seconds", type=float, default=30, help="length of the round with a SIGKILL halfway")
    args = parser.parse_args()
    model = GalleryModel.from_run(args.run or model_dir())
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "load.gallery"
        pre = model.preprocessing
        images, labels, names, _ = omniglot_drawings(args.data_dir, pre.size, pre.channels)
        t = time.perf_counter()
        build_gallery(path, model, images, labels, names, args.examples)
        build_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        queries = [drawing_png(p) for p in distorted(images[rng.choice(len(images), 500, replace=False)], 777).numpy()]
        news = [drawing_png(p) for seed in range(8)
                for p in distorted(images[rng.choice(len(images), 1000, replace=False)], 778 + seed).numpy()]
        port = free_port()
        server = Server(path, port, args.workers)
        steady = asyncio.run(load(server.url, args.clients, args.seconds, queries, news, "steady"))
        server.stop()
        server = Server(path, port, args.workers)
        steady["lost_after_restart"] = lost(server.url, steady["acknowledged"])
        kill = asyncio.run(load(server.url, args.clients, args.kill_seconds, queries, news, "kill",
                                kill_after=args.kill_seconds / 2, server=server))
        server = Server(path, port, args.workers)
        kill["lost_after_restart"] = lost(server.url, kill["acknowledged"])
        server.stop()
    for r in (steady, kill):
        r["acknowledged"] = len(r.pop("acknowledged"))
    print(json.dumps({"benchmark": "service_load", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "torch": torch.__version__, "examples": args.examples, "workers": args.workers, "build_gallery_s": round(build_s, 1),
                      "steady": steady, "sigkill": kill}))


if __name__ == "__main__":
    main()
