"""What the endpoints do, as plain functions of one worker's state (run on compute threads)."""
from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence

from os2d.errors import InvalidInputError
from os2d.serve.catalog import CatalogChangedError, ServiceCatalog
from os2d.serve.db import ClassRow
from os2d.serve.queue import ComputeQueue, raise_if_cancelled
from os2d.serve.settings import MODES, ServeSettings
from os2d.serve.uploads import decode_image

logger = logging.getLogger(__name__)


def mode_available(mode: str) -> bool:
    """``exact`` always; ``fast`` once :mod:`os2d.inference.cascade` exists."""
    if mode == "fast":
        return importlib.util.find_spec("os2d.inference.cascade") is not None
    return mode in MODES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if not mode_available(mode):
        raise InvalidInputError(f"mode {mode!r} is not available in this os2d version")
    return mode


@dataclass(frozen=True)
class DetectOptions:
    """Per-request options of ``POST /detect`` (None: the service's defaults)."""

    classes: Optional[List[str]] = None
    threshold: Optional[float] = None
    max_detections: Optional[int] = None
    mode: Optional[str] = None


def class_json(row: ClassRow) -> dict:
    return {"name": row.name, "images": row.images, "entries": row.entries,
            "created": row.created, "updated": row.updated}


class Service:
    """One worker's detector, catalog and compute queue."""

    def __init__(self, settings: ServeSettings, detector, catalog: ServiceCatalog, queue: ComputeQueue) -> None:
        self.settings, self.detector, self.catalog, self.queue = settings, detector, catalog, queue
        self.limits = settings.limits

    def health(self) -> dict:
        return {"status": "ok", "model": {"name": self.settings.model, **self.detector.model_summary()},
                "classes": self.catalog.count(), "catalog_version": self.catalog.version(),
                "mode": self.settings.mode, "modes": [m for m in MODES if mode_available(m)]}

    def state(self) -> dict:
        """Gauges for /metrics."""
        return {"catalog_classes": self.catalog.count(), "catalog_version": self.catalog.version(),
                "queue_waiting": self.queue.waiting, "queue_running": self.queue.running}

    def detector_for(self, options: DetectOptions):
        """The detector with the request's settings (validated; bad values are 422)."""
        if options.max_detections is not None and not 1 <= options.max_detections <= self.limits.max_detections_limit:
            raise InvalidInputError(f"max_detections must be between 1 and {self.limits.max_detections_limit}, "
                                    f"got {options.max_detections}")
        if options.threshold is not None and math.isnan(options.threshold):
            raise InvalidInputError("threshold must be a number, got NaN")
        mode = check_mode(options.mode) if options.mode else None
        return self.detector.with_settings(method=mode, score_threshold=options.threshold,
                                           max_detections=options.max_detections)

    def detect(self, data: bytes, options: DetectOptions, cancel: threading.Event, *, filename: str) -> dict:
        """Decode, detect, answer JSON (retried once when the catalog changed under the detection)."""
        detector = self.detector_for(options)
        image = decode_image(data, what="image", max_pixels=self.limits.max_pixels).image
        raise_if_cancelled(cancel)
        try:
            result = self._detect_once(detector, image, options, cancel, filename=filename)
        except CatalogChangedError:
            self.catalog.refresh()
            result = self._detect_once(detector, image, options, cancel, filename=filename)
        width, height = result.image_size
        return {"image": {"width": int(width), "height": int(height)},
                "detections": [{"class": r["class"], "score": r["score"], "bbox": r["bbox"]}
                               for r in result.to_records()],
                "classes": len(result.class_names), "mode": detector.settings.method}

    def _detect_once(self, detector, image, options: DetectOptions, cancel: threading.Event, *, filename: str):
        bank = self.catalog.bank(options.classes)
        return detector.detect(image, bank, image_name=filename,
                               on_level=lambda done, total: raise_if_cancelled(cancel))

    def add_class(self, name: str, uploads: Sequence[bytes], cancel: threading.Event) -> dict:
        """Decode the class images, compute their features, store them (extending ``name``)."""
        images = [decode_image(data, what=f"class image {n + 1} of {name!r}", max_pixels=self.limits.max_pixels)
                  for n, data in enumerate(uploads)]
        raise_if_cancelled(cancel)
        row = self.catalog.add(name, images, detector=self.detector, before_write=lambda: raise_if_cancelled(cancel))
        logger.info("class %r: %d images added (%d entries)", name, len(images), row.entries)
        return class_json(row)

    def classes(self) -> List[dict]:
        return [class_json(row) for row in self.catalog.classes()]

    def remove_class(self, name: str) -> None:
        self.catalog.remove(name)
        logger.info("class %r deleted", name)
