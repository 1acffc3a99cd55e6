"""Helpers for the service tests: generated images and a real ``os2d serve`` process."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import List, Optional

import httpx
import numpy as np
from PIL import Image

#: Fast plumbing settings: one small pyramid level, keep every box (the untrained model scores low).
FAST = {"scales": (256,), "class_size": 64, "score_threshold": -1.0, "max_detections": 5}
BANNER = re.compile(r"os2d serve: http://([^/]+)/")


def image_bytes(size=(64, 48), fmt: str = "PNG", seed: int = 0) -> bytes:
    """A small textured image encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class ServerProcess:
    """``os2d serve`` in a subprocess on a free loopback port (``--port 0``; the banner says which).

    Use as a context manager; :meth:`stop` sends SIGTERM and returns the exit code.
    """

    def __init__(self, args: List[str], *, startup_s: float = 180.0, env: Optional[dict] = None) -> None:
        self.args = [sys.executable, "-m", "os2d.cli.main", "serve", "--host", "127.0.0.1", "--port", "0", *args]
        self.startup_s = startup_s
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.lines: List[str] = []
        self.url: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "ServerProcess":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"os2d serve exited with {self.proc.returncode}:\n" + "\n".join(self.lines))
            if self.url is not None and self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("os2d serve did not start in time:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            match = BANNER.search(line)
            if match and self.url is None:
                self.url = f"http://{match.group(1)}"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, timeout: float = 300.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()


def packshot(shared, name: str) -> Path:
    return shared("data", "grocery-store", "iconic", f"{name}.jpg")


def store_photo(shared, name: str, index: int = 0) -> Path:
    folder = shared("data", "grocery-store", "photos", "test", name)
    return sorted(folder.glob("*.jpg"))[index]
