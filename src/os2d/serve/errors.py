"""Errors of the HTTP service and their status codes.

Every :class:`os2d.errors.UserError` becomes a 4xx answer ``{"detail": message}``
(:func:`status_of`); the service's own conditions (overload, shutdown, timeout) are 503. Anything
else is a bug: 500 with a generic detail naming the request id, and a traceback in the log.
"""
from __future__ import annotations

from os2d.errors import InputNotFoundError, InputTooLargeError, InvalidInputError, UserError


class UnsupportedMediaError(InvalidInputError):
    """An upload that is not an image of an accepted type (415)."""


class UnknownClassError(InvalidInputError):
    """A class name that is not in the catalog (404)."""


class EmptyCatalogError(InvalidInputError):
    """Detection asked of a catalog without classes (409)."""


class CatalogFullError(InvalidInputError):
    """The catalog holds ``max_classes`` classes already (409)."""


class UploadTooLargeError(InputTooLargeError):
    """The request body exceeds ``max_upload_bytes`` (413)."""


class UnavailableError(Exception):
    """The service cannot take the request now (queue full, shutting down, timed out): 503."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


_STATUS = (
    (UploadTooLargeError, 413),
    (InputTooLargeError, 413),
    (UnsupportedMediaError, 415),
    (UnknownClassError, 404),
    (InputNotFoundError, 404),
    (EmptyCatalogError, 409),
    (CatalogFullError, 409),
)


def status_of(error: UserError) -> int:
    """The HTTP status of a user error (422 unless a more specific one applies)."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 422
