"""Settings of ``os2d serve`` (validated at the edge with pydantic).

The command line builds one :class:`ServeSettings`; uvicorn's worker processes receive it as JSON
in the environment variable :data:`SETTINGS_ENV` (an app factory takes no arguments), see
:func:`settings_from_env`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from os2d.errors import InvalidInputError

#: Environment variable carrying the settings (JSON) from ``os2d serve`` to its workers.
SETTINGS_ENV = "OS2D_SERVE_SETTINGS"
MODES = ("exact", "fast")


class Limits(BaseModel):
    """What one request may ask of the service.

    Attributes:
        max_upload_bytes: largest request body (413 beyond it, checked while reading).
        max_pixels: largest image (width x height) accepted, read from the header before decoding (413).
        max_images_per_class: images in one ``POST /classes``.
        max_classes: classes the catalog may hold (409 beyond it).
        max_detections_limit: largest ``max_detections`` a request may ask for.
        queue_size: requests waiting for a compute slot per worker; one more gets 503.
        concurrency: requests computing at once per worker (they share the worker's torch threads).
        request_timeout_s: a request waiting plus computing longer than this gets 503 (work is cancelled).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=2 * 1024 ** 3)
    max_pixels: int = Field(default=40_000_000, ge=64, le=600_000_000)
    max_images_per_class: int = Field(default=20, ge=1, le=1000)
    max_classes: int = Field(default=10_000, ge=1, le=1_000_000)
    max_detections_limit: int = Field(default=1000, ge=1, le=100_000)
    queue_size: int = Field(default=256, ge=1, le=100_000)
    concurrency: int = Field(default=1, ge=1, le=64)
    request_timeout_s: float = Field(default=120.0, gt=0, le=3600)


class ServeSettings(BaseModel):
    """Everything a worker needs to build the app (:func:`os2d.serve.app.create_app`).

    Attributes:
        catalog: the catalog folder (created when missing).
        model: built-in model name or checkpoint path.
        mode: default detection mode (``exact`` or ``fast``); requests may ask for the other.
        threads: torch threads per worker (None: ``OMP_NUM_THREADS``, else available cores // workers).
        workers: worker processes (only used to choose ``threads``).
        rebuild: recompute the catalog's features when it was built with another model.
        scales / base_size / score_threshold / max_detections: detection defaults (None: the model's).
        class_size: class-image size (None: the model's); part of the catalog's stamp.
        device: torch device.
        trash_grace_s: files no longer referenced by the catalog are deleted this long after the
            change (detections that started before it can still read them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    catalog: Path
    model: str = "default"
    mode: Literal["exact", "fast"] = "exact"
    threads: Optional[int] = Field(default=None, ge=1, le=1024)
    workers: int = Field(default=1, ge=1, le=64)
    rebuild: bool = False
    scales: Optional[Tuple[float, ...]] = None
    base_size: Optional[int] = None
    class_size: Optional[int] = None
    score_threshold: Optional[float] = None
    max_detections: Optional[int] = None
    device: str = "cpu"
    trash_grace_s: float = Field(default=600.0, ge=0, le=7 * 24 * 3600)
    limits: Limits = Limits()

    @field_validator("score_threshold")
    @classmethod
    def _finite_threshold(cls, value):
        if value is not None and math.isnan(value):
            raise ValueError("the score threshold must be a number")
        return value

    def detector_settings(self) -> dict:
        """Keyword settings for :meth:`os2d.Detector.load` (``None`` keeps the model's)."""
        return {"method": self.mode, "scales": self.scales, "base_size": self.base_size, "class_size": self.class_size,
                "score_threshold": self.score_threshold, "max_detections": self.max_detections}

    def torch_threads(self) -> int:
        """Torch threads of one worker: ``threads``, else ``OMP_NUM_THREADS``, else the cores this
        process may use split among the workers (at least 1)."""
        if self.threads is not None:
            return self.threads
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        from os2d.inference.threads import available_cores

        return max(1, available_cores() // self.workers)

    def to_env(self) -> str:
        return self.model_dump_json()


def build_settings(**fields) -> ServeSettings:
    """Validated settings; errors are :class:`InvalidInputError` naming the field and the value."""
    limits = {k: fields.pop(k) for k in list(fields) if k in Limits.model_fields}
    try:
        return ServeSettings(limits=Limits(**{k: v for k, v in limits.items() if v is not None}),
                             **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "limits")
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInputError(f"invalid serve setting {where}={first.get('input')!r}: {message}") from None


def settings_from_env() -> ServeSettings:
    """The settings ``os2d serve`` put in :data:`SETTINGS_ENV` (for the uvicorn app factory)."""
    blob = os.environ.get(SETTINGS_ENV)
    if not blob:
        raise InvalidInputError(f"{SETTINGS_ENV} is not set: start the service with 'os2d serve' "
                                f"(or call os2d.serve.create_app(settings))")
    try:
        return ServeSettings.model_validate(json.loads(blob))
    except (json.JSONDecodeError, ValidationError) as err:
        raise InvalidInputError(f"{SETTINGS_ENV} does not hold valid serve settings ({err})") from None
