"""Request counts and latency histograms, rendered in Prometheus's text exposition format."""
from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Thread-safe counters of requests by method, route and status, and latency histograms by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._buckets[(method, route)][bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[(method, route)] += seconds

    def render(self, gauges: dict[str, float]) -> str:
        lines = ["# HELP fewshot_requests_total HTTP requests by method, route and status.",
                 "# TYPE fewshot_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'fewshot_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += ["# HELP fewshot_request_errors_total HTTP requests answered with status 400 or above.",
                      "# TYPE fewshot_request_errors_total counter"]
            errors: dict[tuple[str, str], int] = defaultdict(int)
            for (method, route, status), n in self._requests.items():
                if status >= 400:
                    errors[(method, route)] += n
            for (method, route), n in sorted(errors.items()):
                lines.append(f'fewshot_request_errors_total{{method="{method}",route="{route}"}} {n}')
            lines += ["# HELP fewshot_request_seconds Request latency.", "# TYPE fewshot_request_seconds histogram"]
            for (method, route), counts in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                total = 0
                for bound, n in zip([*BUCKETS, float("inf")], counts):
                    total += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(f'fewshot_request_seconds_bucket{{{labels},le="{le}"}} {total}')
                lines.append(f"fewshot_request_seconds_sum{{{labels}}} {self._sums[(method, route)]:.6f}")
                lines.append(f"fewshot_request_seconds_count{{{labels}}} {total}")
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class MeasureRequests:
    """ASGI middleware recording each HTTP request's method, route, status and latency in ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status[0], time.perf_counter() - start)
