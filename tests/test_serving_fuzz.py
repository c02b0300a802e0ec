"""Schemathesis fuzzes the running service from its own OpenAPI document: no 500s, and the gallery survives."""
from __future__ import annotations

import base64
import sqlite3

import httpx
import pytest
import schemathesis
from gallery_support import class_images
from hypothesis import HealthCheck, settings
from serving_support import Server


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, proto_run, shapes):
    path = tmp_path_factory.mktemp("fuzz") / "g.gallery"
    server = Server("--gallery", path, "--run", proto_run, "--max-request-mb", "1")
    image = "data:image/png;base64," + base64.b64encode(class_images(shapes, 10)[0].read_bytes()).decode()
    httpx.post(server.url + "/classes/seed/examples", json={"images": [image]}, timeout=30).raise_for_status()
    yield server, path
    server.kill()


@pytest.fixture(scope="module")
def api(fuzzed):
    server, _ = fuzzed
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case):
    response = case.call(timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400 and case.path != "/metrics":
        assert "error" in response.json()


def test_the_gallery_is_intact_after_fuzzing(fuzzed):
    server, path = fuzzed
    health = httpx.get(server.url + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["classes"] >= 0
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
