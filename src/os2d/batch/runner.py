"""Running one detection job over many images: here, in local worker processes, or on Ray.

Every worker builds the same :class:`~os2d.eval.methods.MethodRunner` and class bank from a
:class:`BatchJob` (a plain, picklable description) and turns each image into one JSON-lines record
(:func:`detect_record`), so the results do not depend on where an image was processed.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from os2d.errors import InvalidInputError, UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to detect: the model, the settings, the classes.

    Attributes:
        method: registry name (``exact``, ``fast``, baselines, ``sift``).
        model: built-in model name or checkpoint path.
        settings: :class:`~os2d.inference.settings.DetectSettings` fields (``None`` = default).
        classes: ``{name: [image paths]}`` (class features computed by each worker), or
        catalog: a catalog folder (features read from disk).
        threads: torch threads per worker (``None``: the :mod:`os2d.inference.threads` rule).
    """

    method: str
    model: str
    settings: Dict[str, object] = field(default_factory=dict)
    classes: Optional[Dict[str, List[str]]] = None
    catalog: Optional[str] = None
    device: str = "cpu"
    threads: Optional[int] = None

    def build(self):
        """(runner, bank) for this job in the current process."""
        from os2d.eval.methods import build_method

        runner = build_method(self.method, model=self.model, device=self.device, **self.settings)
        if self.catalog is not None:
            from os2d.catalog import Catalog
            from os2d.inference.registry import get_method

            if not get_method(self.method).uses_model:
                raise InvalidInputError(f"--catalog holds OS2D class features; method {self.method!r} cannot use "
                                        f"them (give its class images with --class/--classes)")

            return runner, Catalog.open(self.catalog, runner.detector).bank()
        return runner, runner.prepare_classes({k: [Path(p) for p in v] for k, v in (self.classes or {}).items()})


def detect_record(runner, bank, path: Path, *, keep_going: bool = True, on_level=None) -> dict:
    """The JSON-lines record of one image.

    An image that cannot be read gives an ``error`` record with ``keep_going``, else the error is raised.
    """
    start = time.perf_counter()
    try:
        dets = runner.detect(path, bank, image_name=str(path), on_level=on_level)
    except UserError as err:
        if not keep_going:
            raise
        return {"image": str(path), "error": str(err)}
    width, height = dets.image_size
    records = [{k: r[k] for k in ("class", "score", "bbox")} for r in dets.sorted().to_records()]
    return {"image": str(path), "width": int(width), "height": int(height),
            "seconds": round(time.perf_counter() - start, 4), "detections": records}


# ------------------------------------------------------------------------------- local workers
_FATAL = "__os2d_worker_failed__"


