"""``fewshot serve``: the HTTP service and drawing page over a gallery (the default one, or yours)."""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import sys
from pathlib import Path

from fewshot.errors import FewShotError

LOOPBACK_NAMES = ("localhost",)


def default_gallery_path() -> Path:
    """``$FEWSHOT_GALLERY``, else ``default.gallery`` in the user's data directory (XDG on Linux)."""
    if os.environ.get("FEWSHOT_GALLERY"):
        return Path(os.environ["FEWSHOT_GALLERY"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "fewshot" / "default.gallery"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from fewshot.device import resolve_device
    from fewshot.serving import SETTINGS_ENV, Settings, create_app, open_gallery

    token = args.token or os.environ.get("FEWSHOT_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise FewShotError(f"refusing to listen on {args.host} without a token: anyone who can reach it could change "
                           f"the gallery. Pass --token TOKEN or set FEWSHOT_TOKEN (or serve on 127.0.0.1)")
    if args.max_request_mb <= 0:
        raise FewShotError(f"--max-request-mb must be positive, got {args.max_request_mb}")
    gallery = Path(args.gallery) if args.gallery else default_gallery_path()
    settings = Settings(gallery=str(gallery), run=args.run_dir, device=str(resolve_device(args.device)), token=token,
                        max_request_bytes=int(args.max_request_mb * 2**20), cors_origins=args.cors_origin or [])
    if args.workers < 1:
        raise FewShotError(f"--workers must be at least 1, got {args.workers}")
    open_gallery(settings).close()  # created (or checked against --run) once, before any worker starts
    print(f"fewshot: serving {gallery} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    common = {"host": args.host, "port": args.port, "log_level": args.log_level,
              "timeout_graceful_shutdown": args.drain_seconds}
    if args.workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
        uvicorn.run("fewshot.serving.app:app_from_environment", factory=True, workers=args.workers, **common)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a gallery over HTTP, with a page to draw on",
        description="Serve a gallery over HTTP (JSON API, OpenAPI at /docs) with a drawing page at /. Without "
                    "--gallery, the default gallery in your data directory, created on first start with the "
                    "packaged Omniglot model.")
    parser.add_argument("--gallery", help=f"the gallery file, created if missing (default: {default_gallery_path()})")
    parser.add_argument("--run", dest="run_dir", metavar="RUN",
                        help="the run a new gallery is bound to, or an existing one must be (default: packaged model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: $FEWSHOT_TOKEN); needed "
                                        "to listen on any address but loopback")
    parser.add_argument("--max-request-mb", type=float, default=4.0, help="largest request body (default: 4 MB)")
    parser.add_argument("--cors-origin", action="append", help="allow browser pages of this origin (repeatable; "
                                                               "default: none)")
    parser.add_argument("--drain-seconds", type=int, default=10,
                        help="on SIGTERM, finish requests in flight for up to this long (default: 10)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with the gallery open; writes are serialised by its file "
                             "(default: 1)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level (default: warning)")
    parser.set_defaults(run=run)
