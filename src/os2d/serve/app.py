"""The FastAPI app of ``os2d serve``, built by :func:`create_app` (no module-level state).

>>> app = create_app(ServeSettings(catalog="shop-catalog", model="default"))

uvicorn calls :func:`worker_app` (``create_app()`` without arguments) in each worker process; the
settings then come from the environment (:func:`os2d.serve.settings.settings_from_env`). The model
is loaded once per worker.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, List, Optional
from urllib.parse import quote

from fastapi import FastAPI, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from os2d.errors import InputTooLargeError, UserError
from os2d.serve.catalog import ServiceCatalog, prepare_catalog
from os2d.serve.errors import UnavailableError, status_of
from os2d.serve.metrics import Metrics
from os2d.serve.middleware import BodyLimit, RequestContext, request_state
from os2d.serve.queue import Cancelled, ComputeQueue
from os2d.serve.service import DetectOptions, Service, check_mode
from os2d.serve.settings import ServeSettings, settings_from_env
from os2d.serve.uploads import check_class_name, check_content_type, parse_class_list, probe_image

logger = logging.getLogger(__name__)


def static_dir() -> Path:
    """The browser page's files (package data)."""
    return Path(str(resources.files("os2d.serve"))) / "static"


def build_service(settings: ServeSettings, detector=None) -> Service:
    """Load the model (unless given), open the catalog, set the worker's torch threads."""
    from os2d.detector import Detector
    from os2d.inference.threads import set_threads

    set_threads(settings.torch_threads())
    check_mode(settings.mode)
    if detector is None:
        detector = Detector.load(settings.model, device=settings.device, **settings.detector_settings())
    else:
        detector = detector.with_settings(**settings.detector_settings())
    prepare_catalog(settings.catalog, detector, rebuild=settings.rebuild)
    catalog = ServiceCatalog(settings.catalog, detector.bank_key, trash_grace_s=settings.trash_grace_s,
                             max_classes=settings.limits.max_classes)
    limits = settings.limits
    queue = ComputeQueue(concurrency=limits.concurrency, queue_size=limits.queue_size,
                         timeout_s=limits.request_timeout_s)
    return Service(settings, detector, catalog, queue)


def create_app(settings: Optional[ServeSettings] = None, *, detector=None) -> FastAPI:
    """The app for ``settings`` (default: from the environment); ``detector`` skips loading the model."""
    service = build_service(settings or settings_from_env(), detector)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.queue.close()  # after uvicorn's graceful shutdown: cancel what is left

    app = FastAPI(title="os2d", description="One-shot object detection over a product catalog. "
                  "The page at / uses this API.", version=_version(), lifespan=lifespan)
    app.state.service = service
    metrics = Metrics(service.state)
    app.state.metrics = metrics
    _add_error_handlers(app)
    _add_routes(app, service, metrics)
    app.mount("/static", StaticFiles(directory=str(static_dir())), name="static")
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_upload_bytes)
    app.add_middleware(RequestContext, observe=metrics.observe)
    return app


#: A worker that cannot start writes its error here (set by ``os2d serve --workers N``).
FAILED_FILE_ENV = "OS2D_SERVE_FAILED_FILE"
#: uvicorn's exit code for a worker that failed before serving: its supervisor then stops.
STARTUP_FAILURE = 3


def worker_app() -> FastAPI:
    """uvicorn's factory in worker processes: :func:`create_app` from the environment; a worker
    that cannot start logs why, leaves the reason for ``os2d serve`` and exits (no restart loop)."""
    try:
        return create_app()
    except Exception as err:  # noqa: BLE001 -- reported to the parent, then the worker exits
        logger.exception("worker could not start")
        failed = os.environ.get(FAILED_FILE_ENV)
        if failed:
            Path(failed).write_text(f"{type(err).__name__}: {err}", encoding="utf-8")
        sys.exit(STARTUP_FAILURE)


