"""A real ``fewshot serve`` (uvicorn) on a free loopback port, in its own process, for the service tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``fewshot serve ARGS`` started for real; :meth:`stop` sends SIGTERM, :meth:`kill` SIGKILL."""

    def __init__(self, *args: str | Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "fewshot", "serve", "--port", str(self.port), *map(str, args)]
        self.log = tempfile.NamedTemporaryFile(prefix="fewshot-serve.", suffix=".log", delete=False)
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError("fewshot serve did not answer /health within 60 s")

    def output(self) -> str:
        """What the server printed (a file, not a pipe: a full pipe would block the server)."""
        return Path(self.log.name).read_text(errors="replace")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
