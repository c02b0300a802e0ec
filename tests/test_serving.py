"""``fewshot serve`` against a real uvicorn on a free loopback port: the API, its errors, tokens, restarts, load."""
from __future__ import annotations

import base64
import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from gallery_support import class_images
from PIL import Image
from serving_support import Server

UNSEEN = range(10, 16)


def data_url(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def server(tmp_path, proto_run):
    s = Server("--gallery", tmp_path / "g.gallery", "--run", proto_run)
    yield s
    s.kill()


def test_register_recognise_list_remove(server, shapes):
    with server.client() as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["classes"] == 0 and not health["calibrated"]
        for c in UNSEEN:
            r = http.post(f"/classes/c{c}/examples", json={"images": [data_url(class_images(shapes, c)[0])]})
            assert r.status_code == 200 and r.json()["created"] and len(r.json()["example_ids"]) == 1
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in class_images(shapes, 10)[1:3]]
        r = http.post("/classes/c10/examples", files=files)
        assert r.status_code == 200 and not r.json()["created"] and len(r.json()["example_ids"]) == 2
        queries = [p for c in UNSEEN for p in class_images(shapes, c)[4:]]
        r = http.post("/recognise", files=[("images", (p.name, p.read_bytes(), "image/png")) for p in queries],
                      data={"top": "3", "drawings": "true"})
        results = r.json()["results"]
        truth = [f"c{c}" for c in UNSEEN for _ in class_images(shapes, c)[4:]]
        assert np.mean([a["name"] == t for a, t in zip(results, truth)]) > 2 / 6
        assert all(len(a["top"]) == 3 and a["drawing"].startswith("data:image/png;base64,") for a in results)
        one = http.post("/recognise", json={"images": [data_url(queries[0])]}).json()["results"][0]
        assert one["drawing"] is None  # drawings only when asked for
        assert one["source"] == "images[0]" and one["distance"] == pytest.approx(results[0]["distance"], rel=1e-4)
        page = http.get("/classes", params={"offset": 2, "limit": 3}).json()
        assert page["total"] == 6 and [c["name"] for c in page["classes"]] == ["c12", "c13", "c14"]
        detail = http.get("/classes/c10").json()
        assert len(detail["examples"]) == 3 and detail["examples"][0]["thumbnail"].startswith("data:image/png")
        assert http.delete("/classes/c11").json() == {"name": "c11", "examples_removed": 1, "class_removed": True}
        example = detail["examples"][0]["id"]
        assert http.delete(f"/examples/{example}").json()["class_removed"] is False
        assert http.get("/classes/c11").status_code == 404
        metrics = http.get("/metrics").text
        assert 'fewshot_requests_total{method="POST",route="/recognise",status="200"} 2' in metrics
        assert "fewshot_gallery_classes 5" in metrics and 'fewshot_request_seconds_bucket{' in metrics
        assert http.get("/").text.startswith("<!doctype html>") and "app.js" in http.get("/").text
        assert http.get("/static/app.js").status_code == 200
        assert http.get("/openapi.json").json()["paths"]["/recognise"]["post"]["requestBody"]["required"]


def test_every_kind_of_bad_request_gets_one_clear_json_error(tmp_path, proto_run, shapes):
    server = Server("--gallery", tmp_path / "g.gallery", "--run", proto_run, "--max-request-mb", "0.25")
    try:
        with server.client() as http:
            good = class_images(shapes, 10)[0].read_bytes()
            cases = [
                (http.post("/recognise", content=b"x" * 300_000, headers={"content-type": "application/json"}),
                 413, "over the limit of 262,144 bytes"),
                (http.post("/classes/a/examples", files=[("images", ("bomb.png", _bomb(), "image/png"))]),
                 400, "bomb.png is 9000 x 9000 pixels, over the limit"),
                (http.post("/classes/a/examples", files=[("images", ("notes.txt", b"hello", "text/plain"))]),
                 400, "cannot decode image notes.txt"),
                (http.post("/recognise", content=b'{"images": [', headers={"content-type": "application/json"}),
                 422, "malformed request"),
                (http.post("/recognise", json={"images": []}), 422, "images"),
                (http.post("/recognise", json={"images": ["data:image/png;base64,@@@"]}), 400, "not a base64 data URL"),
                (http.post("/recognise", json={"images": [data_url(class_images(shapes, 10)[0])], "top": 0}), 422,
                 "top"),
                (http.post("/recognise", content=good, headers={"content-type": "image/png"}), 400,
                 "send images as multipart/form-data"),
                (http.post("/classes/%20/examples", files=[("images", ("a.png", good, "image/png"))]), 400,
                 "the class name is empty"),
                (http.post("/classes/a%09b/examples", files=[("images", ("a.png", good, "image/png"))]), 400,
                 "control or invisible characters"),
                (http.post("/classes/" + "x" * 101 + "/examples", files=[("images", ("a.png", good, "image/png"))]),
                 400, "at most 100"),
                (http.post("/recognise", files=[("images", ("a.png", good, "image/png"))]), 400, "has no classes yet"),
                (http.delete("/classes/ghost"), 404, "no class named 'ghost'"),
                (http.delete("/examples/77"), 404, "no example 77"),
                (http.get("/classes", params={"limit": 0}), 422, "limit"),
            ]
            for response, status, message in cases:
                assert response.status_code == status, (message, response.text)
                assert message in response.json()["error"], response.json()
            assert http.get("/health").json()["classes"] == 0  # nothing stored by any of them
    finally:
        server.kill()


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, format="PNG")
    return out.getvalue()