def _version() -> str:
    from os2d import __version__

    return __version__


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=status_of(err))

    @app.exception_handler(UnavailableError)
    async def unavailable(request: Request, err: UnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": str(err.retry_after_s)})

    @app.exception_handler(Cancelled)
    async def cancelled(request: Request, err: Cancelled) -> JSONResponse:
        return JSONResponse({"detail": "the request was cancelled (the server is shutting down)"}, status_code=503)


async def _read_image_part(part: UploadFile, *, what: str, max_pixels: int) -> bytes:
    """The bytes of an uploaded image, after the checks that need no decoding (type, header, pixels)."""
    check_content_type(part.content_type, what=what)
    data = await part.read()
    await run_in_threadpool(probe_image, data, what=what, max_pixels=max_pixels)
    return data


def _add_routes(app: FastAPI, service: Service, metrics: Metrics) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    @app.get("/health", summary="Service status, model and class count")
    def health() -> dict:
        return service.health()

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    def scrape() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    _add_class_routes(app, service)
    _add_detect_route(app, service, metrics)


def _add_class_routes(app: FastAPI, service: Service) -> None:
    limits = service.limits

    @app.get("/classes", summary="The catalog's classes")
    def list_classes() -> List[dict]:
        return service.classes()

    @app.post("/classes", status_code=201, summary="Add a class, or add images to an existing one")
    async def add_class(request: Request, response: Response, name: Annotated[str, Form()],
                        images: Annotated[List[UploadFile], File(description="one or more class images")]) -> dict:
        check_class_name(name)
        if len(images) > limits.max_images_per_class:
            raise _too_many(len(images), limits.max_images_per_class)
        blobs = [await _read_image_part(part, what=f"class image {n + 1} ({part.filename})",
                                        max_pixels=limits.max_pixels) for n, part in enumerate(images)]
        done = await service.queue.run(lambda cancel: service.add_class(name, blobs, cancel))
        request_state(request.scope)["log"].update(classes=1, images=len(blobs))
        response.headers["Location"] = f"/classes/{quote(name, safe='')}"
        return done.value

    @app.delete("/classes/{name}", status_code=204, summary="Delete a class")
    def delete_class(name: str) -> Response:
        service.remove_class(name)
        return Response(status_code=204)


def _add_detect_route(app: FastAPI, service: Service, metrics: Metrics) -> None:
    limits = service.limits

    @app.post("/detect", summary="Detect the catalog's classes in a photo")
    async def detect(request: Request, image: Annotated[UploadFile, File(description="the photo")],
                     classes: Annotated[Optional[str], Form(description="comma-separated subset (default: all)")] = None,
                     threshold: Annotated[Optional[float], Form(description="score threshold")] = None,
                     max_detections: Annotated[Optional[int], Form()] = None,
                     mode: Annotated[Optional[str], Form(description="exact or fast")] = None) -> dict:
        options = DetectOptions(classes=parse_class_list(classes), threshold=threshold,
                                max_detections=max_detections, mode=mode)
        service.detector_for(options)  # 422 for bad options before waiting in the queue
        await run_in_threadpool(service.catalog.bank, options.classes)  # 409 empty / 404 unknown, early
        data = await _read_image_part(image, what=f"image ({image.filename})", max_pixels=limits.max_pixels)
        done = await service.queue.run(
            lambda cancel: service.detect(data, options, cancel, filename=image.filename or "image"))
        answer = done.value
        request_state(request.scope)["log"].update(classes=answer["classes"], detections=len(answer["detections"]))
        metrics.detections.inc(len(answer["detections"]))
        answer["timing_ms"] = {"queue": round(done.queue_s * 1000, 1), "compute": round(done.compute_s * 1000, 1)}
        return answer


def _too_many(given: int, limit: int) -> UserError:
    return InputTooLargeError(f"{given} class images in one request, the limit is {limit} (--max-images-per-class)")
