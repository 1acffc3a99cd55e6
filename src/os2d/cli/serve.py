"""``os2d serve``: the HTTP service (FastAPI + uvicorn) over a persistent catalog folder."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import typer

from os2d.cli.common import parse_scales
from os2d.errors import InvalidInputError

DEFAULTS = {"max_upload_mb": 20.0, "max_megapixels": 40.0}
WORKER_HEALTHCHECK_S = 300


def serve(
    catalog: Path = typer.Option(..., "--catalog", help="Catalog folder (created when missing; kept across restarts)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0: a free one, printed at start)."),
    model: str = typer.Option("default", "--model", "-m", help="Built-in model (default, untrained) or checkpoint path."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (each loads the model once)."),
    mode: str = typer.Option("exact", "--mode", help="Default detection mode: exact or fast (requests may choose)."),
    threads: Optional[str] = typer.Option(None, "--threads", help="Torch threads per worker (default: OMP_NUM_THREADS, else cores // workers)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Recompute the catalog's features if it was built with another model."),
    scales: Optional[str] = typer.Option(None, "--scales", help="Scene longer side in pixels per pyramid level, e.g. 640,1024 (default: the model's pyramid)."),
    base_size: Optional[int] = typer.Option(None, "--base-size", help="Base scene size of the default pyramid."),
    class_size: Optional[int] = typer.Option(None, "--class-size", help="Class images are resized so that h*w ~= class_size^2 (the catalog is stamped with it)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Default score threshold (requests may override)."),
    max_dets: Optional[int] = typer.Option(None, "--max-dets", help="Default detections per image (requests may override)."),
    max_upload_mb: float = typer.Option(DEFAULTS["max_upload_mb"], "--max-upload-mb", help="Largest request body in MiB (413 beyond)."),
    max_megapixels: float = typer.Option(DEFAULTS["max_megapixels"], "--max-megapixels", help="Largest image in megapixels, checked before decoding (413 beyond)."),
    max_images_per_class: Optional[int] = typer.Option(None, "--max-images-per-class", help="Images in one POST /classes (default 20)."),
    max_classes: Optional[int] = typer.Option(None, "--max-classes", help="Classes the catalog may hold (default 10000)."),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", help="Requests waiting per worker before 503 (default 256)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Requests computing at once per worker (default 1)."),
    request_timeout: Optional[float] = typer.Option(None, "--request-timeout", help="Seconds a request may wait plus compute before 503 (default 120)."),
    shutdown_timeout: float = typer.Option(30.0, "--shutdown-timeout", help="On SIGTERM/Ctrl-C, seconds in-flight requests get to finish."),
    proxy_headers: bool = typer.Option(False, "--proxy-headers", help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy)."),
    forwarded_allow_ips: str = typer.Option("127.0.0.1", "--forwarded-allow-ips", help="Proxy addresses whose X-Forwarded-* headers are trusted."),
    root_path: str = typer.Option("", "--root-path", help="URL prefix when a proxy serves the app under a sub-path."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
) -> None:
    """Serve detection over HTTP with a persistent product catalog and a browser page at /."""
    from os2d.inference.threads import parse_threads
    from os2d.serve.settings import build_settings

    if log_level not in ("debug", "info", "warning", "error"):
        raise InvalidInputError(f"--log-level must be debug, info, warning or error, got {log_level!r}")
    if not 0 <= shutdown_timeout <= 3600:
        raise InvalidInputError(f"--shutdown-timeout must be between 0 and 3600 seconds, got {shutdown_timeout}")
    settings = build_settings(
        catalog=catalog, model=model, mode=mode, threads=parse_threads(threads), workers=workers, rebuild=rebuild,
        scales=parse_scales(scales), base_size=base_size, class_size=class_size, score_threshold=threshold, max_detections=max_dets,
        device=device, max_upload_bytes=_whole(max_upload_mb * 1024 * 1024, "--max-upload-mb"),
        max_pixels=_whole(max_megapixels * 1_000_000, "--max-megapixels"),
        max_images_per_class=max_images_per_class, max_classes=max_classes, queue_size=queue_size,
        concurrency=concurrency, request_timeout_s=request_timeout)
    listener = bind(host, port)
    uvicorn_options = {"log_level": log_level, "timeout_graceful_shutdown": shutdown_timeout,
                       "proxy_headers": proxy_headers, "forwarded_allow_ips": forwarded_allow_ips,
                       "root_path": root_path}
    with listener, _graceful_signals():
        if settings.workers == 1:
            _serve_one(settings, listener, uvicorn_options)
        else:
            _serve_many(settings, listener, uvicorn_options)
    print("os2d serve: stopped", file=sys.stderr)


def _whole(value: float, option: str) -> int:
    if not value == value or value <= 0 or value > 1e12:  # NaN, negative, absurd
        raise InvalidInputError(f"{option} must be a positive number, got {value}")
    return int(value)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; one clear error when it is taken or not an address here."""
    if not 0 <= port < 65536:
        raise InvalidInputError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InvalidInputError(f"--host {host!r} is not a valid address ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise InvalidInputError(f"port {port} on {host} is already in use; stop the other server "
                                    f"or choose another --port") from None
        raise InvalidInputError(f"cannot listen on {host}:{port} ({err.strerror})") from None
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _graceful_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the server cleanly with exit code 0.

    uvicorn handles them while it runs (graceful shutdown) and raises them again afterwards;
    these handlers take that second delivery instead of the default (killed / KeyboardInterrupt).
    """
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _prepare(settings):
    """Load the model and prepare the catalog once, before any worker starts (errors are one line)."""
    from os2d.detector import Detector
    from os2d.inference.threads import set_threads
    from os2d.serve.catalog import prepare_catalog
    from os2d.serve.service import check_mode

    check_mode(settings.mode)
    set_threads(settings.torch_threads())
    detector = Detector.load(settings.model, device=settings.device, **settings.detector_settings())
    prepare_catalog(settings.catalog, detector, rebuild=settings.rebuild)
    return detector


def _banner(settings, listener: socket.socket) -> None:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"os2d serve: http://{shown}:{port}/ (catalog {settings.catalog}, model {settings.model}, "
          f"{settings.workers} worker(s) x {settings.torch_threads()} thread(s)); Ctrl-C stops", file=sys.stderr)


def _serve_one(settings, listener: socket.socket, options: dict) -> None:
    import uvicorn

    from os2d.serve.app import create_app
    from os2d.serve.logs import log_config

    detector = _prepare(settings)
    app = create_app(settings.model_copy(update={"rebuild": False}), detector=detector)
    config = uvicorn.Config(app, log_config=log_config(options["log_level"]), access_log=False, **options)
    _banner(settings, listener)
    uvicorn.Server(config).run(sockets=[listener])


def _serve_many(settings, listener: socket.socket, options: dict) -> None:
    import uvicorn

    from os2d.serve.app import FAILED_FILE_ENV
    from os2d.serve.logs import log_config
    from os2d.serve.metrics import MULTIPROC_ENV
    from os2d.serve.settings import SETTINGS_ENV

    _prepare(settings)  # the workers then open a ready catalog (and never rebuild)
    host, port = listener.getsockname()[:2]
    listener.close()  # uvicorn's supervisor binds it again and shares it with the workers
    with tempfile.TemporaryDirectory(prefix="os2d-serve-") as scratch:
        metrics_dir, failed = Path(scratch) / "metrics", Path(scratch) / "worker-failed"
        metrics_dir.mkdir()
        os.environ[SETTINGS_ENV] = settings.model_copy(update={"rebuild": False}).to_env()
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
        os.environ[FAILED_FILE_ENV] = str(failed)
        print(f"os2d serve: http://{host}:{port}/ (catalog {settings.catalog}, {settings.workers} workers x "
              f"{settings.torch_threads()} thread(s)); Ctrl-C stops", file=sys.stderr)
        uvicorn.run("os2d.serve.app:worker_app", factory=True, host=host, port=port, workers=settings.workers,
                    log_config=log_config(options["log_level"]), access_log=False, **options, **_healthcheck())
        if failed.exists():
            print(f"os2d: internal error: a worker could not start ({failed.read_text(encoding='utf-8')}); "
                  f"the log above has the traceback", file=sys.stderr)
            raise typer.Exit(1)


def _healthcheck() -> dict:
    """A worker answers the supervisor's pings only once torch is imported and the model loaded
    (tens of seconds on a busy machine): uvicorn's default of 5 s would kill it while it starts."""
    import inspect

    import uvicorn

    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        return {"timeout_worker_healthcheck": WORKER_HEALTHCHECK_S}
    return {}


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