def test_tokens(tmp_path, proto_run, shapes):
    refused = subprocess.run([sys.executable, "-m", "fewshot", "serve", "--host", "0.0.0.0", "--gallery",
                              str(tmp_path / "g.gallery")], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin"} | {k: v for k, v in __import__("os").environ.items()
                                                              if k != "FEWSHOT_TOKEN"})
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in refused.stderr
    server = Server("--gallery", tmp_path / "g.gallery", "--run", proto_run, "--token", "s3cret")
    try:
        with server.client() as anonymous, server.client("wrong") as wrong, server.client("s3cret") as right:
            assert anonymous.get("/health").status_code == 200 and anonymous.get("/").status_code == 200
            assert anonymous.get("/static/app.js").status_code == 200
            for http in (anonymous, wrong):
                r = http.get("/classes")
                assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
                assert http.post("/recognise", json={"images": ["x"]}).status_code == 401
                assert http.get("/metrics").status_code == 401
            assert right.get("/classes").status_code == 200
            r = right.post("/classes/a/examples", json={"images": [data_url(class_images(shapes, 10)[0])]})
            assert r.status_code == 200
    finally:
        server.kill()


def test_restart_and_sigkill_keep_every_acknowledged_registration(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    server = Server("--gallery", path, "--run", proto_run)
    with server.client() as http:
        for c in UNSEEN:
            http.post(f"/classes/c{c}/examples", json={"images": [data_url(class_images(shapes, c)[0])]})
    assert server.stop() in (0, -15)  # SIGTERM: uvicorn drains, runs the shutdown, then re-raises the signal
    assert (tmp_path / "g.gallery.index").exists()  # the shutdown closed the gallery, which saves its index
    server = Server("--gallery", path, "--run", proto_run)
    acknowledged = []
    with server.client() as http:
        assert http.get("/health").json()["classes"] == 6
        for i, p in enumerate(class_images(shapes, 12)[1:6]):
            acknowledged += http.post(f"/classes/late{i}/examples", json={"images": [data_url(p)]}).json()["example_ids"]
    server.kill()  # SIGKILL right after the acknowledgements
    server = Server("--gallery", path)
    try:
        with server.client() as http:
            names = [c["name"] for c in http.get("/classes", params={"limit": 500}).json()["classes"]]
            assert names == [f"c{c}" for c in UNSEEN] + [f"late{i}" for i in range(5)]
            stored = [e["id"] for i in range(5) for e in http.get(f"/classes/late{i}").json()["examples"]]
            assert stored == acknowledged
    finally:
        server.kill()


def test_twenty_clients_for_ten_seconds(server, shapes):
    """90% recognitions, 10% registrations: no errors, and every acknowledged registration stored."""
    with server.client() as http:
        for c in UNSEEN:
            http.post(f"/classes/c{c}/examples", json={"images": [data_url(class_images(shapes, c)[0])]})
    queries = [data_url(p) for c in UNSEEN for p in class_images(shapes, c)[1:]]
    stop, errors, acknowledged, recognised = time.monotonic() + 10, [], [], [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        with server.client() as http:
            i = 0
            while time.monotonic() < stop:
                i += 1
                if rng.random() < 0.1:
                    image = np.clip(rng.normal(128, 60, (16, 16)), 0, 255).astype(np.uint8)
                    out = io.BytesIO()
                    Image.fromarray(image).save(out, format="PNG")
                    r = http.post(f"/classes/client{k}-{i}/examples",
                                  files=[("images", ("n.png", out.getvalue(), "image/png"))])
                    if r.status_code == 200:
                        with lock:
                            acknowledged.extend(r.json()["example_ids"])
                else:
                    r = http.post("/recognise", json={"images": [queries[int(rng.integers(len(queries)))]]})
                    with lock:
                        recognised[0] += r.status_code == 200
                if r.status_code != 200:
                    with lock:
                        errors.append(r.text)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and recognised[0] > 50 and acknowledged
    with server.client() as http:
        total = http.get("/health").json()["examples"]
        assert total == len(UNSEEN) + len(acknowledged)
