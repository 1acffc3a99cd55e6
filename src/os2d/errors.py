"""Errors caused by what a user gave os2d (an option, a file, an image, a class name...).

Every one of them is also a standard exception (``ValueError``, ``TypeError``,
``FileNotFoundError``), so API users can catch those as usual. The command line prints a
:class:`UserError` as one line ``os2d: error: ...`` with exit code 2; any other exception is an
internal bug and keeps its traceback. The HTTP service answers a :class:`UserError` with a 4xx
status (:class:`InputTooLargeError` with 413).
"""
from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by user input (never by a bug in os2d)."""


class InvalidInputError(UserError, ValueError):
    """A value, file content or setting that os2d cannot accept; the message names it."""


class InvalidTypeError(UserError, TypeError):
    """An argument of the wrong type (API use); the message names the type given."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class InputTooLargeError(InvalidInputError):
    """An image, upload or size setting beyond os2d's limits (decompression bombs included)."""


__all__ = ["InputNotFoundError", "InputTooLargeError", "InvalidInputError", "InvalidTypeError", "UserError"]
