"""The HTTP service: thin routes over :class:`fewshot.gallery.Gallery`, and the drawing page.

The gallery opens in the app's lifespan (not at import) and is shared by all requests: it
is safe across threads, recognitions run concurrently in the thread pool, registrations are
serialised by its single SQLite writer and acknowledged only once committed. Errors are JSON
``{"error": message}``: 400 for bad input, 401 for a missing token, 404 for what does not
exist, 413 for an oversized request, 422 for a malformed one, 503 when another process is
writing the gallery.

Example:
    >>> app = create_app(Settings(gallery="my.gallery"))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from fewshot.errors import BusyError, FewShotError, NotFoundError
from fewshot.gallery import Gallery
from fewshot.serving.limits import BodyLimit
from fewshot.serving.metrics import MeasureRequests, Metrics
from fewshot.serving.schemas import (
    AddOut,
    ClassDetail,
    ClassesOut,
    ClassOut,
    ErrorOut,
    ExampleOut,
    HealthOut,
    ImagesIn,
    RecogniseIn,
    RecogniseOut,
    RecognitionOut,
    RemovedOut,
)
from fewshot.serving.thumbnails import thumbnail_data_url

SETTINGS_ENV = "FEWSHOT_SERVE_SETTINGS"
"""The environment variable through which ``fewshot serve`` hands its settings (JSON) to the app's worker processes.

Example:
    >>> SETTINGS_ENV
    'FEWSHOT_SERVE_SETTINGS'
"""
STATIC = Path(str(resources.files("fewshot.serving") / "static"))
MAX_IMAGES_PER_REQUEST = 100


def _image_body(json_model: type) -> dict:
    """The two request bodies an image endpoint takes: JSON data URLs, or multipart files."""
    form = {"images": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1,
                       "maxItems": MAX_IMAGES_PER_REQUEST}}
    if "top" in json_model.model_fields:
        form["top"] = {"type": "integer", "minimum": 1, "maximum": 50}
        form["drawings"] = {"type": "boolean"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": json_model.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": form}},
    }}}


_ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 404, 413, 422, 503)}


@dataclass
class Settings:
    """What the service serves and how: see ``fewshot serve --help``.

    Example:
        >>> app = create_app(Settings(gallery="my.gallery", token="secret"))
    """

    gallery: str
    run: str | None = None
    device: str = "cpu"
    token: str | None = None
    max_request_bytes: int = 4 * 2**20
    cors_origins: list[str] = field(default_factory=list)


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application for ``settings``; the gallery opens when the app starts.

    Example:
        >>> uvicorn.run(create_app(Settings(gallery="my.gallery")), port=8000)
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gallery = await run_in_threadpool(open_gallery, settings)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.gallery.close)

    app = FastAPI(title="fewshot", summary="Recognise classes registered from one or a few images.",
                  lifespan=lifespan, responses=_ERRORS)
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(MeasureRequests, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(FewShotError)
    async def fewshot_error(request: Request, error: FewShotError) -> JSONResponse:
        status = 404 if isinstance(error, NotFoundError) else 503 if isinstance(error, BusyError) else 400
        return JSONResponse({"error": str(error)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{error.detail}: {request.method} {request.url.path}"},
                            status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"malformed request: {problems}"}, status_code=422)

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), settings.token):
            raise _Unauthorised

    @app.exception_handler(_Unauthorised)
    async def unauthorised(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": "this server needs a token: send the header 'Authorization: Bearer TOKEN'"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})

    def gallery(request: Request) -> Gallery:
        return request.app.state.gallery

    guarded = [Depends(authorised)]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=HealthOut)
    def health(request: Request) -> HealthOut:
        """The model, the gallery's size and calibration."""
        info = gallery(request).info()
        calibration = info["calibration"]
        return HealthOut(status="ok", model=info["model"], fingerprint=info["fingerprint"], match=info["match"],
                         classes=info["classes"], examples=info["examples"], index=info["index"],
                         calibrated=calibration is not None,
                         threshold=calibration["threshold"] if calibration else None, notes=info["notes"])

    @app.get("/classes", response_model=ClassesOut, dependencies=guarded)
    def classes(request: Request, offset: int = Query(0, ge=0, le=2**62), limit: int = Query(50, ge=1, le=500)) -> ClassesOut:
        """The registered classes, oldest first, a page at a time, each with its first drawing."""
        g = gallery(request)
        page = g.classes(offset, limit)
        return ClassesOut(total=g.info()["classes"], offset=offset, limit=limit, classes=[
            ClassOut(name=c.name, examples=c.examples, added=c.added, thumbnail=_first_drawing(g, c.name))
            for c in page])

    @app.get("/classes/{name}", response_model=ClassDetail, dependencies=guarded)
    def class_detail(request: Request, name: str) -> ClassDetail:
        """One class: its examples, with thumbnails of the stored drawings."""
        g = gallery(request)
        return ClassDetail(name=name, examples=[
            ExampleOut(id=i, added=added, source=source, thumbnail=thumbnail_data_url(g.example_pixels(i), g))
            for i, added, source in g.examples(name)])

    @app.post("/classes/{name}/examples", response_model=AddOut, dependencies=guarded, openapi_extra=_image_body(ImagesIn))
    async def add_examples(request: Request, name: str) -> AddOut:
        """Register images of class ``name`` (created if new); answers the new example ids once they are stored."""
        images, _, _ = await _read_images(request)
        result = await run_in_threadpool(gallery(request).add, name, images)
        return AddOut(**result.to_dict())

    @app.post("/recognise", response_model=RecogniseOut, dependencies=guarded, openapi_extra=_image_body(RecogniseIn))
    async def recognise(request: Request) -> RecogniseOut:
        """Per image: its class or unknown, the distance, threshold, margin and the top classes."""
        images, top, with_drawings = await _read_images(request)
        g = gallery(request)

        def answer() -> RecogniseOut:
            answers = g.recognise(images, top)
            drawings = {a.top[0].name: _first_drawing(g, a.top[0].name) for a in answers} if with_drawings else {}
            return RecogniseOut(results=[RecognitionOut(**a.to_dict(), drawing=drawings.get(a.top[0].name))
                                         for a in answers])

        return await run_in_threadpool(answer)

    @app.delete("/classes/{name}", response_model=RemovedOut, dependencies=guarded)
    def remove_class(request: Request, name: str) -> RemovedOut:
        """Remove a class and all its examples."""
        removed = gallery(request).remove_class(name)
        return RemovedOut(name=name, examples_removed=removed, class_removed=True)

    @app.delete("/examples/{example_id}", response_model=RemovedOut, dependencies=guarded)
    def remove_example(request: Request, example_id: int = PathParam(ge=0, le=2**62)) -> RemovedOut:
        """Remove one example (and its class, when it was the last)."""
        name, last = gallery(request).remove_example(example_id)
        return RemovedOut(name=name, examples_removed=1, class_removed=last)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=guarded)
    def prometheus(request: Request) -> PlainTextResponse:
        """Requests, latencies, errors and the gallery's size, in Prometheus's text format."""
        info = gallery(request).info()
        return PlainTextResponse(metrics.render({"fewshot_gallery_classes": info["classes"],
                                                 "fewshot_gallery_examples": info["examples"]}),
                                 media_type="text/plain; version=0.0.4")

    return app


