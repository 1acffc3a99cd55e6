"""ASGI middleware: request ids, access logs, metrics, the upload limit, 500s for bugs.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) so that request bodies stream and
errors of the app are seen here before the server does anything with them.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Callable, Optional

from os2d.serve.logs import ACCESS_LOGGER

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

logger = logging.getLogger(__name__)
access = logging.getLogger(ACCESS_LOGGER)


def request_state(scope) -> dict:
    """Per-request values shared with the endpoints (``request_id``, ``log`` fields)."""
    return scope.setdefault("state", {})


async def _send_json(send, status: int, detail: str, headers: Optional[list] = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length at once, else while reading."""

    def __init__(self, app, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _detail(self) -> str:
        return f"request body is larger than the upload limit of {self.max_bytes} bytes (--max-upload-mb)"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, self._detail(), [(b"connection", b"close")])
            return
        seen, tripped, replaced = 0, False, False

        async def limited_receive():
            nonlocal seen, tripped
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    tripped = True
                    return {"type": "http.disconnect"}  # the app stops reading; we answer 413 below
            return message

        async def guarded_send(message):
            nonlocal replaced
            if tripped and message["type"] == "http.response.start":
                replaced = True
                await _send_json(send, 413, self._detail(), [(b"connection", b"close")])
                return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
            if not replaced:
                await _send_json(send, 413, self._detail(), [(b"connection", b"close")])


class RequestContext:
    """Request id (``X-Request-ID``, taken from the client when well-formed), one JSON access-log
    line and the metrics of every request; an unhandled exception becomes a generic 500.

    Args:
        observe: ``(route, method, status, seconds)`` -> None (the metrics).
    """

    def __init__(self, app, *, observe: Callable[..., None]) -> None:
        self.app, self.observe = app, observe

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        state = request_state(scope)
        state["request_id"], state["log"] = request_id, {}
        start, status = time.perf_counter(), 500
        started = False

        async def send_with_id(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
                message = dict(message, headers=[*message.get("headers", []),
                                                 (REQUEST_ID_HEADER.encode(), request_id.encode())])
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("internal error in %s %s", scope["method"], scope["path"],
                             extra={"request_id": request_id})
            if not started:
                await send_with_id({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json")]})
                body = json.dumps({"detail": f"internal server error (request id {request_id}); "
                                             f"the server log has the details"}).encode()
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            self._finish(scope, state, status, time.perf_counter() - start)

    def _finish(self, scope, state: dict, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.observe(route=route, method=scope["method"], status=status, seconds=seconds)
        access.info("request", extra={"request_id": state["request_id"], "method": scope["method"],
                                      "path": scope["path"], "route": route, "status": status,
                                      "latency_ms": round(seconds * 1000, 1), **state.get("log", {})})