def _exit_with_parent(parent: int) -> None:
    """End this worker process as soon as ``parent`` is gone (killed: no one reads its results)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="os2d-parent-watch", daemon=True).start()


def _worker_main(job: BatchJob, tasks, results, parent: int) -> None:
    """A worker process: build the job once, then detect every path from ``tasks`` until ``None``."""
    from os2d.inference.threads import set_threads

    _exit_with_parent(parent)
    try:
        set_threads(job.threads or 1)
        runner, bank = job.build()
    except UserError as err:
        results.put({_FATAL: str(err)})
        return
    for path in iter(tasks.get, None):
        results.put(detect_record(runner, bank, Path(path)))


def _local_pool(job: BatchJob, paths: Sequence[Path], workers: int) -> Iterator[dict]:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding OpenMP threads
    tasks, results = context.Queue(), context.Queue()
    procs = [context.Process(target=_worker_main, args=(job, tasks, results, os.getpid()), daemon=True)
             for _ in range(min(workers, len(paths)))]
    for proc in procs:
        proc.start()
    for path in paths:
        tasks.put(str(path))
    for _ in procs:
        tasks.put(None)
    try:
        for _ in range(len(paths)):
            record = _next_result(results, procs)
            if _FATAL in record:
                raise InvalidInputError(f"a worker could not start: {record[_FATAL]}")
            yield record
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)


def _next_result(results, procs) -> dict:
    """The next record, failing clearly if every worker died (e.g. killed for memory)."""
    import queue

    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            if not any(proc.is_alive() for proc in procs):
                codes = [proc.exitcode for proc in procs]
                raise RuntimeError(f"every batch worker process ended (exit codes {codes}) before the job was done")


# ------------------------------------------------------------------------------- Ray
def _absolute(job: BatchJob) -> BatchJob:
    """``job`` with its file paths absolute (Ray workers do not run in the driver's folder)."""
    from os2d.zoo import BUILTIN_MODELS

    classes = None if job.classes is None else {k: [os.path.abspath(p) for p in v] for k, v in job.classes.items()}
    path = os.path.expanduser(job.model)
    model = os.path.abspath(path) if job.model not in BUILTIN_MODELS and os.path.exists(path) else job.model
    catalog = None if job.catalog is None else os.path.abspath(job.catalog)
    return dataclasses.replace(job, classes=classes, model=model, catalog=catalog)


def _endpoint(address: str) -> Optional[Tuple[str, int]]:
    """(host, port) that ``address`` connects to; None where only Ray can tell."""
    text = address.strip()
    if text == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # another Ray layout: let ray.init find it
            return None
        try:
            text = canonicalize_bootstrap_address("auto") or ""
        except (ConnectionError, ValueError) as err:
            raise InvalidInputError(f"cannot connect to the Ray cluster at 'auto': {err} (start one with "
                                    f"'ray start --head', or give its address)") from None
    elif text.startswith("ray://"):
        text = text[len("ray://"):] if ":" in text[len("ray://"):] else text[len("ray://"):] + ":10001"
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"--ray must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_ray_address(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast and clearly when Ray is missing or nothing answers at ``address``.

    (``ray.init`` itself retries an unreachable address for many minutes.)
    """
    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise InvalidInputError("--ray needs the 'ray' package: pip install 'os2d[ray]'") from err
    endpoint = _endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as err:
        raise InvalidInputError(f"cannot connect to the Ray cluster at {address!r}: nothing answers at "
                                f"{endpoint[0]}:{endpoint[1]} ({err}); start one with 'ray start --head' "
                                f"or check the address") from None


def _ray_results(job: BatchJob, paths: Sequence[Path], address: str, workers: Optional[int]) -> Iterator[dict]:
    import ray
    from ray.util import ActorPool

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, spec: BatchJob) -> None:
            from os2d.inference.threads import set_threads

            set_threads(spec.threads or 1)
            self.runner, self.bank = spec.build()

        def detect(self, path: str) -> dict:
            return detect_record(self.runner, self.bank, Path(path))

    started = not ray.is_initialized()
    if started:
        check_ray_address(address)
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise InvalidInputError(f"cannot connect to the Ray cluster at {address!r}: {err}") from None
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = ActorPool([Worker.remote(_absolute(job)) for _ in range(min(count, max(1, len(paths))))])
        given = {os.path.abspath(p): str(p) for p in paths}  # workers may run in another folder
        for record in pool.map_unordered(lambda actor, p: actor.detect.remote(p), list(given)):
            yield {**record, "image": given[record["image"]]}
    finally:
        if started:
            ray.shutdown()


def run_batch(job: BatchJob, paths: Sequence[Path], *, workers: int = 1, ray_address: Optional[str] = None,
              local: Optional[tuple] = None) -> Iterable[dict]:
    """Records of ``paths`` in completion order.

    Args:
        job: the detection job.
        paths: images to process (already without those done).
        workers: local worker processes (1: in this process); with Ray, actors (default: cluster CPUs).
        ray_address: run on the Ray cluster at this address (``"auto"``: the running local cluster).
        local: an already built ``(runner, bank)`` to use in this process (``workers == 1``).
    """
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if not paths:
        return iter(())
    if ray_address is not None:
        return _ray_results(job, paths, ray_address, workers if workers > 1 else None)
    if workers > 1:
        return _local_pool(job, paths, workers)
    runner, bank = local if local is not None else job.build()
    return (detect_record(runner, bank, p) for p in paths)