class _Unauthorised(Exception):
    """A protected endpoint was called without the right token."""


def app_from_environment() -> FastAPI:
    """The app for ``$FEWSHOT_SERVE_SETTINGS`` (JSON of :class:`Settings`): what each worker process of
    ``fewshot serve --workers N`` builds."""
    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))


def open_gallery(settings: Settings) -> Gallery:
    """The gallery ``settings`` names, created (with the run, or the packaged model) when it does not exist.

    Example:
        >>> with open_gallery(Settings(gallery="my.gallery")) as gallery:
        ...     print(gallery.info())
    """
    path = Path(settings.gallery)
    if path.exists():
        return Gallery.open(path, settings.run, device=settings.device)
    return Gallery.create(path, settings.run, device=settings.device)


def _first_drawing(g: Gallery, name: str) -> str | None:
    try:
        examples = g.examples(name)
        return thumbnail_data_url(g.example_pixels(examples[0][0]), g) if examples else None
    except NotFoundError:  # removed meanwhile
        return None


async def _read_images(request: Request) -> tuple[list[tuple[str, bytes]], int, bool]:
    """``(images, top, drawings)`` from a multipart form (files ``images``) or JSON
    ``{"images": [data URL...], "top": k, "drawings": bool}``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=MAX_IMAGES_PER_REQUEST, max_fields=10)
        except (MultiPartException, ValueError) as error:
            raise FewShotError(f"malformed multipart body: {error}") from None
        files = form.getlist("images")
        images = []
        for i, f in enumerate(files):
            if isinstance(f, str):
                raise FewShotError(f"form field images[{i}] is text; send image files as the 'images' field")
            images.append((f.filename or f"images[{i}]", await f.read()))
        top = _top(form.get("top", "1"))
        drawings = str(form.get("drawings", "false")).lower() in ("1", "true", "yes")
    elif kind == "application/json":
        try:
            body = RecogniseIn.model_validate_json(await request.body())
        except ValueError as error:
            raise RequestValidationError(getattr(error, "errors", list)()) from None
        images = [(f"images[{i}]", _decode_data_url(u, i)) for i, u in enumerate(body.images)]
        top, drawings = body.top, body.drawings
    else:
        raise FewShotError(f"send images as multipart/form-data (field 'images') or JSON {{\"images\": [data URL]}}, "
                           f"not {kind or 'a body without a content type'}")
    if not images:
        raise FewShotError("no images in the request; send at least one")
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise FewShotError(f"{len(images)} images in one request; send at most {MAX_IMAGES_PER_REQUEST}")
    return images, top, drawings


def _top(value: object) -> int:
    try:
        top = int(str(value))
    except ValueError:
        raise FewShotError(f"top must be an integer from 1 to 50, got {value!r}") from None
    if not 1 <= top <= 50:
        raise FewShotError(f"top must be an integer from 1 to 50, got {top}")
    return top


def _decode_data_url(url: str, i: int) -> bytes:
    """The bytes of a ``data:image/png;base64,...`` URL (or of bare base64)."""
    payload = url.split(",", 1)[1] if url.startswith("data:") else url
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise FewShotError(f"images[{i}] is not a base64 data URL (data:image/png;base64,...)") from None

